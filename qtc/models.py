"""The domain's data: quotes as they come in, the catalog, and the priced quote that goes out.

Every model forbids unknown fields: a free-text term that rides along on a quote would be signed
but never billed, which is exactly the revenue leak this product exists to close.

Money inside the domain is ``Decimal``; it leaves the domain as integer minor units (``*_minor``).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from qtc import tax_ids


class Model(BaseModel):
    """Base for every domain model: unknown fields are an error, values are not coerced silently.

    A field may also be read under its former name (``renamed_from``), so a workflow input, result
    or status recorded before a rename still loads.
    """

    model_config = ConfigDict(extra="forbid", frozen=False, populate_by_name=True)


def renamed_from(old_name: str, *, required: bool = False) -> Any:
    """A field that was called ``old_name`` in earlier versions: read under either name, written
    under the new one. Optional fields default to None."""
    return Field(... if required else None, validation_alias=old_name)


NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
Percent = Annotated[Decimal, Field(ge=0, le=100, allow_inf_nan=False)]
BillingFrequency = Literal["monthly", "quarterly", "annual"]
BillingAnchor = Literal["start", "first_of_month"]
SkuKind = Literal["recurring", "one_time"]
InvoiceLineKind = Literal["recurring", "one_time", "stub", "proration"]
PriceStatus = Literal["ok", "needs_approval"]

PERIOD_MONTHS: dict[str, int] = {"monthly": 1, "quarterly": 3, "annual": 12}


def _start_spec(value: object) -> object:
    """One clear error for ``start`` instead of one per member of the union."""
    if value == "on_signature" or isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError('must be "on_signature" or a date such as 2027-01-31')


StartSpec = Annotated[Literal["on_signature"] | date, BeforeValidator(_start_spec)]
# A quantity of zero would put a line on the contract that is never billed; negative ones would
# credit the customer through the back door.
Quantity = Annotated[StrictInt, Field(ge=1)]


# --- quote (input) -------------------------------------------------------------------------


class Address(Model):
    line1: NonEmpty
    line2: str | None = None
    city: NonEmpty
    state: str | None = None
    postal_code: NonEmpty
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]


class TaxId(Model):
    type: NonEmpty
    value: NonEmpty


class Account(Model):
    """The legal entity that signs and is billed."""

    legal_name: NonEmpty
    billing_email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    address: Address
    tax_id: TaxId | None = None


class Signer(Model):
    name: NonEmpty
    email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class QuoteLine(Model):
    sku: NonEmpty
    quantity: Quantity
    discount_percent: Percent = Decimal("0")


class Quote(Model):
    quote_id: NonEmpty
    opportunity_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    currency: Annotated[str, StringConstraints(pattern=r"^[a-z]{3}$")]
    account: Account
    signer: Signer
    term_months: StrictInt
    billing_frequency: BillingFrequency
    billing_anchor: BillingAnchor = "start"
    start: StartSpec = "on_signature"
    payment_terms_days: StrictInt = 30
    uplift_percent: Percent | None = None
    valid_until: date
    lines: list[QuoteLine] = Field(min_length=1, max_length=200)

    @field_validator("account")
    @classmethod
    def _tax_id_accepted_by_billing(cls, account: Account) -> Account:
        """The billing system refuses a tax id of the wrong type or format; by then the contract
        would be signed, so the quote is refused instead, naming ``type`` or ``value``.

        Checked on the quote, not on ``Account``: a priced quote recorded before this rule must
        still load from a running deal's history.
        """
        tax_id = account.tax_id
        if tax_id is None:
            return account
        problems = tax_ids.check(account.address.country, tax_id.type, tax_id.value)
        if problems:
            raise ValidationError.from_exception_data(
                "Account",
                [
                    InitErrorDetails(
                        type=PydanticCustomError("tax_id_invalid", p.message),
                        loc=("tax_id", p.field),
                        input=getattr(tax_id, p.field),
                    )
                    for p in problems
                ],
            )
        return account


# --- catalog ------------------------------------------------------------------------------


class Requirement(Model):
    sku: NonEmpty
    quantity: Quantity = 1


FeatureValue = bool | int | str


class Sku(Model):
    code: NonEmpty
    name: NonEmpty
    kind: SkuKind
    unit: NonEmpty = "unit"
    prices: dict[str, Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]]
    min_quantity: StrictInt = 1
    max_quantity: StrictInt = 1_000_000
    max_discount_percent: Percent = Decimal("0")
    hard_max_discount_percent: Percent = Decimal("0")
    requires: list[Requirement] = Field(default_factory=list)
    excludes: list[str] = Field(default_factory=list)
    features: dict[str, FeatureValue] = Field(default_factory=dict)


class Policy(Model):
    currencies: list[str]
    term_months: list[int]
    billing_frequencies: list[BillingFrequency]
    payment_terms_days: list[int]
    default_uplift_percent: Percent = Decimal("0")
    max_uplift_percent: Percent = Decimal("0")


class Catalog(Model):
    policy: Policy
    skus: list[Sku]

    def sku(self, code: str) -> Sku | None:
        return next((s for s in self.skus if s.code == code), None)


# --- priced quote (output) -----------------------------------------------------------------


class PricedLine(Model):
    """A quote line after CPQ: the catalog facts it was priced with travel along with it, so the
    schedule can be re-dated at signature without consulting a catalog that may have changed."""

    sku: str
    name: str
    kind: SkuKind
    quantity: int
    discount_percent: Decimal
    list_price: Decimal
    auto_added: bool = False
    reason: str | None = None
    unit_amounts_by_year_minor: list[int] | None = None
    unit_amount_minor: int | None = None
    features: dict[str, FeatureValue] = Field(default_factory=dict)


class InvoiceLine(Model):
    sku: str
    kind: InvoiceLineKind
    quantity: int
    unit_amount_minor: int
    amount_minor: int
    period_start: date | None = None
    period_end: date | None = None


# ``ScheduledInvoice.date`` shadows the type inside its class body; type checkers need an alias.
_Date = date


class ScheduledInvoice(Model):
    date: _Date
    period_start: _Date
    period_end: _Date
    lines: list[InvoiceLine]
    total_minor: int


class Adjustment(Model):
    rule: Literal["requires"]
    sku: str
    because: str


class ApprovalNeeded(Model):
    pointer: str
    sku: str
    discount_percent: Decimal
    max_discount_percent: Decimal
    message: str


class PricedQuote(Model):
    status: PriceStatus
    quote_id: str
    opportunity_id: str
    currency: str
    signed_at: datetime
    start_date: date
    term_start: date
    term_end: date
    term_months: int
    billing_frequency: BillingFrequency
    billing_anchor: BillingAnchor
    payment_terms_days: int
    uplift_percent: Decimal
    valid_until: date
    account: Account
    signer: Signer
    lines: list[PricedLine]
    invoices: list[ScheduledInvoice]
    mrr_minor: int
    arr_minor: int
    tcv_minor: int
    first_invoice_total_minor: int
    adjustments: list[Adjustment] = Field(default_factory=list)
    approvals_needed: list[ApprovalNeeded] = Field(default_factory=list)
    requested_start: StartSpec = "on_signature"


class Violation(Model):
    pointer: str
    code: Literal[
        "invalid_field",
        "unknown_sku",
        "quantity_out_of_range",
        "duplicate_sku",
        "excluded_sku",
        "currency_not_supported",
        "term_not_allowed",
        "frequency_not_allowed",
        "term_not_multiple_of_period",
        "discount_above_hard_max",
        "uplift_out_of_policy",
        "payment_terms_not_allowed",
        "quote_expired",
        "amendment_outside_term",
        "amendment_field_not_allowed",
        "original_not_billed",
    ]
    message: str
