"""End-to-end helpers: the worker as a separate process, opportunities, signing, emulator state."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import httpx
import stripe
from simple_salesforce import Salesforce, SFType
from temporalio.client import Client

from integrations.salesforce.client import build_salesforce_client
from qtc.deal import SIGNAL_SIGNATURE_COMPLETED, DealStatus, SignatureCompleted
from runtime.settings import Settings
from sandbox.runner import RunningEmulators
from service import deals

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CATALOG = ROOT / "catalog.toml"
WORKER_START_TIMEOUT_S = 60.0


def qtc_env(
    temporal_address: str,
    namespace: str,
    task_queue: str,
    emulators: RunningEmulators,
    state_dir: Path,
) -> dict[str, str]:
    """``QTC_*`` variables pointing a child process at this test's Temporal and emulators."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTC_")}
    env.update(
        {
            "QTC_ENV": "sandbox",
            "QTC_CATALOG": str(CATALOG),
            "QTC_STATE_DIR": str(state_dir),
            "QTC_TEMPORAL_ADDRESS": temporal_address,
            "QTC_TEMPORAL_NAMESPACE": namespace,
            "QTC_TEMPORAL_TASK_QUEUE": task_queue,
            "QTC_STRIPE_API_BASE": emulators.stripe_url,
            "QTC_SALESFORCE_INSTANCE_URL": emulators.salesforce_url,
            "QTC_SALESFORCE_CA_FILE": str(emulators.salesforce_ca_file),
            "QTC_DOCUSIGN_BASE_PATH": f"{emulators.docusign_url}/restapi",
            "QTC_DOCUSIGN_OAUTH_HOST": emulators.docusign_url.removeprefix("http://"),
            "QTC_PROVISIONING_URL": f"{emulators.provisioning_url}/v1/provision",
            "QTC_HUBSPOT_API_BASE": emulators.hubspot_url,
            "QTC_NETSUITE_BASE_URL": f"{emulators.netsuite_url}/services/rest",
            "QTC_LOG_JSON": "true",
            # A killed worker must not leave the next one waiting on its slots; keep it small.
            "QTC_WORKER_ACTIVITY_THREADS": "8",
            "QTC_WORKER_GRACEFUL_SHUTDOWN_S": "5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def settings_from(env: Mapping[str, str]) -> Settings:
    """The settings a child process started with ``env`` reads."""
    values = {k.removeprefix("QTC_").lower(): v for k, v in env.items() if k.startswith("QTC_")}
    return Settings.model_validate(values)


class WorkerProcess:
    """``python -m starters.cli worker`` in its own process group, logging to a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "starters.cli", "worker"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while b"worker started" not in self.log.read_bytes()[offset:]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"worker did not start:\n{self.tail()}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no completion reported; the server only sees silence."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM, as a process manager stops a worker; SIGKILL after 15 s."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


# --- CRM ------------------------------------------------------------------------------------


def salesforce(emulators: RunningEmulators) -> Salesforce:
    return build_salesforce_client(
        Settings(
            salesforce_instance_url=emulators.salesforce_url,
            salesforce_ca_file=emulators.salesforce_ca_file,
        )
    )


def opportunities(sf: Salesforce) -> SFType:
    return cast(SFType, sf.Opportunity)


def new_opportunity(sf: Salesforce, name: str) -> str:
    """A fresh open opportunity: one deal per opportunity, so every test needs its own."""
    created = opportunities(sf).create(
        {"Name": name, "StageName": "Negotiation/Review", "CloseDate": "2030-12-31"}
    )
    return str(created["id"])


def quote_file(directory: Path, example: str, opportunity_id: str) -> Path:
    """An example quote from ``examples/`` re-targeted at ``opportunity_id``."""
    quote = json.loads((EXAMPLES / example).read_text())
    quote["opportunity_id"] = opportunity_id
    path = directory / f"{opportunity_id}-{example}"
    path.write_text(json.dumps(quote))
    return path


# --- Temporal -------------------------------------------------------------------------------


async def wait_for_stage(
    client: Client, deal_id: str, *stages: str, timeout_s: float = 30.0
) -> DealStatus:
    """Poll the deal's status query until it reaches one of ``stages``."""
    deadline = time.monotonic() + timeout_s
    last: DealStatus | None = None
    while time.monotonic() < deadline:
        with contextlib.suppress(deals.DealNotFound, deals.TemporalUnavailable):
            last = await deals.get_status(client, deal_id)
            if last.stage in stages:
                return last
        await asyncio.sleep(0.1)
    history = [(e.stage, e.note) for e in last.stage_history] if last else None
    error = last.last_error if last else None
    raise AssertionError(f"{deal_id} never reached {stages}: {history}, last error {error}")


async def sign_contract(client: Client, emulators: RunningEmulators, deal_id: str) -> None:
    """Sign the deal's envelope in the DocuSign emulator, then signal the deal as the webhook
    would: no API runs in these tests, so the emulator's Connect delivery has no listener."""
    waiting = await wait_for_stage(client, deal_id, "awaiting_signature")
    assert waiting.envelope_id is not None
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            f"{emulators.docusign_url}/_sandbox/envelopes/{waiting.envelope_id}/sign", json={}
        )
    response.raise_for_status()
    signed = response.json()
    await deals.signal(
        client,
        deal_id,
        SIGNAL_SIGNATURE_COMPLETED,
        SignatureCompleted(
            envelope_id=signed["envelopeId"],
            completed_at=datetime.fromisoformat(signed["completedDateTime"]),
            signer_name="Bill Lumbergh",
        ),
        request_id=deals.signal_request_id(deal_id, signed["envelopeId"]),
    )


# --- emulator state -------------------------------------------------------------------------


class Emulated:
    """What the emulators hold for one deal, read through the real Stripe SDK and plain HTTP."""

    def __init__(self, emulators: RunningEmulators) -> None:
        self.emulators = emulators
        self.stripe = stripe.StripeClient(
            "sk_test_sandbox", base_addresses={"api": emulators.stripe_url}, max_network_retries=0
        ).v1

    def customers(self, deal_id: str) -> list[stripe.Customer]:
        return [
            c
            for c in self.stripe.customers.list(params={"limit": 100}).auto_paging_iter()
            if c.metadata is not None and c.metadata.to_dict().get("deal_id") == deal_id
        ]

    def schedules(self, customer_id: str) -> list[stripe.SubscriptionSchedule]:
        return list(
            self.stripe.subscription_schedules.list(
                params={"customer": customer_id, "limit": 100}
            ).auto_paging_iter()
        )

    def subscriptions(self, customer_id: str) -> list[stripe.Subscription]:
        return list(
            self.stripe.subscriptions.list(
                params={"customer": customer_id, "status": "all", "limit": 100}
            ).auto_paging_iter()
        )

    def invoices(self, customer_id: str) -> list[stripe.Invoice]:
        return list(
            self.stripe.invoices.list(
                params={"customer": customer_id, "limit": 100}
            ).auto_paging_iter()
        )

    def sent_events(self, invoice_id: str) -> int:
        events = self.stripe.events.list(params={"type": "invoice.sent", "limit": 100})
        return sum(1 for e in events.auto_paging_iter() if e.data.object["id"] == invoice_id)

    def http(self) -> httpx.Client:
        tls = ssl.create_default_context(cafile=str(self.emulators.salesforce_ca_file))
        return httpx.Client(timeout=10, verify=tls)

    def stripe_stats(self) -> dict[str, Any]:
        with self.http() as http:
            response = http.get(f"{self.emulators.stripe_url}/_sandbox/stats")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def provisioning_stats(self) -> dict[str, Any]:
        with self.http() as http:
            response = http.get(f"{self.emulators.provisioning_url}/_sandbox/stats")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def tenant(self, tenant_id: str) -> dict[str, Any] | None:
        with self.http() as http:
            response = http.get(f"{self.emulators.provisioning_url}/v1/tenants/{tenant_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def opportunity(self, sf: Salesforce, opportunity_id: str) -> dict[str, Any]:
        return dict(opportunities(sf).get(opportunity_id))
