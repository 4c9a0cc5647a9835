"""The e-signature port on Ironclad, against the emulator through the product's httpx client."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from integrations.ironclad.activities import IroncladESignature
from integrations.ironclad.client import IroncladApi
from qtc import errors, ports
from qtc.models import PricedQuote
from sandbox.ironclad.app import SANDBOX_API_KEY
from tests.ironclad.conftest import CREATOR, TEMPLATE


@pytest.fixture
def esign(api: IroncladApi) -> IroncladESignature:
    return IroncladESignature(api, TEMPLATE, creator_email=CREATOR)


@pytest.fixture
def deal_id() -> str:
    return f"deal-test-{uuid.uuid4().hex[:10]}"


async def send(esign: IroncladESignature, deal_id: str, priced: PricedQuote) -> ports.ContractSent:
    result: ports.ContractSent = await ActivityEnvironment().run(
        esign.send_contract, ports.SendContractInput(deal_id=deal_id, priced=priced)
    )
    return result


async def void(esign: IroncladESignature, deal_id: str, workflow_id: str) -> ports.ContractVoided:
    result: ports.ContractVoided = await ActivityEnvironment().run(
        esign.void_contract,
        ports.VoidContractInput(deal_id=deal_id, envelope_id=workflow_id, reason="quote expired"),
    )
    return result


def sandbox(url: str) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(f"{url}/_sandbox/workflows").json()
    return state


def money(value: dict[str, Any]) -> tuple[Decimal, str]:
    return Decimal(str(value["amount"])), value["currency"]


async def test_the_contract_is_one_workflow_carrying_the_priced_quote(
    esign: IroncladESignature, ironclad_url: str, deal_id: str, priced: PricedQuote
) -> None:
    sent = await send(esign, deal_id, priced)
    assert (sent.status, sent.system) == ("active", "ironclad")
    again = await send(esign, deal_id, priced)
    assert again.envelope_id == sent.envelope_id
    state = sandbox(ironclad_url)
    assert len(state["launches"]) == 1
    request = state["launches"][0]["request"]
    assert request["template"] == TEMPLATE
    assert request["creator"] == {"type": "email", "email": CREATOR}
    attributes = request["attributes"]
    assert attributes["qtcDealId"] == deal_id
    assert attributes["opportunityId"] == priced.opportunity_id
    assert attributes["counterpartyName"] == priced.account.legal_name
    assert attributes["counterpartySignerEmail"] == priced.signer.email
    assert attributes["paymentTermsDays"] == priced.payment_terms_days
    assert attributes["termMonths"] == priced.term_months
    assert money(attributes["totalContractValue"]) == (Decimal(priced.tcv_minor) / 100, "GBP")
    assert money(attributes["firstInvoiceTotal"]) == (
        Decimal(priced.first_invoice_total_minor) / 100,
        "GBP",
    )
    assert [i["sku"] for i in attributes["lineItems"]] == [line.sku for line in priced.lines]
    for item, line in zip(attributes["lineItems"], priced.lines, strict=True):
        first = (line.unit_amounts_by_year_minor or [line.unit_amount_minor or 0])[0]
        assert money(item["unitPrice"])[0] == Decimal(first) / 100
        assert item["quantity"] == line.quantity


async def test_a_cancelled_workflow_is_not_reused(
    esign: IroncladESignature, deal_id: str, priced: PricedQuote
) -> None:
    first = await send(esign, deal_id, priced)
    assert (await void(esign, deal_id, first.envelope_id)).status == "voided"
    second = await send(esign, deal_id, priced)
    assert second.envelope_id != first.envelope_id


async def test_voiding_cancels_with_the_reason_and_twice_is_harmless(
    esign: IroncladESignature, ironclad_url: str, deal_id: str, priced: PricedQuote
) -> None:
    sent = await send(esign, deal_id, priced)
    assert (await void(esign, deal_id, sent.envelope_id)).status == "voided"
    assert (await void(esign, deal_id, sent.envelope_id)).status == "voided"
    state = sandbox(ironclad_url)
    assert state["cancellations"] == [
        {
            "workflowId": sent.envelope_id,
            "at": state["cancellations"][0]["at"],
            "comment": "quote expired",
        }
    ]


async def test_voiding_a_signed_workflow_reports_the_signature(
    esign: IroncladESignature, ironclad_url: str, deal_id: str, priced: PricedQuote
) -> None:
    sent = await send(esign, deal_id, priced)
    httpx.post(
        f"{ironclad_url}/_sandbox/workflows/{sent.envelope_id}/sign",
        json={"signed_at": "2026-12-15T10:00:00Z"},
    ).raise_for_status()
    voided = await void(esign, deal_id, sent.envelope_id)
    assert voided.status == "completed"
    assert voided.completed_at is not None
    assert voided.completed_at.isoformat() == "2026-12-15T10:00:00+00:00"
    assert (voided.signer_name, voided.signer_email) == (priced.signer.name, priced.signer.email)
    assert sandbox(ironclad_url)["cancellations"] == []


async def test_a_refused_launch_is_permanent_and_names_the_field(
    api: IroncladApi, deal_id: str, priced: PricedQuote
) -> None:
    esign = IroncladESignature(api, "retired-template", creator_email=CREATOR)
    with pytest.raises(ApplicationError) as caught:
        await send(esign, deal_id, priced)
    assert caught.value.type == errors.VENDOR_INVALID_REQUEST
    assert caught.value.non_retryable
    assert "(attribute template)" in caught.value.message
    assert caught.value.details[0]["param"] == "template"


async def test_a_launch_by_an_unknown_creator_is_permanent(
    api: IroncladApi, deal_id: str, priced: PricedQuote
) -> None:
    esign = IroncladESignature(api, TEMPLATE, creator_email="stranger@example.com")
    with pytest.raises(ApplicationError) as caught:
        await send(esign, deal_id, priced)
    assert caught.value.non_retryable
    assert "creator" in caught.value.message


async def test_a_rate_limit_is_retried_after_the_vendors_delay(
    esign: IroncladESignature, ironclad_url: str, deal_id: str, priced: PricedQuote
) -> None:
    httpx.post(
        f"{ironclad_url}/_sandbox/faults",
        json={"rules": [{"path": "/workflows", "rate_429": 1.0, "retry_after_s": 9}]},
    ).raise_for_status()
    with pytest.raises(ApplicationError) as caught:
        await send(esign, deal_id, priced)
    assert caught.value.type == errors.VENDOR_RATE_LIMITED
    assert not caught.value.non_retryable
    assert caught.value.next_retry_delay is not None
    assert caught.value.next_retry_delay.total_seconds() == 9


async def test_a_server_error_and_an_unreachable_ironclad_are_retried(
    esign: IroncladESignature, ironclad_url: str, deal_id: str, priced: PricedQuote
) -> None:
    httpx.post(
        f"{ironclad_url}/_sandbox/faults",
        json={"rules": [{"path": "/workflows", "method": "POST", "rate_500": 1.0}]},
    ).raise_for_status()
    with pytest.raises(ApplicationError) as caught:
        await send(esign, deal_id, priced)
    assert (caught.value.type, caught.value.non_retryable) == (errors.VENDOR_UNAVAILABLE, False)
    nowhere = IroncladApi("http://127.0.0.1:9", api_key=SANDBOX_API_KEY, timeout_s=2)
    try:
        with pytest.raises(ApplicationError) as down:
            await send(
                IroncladESignature(nowhere, TEMPLATE, creator_email=CREATOR), deal_id, priced
            )
    finally:
        await nowhere.aclose()
    assert (down.value.type, down.value.non_retryable) == (errors.VENDOR_UNAVAILABLE, False)


async def test_a_launch_whose_answer_was_lost_is_found_not_repeated(
    esign: IroncladESignature,
    api: IroncladApi,
    ironclad_url: str,
    deal_id: str,
    priced: PricedQuote,
) -> None:
    from integrations.ironclad.mapping import launch_attributes

    # The first attempt reached Ironclad but its answer never came back.
    launched = await api.launch_workflow(
        TEMPLATE, launch_attributes(deal_id, priced), creator_email=CREATOR
    )
    sent = await send(esign, deal_id, priced)
    assert sent.envelope_id == launched["id"]
    assert len(sandbox(ironclad_url)["launches"]) == 1
