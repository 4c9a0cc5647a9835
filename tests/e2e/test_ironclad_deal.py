"""A whole phase-3 deal with ``QTC_ESIGN=ironclad``: the worker in its own process, the API
in-process receiving the Ironclad emulator's RSA-signed webhooks, the real dev server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from integrations.ironclad.client import IroncladApi
from integrations.ironclad.mapping import launch_attributes
from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from sandbox.ironclad.webhooks import new_private_key_pem, verification_headers
from sandbox.stripe.testing import serve_app
from starters.api.app import create_app
from tests.e2e.conftest import Deployment
from tests.e2e.support import (
    CATALOG,
    Emulated,
    WorkerProcess,
    new_opportunity,
    quote_file,
    settings_from,
    wait_for_stage,
)

SALES = {"Authorization": "Bearer sandbox-sales"}
API_KEY = "sandbox-ironclad-key"


@pytest.fixture
def on_ironclad(deployment: Deployment) -> Deployment:
    deployment.env["QTC_ESIGN"] = "ironclad"
    deployment.env["QTC_IRONCLAD_BASE_URL"] = deployment.emulators.ironclad_url
    return deployment


@pytest.fixture
def ironclad_worker(on_ironclad: Deployment) -> Iterator[WorkerProcess]:
    process = on_ironclad.worker().start()
    yield process
    process.stop()


@pytest.fixture
def api_url(on_ironclad: Deployment) -> Iterator[str]:
    """The API in this process, subscribed to the Ironclad emulator's webhook events."""
    settings = settings_from(on_ironclad.env)
    with serve_app(create_app(settings)) as url:
        httpx.post(
            f"{on_ironclad.emulators.ironclad_url}/public/api/v1/webhooks",
            json={
                "events": ["workflow_completed", "workflow_signature_packet_fully_signed"],
                "targetURL": f"{url}/webhooks/ironclad",
            },
            headers={"Authorization": f"Bearer {API_KEY}"},
        ).raise_for_status()
        yield url


def deliveries(deployment: Deployment, workflow_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = httpx.get(
        f"{deployment.emulators.ironclad_url}/_sandbox/deliveries",
        params={"workflow_id": workflow_id},
    ).json()["deliveries"]
    return found


def wait_delivered(deployment: Deployment, workflow_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = deliveries(deployment, workflow_id)
        if len(found) >= count and all(d["state"] == "delivered" for d in found):
            return found
        time.sleep(0.1)
    raise AssertionError(f"not delivered: {deliveries(deployment, workflow_id)}")


async def test_phase_3_deal_on_ironclad_runs_from_contract_to_completed(
    on_ironclad: Deployment,
    ironclad_worker: WorkerProcess,
    api_url: str,
    client: Client,
    tmp_path: Path,
) -> None:
    deployment = on_ironclad
    opportunity_id = new_opportunity(deployment.sf, "Initech on Ironclad")
    quote = json.loads(quote_file(tmp_path, "quote-phase3.json", opportunity_id).read_text())
    started = httpx.post(
        f"{api_url}/v1/deals", json={"quote": quote, "phase": 3}, headers=SALES, timeout=30
    )
    assert started.status_code == 201, started.text
    deal_id = started.json()["deal_id"]

    waiting = await wait_for_stage(client, deal_id, "awaiting_signature", timeout_s=60)
    workflow_id = waiting.envelope_id
    assert workflow_id is not None
    ironclad = deployment.emulators.ironclad_url
    state = httpx.get(f"{ironclad}/_sandbox/workflows").json()
    ours = [w for w in state["workflows"] if w["attributes"].get("qtcDealId") == deal_id]
    assert [w["id"] for w in ours] == [workflow_id]
    attributes = ours[0]["attributes"]
    priced = price_quote(json.dumps(quote), load_catalog(CATALOG), waiting.stage_history[0].at)
    assert attributes["opportunityId"] == opportunity_id
    assert attributes["counterpartyName"] == priced.account.legal_name
    assert [item["sku"] for item in attributes["lineItems"]] == [line.sku for line in priced.lines]

    # Refused before anything is read: missing, forged, or signed by a key not Ironclad's.
    body = json.dumps(
        {
            "companyID": "c",
            "payload": {
                "event": "workflow_completed",
                "templateID": "t",
                "workflowID": workflow_id,
            },
            "timestamp": "2026-12-15T10:00:00.000Z",
            "webhookID": "h",
        },
        separators=(",", ":"),
    ).encode()
    stranger = verification_headers(new_private_key_pem(), "evt-forged", body)
    json_type = {"Content-Type": "application/json"}
    for headers in (
        json_type,
        {**json_type, "X-Ironclad-Webhook-Event-Id": "evt-forged"},
        {**json_type, **stranger},
        {**json_type, **stranger, "X-Ironclad-Webhook-Verification": "{}"},
    ):
        refused = httpx.post(f"{api_url}/webhooks/ironclad", content=body, headers=headers)
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
    assert (await wait_for_stage(client, deal_id, "awaiting_signature")).signature is None

    # A workflow someone launched in Ironclad itself: its events are answered 200 and ignored.
    api = IroncladApi(ironclad, api_key=API_KEY)
    try:
        foreign = launch_attributes("unused", priced)
        del foreign["qtcDealId"], foreign["opportunityId"]
        theirs = await api.launch_workflow(
            "sandbox-order-form", foreign, creator_email="qtc-bot@sandbox.example"
        )
    finally:
        await api.aclose()
    httpx.post(f"{ironclad}/_sandbox/workflows/{theirs['id']}/sign").raise_for_status()
    for delivery in wait_delivered(deployment, theirs["id"], 2):
        assert [a["statusCode"] for a in delivery["attempts"]] == [200]

    signed = httpx.post(
        f"{ironclad}/_sandbox/workflows/{workflow_id}/sign", json={}
    ).raise_for_status()
    done = await wait_for_stage(client, deal_id, "completed", timeout_s=90)
    assert done.signature is not None
    assert done.signature.envelope_id == workflow_id
    assert done.signature.signer_email == priced.signer.email
    assert done.signature.completed_at.isoformat().startswith(signed.json()["signedAt"][:19])
    assert done.esign == "ironclad"
    for delivery in wait_delivered(deployment, workflow_id, 2):
        assert delivery["attempts"][-1]["statusCode"] == 200

    vendors = Emulated(deployment.emulators)
    customers = vendors.customers(deal_id)
    assert [c.id for c in customers] == [done.billing_customer_id]
    invoices = vendors.invoices(done.billing_customer_id or "")
    assert [i.id for i in invoices] == [done.billing_invoice_id]
    assert vendors.sent_events(invoices[0].id) == 1
    assert done.invoice_preview is not None
    assert invoices[0].total == done.invoice_preview.total_minor
    signed_quote = price_quote(
        json.dumps(quote), load_catalog(CATALOG), done.signature.completed_at
    )
    assert invoices[0].total == signed_quote.first_invoice_total_minor
    assert sorted((line.quantity, line.amount) for line in invoices[0].lines.data) == sorted(
        (line.quantity, line.amount_minor) for line in signed_quote.invoices[0].lines
    )
    after = httpx.get(f"{ironclad}/_sandbox/workflows").json()
    assert [w["id"] for w in after["workflows"] if w["attributes"].get("qtcDealId") == deal_id] == [
        workflow_id
    ]
