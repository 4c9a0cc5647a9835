"""Many deals waiting for a signature: memory while idle, then all signed at once.

On a fresh stack of its own (as ``bench.latency_throughput``): ``--deals`` phase-3 deals are
started and send their contracts; once all wait for a signature, the worker's and the dev
server's RSS are sampled for ``--idle`` seconds (the worker keeps at most ``--worker-cache``
workflows in its cache, so the rest are evicted and replayed when their signature arrives).
Then every envelope is signed through the DocuSign emulator (Connect webhook -> API -> signal):
time to drain, deals per second, signature-to-invoice latency, and whether any deal was lost
(not completed) or parked in ``needs_attention``.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench.common import (
    DEFAULT_WORKERS,
    BenchPorts,
    BenchStack,
    ProcessSampler,
    Sandbox,
    add_workers_option,
    bench_settings,
    bounded_gather,
    count,
    latency_figures,
    machine,
    priced_for,
    priced_template,
    progress,
    results,
    run_on_stack,
    start_deals,
    stop_on_sigterm,
    timings,
    wait_for_completed,
    wait_for_stage,
)
from qtc import deal as contract
from qtc import ports
from runtime.logging import configure_logging
from runtime.settings import Settings
from runtime.temporal import connect

# The worker's own default (QTC_WORKER_MAX_CACHED_WORKFLOWS): the memory target is about the
# worker as shipped. With at most 20 workflow tasks at once, a burst over a cache this size drains
# without workflow-task timeouts (bench/RESULTS.md).
DEFAULT_WORKER_CACHE = Settings.model_fields["worker_max_cached_workflows"].default


@dataclass(frozen=True)
class Options:
    deals: int
    worker_cache: int
    idle_s: float
    timeout_s: float
    workers: int
    port_base: int | None
    json_only: bool
    keep: bool
    skip_drain: bool


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.waiting_deals", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--deals", type=int, default=None, help="default 10,000 (smoke: 50)")
    parser.add_argument(
        "--worker-cache",
        type=int,
        default=None,
        help=f"worker max_cached_workflows, bounded below the waiting deals (default "
        f"{DEFAULT_WORKER_CACHE}, smoke: 20)",
    )
    parser.add_argument("--idle", type=float, default=None, help="idle sampling, s (default 15)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="bound on every wait, s")
    parser.add_argument("--port-base", type=int, default=None)
    parser.add_argument("--json-only", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the state dir and logs")
    parser.add_argument(
        "--skip-drain", action="store_true", help="measure the idle memory only; sign nothing"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="defaults of 50 deals, cache 20, 2 s idle"
    )
    add_workers_option(
        parser, 1, f"the memory figures are per worker; the latency bench uses {DEFAULT_WORKERS}"
    )
    args = parser.parse_args(argv)
    smoke = {"deals": 50, "worker_cache": 20, "idle": 2.0}
    full = {"deals": 10_000, "worker_cache": DEFAULT_WORKER_CACHE, "idle": 15.0}
    for name, value in (smoke if args.smoke else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.deals < 1 or args.worker_cache < 0 or args.idle < 0:
        parser.error("--deals must be positive, --worker-cache and --idle not negative")
    return Options(
        deals=args.deals,
        worker_cache=args.worker_cache,
        idle_s=args.idle,
        timeout_s=args.timeout,
        workers=args.workers,
        port_base=args.port_base,
        json_only=args.json_only,
        keep=args.keep,
        skip_drain=args.skip_drain,
    )


async def run(stack: BenchStack, opts: Options) -> dict[str, Any]:
    settings = stack.settings
    quiet = opts.json_only
    client = await connect(settings)
    sandbox = Sandbox(settings)
    pids = {c.name: c.proc.pid for c in stack.children}
    mb = 1024 * 1024
    figures: dict[str, Any] = {
        "deals": opts.deals,
        "worker_max_cached_workflows": opts.worker_cache,
        "worker_processes": opts.workers,
    }
    try:
        with ProcessSampler(
            {"server": pids["temporal"], "worker": stack.pids_of("worker"), "api": pids["api"]},
            interval_s=0.5,
        ) as sampler:
            progress(f"creating {opts.deals} Salesforce opportunities", quiet=quiet)
            opportunities = await sandbox.create_opportunities(opts.deals)
            template = priced_template(settings)
            quotes = [priced_for(template, o, n) for n, o in enumerate(opportunities)]

            progress(f"starting {opts.deals} deals", quiet=quiet)
            began = time.monotonic()
            deal_ids = await start_deals(client, settings, quotes)
            await wait_for_stage(
                client, "awaiting_signature", len(deal_ids), opts.timeout_s, quiet=quiet
            )
            start_s = time.monotonic() - began
            start_peak = sampler.peak_mb()

            progress(f"idle for {opts.idle_s:.0f} s", quiet=quiet)
            sampler.reset()
            await asyncio.sleep(opts.idle_s)
            idle_now = sampler.sample()
            idle_peak = sampler.peak_mb()
            figures.update(
                {
                    "waiting": len(deal_ids),
                    "start_to_waiting_s": round(start_s, 1),
                    "worker_idle_rss_mb": round(idle_now["worker"] / mb, 1),
                    "server_idle_rss_mb": round(idle_now["server"] / mb, 1),
                    "api_idle_rss_mb": round(idle_now["api"] / mb, 1),
                    "worker_idle_peak_rss_mb": idle_peak["worker"],
                    "server_idle_peak_rss_mb": idle_peak["server"],
                    "worker_start_peak_rss_mb": start_peak["worker"],
                    "server_start_peak_rss_mb": start_peak["server"],
                }
            )
            if not opts.skip_drain:
                figures.update(await drain(client, sandbox, sampler, deal_ids, opts))
    finally:
        await sandbox.aclose()
    figures["machine"] = machine()
    figures["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return figures


async def drain(
    client: Client,
    sandbox: Sandbox,
    sampler: ProcessSampler,
    deal_ids: list[str],
    opts: Options,
) -> dict[str, Any]:
    """Sign every waiting deal at once; how long until all are done, and did any get lost."""
    envelopes = await sandbox.envelopes_by_deal()
    progress(f"signing all {len(deal_ids)} deals at once", quiet=opts.json_only)
    sampler.reset()
    cpu_before = sampler.cpu_seconds()
    t0 = datetime.now(UTC)
    await bounded_gather([envelopes[d] for d in deal_ids], sandbox.sign)
    await wait_for_completed(client, len(deal_ids), opts.timeout_s, quiet=opts.json_only)
    sampler.sample()
    cpu_after = sampler.cpu_seconds()
    peak = sampler.peak_mb()

    progress("collecting results", quiet=opts.json_only)
    statuses = await results(client, deal_ids)
    done = [s for s in statuses if s.stage == "completed"]
    measured = timings(done, await sandbox.webhook_times())
    parked = await count(
        client,
        f"WorkflowType = '{contract.WORKFLOW_NAME}' AND {ports.SA_STAGE} = 'needs_attention'",
    )
    drain_s = (max(t.completed_at for t in measured) - t0).total_seconds()
    return {
        "completed": len(done),
        "lost": len(deal_ids) - len(done),
        "needs_attention": parked,
        "drain_s": round(drain_s, 2),
        "drained_per_s": round(len(done) / drain_s, 2),
        **latency_figures("sig_to_invoice", [t.invoice_ms for t in measured]),
        **latency_figures("sig_to_provisioned", [t.provisioned_ms for t in measured]),
        "worker_drain_peak_rss_mb": peak["worker"],
        "server_drain_peak_rss_mb": peak["server"],
        "worker_drain_cpu_s": round(cpu_after["worker"] - cpu_before["worker"], 2),
        "server_drain_cpu_s": round(cpu_after["server"] - cpu_before["server"], 2),
        "api_drain_cpu_s": round(cpu_after["api"] - cpu_before["api"], 2),
    }


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    stop_on_sigterm()
    configure_logging("WARNING", json=False)
    state_dir = Path(tempfile.mkdtemp(prefix="qtc-bench-waiting-"))
    settings = bench_settings(
        BenchPorts.allocate(opts.port_base), state_dir, worker_cache=opts.worker_cache
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
