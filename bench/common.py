"""What both benchmarks share: the stack on its own ports, deal factories, sampling, percentiles.

The stack is the demo's (``sandbox.stack.Stack``: dev server on a SQLite file in WAL mode,
emulators, worker and API as child processes configured through ``QTC_*`` variables) on ports that
do not collide with a running demo, with two differences that a benchmark needs: the emulators keep
their state in memory (a write-through JSON file of 10,000 envelopes would measure the disk, not
the product), and every port can be chosen (``--port-base``) or left to the operating system.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import httpx
import psutil
from temporalio.client import Client

from qtc import deal as contract
from qtc import ports
from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from qtc.deal import DealStatus
from qtc.models import PricedQuote
from runtime.settings import Settings
from sandbox.stack import Child, Stack, StackError, free_ports, port_free
from service.deals import start_deal

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_QUOTE = REPO_ROOT / "examples" / "quote-phase3.json"
SALESFORCE_SESSION = "sandbox-session"
DOCUSIGN_TOKEN = "sandbox-docusign-token"
HUBSPOT_TOKEN = "sandbox-hubspot-token"
STARTED_BY = "bench"
# Bounded fan-out for the bench's own calls: enough to keep the stack busy, few enough that the
# bench process does not become the bottleneck it is measuring.
CONCURRENCY = 32
# Worker processes the benchmarks start: one per core of the 2-core machine they were tuned on.
# A single Python worker tops out near one core (its interpreter lock) while the server and the
# emulators leave the other partly idle; a second process on the same task queue uses it.
DEFAULT_WORKERS = 2
MB = 1024 * 1024


# --- options -----------------------------------------------------------------------------------


def add_workers_option(parser: argparse.ArgumentParser, default: int, why: str) -> None:
    """``--workers``: worker processes the bench's stack starts on the task queue (at least 1)."""

    def at_least_one(text: str) -> int:
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError("must be at least 1")
        return value

    parser.add_argument(
        "--workers",
        type=at_least_one,
        default=default,
        help=f"worker processes on the task queue (default {default}: {why})",
    )


# --- ports and settings ----------------------------------------------------------------------


@dataclass(frozen=True)
class BenchPorts:
    temporal: int
    ui: int
    api: int
    stripe: int
    salesforce: int
    docusign: int
    provisioning: int
    hubspot: int
    netsuite: int
    chargebee: int
    slack: int  # the Slack emulator, and the SMTP sink beside it
    smtp: int
    ironclad: int
    # The first worker's /metrics; worker i uses this + i, so the bench's few workers need a run
    # of free ports here, never the sandbox's default (another stack may hold it).
    worker_metrics: int

    @classmethod
    def allocate(cls, base: int | None, workers: int = 2) -> BenchPorts:
        """``base``, ``base + 1``, ... when given; otherwise ephemeral ports."""
        if base is not None:
            return cls(*(base + i for i in range(14)))
        (
            temporal,
            ui,
            api,
            stripe,
            salesforce,
            docusign,
            provisioning,
            hubspot,
            netsuite,
            chargebee,
            slack,
            smtp,
            ironclad,
        ) = free_ports(13)
        return cls(
            temporal,
            ui,
            api,
            stripe,
            salesforce,
            docusign,
            provisioning,
            hubspot,
            netsuite,
            chargebee,
            slack,
            smtp,
            ironclad,
            _free_run(workers),
        )


def _free_run(length: int) -> int:
    """The first of ``length`` consecutive free loopback ports."""
    for _ in range(50):
        (first,) = free_ports(1)
        if all(port_free("127.0.0.1", first + i) for i in range(1, length)):
            return first
    raise RuntimeError(f"no {length} consecutive free ports for the workers' metrics")


