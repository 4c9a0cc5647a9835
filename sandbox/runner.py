"""Run the emulators (Stripe, Salesforce, DocuSign, product backend, HubSpot, NetSuite,
Chargebee, Slack with its SMTP sink, Ironclad) in one process.

``start_emulators`` binds every emulator's listening socket in the caller (so a busy port fails at
once, with the port in the message, and port 0 gives an ephemeral port known before anything
runs), then serves all the apps from one background thread running one asyncio loop with one
uvicorn server each. The Salesforce emulator is served over TLS with a certificate from the
sandbox CA (``sandbox.tls``); clients trust ``salesforce_ca_file``.

``python -m sandbox.runner`` runs them in the foreground with the ``QTC_*`` settings (default
ports 12111-12114, NetSuite 12116, state written through under ``<state dir>/emulators``) until
SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

import httpx
import structlog
import uvicorn
from starlette.types import ASGIApp

from runtime.logging import configure_logging
from runtime.settings import Settings, SettingsError, get_settings
from sandbox.chargebee.app import create_app as create_chargebee_app
from sandbox.docusign.app import create_app as create_docusign_app
from sandbox.hubspot.app import create_app as create_hubspot_app
from sandbox.ironclad.app import create_app as create_ironclad_app
from sandbox.netsuite.app import create_app as create_netsuite_app
from sandbox.provisioning.app import create_app as create_provisioning_app
from sandbox.salesforce.app import create_app as create_salesforce_app
from sandbox.slack.app import create_app as create_slack_app
from sandbox.smtp.sink import SmtpSink
from sandbox.stripe.app import create_app as create_stripe_app
from sandbox.tls import ensure_certificates

log = structlog.get_logger(__name__)

EMULATORS = (
    "stripe",
    "salesforce",
    "docusign",
    "provisioning",
    "hubspot",
    "netsuite",
    "chargebee",
    "slack",
    "ironclad",
)


class EmulatorStartError(RuntimeError):
    """An emulator could not start; the message names it and the address it wanted."""


@dataclass(frozen=True)
class EmulatorPorts:
    """One port per emulator; 0 asks the operating system for a free (ephemeral) port."""

    stripe: int = 0
    salesforce: int = 0
    docusign: int = 0
    provisioning: int = 0
    hubspot: int = 0
    netsuite: int = 0
    chargebee: int = 0
    slack: int = 0
    smtp: int = 0  # the SMTP sink, served beside the Slack emulator (not an HTTP app)
    ironclad: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> EmulatorPorts:
        return cls(
            stripe=settings.sandbox_stripe_port,
            salesforce=settings.sandbox_salesforce_port,
            docusign=settings.sandbox_docusign_port,
            provisioning=settings.sandbox_provisioning_port,
            hubspot=settings.sandbox_hubspot_port,
            netsuite=settings.sandbox_netsuite_port,
            chargebee=settings.sandbox_chargebee_port,
            slack=settings.sandbox_slack_port,
            smtp=settings.sandbox_smtp_port,
            ironclad=settings.sandbox_ironclad_port,
        )


def default_state_dir(settings: Settings) -> Path:
    return settings.state_dir / "emulators"


def default_connect_url(settings: Settings) -> str:
    """Where the DocuSign emulator delivers Connect events: the API's DocuSign webhook."""
    return settings.api_public_url.rstrip("/") + "/webhooks/docusign"


def default_hubspot_webhook_url(settings: Settings) -> str:
    """Where the HubSpot emulator delivers deal events: the API's HubSpot webhook."""
    return settings.api_public_url.rstrip("/") + "/webhooks/hubspot"


def default_ironclad_webhook_url(settings: Settings) -> str:
    """Where the Ironclad emulator delivers its webhook events: the API's Ironclad webhook."""
    return settings.api_public_url.rstrip("/") + "/webhooks/ironclad"


