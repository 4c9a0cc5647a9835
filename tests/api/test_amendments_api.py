"""Amendments through the API: priced beside their original, started as deals of their own on a
billed deal only, billed on the original's customer (real DealWorkflow, fake vendors)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from qtc.deal import SIGNAL_SIGNATURE_COMPLETED
from qtc.ports import ACT_AMEND_SUBSCRIPTION, ACT_CREATE_BILLING_CUSTOMER
from tests.api.support import FINANCE, SALES, new_opportunity_id, wait_for_stage
from tests.workflows.support import FakeVendors, signature


def amendment(original_deal_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "quote_id": "Q-A1",
        "opportunity_id": new_opportunity_id(),
        "amends": original_deal_id,
        "signer": {"name": "Jane Doe", "email": "jane@acme.example"},
        "valid_until": "2099-12-31",
        "lines": [{"sku": "PLATFORM-PRO", "quantity": 10}],
        **overrides,
    }


async def sign(env: WorkflowEnvironment, api: httpx.AsyncClient, deal_id: str) -> None:
    status = await wait_for_stage(api, deal_id, "awaiting_signature")
    await env.client.get_workflow_handle(deal_id).signal(
        SIGNAL_SIGNATURE_COMPLETED,
        signature(status["envelope_id"], datetime.now(UTC)),
    )


async def billed_original(
    env: WorkflowEnvironment, api: httpx.AsyncClient, quote: dict[str, Any]
) -> dict[str, Any]:
    started = await api.post("/v1/deals", json={"quote": quote, "phase": 3}, headers=SALES)
    assert started.status_code == 201, started.text
    deal_id = started.json()["deal_id"]
    await sign(env, api, deal_id)
    return await wait_for_stage(api, deal_id, "completed")


async def test_an_amendment_of_a_billed_deal_is_its_own_deal_on_the_same_customer(
    env: WorkflowEnvironment, api: httpx.AsyncClient, quote: dict[str, Any], fakes: FakeVendors
) -> None:
    original = await billed_original(env, api, quote)
    assert original["priced_quote"]["opportunity_id"] == quote["opportunity_id"]
    body = amendment(original["deal_id"])

    priced = await api.post(
        "/v1/quotes/price",
        json={"quote": body, "original": original["priced_quote"]},
        headers=SALES,
    )
    assert priced.status_code == 200, priced.text
    assert priced.json()["lines"][0]["quantity_after"] == 60

    response = await api.post(
        f"/v1/deals/{original['deal_id']}/amendments", json={"quote": body}, headers=SALES
    )
    assert response.status_code == 201, response.text
    started = response.json()
    assert started["deal_id"] == f"deal-{body['opportunity_id']}"
    assert started["amends"] == original["deal_id"]
    assert started["priced_amendment"]["mrr_delta_minor"] == 108000
    again = await api.post(
        f"/v1/deals/{original['deal_id']}/amendments", json={"quote": body}, headers=SALES
    )
    assert again.status_code == 200 and again.json()["created"] is False

    fakes.calls.clear()
    await sign(env, api, started["deal_id"])
    status = await wait_for_stage(api, started["deal_id"], "completed")
    assert status["amends"] == original["deal_id"]
    assert status["billing_customer_id"] == original["billing_customer_id"]
    assert ACT_CREATE_BILLING_CUSTOMER not in fakes.names()
    [amend] = fakes.inputs(ACT_AMEND_SUBSCRIPTION)
    assert amend.subscription_id == original["billing_subscription_id"]


async def test_an_unbilled_deal_cannot_be_amended(
    api: httpx.AsyncClient, quote: dict[str, Any]
) -> None:
    started = await api.post("/v1/deals", json={"quote": quote}, headers=SALES)
    deal_id = started.json()["deal_id"]
    await wait_for_stage(api, deal_id, "awaiting_signature")
    response = await api.post(
        f"/v1/deals/{deal_id}/amendments", json={"quote": amendment(deal_id)}, headers=SALES
    )
    assert response.status_code == 422, response.text
    assert [e["code"] for e in response.json()["errors"]] == ["original_not_billed"]


async def test_an_amendment_names_the_deal_it_is_sent_to(
    api: httpx.AsyncClient, quote: dict[str, Any]
) -> None:
    started = await api.post("/v1/deals", json={"quote": quote}, headers=SALES)
    deal_id = started.json()["deal_id"]
    response = await api.post(
        f"/v1/deals/{deal_id}/amendments",
        json={"quote": amendment("deal-SOMETHING-ELSE", currency="eur")},
        headers=SALES,
    )
    assert response.status_code == 422, response.text
    assert [(e["pointer"], e["code"]) for e in response.json()["errors"]] == [
        ("/currency", "amendment_field_not_allowed")
    ]
    wrong = await api.post(
        f"/v1/deals/{deal_id}/amendments",
        json={"quote": amendment("deal-SOMETHING-ELSE")},
        headers=SALES,
    )
    assert [(e["pointer"], e["code"]) for e in wrong.json()["errors"]] == [
        ("/amends", "invalid_field")
    ]


async def test_finance_may_not_start_an_amendment(
    api: httpx.AsyncClient, quote: dict[str, Any]
) -> None:
    deal_id = f"deal-{quote['opportunity_id']}"
    response = await api.post(
        f"/v1/deals/{deal_id}/amendments", json={"quote": amendment(deal_id)}, headers=FINANCE
    )
    assert response.status_code == 403
