"""The composition root: the one place that turns settings into vendor clients and port
implementations.

``QTC_CRM``, ``QTC_ESIGN``, ``QTC_BILLING`` and ``QTC_ERP`` choose a package in ``integrations/``
per port; each builder below returns that vendor's implementation, built once per process. The
worker registers the implementations' activities under the port's activity names, and the API and
CLI get the CRM reader from here, so no entry point names a vendor. Adding a vendor is one builder
per port it implements and one entry in that port's table (docs/architecture.md, "How to add a
vendor").
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Callable
from typing import Any, Protocol, cast

import httpx
import structlog
from temporalio.exceptions import ApplicationError

from integrations.chargebee.activities import ChargebeeBilling
from integrations.chargebee.client import build_chargebee_client
from integrations.docusign.activities import DocusignESignature
from integrations.docusign.client import build_docusign_client
from integrations.email.activities import EmailNotifier
from integrations.email.client import build_smtp_factory
from integrations.hubspot.activities import HubSpotCrm
from integrations.hubspot.client import build_hubspot_client_from_settings
from integrations.hubspot.mapping import PropertyMap
from integrations.ironclad.activities import IroncladESignature
from integrations.ironclad.client import build_ironclad_api
from integrations.netsuite.activities import NetSuiteErp
from integrations.netsuite.client import build_netsuite_client
from integrations.product_backend.activities import HttpProductBackend
from integrations.product_backend.client import build_provisioning_client
from integrations.salesforce.activities import SalesforceCrm
from integrations.salesforce.client import build_salesforce_client
from integrations.salesforce.mapping import FieldMap
from integrations.slack.activities import SlackNotifier
from integrations.slack.client import build_slack_client
from integrations.stripe.activities import StripeBilling
from integrations.stripe.client import build_stripe_client
from qtc import errors, ports
from qtc.models import PricedQuote, Quote
from runtime.ledger import LedgerStore, open_ledger
from runtime.settings import Settings
from runtime.vendor_errors import non_retryable, unreachable
from service.crm import CrmOpportunityCheck
from workers.ledger import LedgerActivities
from workers.notify import NotificationFanOut

log = structlog.get_logger(__name__)


class CrmImplementation(ports.Crm, ports.CrmReader, Protocol):
    """A CRM integration: the activities and the reader the starters use."""


def _salesforce(settings: Settings, closing: contextlib.ExitStack) -> CrmImplementation:
    sf = build_salesforce_client(settings)
    closing.callback(sf.session.close)
    return SalesforceCrm(sf, FieldMap.from_settings(settings))


def _hubspot(settings: Settings, closing: contextlib.ExitStack) -> CrmImplementation:
    crm = HubSpotCrm(
        build_hubspot_client_from_settings(settings),
        PropertyMap.from_settings(settings),
        closed_won_stage=settings.hubspot_closed_won_stage,
    )
    try:
        report = crm.ensure_schema(create=settings.hubspot_creates_properties)
    except ApplicationError as err:
        if err.non_retryable:
            raise ValueError(f"HubSpot refused the property check: {err.message}") from err
        # HubSpot is down for now: the activities retry, and the check runs at the next start.
        log.warning("HubSpot properties not checked", error=err.message)
        return crm
    if report.created:
        log.info("HubSpot properties created", created=report.created)
    if not report.complete:
        raise ValueError(report.message())
    return crm


def _docusign(settings: Settings, closing: contextlib.ExitStack) -> ports.ESignature:
    return DocusignESignature.from_settings(build_docusign_client(settings), settings)


def _ironclad(settings: Settings, closing: contextlib.ExitStack) -> ports.ESignature:
    # The client's async connections belong to the worker's event loop and end with the process;
    # the sync exit stack cannot await their close.
    esign = IroncladESignature(
        build_ironclad_api(settings),
        settings.ironclad_template_id,
        creator_email=settings.ironclad_user_email,
        signer_role=settings.ironclad_signer_role,
    )
    # Its activities are async (httpx); the port's protocol is written in the sync form and the
    # worker relies only on the activity names.
    return cast(ports.ESignature, esign)


def _stripe(settings: Settings, closing: contextlib.ExitStack) -> ports.Billing:
    return StripeBilling(build_stripe_client(settings), tax=settings.tax == "on")


def _netsuite(settings: Settings, closing: contextlib.ExitStack) -> ports.Erp:
    client, http = build_netsuite_client(settings)
    closing.callback(http.close)
    return NetSuiteErp(client, settings.netsuite_subsidiary_id)


def _chargebee(settings: Settings, closing: contextlib.ExitStack) -> ports.Billing:
    return ChargebeeBilling(build_chargebee_client(settings))


CRMS: dict[str, Callable[[Settings, contextlib.ExitStack], CrmImplementation]] = {
    "salesforce": _salesforce,
    "hubspot": _hubspot,
}
ESIGNATURES: dict[str, Callable[[Settings, contextlib.ExitStack], ports.ESignature]] = {
    "docusign": _docusign,
    "ironclad": _ironclad,
}
BILLINGS: dict[str, Callable[[Settings, contextlib.ExitStack], ports.Billing]] = {
    "stripe": _stripe,
    "chargebee": _chargebee,
}
# QTC_ERP=none registers no ERP activity: deals started under it carry no ERP and never ask.
ERPS: dict[str, Callable[[Settings, contextlib.ExitStack], ports.Erp]] = {
    "netsuite": _netsuite,
}


def review_url(settings: Settings) -> str:
    """The review pages, as a notification links to them."""
    return f"{settings.api_public_url.rstrip('/')}/review"


def web_ui_url(settings: Settings) -> str:
    """A deal's page in the Temporal Web UI; ``{deal_id}`` is filled in per notification."""
    base = settings.notify_web_ui_url.rstrip("/")
    return f"{base}/namespaces/{settings.temporal_namespace}/workflows/{{deal_id}}"


