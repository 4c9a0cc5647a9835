"""``qtc demo``: the whole product on the embedded sandbox, in minutes, with nothing but Python.

Starts the stack (Temporal dev server, emulators, worker, API), then drives the sample quotes of
``examples/`` through their life exactly as the outside world would: deals are started through the
API with a sales token, the deal desk approves through the API, the DocuSign emulator signs and
delivers a real HMAC-signed Connect event to the API's webhook, and a finance reviewer approves the
phase-2 invoice through the API. Nothing talks to the workflow directly.

The Connect messages come in every format a real account may be configured to send: the default
JSON SIM message (the envelope id alone: the API reads the envelope from the emulator), JSON SIM
with the envelope summary, and the legacy XML. The emulator's Connect configuration is switched
just before each signature, so each deal's message has its scenario's format.

One more deal lives in HubSpot: the demo builds it there through HubSpot's SDK (company, signer
contact, line items, the qtc_* terms) and moves it to "Contract Sent", as a salesperson would; the
HubSpot emulator delivers the v3-signed stage change to the API's ``/webhooks/hubspot``, which
starts the deal on a worker of its own (``QTC_CRM=hubspot``). It ends Closed Won in HubSpot with
the billing ids on the deal.

The phase-3 deal is started through a second API process whose ``QTC_ERP`` is ``netsuite``: it
records its first invoice in the NetSuite emulator (``erp_synced``) while every other deal, started
through the main API with no ERP, skips that step. One worker serves both.

One deal is billed by Chargebee instead of Stripe: a second worker, built with
``QTC_BILLING=chargebee``, serves its own task queue, and that deal is started on it through the
service layer (the API starts deals on the stack's task queue); everything after the start goes
through the API and the emulators like every other deal.

One more deal runs with its contract on Ironclad: a second worker and API with
``QTC_ESIGN=ironclad`` (a stack variant on its own task queue) take it, the Ironclad emulator
signs the workflow, and its RSA-signed webhook reaches the API.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from hubspot import HubSpot
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from integrations.hubspot.activities import HubSpotCrm
from integrations.hubspot.client import build_hubspot_client_from_settings
from integrations.hubspot.mapping import PropertyMap
from integrations.salesforce.client import build_salesforce_client
from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from qtc.deal import TERMINAL_STAGES
from qtc.errors import QtcError
from qtc.models import PricedQuote
from qtc.money import format_minor
from runtime.settings import Settings, dial_host
from runtime.temporal import connect as temporal_client
from sandbox.hubspot.seed import acme_company, seed_deal
from sandbox.stack import Stack, Variant, disagreements, stop_on_signals, with_hubspot_beside
from service.deals import DealServiceError, start_deal

SALES = "sandbox-sales"
DEAL_DESK = "sandbox-deal-desk"
FINANCE = "sandbox-finance"


@dataclass
class DemoDeal:
    """One sample quote, what the demo does with it, and the stage it must end in."""

    label: str
    example: str
    phase: int
    expected: str
    deal_id: str | None = None
    stage: str = "not started"
    status: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None
    signed: bool = False
    # The Connect configuration in force when this deal's envelope is signed.
    connect: str = "default SIM"
    # The extra API that starts the deal (``Stack.extra_apis``); None: the main API.
    via: str | None = None
    quote_approved: bool = False
    invoice_approved: bool = False
    billing: str = "stripe"
    # Signed this many days ago (the e-signature emulator back-dates the signature), so the deal
    # is mid-term today.
    signed_days_ago: int = 0
    # An amendment: the example file of the deal it amends, started once that one is billed.
    amends: str | None = None
    crm: str = "salesforce"
    crm_record: str | None = None  # the HubSpot deal id
    # The stack variant whose API starts the deal (its worker's settings differ), or the main one.
    variant: str | None = None

    @property
    def done(self) -> bool:
        return self.problem is not None or self.stage in TERMINAL_STAGES or self.stage == "rejected"


# The API through which the NetSuite deal is started (``QTC_ERP=netsuite``).
ERP_API = "erp"
ERP_ENV = {"QTC_ERP": "netsuite"}
# The deals started through an extra API rather than the main one.
STARTED_VIA = {"phase 3: the whole loop, ERP NetSuite": ERP_API}

DEMO_DEALS: tuple[tuple[str, str, int, str, str], ...] = (
    ("phase 1: stop at signature", "quote-phase1.json", 1, "completed", "default SIM"),
    ("phase 2: finance reviews invoice", "quote-phase2.json", 2, "completed", "SIM + summary"),
    ("phase 3: the whole loop, ERP NetSuite", "quote-phase3.json", 3, "completed", "legacy XML"),
    ("deal desk approval needed", "quote-needs-approval.json", 3, "completed", "default SIM"),
    (
        "monthly, first-of-month stub (EUR)",
        "quote-monthly-stub.json",
        3,
        "completed",
        "SIM + summary",
    ),
    ("rejected by CPQ", "quote-rejected.json", 3, "rejected", "default SIM"),
    (
        "services order: one invoice, no subscription",
        "quote-services.json",
        3,
        "completed",
        "default SIM",
    ),
)
# Billed by Chargebee: a 3-year EUR deal with uplift (one ramp per later year) and a one-time line.
CHARGEBEE_DEAL = (
    "phase 3 billed by Chargebee",
    "quote-chargebee.json",
    3,
    "completed",
    "default SIM",
)
CHARGEBEE_WORKER = "chargebee-worker"


def chargebee_queue(settings: Settings) -> str:
    return f"{settings.temporal_task_queue}-chargebee"


def chargebee_worker(settings: Settings) -> dict[str, dict[str, str]]:
    """The second worker of the demo's stack: the same vendors but Chargebee for billing."""
    return {
        CHARGEBEE_WORKER: {
            "QTC_BILLING": "chargebee",
            "QTC_TEMPORAL_TASK_QUEUE": chargebee_queue(settings),
        }
    }


