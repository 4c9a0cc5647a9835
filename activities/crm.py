"""Salesforce: read the opportunity as a quote, mark it Closed Won, write the billing ids back.

simple-salesforce is a blocking SDK, so every activity here is synchronous and runs on the worker's
thread pool. Which CRM fields hold which quote facts is a ``FieldMap``: the defaults match the
fields this product installs in Salesforce, and an org with other names overrides them through
``QTC_SALESFORCE_FIELD_MAP`` (a JSON object of logical name to field path).

Salesforce answers a rate limit with ``403 REQUEST_LIMIT_EXCEEDED`` rather than 429; it is retried
like any other rate limit. Everything else the CRM refuses (bad session, missing permission,
malformed query, missing record or field) parks the deal.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Annotated, Any

import requests
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from simple_salesforce import Salesforce, SFType
from simple_salesforce.exceptions import SalesforceError
from simple_salesforce.format import format_soql
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import (
    from_http_status,
    non_retryable,
    parse_retry_after,
    retryable,
    unreachable,
)
from activities.http import PooledSession
from qtc import deal, errors
from qtc.models import Quote
from qtc.settings import Settings

VENDOR = "Salesforce"
CLOSED_WON = "Closed Won"
RATE_LIMIT_CODES = frozenset({"REQUEST_LIMIT_EXCEEDED", "TOO_MANY_REQUESTS"})
# Answered with 400 but transient: another transaction holds the record for a moment.
TRANSIENT_CODES = frozenset({"UNABLE_TO_LOCK_ROW"})
# Salesforce record ids are 15 or 18 alphanumerics; anything else cannot name an opportunity and
# must never reach a SOQL string.
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")
_PLAIN_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _field_path(value: str) -> str:
    if not _FIELD_PATH.match(value):
        raise ValueError(f"{value!r} is not a Salesforce field path (Name or Relation.Name)")
    return value


def _plain_field(value: str) -> str:
    if not _PLAIN_FIELD.match(value):
        raise ValueError(f"{value!r} must be a field of Opportunity itself (no relationship)")
    return value


FieldPath = Annotated[str, AfterValidator(_field_path)]
OpportunityField = Annotated[str, AfterValidator(_plain_field)]


class FieldMap(BaseModel):
    """Where each quote fact lives in the CRM.

    Opportunity fields are relative to Opportunity; account fields are paths through the
    opportunity's parent account (``Account.Name``); line fields are relative to the line item
    relationship named by ``line_items``. Fields this product writes must be plain Opportunity
    fields. ``start_date`` is optional: without it every deal starts on signature.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    opportunity_id: OpportunityField = "Id"
    name: OpportunityField = "Name"
    stage: OpportunityField = "StageName"
    close_date: OpportunityField = "CloseDate"
    currency: FieldPath = "CurrencyIsoCode"
    quote_id: FieldPath = "QTC_Quote_Id__c"
    term_months: FieldPath = "QTC_Term_Months__c"
    billing_frequency: FieldPath = "QTC_Billing_Frequency__c"
    billing_anchor: FieldPath = "QTC_Billing_Anchor__c"
    payment_terms_days: FieldPath = "QTC_Payment_Terms_Days__c"
    uplift_percent: FieldPath = "QTC_Uplift_Percent__c"
    valid_until: FieldPath = "QTC_Valid_Until__c"
    start_date: FieldPath | None = None
    signer_name: FieldPath = "QTC_Signer_Name__c"
    signer_email: FieldPath = "QTC_Signer_Email__c"
    deal_id: OpportunityField = "QTC_Deal_Id__c"
    stripe_customer_id: OpportunityField = "Stripe_Customer_Id__c"
    stripe_subscription_id: OpportunityField = "Stripe_Subscription_Id__c"
    stripe_invoice_id: OpportunityField = "Stripe_Invoice_Id__c"
    stripe_invoice_url: OpportunityField = "Stripe_Invoice_Url__c"

    account_name: FieldPath = "Account.Name"
    billing_street: FieldPath = "Account.BillingStreet"
    billing_city: FieldPath = "Account.BillingCity"
    billing_state: FieldPath = "Account.BillingState"
    billing_postal_code: FieldPath = "Account.BillingPostalCode"
    billing_country_code: FieldPath = "Account.BillingCountryCode"
    billing_email: FieldPath = "Account.QTC_Billing_Email__c"
    tax_id_type: FieldPath = "Account.QTC_Tax_Id_Type__c"
    tax_id: FieldPath = "Account.QTC_Tax_Id__c"

    line_items: OpportunityField = "OpportunityLineItems"
    line_quantity: FieldPath = "Quantity"
    line_discount: FieldPath = "Discount"
    line_product_code: FieldPath = "Product2.ProductCode"

    @classmethod
    def from_settings(cls, settings: Settings) -> FieldMap:
        """The defaults with ``settings.salesforce_field_map`` over them (unknown keys fail)."""
        return cls.model_validate(settings.salesforce_field_map)

    def opportunity_fields(self) -> list[str]:
        """Every Opportunity-level field path the quote is read from, in a stable order."""
        names = [
            self.opportunity_id,
            self.name,
            self.stage,
            self.close_date,
            self.currency,
            self.quote_id,
            self.term_months,
            self.billing_frequency,
            self.billing_anchor,
            self.payment_terms_days,
            self.uplift_percent,
            self.valid_until,
            self.start_date,
            self.signer_name,
            self.signer_email,
            self.deal_id,
            self.account_name,
            self.billing_street,
            self.billing_city,
            self.billing_state,
            self.billing_postal_code,
            self.billing_country_code,
            self.billing_email,
            self.tax_id_type,
            self.tax_id,
        ]
        return list(dict.fromkeys(n for n in names if n))

    def line_fields(self) -> list[str]:
        return list(dict.fromkeys([self.line_quantity, self.line_discount, self.line_product_code]))

    def opportunity_soql(self, opportunity_id: str) -> str:
        """One query for the opportunity, its account and its line items.

        Field names are validated identifiers (``FieldPath``) and the id is quoted by
        ``format_soql``, so nothing from outside reaches the query unescaped.
        """
        lines = f"(SELECT {', '.join(self.line_fields())} FROM {self.line_items})"  # noqa: S608
        select = ", ".join([*self.opportunity_fields(), lines])
        soql = f"SELECT {select} FROM Opportunity WHERE Id = {{}}"  # noqa: S608
        return format_soql(soql, opportunity_id)


