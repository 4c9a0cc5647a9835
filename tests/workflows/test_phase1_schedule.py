"""What finance reads from a deal's status (issue 24): a phase-1 deal, billed by hand, shows every
scheduled invoice of its term, not only the first; amounts in notes are money, not minor units."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from qtc.money import format_minor
from qtc.pricing import reprice_for_signature
from tests.unit.builders import REPO_ROOT
from tests.workflows.support import FakeVendors, new_opportunity_id, start_deal, wait_for_stage
from tests.workflows.test_deal_workflow import QuoteFactory, result_of, sign


async def test_a_phase_1_deal_shows_every_invoice_of_its_term_dated_at_the_signature(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    # The README's phase-1 example: 36 months billed annually, three invoices.
    example = json.loads((REPO_ROOT / "examples" / "quote-phase1.json").read_text("utf-8"))
    example["opportunity_id"] = new_opportunity_id()
    example["valid_until"] = (now + timedelta(days=30)).date().isoformat()  # the test server's now
    priced = price_quote(example, load_catalog(REPO_ROOT / "catalog.toml"), now)
    handle = await start_deal(env.client, worker.task_queue, priced, phase=1)
    await sign(handle, now)
    status = await result_of(handle)

    expected = reprice_for_signature(priced, now).invoices
    assert len(expected) == 3
    assert status.invoice_schedule == expected
    assert status.invoice_schedule[0] == status.invoice_preview
    assert sum(i.total_minor for i in status.invoice_schedule) == priced.tcv_minor


async def test_the_review_note_gives_the_first_invoice_in_money_not_minor_units(
    env: WorkflowEnvironment, worker: Worker, fakes: FakeVendors, quote: QuoteFactory, now: datetime
) -> None:
    priced = quote()
    handle = await start_deal(env.client, worker.task_queue, priced, phase=2)
    await sign(handle, now)
    waiting = await wait_for_stage(handle, "awaiting_invoice_review")

    first = reprice_for_signature(priced, now).invoices[0]
    [entry] = [e for e in waiting.stage_history if e.stage == "awaiting_invoice_review"]
    assert (
        entry.note
        == f"first invoice {format_minor(first.total_minor, priced.currency)} on {first.date}"
    )
    assert str(first.total_minor) not in (entry.note or "")