class RunningEmulators:
    """The emulators serving from a background thread; stop with ``stop()`` or ``with``."""

    def __init__(
        self,
        host: str,
        ports: EmulatorPorts,
        state_dir: Path,
        salesforce_ca_file: Path,
        servers: dict[str, uvicorn.Server],
        sockets: list[socket.socket],
        smtp: tuple[SmtpSink, socket.socket],
    ) -> None:
        url_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        self.host = host
        self.ports = ports
        self.state_dir = state_dir
        self.salesforce_ca_file = salesforce_ca_file
        self.stripe_url = f"http://{url_host}:{ports.stripe}"
        self.salesforce_url = f"https://{url_host}:{ports.salesforce}"
        self.docusign_url = f"http://{url_host}:{ports.docusign}"
        self.provisioning_url = f"http://{url_host}:{ports.provisioning}"
        self.hubspot_url = f"http://{url_host}:{ports.hubspot}"
        self.netsuite_url = f"http://{url_host}:{ports.netsuite}"
        self.chargebee_url = f"http://{url_host}:{ports.chargebee}"
        self.slack_url = f"http://{url_host}:{ports.slack}"
        self.smtp_host = url_host
        self.smtp_port = ports.smtp
        self._sink, self._smtp_socket = smtp
        self.ironclad_url = f"http://{url_host}:{ports.ironclad}"
        self._servers = servers
        self._sockets = sockets
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="qtc-emulators", daemon=True)

    @property
    def urls(self) -> dict[str, str]:
        """Base URL per emulator name."""
        return {
            "stripe": self.stripe_url,
            "salesforce": self.salesforce_url,
            "docusign": self.docusign_url,
            "provisioning": self.provisioning_url,
            "hubspot": self.hubspot_url,
            "netsuite": self.netsuite_url,
            "chargebee": self.chargebee_url,
            "slack": self.slack_url,
            "ironclad": self.ironclad_url,
        }

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve_all())
        except BaseException as exc:
            # uvicorn reports a failed start-up with SystemExit; keep it for ``_start``.
            self._error = exc

    async def _serve_all(self) -> None:
        loop = asyncio.get_running_loop()
        smtp = await loop.create_server(self._sink.protocol, sock=self._smtp_socket)
        try:
            await asyncio.gather(
                *(
                    server.serve(sockets=[sock])
                    for server, sock in zip(self._servers.values(), self._sockets, strict=True)
                )
            )
        finally:
            smtp.close()

    def _start(self, timeout_s: float) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not all(s.started for s in self._servers.values()):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                pending = [n for n, s in self._servers.items() if not s.started]
                self.stop()
                raise EmulatorStartError(
                    f"emulators did not start ({', '.join(pending)}): {self._error!r}"
                )
            time.sleep(0.01)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop every server and wait for the thread; safe to call twice."""
        for server in self._servers.values():
            server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._thread.is_alive():
            for server in self._servers.values():
                server.force_exit = True
            self._thread.join(timeout_s)
        for sock in [*self._sockets, self._smtp_socket]:
            sock.close()

    def reset(self) -> None:
        """Put every emulator back to its seed state (``POST /_sandbox/reset``)."""
        tls = ssl.create_default_context(cafile=str(self.salesforce_ca_file))
        with httpx.Client(timeout=10, verify=tls) as client:
            for url in self.urls.values():
                client.post(f"{url}/_sandbox/reset").raise_for_status()

    def __enter__(self) -> RunningEmulators:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _listen(host: str, port: int, name: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this. uvicorn sets TCP_NODELAY only on sockets it binds itself;
    # without it, Nagle plus delayed ACKs add about 40 ms to every request (measured here).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise EmulatorStartError(
            f"the {name} emulator cannot listen on {host}:{port} ({exc.strerror}); is another "
            "sandbox running? stop it, or set the QTC_SANDBOX_*_PORT settings"
        ) from exc
    return sock


def start_emulators(
    state_dir: Path,
    host: str = "127.0.0.1",
    ports: EmulatorPorts | None = None,
    connect_url: str | None = None,
    persist: bool = False,
    ironclad_webhook_url: str | None = None,
    *,
    hubspot_webhook_url: str | None = None,
    access_log: bool = False,
    startup_timeout_s: float = 30.0,
    tls_dir: Path | None = None,
) -> RunningEmulators:
    """Start the emulators and return once all of them accept connections.

    Args:
        state_dir: holds the TLS files and, with ``persist``, one JSON state file per emulator.
        host: address to listen on.
        ports: one port per emulator (0: ephemeral); default from settings (12111-12120).
        connect_url: where the DocuSign emulator delivers Connect events.
        hubspot_webhook_url: where the HubSpot emulator delivers deal events (None: nowhere
            until ``POST /_sandbox/webhooks`` sets it).
        ironclad_webhook_url: the webhook the Ironclad emulator subscribes at start-up.
        persist: write state through to ``state_dir`` so a restart loses nothing.
        access_log: log one line per request (useful in the foreground, noisy in tests).
        startup_timeout_s: give up (and stop what started) after this long.
        tls_dir: where the CA and the Salesforce certificate live; default ``state_dir/tls``.
    """
    ports = ports or EmulatorPorts.from_settings(get_settings())
    state_dir.mkdir(parents=True, exist_ok=True)
    tls = ensure_certificates(tls_dir or state_dir / "tls")

    def state(name: str) -> Path | None:
        return state_dir / f"{name}.json" if persist else None

    sink = SmtpSink(state_file=state("smtp"))
    apps: dict[str, ASGIApp] = {
        "stripe": create_stripe_app(state_file=state("stripe")),
        "salesforce": create_salesforce_app(state_file=state("salesforce")),
        "docusign": create_docusign_app(state_file=state("docusign"), connect_url=connect_url),
        "provisioning": create_provisioning_app(state_file=state("provisioning")),
        "hubspot": create_hubspot_app(state_file=state("hubspot"), webhook_url=hubspot_webhook_url),
        "netsuite": create_netsuite_app(
            state_file=state("netsuite"), catalog_path=get_settings().catalog
        ),
        "chargebee": create_chargebee_app(state_file=state("chargebee")),
        "slack": create_slack_app(state_file=state("slack"), mail=sink),
        "ironclad": create_ironclad_app(
            state_file=state("ironclad"), webhook_url=ironclad_webhook_url
        ),
    }
    wanted = {
        "stripe": ports.stripe,
        "salesforce": ports.salesforce,
        "docusign": ports.docusign,
        "provisioning": ports.provisioning,
        "hubspot": ports.hubspot,
        "netsuite": ports.netsuite,
        "chargebee": ports.chargebee,
        "slack": ports.slack,
        "ironclad": ports.ironclad,
    }
    sockets: list[socket.socket] = []
    try:
        for name in EMULATORS:
            sockets.append(_listen(host, wanted[name], name))
    except EmulatorStartError:
        for sock in sockets:
            sock.close()
        raise
    try:
        smtp_socket = _listen(host, ports.smtp, "smtp")
    except EmulatorStartError:
        for sock in sockets:
            sock.close()
        raise
    bound = {name: sock.getsockname()[1] for name, sock in zip(EMULATORS, sockets, strict=True)}
    actual = EmulatorPorts(**bound, smtp=smtp_socket.getsockname()[1])

    servers: dict[str, uvicorn.Server] = {}
    for name, sock in zip(EMULATORS, sockets, strict=True):
        tls_options: dict[str, str] = {}
        if name == "salesforce":
            tls_options = {"ssl_certfile": str(tls.cert_file), "ssl_keyfile": str(tls.key_file)}
        config = uvicorn.Config(
            apps[name],
            host=host,
            port=sock.getsockname()[1],
            log_config=None,
            log_level="info" if access_log else "warning",
            access_log=access_log,
            lifespan="auto",
            # A TLS client closing while we stop holds the stop for this long (asyncio waits for
            # its close_notify); sandbox requests are short, so one second serves in-flight ones.
            timeout_graceful_shutdown=1,
            **tls_options,  # type: ignore[arg-type]
        )
        servers[name] = uvicorn.Server(config)

    running = RunningEmulators(
        host, actual, state_dir, tls.ca_file, servers, sockets, (sink, smtp_socket)
    )
    running._start(startup_timeout_s)
    return running


def wait_for_stop_signal() -> int:
    """Block the main thread until SIGINT, SIGTERM or SIGHUP (a closed terminal) arrives;
    return the signal number."""
    received: list[int] = []
    stop = threading.Event()

    def handle(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, handle) for sig in stop_signals}
    try:
        # A bounded wait keeps the main thread responsive to signals on every platform.
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return received[0]


def main(argv: list[str] | None = None) -> None:
    try:
        settings = get_settings()
    except SettingsError as exc:
        raise SystemExit(f"python -m sandbox.runner: invalid settings: {exc}") from None
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.runner", description="Run the QTC sandbox emulators."
    )
    parser.add_argument("--state-dir", type=Path, default=default_state_dir(settings))
    parser.add_argument("--host", default=settings.sandbox_host)
    parser.add_argument("--connect-url", default=default_connect_url(settings))
    parser.add_argument("--tls-dir", type=Path, default=None, help="default: <state dir>/tls")
    parser.add_argument("--hubspot-webhook-url", default=default_hubspot_webhook_url(settings))
    parser.add_argument("--ironclad-webhook-url", default=default_ironclad_webhook_url(settings))
    parser.add_argument(
        "--no-persist", action="store_true", help="keep state in memory only (fresh each start)"
    )
    parser.add_argument(
        "--no-access-log", action="store_true", help="do not log a line per request"
    )
    args = parser.parse_args(argv)
    configure_logging(settings.log_level, settings.log_json)
    with start_emulators(
        args.state_dir,
        host=args.host,
        connect_url=args.connect_url,
        hubspot_webhook_url=args.hubspot_webhook_url,
        ironclad_webhook_url=args.ironclad_webhook_url,
        persist=not args.no_persist,
        access_log=not args.no_access_log,
        tls_dir=args.tls_dir,
    ) as emulators:
        log.info(
            "emulators started",
            **emulators.urls,
            salesforce_ca_file=str(emulators.salesforce_ca_file),
        )
        signum = wait_for_stop_signal()
        log.info("emulators stopping", signal=signal.Signals(signum).name)
    log.info("emulators stopped")


if __name__ == "__main__":
    main()
