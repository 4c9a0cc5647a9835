"""The fault suite's scenario engine: many deals at once while everything around them misbehaves.

``make chaos DEALS=20`` runs it from the command line; ``tests/resilience`` runs it at CI size.
One run:

1. starts the real stack (dev server on a SQLite file, emulators, worker, API) on its own ports;
2. creates one opportunity per deal in the CRM emulator and points DocuSign Connect at the API
   with every message delivered twice;
3. switches faults on: Stripe answers 429 with ``Retry-After`` and 500 at a rate and is slow on
   billing calls, DocuSign answers 5xx, the product backend 5xx, Salesforce answers
   ``REQUEST_LIMIT_EXCEEDED`` in bursts;
4. starts every deal at once (most by ``POST /v1/deals``, every fifth by a Salesforce Outbound
   Message sent three times), signs each envelope in the DocuSign emulator so that Connect
   delivers the signature, and replays captured Connect bodies late and out of order;
5. meanwhile SIGKILLs the worker at random moments and starts a new one, several times, and
   stops the dev server and starts it again on the same database;
6. switches faults off and audits the emulators' own state: one envelope, customer,
   subscription, sent first invoice and tenant per deal, the opportunity Closed Won, the first
   invoice equal to the priced quote at the signature date, and every deal ``completed``.

The last line printed is one JSON object with ``deals``, ``completed``, ``faults`` (by kind),
``duplicates``, ``lost`` and ``mismatched_invoices``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.chaos_support import (
    Audit,
    ChaosStack,
    PlannedDeal,
    World,
    audit,
)
from bench.common import BenchPorts, bench_settings, stop_on_sigterm
from qtc import deal as contract
from runtime.logging import configure_logging
from runtime.settings import Settings

# Sandbox default ports, in BenchPorts order; a run uses these plus an offset (or ephemeral ones).
DEFAULT_PORTS = (
    7233,
    8233,
    8000,
    12111,
    12112,
    12113,
    12114,
    12115,
    12116,
    12117,
    12118,
    12119,
    12120,
    12121,
)
DEFAULT_PORT_OFFSET = 200
OUTBOUND_EVERY = 5  # every fifth deal is started by a (repeated) Salesforce Outbound Message
POLL_S = 1.0
SALESFORCE_BURST_S = 2.0
SALESFORCE_BURST_EVERY_S = 7.0
SALESFORCE_BURST_RATE = 0.7
# Longer than the API's Temporal timeout (3 s, set in run_chaos): a Connect delivery that meets
# the outage is answered 503 and must come again, instead of waiting the outage out.
SERVER_DOWN_S = 4.0
SLOW_STRIPE_PATHS = r"^/v1/(invoices|subscriptions|subscription_schedules)"


@dataclass(frozen=True)
class Blow:
    """One scheduled disruption: ``at_s`` seconds after the deals start."""

    at_s: float
    kind: str  # "worker_sigkill" or "temporal_restart"
    down_s: float


@dataclass
class ChaosReport:
    """What the run did and what the emulators held at the end."""

    deals: int
    completed: int
    faults: dict[str, int]
    duplicates: int
    lost: int
    mismatched_invoices: int
    elapsed_s: float
    stages: dict[str, int]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    state_dir: str = ""

    def figures(self) -> dict[str, Any]:
        """The JSON object printed as the run's last line."""
        return {
            "deals": self.deals,
            "completed": self.completed,
            "faults": self.faults,
            "duplicates": self.duplicates,
            "lost": self.lost,
            "mismatched_invoices": self.mismatched_invoices,
            "elapsed_s": round(self.elapsed_s, 1),
            "stages": self.stages,
            "counts": self.counts,
            "problems": self.problems[:20],
        }


def chaos_ports(port_offset: int | None) -> BenchPorts:
    """Every sandbox port plus ``port_offset``, or ephemeral ports when it is ``None``."""
    if port_offset is None:
        return BenchPorts.allocate(None)
    return BenchPorts(*(port + port_offset for port in DEFAULT_PORTS))


