"""Whole deals on the real dev server, the worker in its own process, the emulators as vendors."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
from temporalio.client import Client

from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from qtc.deal import DealStatus
from runtime.settings import Settings
from service import deals
from tests.e2e.conftest import Deployment
from tests.e2e.support import (
    CATALOG,
    ROOT,
    Emulated,
    WorkerProcess,
    new_opportunity,
    quote_file,
    sign_contract,
    wait_for_stage,
)


def qtc(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starters.cli", *args],
        cwd=ROOT,
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def billed_lines(preview: DealStatus) -> list[tuple[int, int]]:
    assert preview.invoice_preview is not None
    return sorted((line.quantity, line.amount_minor) for line in preview.invoice_preview.lines)


async def test_phase_3_deal_runs_from_signature_to_a_sent_invoice_and_a_live_tenant(
    deployment: Deployment, worker: WorkerProcess, client: Client, tmp_path: Path
) -> None:
    opportunity_id = new_opportunity(deployment.sf, "Initech renewal")
    quote = quote_file(tmp_path, "quote-phase3.json", opportunity_id)

    started = qtc(deployment, "deal", "start", str(quote), "--phase", "3", "--json")
    assert started.returncode == 0, started.stderr
    deal_id = json.loads(started.stdout)["deal_id"]
    assert json.loads(started.stdout) == {"deal_id": f"deal-{opportunity_id}", "created": True}

    await sign_contract(client, deployment.emulators, deal_id)
    done = await wait_for_stage(client, deal_id, "completed", timeout_s=60)

    vendors = Emulated(deployment.emulators)
    customers = vendors.customers(deal_id)
    assert [c.id for c in customers] == [done.billing_customer_id]
    assert [s.id for s in vendors.schedules(done.billing_customer_id or "")] == [
        done.billing_schedule_id
    ]
    assert [s.id for s in vendors.subscriptions(done.billing_customer_id or "")] == [
        done.billing_subscription_id
    ]
    invoice = vendors.stripe.invoices.retrieve(done.billing_invoice_id or "")
    assert invoice.status == "open"
    assert vendors.sent_events(invoice.id) == 1
    assert sorted((line.quantity, line.amount) for line in invoice.lines.data) == billed_lines(done)
    assert done.invoice_preview is not None
    assert invoice.total == done.invoice_preview.total_minor
    tenant = vendors.tenant(done.billing_customer_id or "")
    assert tenant is not None
    stats = vendors.provisioning_stats()
    assert (stats["provision_calls"], stats["provisioned"], stats["tenants"]) == (1, 1, 1)
    opportunity = vendors.opportunity(deployment.sf, opportunity_id)
    assert opportunity["StageName"] == "Closed Won"
    assert opportunity["Stripe_Customer_Id__c"] == done.billing_customer_id
    assert opportunity["Stripe_Subscription_Id__c"] == done.billing_subscription_id
    assert opportunity["Stripe_Invoice_Id__c"] == done.billing_invoice_id

    status = qtc(deployment, "deal", "status", deal_id, "--json")
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    assert document["stage"] == "completed"
    assert document["billing_invoice_id"] == done.billing_invoice_id
    assert [e["stage"] for e in document["stage_history"]][-1] == "completed"

    readable = qtc(deployment, "deal", "status", opportunity_id)
    assert readable.returncode == 0, readable.stderr
    assert "Stage: completed" in readable.stdout
    assert str(done.billing_invoice_id) in readable.stdout

    again = qtc(deployment, "deal", "start", str(quote), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"deal_id": deal_id, "created": False}


async def test_phase_2_deal_waits_for_finance_and_is_released_by_the_approval(
    deployment: Deployment, worker: WorkerProcess, client: Client, tmp_path: Path
) -> None:
    opportunity_id = new_opportunity(deployment.sf, "Globex expansion")
    quote = quote_file(tmp_path, "quote-phase2.json", opportunity_id)
    priced = price_quote(quote.read_bytes(), load_catalog(CATALOG), datetime.now(UTC))
    started = await deals.start_deal(
        client,
        Settings(temporal_task_queue=deployment.task_queue),
        priced,
        phase=2,
        started_by="e2e",
    )

    await sign_contract(client, deployment.emulators, started.deal_id)
    waiting = await wait_for_stage(client, started.deal_id, "awaiting_invoice_review")
    vendors = Emulated(deployment.emulators)
    assert waiting.billing_customer_id is not None
    assert vendors.schedules(waiting.billing_customer_id) == []

    listed = qtc(deployment, "review", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["deal_id"]: row for row in json.loads(listed.stdout)["deals"]}
    assert rows[started.deal_id]["invoice_preview"]["total_minor"] == priced.invoices[0].total_minor

    readable = qtc(deployment, "review", "list")
    assert readable.returncode == 0, readable.stderr
    assert started.deal_id in readable.stdout
    assert "First invoice" in readable.stdout

    approved = qtc(
        deployment,
        "review",
        "approve",
        started.deal_id,
        "--as",
        "fiona@example.com",
        "--note",
        "ok",
    )
    assert approved.returncode == 0, approved.stderr
    done = await wait_for_stage(client, started.deal_id, "completed", timeout_s=60)
    assert done.invoice_review is not None
    assert done.invoice_review.reviewer == "fiona@example.com"
    assert [s.id for s in vendors.schedules(waiting.billing_customer_id)] == [
        done.billing_schedule_id
    ]
    assert vendors.sent_events(done.billing_invoice_id or "") == 1


async def test_closed_won_starter_starts_the_deal_from_the_crm_opportunity(
    deployment: Deployment, worker: WorkerProcess, client: Client
) -> None:
    seeded = "006000000000001AAA"  # Q-1001, Acme Robotics, in the Salesforce emulator's seed

    started = qtc(deployment, "deal", "start-from-crm", seeded, "--phase", "1", "--json")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout) == {"deal_id": f"deal-{seeded}", "created": True}
    waiting = await wait_for_stage(client, f"deal-{seeded}", "awaiting_signature")
    assert (waiting.quote_id, waiting.phase) == ("Q-1001", 1)
    assert waiting.customer == "Acme Robotics, Inc."

    await sign_contract(client, deployment.emulators, f"deal-{seeded}")
    done = await wait_for_stage(client, f"deal-{seeded}", "completed")
    assert done.billing_customer_id is None  # phase 1 hands off to finance after Closed Won
    opportunity = Emulated(deployment.emulators).opportunity(deployment.sf, seeded)
    assert opportunity["StageName"] == "Closed Won"


async def test_a_deal_marked_lost_before_signature_voids_its_contract(
    deployment: Deployment, worker: WorkerProcess, client: Client, tmp_path: Path
) -> None:
    opportunity_id = new_opportunity(deployment.sf, "Hooli pilot")
    quote = quote_file(tmp_path, "quote-phase3.json", opportunity_id)
    started = qtc(deployment, "deal", "start", str(quote), "--json")
    assert started.returncode == 0, started.stderr
    deal_id = json.loads(started.stdout)["deal_id"]
    waiting = await wait_for_stage(client, deal_id, "awaiting_signature")

    lost = qtc(
        deployment, "deal", "lost", deal_id, "--reason", "went with a competitor", "--as", "sam"
    )
    assert lost.returncode == 0, lost.stderr
    done = await wait_for_stage(client, deal_id, "lost")

    assert done.stage_history[-1].note == "marked lost by sam: went with a competitor"
    async with httpx.AsyncClient(timeout=10) as http:
        signing = await http.post(
            f"{deployment.emulators.docusign_url}/_sandbox/envelopes/{waiting.envelope_id}/sign"
        )
    assert signing.status_code == 409
    assert "'voided'" in signing.text


async def test_qtc_deal_amend_bills_ten_more_seats_on_the_original_customer(
    deployment: Deployment, worker: WorkerProcess, client: Client, tmp_path: Path
) -> None:
    original_id = new_opportunity(deployment.sf, "Acme monthly")
    original_quote = quote_file(tmp_path, "quote-amendable.json", original_id)
    started = qtc(deployment, "deal", "start", str(original_quote), "--json")
    assert started.returncode == 0, started.stderr
    original_deal = json.loads(started.stdout)["deal_id"]

    amendment_id = new_opportunity(deployment.sf, "Acme +10 seats")
    amendment = json.loads((ROOT / "examples" / "amendment-seats.json").read_text())
    amendment.update(opportunity_id=amendment_id, amends=original_deal)
    amendment_file = tmp_path / "amendment.json"
    amendment_file.write_text(json.dumps(amendment))
    # Before the original is billed there is nothing to amend.
    early = qtc(deployment, "deal", "amend", original_deal, str(amendment_file), "--json")
    assert early.returncode == 2, early.stderr
    assert [e["code"] for e in json.loads(early.stdout)["errors"]] == ["original_not_billed"]

    await sign_contract(client, deployment.emulators, original_deal)
    original = await wait_for_stage(client, original_deal, "completed", timeout_s=60)
    amended = qtc(deployment, "deal", "amend", original_deal, str(amendment_file), "--json")
    assert amended.returncode == 0, amended.stderr
    document = json.loads(amended.stdout)
    assert document["deal_id"] == f"deal-{amendment_id}" and document["created"] is True
    await sign_contract(client, deployment.emulators, document["deal_id"])
    done = await wait_for_stage(client, document["deal_id"], "completed", timeout_s=60)

    vendors = Emulated(deployment.emulators)
    assert done.billing_customer_id == original.billing_customer_id
    assert vendors.customers(document["deal_id"]) == []  # no second customer
    invoice = vendors.stripe.invoices.retrieve(done.billing_invoice_id or "")
    assert invoice.customer == original.billing_customer_id
    assert invoice.status == "open" and vendors.sent_events(invoice.id) == 1
    assert done.priced_amendment is not None
    assert invoice.total == done.priced_amendment.first_invoice_total_minor
    assert [line.quantity for line in invoice.lines.data] == [10]
    upcoming = vendors.stripe.invoices.create_preview(
        params={"subscription": original.billing_subscription_id or ""}
    )
    assert [line.quantity for line in upcoming.lines.data] == [60]
    tenant = vendors.tenant(original.billing_customer_id or "")
    assert tenant is not None
    assert vendors.opportunity(deployment.sf, amendment_id)["StageName"] == "Closed Won"
