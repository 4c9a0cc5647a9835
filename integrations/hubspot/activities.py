"""HubSpot behind the CRM port: read a deal as a quote, move it to Closed Won, write the billing
ids back, leave a note when a deal cannot start, and check (or create) the properties it needs.

hubspot-api-client is a blocking SDK, so every activity here is synchronous and runs on the
worker's thread pool. A deal is read with the v4 associations API (labels included): its line
items (batch-read, 100 at a time), its primary company (association type 5) and its signer (the
contact associated under the configured label, else the first associated contact).

Errors: HubSpot's 429 (its ``policyName`` says which budget; a daily one waits an hour), 5xx,
timeouts and connection failures are retried; 400 (``errors[]`` quoted), 401, 403 (the missing
scope named), 404 and 409 park the deal.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import urllib3
from hubspot.crm.associations.v4.exceptions import ApiException as AssociationsError
from hubspot.crm.associations.v4.schema.exceptions import ApiException as LabelsError
from hubspot.crm.companies.exceptions import ApiException as CompaniesError
from hubspot.crm.contacts.exceptions import ApiException as ContactsError
from hubspot.crm.deals.exceptions import ApiException as DealsError
from hubspot.crm.line_items.exceptions import ApiException as LineItemsError
from hubspot.crm.objects.notes.exceptions import ApiException as NotesError
from hubspot.crm.properties.exceptions import ApiException as PropertiesError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from integrations.hubspot.client import HubSpotClient
from integrations.hubspot.mapping import (
    GROUP_LABEL,
    GROUP_NAME,
    RECORD_ID,
    DealDataError,
    DealRecords,
    ProductProperty,
    PropertyMap,
    product_properties,
    quote_from_deal,
)
from qtc import errors, ports
from qtc.models import Quote
from runtime.vendor_errors import (
    MAX_RETRY_AFTER,
    from_http_status,
    non_retryable,
    retry_after_from_headers,
    retryable,
    unreachable,
)

VENDOR = "HubSpot"
VENDOR_ID = "hubspot"
PRIMARY_COMPANY_TYPE = 5  # deal -> company, HUBSPOT_DEFINED "Primary"
NOTE_TO_DEAL_TYPE = 214  # note -> deal, HUBSPOT_DEFINED
BATCH_READ_SIZE = 100
ASSOCIATION_PAGE = 500
API_ERRORS: tuple[type[Exception], ...] = (
    DealsError,
    LineItemsError,
    CompaniesError,
    ContactsError,
    NotesError,
    AssociationsError,
    LabelsError,
    PropertiesError,
)
NETWORK_ERRORS: tuple[type[Exception], ...] = (urllib3.exceptions.HTTPError, OSError)

T = TypeVar("T")


@dataclass
class SchemaReport:
    """What the portal lacks of the properties and label this product uses, and what was made."""

    missing: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    how_to: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing

    def message(self) -> str:
        steps = "; ".join(self.how_to)
        return (
            f"the HubSpot portal lacks {', '.join(self.missing)}. Create them: set "
            "QTC_HUBSPOT_CREATE_PROPERTIES=true with a private app that has the "
            "crm.schemas.deals.write and crm.schemas.companies.write scopes, or by hand in "
            f"HubSpot (Settings > Properties, Settings > Objects > Deals > Associations): {steps}"
        )


def _error_body(exc: Exception) -> Mapping[str, Any]:
    try:
        body = json.loads(getattr(exc, "body", None) or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, Mapping) else {}


class HubSpotCrm:
    """The CRM port on HubSpot; the worker builds one ``HubSpotClient`` and shares it.

    ``read_quote`` is also what the starters call (the HubSpot webhook, ``start-from-crm``), so a
    deal started from HubSpot is read exactly as the ``read_opportunity`` step reads it.
    """

    name = VENDOR_ID

    def __init__(
        self,
        client: HubSpotClient,
        property_map: PropertyMap | None = None,
        *,
        closed_won_stage: str = "closedwon",
    ) -> None:
        self._hs = client
        self._pm = property_map or PropertyMap()
        self._closed_won_stage = closed_won_stage

    # --- the port ---------------------------------------------------------------------------

    @activity.defn(name=ports.ACT_READ_OPPORTUNITY)
    def read_opportunity(self, input: ports.ReadOpportunityInput) -> Quote:
        """The deal as a ``Quote`` (``read_quote`` as an activity)."""
        return self.read_quote(input.opportunity_id)

    def read_quote(self, opportunity_id: str) -> Quote:
        """Read the deal, its line items, primary company and signer as a ``Quote``."""
        deal_id = self._checked_id(opportunity_id)
        records = self.read_records(deal_id)
        try:
            return quote_from_deal(records, self._pm)
        except DealDataError as exc:
            raise non_retryable(
                errors.VENDOR_INVALID_REQUEST,
                str(exc),
                details={
                    "vendor": VENDOR,
                    "opportunity_id": deal_id,
                    "fields": [p.field for p in exc.problems],
                },
            ) from exc

    @activity.defn(name=ports.ACT_MARK_CLOSED_WON)
    def mark_closed_won(self, input: ports.MarkClosedWonInput) -> None:
        """Move the deal to the Closed Won stage with its close date and the deal id.

        One PATCH of absolute values: repeating it changes nothing (HubSpot records no change and
        sends no webhook for a value that is already so).
        """
        deal_id = self._checked_id(input.opportunity_id)
        pm = self._pm
        self._update_deal(
            deal_id,
            {
                pm.stage: self._closed_won_stage,
                pm.close_date: _midnight_ms(input.close_date),
                pm.deal_id: input.deal_id,
            },
        )
        activity.logger.info("HubSpot deal %s moved to %s", deal_id, self._closed_won_stage)

    @activity.defn(name=ports.ACT_WRITE_BACK_BILLING_IDS)
    def write_back_billing_ids(self, input: ports.WriteBackInput) -> None:
        """Write the billing ids (those known so far) onto the deal's qtc_* properties."""
        deal_id = self._checked_id(input.opportunity_id)
        pm = self._pm
        values = {
            pm.billing_customer_id: input.billing_customer_id,
            pm.billing_subscription_id: input.billing_subscription_id,
            pm.billing_invoice_id: input.billing_invoice_id,
            pm.billing_invoice_url: input.billing_invoice_url,
        }
        self._update_deal(deal_id, {k: v for k, v in values.items() if v is not None})

    def note_refusal(self, opportunity_id: str, reason: str) -> str:
        """Leave a note on the deal saying why it was not started; returns the note's id."""
        deal_id = self._checked_id(opportunity_id)
        body = {
            "properties": {
                "hs_timestamp": str(int(datetime.now(UTC).timestamp() * 1000)),
                "hs_note_body": "<p><strong>Quote-to-Cash did not start this deal.</strong></p>"
                + "".join(f"<p>{html.escape(line)}</p>" for line in reason.splitlines() if line),
            },
            "associations": [
                {
                    "to": {"id": deal_id},
                    "types": [
                        {
                            "associationCategory": "HUBSPOT_DEFINED",
                            "associationTypeId": NOTE_TO_DEAL_TYPE,
                        }
                    ],
                }
            ],
        }
        note = self._call(
            "create note",
            lambda: self._hs.notes.create(body, _request_timeout=self._hs.timeout_s),
        )
        return str(note.id)

    # --- reading ----------------------------------------------------------------------------

    def read_records(self, deal_id: str) -> DealRecords:
        """The deal's properties and those of its line items, primary company and signer."""
        pm = self._pm
        try:
            deal = self._hs.deals.get_by_id(
                deal_id, properties=pm.deal_properties(), _request_timeout=self._hs.timeout_s
            )
        except API_ERRORS as exc:
            if getattr(exc, "status", None) == 404:
                raise non_retryable(
                    errors.VENDOR_NOT_FOUND,
                    f"HubSpot has no deal {deal_id}",
                    details={"vendor": VENDOR, "opportunity_id": deal_id},
                ) from exc
            raise self._classify("read deal", exc) from exc
        except NETWORK_ERRORS as exc:
            raise unreachable(VENDOR, exc) from exc

        line_ids = [to_id for to_id, _ in self._associated(deal_id, "line_items")]
        lines = self._line_items(line_ids)

        companies = self._associated(deal_id, "companies")
        company_id = next(
            (to_id for to_id, types in companies if PRIMARY_COMPANY_TYPE in types), None
        )
        company = None
        if company_id is not None:
            company = self._properties(
                "read company",
                lambda: self._hs.companies.get_by_id(
                    company_id,
                    properties=pm.company_properties(),
                    _request_timeout=self._hs.timeout_s,
                ),
            )

        contacts = self._associated(deal_id, "contacts", labels=True)
        signer_id = next(
            (to_id for to_id, labels in contacts if pm.signer_label in labels),
            contacts[0][0] if contacts else None,
        )
        contact = None
        if signer_id is not None:
            contact = self._properties(
                "read contact",
                lambda: self._hs.contacts.get_by_id(
                    signer_id,
                    properties=pm.contact_properties(),
                    _request_timeout=self._hs.timeout_s,
                ),
            )
        return DealRecords(
            deal_id=deal_id,
            deal=dict(deal.properties or {}),
            company=company,
            company_id=company_id,
            contact=contact,
            line_items=lines,
        )

    def _associated(
        self, deal_id: str, to_type: str, *, labels: bool = False
    ) -> list[tuple[str, set[Any]]]:
        """Every record of ``to_type`` associated with the deal (all pages), in HubSpot's order,
        with its association type ids (or labels)."""
        found: list[tuple[str, set[Any]]] = []
        after: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": ASSOCIATION_PAGE}
            if after:
                kwargs["after"] = after
            page = self._call(
                f"read {to_type} of the deal",
                lambda kw=kwargs: self._hs.associations.get_page(  # type: ignore[misc]
                    "deals", deal_id, to_type, _request_timeout=self._hs.timeout_s, **kw
                ),
            )
            for result in page.results or []:
                kinds = {(t.label if labels else t.type_id) for t in result.association_types or []}
                found.append((str(result.to_object_id), kinds))
            after = page.paging.next.after if page.paging and page.paging.next else None
            if not after:
                return found

    def _line_items(self, ids: list[str]) -> list[dict[str, str | None]]:
        by_id: dict[str, dict[str, str | None]] = {}
        for start in range(0, len(ids), BATCH_READ_SIZE):
            chunk = ids[start : start + BATCH_READ_SIZE]
            body = {
                "inputs": [{"id": i} for i in chunk],
                "properties": self._pm.line_properties(),
                "propertiesWithHistory": [],
            }
            result = self._call(
                "read line items",
                lambda b=body: self._hs.line_items_batch.read(  # type: ignore[misc]
                    b, _request_timeout=self._hs.timeout_s
                ),
            )
            for item in result.results or []:
                by_id[str(item.id)] = dict(item.properties or {})
        # A line item deleted between the two reads is simply not on the deal any more.
        return [by_id[i] for i in ids if i in by_id]

    def _properties(self, what: str, fn: Callable[[], Any]) -> dict[str, str | None]:
        return dict(self._call(what, fn).properties or {})

    # --- writing ----------------------------------------------------------------------------

    def _update_deal(self, deal_id: str, values: Mapping[str, str]) -> None:
        self._call(
            "update deal",
            lambda: self._hs.deals.update(
                deal_id, {"properties": dict(values)}, _request_timeout=self._hs.timeout_s
            ),
        )

    # --- the properties and label the product needs ------------------------------------------

    def ensure_schema(self, *, create: bool) -> SchemaReport:
        """Check the qtc property group, the qtc_* properties and the signer label; create what
        is missing when ``create``, else report it with the steps to create it."""
        report = SchemaReport()
        wanted = product_properties(self._pm)
        for object_type in dict.fromkeys(p.object_type for p in wanted):
            self._ensure_group(object_type, report, create)
            existing = {
                p.name
                for p in self._call(
                    f"list {object_type} properties",
                    lambda t=object_type: self._hs.properties.get_all(  # type: ignore[misc]
                        t, _request_timeout=self._hs.timeout_s
                    ),
                ).results
                or []
            }
            for prop in (p for p in wanted if p.object_type == object_type):
                if prop.name not in existing:
                    self._ensure_property(prop, report, create)
        self._ensure_label(report, create)
        return report

    def _ensure_group(self, object_type: str, report: SchemaReport, create: bool) -> None:
        try:
            self._hs.property_groups.get_by_name(
                object_type, GROUP_NAME, _request_timeout=self._hs.timeout_s
            )
            return
        except PropertiesError as exc:
            if exc.status != 404:
                raise self._classify("read property group", exc) from exc
        except NETWORK_ERRORS as exc:
            raise unreachable(VENDOR, exc) from exc
        what = f"{object_type} property group {GROUP_NAME!r}"
        if not create:
            report.missing.append(what)
            report.how_to.append(f"{what} labelled {GROUP_LABEL!r}")
            return
        self._tolerate_conflict(
            "create property group",
            lambda: self._hs.property_groups.create(
                object_type,
                {"name": GROUP_NAME, "label": GROUP_LABEL},
                _request_timeout=self._hs.timeout_s,
            ),
        )
        report.created.append(what)

    def _ensure_property(self, prop: ProductProperty, report: SchemaReport, create: bool) -> None:
        what = f"{prop.object_type}.{prop.name}"
        if not create:
            report.missing.append(what)
            report.how_to.append(prop.how_to_create())
            return
        self._tolerate_conflict(
            "create property",
            lambda: self._hs.properties.create(
                prop.object_type, prop.create_body(), _request_timeout=self._hs.timeout_s
            ),
        )
        report.created.append(what)

    def _ensure_label(self, report: SchemaReport, create: bool) -> None:
        label = self._pm.signer_label
        defined = self._call(
            "read association labels",
            lambda: self._hs.association_labels.get_all(
                "deals", "contacts", _request_timeout=self._hs.timeout_s
            ),
        )
        if any(d.label == label for d in defined.results or []):
            return
        what = f"deal-to-contact association label {label!r}"
        if not create:
            report.missing.append(what)
            report.how_to.append(what)
            return
        self._call(
            "create association label",
            lambda: self._hs.association_labels.create(
                "deals",
                "contacts",
                {"label": label, "name": label.lower().replace(" ", "_")},
                _request_timeout=self._hs.timeout_s,
            ),
        )
        report.created.append(what)

    def _tolerate_conflict(self, what: str, fn: Callable[[], Any]) -> None:
        """Create something another process may have just created: 409 means it exists."""
        try:
            fn()
        except API_ERRORS as exc:
            if getattr(exc, "status", None) != 409:
                raise self._classify(what, exc) from exc
        except NETWORK_ERRORS as exc:
            raise unreachable(VENDOR, exc) from exc

    # --- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _checked_id(deal_id: str) -> str:
        if not RECORD_ID.match(deal_id):
            raise non_retryable(
                errors.VENDOR_INVALID_REQUEST,
                f"{deal_id!r} is not a HubSpot deal id (digits only)",
                details={"vendor": VENDOR},
            )
        return deal_id

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except API_ERRORS as exc:
            raise self._classify(what, exc) from exc
        except NETWORK_ERRORS as exc:
            raise unreachable(VENDOR, exc) from exc

    @staticmethod
    def _classify(what: str, exc: Exception) -> ApplicationError:
        status = int(getattr(exc, "status", 0) or 0)
        headers = dict(getattr(exc, "headers", None) or {})
        body = _error_body(exc)
        message = str(body.get("message") or getattr(exc, "reason", "") or "no message")
        details = [
            f"{e.get('code') or e.get('in') or 'error'}: {e.get('message')}"
            for e in body.get("errors") or []
            if isinstance(e, Mapping)
        ]
        if status == 403:
            scopes = [
                s
                for e in body.get("errors") or []
                if isinstance(e, Mapping)
                for s in (e.get("context") or {}).get("requiredGranularScopes") or []
            ]
            if scopes:
                details.append(f"the private app needs the scope(s) {', '.join(scopes)}")
        text = f"{what}: {message}" + (f" ({'; '.join(details)})" if details else "")
        code = body.get("category") or body.get("errorType")
        if status == 429:
            policy = str(body.get("policyName") or "")
            delay = retry_after_from_headers(headers)
            if delay is None and policy.upper() == "DAILY":
                delay = MAX_RETRY_AFTER  # the daily budget resets at midnight
            return retryable(
                errors.VENDOR_RATE_LIMITED,
                f"HubSpot rate limit ({policy or 'unknown policy'}) on {text}",
                delay,
                details={"vendor": VENDOR, "status": 429, "code": code, "policy": policy},
            )
        return from_http_status(VENDOR, status or 500, text, headers, code=code)


def _midnight_ms(day: date) -> str:
    """A HubSpot date(time) value: epoch milliseconds of midnight UTC."""
    return str(int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000))
