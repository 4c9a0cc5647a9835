"""Salesforce behind the CRM port: read the opportunity as a quote, mark it Closed Won, write the
billing ids back.

simple-salesforce is a blocking SDK, so every activity here is synchronous and runs on the worker's
thread pool. Salesforce answers a rate limit with ``403 REQUEST_LIMIT_EXCEEDED`` rather than 429;
it is retried like any other rate limit. Everything else the CRM refuses (bad session, missing
permission, malformed query, missing record or field) parks the deal.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import requests
from simple_salesforce import Salesforce, SFType
from simple_salesforce.exceptions import SalesforceError
from simple_salesforce.format import format_soql
from temporalio import activity
from temporalio.exceptions import ApplicationError

from integrations.salesforce.mapping import (
    RECORD_ID,
    FieldMap,
    OpportunityDataError,
    quote_from_opportunity,
)
from qtc import errors, ports
from qtc.models import Quote
from runtime.vendor_errors import (
    from_http_status,
    non_retryable,
    parse_retry_after,
    retryable,
    unreachable,
)

VENDOR = "Salesforce"
VENDOR_ID = "salesforce"
CLOSED_WON = "Closed Won"
RATE_LIMIT_CODES = frozenset({"REQUEST_LIMIT_EXCEEDED", "TOO_MANY_REQUESTS"})
# Answered with 400 but transient: another transaction holds the record for a moment.
TRANSIENT_CODES = frozenset({"UNABLE_TO_LOCK_ROW"})


def _error_entries(content: Any) -> list[Mapping[str, Any]]:
    """Salesforce error bodies are a list of ``{"errorCode", "message"}`` (sometimes one dict)."""
    if isinstance(content, Mapping):
        return [content]
    if isinstance(content, Sequence) and not isinstance(content, str | bytes):
        return [e for e in content if isinstance(e, Mapping)]
    return []


class SalesforceCrm:
    """The CRM port on Salesforce; the worker builds one ``Salesforce`` client and shares it.

    ``read_quote`` is also what the starters call (Closed-Won webhooks, ``start-from-crm``), so a
    deal started from the CRM reads the opportunity exactly as the ``read_opportunity`` step does.
    """

    name = VENDOR_ID

    def __init__(self, sf: Salesforce, field_map: FieldMap | None = None) -> None:
        self._sf = sf
        self._fields = field_map or FieldMap()
        # simple-salesforce's exceptions drop the response headers, so Retry-After is caught on
        # the way past; thread-local because activities share the client across worker threads.
        self._last_response = threading.local()
        sf.session.hooks.setdefault("response", []).append(self._remember_response)

    def _remember_response(self, response: requests.Response, *_: Any, **__: Any) -> None:
        self._last_response.retry_after = response.headers.get("Retry-After")

    @activity.defn(name=ports.ACT_READ_OPPORTUNITY)
    def read_opportunity(self, input: ports.ReadOpportunityInput) -> Quote:
        """The opportunity as a ``Quote`` (``read_quote`` as an activity)."""
        return self.read_quote(input.opportunity_id)

    def read_quote(self, opportunity_id: str) -> Quote:
        """Read the opportunity, its account and line items in one SOQL query as a ``Quote``."""
        opportunity_id = self._checked_id(opportunity_id)
        result = self._call(
            "read opportunity",
            lambda: self._sf.query(self._fields.opportunity_soql(opportunity_id)),
        )
        records = result.get("records") or []
        if not records:
            raise non_retryable(
                errors.VENDOR_NOT_FOUND,
                f"Salesforce has no opportunity {opportunity_id}",
                details={"vendor": VENDOR, "opportunity_id": opportunity_id},
            )
        record = dict(records[0])
        self._complete_line_items(record)
        try:
            return quote_from_opportunity(record, self._fields)
        except OpportunityDataError as exc:
            raise non_retryable(
                errors.VENDOR_INVALID_REQUEST,
                str(exc),
                details={
                    "vendor": VENDOR,
                    "opportunity_id": opportunity_id,
                    "fields": [p.field for p in exc.problems],
                },
            ) from exc

    def is_closed_won(self, opportunity_id: str) -> bool:
        """Whether the opportunity is Closed Won now: an Outbound Message whose field selection
        leaves the stage out is decided on this read, never dropped."""
        stage = self._fields.stage
        current = self._current(self._checked_id(opportunity_id), [stage])
        return bool(current.get(stage) == CLOSED_WON)

    @activity.defn(name=ports.ACT_MARK_CLOSED_WON)
    def mark_closed_won(self, input: ports.MarkClosedWonInput) -> None:
        """Set StageName Closed Won, CloseDate and the deal id; a no-op when already so."""
        fm = self._fields
        opportunity_id = self._checked_id(input.opportunity_id)
        current = self._current(opportunity_id, [fm.stage, fm.close_date, fm.deal_id])
        wanted: dict[str, Any] = {
            fm.stage: CLOSED_WON,
            fm.close_date: input.close_date.isoformat(),
            fm.deal_id: input.deal_id,
        }
        changes = {k: v for k, v in wanted.items() if current.get(k) != v}
        if not changes:
            activity.logger.info(
                "opportunity %s already Closed Won for %s", opportunity_id, input.deal_id
            )
            return
        self._update(opportunity_id, changes)
        activity.logger.info(
            "opportunity %s marked Closed Won on %s", opportunity_id, input.close_date
        )

    @activity.defn(name=ports.ACT_WRITE_BACK_BILLING_IDS)
    def write_back_billing_ids(self, input: ports.WriteBackInput) -> None:
        """Write the billing ids (those known so far) onto the opportunity."""
        fm = self._fields
        opportunity_id = self._checked_id(input.opportunity_id)
        values = {
            fm.billing_customer_id: input.billing_customer_id,
            fm.billing_subscription_id: input.billing_subscription_id,
            fm.billing_invoice_id: input.billing_invoice_id,
            fm.billing_invoice_url: input.billing_invoice_url,
        }
        self._update(opportunity_id, {k: v for k, v in values.items() if v is not None})

    # --- helpers -------------------------------------------------------------------------

    @staticmethod
    def _checked_id(opportunity_id: str) -> str:
        if not RECORD_ID.match(opportunity_id):
            raise non_retryable(
                errors.VENDOR_INVALID_REQUEST,
                f"{opportunity_id!r} is not a Salesforce record id",
                details={"vendor": VENDOR},
            )
        return opportunity_id

    def _current(self, opportunity_id: str, fields: list[str]) -> dict[str, Any]:
        # Field names come from the validated FieldMap; the id is quoted by format_soql.
        select = ", ".join(dict.fromkeys(fields))
        soql = format_soql(f"SELECT {select} FROM Opportunity WHERE Id = {{}}", opportunity_id)  # noqa: S608
        records = self._call("read opportunity", lambda: self._sf.query(soql)).get("records")
        if not records:
            raise non_retryable(
                errors.VENDOR_NOT_FOUND,
                f"Salesforce has no opportunity {opportunity_id}",
                details={"vendor": VENDOR, "opportunity_id": opportunity_id},
            )
        return dict(records[0])

    def _update(self, opportunity_id: str, data: dict[str, Any]) -> None:
        opportunities = SFType(
            "Opportunity",
            self._sf.session_id,
            self._sf.sf_instance,
            sf_version=self._sf.sf_version,
            session=self._sf.session,
            salesforce=self._sf,
        )
        self._call("update opportunity", lambda: opportunities.update(opportunity_id, data))

    def _complete_line_items(self, record: dict[str, Any]) -> None:
        """Follow ``nextRecordsUrl`` when Salesforce pages a long line-item subquery."""
        rel = self._fields.line_items
        page = record.get(rel)
        if not isinstance(page, Mapping) or page.get("done", True):
            return
        records = list(page.get("records") or [])
        next_url = page.get("nextRecordsUrl")
        while next_url:
            more = self._call(
                "read line items",
                partial(self._sf.query_more, str(next_url), identifier_is_url=True),
            )
            records.extend(more.get("records") or [])
            next_url = None if more.get("done", True) else more.get("nextRecordsUrl")
        record[rel] = {"records": records, "done": True, "totalSize": len(records)}

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        self._last_response.retry_after = None
        try:
            return fn()
        except SalesforceError as exc:
            raise self._classify(what, exc) from exc
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise unreachable(VENDOR, exc) from exc

    def _classify(self, what: str, exc: SalesforceError) -> ApplicationError:
        entries = _error_entries(exc.content)
        codes = [str(e.get("errorCode")) for e in entries if e.get("errorCode")]
        message = "; ".join(str(e.get("message")) for e in entries if e.get("message"))
        if not message:
            message = exc.content.decode() if isinstance(exc.content, bytes) else str(exc.content)
        code = ",".join(codes) or None
        retry_after = parse_retry_after(getattr(self._last_response, "retry_after", None))
        text = f"{what}: {message}"
        if RATE_LIMIT_CODES.intersection(codes):
            return retryable(
                errors.VENDOR_RATE_LIMITED,
                f"Salesforce rate limit ({code}) on {text}",
                retry_after,
                details={"vendor": VENDOR, "status": exc.status, "code": code},
            )
        if TRANSIENT_CODES.intersection(codes):
            return retryable(
                errors.VENDOR_UNAVAILABLE,
                f"Salesforce record busy ({code}) on {text}",
                retry_after,
                details={"vendor": VENDOR, "status": exc.status, "code": code},
            )
        headers = {"Retry-After": str(retry_after.total_seconds())} if retry_after else None
        return from_http_status(VENDOR, exc.status, text, headers, code=code)
