"""Starting, reading and steering deals through /v1/deals, with the real DealWorkflow behind it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from qtc.deal import DealInput
from qtc.ports import ACT_SEND_CONTRACT
from starters.api import create_app
from tests.api.support import (
    DEAL_DESK,
    FINANCE,
    OPERATOR,
    PEOPLE,
    SALES,
    FakeContracts,
    FakeCrm,
    api_settings,
    new_quote,
    wait_for_stage,
)
from tests.workflows.support import FakeVendors


async def test_sales_starts_a_deal_and_the_contract_goes_out(
    api: httpx.AsyncClient, quote: dict[str, Any], fakes: FakeVendors
) -> None:
    response = await api.post("/v1/deals", json={"quote": quote, "phase": 3}, headers=SALES)

    assert response.status_code == 201, response.text
    deal_id = f"deal-{quote['opportunity_id']}"
    assert response.json() == {"deal_id": deal_id, "created": True, "status": "ok"}
    assert response.headers["location"] == f"/v1/deals/{deal_id}"
    status = await wait_for_stage(api, deal_id, "awaiting_signature")
    assert status["quote_id"] == quote["quote_id"]
    assert status["customer"] == "Acme Robotics, Inc."
    assert status["stage_history"][0]["note"] == f"started by {PEOPLE['sales']}"
    assert fakes.names() == [ACT_SEND_CONTRACT]


async def test_the_same_opportunity_submitted_twice_never_starts_two_deals(
    api: httpx.AsyncClient, quote: dict[str, Any], fakes: FakeVendors
) -> None:
    first, second, third = await asyncio.gather(
        *(api.post("/v1/deals", json={"quote": quote}, headers=SALES) for _ in range(3))
    )

    codes = sorted([first.status_code, second.status_code, third.status_code])
    assert codes == [200, 200, 201]
    assert sorted(r.json()["created"] for r in (first, second, third)) == [False, False, True]
    await wait_for_stage(api, f"deal-{quote['opportunity_id']}", "awaiting_signature")
    assert fakes.names() == [ACT_SEND_CONTRACT]


async def test_a_different_quote_for_a_running_deal_is_a_conflict(
    api: httpx.AsyncClient, quote: dict[str, Any]
) -> None:
    assert (await api.post("/v1/deals", json={"quote": quote}, headers=SALES)).status_code == 201
    changed = {**quote, "lines": [{"sku": "PLATFORM-PRO", "quantity": 60}]}

    response = await api.post("/v1/deals", json={"quote": changed}, headers=SALES)

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["deal_id"] == f"deal-{quote['opportunity_id']}"
    renumbered = {**quote, "quote_id": "Q-OTHER"}
    assert (
        await api.post("/v1/deals", json={"quote": renumbered}, headers=SALES)
    ).status_code == 409


async def test_a_rejected_quote_starts_no_deal_and_lists_every_violation(
    api: httpx.AsyncClient, quote: dict[str, Any]
) -> None:
    quote["lines"] = [
        {"sku": "NO-SUCH-SKU", "quantity": 1},
        {"sku": "PLATFORM-PRO", "quantity": 50, "discount_percent": "55"},
    ]
    quote["term_months"] = 7

    response = await api.post("/v1/deals", json={"quote": quote}, headers=SALES)

    assert response.status_code == 422
    codes = {(e["pointer"], e["code"]) for e in response.json()["errors"]}
    assert ("/lines/0/sku", "unknown_sku") in codes
    assert ("/lines/1/discount_percent", "discount_above_hard_max") in codes
    assert ("/term_months", "term_not_allowed") in codes
    missing = await api.get(f"/v1/deals/deal-{quote['opportunity_id']}", headers=SALES)
    assert missing.status_code == 404


async def test_a_malformed_tax_id_starts_no_deal_and_sends_no_contract(
    api: httpx.AsyncClient, quote: dict[str, Any]
) -> None:
    quote["account"]["address"]["country"] = "DE"
    quote["account"]["tax_id"] = {"type": "eu_vat", "value": "DE 123"}

    response = await api.post("/v1/deals", json={"quote": quote}, headers=SALES)

    assert response.status_code == 422
    assert [(e["pointer"], e["code"]) for e in response.json()["errors"]] == [
        ("/account/tax_id/value", "invalid_field")
    ]
    assert "DE123456789" in response.json()["errors"][0]["message"]
    missing = await api.get(f"/v1/deals/deal-{quote['opportunity_id']}", headers=SALES)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({}, 401), ({"Authorization": "Bearer nope"}, 401), (DEAL_DESK, 403), (FINANCE, 403)],
)
async def test_only_sales_and_operators_may_start_deals(
    api: httpx.AsyncClient, quote: dict[str, Any], headers: dict[str, str], expected: int
) -> None:
    response = await api.post("/v1/deals", json={"quote": quote}, headers=headers)

    assert response.status_code == expected
    assert response.headers["content-type"] == "application/problem+json"
    if expected == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert (
        await api.get(f"/v1/deals/deal-{quote['opportunity_id']}", headers=SALES)
    ).status_code == 404


async def test_an_operator_may_start_a_deal_too(
    api: httpx.AsyncClient, quote: dict[str, Any]
) -> None:
    response = await api.post("/v1/deals", json={"quote": quote, "phase": 1}, headers=OPERATOR)

    assert response.status_code == 201
    status = await wait_for_stage(api, response.json()["deal_id"], "awaiting_signature")
    assert status["phase"] == 1


async def test_deal_desk_approval_is_recorded_under_the_token_holder_name(
    api: httpx.AsyncClient,
) -> None:
    quote = new_quote(lines=[{"sku": "PLATFORM-PRO", "quantity": 50, "discount_percent": "30"}])
    started = await api.post("/v1/deals", json={"quote": quote}, headers=SALES)
    assert started.json()["status"] == "needs_approval"
    deal_id = started.json()["deal_id"]
    await wait_for_stage(api, deal_id, "pending_approval")
    path = f"/v1/deals/{deal_id}/quote-approval"

    assert (await api.post(path, json={"decision": "approve"}, headers=SALES)).status_code == 403
    assert (await api.post(path, json={"decision": "approve"})).status_code == 401
    impersonation = {"decision": "approve", "by": "ceo@acme.example"}
    assert (await api.post(path, json=impersonation, headers=DEAL_DESK)).status_code == 422
    response = await api.post(
        path, json={"decision": "approve", "note": "strategic logo"}, headers=DEAL_DESK
    )

    assert response.status_code == 202
    assert response.json() == {"deal_id": deal_id, "signal": "approve_quote", "accepted": True}
    status = await wait_for_stage(api, deal_id, "awaiting_signature")
    assert status["quote_decision"] == {"by": PEOPLE["deal_desk"], "note": "strategic logo"}


async def test_deal_desk_can_reject_a_quote(api: httpx.AsyncClient) -> None:
    quote = new_quote(lines=[{"sku": "PLATFORM-PRO", "quantity": 50, "discount_percent": "30"}])
    deal_id = (await api.post("/v1/deals", json={"quote": quote}, headers=SALES)).json()["deal_id"]
    await wait_for_stage(api, deal_id, "pending_approval")

    response = await api.post(
        f"/v1/deals/{deal_id}/quote-approval",
        json={"decision": "reject", "note": "margin"},
        headers=DEAL_DESK,
    )

    assert response.status_code == 202
    status = await wait_for_stage(api, deal_id, "quote_rejected")
    assert status["quote_decision"]["by"] == PEOPLE["deal_desk"]


async def test_sales_marks_a_deal_lost_and_the_contract_is_voided(
    api: httpx.AsyncClient, quote: dict[str, Any], fakes: FakeVendors
) -> None:
    deal_id = (await api.post("/v1/deals", json={"quote": quote}, headers=SALES)).json()["deal_id"]
    await wait_for_stage(api, deal_id, "awaiting_signature")
    path = f"/v1/deals/{deal_id}/lost"

    assert (await api.post(path, json={"reason": "budget"}, headers=FINANCE)).status_code == 403
    response = await api.post(path, json={"reason": "budget cut"}, headers=SALES)

    assert response.status_code == 202
    status = await wait_for_stage(api, deal_id, "lost")
    assert status["stage_history"][-1]["note"] == f"marked lost by {PEOPLE['sales']}: budget cut"
    finished = await api.post(path, json={"reason": "again"}, headers=OPERATOR)
    assert finished.status_code == 409


async def test_finance_reviews_the_first_invoice_of_a_phase_two_deal(
    api: httpx.AsyncClient, quote: dict[str, Any], fakes: FakeVendors
) -> None:
    from tests.api.support import connect_event, connect_headers

    deal_id = (
        await api.post("/v1/deals", json={"quote": quote, "phase": 2}, headers=SALES)
    ).json()["deal_id"]
    await wait_for_stage(api, deal_id, "awaiting_signature")
    body = connect_event(f"env-{deal_id}", opportunity_id=quote["opportunity_id"])
    assert (
        await api.post("/webhooks/docusign", content=body, headers=connect_headers(body))
    ).status_code == 200
    await wait_for_stage(api, deal_id, "awaiting_invoice_review")
    path = f"/v1/deals/{deal_id}/invoice-review"

    assert (
        await api.post(path, json={"decision": "approve"}, headers=DEAL_DESK)
    ).status_code == 403
    response = await api.post(path, json={"decision": "approve", "note": "ok"}, headers=FINANCE)

    assert response.status_code == 202
    status = await wait_for_stage(api, deal_id, "completed")
    assert status["invoice_review"] == {"reviewer": PEOPLE["finance"], "note": "ok"}


async def test_an_operator_resumes_a_parked_deal(
    api: httpx.AsyncClient, quote: dict[str, Any], fakes: FakeVendors
) -> None:
    from temporalio.exceptions import ApplicationError

    fakes.failures[ACT_SEND_CONTRACT] = [
        ApplicationError("template missing", type="ContractNotSendable", non_retryable=True)
    ]
    deal_id = (await api.post("/v1/deals", json={"quote": quote}, headers=SALES)).json()["deal_id"]
    parked = await wait_for_stage(api, deal_id, "needs_attention")
    assert parked["last_error"]["type"] == "ContractNotSendable"
    path = f"/v1/deals/{deal_id}/resume"

    assert (await api.post(path, json={"note": "fixed"}, headers=SALES)).status_code == 403
    response = await api.post(path, json={"note": "template restored"}, headers=OPERATOR)

    assert response.status_code == 202
    status = await wait_for_stage(api, deal_id, "awaiting_signature")
    assert PEOPLE["operator"] in status["stage_history"][-2]["note"]


async def test_signals_to_an_unknown_deal_are_404(api: httpx.AsyncClient) -> None:
    for path, body, headers in [
        ("quote-approval", {"decision": "approve"}, DEAL_DESK),
        ("invoice-review", {"decision": "reject"}, FINANCE),
        ("resume", {}, OPERATOR),
        ("lost", {}, SALES),
    ]:
        response = await api.post(f"/v1/deals/deal-UNKNOWN1/{path}", json=body, headers=headers)
        assert response.status_code == 404, path
        assert response.json()["deal_id"] == "deal-UNKNOWN1"


async def test_reading_a_deal_needs_a_token(api: httpx.AsyncClient, quote: dict[str, Any]) -> None:
    deal_id = (await api.post("/v1/deals", json={"quote": quote}, headers=SALES)).json()["deal_id"]

    assert (await api.get(f"/v1/deals/{deal_id}")).status_code == 401
    assert (await api.get("/v1/deals/not-a-deal-id", headers=FINANCE)).status_code == 422
    assert (await wait_for_stage(api, deal_id, "awaiting_signature"))["deal_id"] == deal_id


async def test_a_finished_deal_is_never_restarted_for_its_opportunity(
    api: httpx.AsyncClient, quote: dict[str, Any], fakes: FakeVendors
) -> None:
    deal_id = (await api.post("/v1/deals", json={"quote": quote}, headers=SALES)).json()["deal_id"]
    await wait_for_stage(api, deal_id, "awaiting_signature")
    await api.post(f"/v1/deals/{deal_id}/lost", json={"reason": "went dark"}, headers=SALES)
    await wait_for_stage(api, deal_id, "lost")

    again = await api.post("/v1/deals", json={"quote": quote}, headers=SALES)
    changed = {**quote, "quote_id": "Q-REVIVED"}
    revived = await api.post("/v1/deals", json={"quote": changed}, headers=SALES)

    assert (again.status_code, again.json()["created"]) == (200, False)
    assert revived.status_code == 409
    assert (await wait_for_stage(api, deal_id, "lost"))["stage"] == "lost"
    assert fakes.names().count(ACT_SEND_CONTRACT) == 1


async def test_deals_started_through_the_api_carry_the_configured_review_reminder(
    env: WorkflowEnvironment,
    worker: Worker,
    crm: FakeCrm,
    quote: dict[str, Any],
    task_queue: str,
    tmp_path: Path,
) -> None:
    settings = api_settings(task_queue, tmp_path, review_reminder_hours=24)

    async def same_client() -> Client:
        return env.client

    app = create_app(settings, client_factory=same_client, crm=crm, contracts=FakeContracts())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://qtc.test"
    ) as api:
        started = await api.post("/v1/deals", json={"quote": quote, "phase": 2}, headers=SALES)
    assert started.status_code == 201
    handle = env.client.get_workflow_handle(started.json()["deal_id"])
    history = await handle.fetch_history()
    attributes = history.events[0].workflow_execution_started_event_attributes
    [payload] = attributes.input.payloads
    deal_input = pydantic_data_converter.payload_converter.from_payload(payload, DealInput)
    assert deal_input.review_reminder_hours == 24
