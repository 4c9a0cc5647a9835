"""What the deal needs from each outside system: the ports.

The workflow calls activities by the names below and never names a vendor; each package in
``integrations/`` implements one port, and the worker registers the implementation the settings
choose (``QTC_CRM``, ``QTC_ESIGN``, ``QTC_BILLING``, ``QTC_ERP``) under the port's activity names.
Every activity takes one input model and returns one result model (add fields with a default, never
remove; a renamed field keeps reading its former name), so running deals survive a change of vendor
code.

The protocols say what an implementation provides. Activities may be sync (blocking SDKs run on the
worker's thread pool) or async; the protocols are written for the sync form, and the worker only
relies on the activity names. Failures cross Temporal as ``ApplicationError`` typed with the names
in ``qtc.errors``: non-retryable ones park the deal in ``needs_attention``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Protocol, runtime_checkable

from pydantic import Field

from qtc.amendments import PricedAmendment
from qtc.models import FeatureValue, Model, PricedQuote, Quote, ScheduledInvoice, renamed_from

# Search attributes: the names are defined here once; ``runtime.search_attributes`` turns them into
# Temporal's typed keys for the workflow, the service layer and the worker's registration.
SA_STAGE = "QtcStage"  # Keyword
SA_CUSTOMER = "QtcCustomer"  # Text
SA_ARR = "QtcArr"  # Double, in major units of the deal currency
SA_PHASE = "QtcPhase"  # Int
SA_CURRENCY = "QtcCurrency"  # Keyword: QtcArr's currency (USD, EUR, ...)
# Keyword: the step a deal is blocked on (retrying or parked in needs_attention), and the type of
# its error; unset otherwise. A saved view on them is the operator's list of stuck deals.
SA_BLOCKED_STEP = "QtcBlockedStep"
SA_ERROR_TYPE = "QtcErrorType"


# Activity names: they belong to the port, not to a vendor. Each vendor's implementation registers
# under these names, so a deal recorded with one vendor replays with another's code.
ACT_READ_OPPORTUNITY = "read_opportunity"
ACT_MARK_CLOSED_WON = "mark_closed_won"
ACT_WRITE_BACK_BILLING_IDS = "write_back_billing_ids"
ACT_SEND_CONTRACT = "send_contract"
ACT_VOID_CONTRACT = "void_contract"
ACT_CREATE_BILLING_CUSTOMER = "create_billing_customer"
ACT_CREATE_SUBSCRIPTION = "create_subscription"
ACT_SEND_FIRST_INVOICE = "send_first_invoice"
ACT_PROVISION_PRODUCT = "provision_product"
ACT_SYNC_ERP_INVOICE = "sync_erp_invoice"
ACT_AMEND_SUBSCRIPTION = "amend_subscription"
ACT_SEND_AMENDMENT_INVOICE = "send_amendment_invoice"
ACT_PREVIEW_INVOICE_TAX = "preview_invoice_tax"


class ReadOpportunityInput(Model):
    opportunity_id: str


class MarkClosedWonInput(Model):
    deal_id: str
    opportunity_id: str
    close_date: date


class WriteBackInput(Model):
    deal_id: str
    opportunity_id: str
    billing_customer_id: str = renamed_from("stripe_customer_id", required=True)
    billing_subscription_id: str | None = renamed_from("stripe_subscription_id")
    billing_invoice_id: str | None = renamed_from("stripe_invoice_id")
    billing_invoice_url: str | None = renamed_from("hosted_invoice_url")


class SendContractInput(Model):
    deal_id: str
    priced: PricedQuote


class ContractSent(Model):
    envelope_id: str
    status: str
    # The e-signature vendor that holds the contract; None in results recorded before it was kept.
    system: str | None = None


class VoidContractInput(Model):
    deal_id: str
    envelope_id: str
    reason: str


class ContractVoided(Model):
    """What voiding found: ``voided``, or the final state the envelope was already in
    (``completed``: it was signed, at ``completed_at``; ``declined``)."""

    envelope_id: str
    status: str
    completed_at: datetime | None = None
    signer_name: str | None = None
    signer_email: str | None = None


class CreateCustomerInput(Model):
    deal_id: str
    priced: PricedQuote
    # How many times an operator corrected the legal entity: an implementation must not replay
    # an earlier attempt's request for a corrected entity (idempotency keys include it when > 0).
    account_revision: int = 0


class BillingCustomer(Model):
    customer_id: str
    # The billing vendor that holds the customer; None in results recorded before it was kept.
    system: str | None = None


class CreateSubscriptionInput(Model):
    deal_id: str
    customer_id: str
    priced: PricedQuote


class SubscriptionCreated(Model):
    subscription_id: str
    schedule_id: str | None = None
    invoice_id: str | None = None


class SendInvoiceInput(Model):
    deal_id: str
    customer_id: str
    # None for a services order (one-time lines only): it has no subscription.
    subscription_id: str | None = None
    priced: PricedQuote


class InvoiceSent(Model):
    invoice_id: str
    number: str | None = None
    invoice_url: str | None = renamed_from("hosted_invoice_url")
    # What the customer owes, tax included when the billing system computed tax.
    total_minor: int
    status: str
    # Tax the billing system added (prices are net of tax), the amount before it, and why it
    # applied (``standard_rated``, ``reverse_charge``, ``not_collecting``...). None in results
    # recorded before tax was reported.
    tax_minor: int | None = None
    total_excluding_tax_minor: int | None = None
    tax_reasons: list[str] | None = None


class AmendSubscriptionInput(Model):
    deal_id: str  # the amendment deal
    original_deal_id: str
    customer_id: str
    subscription_id: str | None = None
    schedule_id: str | None = None
    # The original as signed, and the amendment as priced at its signature.
    original: PricedQuote
    amendment: PricedAmendment


class SubscriptionAmended(Model):
    subscription_id: str | None = None
    schedule_id: str | None = None
    # The first day the new quantities are billed (the end of the current period); None when
    # the amendment adds no recurring line and the subscription is left as it was.
    changed_from: date | None = None


class SendAmendmentInvoiceInput(Model):
    deal_id: str  # the amendment deal
    original_deal_id: str
    customer_id: str
    # ``qtc.amendments.amendment_deal_quote``: ``invoices[0]`` is the amendment invoice.
    priced: PricedQuote


class PreviewTaxInput(Model):
    deal_id: str
    customer_id: str
    # ``priced.invoices[0]`` is the invoice (net of tax) about to be reviewed.
    priced: PricedQuote


class TaxPreview(Model):
    """What the billing system would charge for the invoice: its tax and total."""

    tax_minor: int
    total_excluding_tax_minor: int
    total_minor: int
    tax_reasons: list[str] = Field(default_factory=list)


class ProvisionInput(Model):
    deal_id: str
    tenant_id: str
    priced: PricedQuote


class Provisioned(Model):
    tenant_id: str
    features: dict[str, dict[str, FeatureValue]]


class SyncErpInvoiceInput(Model):
    """The invoice billing sent, to be recorded in the ERP under the billing system's ids."""

    deal_id: str
    billing_customer_id: str
    billing_invoice_id: str
    # The number the customer sees on the billing invoice; the ERP invoice's memo carries it.
    billing_invoice_number: str | None = None
    billed_total_minor: int
    # Tax the billing system added (included in the total). The ERP records the lines net of
    # tax and applies its own tax setup, so with tax the lines and subtotal are compared, not
    # the ERP's tax.
    billed_tax_minor: int = 0
    # Account, currency and payment terms come from here.
    priced: PricedQuote
    # The invoice as billed (equal to the priced one: billing reconciled it to the cent), with
    # each line's service period for revenue recognition.
    invoice: ScheduledInvoice


