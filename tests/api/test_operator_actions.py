"""The operator's actions on a stuck deal through the API: correct the legal entity, cancel, and
resume with an empty body; refused actions are 409 with the deal's current stage."""

from __future__ import annotations

from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

from qtc.errors import VENDOR_INVALID_REQUEST
from qtc.ports import ACT_CREATE_BILLING_CUSTOMER, ACT_SEND_CONTRACT
from tests.api.support import (
    OPERATOR,
    PEOPLE,
    SALES,
    connect_event,
    connect_headers,
    wait_for_stage,
)
from tests.workflows.support import FakeVendors

TAX_ID_REFUSED = ApplicationError(
    "Stripe answered 400: Invalid value for eu_vat.",
    {"vendor": "Stripe", "status": 400, "code": "tax_id_invalid", "field": "/account/tax_id/value"},
    type=VENDOR_INVALID_REQUEST,
    non_retryable=True,
)


async def _signed_and_parked(api: httpx.AsyncClient, quote: dict[str, Any]) -> str:
    deal_id = (await api.post("/v1/deals", json={"quote": quote}, headers=SALES)).json()["deal_id"]
    await wait_for_stage(api, deal_id, "awaiting_signature")
    body = connect_event(f"env-{deal_id}", opportunity_id=quote["opportunity_id"])
    signed = await api.post("/webhooks/docusign", content=body, headers=connect_headers(body))
    assert signed.status_code == 200, signed.text
    await wait_for_stage(api, deal_id, "needs_attention")
    return str(deal_id)


async def test_an_operator_corrects_the_tax_id_and_resumes_with_an_empty_post(
    api: httpx.AsyncClient, quote: dict[str, Any], fakes: FakeVendors
) -> None:
    fakes.failures[ACT_CREATE_BILLING_CUSTOMER] = [TAX_ID_REFUSED]
    deal_id = await _signed_and_parked(api, quote)
    parked = (await api.get(f"/v1/deals/{deal_id}", headers=OPERATOR)).json()
    account = {**quote["account"], "tax_id": {"type": "us_ein", "value": "98-7654321"}}

    corrected = await api.post(
        f"/v1/deals/{deal_id}/account-correction",
        json={"account": account, "reason": "EIN from the W-9"},
        headers=OPERATOR,
    )
    resumed = await api.post(f"/v1/deals/{deal_id}/resume", headers=OPERATOR)
    done = await wait_for_stage(api, deal_id, "completed")

    assert parked["last_error"]["field"] == "/account/tax_id/value"
    assert parked["last_error"]["resume_helps"] is False
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["stage"] == "needs_attention"
    assert resumed.status_code == 202, resumed.text
    assert done["corrections"][0]["by"] == PEOPLE["operator"]
    assert done["corrections"][0]["fields"] == ["/account/tax_id"]


async def test_a_correction_outside_needs_attention_is_409_with_the_current_stage(
    api: httpx.AsyncClient, quote: dict[str, Any]
) -> None:
    deal_id = (await api.post("/v1/deals", json={"quote": quote}, headers=SALES)).json()["deal_id"]
    await wait_for_stage(api, deal_id, "awaiting_signature")

    refused = await api.post(
        f"/v1/deals/{deal_id}/account-correction",
        json={"account": quote["account"], "reason": "typo"},
        headers=OPERATOR,
    )
    cancelled = await api.post(
        f"/v1/deals/{deal_id}/cancel", json={"reason": "why not"}, headers=OPERATOR
    )

    assert refused.status_code == 409, refused.text
    assert refused.json()["current_stage"] == "awaiting_signature"
    assert "needs_attention" in refused.json()["detail"]
    assert cancelled.status_code == 409
    status = (await api.get(f"/v1/deals/{deal_id}", headers=OPERATOR)).json()
    assert status["stage"] == "awaiting_signature"


async def test_an_operator_cancels_a_parked_deal_and_is_told_what_exists(
    api: httpx.AsyncClient, quote: dict[str, Any], fakes: FakeVendors
) -> None:
    fakes.failures[ACT_SEND_CONTRACT] = [
        ApplicationError("template missing", type="ContractNotSendable", non_retryable=True)
    ]
    deal_id = (await api.post("/v1/deals", json={"quote": quote}, headers=SALES)).json()["deal_id"]
    await wait_for_stage(api, deal_id, "needs_attention")

    answer = await api.post(
        f"/v1/deals/{deal_id}/cancel", json={"reason": "wrong customer"}, headers=OPERATOR
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["stage"] == "cancelled"
    assert "nothing was created" in answer.json()["message"]