def fault_rules(rate: float, seed: int, crm: str = "salesforce") -> dict[str, dict[str, Any]]:
    """The steady faults of each emulator (``sandbox.common.FaultConfig``)."""
    hubspot_rules = (
        # HubSpot's 5xx on the deal writes (Closed Won, the billing ids).
        [{"path": r"^/crm/v3/objects/deals/", "method": "PATCH", "rate_500": rate}]
        if crm == "hubspot"
        else []
    )
    return {
        # Both billing systems get faults; the one the run does not bill with sees no traffic.
        "chargebee": {
            "seed": seed + 4,
            "rules": [
                {
                    "path": r"^/api/v2/(invoices|subscriptions|customers/[^/]+/subscription_for)",
                    "latency_ms": 300,
                },
                {
                    "path": r"^/api/v2/",
                    "method": "POST",
                    "rate_429": round(rate * 2 / 3, 4),
                    "rate_500": round(rate / 3, 4),
                    "retry_after_s": 1,
                },
            ],
        },
        "stripe": {
            "seed": seed,
            "rules": [
                # Slow billing calls first: a latency-only rule lets the request go on to the next.
                {
                    "path": r"^/v1/(invoices|subscriptions|subscription_schedules)",
                    "latency_ms": 300,
                },
                # Errors on writes only: an activity makes several reads and a few writes, and a
                # rate on every call would make most attempts fail, not a share of the calls.
                {
                    "path": r"^/v1/",
                    "method": "POST",
                    "rate_429": round(rate * 2 / 3, 4),
                    "rate_500": round(rate / 3, 4),
                    "retry_after_s": 1,
                },
            ],
        },
        "docusign": {
            "seed": seed + 1,
            "rules": [{"path": r"^/restapi/", "method": "POST", "rate_500": rate}],
        },
        "provisioning": {
            "seed": seed + 2,
            "rules": [{"path": r"^/v1/provision", "rate_500": rate}],
        },
        "salesforce": {"seed": seed + 3, "rules": []},
        "hubspot": {"seed": seed + 4, "rules": hubspot_rules},
    }


def salesforce_burst(seed: int) -> dict[str, Any]:
    return {
        "seed": seed,
        "rules": [{"path": r"^/services/data/", "rate_429": SALESFORCE_BURST_RATE}],
    }


def crm_burst(crm: str, seed: int) -> dict[str, Any]:
    """The CRM's API limit spent for a moment: Salesforce's REQUEST_LIMIT_EXCEEDED, or HubSpot's
    429 with its rate-limit headers, on most calls."""
    if crm == "hubspot":
        return {"seed": seed, "rules": [{"path": r"^/crm/", "rate_429": SALESFORCE_BURST_RATE}]}
    return salesforce_burst(seed)


def schedule(rng: random.Random, kills: int, restart_server: bool, window_s: float) -> list[Blow]:
    """Kills at random moments of the busy window; the server restart somewhere in its middle."""
    blows = [
        Blow(rng.uniform(2.0, window_s), "worker_sigkill", rng.uniform(0.2, 2.0))
        for _ in range(kills)
    ]
    if restart_server:
        at_s = rng.uniform(window_s * 0.3, window_s * 0.7)
        blows.append(Blow(at_s, "temporal_restart", SERVER_DOWN_S))
    return sorted(blows, key=lambda b: b.at_s)


