"""Stripe behind the billing port: the customer, the subscription schedule and the first invoice.

Every method is a synchronous activity (the Stripe SDK blocks; the worker runs it on its thread
pool) that is safe to run twice: it looks the object up by the deal's metadata before creating it,
and every create carries an idempotency key derived from the deal and the step, never from a run id,
so a retry, a worker crash or a workflow reset finds what the first attempt made.

What Stripe raises is classified here (docs/architecture.md, section 5): a request Stripe refuses on
its merits fails the activity for good and parks the deal in ``needs_attention``; a busy or
unreachable Stripe is retried by Temporal, after Stripe's ``Retry-After`` when it sent one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import stripe
import structlog
from stripe.params import SubscriptionScheduleCreateParams
from temporalio import activity
from temporalio.exceptions import ApplicationError

from integrations.stripe import plan
from qtc import errors
from qtc.amendments import amended_contract
from qtc.dates import as_utc
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
from runtime.vendor_errors import non_retryable, retry_after_from_headers, retryable

log = structlog.get_logger(__name__)

VENDOR = "Stripe"
VENDOR_ID = "stripe"


# --- vendor error classification -------------------------------------------------------------


def classify_stripe_error(exc: stripe.StripeError) -> ApplicationError:
    """Translate what the Stripe SDK raised into a retryable or non-retryable activity failure."""
    details: dict[str, Any] = {"vendor": VENDOR, "status": exc.http_status}
    if exc.code:
        details["code"] = exc.code
    if exc.request_id:
        details["request_id"] = exc.request_id
    param = getattr(exc, "param", None)
    if param:
        details["param"] = param
        field = _deal_field(str(param))
        if field:
            details["field"] = field
    message = f"{VENDOR} answered {exc.http_status or 'nothing'}: {exc.user_message or exc}"
    # Stripe says outright whether a retry can succeed (lock timeouts: yes; a failure its
    # idempotency layer would replay for the same key: no); that beats guessing from the status.
    should_retry = _header(exc, "stripe-should-retry")
    if isinstance(exc, stripe.RateLimitError) or should_retry == "true":
        kind = errors.VENDOR_RATE_LIMITED if exc.http_status == 429 else errors.VENDOR_UNAVAILABLE
        delay = retry_after_from_headers(exc.headers)
        return retryable(kind, message, delay, details=details)
    if isinstance(exc, stripe.APIConnectionError):
        # Timeouts land here too: the request may or may not have been applied, which is safe
        # to retry because every create carries an idempotency key.
        return retryable(errors.VENDOR_UNAVAILABLE, message, details=details)
    if isinstance(exc, stripe.IdempotencyError):
        # The same key with different parameters: our own bug (a step reused a key), and no
        # retry will make Stripe accept it.
        return non_retryable(errors.VENDOR_CONFLICT, message, details=details)
    if isinstance(exc, stripe.InvalidRequestError):
        kind = errors.VENDOR_NOT_FOUND if exc.http_status == 404 else errors.VENDOR_INVALID_REQUEST
        return non_retryable(kind, message, details=details)
    if isinstance(exc, stripe.AuthenticationError):
        return non_retryable(errors.VENDOR_AUTHENTICATION, message, details=details)
    if isinstance(exc, stripe.PermissionError):
        return non_retryable(errors.VENDOR_PERMISSION, message, details=details)
    if isinstance(exc, stripe.CardError):
        return non_retryable(errors.VENDOR_CARD, message, details=details)
    if should_retry == "false":
        # Stripe's idempotency layer would replay this very failure for the same key: retrying
        # cannot help, an operator has to look.
        return non_retryable(errors.VENDOR_UNAVAILABLE, message, details=details)
    # APIError: 5xx, and 409 when a concurrent request holds the same idempotency key or lock;
    # both clear up on their own.
    delay = retry_after_from_headers(exc.headers)
    return retryable(errors.VENDOR_UNAVAILABLE, message, delay, details=details)


# The deal fields behind the customer parameters this integration sends (plan.customer_params),
# so an operator is told which part of the signed legal entity Stripe refused.
_CUSTOMER_PARAM_FIELDS: tuple[tuple[str, str], ...] = (
    ("tax_id_data", "/account/tax_id/value"),
    ("address", "/account/address"),
    ("email", "/account/billing_email"),
    ("name", "/account/legal_name"),
)


def _deal_field(param: str) -> str | None:
    for prefix, field in _CUSTOMER_PARAM_FIELDS:
        if param == prefix or param.startswith(f"{prefix}["):
            if prefix == "tax_id_data" and param.endswith("[type]"):
                return "/account/tax_id/type"
            if prefix == "address" and "[" in param:
                return f"/account/address/{param.split('[', 1)[1].rstrip(']')}"
            return field
    return None


def customer_key(input: CreateCustomerInput) -> str:
    """The customer's idempotency key: the deal and the step, and the revision of the legal
    entity once an operator has corrected it (Stripe refuses a key reused with other parameters,
    and the refused attempt created nothing)."""
    key = f"qtc:{input.deal_id}:customer"
    return f"{key}:r{input.account_revision}" if input.account_revision else key


def _header(exc: stripe.StripeError, name: str) -> str | None:
    for key, value in (exc.headers or {}).items():
        if key.lower() == name:
            return str(value).strip().lower()
    return None


@contextmanager
def stripe_failures() -> Iterator[None]:
    """Turn Stripe SDK errors and unbillable quotes raised in the block into activity failures."""
    try:
        yield
    except stripe.StripeError as exc:
        raise classify_stripe_error(exc) from exc
    except plan.UnbillableQuote as exc:
        raise non_retryable(
            errors.VENDOR_INVALID_REQUEST, f"The quote cannot be billed in {VENDOR}: {exc}"
        ) from exc


def _meta(obj: Any, key: str) -> str | None:
    metadata = getattr(obj, "metadata", None)
    if metadata is None or key not in metadata:
        return None
    return str(metadata[key])


def _id(field: Any) -> str | None:
    """The id of an expandable field, whether Stripe sent the id or the object."""
    if field is None or isinstance(field, str):
        return field
    return str(field.id)


def _is_missing(exc: stripe.InvalidRequestError) -> bool:
    return exc.http_status == 404 or exc.code == "resource_missing"


EXPAND_FIRST_INVOICE = "subscription.latest_invoice"


def _expanded_first_invoice(schedule: stripe.SubscriptionSchedule) -> stripe.Invoice | None:
    """The first invoice of a schedule just created with ``expand=[EXPAND_FIRST_INVOICE]``.

    A schedule that starts now starts its subscription at once, and that subscription's latest
    invoice is its first (``billing_reason`` ``subscription_create``); anything else (no
    subscription yet, nothing expanded) is None and the caller lists the subscription's invoices.
    """
    subscription = schedule.subscription
    if subscription is None or isinstance(subscription, str):
        return None
    latest = subscription.latest_invoice
    if latest is None or isinstance(latest, str):
        return None
    return latest if latest.billing_reason == "subscription_create" else None


def _tax_figures(invoice: stripe.Invoice) -> dict[str, Any]:
    """The invoice's tax and its amount before tax, as Stripe computed them."""
    taxes = invoice.total_taxes or []
    return {
        "tax_minor": sum(t.amount for t in taxes if t.tax_behavior == "exclusive"),
        "total_excluding_tax_minor": invoice.total_excluding_tax,
        "tax_reasons": sorted({str(t.taxability_reason) for t in taxes}),
    }


