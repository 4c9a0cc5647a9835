"""A whole phase-3 deal with ``QTC_ERP=netsuite`` on the real dev server: the worker in its own
process, NetSuite played by its emulator (token-based authentication, external-id upserts)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from qtc.deal import SIGNAL_RESUME, DealStatus, Resume
from service import deals
from tests.e2e.conftest import Deployment
from tests.e2e.support import ROOT, new_opportunity, quote_file, sign_contract
from tests.e2e.support import wait_for_stage as stage_reached

INVOICE_UPSERT = r"^/services/rest/record/v1/invoice/eid:"
LATENCY_MS = 4_000  # holds the invoice upsert in flight long enough to kill the worker inside it


@pytest.fixture
def on_netsuite(deployment: Deployment) -> Deployment:
    deployment.env["QTC_ERP"] = "netsuite"
    return deployment


def netsuite(deployment: Deployment, path: str) -> Any:
    return httpx.get(f"{deployment.emulators.netsuite_url}{path}", timeout=10).json()


def start_phase_3(deployment: Deployment, tmp_path: Path, name: str) -> str:
    opportunity_id = new_opportunity(deployment.sf, name)
    quote = quote_file(tmp_path, "quote-phase3.json", opportunity_id)
    started = subprocess.run(
        [sys.executable, "-m", "starters.cli", "deal", "start", str(quote), "--json"],
        cwd=ROOT,
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    deal_id: str = json.loads(started.stdout)["deal_id"]
    return deal_id


def assert_one_customer_and_invoice_equal_to_the_first_invoice(
    deployment: Deployment, done: DealStatus
) -> dict[str, Any]:
    records = netsuite(deployment, "/_sandbox/records")
    [customer], [invoice] = records["customer"], records["invoice"]
    assert customer["externalId"] == f"qtc-{done.billing_customer_id}"
    assert invoice["externalId"] == f"qtc-{done.billing_invoice_id}"
    assert (done.erp, done.erp_customer_id, done.erp_invoice_id) == (
        "netsuite",
        customer["id"],
        invoice["id"],
    )
    first = done.invoice_preview
    assert first is not None
    expected = [
        (
            line.sku,
            line.quantity,
            line.unit_amount_minor,
            line.amount_minor,
            str(line.period_start or first.date),
            str((line.period_end - timedelta(days=1)) if line.period_end else first.date),
        )
        for line in first.lines
    ]
    recorded = [
        (
            line["item"]["refName"],
            line["quantity"],
            round(line["rate"] * 100),
            round(line["amount"] * 100),
            line["revRecStartDate"],
            line["revRecEndDate"],
        )
        for line in invoice["item"]["items"]
    ]
    assert recorded == expected
    assert round(invoice["total"] * 100) == first.total_minor
    assert invoice["currency"]["refName"] == "GBP"
    assert invoice["memo"] == done.invoice_number
    assert invoice["tranDate"] == str(first.date)
    return invoice


async def test_phase_3_deal_with_netsuite_completes_through_erp_synced(
    on_netsuite: Deployment, client: Client, tmp_path: Path
) -> None:
    worker = on_netsuite.worker().start()
    try:
        deal_id = start_phase_3(on_netsuite, tmp_path, "Initech on NetSuite")
        await sign_contract(client, on_netsuite.emulators, deal_id)
        done = await stage_reached(client, deal_id, "completed", "needs_attention", timeout_s=60)
    finally:
        worker.stop()

    assert done.stage == "completed", done.last_error
    stages = [entry.stage for entry in done.stage_history]
    assert stages[-4:] == ["invoice_sent", "erp_synced", "provisioned", "completed"]
    assert_one_customer_and_invoice_equal_to_the_first_invoice(on_netsuite, done)
    received = netsuite(on_netsuite, "/_sandbox/requests")["data"]
    assert all(entry["auth"] == "ok" for entry in received)


async def wait_for_held_upsert(deployment: Deployment) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        received = netsuite(deployment, "/_sandbox/requests")["data"]
        if any(e["method"] == "PUT" and "/invoice/eid:" in e["path"] for e in received):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the invoice upsert never reached NetSuite")


async def test_a_worker_killed_during_the_erp_step_leaves_one_customer_and_one_invoice(
    on_netsuite: Deployment, client: Client, tmp_path: Path
) -> None:
    faults = f"{on_netsuite.emulators.netsuite_url}/_sandbox/faults"
    rules = [{"path": INVOICE_UPSERT, "method": "PUT", "latency_ms": LATENCY_MS}]
    httpx.post(faults, json={"rules": rules}).raise_for_status()
    first = on_netsuite.worker("worker-1").start()
    try:
        deal_id = start_phase_3(on_netsuite, tmp_path, "Initech, worker killed")
        await sign_contract(client, on_netsuite.emulators, deal_id)
        await wait_for_held_upsert(on_netsuite)
        first.kill()
    finally:
        first.stop()
    httpx.post(faults, json={}).raise_for_status()

    second = on_netsuite.worker("worker-2").start()
    try:
        done = await stage_reached(client, deal_id, "completed", "needs_attention", timeout_s=90)
    finally:
        second.stop()

    assert done.stage == "completed", done.last_error
    invoice = assert_one_customer_and_invoice_equal_to_the_first_invoice(on_netsuite, done)
    upserts = [
        entry
        for entry in netsuite(on_netsuite, "/_sandbox/requests")["data"]
        if entry["method"] == "PUT" and "/invoice/eid:" in entry["path"]
    ]
    # The killed attempt's upsert landed, and the retry updated that invoice instead of adding
    # a second one or a second set of lines.
    assert [entry.get("status") for entry in upserts] == [204, 204]
    assert done.invoice_preview is not None
    assert len(invoice["item"]["items"]) == len(done.invoice_preview.lines)


async def test_a_sku_missing_in_netsuite_parks_the_deal_and_a_resume_after_the_fix_completes_it(
    on_netsuite: Deployment, client: Client, tmp_path: Path
) -> None:
    items = f"{on_netsuite.emulators.netsuite_url}/_sandbox/items/EXTRA-STORAGE-TB"
    httpx.delete(items).raise_for_status()
    worker = on_netsuite.worker().start()
    try:
        deal_id = start_phase_3(on_netsuite, tmp_path, "Initech, item missing")
        await sign_contract(client, on_netsuite.emulators, deal_id)
        parked = await stage_reached(client, deal_id, "needs_attention", timeout_s=60)
        assert parked.last_error is not None
        assert parked.last_error.step == "sync_erp_invoice"
        assert "EXTRA-STORAGE-TB" in parked.last_error.message
        assert netsuite(on_netsuite, "/_sandbox/records")["invoice"] == []

        httpx.put(items, json={"displayName": "Extra Storage"}).raise_for_status()
        await deals.signal(client, deal_id, SIGNAL_RESUME, Resume(by="oscar.operator"))
        done = await stage_reached(client, deal_id, "completed", "needs_attention", timeout_s=60)
    finally:
        worker.stop()

    assert done.stage == "completed", done.last_error
    assert_one_customer_and_invoice_equal_to_the_first_invoice(on_netsuite, done)
