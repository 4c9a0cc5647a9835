"""What the chaos run is made of: the stack it breaks, the outside world it plays, the audit.

``ChaosStack`` is the bench's stack plus the three blows the run deals: SIGKILL the worker and
start a new one, and stop the Temporal dev server and start it again on the same SQLite file.
``World`` plays the CRM, DocuSign and the sales team against the API: it creates the
opportunities, starts deals (by ``POST /v1/deals``, by a repeated Salesforce Outbound Message, or,
with ``QTC_CRM=hubspot``, by moving the HubSpot deal so that HubSpot's webhook arrives twice),
signs envelopes so that Connect delivers to the API, and replays captured Connect bodies late.
``audit`` reads every emulator's own state at the end and counts, per deal, what each outside
system holds: the product's own status query is never trusted for the invariants.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import stripe
from hubspot import HubSpot
from simple_salesforce import format_soql

from bench.common import DOCUSIGN_TOKEN, HUBSPOT_TOKEN, BenchStack, Sandbox
from integrations.hubspot.activities import HubSpotCrm
from integrations.hubspot.client import build_hubspot_client_from_settings
from integrations.salesforce.activities import SalesforceCrm
from integrations.salesforce.client import build_salesforce_client
from qtc import deal as contract
from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from qtc.models import Quote
from qtc.ports import ReadOpportunityInput
from runtime.settings import SANDBOX_TOKENS, Settings
from sandbox.hubspot.seed import seed_deal
from sandbox.stack import Child, StackError

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"
# Two shapes of first invoice: annual GBP billed at start, and a EUR first-of-month stub whose
# amount depends on the signature date (so a wrongly dated invoice shows up as a mismatch).
EXAMPLE_QUOTES = ("quote-phase3.json", "quote-monthly-stub.json")
# Seeded opportunities that hold a complete quote in the CRM (sandbox/salesforce/seed.py): the
# Outbound Message path clones them, because that path prices what Salesforce holds.
SEED_OPPORTUNITIES = ("006000000000001AAA", "006000000000002AAA", "006000000000005AAA")
SALES_TOKEN = next(t for t, (_, role) in SANDBOX_TOKENS.items() if role == "sales")
ORG_ID = "00D000000000001AAA"
WORKER_START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


# --- the stack, and the blows it takes ---------------------------------------------------------


@dataclass
class ChaosStack(BenchStack):
    """The bench stack with a worker that can be killed and a server that can be restarted."""

    def _take(self, name: str) -> tuple[int, Child]:
        for index, child in enumerate(self.children):
            if child.name == name:
                return index, self.children.pop(index)
        raise StackError(f"no running {name} to stop")

    def kill_worker(self) -> None:
        """SIGKILL the worker's process group: no shutdown, no completions, only silence."""
        _, child = self._take("worker")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait(STOP_TIMEOUT_S)

    def restart_worker(self) -> None:
        """Start a new worker and wait for *its* ``worker started`` line.

        ``Stack.start_worker`` looks for the line anywhere in the log, which a restarted worker
        appends to; it would return before the new worker is up. Only bytes after the log's
        current end count here.
        """
        log = self.state_dir / "logs" / "worker.log"
        offset = log.stat().st_size if log.exists() else 0
        child = self._spawn("worker", [sys.executable, "-m", "starters.cli", "worker"])
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while b"worker started" not in child.log.read_bytes()[offset:]:
            if child.proc.poll() is not None or time.monotonic() > deadline:
                tail = child.log.read_bytes()[offset:][-2000:].decode(errors="replace")
                raise StackError(f"restarted worker did not start (log: {child.log}):\n{tail}")
            time.sleep(0.1)

    def restart_temporal(self, down_s: float) -> None:
        """Stop the dev server (SIGTERM, as an operator would), wait, start it on the same file.

        The new server takes the old one's place in ``children`` so that ``stop`` still stops
        the API and the worker before the server they talk to.
        """
        index, child = self._take("temporal")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, signal.SIGTERM)
        try:
            child.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait(STOP_TIMEOUT_S)
        time.sleep(down_s)
        self.start_temporal()
        self.children.insert(index, self.children.pop())