def _slack(settings: Settings, closing: contextlib.ExitStack) -> ports.Notifier:
    return SlackNotifier(
        build_slack_client(settings),
        channel=settings.slack_channel,
        escalation_channel=settings.slack_escalation_channel,
        review_url=review_url(settings),
        web_ui_url=web_ui_url(settings),
    )


def _email(settings: Settings, closing: contextlib.ExitStack) -> ports.Notifier:
    return EmailNotifier(
        build_smtp_factory(settings),
        sender=settings.email_from,
        to=settings.email_to,
        escalation_to=settings.email_escalation_to,
        review_url=review_url(settings),
        web_ui_url=web_ui_url(settings),
    )


NOTIFIERS: dict[str, Callable[[Settings, contextlib.ExitStack], ports.Notifier]] = {
    "slack": _slack,
    "email": _email,
}


def build_ledger(settings: Settings) -> LedgerStore:
    """The process's ledger store (``QTC_LEDGER_URL``; SQLite in the state directory)."""
    return open_ledger(settings.ledger_database_url)


def build_notifiers(settings: Settings, closing: contextlib.ExitStack) -> list[ports.Notifier]:
    """One notifier per channel in ``QTC_NOTIFY`` (both in the sandbox)."""
    return [NOTIFIERS[channel](settings, closing) for channel in settings.notify_channels]


def build_crm(settings: Settings, closing: contextlib.ExitStack) -> CrmImplementation:
    """The CRM that ``QTC_CRM`` names."""
    return CRMS[settings.crm](settings, closing)


def build_product_backend(
    settings: Settings, closing: contextlib.ExitStack
) -> ports.ProductBackend:
    http = build_provisioning_client(settings)
    closing.callback(http.close)
    return HttpProductBackend(http, settings.provisioning_url, settings.provisioning_secret)


def build_activities(settings: Settings, closing: contextlib.ExitStack) -> list[Callable[..., Any]]:
    """Every port's implementation, as the bound activity methods the deal worker registers.

    Args:
        settings: The process's settings; ``crm``, ``esign``, ``billing`` and ``erp`` choose the
            vendors.
        closing: Receives the clients that hold connections, so the caller closes them on exit.
    """
    crm = build_crm(settings, closing)
    esign = ESIGNATURES[settings.esign](settings, closing)
    billing = BILLINGS[settings.billing](settings, closing)
    backend = build_product_backend(settings, closing)
    ledger = build_ledger(settings)
    notify = NotificationFanOut(build_notifiers(settings, closing), ledger)
    erp = [ERPS[settings.erp](settings, closing).sync_erp_invoice] if settings.erp in ERPS else []
    return [
        LedgerActivities(ledger).record_ledger_events,
        notify.send_notification,
        crm.read_opportunity,
        crm.mark_closed_won,
        crm.write_back_billing_ids,
        esign.send_contract,
        esign.void_contract,
        billing.create_billing_customer,
        billing.create_subscription,
        billing.send_first_invoice,
        billing.amend_subscription,
        billing.send_amendment_invoice,
        billing.preview_invoice_tax,
        backend.provision_product,
        *erp,
    ]


