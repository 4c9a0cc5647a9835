"""The contract between the deal workflow and everything that starts, signals or queries it.

Every workflow input, signal and query result is one pydantic model, so fields can be added later
without breaking running workflows (add with a default, never remove; a rename keeps the old name
as an accepted alias). Names of signals and queries are constants here so the workflow, the API and
the CLI cannot drift apart. What the workflow needs from outside systems is in ``qtc.ports``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from qtc.amendments import PricedAmendment
from qtc.models import Account, FeatureValue, Model, PricedQuote, ScheduledInvoice, renamed_from

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
    "erp_synced",
    "provisioned",
    "completed",
    "quote_rejected",
    "expired",
    "lost",
    "review_rejected",
    "cancelled",
    "needs_attention",
]
TERMINAL_STAGES: frozenset[str] = frozenset(
    {"completed", "quote_rejected", "expired", "lost", "review_rejected", "cancelled"}
)

WORKFLOW_NAME = "DealWorkflow"
TASK_QUEUE_DEFAULT = "qtc-deals"

# Signals and queries.
SIGNAL_APPROVE_QUOTE = "approve_quote"
SIGNAL_REJECT_QUOTE = "reject_quote"
SIGNAL_SIGNATURE_COMPLETED = "signature_completed"
SIGNAL_APPROVE_INVOICE = "approve_invoice"
SIGNAL_REJECT_INVOICE = "reject_invoice"
SIGNAL_MARK_LOST = "mark_lost"
SIGNAL_RESUME = "resume"
UPDATE_CORRECT_ACCOUNT = "correct_account"
UPDATE_CANCEL = "cancel"
QUERY_STATUS = "status"


def deal_id_for(opportunity_id: str) -> str:
    """The workflow id, and the deal id used in every idempotency key and metadata field."""
    return f"deal-{opportunity_id}"


# --- workflow input, signals, query ----------------------------------------------------------


class AmendmentTerms(Model):
    """What an amendment deal carries about the deal it amends, read when it was started."""

    original_deal_id: str
    # The original's priced quote as signed: its terms and periods govern the amendment.
    original: PricedQuote
    # The amendment as priced when its deal started; re-dated to its own signature.
    amendment: PricedAmendment
    # The original's billing records: the amendment bills the same customer and changes the
    # same subscription, never a second one.
    billing_customer_id: str
    billing_subscription_id: str | None = None
    billing_schedule_id: str | None = None


class DealInput(Model):
    # For an amendment deal: ``qtc.amendments.amendment_deal_quote`` of the original and the
    # amendment (the contract after it, under the amendment's quote and opportunity).
    priced: PricedQuote
    phase: Phase = 3
    started_by: str | None = None
    review_reminder_hours: int | None = None
    # What the QtcCustomer search attribute shows. Search attributes are stored in clear even when
    # payloads are encrypted, so the starter puts a non-identifying label here when they are;
    # None shows the legal name.
    customer_label: str | None = None
    # The CRM the opportunity lives in (``salesforce``, ``hubspot``), as the starter's settings
    # say; shown in the status. None for deals started before it was recorded.
    crm: str | None = None
    # The ERP the billed invoice is recorded in (``netsuite``), as the starter's settings say;
    # None: no ERP, and the deal has no ``erp_synced`` step. Chosen at the start so the workflow
    # does not depend on a worker's settings.
    erp: str | None = None
    # Set for an amendment deal: it bills the original's customer and subscription.
    amends: AmendmentTerms | None = None
    # QTC_TAX=on when the deal started: the invoice a finance reviewer sees comes with the tax
    # the billing system would add.
    tax: bool = False
    # Run every step as a regular activity, never local (``QTC_DEAL_STEPS=remote``): more work
    # for the Temporal server per deal, every attempt visible in the Web UI from the first.
    remote_steps: bool = False


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


class AccountCorrection(Model):
    """An operator's correction of the signed legal entity's data (a tax id the billing system
    refuses, a wrong address), made while the deal waits in ``needs_attention``."""

    by: str
    reason: str = Field(min_length=1, max_length=500)
    account: Account


class Cancel(Model):
    """An operator ends a stuck deal for good."""

    by: str
    reason: str = Field(min_length=1, max_length=500)


class DecisionResult(Model):
    """What an accepted decision led to."""

    stage: Stage
    message: str | None = None


class Correction(Model):
    at: datetime
    by: str
    reason: str
    fields: list[str]


class StageEntry(Model):
    stage: Stage
    at: datetime
    note: str | None = None


class DealError(Model):
    """Why a step is blocked: parked in ``needs_attention``, or (``retrying``) still retrying."""

    step: str
    type: str | None = None
    message: str
    at: datetime
    details: dict[str, object] | None = None
    # What an operator needs without reading ``details``: the port (``billing``), the vendor's
    # error code, the deal field at fault (a JSON pointer into the quote), whether ``resume`` can
    # help as things stand, and what to do. None in statuses recorded before they were kept.
    system: str | None = None
    code: str | None = None
    field: str | None = None
    retrying: bool = False
    resume_helps: bool | None = None
    action: str | None = None


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
    # Which vendor holds each system's records (``salesforce``, ``stripe``, ...); None in statuses
    # recorded before the names were kept.
    crm: str | None = None
    esign: str | None = None
    billing: str | None = None
    erp: str | None = None
    billing_customer_id: str | None = renamed_from("stripe_customer_id")
    billing_subscription_id: str | None = renamed_from("stripe_subscription_id")
    billing_schedule_id: str | None = renamed_from("stripe_schedule_id")
    billing_invoice_id: str | None = renamed_from("stripe_invoice_id")
    invoice_number: str | None = None
    billing_invoice_url: str | None = renamed_from("hosted_invoice_url")
    erp_customer_id: str | None = None
    erp_invoice_id: str | None = None
    invoice_preview: ScheduledInvoice | None = None
    start_date: date | None = None
    provisioned_features: dict[str, dict[str, FeatureValue]] | None = None
    last_error: DealError | None = None
    invoice_sent_at: datetime | None = None
    notes: list[DealNote] = Field(default_factory=list)
    # The first invoice as the billing system issued it: what the customer owes (tax included),
    # the tax it computed (prices are net of tax) and the amount before tax. None before it is
    # sent, and the tax figures None where no tax was reported.
    invoice_total_minor: int | None = None
    invoice_tax_minor: int | None = None
    invoice_total_excluding_tax_minor: int | None = None
    # With tax on, the tax and total the billing system would charge for ``invoice_preview``,
    # asked before a finance review. None otherwise.
    invoice_preview_tax_minor: int | None = None
    invoice_preview_total_minor: int | None = None
    # The priced quote re-dated to the signature: what was signed, and what an amendment is
    # priced against. None before the signature (and in statuses recorded before it was kept).
    priced_quote: PricedQuote | None = None
    # An amendment deal: the deal it amends, and the amendment as priced at its signature.
    amends: str | None = None
    priced_amendment: PricedAmendment | None = None
    corrections: list[Correction] = Field(default_factory=list)
