"""A deal started by HubSpot: the emulator delivers a v3-signed ``deal.propertyChange`` to the real
API (served over HTTP), the API reads the deal from HubSpot and starts it, a ``QTC_CRM=hubspot``
worker process runs it to the end, and HubSpot ends with the deal Closed Won and the billing ids."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from hubspot import HubSpot
from temporalio.client import Client

from integrations.hubspot.activities import HubSpotCrm
from integrations.hubspot.client import build_hubspot_client
from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from runtime.settings import Settings
from runtime.temporal import connect
from sandbox.hubspot.app import SANDBOX_TOKEN
from sandbox.hubspot.seed import seed_deal
from starters.api import create_app
from tests.e2e.conftest import Deployment
from tests.e2e.support import (
    CATALOG,
    ROOT,
    Emulated,
    settings_from,
    sign_contract,
    wait_for_stage,
)
from tests.stack_support import free_port


@dataclass
class HubSpotDeployment:
    deployment: Deployment
    settings: Settings
    api_url: str


@pytest.fixture
def hubspot(deployment: Deployment) -> Iterator[HubSpotDeployment]:
    """The deployment with QTC_CRM=hubspot: its worker process and the API over real HTTP, the
    HubSpot emulator delivering its webhooks to that API."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    deployment.env.update({"QTC_CRM": "hubspot", "QTC_API_PUBLIC_URL": api_url})
    settings = settings_from(deployment.env)
    worker = deployment.worker("worker-hubspot").start()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.01)
    httpx.post(
        f"{deployment.emulators.hubspot_url}/_sandbox/webhooks",
        json={"target_url": f"{api_url}/webhooks/hubspot", "initial_backoff_s": 0.1},
    ).raise_for_status()
    try:
        yield HubSpotDeployment(deployment, settings, api_url)
    finally:
        server.should_exit = True
        thread.join(10)
        worker.stop()


async def test_a_deal_moved_to_contract_sent_in_hubspot_runs_to_a_sent_invoice_and_closed_won(
    hubspot: HubSpotDeployment,
) -> None:
    emulators = hubspot.deployment.emulators
    crm = HubSpotCrm(build_hubspot_client(SANDBOX_TOKEN, emulators.hubspot_url))
    assert crm.ensure_schema(create=True).complete
    hs = HubSpot(access_token=SANDBOX_TOKEN, host=emulators.hubspot_url)
    seeded = seed_deal(hs, quote_id="Q-HS-E2E", stage="decisionmakerboughtin")

    # The salesperson moves the deal; HubSpot delivers the signed stage change to the API.
    hs.crm.deals.basic_api.update(seeded.deal_id, {"properties": {"dealstage": "contractsent"}})

    client: Client = await connect(hubspot.settings)
    deal_id = f"deal-{seeded.deal_id}"
    await sign_contract(client, emulators, deal_id)
    done = await wait_for_stage(client, deal_id, "completed", timeout_s=60)

    assert done.phase == 3
    assert done.stage_history[0].note == "started by hubspot-webhook:dealstage"
    vendors = Emulated(emulators)
    assert [c.id for c in vendors.customers(deal_id)] == [done.billing_customer_id]
    invoice = vendors.stripe.invoices.retrieve(done.billing_invoice_id or "")
    assert vendors.sent_events(invoice.id) == 1
    # What the salesperson priced in HubSpot, priced again here as of the signature.
    assert done.signature is not None
    priced = price_quote(
        crm.read_quote(seeded.deal_id), load_catalog(CATALOG), done.signature.completed_at
    )
    assert invoice.total == priced.first_invoice_total_minor
    assert sorted((line.quantity, line.amount) for line in invoice.lines.data) == sorted(
        (line.quantity, line.amount_minor) for line in priced.invoices[0].lines
    )
    assert invoice.status == "open"

    deal = hs.crm.deals.basic_api.get_by_id(
        seeded.deal_id,
        properties=[
            "dealstage",
            "qtc_deal_id",
            "qtc_billing_customer_id",
            "qtc_billing_subscription_id",
            "qtc_billing_invoice_id",
        ],
    ).properties
    assert deal["dealstage"] == "closedwon"
    assert deal["qtc_deal_id"] == deal_id
    assert deal["qtc_billing_customer_id"] == done.billing_customer_id
    assert deal["qtc_billing_subscription_id"] == done.billing_subscription_id
    assert deal["qtc_billing_invoice_id"] == done.billing_invoice_id
    deliveries = httpx.get(f"{emulators.hubspot_url}/_sandbox/deliveries").json()
    answers = [r["response"] for r in deliveries["requests"] if r["statusCode"] == 200]
    assert sum('"status":"started"' in answer for answer in answers) == 1


def qtc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starters.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_start_from_crm_reads_the_hubspot_deal_and_notes_a_refusal_on_it(
    hubspot: HubSpotDeployment,
) -> None:
    emulators = hubspot.deployment.emulators
    assert (
        HubSpotCrm(build_hubspot_client(SANDBOX_TOKEN, emulators.hubspot_url))
        .ensure_schema(create=True)
        .complete
    )
    hs = HubSpot(access_token=SANDBOX_TOKEN, host=emulators.hubspot_url)
    good = seed_deal(hs, quote_id="Q-HS-CLI")
    bad = seed_deal(
        hs,
        quote_id="Q-HS-CLI-BAD",
        lines=[{"hs_sku": "PLATFORM-PRO", "quantity": "1", "hs_discount_percentage": "10"}],
    )

    started = qtc(hubspot.deployment.env, "deal", "start-from-crm", good.deal_id, "--json")
    refused = qtc(hubspot.deployment.env, "deal", "start-from-crm", bad.deal_id, "--json")

    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout) == {"deal_id": f"deal-{good.deal_id}", "created": True}
    client = await connect(hubspot.settings)
    await wait_for_stage(client, f"deal-{good.deal_id}", "awaiting_signature")
    assert refused.returncode == 2, refused.stderr
    assert {e["code"] for e in json.loads(refused.stdout)["errors"]} == {"quantity_out_of_range"}
    notes = hs.crm.associations.v4.basic_api.get_page("deals", bad.deal_id, "notes").results
    assert len(notes) == 1
    body = hs.crm.objects.notes.basic_api.get_by_id(
        notes[0].to_object_id, properties=["hs_note_body"]
    ).properties["hs_note_body"]
    assert "quantity_out_of_range" in body


def test_a_worker_on_a_portal_without_the_qtc_properties_says_what_to_create(
    deployment: Deployment,
) -> None:
    deployment.env.update({"QTC_CRM": "hubspot", "QTC_HUBSPOT_CREATE_PROPERTIES": "false"})
    with pytest.raises(AssertionError) as refused:
        deployment.worker("worker-hubspot-unprepared").start()
    said = str(refused.value)
    assert "a vendor is not configured: the HubSpot portal lacks" in said
    assert "deals.qtc_term_months" in said
    assert "QTC_HUBSPOT_CREATE_PROPERTIES=true" in said