class FieldProblem(BaseModel):
    field: str
    message: str


class OpportunityDataError(ValueError):
    """The opportunity's CRM data does not make a valid quote; every bad field is named."""

    def __init__(self, opportunity_id: str | None, problems: list[FieldProblem]) -> None:
        self.opportunity_id = opportunity_id
        self.problems = problems
        listed = "; ".join(f"{p.field}: {p.message}" for p in problems)
        super().__init__(f"opportunity {opportunity_id or '(no id)'} cannot be quoted: {listed}")


def _lookup(record: Mapping[str, Any] | None, path: str) -> Any:
    """Follow ``Relation.Field`` through nested SOQL results (or a flat ``"A.B"`` key)."""
    if record is None:
        return None
    if path in record:
        return record[path]
    head, _, rest = path.partition(".")
    if not rest:
        return None
    child = record.get(head)
    return _lookup(child, rest) if isinstance(child, Mapping) else None


def _whole_number(value: Any) -> Any:
    """Salesforce number fields arrive as floats (``36.0``); a whole one becomes an int.

    Anything else is passed on unchanged so the quote model rejects it with its own message.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(?:\.0+)?\s*", value):
        return int(Decimal(value))
    return value


def _decimal(value: Any) -> Any:
    """Percent fields as exact decimals: ``str(10.0)`` is ``"10.0"``, never ``10.000000000001``."""
    if value is None or isinstance(value, bool):
        return value
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        return value


def _picklist(value: Any) -> Any:
    """``"First of month"`` and ``"first-of-month"`` both mean ``first_of_month``."""
    if isinstance(value, str):
        return re.sub(r"[\s-]+", "_", value.strip().lower())
    return value


def _text(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _line_records(record: Mapping[str, Any], relationship: str) -> list[Mapping[str, Any]] | None:
    """Line items as SOQL returns them (``{"records": [...]}``) or as a plain list.

    Salesforce returns ``null`` for an empty subquery: that is no lines, not a malformed answer.
    """
    raw = record.get(relationship)
    if raw is None:
        return []
    if isinstance(raw, Mapping):
        raw = raw.get("records")
    if isinstance(raw, list) and all(isinstance(r, Mapping) for r in raw):
        return raw
    return None


def quote_from_opportunity(record: Mapping[str, Any], field_map: FieldMap) -> Quote:
    """Map one Opportunity record (SOQL shape, account and line items nested) to a ``Quote``.

    Args:
        record: The opportunity as Salesforce returns it from ``opportunity_soql`` (or an
            equivalent JSON document from a Flow callout).
        field_map: Where each fact lives.

    Raises:
        OpportunityDataError: naming every CRM field that is missing or invalid.
    """
    fm = field_map
    sources: dict[tuple[str | int, ...], str] = {}
    problems: list[FieldProblem] = []

    def read(path: tuple[str | int, ...], field: str, convert: Any = _text) -> Any:
        sources[path] = field
        return convert(_lookup(record, field))

    street = _lookup(record, fm.billing_street)
    street_lines = [s.strip() for s in street.splitlines() if s.strip()] if street else []
    sources[("account", "address", "line1")] = fm.billing_street
    sources[("account", "address", "line2")] = fm.billing_street
    address: dict[str, Any] = {
        "line1": street_lines[0] if street_lines else None,
        "city": read(("account", "address", "city"), fm.billing_city),
        "postal_code": read(("account", "address", "postal_code"), fm.billing_postal_code),
        "country": read(
            ("account", "address", "country"),
            fm.billing_country_code,
            lambda v: v.strip().upper() if isinstance(v, str) else v,
        ),
    }
    if len(street_lines) > 1:
        address["line2"] = ", ".join(street_lines[1:])
    state = read(("account", "address", "state"), fm.billing_state)
    if state:
        address["state"] = state

    account: dict[str, Any] = {
        "legal_name": read(("account", "legal_name"), fm.account_name),
        "billing_email": read(("account", "billing_email"), fm.billing_email),
        "address": address,
    }
    tax_type = read(("account", "tax_id", "type"), fm.tax_id_type)
    tax_value = read(("account", "tax_id", "value"), fm.tax_id)
    if tax_type or tax_value:
        account["tax_id"] = {"type": tax_type, "value": tax_value}

    quote: dict[str, Any] = {
        "quote_id": read(("quote_id",), fm.quote_id),
        "opportunity_id": read(("opportunity_id",), fm.opportunity_id),
        "currency": read(
            ("currency",), fm.currency, lambda v: v.strip().lower() if isinstance(v, str) else v
        ),
        "account": account,
        "signer": {
            "name": read(("signer", "name"), fm.signer_name),
            "email": read(("signer", "email"), fm.signer_email),
        },
        "term_months": read(("term_months",), fm.term_months, _whole_number),
        "billing_frequency": read(("billing_frequency",), fm.billing_frequency, _picklist),
        "payment_terms_days": read(("payment_terms_days",), fm.payment_terms_days, _whole_number),
        "valid_until": read(("valid_until",), fm.valid_until),
    }
    anchor = read(("billing_anchor",), fm.billing_anchor, _picklist)
    if anchor is not None:
        quote["billing_anchor"] = anchor
    uplift = read(("uplift_percent",), fm.uplift_percent, _decimal)
    if uplift is not None:
        quote["uplift_percent"] = uplift
    if fm.start_date:
        start = read(("start",), fm.start_date)
        if start:
            quote["start"] = start

    items = _line_records(record, fm.line_items)
    if items is None:
        problems.append(FieldProblem(field=fm.line_items, message="not a list of line items"))
        items = []
    lines: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        prefix = f"{fm.line_items}[{i}]"
        sources[("lines", i, "sku")] = f"{prefix}.{fm.line_product_code}"
        sources[("lines", i, "quantity")] = f"{prefix}.{fm.line_quantity}"
        sources[("lines", i, "discount_percent")] = f"{prefix}.{fm.line_discount}"
        line = {
            "sku": _text(_lookup(item, fm.line_product_code)),
            "quantity": _whole_number(_lookup(item, fm.line_quantity)),
        }
        discount = _decimal(_lookup(item, fm.line_discount))
        if discount is not None:
            line["discount_percent"] = discount
        lines.append(line)
    quote["lines"] = lines
    sources[("lines",)] = fm.line_items

    try:
        parsed = Quote.model_validate(quote)
    except ValidationError as exc:
        problems.extend(_problems_from(exc, sources))
    if problems:
        opp_id = _lookup(record, fm.opportunity_id)
        raise OpportunityDataError(opp_id if isinstance(opp_id, str) else None, problems)
    return parsed


def _problems_from(
    exc: ValidationError, sources: Mapping[tuple[str | int, ...], str]
) -> Iterator[FieldProblem]:
    """Name the CRM field behind each validation error (the longest known prefix of its path)."""
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = next(
            (sources[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in sources),
            ".".join(str(p) for p in loc),
        )
        value = err.get("input")
        shown = "missing" if value is None else f"got {value!r}"
        yield FieldProblem(field=field, message=f"{err['msg']} ({shown})")


def _error_entries(content: Any) -> list[Mapping[str, Any]]:
    """Salesforce error bodies are a list of ``{"errorCode", "message"}`` (sometimes one dict)."""
    if isinstance(content, Mapping):
        return [content]
    if isinstance(content, Sequence) and not isinstance(content, str | bytes):
        return [e for e in content if isinstance(e, Mapping)]
    return []


class CrmActivities:
    """Salesforce activities; the worker builds one ``Salesforce`` client and shares it."""

    def __init__(self, sf: Salesforce, field_map: FieldMap | None = None) -> None:
        self._sf = sf
        self._fields = field_map or FieldMap()
        # simple-salesforce's exceptions drop the response headers, so Retry-After is caught on
        # the way past; thread-local because activities share the client across worker threads.
        self._last_response = threading.local()
        sf.session.hooks.setdefault("response", []).append(self._remember_response)

    def _remember_response(self, response: requests.Response, *_: Any, **__: Any) -> None:
        self._last_response.retry_after = response.headers.get("Retry-After")

    @activity.defn(name=deal.ACT_READ_OPPORTUNITY)
    def read_opportunity(self, input: deal.ReadOpportunityInput) -> Quote:
        """Read the opportunity, its account and line items in one SOQL query as a ``Quote``."""
        opportunity_id = self._checked_id(input.opportunity_id)
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

    @activity.defn(name=deal.ACT_MARK_CLOSED_WON)
    def mark_closed_won(self, input: deal.MarkClosedWonInput) -> None:
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

    @activity.defn(name=deal.ACT_WRITE_BACK_BILLING_IDS)
    def write_back_billing_ids(self, input: deal.WriteBackInput) -> None:
        """Write the Stripe ids (those known so far) onto the opportunity."""
        fm = self._fields
        opportunity_id = self._checked_id(input.opportunity_id)
        values = {
            fm.stripe_customer_id: input.stripe_customer_id,
            fm.stripe_subscription_id: input.stripe_subscription_id,
            fm.stripe_invoice_id: input.stripe_invoice_id,
            fm.stripe_invoice_url: input.hosted_invoice_url,
        }
        self._update(opportunity_id, {k: v for k, v in values.items() if v is not None})

    # --- helpers -------------------------------------------------------------------------

    @staticmethod
    def _checked_id(opportunity_id: str) -> str:
        if not _RECORD_ID.match(opportunity_id):
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


class _ClientSession(PooledSession):
    """The session simple-salesforce sends every request through.

    simple-salesforce passes no timeout, so a hung socket would pin a worker thread forever; and
    requests lets ``REQUESTS_CA_BUNDLE`` override ``session.verify`` unless ``verify`` is passed
    per request, which would silently drop a configured CA file.
    """

    def __init__(self, timeout_s: float, ca_file: str | None, pool_size: int = 10) -> None:
        super().__init__(pool_size)
        self._timeout_s = timeout_s
        if ca_file is not None:
            self.verify = ca_file

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout_s)
        kwargs.setdefault("verify", self.verify)
        return super().request(method, url, *args, **kwargs)


def build_salesforce_client(settings: Settings) -> Salesforce:
    """The worker's one Salesforce client: a session id (sandbox, or a token from your own OAuth
    flow) or username + password + security token, which simple-salesforce refreshes itself."""
    ca_file = settings.salesforce_ca_file
    if ca_file is None and settings.sandbox:
        # Where ``qtc sandbox up`` (sandbox.runner) leaves its CA, so the sandbox needs no setting.
        default_ca = settings.state_dir / "emulators" / "tls" / "sandbox-ca.pem"
        ca_file = default_ca if default_ca.exists() else None
    session = _ClientSession(
        settings.salesforce_timeout_s,
        str(ca_file) if ca_file else None,
        pool_size=settings.worker_activity_threads,
    )
    if settings.salesforce_username and settings.salesforce_password:
        return Salesforce(
            username=settings.salesforce_username,
            password=settings.salesforce_password.get_secret_value(),
            security_token=(
                settings.salesforce_security_token.get_secret_value()
                if settings.salesforce_security_token
                else ""
            ),
            domain=settings.salesforce_domain,
            version=settings.salesforce_api_version,
            session=session,
        )
    if settings.salesforce_session_id is None:
        raise ValueError(
            "set QTC_SALESFORCE_SESSION_ID or QTC_SALESFORCE_USERNAME and QTC_SALESFORCE_PASSWORD"
        )
    return Salesforce(
        instance_url=settings.salesforce_instance_url,
        session_id=settings.salesforce_session_id.get_secret_value(),
        version=settings.salesforce_api_version,
        session=session,
    )