# Stripe keeps an idempotency key for at least 24 hours; 4 hours are left for clocks that differ.
KEYS_COVER_S = 20 * 3600


def keys_cover_every_attempt(priced: PricedQuote, now: float) -> bool:
    """Whether every earlier attempt at this deal's billing still has its idempotency key at Stripe.

    Each attempt came after the signature, so when the signature is younger than the keys' life,
    a create repeated with the same key and parameters returns what the first one made (or 409
    while it still runs), and looking the object up first finds nothing the key would not. That
    saves a search and a list per deal, and the scans behind them (bench/RESULTS.md).
    A deal resumed or reset later than that looks up first, as every deal did before.
    """
    return now - as_utc(priced.signed_at).timestamp() < KEYS_COVER_S


# Younger first invoices were created by the deal moments ago: nobody else can have sent them.
MANUAL_SEND_CHECK_AFTER_S = 50 * 60


class StripeBilling:
    """Stripe activities of the deal workflow; the worker builds one with its Stripe client."""

    def __init__(
        self,
        client: stripe.StripeClient,
        clock: Callable[[], float] = time.time,
        *,
        tax: bool = False,
    ) -> None:
        self._stripe = client.v1
        # QTC_TAX=on: Stripe Tax computes tax on every invoice; prices stay net of tax, and the
        # invoice is reconciled on its amount excluding tax.
        self._tax = tax
        # Stripe's time as far as this worker can tell; tests pass the emulator's moved clock.
        self._clock = clock
        # Products are shared by every deal and never removed once priced, so one look-up per
        # SKU per worker process is enough; the set only ever grows (adding is atomic).
        self._known_products: set[str] = set()

    # --- customer --------------------------------------------------------------------------

    @activity.defn(name=ACT_CREATE_BILLING_CUSTOMER)
    def create_billing_customer(self, input: CreateCustomerInput) -> BillingCustomer:
        """Find or create the Stripe customer for the signed legal entity of the deal."""
        with stripe_failures():
            found = None
            if not keys_cover_every_attempt(input.priced, self._clock()):
                found = self._find_customer(input.deal_id, input.priced.account.billing_email)
            if found is not None:
                log.info("stripe customer found", deal_id=input.deal_id, customer_id=found.id)
                return BillingCustomer(customer_id=found.id, system=VENDOR_ID)
            customer = self._stripe.customers.create(
                params=plan.customer_params(input.deal_id, input.priced),
                options={"idempotency_key": customer_key(input)},
            )
            log.info("stripe customer created", deal_id=input.deal_id, customer_id=customer.id)
            return BillingCustomer(customer_id=customer.id, system=VENDOR_ID)

    def _find_customer(self, deal_id: str, email: str) -> stripe.Customer | None:
        """The deal's customer if an earlier attempt created it, else None.

        Search answers for every customer older than Stripe's index lag (up to a minute); a
        younger one was created under the create's idempotency key, which Stripe keeps for 24
        hours, so a retried create returns it. Only where search is not offered is the list by
        e-mail needed, and it grows with every customer sharing that e-mail (it was a third of
        the worker's CPU when many deals bill the same address).
        """
        searched, found = self._search_customer(deal_id)
        if searched:
            return found
        for customer in self._stripe.customers.list(
            params={"email": email, "limit": 100}
        ).auto_paging_iter():
            if _meta(customer, plan.META_DEAL_ID) == deal_id:
                return customer
        return None

    def _search_customer(self, deal_id: str) -> tuple[bool, stripe.Customer | None]:
        """(whether search answered, the customer it found)."""
        escaped = deal_id.replace("\\", "\\\\").replace("'", "\\'")
        try:
            hits = self._stripe.customers.search(
                params={"query": f"metadata['{plan.META_DEAL_ID}']:'{escaped}'"}
            )
        except stripe.InvalidRequestError:
            # Search is not offered everywhere: the caller falls back to the list by e-mail.
            return False, None
        return True, next((c for c in hits.data if _meta(c, plan.META_DEAL_ID) == deal_id), None)

    # --- subscription ----------------------------------------------------------------------

    @activity.defn(name=ACT_CREATE_SUBSCRIPTION)
    def create_subscription(self, input: CreateSubscriptionInput) -> SubscriptionCreated:
        """Create the deal's subscription schedule (and stub invoice) exactly as priced.

        With a stub period, or a start in the future, Stripe has no subscription yet: the schedule
        starts it at the term start. ``subscription_id`` is then the schedule's id
        (``sub_sched_...``) and ``send_first_invoice`` accepts either.
        """
        deal_id, priced = input.deal_id, input.priced
        with stripe_failures():
            params = plan.schedule_params(deal_id, input.customer_id, priced, tax=self._tax)
            self._ensure_products(deal_id, priced)
            invoice_id: str | None = None
            if plan.has_stub(priced):
                invoice_id = self._ensure_stub_invoice(deal_id, input.customer_id, priced)
            if invoice_id is None:
                # The subscription's first invoice comes back with the schedule, which saves
                # listing it (one request per deal; bench/RESULTS.md).
                params = {**params, "expand": [EXPAND_FIRST_INVOICE]}
            schedule, first = self._find_or_create_schedule(
                deal_id, input.customer_id, priced, params
            )
            subscription_id = _id(schedule.subscription)
            if invoice_id is None and subscription_id is not None:
                # A schedule found again (a retry) may have billed later periods since: look for
                # the invoice that started the subscription, not its latest one.
                first = first or self._subscription_first_invoice(subscription_id)
                if first is not None:
                    invoice_id = self._hold_draft(deal_id, first).id
            log.info(
                "stripe subscription ready",
                deal_id=deal_id,
                schedule_id=schedule.id,
                subscription_id=subscription_id,
                first_invoice_id=invoice_id,
            )
            return SubscriptionCreated(
                subscription_id=subscription_id or schedule.id,
                schedule_id=schedule.id,
                invoice_id=invoice_id,
            )

    def _ensure_products(self, deal_id: str, priced: PricedQuote) -> None:
        """One product per SKU with an id derived from the SKU, shared by every deal."""
        for line in priced.lines:
            product_id = plan.product_id_for(line.sku)
            if product_id in self._known_products:
                continue
            try:
                self._stripe.products.retrieve(product_id)
                self._known_products.add(product_id)
                continue
            except stripe.InvalidRequestError as exc:
                if not _is_missing(exc):
                    raise
            try:
                self._stripe.products.create(
                    params={
                        "id": product_id,
                        "name": line.name,
                        "metadata": {plan.META_SKU: line.sku},
                    },
                    options={"idempotency_key": f"qtc:{deal_id}:product:{line.sku}"},
                )
            except stripe.InvalidRequestError as exc:
                # Another deal created it between our look-up and our create.
                if exc.code != "resource_already_exists":
                    raise
            self._known_products.add(product_id)

    def _find_or_create_schedule(
        self,
        deal_id: str,
        customer_id: str,
        priced: PricedQuote,
        params: SubscriptionScheduleCreateParams,
    ) -> tuple[stripe.SubscriptionSchedule, stripe.Invoice | None]:
        """The deal's schedule, and its first invoice when it was created just now and expanded.

        Looks up first only when an earlier attempt's idempotency key may be gone
        (``keys_cover_every_attempt``).
        """
        if not keys_cover_every_attempt(priced, self._clock()):
            found = self._find_schedule(customer_id, deal_id)
            if found is not None:
                return found, None
        try:
            schedule = self._stripe.subscription_schedules.create(
                params=params, options={"idempotency_key": f"qtc:{deal_id}:subscription"}
            )
        except stripe.IdempotencyError:
            # The key was used with other parameters: an attempt by an earlier version of this
            # step (without the expansion) made the schedule. Find it instead.
            found = self._find_schedule(customer_id, deal_id)
            if found is None:
                raise
            return found, None
        return schedule, _expanded_first_invoice(schedule)

    def _find_schedule(self, customer_id: str, deal_id: str) -> stripe.SubscriptionSchedule | None:
        for schedule in self._stripe.subscription_schedules.list(
            params={"customer": customer_id, "limit": 100}
        ).auto_paging_iter():
            if _meta(schedule, plan.META_DEAL_ID) == deal_id and schedule.status not in (
                "canceled",
                "released",
            ):
                return schedule
        return None

    def _ensure_stub_invoice(
        self,
        deal_id: str,
        customer_id: str,
        priced: PricedQuote,
        amendment_of: str | None = None,
    ) -> str:
        """The separate first invoice of a stub deal, with exactly one item per quoted line.

        Items are matched by their position in ``priced.invoices[0]`` (metadata ``qtc_line``), so
        an attempt that died half-way adds only what is missing, even after Stripe has forgotten
        the idempotency keys (24 hours).
        """
        invoice = self._find_stub_invoice(customer_id, deal_id)
        if invoice is None:
            invoice = self._stripe.invoices.create(
                params=plan.stub_invoice_params(
                    deal_id, customer_id, priced, tax=self._tax, amendment_of=amendment_of
                ),
                options={"idempotency_key": f"qtc:{deal_id}:first-invoice"},
            )
        if invoice.status != "draft":
            return invoice.id
        present = {
            _meta(item, plan.META_LINE)
            for item in self._stripe.invoice_items.list(
                params={"invoice": invoice.id, "limit": 100}
            ).auto_paging_iter()
        }
        for index, item in enumerate(
            plan.stub_invoice_items(deal_id, customer_id, invoice.id, priced, tax=self._tax)
        ):
            if str(index) not in present:
                self._stripe.invoice_items.create(
                    params=item,
                    options={"idempotency_key": f"qtc:{deal_id}:first-invoice-item:{index}"},
                )
        return invoice.id

    def _find_stub_invoice(self, customer_id: str, deal_id: str) -> stripe.Invoice | None:
        for invoice in self._stripe.invoices.list(
            params={"customer": customer_id, "limit": 100}
        ).auto_paging_iter():
            if (
                _meta(invoice, plan.META_DEAL_ID) == deal_id
                and _meta(invoice, plan.META_FIRST_INVOICE) == "true"
            ):
                return invoice
        return None

    def _subscription_first_invoice(self, subscription_id: str) -> stripe.Invoice | None:
        invoices = list(
            self._stripe.invoices.list(
                params={"subscription": subscription_id, "limit": 100}
            ).auto_paging_iter()
        )
        if not invoices:
            return None
        created = [i for i in invoices if i.billing_reason == "subscription_create"]
        return min(created or invoices, key=lambda i: (i.created, i.period_start))

    def _hold_draft(self, deal_id: str, invoice: stripe.Invoice) -> stripe.Invoice:
        """Stop Stripe from finalizing and e-mailing the first invoice before we reconcile it."""
        if invoice.status != "draft" or not invoice.auto_advance:
            return invoice
        return self._stripe.invoices.update(
            invoice.id,
            params={"auto_advance": False, "metadata": {plan.META_DEAL_ID: deal_id}},
            options={"idempotency_key": f"qtc:{deal_id}:invoice-hold"},
        )

    # --- first invoice ---------------------------------------------------------------------

    @activity.defn(name=ACT_SEND_FIRST_INVOICE)
    def send_first_invoice(self, input: SendInvoiceInput) -> InvoiceSent:
        """Reconcile the deal's first invoice with the priced quote, then finalize and send it once.

        Raises:
            ApplicationError: ``INVOICE_MISMATCH`` (non-retryable) when Stripe's invoice differs
                from ``priced.invoices[0]``; details carry both sides.
        """
        with stripe_failures():
            invoice = self._first_invoice(input)
            return self._reconcile_and_send(input.deal_id, invoice, input.priced)

    def _reconcile_and_send(
        self, deal_id: str, invoice: stripe.Invoice, priced: PricedQuote
    ) -> InvoiceSent:
        """Reconcile ``invoice`` with ``priced.invoices[0]``, then finalize and send it once."""
        self._reconcile(invoice, priced)
        if invoice.status == "draft":
            invoice = self._stripe.invoices.finalize_invoice(
                invoice.id,
                params={"auto_advance": False},
                options={"idempotency_key": f"qtc:{deal_id}:invoice-finalize"},
            )
        if invoice.status in ("void", "uncollectible"):
            raise non_retryable(
                errors.VENDOR_CONFLICT,
                f"{VENDOR} invoice {invoice.id} of {deal_id} is {invoice.status}; "
                "it was changed outside this deal",
                details={"vendor": VENDOR, "invoice_id": invoice.id, "status": invoice.status},
            )
        if invoice.status == "open" and not self._already_sent(invoice):
            invoice = self._stripe.invoices.send_invoice(
                invoice.id, options={"idempotency_key": f"qtc:{deal_id}:invoice-send"}
            )
        log.info(
            "stripe first invoice sent",
            deal_id=deal_id,
            invoice_id=invoice.id,
            number=invoice.number,
            total_minor=invoice.total,
        )
        return InvoiceSent(
            invoice_id=invoice.id,
            number=invoice.number,
            invoice_url=invoice.hosted_invoice_url,
            total_minor=invoice.total,
            status=str(invoice.status),
            **_tax_figures(invoice),
        )

    def _first_invoice(self, input: SendInvoiceInput) -> stripe.Invoice:
        priced = input.priced
        if plan.is_services_order(priced):
            # No subscription: the one-off invoice is made here, found again on a retry.
            self._ensure_products(input.deal_id, priced)
            invoice_id = self._ensure_stub_invoice(input.deal_id, input.customer_id, priced)
            return self._stripe.invoices.retrieve(invoice_id)
        if plan.has_stub(priced):
            stub = self._find_stub_invoice(input.customer_id, input.deal_id)
            if stub is None:
                raise non_retryable(
                    errors.VENDOR_NOT_FOUND,
                    f"{VENDOR} has no stub invoice for {input.deal_id}; "
                    "create_subscription did not run for this customer",
                    details={"vendor": VENDOR, "customer_id": input.customer_id},
                )
            return stub
        subscription_id: str | None = input.subscription_id
        if input.subscription_id and input.subscription_id.startswith("sub_sched_"):
            schedule = self._stripe.subscription_schedules.retrieve(input.subscription_id)
            subscription_id = _id(schedule.subscription)
        invoice = self._subscription_first_invoice(subscription_id) if subscription_id else None
        if invoice is not None:
            return invoice
        # Not an error of the deal: Stripe issues the first invoice when the subscription starts.
        # Come back then (the helper caps the wait; the retry policy bounds the total).
        start = datetime.fromtimestamp(plan.utc_midnight(priced.start_date), UTC)
        wait = max(start - datetime.now(UTC), timedelta(seconds=0))
        raise retryable(
            errors.VENDOR_UNAVAILABLE,
            f"{VENDOR} has not issued the first invoice of {input.deal_id} yet "
            f"(billing starts {priced.start_date})",
            wait or None,
            details={"vendor": VENDOR, "subscription_id": input.subscription_id},
        )

    def _invoice_lines(self, invoice: stripe.Invoice) -> list[stripe.InvoiceLineItem]:
        if not invoice.lines.has_more:
            return list(invoice.lines.data)
        return list(
            self._stripe.invoices.line_items.list(
                invoice.id, params={"limit": 100}
            ).auto_paging_iter()
        )

    def _sku_of(self, line: stripe.InvoiceLineItem, known: dict[str, str]) -> str:
        """The SKU a line bills: from its product, as our products carry the SKU."""
        details = line.pricing.price_details if line.pricing else None
        if details is None:
            return "(no price)"
        product_id = details.product
        if product_id in known:
            return known[product_id]
        product = self._stripe.products.retrieve(product_id)
        return _meta(product, plan.META_SKU) or product_id

    def _unit_amount(self, line: stripe.InvoiceLineItem) -> int | str:
        if line.pricing and line.pricing.unit_amount_decimal is not None:
            return plan.minor_units(line.pricing.unit_amount_decimal)
        details = line.pricing.price_details if line.pricing else None
        if details is not None:
            price = self._stripe.prices.retrieve(_id(details.price) or "")
            if price.unit_amount_decimal is not None:
                return plan.minor_units(price.unit_amount_decimal)
        return "(unknown)"

    def _reconcile(self, invoice: stripe.Invoice, priced: PricedQuote) -> None:
        known = {plan.product_id_for(line.sku): line.sku for line in priced.lines}
        actual = [
            plan.BilledLine(
                sku=self._sku_of(line, known),
                quantity=line.quantity or 0,
                unit_amount_minor=self._unit_amount(line),
                amount_minor=line.amount,
            )
            for line in self._invoice_lines(invoice)
        ]
        total = invoice.total
        if self._tax and invoice.total_excluding_tax is not None:
            total = invoice.total_excluding_tax
        mismatch = plan.reconcile(
            invoice.id, priced.invoices[0], priced.currency, actual, total, invoice.currency
        )
        if mismatch is not None:
            log.warning("stripe invoice mismatch", **mismatch.model_dump(mode="json"))
            raise non_retryable(
                errors.INVOICE_MISMATCH,
                mismatch.summary(),
                details=mismatch.model_dump(mode="json"),
            )

    def _already_sent(self, invoice: stripe.Invoice) -> bool:
        """Whether an earlier attempt (or Stripe itself) already sent it: never e-mail twice.

        Stripe does not send it by itself (auto-advance is off). A young invoice (created by this
        deal under ``MANUAL_SEND_CHECK_AFTER_S`` ago) was seen by no one else, and our own earlier
        send of it is covered by the send's idempotency key, which Stripe keeps for 24 hours. An
        older one may have been sent by a person in the dashboard, or by us longer ago than the key
        lives: the ``invoice.sent`` events show both. That scan grows with every invoice sent in the
        period (it dominated worker CPU under load), hence only for old invoices.

        Earlier versions also flagged a sent invoice in its metadata (``qtc_sent``), one more write
        per deal that the two checks above make redundant; the flag is still honoured.
        """
        if _meta(invoice, plan.META_SENT) == "true":
            return True
        if self._clock() - invoice.created < MANUAL_SEND_CHECK_AFTER_S:
            return False
        events = self._stripe.events.list(
            params={"type": "invoice.sent", "created": {"gte": invoice.created}, "limit": 100}
        )
        return any(event.data.object["id"] == invoice.id for event in events.auto_paging_iter())

    # --- amendments ------------------------------------------------------------------------

    @activity.defn(name=ACT_AMEND_SUBSCRIPTION)
    def amend_subscription(self, input: AmendSubscriptionInput) -> SubscriptionAmended:
        """Change the original's schedule so every period from the end of the current one bills
        the quantities after the amendment, at each year's prices.

        The change is absolute (the phases are restated), so a retry that finds the schedule
        already changed does nothing; a schedule whose quantities are neither the original's nor
        the amended ones was changed by someone else (another amendment not priced against this
        one, a person in the dashboard) and parks the deal instead of overwriting it.
        """
        amendment = input.amendment
        unchanged = SubscriptionAmended(
            subscription_id=input.subscription_id, schedule_id=input.schedule_id
        )
        if not any(line.kind == "recurring" for line in amendment.lines):
            return unchanged
        if amendment.current_period.end >= input.original.term_end:
            return unchanged  # signed in the last period: no later period to bill differently
        after = amended_contract(input.original, amendment)
        changed_from = amendment.current_period.end
        with stripe_failures():
            schedule = self._schedule_to_amend(input)
            if schedule.status not in ("not_started", "active"):
                raise non_retryable(
                    errors.VENDOR_CONFLICT,
                    f"{VENDOR} schedule {schedule.id} of {input.original_deal_id} is "
                    f"{schedule.status}; an amendment can only change a running contract",
                    details={"vendor": VENDOR, "schedule_id": schedule.id},
                )
            at = plan.utc_midnight(changed_from)
            covering = next(
                (ph for ph in schedule.phases if ph.start_date <= at < ph.end_date), None
            )
            want = plan.recurring_quantities(after)
            have = plan.phase_quantities(covering) if covering is not None else {}
            if have == want and covering is not None and covering.start_date == at:
                log.info("stripe schedule already amended", deal_id=input.deal_id)
                return SubscriptionAmended(
                    subscription_id=_id(schedule.subscription) or input.subscription_id,
                    schedule_id=schedule.id,
                    changed_from=changed_from,
                )
            if have != plan.recurring_quantities(input.original):
                raise non_retryable(
                    errors.VENDOR_CONFLICT,
                    f"{VENDOR} schedule {schedule.id} bills {have or 'nothing'} from "
                    f"{changed_from}, not the signed {plan.recurring_quantities(input.original)}; "
                    "it was changed since the original was signed",
                    details={"vendor": VENDOR, "schedule_id": schedule.id, "found": have},
                )
            current = schedule.current_phase
            first_start = (
                datetime.fromtimestamp(current.start_date, UTC).date()
                if schedule.status == "active" and current is not None
                else input.original.term_start
            )
            phases = plan.amended_phases(
                input.original_deal_id,
                input.deal_id,
                input.original,
                after,
                changed_from,
                first_start,
                tax=self._tax,
            )
            updated = self._stripe.subscription_schedules.update(
                schedule.id,
                params=cast(
                    Any,
                    {
                        "phases": phases,
                        "proration_behavior": "none",
                        "metadata": {"last_amendment": input.deal_id},
                    },
                ),
                options={"idempotency_key": f"qtc:{input.deal_id}:amend-subscription"},
            )
            log.info(
                "stripe schedule amended",
                deal_id=input.deal_id,
                schedule_id=updated.id,
                changed_from=str(changed_from),
            )
            return SubscriptionAmended(
                subscription_id=_id(updated.subscription) or input.subscription_id,
                schedule_id=updated.id,
                changed_from=changed_from,
            )

    def _schedule_to_amend(self, input: AmendSubscriptionInput) -> stripe.SubscriptionSchedule:
        schedule_id = input.schedule_id
        if schedule_id is None and input.subscription_id:
            if input.subscription_id.startswith("sub_sched_"):
                schedule_id = input.subscription_id
            else:
                subscription = self._stripe.subscriptions.retrieve(input.subscription_id)
                schedule_id = _id(subscription.schedule)
        if schedule_id is None:
            raise non_retryable(
                errors.VENDOR_NOT_FOUND,
                f"{input.original_deal_id} has no {VENDOR} subscription schedule to amend",
                details={"vendor": VENDOR, "subscription_id": input.subscription_id},
            )
        return self._stripe.subscription_schedules.retrieve(schedule_id)

    @activity.defn(name=ACT_SEND_AMENDMENT_INVOICE)
    def send_amendment_invoice(self, input: SendAmendmentInvoiceInput) -> InvoiceSent:
        """The amendment invoice (proration and one-time lines, dated at the signature) on the
        original's customer: made once, reconciled with the priced amendment, sent once."""
        with stripe_failures():
            self._ensure_products(input.deal_id, input.priced)
            invoice_id = self._ensure_stub_invoice(
                input.deal_id, input.customer_id, input.priced, amendment_of=input.original_deal_id
            )
            invoice = self._stripe.invoices.retrieve(invoice_id)
            return self._reconcile_and_send(input.deal_id, invoice, input.priced)

    # --- tax -------------------------------------------------------------------------------

    @activity.defn(name=ACT_PREVIEW_INVOICE_TAX)
    def preview_invoice_tax(self, input: PreviewTaxInput) -> TaxPreview:
        """Stripe Tax's answer for the invoice under review, from an invoice preview: nothing is
        created, so asking twice is harmless."""
        invoice = input.priced.invoices[0]
        currency = input.priced.currency
        net = invoice.total_minor
        if not self._tax or not invoice.lines:
            return TaxPreview(tax_minor=0, total_excluding_tax_minor=net, total_minor=net)
        with stripe_failures():
            self._ensure_products(input.deal_id, input.priced)
            items = [
                {
                    "price_data": {
                        "currency": currency,
                        "product": plan.product_id_for(line.sku),
                        "unit_amount": line.unit_amount_minor,
                        "tax_behavior": "exclusive",
                    },
                    "quantity": line.quantity,
                }
                for line in invoice.lines
            ]
            preview = self._stripe.invoices.create_preview(
                params=cast(
                    Any,
                    {
                        "customer": input.customer_id,
                        "currency": currency,
                        "automatic_tax": {"enabled": True},
                        "invoice_items": items,
                    },
                )
            )
            figures = _tax_figures(preview)
            return TaxPreview(
                tax_minor=figures["tax_minor"],
                total_excluding_tax_minor=preview.total_excluding_tax or net,
                total_minor=preview.total,
                tax_reasons=figures["tax_reasons"],
            )