class ErpInvoiceSynced(Model):
    customer_id: str
    invoice_id: str
    # The ERP's own document number for the invoice, when it gives one.
    invoice_number: str | None = None
    total_minor: int
    # The ERP vendor that holds the records.
    system: str | None = None


# --- the ports -------------------------------------------------------------------------------


class CrmReader(Protocol):
    """Reads an opportunity (a Salesforce Opportunity, a HubSpot deal) as a quote. Blocking: async
    callers run it in a thread. Used by the starters (Closed-Won webhooks, ``start-from-crm``)
    outside any workflow, and by the ``read_opportunity`` activity."""

    name: str

    def read_quote(self, opportunity_id: str) -> Quote:
        """The opportunity as a quote; ``ApplicationError`` typed ``VendorNotFound`` when it does
        not exist, ``VendorInvalidRequest`` (naming each field) when it cannot make a quote."""
        ...


@runtime_checkable
class CrmNotes(Protocol):
    """A CRM that can tell its users, on the record itself, why a deal was not started (a note on
    the HubSpot deal). Best used for refusals a person must fix in the CRM: a rule the quote
    breaks, a field it lacks."""

    def note_refusal(self, opportunity_id: str, reason: str) -> str | None:
        """Attach ``reason`` to the opportunity; the note's id, or None when there is nowhere to
        write it. Raises ``ApplicationError`` like ``read_quote``."""
        ...


