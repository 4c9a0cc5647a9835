"""Fifty deals at once survive a crashing worker, a restarted server and misbehaving vendors.

The scenario is ``bench.chaos.run_chaos`` at CI size (``make chaos`` runs the same engine longer).
Every figure asserted here is counted from the emulators' own state: Stripe's customers,
schedules and ``invoice.sent`` events, DocuSign's envelopes and Connect deliveries, the product
backend's tenants and Salesforce's opportunities.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bench.chaos import ChaosReport, json_line, run_chaos

DEALS = 50
KILLS = 3
log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> ChaosReport:
    state_dir: Path = tmp_path_factory.mktemp("chaos")
    report = run_chaos(
        DEALS,
        seed=8,
        kills=KILLS,
        restart_server=True,
        state_dir=state_dir,
        port_offset=None,  # ephemeral ports: runs beside a demo or another test run
        fault_rate=0.12,
        timeout_s=240,
        say=log.info,
    )
    log.info("chaos figures: %s", json_line(report))
    return report


def test_every_deal_completes_despite_worker_kills_a_server_restart_and_vendor_faults(
    report: ChaosReport,
) -> None:
    assert report.completed == DEALS, report.problems
    assert report.lost == 0, report.problems


def test_no_outside_effect_happens_twice_for_any_deal(report: ChaosReport) -> None:
    assert report.duplicates == 0, report.problems
    totals = report.counts["totals"]
    for effect in ("envelopes", "customers", "subscriptions", "invoices_sent", "tenants"):
        assert totals[effect] == DEALS, (effect, report.problems)
    assert totals["closed_won"] == DEALS
    assert totals["stray_customers"] == 0
    assert totals["extra_provisioning_calls"] == 0


def test_every_first_invoice_bills_exactly_the_priced_quote(report: ChaosReport) -> None:
    assert report.mismatched_invoices == 0, report.problems


def test_the_run_really_injected_every_kind_of_fault(report: ChaosReport) -> None:
    faults = report.faults
    assert faults["worker_sigkill"] == KILLS
    assert faults["temporal_restart"] == 1
    for kind in (
        "stripe_429_retry_after",
        "stripe_500",
        "stripe_slow",
        "salesforce_request_limit_exceeded",
        "docusign_5xx",
        "signed_while_server_down",
        "connect_failed_attempts",  # the API answered 503 while Temporal was down
        "outbound_message_repeats",
        "connect_late_completed",
        "connect_late_sent",
    ):
        assert faults.get(kind, 0) > 0, (kind, faults)
    # deliver_twice: DocuSign sent a second copy of every Connect message.
    assert faults["connect_second_copies"] >= 2 * DEALS