# The emulator's Connect settings (``POST /_sandbox/connect``) for each format a real account uses.
# Deals whose contract goes through Ironclad: started through the ``ironclad`` variant's API.
IRONCLAD = Variant("ironclad", {"esign": "ironclad"})
IRONCLAD_DEALS: tuple[tuple[str, str, int, str], ...] = (
    ("phase 3, contract on Ironclad", "quote-ironclad.json", 3, "completed"),
)
CONNECT_FORMATS: dict[str, dict[str, Any]] = {
    "default SIM": {"format": "json", "include_data": []},
    "SIM + summary": {"format": "json", "include_data": ["custom_fields", "recipients"]},
    "legacy XML": {"format": "xml"},
}
# A monthly deal signed five weeks ago, and an amendment signed today: ten more seats from today
# to the end of the term, prorated on one invoice to the same customer.
AMENDED_DEAL = ("signed 5 weeks ago, then amended", "quote-amendable.json", 3, "completed")
AMENDMENT = ("amendment: +10 seats mid-term", "amendment-seats.json", 3, "completed")
AMENDED_SIGNED_DAYS_AGO = 35


class DemoError(RuntimeError):
    """The demo could not run; the message says what to do."""


class Demo:
    def __init__(
        self,
        settings: Settings,
        examples: Path,
        console: Console,
        api_urls: dict[str, str] | None = None,
        stack: Stack | None = None,
    ) -> None:
        self.settings = settings
        self.stack = stack
        # The extra APIs' URLs by name (``Stack.extra_api_urls``).
        self.api_urls = api_urls or {}
        self.examples = examples
        self.console = console
        self.api = httpx.Client(
            base_url=f"http://{dial_host(settings.api_host)}:{settings.api_port}", timeout=10
        )
        self.docusign = httpx.Client(
            base_url=f"http://{dial_host(settings.sandbox_host)}:{settings.sandbox_docusign_port}",
            timeout=10,
        )
        self.deals = [
            DemoDeal(label, example, phase, expected, connect=connect, via=STARTED_VIA.get(label))
            for label, example, phase, expected, connect in DEMO_DEALS
        ]
        label, example, phase, expected, connect = CHARGEBEE_DEAL
        self.deals.append(
            DemoDeal(label, example, phase, expected, connect=connect, billing="chargebee")
        )
        self.ironclad = httpx.Client(
            base_url=f"http://{settings.sandbox_host}:{settings.sandbox_ironclad_port}", timeout=10
        )
        self.variant_apis: dict[str, httpx.Client] = {}
        variants = stack.variant_settings if stack is not None else {}
        if IRONCLAD.name in variants:
            ironclad = variants[IRONCLAD.name]
            self.variant_apis[IRONCLAD.name] = httpx.Client(
                base_url=f"http://{ironclad.api_host}:{ironclad.api_port}", timeout=10
            )
            self.deals += [DemoDeal(*spec, variant=IRONCLAD.name) for spec in IRONCLAD_DEALS]
        self.amendment_check = ""
        self.deals.append(DemoDeal(*AMENDED_DEAL, signed_days_ago=AMENDED_SIGNED_DAYS_AGO))
        self.deals.append(DemoDeal(*AMENDMENT, amends=AMENDED_DEAL[1]))
        self.stripe = httpx.Client(
            base_url=f"http://{settings.sandbox_host}:{settings.sandbox_stripe_port}",
            auth=(settings.stripe_api_key.get_secret_value(), ""),
            timeout=10,
        )
        if settings.uses_hubspot:
            self.deals.append(
                DemoDeal(
                    "HubSpot: started by a signed webhook",
                    "",
                    settings.api_default_phase,
                    "completed",
                    crm="hubspot",
                )
            )

    def _auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def start_deals(self) -> None:
        for deal in self.deals:
            if deal.amends is not None:
                continue  # started once the deal it amends has been billed
            if deal.crm == "hubspot":
                self._start_in_hubspot(deal)
                continue
            quote = json.loads((self.examples / deal.example).read_text(encoding="utf-8"))
            if deal.billing == "chargebee":
                self._start_on_chargebee(deal, quote)
                continue
            url = "/v1/deals"
            if deal.via is not None:
                if deal.via not in self.api_urls:
                    deal.problem = f"the {deal.via} API is not running"
                    continue
                url = f"{self.api_urls[deal.via]}/v1/deals"
            api = self.api
            if deal.variant is not None:
                # The seeded opportunities belong to the other sample deals: this one gets its own.
                quote["opportunity_id"] = self._new_opportunity(quote["account"]["legal_name"])
                api = self.variant_apis[deal.variant]
            response = api.post(
                url, json={"quote": quote, "phase": deal.phase}, headers=self._auth(SALES)
            )
            if response.status_code == 422:
                errors = response.json().get("errors", [])
                deal.stage = "rejected"
                deal.status = {"errors": errors}
            elif response.is_success:
                deal.deal_id = response.json()["deal_id"]
                deal.stage = "started"
            else:
                deal.problem = f"POST /v1/deals answered {response.status_code}: {response.text}"

    def _start_on_chargebee(self, deal: DemoDeal, quote: dict[str, Any]) -> None:
        """Start the deal on the Chargebee worker's task queue, as the API would on its own."""
        settings = self.settings.model_copy(
            update={"temporal_task_queue": chargebee_queue(self.settings)}
        )
        try:
            priced = price_quote(quote, load_catalog(settings.catalog), datetime.now(UTC))
            started = asyncio.run(_start(settings, priced))
        except (QtcError, DealServiceError) as exc:
            deal.problem = f"could not start the Chargebee deal: {exc}"
            return
        deal.deal_id = started
        deal.stage = "started"

    def _start_amendment(self, deal: DemoDeal) -> None:
        original = next(d for d in self.deals if d.example == deal.amends)
        if original.problem is not None or original.stage in TERMINAL_STAGES - {"completed"}:
            deal.problem = f"the deal it amends ended {original.problem or original.stage}"
            return
        if original.stage != "completed" or original.deal_id is None:
            return
        amendment = json.loads((self.examples / deal.example).read_text(encoding="utf-8"))
        response = self.api.post(
            f"/v1/deals/{original.deal_id}/amendments",
            json={"quote": amendment, "phase": deal.phase},
            headers=self._auth(SALES),
        )
        if response.is_success:
            deal.deal_id = response.json()["deal_id"]
            deal.stage = "started"
        else:
            deal.problem = (
                f"POST /v1/deals/{original.deal_id}/amendments answered "
                f"{response.status_code}: {response.text}"
            )

    def _hubspot(self) -> HubSpot:
        return HubSpot(
            access_token=self.settings.hubspot_access_token.get_secret_value(),
            host=self.settings.hubspot_api_base,
        )

    def _start_in_hubspot(self, deal: DemoDeal) -> None:
        """Build the deal in HubSpot and move it to Contract Sent: HubSpot's webhook starts it."""
        crm = HubSpotCrm(
            build_hubspot_client_from_settings(self.settings),
            PropertyMap.from_settings(self.settings),
        )
        report = crm.ensure_schema(create=True)
        if not report.complete:
            deal.problem = report.message()
            return
        hs = self._hubspot()
        seeded = seed_deal(
            hs,
            quote_id="Q-HS-2001",
            company=acme_company(" (HubSpot)"),
            signer=("Hana", "Hubbard", "hana@acme.example"),
        )
        hs.crm.deals.basic_api.update(seeded.deal_id, {"properties": {"dealstage": "contractsent"}})
        deal.crm_record = seeded.deal_id
        deal.deal_id = f"deal-{seeded.deal_id}"
        deal.stage = "moved to Contract Sent in HubSpot"

    def _crm_outcome(self, deal: DemoDeal) -> str:
        if deal.crm != "hubspot" or deal.crm_record is None:
            return deal.crm
        found = self._hubspot().crm.deals.basic_api.get_by_id(
            deal.crm_record, properties=["dealstage", "qtc_billing_customer_id"]
        )
        written = "billing ids written" if found.properties.get("qtc_billing_customer_id") else ""
        return f"hubspot {deal.crm_record}: {found.properties.get('dealstage')} {written}".strip()

    def _advance(self, deal: DemoDeal) -> None:
        """Read the deal's status and play the outside world's next move for its stage."""
        if deal.deal_id is None and deal.amends is not None and not deal.done:
            self._start_amendment(deal)
        if deal.deal_id is None or deal.done:
            return
        response = self.api.get(f"/v1/deals/{deal.deal_id}", headers=self._auth(SALES))
        if not response.is_success:
            return
        deal.status = response.json()
        deal.stage = deal.status["stage"]
        if deal.stage == "pending_approval" and not deal.quote_approved:
            self._post(
                deal,
                f"/v1/deals/{deal.deal_id}/quote-approval",
                {"decision": "approve", "note": "within the deal desk's authority"},
                DEAL_DESK,
            )
            deal.quote_approved = True
        elif deal.stage == "awaiting_signature" and not deal.signed and deal.status["envelope_id"]:
            contract = deal.status["envelope_id"]
            when: dict[str, str] = {}
            if deal.signed_days_ago:
                moment = datetime.now(UTC) - timedelta(days=deal.signed_days_ago)
                when = {"signed_at": moment.isoformat()}
            if deal.status.get("esign") == "ironclad":
                signed = self.ironclad.post(f"/_sandbox/workflows/{contract}/sign", json=when)
            else:
                # The message is built when the envelope is signed, in the format configured then.
                configured = self.docusign.post(
                    "/_sandbox/connect", json=CONNECT_FORMATS[deal.connect]
                )
                if not configured.is_success:
                    deal.problem = f"Connect format: {configured.status_code} {configured.text}"
                    return
                signed = self.docusign.post(f"/_sandbox/envelopes/{contract}/sign", json=when)
            if signed.is_success:
                deal.signed = True
            else:
                deal.problem = f"signing failed: {signed.status_code} {signed.text}"
        elif deal.stage == "awaiting_invoice_review" and not deal.invoice_approved:
            self._post(
                deal,
                f"/v1/deals/{deal.deal_id}/invoice-review",
                {"decision": "approve", "note": "first invoice matches the signed order form"},
                FINANCE,
            )
            deal.invoice_approved = True

    def _new_opportunity(self, name: str) -> str:
        """An open opportunity in the CRM emulator (phase 3 marks it Closed Won)."""
        # The emulators' CA lives under the user's state directory (Stack.tls_dir).
        sf = build_salesforce_client(self.settings)
        created = sf.Opportunity.create(  # type: ignore[operator]
            {
                "Name": f"{name} (Ironclad)",
                "StageName": "Negotiation/Review",
                "CloseDate": "2030-12-31",
            }
        )
        sf.session.close()
        return str(created["id"])

    def _post(self, deal: DemoDeal, path: str, body: dict[str, Any], token: str) -> None:
        response = self.api.post(path, json=body, headers=self._auth(token))
        if not response.is_success:
            deal.problem = f"POST {path} answered {response.status_code}: {response.text}"

    def progress(self) -> Table:
        table = Table(title="Deals in flight", expand=False)
        for column in ("deal", "scenario", "phase", "Connect message", "stage"):
            table.add_column(column)
        for deal in self.deals:
            style = "green" if deal.stage == deal.expected else "yellow"
            if deal.problem or deal.stage in ("needs_attention", "expired", "lost"):
                style = "red"
            table.add_row(
                deal.deal_id or "-",
                deal.label,
                str(deal.phase),
                deal.connect,
                f"[{style}]{deal.problem or deal.stage}[/]",
            )
        return table

    def run(self, timeout_s: float = 180) -> bool:
        self._configure_connect()
        self.start_deals()
        self.follow(timeout_s)
        self.check_amendment()
        return all(d.stage == d.expected and d.problem is None for d in self.deals)

    def follow(self, timeout_s: float) -> bool:
        """Play the outside world until every deal is done, showing progress; True if every deal
        ended as expected."""
        deadline = time.monotonic() + timeout_s
        with Live(self.progress(), console=self.console, refresh_per_second=8) as live:
            while time.monotonic() < deadline and not all(d.done for d in self.deals):
                for deal in self.deals:
                    self._advance(deal)
                live.update(self.progress())
                time.sleep(0.2)
            live.update(self.progress())
        if not self.console.is_terminal:
            # Off a terminal Live leaves the cursor after its last frame's bottom border, and the
            # next table would start on that line.
            self.console.line()
        return all(d.stage == d.expected and d.problem is None for d in self.deals)

    def check_amendment(self) -> None:
        """What finance would check: the amendment invoice went to the original's customer with
        the proration on it, and the next regular invoice carries the new quantity."""
        amendment = next(d for d in self.deals if d.amends is not None)
        original = next(d for d in self.deals if d.example == amendment.amends)
        if amendment.stage != "completed" or amendment.problem:
            return
        customer = original.status.get("billing_customer_id")
        invoice = self.stripe.get(f"/v1/invoices/{amendment.status['billing_invoice_id']}").json()
        kinds = {line["metadata"].get("qtc_kind") for line in invoice["lines"]["data"]}
        upcoming = self.stripe.post(
            "/v1/invoices/create_preview",
            data={"subscription": original.status.get("billing_subscription_id") or ""},
        ).json()
        quantities = [line.get("quantity") for line in upcoming.get("lines", {}).get("data", [])]
        priced = amendment.status.get("priced_amendment") or {}
        after = [line["quantity_after"] for line in priced.get("lines", [])]
        self.amendment_check = (
            f"amendment invoice {invoice.get('number')} to {invoice.get('customer')} "
            f"({'the original customer' if invoice.get('customer') == customer else 'ANOTHER'}), "
            f"{format_minor(invoice.get('total', 0), invoice.get('currency', 'usd'))} of "
            f"{', '.join(sorted(k for k in kinds if k))}; next invoice bills {quantities} seats"
        )
        if invoice.get("customer") != customer or kinds != {"proration"}:
            amendment.problem = f"amendment billed wrongly: {self.amendment_check}"
        elif quantities != after:
            amendment.problem = f"next invoice bills {quantities}, not {after}"

    def _configure_connect(self) -> None:
        """Point the DocuSign emulator's Connect listener at this API's webhook."""
        url = (
            f"http://{dial_host(self.settings.api_host)}:{self.settings.api_port}/webhooks/docusign"
        )
        response = self.docusign.post(
            "/_sandbox/connect",
            json={"url": url, "secret": self.settings.docusign_connect_secret.get_secret_value()},
        )
        if not response.is_success:
            raise DemoError(f"could not configure the DocuSign emulator: {response.text}")

    def results(self) -> Table:
        table = Table(title="Demo deals: final state")
        for column in (
            "deal",
            "scenario",
            "stage",
            "CRM",
            "contract",
            "billing",
            "customer",
            "subscription",
            "invoice",
            "ERP invoice",
            "first invoice",
            "tax",
            "provisioned flags",
            "signature -> invoice",
        ):
            table.add_column(column, overflow="fold")
        for deal in self.deals:
            s = deal.status
            first = s.get("invoice_preview") or {}
            total = (
                format_minor(first["total_minor"], s.get("currency", "usd"))
                if first.get("total_minor") is not None
                else "-"
            )
            tax = s.get("invoice_tax_minor")
            tax_shown = format_minor(tax, s.get("currency", "usd")) if tax else "-"
            flags = s.get("provisioned_features") or {}
            outcome = deal.problem or deal.stage
            if deal.stage == "rejected":
                outcome = f"rejected ({len(s.get('errors', []))} violations)"
            table.add_row(
                deal.deal_id or "-",
                deal.label,
                outcome,
                self._crm_outcome(deal),
                f"{s.get('esign') or '-'} {s.get('envelope_id') or ''}".strip(),
                deal.billing,
                s.get("billing_customer_id") or "-",
                s.get("billing_schedule_id") or s.get("billing_subscription_id") or "-",
                s.get("billing_invoice_id") or "-",
                f"{s['erp']} {s['erp_invoice_id']}" if s.get("erp_invoice_id") else "-",
                total,
                tax_shown,
                _flags(flags),
                _seconds_to_invoice(s),
            )
        return table

    def where_to_look(self, web_ui: str) -> Group:
        namespace = self.settings.temporal_namespace
        lines = [
            f'Temporal Web UI: [bold]{web_ui}[/] (filter: QtcStage = "completed")',
            f"API docs: http://{dial_host(self.settings.api_host)}:{self.settings.api_port}/docs",
        ]
        lines += [
            f"  {d.deal_id}: {web_ui}/namespaces/{namespace}/workflows/{d.deal_id}"
            for d in self.deals
            if d.deal_id
        ]
        return Group(*lines)


