"""NetSuite behind the ERP port: the billed invoice recorded with its revenue-recognition dates.

One synchronous activity (httpx blocks; the worker runs it on its thread pool), safe to run any
number of times: the customer and the invoice are upserted by external ids derived from the
billing system's ids (``PUT .../eid:qtc-...``), so a retry, a worker killed mid-step or an
operator's resume updates the records an earlier attempt made instead of adding new ones, and the
invoice's lines are replaced (``?replace=item``), never appended to.

What NetSuite cannot take parks the deal with the field named: a SKU with no NetSuite item, a
currency the account or the subsidiary lacks, a field NetSuite refuses, an invoice whose total or
lines in NetSuite differ from what was billed. A busy NetSuite (429: its concurrency limit) or an
unreachable one is retried by Temporal.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import structlog
from temporalio import activity

from integrations.netsuite import mapping
from integrations.netsuite.client import NetSuiteClient, NetSuiteError
from qtc import errors
from qtc.models import ScheduledInvoice
from qtc.ports import ACT_SYNC_ERP_INVOICE, ErpInvoiceSynced, SyncErpInvoiceInput
from runtime.vendor_errors import non_retryable, retryable, unreachable

log = structlog.get_logger(__name__)

VENDOR = "NetSuite"
VENDOR_ID = "netsuite"


def classify(exc: NetSuiteError, doing: str, *, customer: bool = False) -> Exception:
    """A NetSuite error answer as a retryable or non-retryable activity failure.

    ``customer``: the request wrote the customer, whose fields come from the signed legal entity;
    a refused one is named by the deal's own pointer (``/account/...``) so the operator is told
    to correct the account.
    """
    details: dict[str, object] = {"vendor": VENDOR, "status": exc.status}
    if exc.code:
        details["code"] = exc.code
    if exc.path:
        pointer = mapping.account_pointer(exc.path) if customer else None
        details["field"] = pointer or exc.path
        if pointer:
            details["netsuite_field"] = exc.path
    field = f" (field {exc.path})" if exc.path else ""
    message = f"{VENDOR} answered {exc.status} to {doing}: {exc.detail}{field}"
    if exc.status == 429:
        # NetSuite's concurrency limit; it sends no Retry-After, so the retry policy's backoff
        # spaces the attempts.
        return retryable(errors.VENDOR_RATE_LIMITED, message, details=details)
    if exc.status == 408 or exc.status >= 500:
        return retryable(errors.VENDOR_UNAVAILABLE, message, details=details)
    kind = {
        401: errors.VENDOR_AUTHENTICATION,
        403: errors.VENDOR_PERMISSION,
        404: errors.VENDOR_NOT_FOUND,
        409: errors.VENDOR_CONFLICT,
    }.get(exc.status, errors.VENDOR_INVALID_REQUEST)
    return non_retryable(kind, message, details=details)


@contextmanager
def netsuite_failures(doing: str, *, customer: bool = False) -> Iterator[None]:
    try:
        yield
    except NetSuiteError as exc:
        raise classify(exc, doing, customer=customer) from exc
    except httpx.TransportError as exc:
        # The write may or may not have happened; the retry upserts the same external id.
        raise unreachable(VENDOR, exc) from exc


def _literal(text: str) -> str:
    """A SuiteQL string literal. The REST SuiteQL endpoint takes no bind parameters, so every
    value is quoted here, its quotes doubled."""
    return "'" + text.replace("'", "''") + "'"


class NetSuiteErp:
    """The ERP port on NetSuite; the worker builds one with its NetSuite client."""

    name = VENDOR_ID

    def __init__(self, client: NetSuiteClient, subsidiary_id: str) -> None:
        self._netsuite = client
        self._subsidiary_id = subsidiary_id

    @activity.defn(name=ACT_SYNC_ERP_INVOICE)
    def sync_erp_invoice(self, input: SyncErpInvoiceInput) -> ErpInvoiceSynced:
        """Upsert the customer and the billed invoice, then check NetSuite's invoice against it.

        Raises:
            ApplicationError: ``VendorInvalidRequest`` naming the SKU or field NetSuite lacks or
                refuses; ``InvoiceMismatch`` naming each field whose value differs.
        """
        priced, invoice = input.priced, input.invoice
        currency_id = self._currency_id(priced.currency)
        item_ids = self._item_ids(invoice)
        customer_eid = mapping.customer_external_id(input.billing_customer_id)
        with netsuite_failures(f"the upsert of customer {customer_eid}", customer=True):
            customer_id = self._netsuite.upsert(
                "customer",
                customer_eid,
                mapping.customer_body(priced, self._subsidiary_id, currency_id),
                replace=mapping.ADDRESS_SUBLIST,
            )
        invoice_eid = mapping.invoice_external_id(input.billing_invoice_id)
        body = mapping.invoice_body(
            customer_id=customer_id,
            currency_id=currency_id,
            memo=input.billing_invoice_number or input.billing_invoice_id,
            invoice=invoice,
            currency=priced.currency,
            payment_terms_days=priced.payment_terms_days,
            item_ids=item_ids,
        )
        with netsuite_failures(f"the upsert of invoice {invoice_eid}"):
            invoice_id = self._netsuite.upsert(
                "invoice", invoice_eid, body, replace=mapping.ITEM_SUBLIST
            )
        with netsuite_failures(f"reading invoice {invoice_id}"):
            record = self._netsuite.get("invoice", invoice_id, expand=True)
        billed = (input.billed_total_minor, input.billed_tax_minor)
        differences = mapping.reconcile(record, invoice, billed, priced.currency, item_ids)
        if differences:
            log.warning(
                "netsuite invoice differs from the billed invoice",
                deal_id=input.deal_id,
                invoice_id=invoice_id,
                differences=[d.sentence() for d in differences],
            )
            raise non_retryable(
                errors.INVOICE_MISMATCH,
                f"{VENDOR} invoice {invoice_id} ({invoice_eid}) differs from billing invoice "
                f"{input.billing_invoice_id}: " + "; ".join(d.sentence() for d in differences),
                details={
                    "vendor": VENDOR,
                    "invoice_id": invoice_id,
                    "differences": [
                        {"field": d.field, "billed": d.billed, "netsuite": d.netsuite}
                        for d in differences
                    ],
                },
            )
        recorded_total = mapping.minor(record.get("total") or 0, priced.currency)
        log.info(
            "netsuite invoice recorded",
            deal_id=input.deal_id,
            customer_id=customer_id,
            invoice_id=invoice_id,
            tran_id=record.get("tranId"),
        )
        return ErpInvoiceSynced(
            customer_id=customer_id,
            invoice_id=invoice_id,
            invoice_number=record.get("tranId"),
            total_minor=recorded_total if recorded_total is not None else input.billed_total_minor,
            system=VENDOR_ID,
        )

    def _currency_id(self, currency: str) -> str:
        symbol = currency.upper()
        with netsuite_failures(f"looking up currency {symbol}"):
            rows = list(
                self._netsuite.suiteql(
                    f"SELECT id, symbol FROM currency WHERE UPPER(symbol) = {_literal(symbol)}"  # noqa: S608
                )
            )
        if not rows:
            raise non_retryable(
                errors.VENDOR_INVALID_REQUEST,
                f"{VENDOR} has no currency {symbol} (field currency); add it under Lists > "
                "Accounting > Currencies and to the subsidiary, then resume the deal",
                details={"vendor": VENDOR, "field": "currency", "currency": symbol},
            )
        return str(rows[0]["id"])

    def _item_ids(self, invoice: ScheduledInvoice) -> dict[str, str]:
        """The NetSuite item of every SKU on the invoice: the item whose Item Name/Number is it."""
        skus = sorted({line.sku for line in invoice.lines})
        listed = ", ".join(_literal(sku) for sku in skus)
        with netsuite_failures("looking up the invoice's items"):
            rows = self._netsuite.suiteql(
                f"SELECT id, itemid, isinactive FROM item WHERE itemid IN ({listed})"  # noqa: S608
            )
            found = {row["itemid"]: str(row["id"]) for row in rows if row.get("isinactive") != "T"}
        missing = [sku for sku in skus if sku not in found]
        if missing:
            raise non_retryable(
                errors.VENDOR_INVALID_REQUEST,
                f"{VENDOR} has no active item whose Item Name/Number is "
                + ", ".join(missing)
                + " (field item); create it, then resume the deal",
                details={"vendor": VENDOR, "field": "item", "skus": missing},
            )
        return found
