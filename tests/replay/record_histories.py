"""Record the histories the replay test runs today's DealWorkflow against.

Run after a deliberate, compatible workflow change (never to make a failing replay test pass: a
failure there means running deals would break)::

    .venv/bin/python -m tests.replay.record_histories [PATH_NAME ...]

Each main path runs once against the fake vendors on the time-skipping server and its history is
written to ``tests/replay/histories/<path>.json``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError

from qtc.amendments import amendment_deal_quote, price_amendment
from qtc.catalog import load_catalog
from qtc.deal import (
    QUERY_STATUS,
    SIGNAL_APPROVE_INVOICE,
    SIGNAL_APPROVE_QUOTE,
    SIGNAL_MARK_LOST,
    SIGNAL_RESUME,
    SIGNAL_SIGNATURE_COMPLETED,
    UPDATE_CANCEL,
    UPDATE_CORRECT_ACCOUNT,
    AccountCorrection,
    AmendmentTerms,
    Cancel,
    DealStatus,
    DecisionResult,
    InvoiceReview,
    MarkLost,
    Phase,
    QuoteDecision,
    Resume,
)
from qtc.errors import VENDOR_INVALID_REQUEST, VENDOR_UNAVAILABLE
from qtc.models import PricedQuote, TaxId
from qtc.ports import ACT_CREATE_BILLING_CUSTOMER, ACT_CREATE_SUBSCRIPTION, ACT_PROVISION_PRODUCT
from qtc.pricing import reprice_for_signature
from tests.unit.builders import REPO_ROOT
from tests.workflows.support import (
    FakeVendors,
    deal_worker,
    new_opportunity_id,
    priced_quote,
    signature,
    start_deal,
    start_test_environment,
    wait_for_stage,
)
from workflows.deal import DealWorkflow

HISTORIES = Path(__file__).parent / "histories"

Handle = WorkflowHandle[DealWorkflow, DealStatus]


async def _sign(handle: Handle, at: datetime) -> None:
    status = await wait_for_stage(handle, "awaiting_signature")
    assert status.envelope_id is not None
    await handle.signal(SIGNAL_SIGNATURE_COMPLETED, signature(status.envelope_id, at))


async def _phase_3(handle: Handle, fakes: FakeVendors, now: datetime) -> None:
    await _sign(handle, now)


async def _phase_2_approved(handle: Handle, fakes: FakeVendors, now: datetime) -> None:
    await _sign(handle, now)
    await wait_for_stage(handle, "awaiting_invoice_review")
    await handle.signal(SIGNAL_APPROVE_INVOICE, InvoiceReview(reviewer="fiona", note="ok"))


async def _phase_1_after_approval(handle: Handle, fakes: FakeVendors, now: datetime) -> None:
    await wait_for_stage(handle, "pending_approval")
    await handle.signal(SIGNAL_APPROVE_QUOTE, QuoteDecision(by="dana"))
    await _sign(handle, now)


async def _needs_attention_resumed(handle: Handle, fakes: FakeVendors, now: datetime) -> None:
    await _sign(handle, now)
    await wait_for_stage(handle, "needs_attention")
    await handle.signal(SIGNAL_RESUME, Resume(by="oscar"))


async def _corrected_and_resumed(handle: Handle, fakes: FakeVendors, now: datetime) -> None:
    await _sign(handle, now)
    status = await wait_for_stage(handle, "needs_attention")
    assert status.last_error is not None
    priced = await handle.query(QUERY_STATUS, result_type=DealStatus)
    account = fakes.inputs(ACT_CREATE_BILLING_CUSTOMER)[-1].priced.account
    await handle.execute_update(
        UPDATE_CORRECT_ACCOUNT,
        AccountCorrection(
            by="oscar",
            reason="EIN from the W-9",
            account=account.model_copy(update={"tax_id": TaxId(type="us_ein", value="98-7654321")}),
        ),
        result_type=DecisionResult,
    )
    assert priced.stage == "needs_attention"
    await handle.signal(SIGNAL_RESUME, Resume(by="oscar"))


async def _cancelled(handle: Handle, fakes: FakeVendors, now: datetime) -> None:
    await _sign(handle, now)
    await wait_for_stage(handle, "needs_attention")
    await handle.execute_update(
        UPDATE_CANCEL, Cancel(by="oscar", reason="customer withdrew"), result_type=DecisionResult
    )


async def _expired(handle: Handle, fakes: FakeVendors, now: datetime) -> None:
    await wait_for_stage(handle, "awaiting_signature")


async def _lost(handle: Handle, fakes: FakeVendors, now: datetime) -> None:
    await wait_for_stage(handle, "awaiting_signature")
    await handle.signal(SIGNAL_MARK_LOST, MarkLost(by="sam", reason="budget cut"))


Drive = Callable[[Handle, FakeVendors, datetime], Awaitable[None]]


def _no_failures() -> dict[str, list[BaseException]]:
    return {}


def _subscription_refused() -> dict[str, list[BaseException]]:
    return {
        ACT_CREATE_SUBSCRIPTION: [ApplicationError("No such price", type=VENDOR_INVALID_REQUEST)]
    }


def _tax_id_refused() -> dict[str, list[BaseException]]:
    refused = ApplicationError(
        "Stripe answered 400: Invalid value for eu_vat.",
        {"vendor": "Stripe", "code": "tax_id_invalid", "field": "/account/tax_id/value"},
        type=VENDOR_INVALID_REQUEST,
        non_retryable=True,
    )
    return {ACT_CREATE_BILLING_CUSTOMER: [refused]}


def _provisioning_down_for_a_while() -> dict[str, list[BaseException]]:
    down = ApplicationError("product backend answered 500", type=VENDOR_UNAVAILABLE)
    return {ACT_PROVISION_PRODUCT: [down, down, down]}


Failures = Callable[[], dict[str, list[BaseException]]]
Deal = tuple[PricedQuote, AmendmentTerms | None, bool]


def _usual_deal(now: datetime, needs_approval: bool) -> Deal:
    priced = priced_quote(
        opportunity_id=new_opportunity_id(),
        priced_at=now - timedelta(days=10),
        valid_until=(now + timedelta(days=30)).date(),
        status="needs_approval" if needs_approval else "ok",
    )
    return priced, None, False


def _services_order(now: datetime, needs_approval: bool) -> Deal:
    priced, _, _ = _usual_deal(now, needs_approval)
    one_time = [line for line in priced.lines if line.kind == "one_time"]
    return (
        reprice_for_signature(priced.model_copy(update={"lines": one_time}), priced.signed_at),
        None,
        False,
    )


def _amendment(now: datetime, needs_approval: bool) -> Deal:
    original = priced_quote(
        opportunity_id=new_opportunity_id(),
        priced_at=now - timedelta(days=100),
        valid_until=(now + timedelta(days=30)).date(),
    )
    original_deal = f"deal-{original.opportunity_id}"
    amendment = price_amendment(
        {
            "quote_id": "Q-A1",
            "opportunity_id": new_opportunity_id(),
            "amends": original_deal,
            "signer": {"name": "Jane Doe", "email": "jane@acme.example"},
            "valid_until": (now + timedelta(days=30)).date().isoformat(),
            "lines": [{"sku": "PLATFORM-PRO", "quantity": 10}],
        },
        original,
        load_catalog(REPO_ROOT / "catalog.toml"),
        now - timedelta(days=10),
    )
    terms = AmendmentTerms(
        original_deal_id=original_deal,
        original=original,
        amendment=amendment,
        billing_customer_id=f"cus_{original_deal}",
        billing_subscription_id=f"sub_{original_deal}",
        billing_schedule_id=f"sub_sched_{original_deal}",
    )
    return amendment_deal_quote(original, amendment), terms, False


def _taxed(now: datetime, needs_approval: bool) -> Deal:
    priced, _, _ = _usual_deal(now, needs_approval)
    return priced, None, True


# Paths whose deal is not the usual quote (the default is ``_usual_deal``).
DEALS: dict[str, Callable[[datetime, bool], Deal]] = {
    "services_order_completed": _services_order,
    "amendment_completed": _amendment,
    "phase_2_taxed_review_approved": _taxed,
}

# name -> (phase, quote needs approval, fake failures, how the outside world behaves)
PATHS: dict[str, tuple[Phase, bool, Failures, Drive]] = {
    "phase_3_completed": (3, False, _no_failures, _phase_3),
    "phase_2_review_approved": (2, False, _no_failures, _phase_2_approved),
    "phase_1_approved_quote_completed": (1, True, _no_failures, _phase_1_after_approval),
    "needs_attention_then_resumed": (3, False, _subscription_refused, _needs_attention_resumed),
    "expired_and_voided": (3, False, _no_failures, _expired),
    "lost_and_voided": (3, False, _no_failures, _lost),
    "retried_as_activity_then_completed": (3, False, _provisioning_down_for_a_while, _phase_3),
    "account_corrected_then_resumed": (3, False, _tax_id_refused, _corrected_and_resumed),
    "cancelled_when_parked": (3, False, _tax_id_refused, _cancelled),
    "services_order_completed": (3, False, _no_failures, _phase_3),
    "amendment_completed": (3, False, _no_failures, _phase_3),
    "phase_2_taxed_review_approved": (2, False, _no_failures, _phase_2_approved),
    "phase_3_erp_synced": (3, False, _no_failures, _phase_3),
}
# Paths whose deal records its billed invoice in an ERP.
WITH_ERP = {"phase_3_erp_synced"}


async def record(client: Client, name: str, now: datetime) -> str:
    """Run one path to its end and return its history as JSON."""
    phase, needs_approval, failures, drive = PATHS[name]
    fakes = FakeVendors(failures=failures())
    priced, amends, tax = DEALS.get(name, _usual_deal)(now, needs_approval)
    task_queue = f"record-{uuid.uuid4()}"
    async with deal_worker(client, task_queue, fakes):
        erp = "netsuite" if name in WITH_ERP else None
        handle = await start_deal(
            client, task_queue, priced, phase=phase, amends=amends, tax=tax, erp=erp
        )
        await drive(handle, fakes, now)
        await handle.result()
        history = await handle.fetch_history()
    return history.to_json()


async def main() -> None:
    env = await start_test_environment()
    only = set(sys.argv[1:])  # record only these paths (default: every one)
    try:
        HISTORIES.mkdir(parents=True, exist_ok=True)
        for name in PATHS:
            if only and name not in only:
                continue
            now = await env.get_current_time()
            (HISTORIES / f"{name}.json").write_text(await record(env.client, name, now))
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
    # Leave without interpreter teardown: the Temporal client's Rust runtime can abort the process
    # there (starters/cli.py does the same).
    sys.stdout.flush()
    os._exit(0)