class Engine:
    """One run's moving parts; ``run`` drives the deals while ``_blows`` and ``_bursts`` hit."""

    def __init__(
        self,
        stack: ChaosStack,
        world: World,
        planned: list[PlannedDeal],
        blows: list[Blow],
        *,
        seed: int,
        timeout_s: float,
        say: Callable[[str], None],
    ) -> None:
        self.stack = stack
        self.world = world
        self.planned = planned
        self.blows = blows
        self.seed = seed
        self.timeout_s = timeout_s
        self.say = say
        self.faults: Counter[str] = Counter()
        self.signed: set[str] = set()
        self.envelopes: dict[str, str] = {}
        self.server_down = asyncio.Event()
        self.replayed: set[str] = set()
        self.stages: dict[str, str] = {}
        self.blows_done = asyncio.Event()

    async def set_faults(self, emulator: str, config: dict[str, Any]) -> None:
        base = {
            "stripe": self.world.sandbox.stripe,
            "salesforce": self.world.sandbox.salesforce,
            "docusign": self.world.sandbox.docusign,
            "provisioning": self.world.sandbox.provisioning,
            "hubspot": self.world.sandbox.hubspot,
            "chargebee": self.world.sandbox.chargebee,
        }[emulator]
        response = await self.world.sandbox.http.post(f"{base}/_sandbox/faults", json=config)
        response.raise_for_status()

    async def _blows(self, started: float) -> None:
        try:
            for blow in self.blows:
                await asyncio.sleep(max(0.0, started + blow.at_s - time.monotonic()))
                self.say(f"{blow.kind} at {time.monotonic() - started:.1f} s")
                if blow.kind == "worker_sigkill":
                    await asyncio.to_thread(self.stack.kill_worker)
                    await asyncio.sleep(blow.down_s)
                    await asyncio.to_thread(self.stack.restart_worker)
                else:
                    # The server stops within about a second of SIGTERM and stays down down_s.
                    signing = asyncio.create_task(self._sign_while_server_is_down(1.0))
                    await asyncio.to_thread(self.stack.restart_temporal, blow.down_s)
                    await signing
                self.faults[blow.kind] += 1
        finally:
            self.blows_done.set()

    async def _bursts(self) -> None:
        """The CRM's API limit runs out now and then: most calls refused for a moment."""
        crm = self.world.settings.crm
        number = 0
        while not self._settled():
            await asyncio.sleep(SALESFORCE_BURST_EVERY_S)
            await self.set_faults(crm, crm_burst(crm, self.seed + 100 + number))
            self.faults[f"{crm}_limit_bursts"] += 1
            await asyncio.sleep(SALESFORCE_BURST_S)
            await self.set_faults(crm, {"rules": []})
            number += 1

    def _settled(self) -> bool:
        return self.blows_done.is_set() and all(
            self.stages.get(d.deal_id) in contract.TERMINAL_STAGES for d in self.planned
        )

    def _held(self, deal: PlannedDeal) -> bool:
        """Every third deal waits to be signed until the dev server is down, so that Connect
        meets an API that cannot reach Temporal (503) and must deliver again later."""
        restart_pending = any(b.kind == "temporal_restart" for b in self.blows)
        return restart_pending and not self.server_down.is_set() and deal.number % 3 == 0

    async def _sign(self, deal: PlannedDeal, envelope: str) -> None:
        if deal.deal_id in self.signed:
            return
        # Claimed before the call: the outage signer and the polling loop may meet here.
        self.signed.add(deal.deal_id)
        if not await self.world.sign(envelope):
            self.signed.discard(deal.deal_id)
            return
        # The envelope-sent message arrives after the completed one is on its way.
        await self.world.replay_late(envelope)

    async def _advance(self, deal: PlannedDeal) -> None:
        """The outside world's next move for one deal.

        The signer signs as soon as the envelope is in their inbox, whatever the deal's stage:
        a signature can beat the workflow's own record of having sent the contract.
        """
        envelope = self.envelopes.get(deal.deal_id)
        if envelope is None:
            return
        if deal.deal_id not in self.signed and not self._held(deal):
            await self._sign(deal, envelope)
        elif self.stages.get(deal.deal_id) == "completed" and deal.deal_id not in self.replayed:
            self.replayed.add(deal.deal_id)
            await self.world.replay_late(envelope)

    async def _sign_while_server_is_down(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        self.server_down.set()
        held = [
            (d, self.envelopes[d.deal_id])
            for d in self.planned
            if d.deal_id in self.envelopes and d.deal_id not in self.signed
        ]
        self.faults["signed_while_server_down"] += len(held)
        await asyncio.gather(*(self._sign(deal, envelope) for deal, envelope in held))

    async def run(self) -> None:
        started = time.monotonic()
        deadline = started + self.timeout_s
        starting = asyncio.gather(*(self.world.start(d) for d in self.planned))
        blows = asyncio.create_task(self._blows(started))
        bursts = asyncio.create_task(self._bursts())
        try:
            last = ""
            while not self._settled() and time.monotonic() < deadline:
                seen = await self.world.stages()
                self.stages.update({k: v for k, v in seen.items() if k in self.deal_ids})
                inbox = await self.world.envelopes()
                self.envelopes.update(
                    {k: envelope for k, (envelope, _) in inbox.items() if k in self.deal_ids}
                )
                await bounded(self.planned, self._advance, limit=8)
                line = ", ".join(f"{s} {n}" for s, n in sorted(self.stage_counts().items()))
                if line != last:
                    self.say(f"{time.monotonic() - started:5.1f} s  {line}")
                    last = line
                await asyncio.sleep(POLL_S)
            await starting
            await blows
        finally:
            for task in (blows, bursts):
                task.cancel()
            await asyncio.gather(blows, bursts, starting, return_exceptions=True)

    @property
    def deal_ids(self) -> set[str]:
        return {d.deal_id for d in self.planned}

    def stage_counts(self) -> dict[str, int]:
        return dict(Counter(self.stages.get(d.deal_id, "not started") for d in self.planned))


async def bounded(
    items: list[PlannedDeal], call: Callable[[PlannedDeal], Awaitable[None]], limit: int
) -> None:
    semaphore = asyncio.Semaphore(limit)

    async def one(item: PlannedDeal) -> None:
        async with semaphore:
            await call(item)

    await asyncio.gather(*(one(item) for item in items))


async def _emulator_faults(world: World) -> dict[str, int]:
    """Faults the emulators injected, by kind, from their own ``/_sandbox/stats``."""
    stats = await world.sandbox.stats()
    injected = {name: body.get("faults_injected", {}) for name, body in stats.items()}
    return {
        "stripe_429_retry_after": injected["stripe"].get("429", 0),
        "stripe_500": injected["stripe"].get("500", 0),
        "stripe_slow": injected["stripe"].get("latency", 0),
        "salesforce_request_limit_exceeded": injected["salesforce"].get("429", 0),
        "docusign_5xx": injected["docusign"].get("500", 0),
        "provisioning_5xx": injected["provisioning"].get("500", 0),
        "hubspot_429": injected.get("hubspot", {}).get("429", 0),
        "hubspot_5xx": injected.get("hubspot", {}).get("500", 0),
        "chargebee_429_retry_after": injected["chargebee"].get("429", 0),
        "chargebee_500": injected["chargebee"].get("500", 0),
        "chargebee_slow": injected["chargebee"].get("latency", 0),
    }


async def _needs_attention(world: World, deal_ids: list[str]) -> list[str]:
    problems = []
    for deal_id in deal_ids:
        with_error = await world.api.get(f"/v1/deals/{deal_id}")
        if with_error.status_code == 200:
            body = with_error.json()
            problems.append(f"{deal_id}: {body['stage']}, last error {body.get('last_error')}")
    return problems


async def _run(
    stack: ChaosStack,
    settings: Settings,
    *,
    deals: int,
    seed: int,
    kills: int,
    restart_server: bool,
    fault_rate: float,
    timeout_s: float,
    say: Callable[[str], None],
) -> ChaosReport:
    rng = random.Random(seed)
    world = World.open(settings)
    try:
        await world.configure_connect()
        if settings.crm == "hubspot":
            await world.configure_hubspot_webhooks()
            planned = await asyncio.to_thread(world.plan_hubspot, deals, OUTBOUND_EVERY)
        else:
            planned = await asyncio.to_thread(world.plan, deals, OUTBOUND_EVERY)
        # The busy window grows with the run: deals are still moving when the blows land.
        blows = schedule(rng, kills, restart_server, window_s=max(12.0, deals * 0.6))
        engine = Engine(stack, world, planned, blows, seed=seed, timeout_s=timeout_s, say=say)
        for emulator, config in fault_rules(fault_rate, seed, settings.crm).items():
            await engine.set_faults(emulator, config)
        started = time.monotonic()
        try:
            await engine.run()
        finally:
            for emulator in (
                "stripe",
                "salesforce",
                "docusign",
                "provisioning",
                "hubspot",
                "chargebee",
            ):
                await engine.set_faults(emulator, {"rules": []})
        elapsed = time.monotonic() - started
        # Visibility trails the workflows by a moment; read it once more with faults off.
        engine.stages.update(
            {k: v for k, v in (await world.stages()).items() if k in engine.deal_ids}
        )
        found: Audit = await asyncio.to_thread(audit, settings, planned, engine.stages)
        faults = {**await _emulator_faults(world), **engine.faults}
        faults.update(
            {
                k: v
                for k, v in world.counts.items()
                if k.startswith(("outbound", "connect_late", "hubspot"))
            }
        )
        faults.update(found.connect)
        unfinished = [d.deal_id for d in found.deals if d.stage != "completed"]
        problems = await _needs_attention(world, unfinished)
        problems += [f"{d.deal_id}: {p}" for d in found.deals for p in d.problems]
        problems += [
            f"{d.deal_id}: envelopes {d.envelopes}, customers {d.customers}, subscriptions "
            f"{d.subscriptions}, invoices sent {d.invoices_sent}, tenants {d.tenants}, "
            f"closed won {d.closed_won}"
            for d in found.deals
            if d.duplicates or d.lost
        ]
        return ChaosReport(
            deals=deals,
            completed=found.completed,
            faults=faults,
            duplicates=found.duplicates,
            lost=found.lost,
            mismatched_invoices=found.mismatched_invoices,
            elapsed_s=elapsed,
            stages=engine.stage_counts(),
            counts={
                "per_deal_max": {
                    "envelopes": max((d.envelopes for d in found.deals), default=0),
                    "customers": max((d.customers for d in found.deals), default=0),
                    "subscriptions": max((d.subscriptions for d in found.deals), default=0),
                    "invoices_sent": max((d.invoices_sent for d in found.deals), default=0),
                    "tenants": max((d.tenants for d in found.deals), default=0),
                },
                "totals": {
                    "envelopes": sum(d.envelopes for d in found.deals),
                    "customers": sum(d.customers for d in found.deals),
                    "subscriptions": sum(d.subscriptions for d in found.deals),
                    "invoices_sent": sum(d.invoices_sent for d in found.deals),
                    "tenants": sum(d.tenants for d in found.deals),
                    "closed_won": sum(1 for d in found.deals if d.closed_won),
                    "stray_customers": found.stray_customers,
                    "extra_provisioning_calls": found.extra_provisioning_calls,
                    "start_retries": world.counts["start_retries"],
                },
            },
            problems=problems,
            state_dir=str(stack.state_dir),
        )
    finally:
        await world.aclose()


def run_chaos(
    deals: int,
    *,
    seed: int = 8,
    kills: int = 3,
    restart_server: bool = True,
    state_dir: Path,
    port_offset: int | None = DEFAULT_PORT_OFFSET,
    fault_rate: float = 0.12,
    timeout_s: float = 600.0,
    say: Callable[[str], None] | None = None,
    crm: str = "salesforce",
    billing: str = "stripe",
) -> ChaosReport:
    """Run ``deals`` concurrent deals through the whole stack under faults and audit the result.

    Args:
        deals: how many deals run at once.
        seed: makes the fault rolls, the kill moments and the restart moment repeatable.
        kills: how many times the worker is SIGKILLed (and a new one started).
        restart_server: stop the dev server and start it again on the same SQLite file.
        state_dir: an empty directory for the database, emulator files and every child's log.
        port_offset: every sandbox port plus this; ``None`` takes ephemeral ports.
        fault_rate: share of vendor calls answered with an error (Stripe, DocuSign, product).
        timeout_s: the deals get this long to finish; the audit runs either way.
        say: receives one progress line at a time (the CLI prints them, tests log them).
        crm: ``salesforce``, or ``hubspot``: deals live in HubSpot, every fifth is started by
            HubSpot's signed webhook (delivered twice), HubSpot answers 429 in bursts and 5xx on
            deal writes.
        billing: the billing system the deals run on (``QTC_BILLING``): ``stripe`` or
            ``chargebee``; the audit reads that system's emulator.

    Every process the run starts is stopped before it returns, also when it fails.
    """
    settings = bench_settings(chaos_ports(port_offset), state_dir, task_queue="qtc-chaos", crm=crm)
    settings = settings.model_copy(
        update={
            # A killed worker must not keep a dead process's slots for long, and a stopped one
            # must not wait out the 30 s default while deals pile up.
            "worker_graceful_shutdown_s": 2.0,
            "api_temporal_timeout_s": 3.0,
            "api_retry_after_s": 1,
            "billing": billing,
        }
    )
    stack = ChaosStack(settings=settings, state_dir=state_dir, persist_temporal=True)
    try:
        stack.start()
        return asyncio.run(
            _run(
                stack,
                settings,
                deals=deals,
                seed=seed,
                kills=kills,
                restart_server=restart_server,
                fault_rate=fault_rate,
                timeout_s=timeout_s,
                say=say or (lambda _line: None),
            )
        )
    finally:
        stack.stop()


# --- command line ------------------------------------------------------------------------------


def _summary(report: ChaosReport) -> Table:
    table = Table(title=f"Chaos run: {report.deals} deals in {report.elapsed_s:.0f} s")
    table.add_column("figure")
    table.add_column("value", justify="right")
    ok = "green"
    rows: list[tuple[str, object, bool]] = [
        ("deals", report.deals, True),
        ("completed", report.completed, report.completed == report.deals),
        ("duplicates found", report.duplicates, report.duplicates == 0),
        ("lost deals", report.lost, report.lost == 0),
        ("mismatched invoices", report.mismatched_invoices, report.mismatched_invoices == 0),
    ]
    rows += [(f"fault: {kind}", count, True) for kind, count in sorted(report.faults.items())]
    rows += [(f"total: {k}", v, True) for k, v in report.counts.get("totals", {}).items()]
    for name, value, good in rows:
        table.add_row(name, f"[{ok if good else 'red'}]{value}[/]")
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description="Run many deals while the worker, the server and the vendors misbehave.",
    )
    parser.add_argument("--deals", type=int, default=20)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--kills", type=int, default=3, help="worker SIGKILLs")
    parser.add_argument("--no-server-restart", action="store_true")
    parser.add_argument("--fault-rate", type=float, default=0.12)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the deals")
    parser.add_argument(
        "--port-offset",
        default=str(DEFAULT_PORT_OFFSET),
        help="added to every sandbox port (7233, 8233, 8000, 12111-12117, 12121); 'auto': "
        "ephemeral",
    )
    parser.add_argument("--keep", action="store_true", help="keep the state directory and logs")
    parser.add_argument(
        "--crm",
        choices=["salesforce", "hubspot"],
        default="salesforce",
        help="the CRM the deals live in (hubspot: its webhooks start some, its faults included)",
    )
    parser.add_argument(
        "--billing", choices=("stripe", "chargebee"), default="stripe", help="QTC_BILLING"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    stop_on_sigterm()
    configure_logging("WARNING", json=False)
    console = Console(stderr=True)
    state_dir = Path(tempfile.mkdtemp(prefix="qtc-chaos-"))
    report: ChaosReport | None = None
    try:
        report = run_chaos(
            args.deals,
            seed=args.seed,
            kills=args.kills,
            restart_server=not args.no_server_restart,
            state_dir=state_dir,
            port_offset=None if args.port_offset == "auto" else int(args.port_offset),
            fault_rate=args.fault_rate,
            timeout_s=args.timeout,
            say=lambda line: console.print(f"[dim]chaos[/] {line}"),
            crm=args.crm,
            billing=args.billing,
        )
    except (httpx.HTTPError, OSError, RuntimeError, TimeoutError) as err:
        console.print(f"[red]chaos run failed:[/] {err}")
    finally:
        clean = report is not None and not (report.duplicates or report.lost)
        if clean and report is not None and not args.keep:
            shutil.rmtree(state_dir, ignore_errors=True)
        else:
            console.print(f"state and logs kept in {state_dir}")
    if report is None:
        sys.exit(1)
    Console().print(_summary(report))
    for problem in report.problems[:20]:
        console.print(f"[red]problem[/] {problem}")
    sys.stdout.write(json_line(report) + "\n")
    sys.stdout.flush()
    clean = not (report.duplicates or report.lost or report.mismatched_invoices)
    sys.exit(0 if clean and report.completed == report.deals else 1)


def json_line(report: ChaosReport) -> str:
    return json.dumps(report.figures(), separators=(",", ":"), default=str)


if __name__ == "__main__":
    main()