# --- the outside world ---------------------------------------------------------------------------


# The Connect formats real accounts send (the emulator's ``POST /_sandbox/connect`` settings):
# the default JSON SIM message, JSON SIM with the envelope summary, and the legacy XML.
CONNECT_FORMATS: tuple[dict[str, Any], ...] = (
    {"format": "json", "include_data": []},
    {"format": "json", "include_data": ["custom_fields", "recipients"]},
    {"format": "xml"},
)


def connect_headers(
    body: bytes, secret: str, content_type: str = "application/json"
) -> dict[str, str]:
    """What DocuSign Connect signs a message with (HMAC-SHA256 of the raw body, base64)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {
        "Content-Type": content_type,
        "X-Authorization-Digest": "HMACSHA256",
        "X-DocuSign-Signature-1": base64.b64encode(digest).decode(),
    }


def outbound_message(notification_id: str, opportunity_id: str) -> bytes:
    """A Salesforce Outbound Message (SOAP) announcing that an opportunity is Closed Won."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soapenv:Body>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound">
<OrganizationId>{ORG_ID}</OrganizationId><ActionId>04k000000000001AAA</ActionId>
<SessionId xsi:nil="true"/>
<EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/59.0</EnterpriseUrl>
<PartnerUrl>https://example.my.salesforce.com/services/Soap/u/59.0</PartnerUrl>
<Notification><Id>{notification_id}</Id>
<sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
<sf:Id>{opportunity_id}</sf:Id><sf:StageName>Closed Won</sf:StageName></sObject>
</Notification>
</notifications></soapenv:Body></soapenv:Envelope>""".encode()


@dataclass
class PlannedDeal:
    """One deal of the run: how it is started and the quote it must end up billing."""

    number: int
    opportunity_id: str
    quote: Quote
    via_outbound: bool
    payload: dict[str, Any] | None = None  # the quote as the sales team posts it

    @property
    def deal_id(self) -> str:
        return contract.deal_id_for(self.opportunity_id)


class Retryable(Exception):
    """The API or an emulator asked for a retry (503, 429, connection refused)."""


@dataclass
class World:
    """Salesforce, DocuSign and the sales team, played against the API and the emulators."""

    settings: Settings
    sandbox: Sandbox
    api: httpx.AsyncClient
    counts: Counter[str] = field(default_factory=Counter)

    @classmethod
    def open(cls, settings: Settings) -> World:
        api = httpx.AsyncClient(
            base_url=f"http://{settings.api_host}:{settings.api_port}",
            headers={"Authorization": f"Bearer {SALES_TOKEN}"},
            timeout=30,
        )
        return cls(settings, Sandbox(settings), api)

    async def aclose(self) -> None:
        await self.api.aclose()
        await self.sandbox.aclose()

    # --- set-up (before any fault is switched on) ---

    async def configure_connect(self) -> None:
        """Connect to the API's webhook, every message twice, envelope-sent events included."""
        response = await self.sandbox.http.post(
            f"{self.sandbox.docusign}/_sandbox/connect",
            json={
                "url": f"{self.settings.api_public_url.rstrip('/')}/webhooks/docusign",
                "secret": self.settings.docusign_connect_secret.get_secret_value(),
                "deliver_twice": True,
                "events": ["envelope-sent", "envelope-completed"],
                # Retries must outlast a dev-server restart (the API answers 503 meanwhile).
                "max_attempts": 200,
                "max_backoff_s": 2.0,
            },
        )
        response.raise_for_status()

    async def configure_hubspot_webhooks(self) -> None:
        """HubSpot's webhooks to the API, every event delivered twice, retried past outages."""
        response = await self.sandbox.http.post(
            f"{self.sandbox.hubspot}/_sandbox/webhooks",
            json={
                "target_url": f"{self.settings.api_public_url.rstrip('/')}/webhooks/hubspot",
                "client_secret": self.settings.hubspot_client_secret.get_secret_value(),
                "deliver_twice": True,
                "max_attempts": 200,
                "initial_backoff_s": 0.2,
                "max_backoff_s": 2.0,
            },
        )
        response.raise_for_status()

    def plan_hubspot(self, deals: int, webhook_every: int) -> list[PlannedDeal]:
        """One HubSpot deal per deal (company, Signer contact, line items, qtc_* terms); every
        ``webhook_every``-th is started by HubSpot's webhook, the others by ``POST /v1/deals``
        with the quote HubSpot holds."""
        crm = HubSpotCrm(build_hubspot_client_from_settings(self.settings))
        report = crm.ensure_schema(create=True)
        if not report.complete:
            raise RuntimeError(report.message())
        hs = HubSpot(access_token=HUBSPOT_TOKEN, host=self.settings.hubspot_api_base)
        planned = []
        for number in range(deals):
            seeded = seed_deal(
                hs,
                quote_id=f"Q-CHAOS-{number:04d}",
                lines=(
                    {"hs_sku": "PLATFORM-PRO", "quantity": str(10 + number)},
                    {"hs_sku": "SUPPORT-PREMIUM", "quantity": "1"},
                ),
            )
            quote = crm.read_quote(seeded.deal_id)
            by_webhook = bool(webhook_every) and number % webhook_every == webhook_every - 1
            payload = None if by_webhook else quote.model_dump(mode="json", exclude_none=True)
            planned.append(PlannedDeal(number, seeded.deal_id, quote, by_webhook, payload))
        return planned

    def plan(self, deals: int, outbound_every: int) -> list[PlannedDeal]:
        """Create one opportunity per deal in the CRM emulator and the quote each must bill.

        Every ``outbound_every``-th deal is a clone of a seeded, fully quoted opportunity and is
        started by Salesforce; the others are bare opportunities whose quote comes from
        ``examples/`` with the opportunity and quote ids rewritten.
        """
        # simple-salesforce builds its object proxies in __getattr__, which mypy cannot see.
        sf: Any = build_salesforce_client(self.settings)
        crm = SalesforceCrm(sf)
        examples = [json.loads((EXAMPLES / name).read_text()) for name in EXAMPLE_QUOTES]
        planned = []
        for number in range(deals):
            if outbound_every and number % outbound_every == outbound_every - 1:
                seed = SEED_OPPORTUNITIES[number % len(SEED_OPPORTUNITIES)]
                opportunity_id = clone_opportunity(sf, seed, number)
                quote = crm.read_opportunity(ReadOpportunityInput(opportunity_id=opportunity_id))
                planned.append(PlannedDeal(number, opportunity_id, quote, via_outbound=True))
                continue
            created = sf.Opportunity.create(
                {
                    "Name": f"Chaos deal {number}",
                    "StageName": "Negotiation/Review",
                    "CloseDate": "2030-12-31",
                }
            )
            raw = dict(examples[number % len(examples)])
            raw.update(opportunity_id=str(created["id"]), quote_id=f"Q-CHAOS-{number:04d}")
            planned.append(
                PlannedDeal(number, str(created["id"]), Quote.model_validate(raw), False, raw)
            )
        sf.session.close()
        return planned

    # --- starting deals ---

    async def start(self, deal: PlannedDeal, attempts: int = 60) -> None:
        """Start one deal the way its source would, retrying while the stack is shaken."""
        for _ in range(attempts):
            try:
                if deal.via_outbound and self.settings.crm == "hubspot":
                    await self._move_to_contract_sent(deal)
                elif deal.via_outbound:
                    await self._announce_closed_won(deal)
                else:
                    await self._post_deal(deal)
                return
            except Retryable:
                self.counts["start_retries"] += 1
                await asyncio.sleep(1.0)
        raise TimeoutError(f"{deal.deal_id} could not be started in {attempts} attempts")

    async def _post_deal(self, deal: PlannedDeal) -> None:
        body = {"quote": deal.payload, "phase": 3}
        response = await self._post("/v1/deals", json=body)
        if response.status_code not in (200, 201):
            raise RuntimeError(f"POST /v1/deals answered {response.status_code}: {response.text}")

    async def _announce_closed_won(self, deal: PlannedDeal) -> None:
        """Salesforce repeats a notification it has no Ack for, and a second rule firing sends a
        new one: two copies of one notification at once, then a fresh notification id."""
        first = outbound_message(f"04l{deal.number:015d}", deal.opportunity_id)
        again = outbound_message(f"04m{deal.number:015d}", deal.opportunity_id)
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
        path = "/webhooks/salesforce/outbound-message"
        copies = await asyncio.gather(
            self._post(path, content=first, headers=headers),
            self._post(path, content=first, headers=headers),
        )
        late = await self._post(path, content=again, headers=headers)
        for response in (*copies, late):
            if response.status_code != 200 or "<Ack>true</Ack>" not in response.text:
                raise RuntimeError(
                    f"outbound message answered {response.status_code}: {response.text[:300]}"
                )
        self.counts["outbound_message_repeats"] += 2

    async def _move_to_contract_sent(self, deal: PlannedDeal) -> None:
        """The salesperson moves the deal in HubSpot; HubSpot's webhook (twice) starts it."""
        try:
            response = await self.sandbox.http.patch(
                f"{self.sandbox.hubspot}/crm/v3/objects/deals/{deal.opportunity_id}",
                headers={"Authorization": f"Bearer {HUBSPOT_TOKEN}"},
                json={"properties": {"dealstage": "contractsent"}},
            )
        except httpx.TransportError as err:
            raise Retryable(str(err)) from err
        if response.status_code in (429, 500, 502, 503):
            raise Retryable(f"HubSpot answered {response.status_code}")
        response.raise_for_status()
        self.counts["hubspot_webhook_starts"] += 1

    async def _post(self, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.api.post(path, **kwargs)
        except httpx.TransportError as err:
            raise Retryable(str(err)) from err
        if response.status_code in (429, 502, 503, 504):
            raise Retryable(f"{path} answered {response.status_code}")
        return response

    # --- watching and signing ---

    async def stages(self) -> dict[str, str]:
        """Deal id -> stage, from one visibility list through the API (empty while it is down)."""
        try:
            response = await self.api.get("/v1/deals", params={"limit": 1000})
        except httpx.TransportError:
            return {}
        if response.status_code != 200:
            return {}
        return {row["deal_id"]: row.get("stage") or "" for row in response.json()["deals"]}

    async def envelopes(self) -> dict[str, tuple[str, str]]:
        """Deal id -> (envelope id, status), as the signer's DocuSign inbox shows them."""
        response = await self.sandbox.http.get(
            f"{self.sandbox.docusign}/restapi/v2.1/accounts/"
            f"{self.settings.docusign_account_id}/envelopes",
            params={"from_date": "2000-01-01", "count": "100000", "include": "custom_fields"},
            headers={"Authorization": f"Bearer {DOCUSIGN_TOKEN}"},
        )
        response.raise_for_status()
        found: dict[str, tuple[str, str]] = {}
        for envelope in response.json().get("envelopes", []):
            fields = envelope.get("customFields", {}).get("textCustomFields", [])
            values = {f.get("name"): f.get("value") for f in fields}
            if values.get("deal_id"):
                found[values["deal_id"]] = (envelope["envelopeId"], envelope["status"])
        return found

    async def sign(self, envelope_id: str) -> bool:
        """Sign in the DocuSign emulator; Connect then tells the API (twice). True once signed.

        The Connect configuration is switched first to one of the formats real accounts send,
        chosen by the envelope; signatures running side by side may swap formats, which only
        mixes them further.
        """
        message_format = CONNECT_FORMATS[zlib.crc32(envelope_id.encode()) % len(CONNECT_FORMATS)]
        try:
            await self.sandbox.http.post(
                f"{self.sandbox.docusign}/_sandbox/connect", json=message_format
            )
            response = await self.sandbox.http.post(
                f"{self.sandbox.docusign}/_sandbox/envelopes/{envelope_id}/sign", json={}
            )
        except httpx.TransportError:
            return False
        # 409: already completed (an earlier call signed it but its answer was lost).
        return response.status_code in (200, 409)

    async def replay_late(self, envelope_id: str, attempts: int = 30) -> None:
        """Post captured Connect bodies again, oldest last: a second ``envelope-completed`` and
        then the ``envelope-sent`` that DocuSign generated before it (out of order), signed.

        Like Connect, a body the API cannot take yet (503 while Temporal is down) is sent again.
        """
        response = await self.sandbox.http.get(
            f"{self.sandbox.docusign}/_sandbox/deliveries", params={"envelope_id": envelope_id}
        )
        response.raise_for_status()
        records = response.json()["deliveries"]
        by_event = {r["event"]: r for r in records if r["copy"] == 1}
        secret = self.settings.docusign_connect_secret.get_secret_value()
        for event in ("envelope-completed", "envelope-sent"):
            record = by_event.get(event)
            if record is None:
                continue
            message = record["message"]
            if isinstance(message, str):  # the legacy XML format
                body, content_type = message.encode(), "text/xml; charset=utf-8"
            else:
                body = json.dumps({**message, "retryCount": 7}).encode()
                content_type = "application/json"
            headers = connect_headers(body, secret, content_type)
            kind = "connect_late_" + event.removeprefix("envelope-")
            for _ in range(attempts):
                try:
                    answer = await self._post("/webhooks/docusign", content=body, headers=headers)
                except Retryable:
                    self.counts["connect_late_retried"] += 1
                    await asyncio.sleep(1.0)
                    continue
                outcome = kind if answer.is_success else f"{kind}_refused_{answer.status_code}"
                self.counts[outcome] += 1
                break


def clone_opportunity(sf: Any, seed_id: str, number: int) -> str:
    """A new opportunity carrying the seed's account, QTC fields and line items."""
    seed = dict(sf.Opportunity.get(seed_id))
    copy = {
        k: v
        for k, v in seed.items()
        if (k.startswith("QTC_") or k in ("AccountId", "CurrencyIsoCode")) and v is not None
    }
    copy.update(
        Name=f"Chaos deal {number} (from {seed_id})",
        StageName="Negotiation/Review",
        CloseDate="2030-12-31",
        QTC_Quote_Id__c=f"Q-CHAOS-{number:04d}",
    )
    created = sf.Opportunity.create(copy)
    opportunity_id = str(created["id"])
    lines = sf.query_all(
        format_soql(
            "SELECT Product2Id, Quantity, Discount, UnitPrice FROM OpportunityLineItem "
            "WHERE OpportunityId = {}",
            seed_id,
        )
    )["records"]
    for line in lines:
        item = {k: v for k, v in line.items() if k != "attributes"}
        sf.OpportunityLineItem.create({**item, "OpportunityId": opportunity_id})
    return opportunity_id


# --- the audit ---------------------------------------------------------------------------------


@dataclass
class DealFindings:
    """What the outside systems hold for one deal, counted from their own state."""

    deal_id: str
    stage: str
    envelopes: int = 0
    customers: int = 0
    subscriptions: int = 0
    invoices_sent: int = 0
    tenants: int = 0
    closed_won: bool = False
    invoice_matches: bool | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        extra = (self.envelopes, self.customers, self.subscriptions, self.invoices_sent)
        return sum(max(n - 1, 0) for n in (*extra, self.tenants))

    @property
    def lost(self) -> bool:
        """Not finished, or finished with a missing effect: either way revenue went missing."""
        return self.stage != "completed" or not all(
            (
                self.envelopes,
                self.customers,
                self.subscriptions,
                self.invoices_sent,
                self.tenants,
                self.closed_won,
            )
        )


@dataclass
class Audit:
    deals: list[DealFindings]
    stray_customers: int
    extra_provisioning_calls: int
    connect: dict[str, int]  # Connect deliveries: duplicate copies, failed attempts

    @property
    def duplicates(self) -> int:
        per_deal = sum(d.duplicates for d in self.deals)
        return per_deal + self.stray_customers + self.extra_provisioning_calls

    @property
    def lost(self) -> int:
        return sum(1 for d in self.deals if d.lost)

    @property
    def mismatched_invoices(self) -> int:
        return sum(1 for d in self.deals if d.invoice_matches is False)

    @property
    def completed(self) -> int:
        return sum(1 for d in self.deals if d.stage == "completed")


_FRACTION = re.compile(r"\.(\d{6})\d*")


def docusign_time(text: str) -> datetime:
    """DocuSign's ``2026-11-28T01:30:00.1234567Z`` (seven fraction digits) as a datetime."""
    return datetime.fromisoformat(_FRACTION.sub(r".\1", text).replace("Z", "+00:00"))


def _stripe(settings: Settings) -> Any:
    return stripe.StripeClient(
        "sk_test_sandbox",
        base_addresses={"api": f"http://{settings.sandbox_host}:{settings.sandbox_stripe_port}"},
        max_network_retries=0,
    ).v1


def audit(settings: Settings, planned: list[PlannedDeal], stages: dict[str, str]) -> Audit:
    """Count, per deal, what DocuSign, Stripe, the product backend and Salesforce hold.

    Call with every fault switched off: the emulators answer their list endpoints with faults too.
    """
    catalog = load_catalog(Path(settings.catalog))
    by_opportunity = {d.opportunity_id: d for d in planned}
    findings = {
        d.deal_id: DealFindings(d.deal_id, stages.get(d.deal_id, "unknown")) for d in planned
    }
    host = settings.sandbox_host
    docusign = f"http://{host}:{settings.sandbox_docusign_port}"
    provisioning = f"http://{host}:{settings.sandbox_provisioning_port}"
    with httpx.Client(timeout=60) as http:
        deliveries = http.get(f"{docusign}/_sandbox/deliveries").json()["deliveries"]
        # Read from the envelopes themselves: most Connect formats do not carry custom fields.
        listed = http.get(
            f"{docusign}/restapi/v2.1/accounts/{settings.docusign_account_id}/envelopes",
            params={"from_date": "2000-01-01", "count": "100000", "include": "custom_fields"},
            headers={"Authorization": f"Bearer {DOCUSIGN_TOKEN}"},
        ).json()
        tenants = http.get(f"{provisioning}/v1/tenants").json()["data"]
        provisioning_stats = http.get(f"{provisioning}/_sandbox/stats").json()

    # DocuSign: distinct envelopes per opportunity (custom field), and when each was signed.
    envelopes: dict[str, set[str]] = defaultdict(set)
    signed_at: dict[str, datetime] = {}
    for envelope in listed.get("envelopes", []):
        fields = envelope.get("customFields", {}).get("textCustomFields", [])
        opportunity = next((f["value"] for f in fields if f["name"] == "opportunity_id"), None)
        if opportunity not in by_opportunity:
            continue
        deal_id = by_opportunity[opportunity].deal_id
        envelopes[deal_id].add(envelope["envelopeId"])
        if envelope["status"] == "completed" and envelope.get("completedDateTime"):
            signed_at[deal_id] = docusign_time(envelope["completedDateTime"])
    for deal_id, ids in envelopes.items():
        findings[deal_id].envelopes = len(ids)

    # Stripe: customers by metadata, then subscriptions, sent invoices by customer.
    client = _stripe(settings)
    customer_deal: dict[str, str] = {}
    stray = 0
    for customer in client.customers.list(params={"limit": 100}).auto_paging_iter():
        tagged = (customer.metadata.to_dict() if customer.metadata else {}).get("deal_id")
        if tagged is not None and tagged in findings:
            customer_deal[customer.id] = str(tagged)
            findings[tagged].customers += 1
        else:
            stray += 1
    for customer_id, owner in customer_deal.items():
        # A schedule is the subscription contract; a stub deal's schedule starts on the anchor
        # date, so its subscription does not exist yet. Count schedules, plus subscriptions made
        # without one.
        schedules = client.subscription_schedules.list(
            params={"customer": customer_id, "limit": 100}
        ).auto_paging_iter()
        subscriptions = client.subscriptions.list(
            params={"customer": customer_id, "status": "all", "limit": 100}
        ).auto_paging_iter()
        findings[owner].subscriptions += sum(1 for _ in schedules) + sum(
            1 for s in subscriptions if not s.schedule
        )
    sent: Counter[str] = Counter()
    for event in client.events.list(
        params={"type": "invoice.sent", "limit": 100}
    ).auto_paging_iter():
        sent[event.data.object["id"]] += 1
    for invoice_id, times in sent.items():
        invoice = client.invoices.retrieve(invoice_id)
        billed_deal = customer_deal.get(str(invoice.customer))
        if billed_deal is None:
            continue
        found = findings[billed_deal]
        found.invoices_sent += times
        deal = next(d for d in planned if d.deal_id == billed_deal)
        if billed_deal not in signed_at:
            found.problems.append(f"invoice {invoice_id} sent but no signature recorded")
            found.invoice_matches = False
            continue
        expected = price_quote(deal.quote, catalog, signed_at[billed_deal]).invoices[0]
        billed = sorted((line.quantity, line.amount) for line in invoice.lines.data)
        wanted = sorted((line.quantity, line.amount_minor) for line in expected.lines)
        matches = (
            invoice.total == expected.total_minor
            and invoice.currency == deal.quote.currency
            and billed == wanted
        )
        if not matches:
            found.problems.append(
                f"invoice {invoice_id}: {invoice.currency} {invoice.total} {billed}, expected "
                f"{deal.quote.currency} {expected.total_minor} {wanted}"
            )
        # One wrong invoice makes the deal's billing wrong, whatever the other copies say.
        found.invoice_matches = matches and found.invoice_matches is not False

    # Product backend: tenants (one per Stripe customer) naming each deal.
    provisioned_deals = 0
    for tenant in tenants:
        for deal_id in tenant.get("deals", []):
            if deal_id in findings:
                findings[deal_id].tenants += 1
                provisioned_deals += 1
    extra_calls = max(int(provisioning_stats.get("provisioned", 0)) - provisioned_deals, 0)

    # The CRM: the opportunity was written Closed Won (in HubSpot, with the billing customer id).
    if settings.crm == "hubspot":
        hs = HubSpot(access_token=HUBSPOT_TOKEN, host=settings.hubspot_api_base)
        for deal in planned:
            props = hs.crm.deals.basic_api.get_by_id(
                deal.opportunity_id, properties=["dealstage", "qtc_billing_customer_id"]
            ).properties
            findings[deal.deal_id].closed_won = props.get("dealstage") == "closedwon" and bool(
                props.get("qtc_billing_customer_id")
            )
    else:
        sf: Any = build_salesforce_client(settings)
        try:
            for deal in planned:
                opportunity = sf.Opportunity.get(deal.opportunity_id)
                findings[deal.deal_id].closed_won = opportunity.get("StageName") == "Closed Won"
        finally:
            sf.session.close()
    connect = {
        "connect_second_copies": sum(1 for r in deliveries if r["copy"] > 1),
        "connect_failed_attempts": sum(
            1
            for r in deliveries
            for a in r["attempts"]
            if a["statusCode"] is None or not 200 <= a["statusCode"] < 300
        ),
    }
    return Audit(list(findings.values()), stray, extra_calls, connect)
