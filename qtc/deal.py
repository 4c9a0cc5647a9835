"""The contract between the deal workflow, its activities and everything that starts or signals it.

Every workflow input, signal, query result and activity input/output is one pydantic model, so
fields can be added later without breaking running workflows (add with a default, never remove).
Names of activities, signals and queries are constants here so the workflow, the worker, the API
and the CLI cannot drift apart.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from qtc.models import FeatureValue, Model, PricedQuote, ScheduledInvoice

Phase = Literal[1, 2, 3]
Stage = Literal[
    "pending_approval",
    "contract_sent",
    "awaiting_signature",
    "signed",
    "billing_account_created",
    "awaiting_invoice_review",
    "subscription_created",
    "invoice_sent",
    "provisioned",
    "completed",
    "quote_rejected",
    "expired",
    "lost",
    "review_rejected",
    "needs_attention",
]
TERMINAL_STAGES: frozenset[str] = frozenset(
    {"completed", "quote_rejected", "expired", "lost", "review_rejected"}
)

WORKFLOW_NAME = "DealWorkflow"
TASK_QUEUE_DEFAULT = "qtc-deals"

# Search attributes (registered on the server; see workers/ and sandbox start-up).
SA_STAGE = "QtcStage"  # Keyword
SA_CUSTOMER = "QtcCustomer"  # Text
SA_ARR = "QtcArr"  # Double, in major units of the deal currency
SA_PHASE = "QtcPhase"  # Int

# Signals and queries.
SIGNAL_APPROVE_QUOTE = "approve_quote"
SIGNAL_REJECT_QUOTE = "reject_quote"
SIGNAL_SIGNATURE_COMPLETED = "signature_completed"
SIGNAL_APPROVE_INVOICE = "approve_invoice"
SIGNAL_REJECT_INVOICE = "reject_invoice"
SIGNAL_MARK_LOST = "mark_lost"
SIGNAL_RESUME = "resume"
QUERY_STATUS = "status"

# Activity names (verb-object, unique across the worker).
ACT_READ_OPPORTUNITY = "read_opportunity"
ACT_MARK_CLOSED_WON = "mark_closed_won"
ACT_WRITE_BACK_BILLING_IDS = "write_back_billing_ids"
ACT_SEND_CONTRACT = "send_contract"
ACT_VOID_CONTRACT = "void_contract"
ACT_CREATE_BILLING_CUSTOMER = "create_billing_customer"
ACT_CREATE_SUBSCRIPTION = "create_subscription"
ACT_SEND_FIRST_INVOICE = "send_first_invoice"
ACT_PROVISION_PRODUCT = "provision_product"


def deal_id_for(opportunity_id: str) -> str:
    """The workflow id, and the deal id used in every idempotency key and metadata field."""
    return f"deal-{opportunity_id}"


# --- workflow input, signals, query ----------------------------------------------------------


class DealInput(Model):
    priced: PricedQuote
    phase: Phase = 3
    started_by: str | None = None
    review_reminder_hours: int | None = None
    # What the QtcCustomer search attribute shows. Search attributes are stored in clear even when
    # payloads are encrypted, so the starter puts a non-identifying label here when they are;
    # None shows the legal name.
    customer_label: str | None = None


class QuoteDecision(Model):
    by: str
    note: str | None = None


class SignatureCompleted(Model):
    envelope_id: str
    completed_at: datetime
    signer_name: str | None = None
    signer_email: str | None = None


class InvoiceReview(Model):
    reviewer: str
    note: str | None = None


class MarkLost(Model):
    by: str
    reason: str | None = None


class Resume(Model):
    by: str
    note: str | None = None


class StageEntry(Model):
    stage: Stage
    at: datetime
    note: str | None = None


class DealError(Model):
    step: str
    type: str | None = None
    message: str
    at: datetime
    details: dict[str, object] | None = None


class DealNote(Model):
    """Something the deal noticed but did not act on (a duplicate webhook, a refused signal, a
    reminder): kept in the status so an operator can see why nothing happened."""

    at: datetime
    kind: str
    message: str


class DealStatus(Model):
    deal_id: str
    opportunity_id: str
    quote_id: str
    customer: str
    currency: str
    arr_minor: int
    phase: Phase
    stage: Stage
    stage_history: list[StageEntry] = Field(default_factory=list)
    envelope_id: str | None = None
    signature: SignatureCompleted | None = None
    quote_decision: QuoteDecision | None = None
    invoice_review: InvoiceReview | None = None
    stripe_customer_id: str | None = None
    stripe_subscription_id: str | None = None
    stripe_schedule_id: str | None = None
    stripe_invoice_id: str | None = None
    invoice_number: str | None = None
    hosted_invoice_url: str | None = None
    invoice_preview: ScheduledInvoice | None = None
    start_date: date | None = None
    provisioned_features: dict[str, dict[str, FeatureValue]] | None = None
    last_error: DealError | None = None
    invoice_sent_at: datetime | None = None
    notes: list[DealNote] = Field(default_factory=list)


# --- activity inputs and outputs -----------------------------------------------------------


class ReadOpportunityInput(Model):
    opportunity_id: str


class MarkClosedWonInput(Model):
    deal_id: str
    opportunity_id: str
    close_date: date


class WriteBackInput(Model):
    deal_id: str
    opportunity_id: str
    stripe_customer_id: str
    stripe_subscription_id: str | None = None
    stripe_invoice_id: str | None = None
    hosted_invoice_url: str | None = None


class SendContractInput(Model):
    deal_id: str
    priced: PricedQuote


class ContractSent(Model):
    envelope_id: str
    status: str


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


class BillingCustomer(Model):
    customer_id: str


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
    subscription_id: str
    priced: PricedQuote


class InvoiceSent(Model):
    invoice_id: str
    number: str | None = None
    hosted_invoice_url: str | None = None
    total_minor: int
    status: str


class ProvisionInput(Model):
    deal_id: str
    tenant_id: str
    priced: PricedQuote


class Provisioned(Model):
    tenant_id: str
    features: dict[str, dict[str, FeatureValue]]
