"""DocuSign: send the order form from a server template, void it on expiry or loss.

docusign-esign is a blocking SDK, so the activities are synchronous (worker thread pool). What was
priced is what is signed: every commercial fact of the priced quote is written into locked text
tabs of the template's ``Signer`` role, and the envelope carries ``opportunity_id`` and ``deal_id``
as text custom fields. The template must define text tabs with these labels (tabs the template
lacks are ignored by DocuSign, so a lean template still works):

- ``legal_name``, ``billing_email``, ``address``, ``tax_id``, ``signer_name``, ``signer_email``
- ``quote_id``, ``opportunity_id``, ``currency``, ``term_months``, ``billing_frequency``,
  ``payment_terms``, ``start``, ``uplift_percent``, ``valid_until``
- per line ``i`` (1-based): ``line_{i}_sku``, ``line_{i}_name``, ``line_{i}_kind``,
  ``line_{i}_quantity``, ``line_{i}_discount``, then ``line_{i}_unit_amount_year_{k}`` (price per
  unit per billing period in contract year ``k``) for recurring lines or
  ``line_{i}_one_time_amount`` for one-time lines
- ``first_invoice_total``, ``mrr``, ``arr``, ``tcv`` and, per invoice ``n`` (1-based),
  ``payment_schedule_{n}`` as ``"2026-12-15: 69,800.00 USD"``

Money is formatted from integer minor units with the currency (``qtc.money.format_minor``).

A retried ``send_contract`` must not send the customer a second contract, so it first looks for an
envelope already carrying the deal id and reuses it unless it was voided.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import urllib3
from docusign_esign import (
    ApiClient,
    CustomFields,
    Envelope,
    EnvelopeDefinition,
    EnvelopesApi,
    Tabs,
    TemplateRole,
    Text,
    TextCustomField,
)
from docusign_esign.client.api_exception import ApiException
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import from_http_status, non_retryable, unreachable
from qtc import deal, errors
from qtc.models import PricedQuote
from qtc.money import format_minor
from qtc.settings import Settings

VENDOR = "DocuSign"
SIGNER_ROLE = "Signer"
SANDBOX_TOKEN = "sandbox-docusign-token"  # noqa: S105 - the documented sandbox-only value
# Envelopes in these states cannot be voided any more; voiding them again is not an error.
FINAL_STATES = frozenset({"voided", "completed", "declined"})
# An envelope in these states must not be reused: a new contract has to go out.
NOT_REUSABLE = frozenset({"voided", "deleted"})
VOID_REASON_MAX = 200
T = TypeVar("T")


def _percent(value: Decimal) -> str:
    return f"{value.normalize():f}%"


def contract_tabs(priced: PricedQuote) -> dict[str, str]:
    """Tab label to value for everything the customer signs, in document order."""
    cur = priced.currency
    acc = priced.account
    addr = acc.address
    address = ", ".join(
        p
        for p in [addr.line1, addr.line2, addr.city, addr.state, addr.postal_code, addr.country]
        if p
    )
    start = priced.requested_start
    tabs: dict[str, str] = {
        "legal_name": acc.legal_name,
        "billing_email": acc.billing_email,
        "address": address,
        "tax_id": f"{acc.tax_id.type}: {acc.tax_id.value}" if acc.tax_id else "",
        "signer_name": priced.signer.name,
        "signer_email": priced.signer.email,
        "quote_id": priced.quote_id,
        "opportunity_id": priced.opportunity_id,
        "currency": cur.upper(),
        "term_months": str(priced.term_months),
        "billing_frequency": priced.billing_frequency,
        "payment_terms": f"Net {priced.payment_terms_days} days",
        "start": "on signature" if start == "on_signature" else start.isoformat(),
        "uplift_percent": _percent(priced.uplift_percent),
        "valid_until": priced.valid_until.isoformat(),
    }
    for i, line in enumerate(priced.lines, start=1):
        tabs[f"line_{i}_sku"] = line.sku
        tabs[f"line_{i}_name"] = line.name
        tabs[f"line_{i}_kind"] = line.kind
        tabs[f"line_{i}_quantity"] = str(line.quantity)
        tabs[f"line_{i}_discount"] = _percent(line.discount_percent)
        for k, unit in enumerate(line.unit_amounts_by_year_minor or [], start=1):
            tabs[f"line_{i}_unit_amount_year_{k}"] = format_minor(unit, cur)
        if line.unit_amount_minor is not None:
            tabs[f"line_{i}_one_time_amount"] = format_minor(line.unit_amount_minor, cur)
    tabs["first_invoice_total"] = format_minor(priced.first_invoice_total_minor, cur)
    tabs["mrr"] = format_minor(priced.mrr_minor, cur)
    tabs["arr"] = format_minor(priced.arr_minor, cur)
    tabs["tcv"] = format_minor(priced.tcv_minor, cur)
    for n, invoice in enumerate(priced.invoices, start=1):
        tabs[f"payment_schedule_{n}"] = (
            f"{invoice.date.isoformat()}: {format_minor(invoice.total_minor, cur)}"
        )
    return tabs


def envelope_definition(deal_id: str, priced: PricedQuote, template_id: str) -> EnvelopeDefinition:
    """The envelope ``send_contract`` creates: template, signer role, locked tabs, custom fields."""
    text_tabs = [
        Text(tab_label=label, value=value, locked="true")
        for label, value in contract_tabs(priced).items()
    ]
    signer = TemplateRole(
        role_name=SIGNER_ROLE,
        name=priced.signer.name,
        email=priced.signer.email,
        tabs=Tabs(text_tabs=text_tabs),
    )
    custom = CustomFields(
        text_custom_fields=[
            TextCustomField(name="opportunity_id", value=priced.opportunity_id, show="false"),
            TextCustomField(name="deal_id", value=deal_id, show="false"),
        ]
    )
    return EnvelopeDefinition(
        template_id=template_id,
        template_roles=[signer],
        custom_fields=custom,
        email_subject=f"Order form {priced.quote_id} for {priced.account.legal_name}"[:100],
        status="sent",
    )


def _error_body(exc: ApiException) -> tuple[str | None, str]:
    raw = exc.body
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
    try:
        body = json.loads(text) if text else {}
    except ValueError:
        body = {}
    if isinstance(body, dict):
        code = body.get("errorCode")
        message = body.get("message") or text or str(exc.reason)
        return (str(code) if code else None), str(message)
    return None, text or str(exc.reason)


def _custom_field(envelope: Any, name: str) -> str | None:
    fields = getattr(envelope, "custom_fields", None)
    for field in getattr(fields, "text_custom_fields", None) or []:
        if field.name == name:
            return str(field.value) if field.value is not None else None
    return None


class EsignActivities:
    """DocuSign activities; the worker builds one authenticated ``ApiClient`` and shares it."""

    def __init__(
        self,
        api_client: ApiClient,
        account_id: str,
        template_id: str,
        *,
        lookback: timedelta = timedelta(days=730),
        timeout_s: float = 30.0,
    ) -> None:
        self._envelopes = EnvelopesApi(api_client)
        self._account_id = account_id
        self._template_id = template_id
        self._lookback = lookback
        self._timeout = (min(timeout_s, 10.0), timeout_s)

    @classmethod
    def from_settings(cls, api_client: ApiClient, settings: Settings) -> EsignActivities:
        return cls(
            api_client,
            settings.docusign_account_id,
            settings.docusign_template_id,
            lookback=timedelta(days=settings.docusign_envelope_lookback_days),
            timeout_s=settings.docusign_timeout_s,
        )

    @activity.defn(name=deal.ACT_SEND_CONTRACT)
    def send_contract(self, input: deal.SendContractInput) -> deal.ContractSent:
        """Send the order form for signature, or return the envelope already sent for the deal."""
        existing = self.find_envelope(input.deal_id)
        if existing is not None:
            status = str(existing.status or "")
            if status == "declined":
                raise non_retryable(
                    errors.CONTRACT_NOT_SENDABLE,
                    f"envelope {existing.envelope_id} for {input.deal_id} was declined by the "
                    "signer; void it in DocuSign and resume the deal, or mark the deal lost",
                    details={"vendor": VENDOR, "envelope_id": existing.envelope_id},
                )
            activity.logger.info(
                "reusing envelope %s (%s) for %s", existing.envelope_id, status, input.deal_id
            )
            return deal.ContractSent(envelope_id=str(existing.envelope_id), status=status)
        definition = envelope_definition(input.deal_id, input.priced, self._template_id)
        summary = self._call(
            "create envelope",
            lambda: self._envelopes.create_envelope(
                self._account_id,
                envelope_definition=definition,
                _request_timeout=self._timeout,
            ),
        )
        activity.logger.info("sent envelope %s for %s", summary.envelope_id, input.deal_id)
        return deal.ContractSent(
            envelope_id=str(summary.envelope_id), status=str(summary.status or "sent")
        )

    @activity.defn(name=deal.ACT_VOID_CONTRACT)
    def void_contract(self, input: deal.VoidContractInput) -> deal.ContractVoided:
        """Void the envelope; one already voided, completed or declined is left as it is, and
        reported: a ``completed`` one was signed, and the deal may still honour that signature."""
        final = self._already_final(input)
        if final is not None:
            return final
        voiding = Envelope(status="voided", voided_reason=input.reason[:VOID_REASON_MAX])
        try:
            self._call(
                "void envelope",
                lambda: self._envelopes.update(
                    self._account_id,
                    input.envelope_id,
                    envelope=voiding,
                    _request_timeout=self._timeout,
                ),
            )
        except ApplicationError as exc:
            # Another actor (the signer, a webhook-triggered void) may have finished the envelope
            # between our read and our void; DocuSign then refuses with 400.
            final = self._already_final(input) if exc.non_retryable else None
            if final is not None:
                return final
            raise
        activity.logger.info("voided envelope %s for %s", input.envelope_id, input.deal_id)
        return deal.ContractVoided(envelope_id=input.envelope_id, status="voided")

    def find_envelope(self, deal_id: str) -> Any | None:
        """The newest envelope carrying ``deal_id`` that may be reused, if any."""
        since = datetime.now(UTC) - self._lookback
        found = self._call(
            "list envelopes",
            lambda: self._envelopes.list_status_changes(
                self._account_id,
                custom_field=f"deal_id={deal_id}",
                from_date=since.strftime("%Y-%m-%dT%H:%M:%SZ"),
                include="custom_fields",
                _request_timeout=self._timeout,
            ),
        )
        candidates = [
            e
            for e in (found.envelopes or [])
            if str(e.status or "").lower() not in NOT_REUSABLE
            # The filter is a server-side match; a field we can see must agree exactly.
            and _custom_field(e, "deal_id") in (None, deal_id)
        ]
        candidates.sort(key=lambda e: str(e.created_date_time or ""), reverse=True)
        return candidates[0] if candidates else None

    def _already_final(self, input: deal.VoidContractInput) -> deal.ContractVoided | None:
        envelope = self._call(
            "read envelope",
            lambda: self._envelopes.get_envelope(
                self._account_id,
                input.envelope_id,
                include="recipients",
                _request_timeout=self._timeout,
            ),
        )
        status = str(envelope.status or "").lower()
        if status not in FINAL_STATES:
            return None
        activity.logger.info(
            "envelope %s for %s is already %s; nothing to void",
            input.envelope_id,
            input.deal_id,
            status,
        )
        signers = (envelope.recipients.signers or []) if envelope.recipients else []
        signer = signers[0] if signers else None
        return deal.ContractVoided(
            envelope_id=input.envelope_id,
            status=status,
            completed_at=envelope.completed_date_time if status == "completed" else None,
            signer_name=signer.name if signer else None,
            signer_email=signer.email if signer else None,
        )

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ApiException as exc:
            raise self._classify(what, exc) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise unreachable(VENDOR, exc) from exc

    @staticmethod
    def _classify(what: str, exc: ApiException) -> ApplicationError:
        status = int(exc.status or 0)
        if status == 0:
            # The SDK reports TLS failures and unsendable requests as status 0.
            return unreachable(VENDOR, exc)
        code, message = _error_body(exc)
        return from_http_status(VENDOR, status, f"{what}: {message}", exc.headers, code=code)


class _JwtApiClient(ApiClient):
    """An ApiClient that renews its JWT-grant access token before it expires.

    A worker lives for weeks and DocuSign tokens for an hour; renewing inside ``call_api`` keeps
    every activity unaware of authentication.
    """

    def __init__(self, settings: Settings, lifetime_s: int = 3600) -> None:
        super().__init__(
            host=settings.docusign_base_path,
            base_path=settings.docusign_base_path,
            oauth_host_name=settings.docusign_oauth_host,
        )
        if settings.docusign_private_key is None:
            raise ValueError("QTC_DOCUSIGN_PRIVATE_KEY is required outside the sandbox")
        self._key = settings.docusign_private_key.get_secret_value().encode()
        self._integration_key = settings.docusign_integration_key
        self._user_id = settings.docusign_user_id
        self._oauth_host = settings.docusign_oauth_host
        self._lifetime_s = lifetime_s
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def _ensure_token(self) -> None:
        with self._lock:
            # Renew five minutes early so an in-flight call never carries an expired token.
            if time.monotonic() < self._expires_at - 300:
                return
            self.request_jwt_user_token(
                client_id=self._integration_key,
                user_id=self._user_id,
                oauth_host_name=self._oauth_host,
                private_key_bytes=self._key,
                expires_in=self._lifetime_s,
                scopes=["signature", "impersonation"],
            )
            self._expires_at = time.monotonic() + self._lifetime_s

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        self._ensure_token()
        return super().call_api(*args, **kwargs)


def _without_sdk_retries(client: ApiClient) -> ApiClient:
    """Make the SDK's urllib3 pool fail fast instead of retrying on its own.

    urllib3's default retries would sleep out a 429's ``Retry-After`` inside the activity, pinning
    a worker thread and hiding the wait; Temporal's retry policy (which honours ``Retry-After``
    through ``next_retry_delay``) is the one place retries happen.
    """
    retries = urllib3.Retry(total=0, respect_retry_after_header=False, raise_on_status=False)
    client.rest_client.pool_manager.connection_pool_kw["retries"] = retries
    return client


def build_docusign_client(settings: Settings) -> ApiClient:
    """The worker's one DocuSign client: the sandbox bearer token, or JWT grant in production."""
    if settings.sandbox:
        client = ApiClient(
            host=settings.docusign_base_path,
            base_path=settings.docusign_base_path,
            oauth_host_name=settings.docusign_oauth_host,
        )
        client.set_default_header("Authorization", f"Bearer {SANDBOX_TOKEN}")
        return _without_sdk_retries(client)
    return _without_sdk_retries(_JwtApiClient(settings))