def bench_settings(
    ports: BenchPorts,
    state_dir: Path,
    *,
    task_queue: str = "qtc-bench",
    worker_cache: int | None = None,
    activity_threads: int | None = None,
    crm: str = "salesforce",
) -> Settings:
    """Sandbox settings pointing every part at the bench's ports and state directory."""
    host = "127.0.0.1"
    values: dict[str, Any] = {
        "env": "sandbox",
        "crm": crm,
        "catalog": REPO_ROOT / "catalog.toml",
        "state_dir": state_dir,
        "temporal_address": f"{host}:{ports.temporal}",
        "temporal_task_queue": task_queue,
        "temporal_ui_port": ports.ui,
        "api_host": host,
        "api_port": ports.api,
        "api_public_url": f"http://{host}:{ports.api}",
        "stripe_api_base": f"http://{host}:{ports.stripe}",
        "salesforce_instance_url": f"https://{host}:{ports.salesforce}",
        "salesforce_ca_file": state_dir / "emulators" / "tls" / "sandbox-ca.pem",
        "docusign_base_path": f"http://{host}:{ports.docusign}/restapi",
        "docusign_oauth_host": f"{host}:{ports.docusign}",
        "provisioning_url": f"http://{host}:{ports.provisioning}/v1/provision",
        "hubspot_api_base": f"http://{host}:{ports.hubspot}",
        "sandbox_host": host,
        "sandbox_stripe_port": ports.stripe,
        "sandbox_salesforce_port": ports.salesforce,
        "sandbox_docusign_port": ports.docusign,
        "sandbox_provisioning_port": ports.provisioning,
        "sandbox_hubspot_port": ports.hubspot,
        "sandbox_netsuite_port": ports.netsuite,
        "sandbox_chargebee_port": ports.chargebee,
        "chargebee_api_base": f"http://{host}:{ports.chargebee}",
        "sandbox_slack_port": ports.slack,
        "sandbox_smtp_port": ports.smtp,
        "slack_api_url": f"http://{host}:{ports.slack}/api/",
        "smtp_port": ports.smtp,
        "sandbox_ironclad_port": ports.ironclad,
        "ironclad_base_url": f"http://{host}:{ports.ironclad}",
        "worker_metrics_port": ports.worker_metrics,
    }
    if worker_cache is not None:
        values["worker_max_cached_workflows"] = worker_cache
    if activity_threads is not None:
        values["worker_activity_threads"] = activity_threads
    return Settings(**values)


@dataclass
class BenchStack(Stack):
    """The demo's stack on the bench's ports (``Stack.env`` hands every setting to the children),
    emulators in memory, plus the ceiling worker."""

    persist_emulators: bool = False
    # A log line per emulator request is a sandbox convenience, not part of the product: about a
    # tenth of the emulators' CPU under load.
    emulator_access_log: bool = False

    def start_ceiling_worker(self, task_queue: str, max_cached: int) -> Child:
        argv = [
            sys.executable,
            "-m",
            "bench.ceiling",
            "--address",
            self.settings.temporal_address,
            "--task-queue",
            task_queue,
            "--max-cached",
            str(max_cached),
        ]
        child = self._spawn("ceiling-worker", argv)
        wait_for_log(child, b"ceiling worker started", timeout_s=30)
        return child


