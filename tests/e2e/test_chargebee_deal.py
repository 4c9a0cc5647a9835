"""Whole deals billed by Chargebee (``QTC_BILLING=chargebee``): the real dev server, the worker in
its own process, the Chargebee emulator read back through the official SDK.

The crash tests kill the worker while Chargebee holds its request (latency injected on the
emulator), as ``test_exactly_once`` does for Stripe; the two crashes run concurrently, each with
its own namespace, task queue, emulators and workers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from integrations.chargebee.client import chargebee_client
from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from qtc.deal import SIGNAL_APPROVE_INVOICE, DealStatus, InvoiceReview
from qtc.models import PricedQuote
from qtc.ports import ACT_CREATE_SUBSCRIPTION, ACT_SEND_FIRST_INVOICE
from runtime.settings import Settings
from runtime.temporal import connect
from sandbox.chargebee.testing import API_KEY, SITE
from sandbox.runner import EmulatorPorts, RunningEmulators, start_emulators
from service import deals
from tests.e2e.conftest import Deployment, temporal_address
from tests.e2e.support import (
    CATALOG,
    Emulated,
    WorkerProcess,
    new_opportunity,
    qtc_env,
    quote_file,
    salesforce,
    settings_from,
    sign_contract,
    wait_for_stage,
)
from tests.e2e.test_exactly_once import (
    Recovery,
    Step,
    clear_faults,
    recovery_of,
    set_latency,
    wait_until_request_in_flight,
)

RECOVERY_TIMEOUT_S = 120.0


class ChargebeeSite:
    """What the Chargebee emulator holds, read through the official SDK and its control plane."""

    def __init__(self, emulators: RunningEmulators) -> None:
        self.url = emulators.chargebee_url
        self.cb = chargebee_client(api_key=API_KEY, site=SITE, api_base=self.url)

    def customers(self) -> list[Any]:
        return [row.customer for row in self.cb.Customer.list({"limit": 100}).list]

    def subscriptions(self) -> list[Any]:
        return [row.subscription for row in self.cb.Subscription.list({"limit": 100}).list]

    def invoices(self) -> list[Any]:
        return [row.invoice for row in self.cb.Invoice.list({"limit": 100}).list]

    def emails(self) -> list[dict[str, Any]]:
        emails: list[dict[str, Any]] = httpx.get(f"{self.url}/_sandbox/emails").json()["emails"]
        return emails

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.url}/_sandbox/stats").json()
        return stats


def chargebee_env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "QTC_BILLING": "chargebee"}


def billed(invoice: Any) -> list[tuple[int, int, int]]:
    return sorted((li.quantity, li.unit_amount, li.amount) for li in invoice.line_items)


def quoted(status: DealStatus) -> list[tuple[int, int, int]]:
    assert status.invoice_preview is not None
    return sorted(
        (line.quantity, line.unit_amount_minor, line.amount_minor)
        for line in status.invoice_preview.lines
    )


def priced_example(directory: Path, example: str, opportunity_id: str) -> PricedQuote:
    quote = quote_file(directory, example, opportunity_id)
    return price_quote(quote.read_bytes(), load_catalog(CATALOG), datetime.now(UTC))


def assert_billed_once_as_quoted(site: ChargebeeSite, done: DealStatus) -> None:
    """One customer, one subscription and one e-mailed first invoice equal to the priced quote."""
    assert done.stage == "completed"
    assert [c.id for c in site.customers()] == [done.billing_customer_id]
    subscriptions = site.subscriptions()
    assert [s.id for s in subscriptions] == [done.billing_subscription_id]
    assert subscriptions[0].customer_id == done.billing_customer_id
    invoices = site.invoices()
    assert [i.id for i in invoices] == [done.billing_invoice_id]
    invoice = invoices[0]
    assert invoice.status == "payment_due"
    assert done.invoice_preview is not None
    assert invoice.total == done.invoice_preview.total_minor
    assert billed(invoice) == quoted(done)
    assert [e["invoice_id"] for e in site.emails()] == [invoice.id]


async def test_a_phase_3_deal_on_chargebee_completes_with_one_customer_subscription_and_invoice(
    deployment: Deployment, client: Client, tmp_path: Path
) -> None:
    worker = WorkerProcess(chargebee_env(deployment.env), tmp_path / "worker.log").start()
    try:
        opportunity_id = new_opportunity(deployment.sf, "Initech on Chargebee")
        priced = priced_example(tmp_path, "quote-phase3.json", opportunity_id)
        started = await deals.start_deal(
            client,
            Settings(temporal_task_queue=deployment.task_queue),
            priced,
            phase=3,
            started_by="e2e",
        )
        await sign_contract(client, deployment.emulators, started.deal_id)
        done = await wait_for_stage(client, started.deal_id, "completed", timeout_s=60)
    finally:
        worker.stop()

    site = ChargebeeSite(deployment.emulators)
    assert_billed_once_as_quoted(site, done)
    assert done.invoice_preview == priced.invoices[0]
    assert done.billing_customer_id == f"qtc-{started.deal_id}"
    # Chargebee billed it: Stripe holds nothing of this deal.
    assert Emulated(deployment.emulators).customers(started.deal_id) == []
    opportunity = Emulated(deployment.emulators).opportunity(deployment.sf, opportunity_id)
    assert opportunity["StageName"] == "Closed Won"
    assert opportunity["Stripe_Customer_Id__c"] == done.billing_customer_id
    assert opportunity["Stripe_Invoice_Id__c"] == done.billing_invoice_id


async def test_a_phase_2_review_shows_exactly_the_invoice_chargebee_then_sends(
    deployment: Deployment, client: Client, tmp_path: Path
) -> None:
    worker = WorkerProcess(chargebee_env(deployment.env), tmp_path / "worker.log").start()
    try:
        opportunity_id = new_opportunity(deployment.sf, "Globex on Chargebee")
        priced = priced_example(tmp_path, "quote-phase2.json", opportunity_id)
        started = await deals.start_deal(
            client,
            Settings(temporal_task_queue=deployment.task_queue),
            priced,
            phase=2,
            started_by="e2e",
        )
        await sign_contract(client, deployment.emulators, started.deal_id)
        waiting = await wait_for_stage(client, started.deal_id, "awaiting_invoice_review")
        site = ChargebeeSite(deployment.emulators)
        assert [c.id for c in site.customers()] == [waiting.billing_customer_id]
        assert site.subscriptions() == []
        assert waiting.invoice_preview == priced.invoices[0]

        review = InvoiceReview(reviewer="fiona@example.com", note="matches the order form")
        await deals.signal(client, started.deal_id, SIGNAL_APPROVE_INVOICE, review)
        done = await wait_for_stage(client, started.deal_id, "completed", timeout_s=60)
    finally:
        worker.stop()

    # What finance approved is, line for line and to the cent, what Chargebee e-mailed.
    assert done.invoice_preview == waiting.invoice_preview
    assert_billed_once_as_quoted(site, done)


# --- worker killed inside a Chargebee call ------------------------------------------------------


def chargebee_landed(kind: str) -> Any:
    def landed(vendors: Emulated) -> bool:
        url = vendors.emulators.chargebee_url
        return bool(httpx.get(f"{url}/_sandbox/stats").json()[kind])

    return landed


CRASH_STEPS = [
    Step(
        ACT_CREATE_SUBSCRIPTION,
        "chargebee",
        r"^/api/v2/customers/[^/]+/subscription_for_items$",
        chargebee_landed("subscriptions"),
    ),
    Step(
        ACT_SEND_FIRST_INVOICE,
        "chargebee",
        r"^/api/v2/invoices/[^/]+/send_email$",
        chargebee_landed("emails"),
    ),
]


@dataclass
class CrashOutcome:
    status: DealStatus
    customers: int
    subscriptions: int
    invoices: int
    emails: int
    billed_as_quoted: bool
    landed: bool
    recovery: Recovery
    log: str


async def crash_in(
    step: Step, temporal: WorkflowEnvironment, namespace: str, directory: Path
) -> CrashOutcome:
    directory.mkdir(parents=True)
    emulators = await asyncio.to_thread(
        start_emulators, directory / "emulators", ports=EmulatorPorts()
    )
    env = chargebee_env(
        qtc_env(
            temporal_address(temporal), namespace, f"crash-{uuid.uuid4()}", emulators, directory
        )
    )
    first = WorkerProcess(env, directory / "worker-1.log")
    second = WorkerProcess(env, directory / "worker-2.log")
    try:
        client = await connect(settings_from(env))
        sf = salesforce(emulators)
        opportunity_id = await asyncio.to_thread(new_opportunity, sf, f"crash in {step.activity}")
        priced = priced_example(directory, "quote-phase3.json", opportunity_id)
        await asyncio.to_thread(first.start)
        async with httpx.AsyncClient(timeout=10) as http:
            await set_latency(http, emulators, step)
            deal_id = (
                await deals.start_deal(
                    client,
                    Settings(temporal_task_queue=env["QTC_TEMPORAL_TASK_QUEUE"]),
                    priced,
                    phase=3,
                    started_by="e2e",
                )
            ).deal_id
            await sign_contract(client, emulators, deal_id)
            await wait_until_request_in_flight(http, emulators, step)
            first.kill()
            await clear_faults(http, emulators, step)
        deadline = time.monotonic() + 20
        landed = False
        while not landed and time.monotonic() < deadline:
            landed = await asyncio.to_thread(step.landed, Emulated(emulators))
            await asyncio.sleep(0.1)
        await asyncio.to_thread(second.start)
        done = await wait_for_stage(client, deal_id, "completed", timeout_s=RECOVERY_TIMEOUT_S)
        await asyncio.to_thread(second.stop)
        recovery = await recovery_of(client, deal_id, step.activity)
        site = ChargebeeSite(emulators)
        invoices = await asyncio.to_thread(site.invoices)
        return CrashOutcome(
            status=done,
            customers=len(await asyncio.to_thread(site.customers)),
            subscriptions=len(await asyncio.to_thread(site.subscriptions)),
            invoices=len(invoices),
            emails=len(await asyncio.to_thread(site.emails)),
            billed_as_quoted=bool(invoices)
            and billed(invoices[0]) == quoted(done)
            and invoices[0].total == priced.first_invoice_total_minor,
            landed=landed,
            recovery=recovery,
            log=second.tail(),
        )
    finally:
        first.kill()
        second.kill()
        await asyncio.to_thread(emulators.stop)


@pytest_asyncio.fixture(scope="module")
async def crashes(
    temporal: WorkflowEnvironment, namespaces: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, CrashOutcome | BaseException]:
    root = tmp_path_factory.mktemp("chargebee-crashes")
    results = await asyncio.gather(
        *(crash_in(s, temporal, next(namespaces), root / s.activity) for s in CRASH_STEPS),
        return_exceptions=True,
    )
    return {s.activity: r for s, r in zip(CRASH_STEPS, results, strict=True)}


def outcome(crashes: dict[str, CrashOutcome | BaseException], activity: str) -> CrashOutcome:
    result = crashes[activity]
    if isinstance(result, BaseException):
        raise result
    return result


@pytest.mark.parametrize("activity", [s.activity for s in CRASH_STEPS])
async def test_a_worker_killed_inside_a_chargebee_call_still_bills_the_deal_once(
    crashes: dict[str, CrashOutcome | BaseException], activity: str
) -> None:
    result = outcome(crashes, activity)
    assert result.status.stage == "completed", result.log
    assert (result.customers, result.subscriptions, result.invoices, result.emails) == (1, 1, 1, 1)
    assert result.billed_as_quoted
    # The killed request reached Chargebee, and the deal kept one run of the step.
    assert result.landed
    assert result.recovery.task_timed_out
    assert result.recovery.recorded == 1