def _flags(flags: dict[str, dict[str, Any]]) -> str:
    """Switched-on flags by name, limits as name=value: what the product backend was told."""
    merged: dict[str, Any] = {}
    for features in flags.values():
        merged.update(features)
    shown = [k if v is True else f"{k}={v}" for k, v in sorted(merged.items()) if v is not False]
    return ", ".join(shown) or "-"


def _seconds_to_invoice(status: dict[str, Any]) -> str:
    signature = status.get("signature") or {}
    sent = status.get("invoice_sent_at")
    if not signature.get("completed_at") or not sent:
        return "-"
    delta = datetime.fromisoformat(sent) - datetime.fromisoformat(signature["completed_at"])
    return f"{delta.total_seconds():.2f} s"


async def _start(settings: Settings, priced: PricedQuote) -> str:
    """A phase-3 deal started on ``settings``' task queue."""
    client = await temporal_client(settings)
    started = await start_deal(client, settings, priced, phase=3, started_by="qtc demo")
    return started.deal_id


def run_demo(
    settings: Settings,
    examples: Path,
    console: Console,
    keep_up: bool | None = None,
    after_run: Callable[[Stack, Demo], None] | None = None,
) -> int:
    """Run the demo; returns the process exit code (0 only if every deal ended as expected).

    ``after_run`` is called with the stack still up, after the deals (tests look at the Web UI).
    """
    if not settings.sandbox:
        console.print("[red]qtc demo runs on the embedded sandbox only (QTC_ENV=sandbox)[/]")
        return 1
    if keep_up is None:
        keep_up = sys.stdin.isatty() and sys.stdout.isatty()
    if "tax" not in settings.model_fields_set:
        # The demo shows Stripe Tax at work (a GB customer pays 20 % VAT, an EU business with a
        # VAT id is reverse charged) unless QTC_TAX says otherwise.
        settings = settings.model_copy(update={"tax": "on"})
    # One deal runs on HubSpot beside the Salesforce ones, on a worker of its own.
    settings = with_hubspot_beside(settings)
    state_dir = settings.state_dir / "demo"
    for problem in disagreements(settings):
        console.print(f"[yellow]settings do not point at each other: {problem}[/]")
    console.print("Starting Temporal dev server, emulators, worker and API ...")
    # A fresh Temporal database and fresh emulators every run, so the demo can run again at once.
    stack = Stack(
        settings,
        state_dir,
        persist_temporal=False,
        persist_emulators=False,
        worker_env=ERP_ENV,
        extra_apis={ERP_API: ERP_ENV},
        vendor_workers=chargebee_worker(settings),
        variants=(IRONCLAD,),
    )
    # SIGTERM and a closed terminal (SIGHUP) unwind like Ctrl-C: the stack stops either way.
    with stop_on_signals():
        return _run_on(stack, settings, examples, console, keep_up, after_run)


def _run_on(
    stack: Stack,
    settings: Settings,
    examples: Path,
    console: Console,
    keep_up: bool,
    after_run: Callable[[Stack, Demo], None] | None,
) -> int:
    state_dir = stack.state_dir
    try:
        stack.start()
        console.print(f"Stack up; logs in {state_dir / 'logs'}")
        demo = Demo(settings, examples, console, stack.extra_api_urls, stack=stack)
        ok = demo.run()
        console.print(demo.results())
        if demo.amendment_check:
            console.print(f"Amendment: {demo.amendment_check}")
        console.print(demo.where_to_look(stack.web_ui_url))
        if after_run is not None:
            after_run(stack, demo)
        if ok:
            console.print("[green]Every deal reached its expected final stage.[/]")
        else:
            console.print("[red]Some deals did not reach their expected final stage.[/]")
        if keep_up:
            console.print("The stack stays up for exploring; Ctrl-C stops it.")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                console.print("Stopping ...")
        return 0 if ok else 1
    finally:
        stack.stop()