class Crm(Protocol):
    """The CRM activities: ``read_opportunity``, ``mark_closed_won``, ``write_back_billing_ids``."""

    def read_opportunity(self, input: ReadOpportunityInput) -> Quote: ...

    def mark_closed_won(self, input: MarkClosedWonInput) -> None: ...

    def write_back_billing_ids(self, input: WriteBackInput) -> None: ...


class ESignature(Protocol):
    """The contract activities: ``send_contract`` (idempotent per deal: finds the contract an
    earlier attempt sent) and ``void_contract`` (reports a contract already signed)."""

    def send_contract(self, input: SendContractInput) -> ContractSent: ...

    def void_contract(self, input: VoidContractInput) -> ContractVoided: ...


class Billing(Protocol):
    """The billing activities: one customer per deal, a subscription whose prices equal the priced
    quote, the first invoice sent (not charged) and reconciled with the quote to the cent."""

    def create_billing_customer(self, input: CreateCustomerInput) -> BillingCustomer: ...

    def create_subscription(self, input: CreateSubscriptionInput) -> SubscriptionCreated: ...

    def send_first_invoice(self, input: SendInvoiceInput) -> InvoiceSent: ...

    def amend_subscription(self, input: AmendSubscriptionInput) -> SubscriptionAmended:
        """Change the original's subscription from the end of the current period on to the
        quantities after the amendment (idempotent: the change is absolute, not a delta)."""
        ...

    def preview_invoice_tax(self, input: PreviewTaxInput) -> TaxPreview:
        """The tax the billing system would add to the invoice (nothing is created); asked only
        when tax is on, for the invoice a finance reviewer is about to approve."""
        ...

    def send_amendment_invoice(self, input: SendAmendmentInvoiceInput) -> InvoiceSent:
        """Issue, reconcile and send the amendment invoice (proration and one-time lines) to
        the original's customer, once."""
        ...


class Erp(Protocol):
    """Records the billed invoice in the ERP: the customer and the invoice, each upserted under an
    id derived from the billing system's (so a retry or a crash never makes a second record),
    one line per billed line with its revenue-recognition dates, and totals checked against the
    billed invoice (``InvoiceMismatch`` when they differ)."""

    def sync_erp_invoice(self, input: SyncErpInvoiceInput) -> ErpInvoiceSynced: ...


class ProductBackend(Protocol):
    """Switches on the signed SKUs' features for the tenant (the billing customer)."""

    def provision_product(self, input: ProvisionInput) -> Provisioned: ...


class ContractRecord(Model):
    """What the e-signature service holds about one contract, read outside any workflow.

    A webhook that names only the contract (DocuSign Connect's default message) is answered from
    this: the deal the product wrote on the contract when it sent it, and the signature facts.
    """

    contract_id: str
    # The deal id from the contract's own fields; None: this product did not send the contract.
    deal_id: str | None = None
    status: str
    completed_at: datetime | None = None
    signer_name: str | None = None
    signer_email: str | None = None


@runtime_checkable
class ContractReader(Protocol):
    """Reads one contract by its id (blocking: async callers run it in a thread)."""

    name: str

    def read_contract(self, contract_id: str) -> ContractRecord | None:
        """The contract, or None when the service has none with this id for our account;
        ``ApplicationError`` typed with ``qtc.errors`` names otherwise (retryable: try later)."""
        ...


@runtime_checkable
class OpportunityStageReader(Protocol):
    """Tells whether an opportunity is won now, for a notification that did not say."""

    def is_closed_won(self, opportunity_id: str) -> bool:
        """``ApplicationError`` typed ``VendorNotFound`` when the opportunity does not exist."""
        ...
