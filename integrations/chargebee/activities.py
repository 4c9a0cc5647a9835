"""Chargebee behind the billing port: the customer, the subscription and ramps, the first invoice.

Every method is a synchronous activity (the Chargebee SDK blocks; the worker runs it on its thread
pool) that is safe to run twice. Every create carries a ``chargebee-idempotency-key`` derived from
the deal and the step (``qtc:{deal_id}:customer``), never from a run id. Chargebee keeps a key for
30 minutes only, so the objects also carry ids derived from the deal (``mapping``): a create
repeated after the key expired answers ``duplicate_entry`` and the step reads what the first
attempt made; what has no id of ours (ramps, the stub deal's one-off invoice) is looked up by the
deal's subscription or customer before it is created.

What the SDK raises is classified here (vendor errors in one place): a request Chargebee refuses on
its merits fails the activity for good and parks the deal in ``needs_attention``; a busy or
unreachable Chargebee is retried by Temporal, after Chargebee's ``Retry-After`` when it sent one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import chargebee
import httpx
import structlog
from chargebee import Chargebee
from temporalio import activity
from temporalio.exceptions import ApplicationError

from integrations.chargebee import mapping
from qtc import errors
from qtc.models import PricedQuote
from qtc.ports import (
    ACT_AMEND_SUBSCRIPTION,
    ACT_CREATE_BILLING_CUSTOMER,
    ACT_CREATE_SUBSCRIPTION,
    ACT_PREVIEW_INVOICE_TAX,
    ACT_SEND_AMENDMENT_INVOICE,
    ACT_SEND_FIRST_INVOICE,
    AmendSubscriptionInput,
    BillingCustomer,
    CreateCustomerInput,
    CreateSubscriptionInput,
    InvoiceSent,
    PreviewTaxInput,
    SendAmendmentInvoiceInput,
    SendInvoiceInput,
    SubscriptionAmended,
    SubscriptionCreated,
    TaxPreview,
)
from runtime.vendor_errors import non_retryable, retry_after_from_headers, retryable, unreachable

log = structlog.get_logger(__name__)

VENDOR = "Chargebee"
VENDOR_ID = "chargebee"
KEY_HEADER = "chargebee-idempotency-key"
MAX_KEY_LENGTH = 100

# Chargebee's codes for trouble that clears up by itself (its 5xx and lock contention).
RETRYABLE_CODES = frozenset(
    {
        "internal_error",
        "internal_temporary_error",
        "database_connection_failure",
        "site_not_ready",
        "site_read_only_mode",
        "lock_timeout",
        "gateway_timeout",
    }
)
# Refusals of the object's state or of a value already taken: a retry gets the same answer.
CONFLICT_CODES = frozenset({"duplicate_entry", "invalid_state_for_request"})


# --- vendor error classification -------------------------------------------------------------


def classify_chargebee_error(exc: chargebee.APIError) -> ApplicationError:
    """Translate a Chargebee error reply into a retryable or non-retryable activity failure."""
    status = exc.http_status_code
    code = exc.api_error_code
    details: dict[str, Any] = {"vendor": VENDOR, "status": status}
    if code:
        details["code"] = code
    if exc.type:
        details["error_type"] = exc.type
    if exc.param:
        details["param"] = exc.param
    message = f"{VENDOR} answered {status}: {exc}"
    headers = dict(exc.http_headers or {})
    if status == 429 or code in ("api_request_limit_exceeded", "request_blocked"):
        return retryable(
            errors.VENDOR_RATE_LIMITED,
            message,
            retry_after_from_headers(headers),
            details=details,
        )
    if code in RETRYABLE_CODES or status in (408, 409) or (status or 0) >= 500:
        return retryable(
            errors.VENDOR_UNAVAILABLE, message, retry_after_from_headers(headers), details=details
        )
    if isinstance(exc, chargebee.PaymentError):
        return non_retryable(errors.VENDOR_CARD, message, details=details)
    if status == 401:
        return non_retryable(errors.VENDOR_AUTHENTICATION, message, details=details)
    if status == 403:
        return non_retryable(errors.VENDOR_PERMISSION, message, details=details)
    if status == 404 or code == "resource_not_found":
        return non_retryable(errors.VENDOR_NOT_FOUND, message, details=details)
    if code in CONFLICT_CODES:
        return non_retryable(errors.VENDOR_CONFLICT, message, details=details)
    return non_retryable(errors.VENDOR_INVALID_REQUEST, message, details=details)


def _unparsed_reply(exc: Exception) -> bool:
    """The SDK's bare ``Exception`` for a reply that is not Chargebee's JSON (a proxy's 502
    page, a 503 during maintenance): it names the status in its text."""
    text = str(exc)
    return type(exc) is Exception and (
        "http_status_code:" in text or "api_error_code is not present" in text
    )


@contextmanager
def chargebee_failures() -> Iterator[None]:
    """Turn Chargebee SDK errors and unbillable quotes raised in the block into activity errors."""
    try:
        yield
    except chargebee.APIError as exc:
        raise classify_chargebee_error(exc) from exc
    except httpx.TransportError as exc:
        # Timeouts land here too: the request may or may not have been applied, which is safe
        # to retry because every create carries a key and an id of ours.
        raise unreachable(VENDOR, exc) from exc
    except mapping.UnbillableQuote as exc:
        raise non_retryable(
            errors.VENDOR_INVALID_REQUEST, f"The quote cannot be billed in {VENDOR}: {exc}"
        ) from exc
    except Exception as exc:
        if not _unparsed_reply(exc):
            raise
        raise retryable(
            errors.VENDOR_UNAVAILABLE,
            f"{VENDOR} answered without its JSON error body: {str(exc).splitlines()[0]}",
            details={"vendor": VENDOR},
        ) from exc


def _key(deal_id: str, step: str) -> dict[str, str]:
    """The idempotency key of one step of one deal; Chargebee takes at most 100 characters, so a
    longer one keeps its start and ends in a digest of the whole."""
    key = f"qtc:{deal_id}:{step}"
    if len(key) > MAX_KEY_LENGTH:
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        key = f"{key[: MAX_KEY_LENGTH - 17]}-{digest}"
    return {KEY_HEADER: key}


def _is(exc: chargebee.APIError, code: str) -> bool:
    return exc.api_error_code == code


def _meta_deal(obj: Any) -> str | None:
    meta = getattr(obj, "meta_data", None)
    if not isinstance(meta, dict) or mapping.META_DEAL_ID not in meta:
        return None
    return str(meta[mapping.META_DEAL_ID])


def _not_ours(kind: str, id: str, deal_id: str, found: str | None) -> ApplicationError:
    return non_retryable(
        errors.VENDOR_CONFLICT,
        f"{VENDOR} {kind} {id} belongs to {found or 'no deal'}, not to {deal_id}",
        details={"vendor": VENDOR, "id": id, "deal_id": deal_id, "found_deal_id": found},
    )


class ChargebeeBilling:
    """Chargebee activities of the deal workflow; the worker builds one with its client."""

    def __init__(self, client: Chargebee) -> None:
        self._cb = client
        # Items and item prices are shared by every deal and never removed once priced, so one
        # look-up per id per worker process is enough; the set only grows (adding is atomic).
        self._known: set[str] = set()

    # --- customer --------------------------------------------------------------------------

    @activity.defn(name=ACT_CREATE_BILLING_CUSTOMER)
    def create_billing_customer(self, input: CreateCustomerInput) -> BillingCustomer:
        """Find or create the Chargebee customer for the signed legal entity of the deal."""
        deal_id = input.deal_id
        with chargebee_failures():
            params = mapping.customer_params(deal_id, input.priced)
            try:
                customer = self._cb.Customer.create(
                    params,
                    _key(deal_id, "customer"),
                ).customer
                log.info("chargebee customer created", deal_id=deal_id, customer_id=customer.id)
            except chargebee.InvalidRequestError as exc:
                if not _is(exc, "duplicate_entry"):
                    raise
                customer = self._cb.Customer.retrieve(params["id"]).customer
                if _meta_deal(customer) != deal_id:
                    raise _not_ours("customer", customer.id, deal_id, _meta_deal(customer)) from exc
                log.info("chargebee customer found", deal_id=deal_id, customer_id=customer.id)
            return BillingCustomer(customer_id=customer.id, system=VENDOR_ID)

    # --- subscription ----------------------------------------------------------------------

    @activity.defn(name=ACT_CREATE_SUBSCRIPTION)
    def create_subscription(self, input: CreateSubscriptionInput) -> SubscriptionCreated:
        """Create the deal's subscription (year-1 prices), one ramp per later contract year and,
        with a stub period, the one-off first invoice; each found instead when it exists."""
        deal_id, priced = input.deal_id, input.priced
        with chargebee_failures():
            params = mapping.subscription_params(deal_id, priced)
            ramps = mapping.ramps(priced)
            self._ensure_catalog(deal_id, priced)
            invoice_id: str | None = None
            if mapping.has_stub(priced):
                invoice_id = self._ensure_first_invoice(deal_id, input.customer_id, priced)
            subscription, first = self._find_or_create_subscription(
                deal_id, input.customer_id, params
            )
            self._ensure_ramps(deal_id, subscription.id, ramps)
            if invoice_id is None and first is not None:
                invoice_id = first.id
            log.info(
                "chargebee subscription ready",
                deal_id=deal_id,
                subscription_id=subscription.id,
                status=subscription.status,
                ramps=len(ramps),
                first_invoice_id=invoice_id,
            )
            return SubscriptionCreated(subscription_id=subscription.id, invoice_id=invoice_id)

    def _ensure_catalog(self, deal_id: str, priced: PricedQuote) -> None:
        """The item family, items and item prices the deal bills, created where missing."""
        wanted: list[tuple[Any, str, dict[str, Any], str]] = [
            (
                self._cb.ItemFamily,
                mapping.ITEM_FAMILY_ID,
                {"id": mapping.ITEM_FAMILY_ID, "name": mapping.ITEM_FAMILY_NAME},
                "item-family",
            )
        ]
        for entry in mapping.catalog_entries(priced):
            wanted.append(
                (self._cb.Item, entry.item_id, mapping.item_params(entry), f"item:{entry.item_id}")
            )
            wanted.append(
                (
                    self._cb.ItemPrice,
                    entry.item_price_id,
                    mapping.item_price_params(entry),
                    f"item-price:{entry.item_price_id}",
                )
            )
        for resource, id, params, step in wanted:
            if id in self._known:
                continue
            try:
                resource.retrieve(id)
            except chargebee.InvalidRequestError as exc:
                if not _is(exc, "resource_not_found"):
                    raise
                try:
                    resource.create(params, _key(deal_id, step))
                except chargebee.InvalidRequestError as race:
                    # Another deal created it between our look-up and our create.
                    if not _is(race, "duplicate_entry"):
                        raise
            self._known.add(id)

    def _find_or_create_subscription(
        self, deal_id: str, customer_id: str, params: dict[str, Any]
    ) -> tuple[Any, Any | None]:
        """The deal's subscription, and its first invoice when Chargebee raised it just now."""
        try:
            created = self._cb.Subscription.create_with_items(
                customer_id,
                params,
                _key(deal_id, "subscription"),
            )
            return created.subscription, created.invoice
        except chargebee.InvalidRequestError as exc:
            if not _is(exc, "duplicate_entry"):
                raise
            subscription = self._cb.Subscription.retrieve(params["id"]).subscription
            if subscription.customer_id != customer_id or _meta_deal(subscription) != deal_id:
                raise _not_ours(
                    "subscription", subscription.id, deal_id, _meta_deal(subscription)
                ) from exc
            return subscription, None

    def _ensure_ramps(self, deal_id: str, subscription_id: str, plans: list[Any]) -> None:
        if not plans:
            return
        existing = {
            row.ramp.effective_from
            for row in self._list_all(
                self._cb.Ramp.list, {"subscription_id": {"is": subscription_id}}
            )
        }
        for plan in plans:
            if plan.effective_from in existing:
                continue
            self._cb.Ramp.create_for_subscription(
                subscription_id,
                plan.params,
                _key(deal_id, f"ramp:{plan.contract_year}"),
            )

    def _list_all(self, list_fn: Any, params: dict[str, Any]) -> Iterator[Any]:
        offset: str | None = None
        while True:
            page = list_fn({**params, "limit": 100, **({"offset": offset} if offset else {})})
            yield from page.list
            offset = page.next_offset
            if not offset:
                return

    def _ensure_first_invoice(self, deal_id: str, customer_id: str, priced: PricedQuote) -> str:
        """The one-off first invoice of a stub deal: found by the deal's customer, else created."""
        found = self._find_first_invoice(customer_id)
        if found is not None:
            return str(found.id)
        invoice = self._cb.Invoice.create_for_charge_items_and_charges(
            mapping.first_invoice_params(customer_id, priced),
            _key(deal_id, "first-invoice"),
        ).invoice
        return str(invoice.id)

    def _find_first_invoice(self, customer_id: str) -> Any | None:
        """The deal's one-off invoice: the customer is the deal's own, and the stub invoice is
        the only invoice billed to it outside the subscription."""
        rows = self._cb.Invoice.list(
            {
                "customer_id": {"is": customer_id},
                "recurring": {"is": "false"},
                "sort_by": {"asc": "date"},
                "limit": 1,
            }
        ).list
        return rows[0].invoice if rows else None

    def _subscription_first_invoice(self, subscription_id: str) -> Any | None:
        rows = self._cb.Invoice.list(
            {"subscription_id": {"is": subscription_id}, "sort_by": {"asc": "date"}, "limit": 1}
        ).list
        return rows[0].invoice if rows else None

    # --- first invoice ---------------------------------------------------------------------

    @activity.defn(name=ACT_SEND_FIRST_INVOICE)
    def send_first_invoice(self, input: SendInvoiceInput) -> InvoiceSent:
        """Reconcile the deal's first invoice with the priced quote, then close and e-mail it once.

        Raises:
            ApplicationError: ``INVOICE_MISMATCH`` (non-retryable) when Chargebee's invoice differs
                from ``priced.invoices[0]``; details carry both sides.
        """
        deal_id, priced = input.deal_id, input.priced
        with chargebee_failures():
            invoice = self._first_invoice(input)
            self._reconcile(invoice, priced)
            if invoice.status == "voided":
                raise non_retryable(
                    errors.VENDOR_CONFLICT,
                    f"{VENDOR} invoice {invoice.id} of {deal_id} is voided; "
                    "it was changed outside this deal",
                    details={"vendor": VENDOR, "invoice_id": invoice.id, "status": "voided"},
                )
            if invoice.status == "pending":
                invoice = self._cb.Invoice.close(
                    invoice.id, None, _key(deal_id, "invoice-close")
                ).invoice
            if not self._already_sent(input.customer_id, invoice.id):
                self._cb.Invoice.send_email(invoice.id, _key(deal_id, "invoice-send"))
            log.info(
                "chargebee first invoice sent",
                deal_id=deal_id,
                invoice_id=invoice.id,
                total_minor=invoice.total,
            )
            tax = int(invoice.tax or 0)
            return InvoiceSent(
                invoice_id=str(invoice.id),
                number=str(invoice.id),
                invoice_url=None,
                total_minor=int(invoice.total),
                status=str(invoice.status),
                tax_minor=tax,
                total_excluding_tax_minor=int(invoice.total) - tax,
            )

    def _first_invoice(self, input: SendInvoiceInput) -> Any:
        priced = input.priced
        if mapping.is_services_order(priced):
            # No subscription: the one-off invoice is made here, found again on a retry.
            self._ensure_catalog(input.deal_id, priced)
            invoice_id = self._ensure_first_invoice(input.deal_id, input.customer_id, priced)
            return self._cb.Invoice.retrieve(invoice_id).invoice
        if mapping.has_stub(priced):
            found = self._find_first_invoice(input.customer_id)
            if found is None:
                raise non_retryable(
                    errors.VENDOR_NOT_FOUND,
                    f"{VENDOR} has no first invoice for {input.deal_id}; "
                    "create_subscription did not run for this customer",
                    details={"vendor": VENDOR, "customer_id": input.customer_id},
                )
            return found
        invoice = (
            self._subscription_first_invoice(input.subscription_id)
            if input.subscription_id
            else None
        )
        if invoice is not None:
            return invoice
        # Not an error of the deal: Chargebee raises the first invoice when the subscription
        # starts. Come back then (the helper caps the wait; the retry policy bounds the total).
        start = datetime.fromtimestamp(mapping.utc_midnight(priced.term_start), UTC)
        wait = max(start - datetime.now(UTC), timedelta(seconds=0))
        raise retryable(
            errors.VENDOR_UNAVAILABLE,
            f"{VENDOR} has not raised the first invoice of {input.deal_id} yet "
            f"(billing starts {priced.term_start})",
            wait or None,
            details={"vendor": VENDOR, "subscription_id": input.subscription_id},
        )

    def _reconcile(self, invoice: Any, priced: PricedQuote) -> None:
        skus = mapping.sku_by_item_price(priced)
        actual = [mapping.billed_line(line, skus) for line in invoice.line_items or []]
        mismatch = mapping.reconcile(
            str(invoice.id),
            priced.invoices[0],
            priced.currency,
            actual,
            int(invoice.total or 0),
            str(invoice.currency_code),
        )
        if mismatch is not None:
            log.warning("chargebee invoice mismatch", **mismatch.model_dump(mode="json"))
            raise non_retryable(
                errors.INVOICE_MISMATCH,
                mismatch.summary(),
                details=mismatch.model_dump(mode="json"),
            )

    def _already_sent(self, customer_id: str, invoice_id: str) -> bool:
        """Whether the invoice was e-mailed already (by an earlier attempt or a person).

        The customer is the deal's own, so its e-mail log is short. Our own send within the
        last 30 minutes is covered by its idempotency key as well; the log covers the rest.
        """
        marker = f"#{invoice_id}"
        for row in self._list_all(
            lambda params: self._cb.EmailLog.email_logs_for_customer(customer_id, params), {}
        ):
            subject = row.email_log.subject or ""
            if subject.endswith(marker) or f"{marker} " in subject:
                return True
        return False

    # --- tax and amendments ----------------------------------------------------------------

    @activity.defn(name=ACT_PREVIEW_INVOICE_TAX)
    def preview_invoice_tax(self, input: PreviewTaxInput) -> TaxPreview:
        """No tax: this integration bills on a site that adds none (its invoices are reconciled
        to the cent with the net quote, so a site adding tax parks the deal instead)."""
        net = input.priced.invoices[0].total_minor if input.priced.invoices else 0
        return TaxPreview(
            tax_minor=0,
            total_excluding_tax_minor=net,
            total_minor=net,
            tax_reasons=["not_collecting"],
        )

    @activity.defn(name=ACT_AMEND_SUBSCRIPTION)
    def amend_subscription(self, input: AmendSubscriptionInput) -> SubscriptionAmended:
        """Not offered on Chargebee yet: the amendment deal parks for an operator, who can bill
        it in Chargebee by hand; nothing is changed."""
        raise _no_amendments(input.deal_id, input.original_deal_id)

    @activity.defn(name=ACT_SEND_AMENDMENT_INVOICE)
    def send_amendment_invoice(self, input: SendAmendmentInvoiceInput) -> InvoiceSent:
        """Not offered on Chargebee yet (see ``amend_subscription``)."""
        raise _no_amendments(input.deal_id, input.original_deal_id)


def _no_amendments(deal_id: str, original_deal_id: str) -> ApplicationError:
    return non_retryable(
        errors.VENDOR_INVALID_REQUEST,
        f"{VENDOR} billing does not amend subscriptions yet: amendment {deal_id} of "
        f"{original_deal_id} must be billed in {VENDOR} by hand",
        details={"vendor": VENDOR, "deal_id": deal_id, "original_deal_id": original_deal_id},
    )