def wait_for_log(child: Child, marker: bytes, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if marker in child.log.read_bytes():
            return
        if child.proc.poll() is not None:
            break
        time.sleep(0.1)
    tail = child.log.read_text(errors="replace")[-2000:]
    raise StackError(f"{child.name} did not start (log: {child.log}):\n{tail}")


def stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so the ``finally`` that stops the stack runs."""

    def handle(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handle)


# --- process sampling ------------------------------------------------------------------------


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _pid_list(value: int | list[int]) -> list[int]:
    return [value] if isinstance(value, int) else list(value)


def tree_rss(pid: int) -> int:
    total = 0
    for proc in _tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_info().rss
    return total


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for proc in _tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


class ProcessSampler:
    """Polls the RSS of named process trees from a thread; peaks are kept since ``reset``.

    A name may stand for several processes (every worker process): their RSS and CPU add up."""

    def __init__(self, pids: dict[str, int | list[int]], interval_s: float = 0.25) -> None:
        self.pids = {name: _pid_list(value) for name, value in pids.items()}
        self.interval_s = interval_s
        self.peak: dict[str, int] = dict.fromkeys(self.pids, 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def add(self, name: str, pid: int) -> None:
        with self._lock:
            self.pids[name] = [pid]
            self.peak[name] = 0

    def reset(self) -> None:
        with self._lock:
            self.peak = dict.fromkeys(self.pids, 0)

    def sample(self) -> dict[str, int]:
        with self._lock:
            pids = dict(self.pids)
        now = {name: sum(tree_rss(pid) for pid in group) for name, group in pids.items()}
        with self._lock:
            for name, rss in now.items():
                self.peak[name] = max(self.peak.get(name, 0), rss)
        return now

    def cpu_seconds(self) -> dict[str, float]:
        with self._lock:
            pids = dict(self.pids)
        return {name: sum(tree_cpu_seconds(pid) for pid in group) for name, group in pids.items()}

    def peak_mb(self) -> dict[str, float]:
        with self._lock:
            return {name: round(value / MB, 1) for name, value in self.peak.items()}

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()


# --- figures ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "load_avg_1_5_15": [round(x, 2) for x in load],
    }


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def emit(figures: dict[str, Any], *, json_only: bool) -> None:
    """Print the human summary (unless ``json_only``) and, as the last line, one JSON object."""
    if not json_only:
        width = max(len(k) for k in figures)
        for key, value in figures.items():
            if not isinstance(value, dict | list):
                sys.stdout.write(f"{key:<{width}}  {value}\n")
    sys.stdout.write(json.dumps(figures, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


def progress(message: str, *, quiet: bool) -> None:
    if not quiet:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        sys.stderr.write(f"[bench {stamp}] {message}\n")
        sys.stderr.flush()


async def bounded_gather(
    items: Iterable[T], call: Callable[[T], Awaitable[Any]], limit: int = CONCURRENCY
) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def one(item: T) -> Any:
        async with semaphore:
            return await call(item)

    return await asyncio.gather(*(one(item) for item in items))


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout_s: float, what: str, interval_s: float = 0.2
) -> None:
    """Poll ``check`` until it holds; TimeoutError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(interval_s)
    raise TimeoutError(f"gave up after {timeout_s:.0f} s waiting for {what}")


# --- the sandbox, from the bench's side ------------------------------------------------------


class Sandbox:
    """The emulators' REST and control endpoints the bench drives."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        host = settings.sandbox_host
        self.salesforce = f"https://{host}:{settings.sandbox_salesforce_port}"
        self.docusign = f"http://{host}:{settings.sandbox_docusign_port}"
        self.stripe = f"http://{host}:{settings.sandbox_stripe_port}"
        self.provisioning = f"http://{host}:{settings.sandbox_provisioning_port}"
        self.hubspot = f"http://{host}:{settings.sandbox_hubspot_port}"
        self.chargebee = f"http://{host}:{settings.sandbox_chargebee_port}"
        assert settings.salesforce_ca_file is not None
        tls = ssl.create_default_context(cafile=str(settings.salesforce_ca_file))
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        self.http = httpx.AsyncClient(timeout=60, verify=tls, limits=limits)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def create_opportunity(self, number: int) -> str:
        """An opportunity in the CRM the settings choose (the deal's quote is priced here, so
        the CRM only needs the record the deal marks Closed Won and writes the billing ids to)."""
        if self.settings.crm == "hubspot":
            return await self._create_hubspot_deal(number)
        version = self.settings.salesforce_api_version
        response = await self.http.post(
            f"{self.salesforce}/services/data/v{version}/sobjects/Opportunity",
            headers={"Authorization": f"Bearer {SALESFORCE_SESSION}"},
            json={
                "Name": f"Bench deal {number}",
                "StageName": "Negotiation/Review",
                "CloseDate": "2030-12-31",
            },
        )
        response.raise_for_status()
        opportunity_id: str = response.json()["id"]
        return opportunity_id

    async def _create_hubspot_deal(self, number: int) -> str:
        response = await self.http.post(
            f"{self.hubspot}/crm/v3/objects/deals",
            headers={"Authorization": f"Bearer {HUBSPOT_TOKEN}"},
            json={
                # Before a start stage: the deal is started by the bench, not by HubSpot's webhook.
                "properties": {"dealname": f"Bench deal {number}", "dealstage": "qualifiedtobuy"}
            },
        )
        response.raise_for_status()
        deal_id: str = response.json()["id"]
        return deal_id

    async def create_opportunities(self, count: int) -> list[str]:
        ids: list[str] = await bounded_gather(range(count), self.create_opportunity)
        return ids

    async def sign(self, envelope_id: str, attempts: int = 5) -> None:
        """Sign one envelope, trying again after a timeout, a lost connection or a refusal.

        A 409 on a later try means the earlier one went through. So a busy emulator, or a
        keep-alive connection the server closed as the request left, slows the bench down
        instead of stopping it.
        """
        url = f"{self.docusign}/_sandbox/envelopes/{envelope_id}/sign"
        for attempt in range(1, attempts + 1):
            try:
                response = await self.http.post(url, json={})
            except httpx.TransportError:
                if attempt == attempts:
                    raise
                continue
            if response.status_code == 409 and attempt > 1:
                return
            if response.status_code >= 500 and attempt < attempts:
                await asyncio.sleep(min(2**attempt, 30))
                continue
            response.raise_for_status()
            return

    async def envelopes_by_deal(self) -> dict[str, str]:
        """Deal id -> envelope id, from one DocuSign list call (custom field ``deal_id``)."""
        account = self.settings.docusign_account_id
        response = await self.http.get(
            f"{self.docusign}/restapi/v2.1/accounts/{account}/envelopes",
            params={"from_date": "2000-01-01", "count": "1000000", "include": "custom_fields"},
            headers={"Authorization": f"Bearer {DOCUSIGN_TOKEN}"},
        )
        response.raise_for_status()
        found: dict[str, str] = {}
        for envelope in response.json().get("envelopes", []):
            for custom in envelope.get("customFields", {}).get("textCustomFields", []):
                if custom.get("name") == "deal_id" and custom.get("value"):
                    found[custom["value"]] = envelope["envelopeId"]
        return found

    async def webhook_times(self) -> dict[str, datetime]:
        """Envelope id -> when the first Connect ``envelope-completed`` delivery was posted."""
        response = await self.http.get(f"{self.docusign}/_sandbox/deliveries")
        response.raise_for_status()
        first: dict[str, datetime] = {}
        for record in response.json()["deliveries"]:
            if record["event"] != "envelope-completed" or not record["attempts"]:
                continue
            at = datetime.fromisoformat(record["attempts"][0]["at"].replace("0Z", "+00:00"))
            envelope_id = record["envelopeId"]
            first[envelope_id] = min(at, first.get(envelope_id, at))
        return first

    async def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, base in (
            ("stripe", self.stripe),
            ("salesforce", self.salesforce),
            ("docusign", self.docusign),
            ("provisioning", self.provisioning),
            ("hubspot", self.hubspot),
            ("chargebee", self.chargebee),
        ):
            with contextlib.suppress(httpx.HTTPError, ValueError):
                response = await self.http.get(f"{base}/_sandbox/stats")
                out[name] = response.json()
        return out


# --- deals -----------------------------------------------------------------------------------


def priced_template(settings: Settings) -> PricedQuote:
    """The phase-3 example quote, priced once (the workflow re-dates it at signature)."""
    catalog = load_catalog(Path(settings.catalog))
    return price_quote(EXAMPLE_QUOTE.read_bytes(), catalog, datetime.now(UTC))


def priced_for(template: PricedQuote, opportunity_id: str, number: int) -> PricedQuote:
    return template.model_copy(
        update={"opportunity_id": opportunity_id, "quote_id": f"Q-BENCH-{number:06d}"}
    )


async def start_deals(client: Client, settings: Settings, priced: list[PricedQuote]) -> list[str]:
    async def one(quote: PricedQuote) -> str:
        result = await start_deal(client, settings, quote, phase=3, started_by=STARTED_BY)
        return result.deal_id

    ids: list[str] = await bounded_gather(priced, one)
    return ids


async def count(client: Client, query: str) -> int:
    return (await client.count_workflows(query)).count


async def wait_for_stage(
    client: Client,
    stage: str,
    at_least: int,
    timeout_s: float,
    *,
    quiet: bool,
    workflow: str = contract.WORKFLOW_NAME,
) -> None:
    query = f"WorkflowType = '{workflow}' AND {ports.SA_STAGE} = '{stage}'"
    last = -1

    async def ready() -> bool:
        nonlocal last
        now = await count(client, query)
        if now != last and not quiet:
            progress(f"{now}/{at_least} deals in {stage}", quiet=quiet)
        last = now
        return now >= at_least

    await wait_until(ready, timeout_s, f"{at_least} deals in {stage}", interval_s=1.0)


async def wait_for_completed(
    client: Client, total: int, timeout_s: float, *, quiet: bool, workflow: str | None = None
) -> None:
    name = workflow or contract.WORKFLOW_NAME
    query = f"WorkflowType = '{name}' AND ExecutionStatus = 'Completed'"
    await wait_until(
        lambda: _at_least(client, query, total), timeout_s, f"{total} {name} completed", 0.1
    )


async def _at_least(client: Client, query: str, total: int) -> bool:
    return await count(client, query) >= total


async def results(client: Client, deal_ids: list[str]) -> list[DealStatus]:
    async def one(deal_id: str) -> DealStatus:
        handle = client.get_workflow_handle(deal_id, result_type=DealStatus)
        status: DealStatus = await asyncio.wait_for(handle.result(), timeout=60)
        return status

    statuses: list[DealStatus] = await bounded_gather(deal_ids, one)
    return statuses


def stage_at(status: DealStatus, stage: str) -> datetime | None:
    for entry in status.stage_history:
        if entry.stage == stage:
            return entry.at
    return None


@dataclass
class DealTiming:
    deal_id: str
    webhook_at: datetime
    invoice_ms: float
    provisioned_ms: float
    completed_at: datetime


def timings(statuses: list[DealStatus], webhook_at: dict[str, datetime]) -> list[DealTiming]:
    """Signature webhook -> invoice sent and -> provisioned, per completed deal."""
    out = []
    for status in statuses:
        at = webhook_at.get(status.envelope_id or "")
        provisioned = stage_at(status, "provisioned")
        completed = stage_at(status, "completed")
        if at is None or status.invoice_sent_at is None or provisioned is None or not completed:
            continue
        out.append(
            DealTiming(
                deal_id=status.deal_id,
                webhook_at=at,
                invoice_ms=(status.invoice_sent_at - at).total_seconds() * 1000,
                provisioned_ms=(provisioned - at).total_seconds() * 1000,
                completed_at=completed,
            )
        )
    return out


def latency_figures(name: str, values: list[float], prefix: str = "") -> dict[str, float | None]:
    """``{prefix}p50_{name}_ms`` and the p95 / p99 alike."""
    return {f"{prefix}p{q}_{name}_ms": rounded(percentile(values, q)) for q in (50, 95, 99)}


def run_on_stack(
    settings: Settings,
    state_dir: Path,
    body: Callable[[BenchStack], Coroutine[Any, Any, dict[str, Any]]],
    *,
    json_only: bool,
    keep: bool,
    workers: int = 1,
) -> None:
    """Start a fresh stack, run ``body`` on it, stop it and print the figures; the state dir is
    removed after a clean run (``keep`` keeps it), and kept with its logs after a failure."""
    stack = BenchStack(
        settings=settings, state_dir=state_dir, persist_temporal=False, workers=workers
    )
    ok = False
    try:
        progress(f"starting the stack in {state_dir}", quiet=json_only)
        stack.start()
        figures = asyncio.run(body(stack))
        ok = True
    finally:
        stack.stop()
        if ok and not keep:
            shutil.rmtree(state_dir, ignore_errors=True)
        else:
            sys.stderr.write(f"state and logs kept in {state_dir}\n")
    emit(figures, json_only=json_only)
