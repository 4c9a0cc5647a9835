"""Latency at a steady offered load, throughput at saturation, against a baseline and a ceiling.

One run, on a fresh stack of its own (dev server on a SQLite file as the demo runs it, emulators,
worker and API as child processes, on non-default ports):

1. direct baseline: the deal's post-signature adapter calls made one after another in a plain
   loop in this process, without Temporal, one deal per second;
2. every product deal is started and waits for its signature (not measured);
3. offered load: deals signed at ``--rate`` per second for ``--duration`` seconds, each through
   the DocuSign emulator, whose Connect webhook reaches the API, which signals the deal;
   latency is signature webhook posted -> invoice sent (``DealStatus.invoice_sent_at``) and
   -> provisioned (stage history);
4. saturation: ``--deals`` deals signed at once; deals completed per second, CPU seconds and peak
   RSS of the worker and the dev server;
5. ceiling: as many no-op deals (``bench.ceiling``) at saturation on the same server.

The last line printed is one JSON object (see ``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from bench import ceiling
from bench.common import (
    DEFAULT_WORKERS,
    BenchPorts,
    BenchStack,
    DealTiming,
    ProcessSampler,
    Sandbox,
    add_workers_option,
    bench_settings,
    bounded_gather,
    latency_figures,
    machine,
    percentile,
    priced_for,
    priced_template,
    progress,
    results,
    rounded,
    run_on_stack,
    start_deals,
    stop_on_sigterm,
    timings,
    wait_for_completed,
    wait_for_stage,
)
from qtc import deal as contract
from qtc import ports
from qtc.models import PricedQuote
from qtc.pricing import reprice_for_signature
from runtime.logging import configure_logging
from runtime.settings import Settings
from runtime.temporal import connect
from workers.main import build_activities


@dataclass(frozen=True)
class Options:
    deals: int
    rate: float
    duration: float
    skip_ceiling: bool
    skip_offered: bool
    json_only: bool
    direct_deals: int
    port_base: int | None
    worker_cache: int | None
    activity_threads: int | None
    timeout_s: float
    workers: int
    keep: bool
    crm: str

    @property
    def offered_deals(self) -> int:
        return 0 if self.skip_offered else max(1, round(self.rate * self.duration))


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency_throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--deals", type=int, default=None, help="deals signed at once (default 500, smoke: 5)"
    )
    parser.add_argument("--rate", type=float, default=2.0, help="offered load, deals/s")
    parser.add_argument(
        "--duration", type=float, default=None, help="offered load, s (default 60, smoke: 5)"
    )
    parser.add_argument("--skip-ceiling", action="store_true")
    parser.add_argument("--skip-offered", action="store_true")
    parser.add_argument("--json-only", action="store_true", help="print only the JSON line")
    parser.add_argument(
        "--direct-deals", type=int, default=None, help="baseline deals (default 20, smoke: 3)"
    )
    parser.add_argument(
        "--port-base", type=int, default=None, help="use ports BASE..BASE+6 (default: ephemeral)"
    )
    parser.add_argument("--worker-cache", type=int, default=None, help="max_cached_workflows")
    parser.add_argument("--activity-threads", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=900.0, help="bound on every wait, s")
    parser.add_argument("--keep", action="store_true", help="keep the state dir and logs")
    parser.add_argument(
        "--crm",
        choices=["salesforce", "hubspot"],
        default="salesforce",
        help="the CRM the deals are marked Closed Won in and write their billing ids to",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="defaults of 5 deals, 5 s offered, 3 direct deals"
    )
    add_workers_option(
        parser,
        DEFAULT_WORKERS,
        "one per core here; one Python worker is bound by its interpreter lock",
    )
    args = parser.parse_args(argv)
    smoke = {"deals": 5, "duration": 5.0, "direct_deals": 3}
    full = {"deals": 500, "duration": 60.0, "direct_deals": 20}
    for name, value in (smoke if args.smoke else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.deals < 1 or args.rate <= 0 or args.duration <= 0 or args.direct_deals < 1:
        parser.error("--deals, --rate, --duration and --direct-deals must be positive")
    return Options(
        deals=args.deals,
        rate=args.rate,
        duration=args.duration,
        skip_ceiling=args.skip_ceiling,
        skip_offered=args.skip_offered,
        json_only=args.json_only,
        direct_deals=args.direct_deals,
        port_base=args.port_base,
        worker_cache=args.worker_cache,
        activity_threads=args.activity_threads,
        timeout_s=args.timeout,
        workers=args.workers,
        keep=args.keep,
        crm=args.crm,
    )


# --- 1. direct baseline ----------------------------------------------------------------------


def run_direct(settings: Settings, quotes: list[PricedQuote], pace_s: float) -> list[DealTiming]:
    """The post-signature adapter calls in a plain loop: no Temporal, one deal at a time."""
    env = ActivityEnvironment()
    out: list[DealTiming] = []
    with contextlib.ExitStack() as closing:
        acts = {
            activity._Definition.must_from_callable(fn).name: fn
            for fn in build_activities(settings, closing)
        }
        for number, priced in enumerate(quotes):
            began = time.monotonic()
            webhook_at = datetime.now(UTC)
            deal_id = contract.deal_id_for(priced.opportunity_id)
            dated = reprice_for_signature(priced, webhook_at)
            env.run(
                acts[ports.ACT_MARK_CLOSED_WON],
                ports.MarkClosedWonInput(
                    deal_id=deal_id,
                    opportunity_id=priced.opportunity_id,
                    close_date=webhook_at.date(),
                ),
            )
            customer = env.run(
                acts[ports.ACT_CREATE_BILLING_CUSTOMER],
                ports.CreateCustomerInput(deal_id=deal_id, priced=dated),
            )
            subscription = env.run(
                acts[ports.ACT_CREATE_SUBSCRIPTION],
                ports.CreateSubscriptionInput(
                    deal_id=deal_id, customer_id=customer.customer_id, priced=dated
                ),
            )
            invoice = env.run(
                acts[ports.ACT_SEND_FIRST_INVOICE],
                ports.SendInvoiceInput(
                    deal_id=deal_id,
                    customer_id=customer.customer_id,
                    subscription_id=subscription.subscription_id,
                    priced=dated,
                ),
            )
            invoice_ms = (time.monotonic() - began) * 1000
            provisioned = env.run(
                acts[ports.ACT_PROVISION_PRODUCT],
                ports.ProvisionInput(deal_id=deal_id, tenant_id=customer.customer_id, priced=dated),
            )
            provisioned_ms = (time.monotonic() - began) * 1000
            env.run(
                acts[ports.ACT_WRITE_BACK_BILLING_IDS],
                ports.WriteBackInput(
                    deal_id=deal_id,
                    opportunity_id=priced.opportunity_id,
                    billing_customer_id=customer.customer_id,
                    billing_subscription_id=subscription.subscription_id,
                    billing_invoice_id=invoice.invoice_id,
                    billing_invoice_url=invoice.invoice_url,
                ),
            )
            assert provisioned.tenant_id == customer.customer_id
            out.append(
                DealTiming(
                    deal_id=deal_id,
                    webhook_at=webhook_at,
                    invoice_ms=invoice_ms,
                    provisioned_ms=provisioned_ms,
                    completed_at=datetime.now(UTC),
                )
            )
            if number + 1 < len(quotes):
                time.sleep(max(0.0, pace_s - (time.monotonic() - began)))
    return out


# --- 3. offered load -------------------------------------------------------------------------


async def offered_load(
    client: Client,
    sandbox: Sandbox,
    envelopes: list[str],
    deal_ids: list[str],
    opts: Options,
) -> list[DealTiming]:
    """Sign one envelope every 1/rate seconds; wait for those deals; their latencies."""
    started = time.monotonic()
    tasks = []
    for number, envelope_id in enumerate(envelopes):
        due = started + number / opts.rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        tasks.append(asyncio.create_task(sandbox.sign(envelope_id)))
    await asyncio.gather(*tasks)
    await wait_for_completed(client, len(deal_ids), opts.timeout_s, quiet=True)
    statuses = await results(client, deal_ids)
    return timings(statuses, await sandbox.webhook_times())


# --- 4. saturation ---------------------------------------------------------------------------


@dataclass
class Saturation:
    completed: int
    throughput_per_s: float
    drain_s: float
    signing_s: float
    cpu_s: dict[str, float]
    peak_rss_mb: dict[str, float]
    timings: list[DealTiming]


async def saturation(
    client: Client,
    sandbox: Sandbox,
    sampler: ProcessSampler,
    envelopes: list[str],
    deal_ids: list[str],
    already_completed: int,
    opts: Options,
) -> Saturation:
    sampler.reset()
    cpu_before = sampler.cpu_seconds()
    t0 = datetime.now(UTC)
    began = time.monotonic()
    await bounded_gather(envelopes, sandbox.sign)
    signing_s = time.monotonic() - began
    await wait_for_completed(client, already_completed + len(deal_ids), opts.timeout_s, quiet=True)
    sampler.sample()
    cpu_after = sampler.cpu_seconds()
    peaks = sampler.peak_mb()
    statuses = await results(client, deal_ids)
    completed = [s for s in statuses if s.stage == "completed"]
    measured = timings(completed, await sandbox.webhook_times())
    last = max(t.completed_at for t in measured)
    drain_s = (last - t0).total_seconds()
    return Saturation(
        completed=len(completed),
        throughput_per_s=len(completed) / drain_s,
        drain_s=drain_s,
        signing_s=signing_s,
        cpu_s={k: round(cpu_after[k] - cpu_before.get(k, 0.0), 2) for k in cpu_after},
        peak_rss_mb=peaks,
        timings=measured,
    )


# --- 5. ceiling ------------------------------------------------------------------------------


async def ceiling_run(
    client: Client, stack: BenchStack, sampler: ProcessSampler, opts: Options
) -> dict[str, Any]:
    task_queue = f"{stack.settings.temporal_task_queue}-ceiling"
    child = stack.start_ceiling_worker(task_queue, max(opts.deals + 100, 2000))
    sampler.add("ceiling_worker", child.proc.pid)
    ids = [f"ceiling-{n:06d}" for n in range(opts.deals)]

    async def start(workflow_id: str) -> None:
        await client.start_workflow(ceiling.WORKFLOW_NAME, id=workflow_id, task_queue=task_queue)

    await bounded_gather(ids, start)
    await wait_for_stage(
        client,
        ceiling.AWAITING,
        len(ids),
        opts.timeout_s,
        quiet=opts.json_only,
        workflow=ceiling.WORKFLOW_NAME,
    )

    async def sign(workflow_id: str) -> None:
        await client.get_workflow_handle(workflow_id).signal(ceiling.SIGNAL_SIGNED)

    sampler.reset()
    cpu_before = sampler.cpu_seconds()
    t0 = datetime.now(UTC)
    await bounded_gather(ids, sign)
    await wait_for_completed(
        client, len(ids), opts.timeout_s, quiet=True, workflow=ceiling.WORKFLOW_NAME
    )
    sampler.sample()
    cpu_after = sampler.cpu_seconds()
    closed = [
        execution.close_time
        async for execution in client.list_workflows(
            f"WorkflowType = '{ceiling.WORKFLOW_NAME}' AND ExecutionStatus = 'Completed'"
        )
        if execution.close_time is not None
    ]
    drain_s = (max(closed) - t0).total_seconds()
    cpu = {k: round(cpu_after[k] - cpu_before.get(k, 0.0), 2) for k in cpu_after}
    return {
        "ceiling_deals": len(closed),
        "ceiling_throughput_per_s": round(len(closed) / drain_s, 2),
        "ceiling_drain_s": round(drain_s, 2),
        "ceiling_worker_cpu_s": cpu["ceiling_worker"],
        "ceiling_server_cpu_s": cpu["server"],
    }


# --- the run ---------------------------------------------------------------------------------


async def run(stack: BenchStack, opts: Options) -> dict[str, Any]:
    settings = stack.settings
    quiet = opts.json_only
    client = await connect(settings)
    sandbox = Sandbox(settings)
    pids = {c.name: c.proc.pid for c in stack.children}
    figures: dict[str, Any] = {"deals": opts.deals}
    try:
        with ProcessSampler(
            {
                "server": pids["temporal"],
                "worker": stack.pids_of("worker"),
                "api": pids["api"],
                "emulators": pids["emulators"],
            }
        ) as sampler:
            total = opts.direct_deals + opts.offered_deals + opts.deals
            progress(f"creating {total} opportunities in {settings.crm}", quiet=quiet)
            opportunities = await sandbox.create_opportunities(total)
            template = priced_template(settings)
            quotes = [priced_for(template, o, n) for n, o in enumerate(opportunities)]
            direct_quotes = quotes[: opts.direct_deals]
            offered_quotes = quotes[opts.direct_deals : opts.direct_deals + opts.offered_deals]
            saturation_quotes = quotes[opts.direct_deals + opts.offered_deals :]

            progress(f"direct baseline: {len(direct_quotes)} deals at 1/s", quiet=quiet)
            direct = await asyncio.to_thread(run_direct, settings, direct_quotes, 1.0)

            progress(f"starting {total - len(direct_quotes)} deals", quiet=quiet)
            offered_ids = await start_deals(client, settings, offered_quotes)
            saturation_ids = await start_deals(client, settings, saturation_quotes)
            waiting = len(offered_ids) + len(saturation_ids)
            await wait_for_stage(client, "awaiting_signature", waiting, opts.timeout_s, quiet=quiet)
            envelopes = await sandbox.envelopes_by_deal()

            offered: list[DealTiming] = []
            cpu_before = sampler.cpu_seconds()
            if offered_ids:
                progress(f"offered load: {len(offered_ids)} deals at {opts.rate}/s", quiet=quiet)
                offered = await offered_load(
                    client, sandbox, [envelopes[d] for d in offered_ids], offered_ids, opts
                )
            cpu_after = sampler.cpu_seconds()
            if offered:
                # Reported at once, so a saturation phase that never drains still leaves them.
                invoice_ms = [t.invoice_ms for t in offered]
                p50, p99 = percentile(invoice_ms, 50), percentile(invoice_ms, 99)
                progress(
                    f"offered: sig->invoice p50 {rounded(p50)} ms, p99 {rounded(p99)} ms",
                    quiet=quiet,
                )
            figures.update(
                {
                    f"offered_{name}_cpu_ms_per_deal": (
                        round((cpu_after[name] - cpu_before[name]) * 1000 / len(offered_ids))
                        if offered_ids
                        else None
                    )
                    for name in ("worker", "server", "api", "emulators")
                }
            )

            progress(f"saturation: {len(saturation_ids)} deals signed at once", quiet=quiet)
            sat = await saturation(
                client,
                sandbox,
                sampler,
                [envelopes[d] for d in saturation_ids],
                saturation_ids,
                len(offered_ids),
                opts,
            )
            ceiling_figures: dict[str, Any] = {}
            if not opts.skip_ceiling:
                progress(f"ceiling: {opts.deals} no-op deals", quiet=quiet)
                ceiling_figures = await ceiling_run(client, stack, sampler, opts)
            figures.update(summarize(opts, settings, direct, offered, sat, ceiling_figures))
            figures["emulators"] = await sandbox.stats()
    finally:
        await sandbox.aclose()
    return figures


def summarize(
    opts: Options,
    settings: Settings,
    direct: list[DealTiming],
    offered: list[DealTiming],
    sat: Saturation,
    ceiling_figures: dict[str, Any],
) -> dict[str, Any]:
    direct_p50 = percentile([t.invoice_ms for t in direct], 50)
    offered_p50 = percentile([t.invoice_ms for t in offered], 50)
    ceiling_tp = ceiling_figures.get("ceiling_throughput_per_s")
    out: dict[str, Any] = {
        "completed": sat.completed,
        "throughput_per_s": round(sat.throughput_per_s, 2),
        "ceiling_throughput_per_s": ceiling_tp,
        "throughput_ratio_vs_ceiling": (
            round(sat.throughput_per_s / ceiling_tp, 3) if ceiling_tp else None
        ),
        **latency_figures("sig_to_invoice", [t.invoice_ms for t in offered]),
        **latency_figures("sig_to_provisioned", [t.provisioned_ms for t in offered]),
        "overhead_p50_ms": (
            rounded(offered_p50 - direct_p50)
            if offered_p50 is not None and direct_p50 is not None
            else None
        ),
        "worker_peak_rss_mb": sat.peak_rss_mb.get("worker"),
        "server_peak_rss_mb": sat.peak_rss_mb.get("server"),
        "api_peak_rss_mb": sat.peak_rss_mb.get("api"),
        "worker_cpu_s": sat.cpu_s.get("worker"),
        "server_cpu_s": sat.cpu_s.get("server"),
        "api_cpu_s": sat.cpu_s.get("api"),
        "emulators_cpu_s": sat.cpu_s.get("emulators"),
        "saturation_drain_s": round(sat.drain_s, 2),
        "saturation_signing_s": round(sat.signing_s, 2),
        **latency_figures("sig_to_invoice", [t.invoice_ms for t in sat.timings], "saturation_"),
        "offered_rate_per_s": None if opts.skip_offered else opts.rate,
        "offered_deals": opts.offered_deals,
        "offered_completed": len(offered),
        "direct_deals": len(direct),
        **latency_figures("sig_to_invoice", [t.invoice_ms for t in direct], "direct_"),
        **latency_figures("sig_to_provisioned", [t.provisioned_ms for t in direct], "direct_"),
        **ceiling_figures,
        "crm": settings.crm,
        "worker_processes": opts.workers,
        "worker_max_cached_workflows": settings.worker_max_cached_workflows,
        "worker_activity_threads": settings.worker_activity_threads,
        "machine": machine(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return out


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    stop_on_sigterm()
    # The direct baseline runs the adapters in this process; their per-call log lines would
    # drown the figures.
    configure_logging("WARNING", json=False)
    state_dir = Path(tempfile.mkdtemp(prefix="qtc-bench-"))
    settings = bench_settings(
        BenchPorts.allocate(opts.port_base, opts.workers),
        state_dir,
        worker_cache=opts.worker_cache,
        activity_threads=opts.activity_threads,
        crm=opts.crm,
    )
    run_on_stack(
        settings,
        state_dir,
        lambda stack: run(stack, opts),
        json_only=opts.json_only,
        keep=opts.keep,
        workers=opts.workers,
    )


if __name__ == "__main__":
    main()
