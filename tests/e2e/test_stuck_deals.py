"""Three stuck deals, as an operator meets them on the whole sandbox stack with the Web UI:

- one parked because Stripe refuses the signed legal entity's tax id (the deal's own data);
- one whose provisioning call keeps answering 500;
- one whose contract cannot be sent because DocuSign keeps answering 500.

Each test asserts what the operator sees (the deal's current details, the search attributes the
list filters on, the pending attempt with its last failure) and brings the deal to an end with the
documented action. The blocked deal's Web UI page is kept as a screenshot in ``artifacts/``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client

from integrations.salesforce.client import build_salesforce_client
from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from qtc.deal import AccountCorrection, DealStatus
from qtc.models import PricedQuote, TaxId
from qtc.ports import ACT_CREATE_BILLING_CUSTOMER, ACT_PROVISION_PRODUCT, ACT_SEND_CONTRACT
from runtime.settings import Settings
from runtime.temporal import connect
from sandbox.stack import Stack
from service import deals
from tests.browser import CHROMIUM, browser_page
from tests.e2e.support import new_opportunity
from tests.stack_support import ROOT, stack_settings

ARTIFACTS = ROOT / "artifacts"
OPERATOR = {"Authorization": "Bearer sandbox-operator"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = stack_settings(tmp_path_factory.mktemp("stuck"))
    with Stack(settings, settings.state_dir, persist_temporal=False) as running:
        yield running


@pytest_asyncio.fixture
async def client(stack: Stack) -> AsyncIterator[Client]:
    yield await connect(stack.settings)


def _priced(settings: Settings, name: str, **account: Any) -> PricedQuote:
    sf = build_salesforce_client(settings)
    opportunity_id = new_opportunity(sf, name)
    quote = json.loads((ROOT / "examples" / "quote-phase3.json").read_text())
    quote["opportunity_id"] = opportunity_id
    quote["quote_id"] = f"Q-{opportunity_id[-6:]}"
    priced = price_quote(quote, load_catalog(settings.catalog), datetime.now(UTC))
    if account:
        # What a CRM can hand over that passes our rules and still fails the billing system's.
        priced = priced.model_copy(update={"account": priced.account.model_copy(update=account)})
    return priced


async def _start(client: Client, settings: Settings, priced: PricedQuote) -> str:
    started = await deals.start_deal(client, settings, priced, phase=3, started_by="e2e")
    return started.deal_id


async def _sign(settings: Settings, client: Client, deal_id: str) -> None:
    status = await _until(client, deal_id, lambda s: s.stage == "awaiting_signature")
    base = settings.docusign_base_path.removesuffix("/restapi")
    async with httpx.AsyncClient(timeout=10) as http:
        signed = await http.post(f"{base}/_sandbox/envelopes/{status.envelope_id}/sign", json={})
    signed.raise_for_status()


async def _until(
    client: Client, deal_id: str, ready: Callable[[DealStatus], bool], timeout_s: float = 60
) -> DealStatus:
    deadline = time.monotonic() + timeout_s
    status = await deals.get_status(client, deal_id)
    while not ready(status):
        if time.monotonic() > deadline:
            raise AssertionError(f"{deal_id} never got there: {status.stage}, {status.last_error}")
        await asyncio.sleep(0.2)
        status = await deals.get_status(client, deal_id)
    return status


async def _faults(url: str, rules: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        (await http.post(f"{url}/_sandbox/faults", json={"rules": rules})).raise_for_status()


async def _listed(client: Client, query: str) -> list[str]:
    found = [
        execution.id
        async for execution in client.list_workflows(f"WorkflowType = 'DealWorkflow' AND {query}")
    ]
    return found


async def _current_details(client: Client, deal_id: str) -> str:
    """What the Web UI shows under User Metadata, read through the same built-in query."""
    metadata = await client.get_workflow_handle(deal_id).query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata
    )
    return metadata.current_details


async def test_a_deal_stripe_refuses_for_its_tax_id_is_corrected_and_completes(
    stack: Stack, client: Client
) -> None:
    settings = stack.settings
    priced = _priced(settings, "Stuck on tax id", tax_id=TaxId(type="us_ein", value="12-34"))
    deal_id = await _start(client, settings, priced)
    await _sign(settings, client, deal_id)

    parked = await _until(client, deal_id, lambda s: s.stage == "needs_attention")
    details = await _current_details(client, deal_id)
    listed = await _eventually(
        lambda: _listed(client, f"QtcBlockedStep = '{ACT_CREATE_BILLING_CUSTOMER}'")
    )

    assert parked.last_error is not None
    assert parked.last_error.step == ACT_CREATE_BILLING_CUSTOMER
    assert parked.last_error.system == "billing"
    assert parked.last_error.code == "tax_id_invalid"
    assert parked.last_error.field == "/account/tax_id/value"
    assert parked.last_error.resume_helps is False
    assert "create_billing_customer" in details and "qtc deal correct" in details
    assert deal_id in listed
    if CHROMIUM is not None:
        await _screenshot_deal_page(stack, deal_id)

    fixed = priced.account.model_copy(update={"tax_id": TaxId(type="us_ein", value="12-3456789")})
    await deals.correct_account(
        client, deal_id, AccountCorrection(by="oscar", reason="EIN from the W-9", account=fixed)
    )
    async with httpx.AsyncClient(timeout=10) as http:
        resumed = await http.post(
            f"http://127.0.0.1:{settings.api_port}/v1/deals/{deal_id}/resume", headers=OPERATOR
        )
    done = await _until(client, deal_id, lambda s: s.stage == "completed")

    assert resumed.status_code == 202, resumed.text
    assert done.billing_customer_id is not None
    assert [c.fields for c in done.corrections] == [["/account/tax_id"]]
    assert await _listed(client, f"WorkflowId = '{deal_id}' AND QtcBlockedStep IS NOT NULL") == []


async def test_a_provisioning_outage_shows_as_a_retrying_step_and_clears(
    stack: Stack, client: Client
) -> None:
    settings = stack.settings
    backend = settings.provisioning_url.removesuffix("/v1/provision")
    await _faults(backend, [{"path": "/v1/provision", "rate_500": 1.0}])
    deal_id = await _start(client, settings, _priced(settings, "Stuck on provisioning"))
    try:
        await _sign(settings, client, deal_id)
        retrying = await _until(
            client, deal_id, lambda s: s.last_error is not None and s.last_error.retrying
        )
        pending = await _eventually(lambda: _pending(client, deal_id))
        listed = await _eventually(
            lambda: _listed(client, f"QtcBlockedStep = '{ACT_PROVISION_PRODUCT}'")
        )
    finally:
        await _faults(backend, [])

    assert retrying.stage == "invoice_sent"
    assert retrying.last_error is not None
    assert retrying.last_error.step == ACT_PROVISION_PRODUCT
    assert pending["activity"] == ACT_PROVISION_PRODUCT
    assert pending["attempt"] >= 1
    assert "500" in pending["last_failure"]
    assert deal_id in listed
    done = await _until(client, deal_id, lambda s: s.stage == "completed", timeout_s=90)
    assert done.provisioned_features


async def test_a_docusign_outage_keeps_the_contract_step_visible_until_it_is_sent(
    stack: Stack, client: Client
) -> None:
    settings = stack.settings
    docusign = settings.docusign_base_path.removesuffix("/restapi")
    await _faults(docusign, [{"path": ".*/envelopes$", "method": "POST", "rate_500": 1.0}])
    try:
        deal_id = await _start(client, settings, _priced(settings, "Stuck on DocuSign"))
        retrying = await _until(
            client, deal_id, lambda s: s.last_error is not None and s.last_error.retrying
        )
        pending = await _eventually(lambda: _pending(client, deal_id))
    finally:
        await _faults(docusign, [])

    assert retrying.stage == "contract_sent"
    assert pending["activity"] == ACT_SEND_CONTRACT
    assert "500" in pending["last_failure"]
    await _sign(settings, client, deal_id)
    done = await _until(client, deal_id, lambda s: s.stage == "completed", timeout_s=90)
    assert done.envelope_id is not None


async def _pending(client: Client, deal_id: str) -> dict[str, Any] | None:
    described = await client.get_workflow_handle(deal_id).describe()
    for activity in described.raw_description.pending_activities:
        if activity.attempt >= 1 and activity.last_failure.message:
            return {
                "activity": activity.activity_type.name,
                "attempt": activity.attempt,
                "last_failure": activity.last_failure.message,
            }
    return None


async def _eventually(probe: Callable[[], Any], timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("never found")
        await asyncio.sleep(0.3)


async def _screenshot_deal_page(stack: Stack, deal_id: str) -> Path:
    url = f"{stack.web_ui_url}/namespaces/default/workflows/{deal_id}"
    async with browser_page() as page:
        await page.goto(url)
        await page.wait_for_text(deal_id, "User Metadata")
        await page.click_text("User Metadata")
        try:
            await page.wait_for_text("create_billing_customer", "qtc deal correct", timeout_s=20)
        except AssertionError:
            await page.screenshot(ARTIFACTS / "webui-blocked-deal-failed.png")
            raise
        shot = await page.screenshot(ARTIFACTS / "webui-blocked-deal.png")
    assert shot.stat().st_size > 10_000
    return shot