class LazyCrmReader:
    """The configured CRM's reader, built on first use: the API starts (and answers ``/healthz``)
    without CRM credentials, and a misconfigured CRM fails the request that needs it, with the
    setting named, instead of the process."""

    def __init__(self, settings: Settings, crm: str | None = None) -> None:
        self.name: str = crm or settings.crm
        self._settings = settings
        self._closing = contextlib.ExitStack()
        self._lock = threading.Lock()
        self._crm: CrmImplementation | None = None

    def read_quote(self, opportunity_id: str) -> Quote:
        return self._built().read_quote(opportunity_id)

    def is_closed_won(self, opportunity_id: str) -> bool:
        """Whether the opportunity is won now (``ports.OpportunityStageReader``), when the
        configured CRM can tell; a CRM that cannot is reported as a refusal, never as "no"."""
        crm = self._built()
        if not isinstance(crm, ports.OpportunityStageReader):
            raise non_retryable(
                errors.VENDOR_PERMISSION,
                f"the configured CRM ({self.name}) cannot read an opportunity's stage",
            )
        return crm.is_closed_won(opportunity_id)

    def note_refusal(self, opportunity_id: str, reason: str) -> str | None:
        """Leave the refusal on the opportunity when the CRM takes notes (``ports.CrmNotes``)."""
        crm = self._built()
        if isinstance(crm, ports.CrmNotes):
            return crm.note_refusal(opportunity_id, reason)
        return None

    def _built(self) -> CrmImplementation:
        with self._lock:
            if self._crm is None:
                self._crm = CRMS[self.name](self._settings, self._closing)
            return self._crm

    def close(self) -> None:
        self._closing.close()


class LazyContractReader:
    """The configured e-signature service's contract reader (``ports.ContractReader``), built on
    first use like ``LazyCrmReader``: the API reads a contract when a webhook names only its id."""

    def __init__(self, settings: Settings) -> None:
        self.name: str = settings.esign
        self._settings = settings
        self._closing = contextlib.ExitStack()
        self._lock = threading.Lock()
        self._esign: ports.ESignature | None = None

    def read_contract(self, contract_id: str) -> ports.ContractRecord | None:
        with self._lock:
            if self._esign is None:
                self._esign = ESIGNATURES[self._settings.esign](self._settings, self._closing)
            esign = self._esign
        if not isinstance(esign, ports.ContractReader):
            raise non_retryable(
                errors.VENDOR_PERMISSION,
                f"the configured e-signature service ({self.name}) cannot read a contract by id",
            )
        return esign.read_contract(contract_id)

    def close(self) -> None:
        self._closing.close()


# The sandbox's CRM emulators that can be given an opportunity (their documented control endpoint
# ``POST <base>/_sandbox/opportunities``); an emulator added later adds its base URL here.
SANDBOX_CRM_BASES: dict[str, Callable[[Settings], str]] = {
    "salesforce": lambda settings: settings.salesforce_instance_url,
}


class SandboxOpportunities:
    """Sandbox only: the CRM emulator is given the opportunity a hand-written quote names, from
    the quote's data, before the deal starts, so the deal can run to its end (the emulator keeps an
    opportunity it already holds as it is). Over HTTP, through the emulator's documented control
    endpoint: the product never imports the emulators. A CRM at that address that is not an
    emulator (404) is checked like a real one."""

    def __init__(self, settings: Settings, base_url: str, fallback: ports.OpportunityCheck) -> None:
        from integrations.salesforce.client import salesforce_ca_file

        ca_file = salesforce_ca_file(settings) if settings.crm == "salesforce" else None
        self._url = base_url.rstrip("/") + "/_sandbox/opportunities"
        self._verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        )
        self._name = settings.crm
        self._fallback = fallback

    def ensure_opportunity(self, quote: PricedQuote) -> None:
        body = {
            "quote": {
                "quote_id": quote.quote_id,
                "opportunity_id": quote.opportunity_id,
                "currency": quote.currency,
                "account": quote.account.model_dump(mode="json", exclude_none=True),
                "signer": quote.signer.model_dump(mode="json"),
                "term_months": quote.term_months,
                "billing_frequency": quote.billing_frequency,
                "billing_anchor": quote.billing_anchor,
                "payment_terms_days": quote.payment_terms_days,
                "uplift_percent": str(quote.uplift_percent),
                "valid_until": quote.valid_until.isoformat(),
                "lines": [
                    {
                        "sku": line.sku,
                        "quantity": line.quantity,
                        "discount_percent": str(line.discount_percent),
                    }
                    for line in quote.lines
                    if not line.auto_added  # CPQ adds it again when the CRM's quote is priced
                ],
            }
        }
        try:
            response = httpx.post(self._url, json=body, verify=self._verify, timeout=10)
        except httpx.HTTPError as exc:
            raise unreachable(f"the {self._name} emulator", exc) from exc
        if response.status_code == 404:
            self._fallback.ensure_opportunity(quote)
            return
        if response.is_error:
            raise non_retryable(
                errors.VENDOR_INVALID_REQUEST,
                f"the {self._name} emulator refused opportunity {quote.opportunity_id}: "
                f"{response.status_code} {response.text[:300]}",
            )


def opportunity_check(settings: Settings, reader: ports.CrmReader) -> ports.OpportunityCheck:
    """What the entry points run before a deal starts from a hand-written quote: in the sandbox
    the CRM emulator is given the opportunity; everywhere else the CRM must already hold it."""
    checked = CrmOpportunityCheck(reader)
    base = SANDBOX_CRM_BASES.get(settings.crm)
    if settings.sandbox and base is not None:
        return SandboxOpportunities(settings, base(settings), checked)
    return checked
