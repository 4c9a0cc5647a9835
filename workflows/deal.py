"""The deal workflow: one long-lived workflow per opportunity, from signed contract to live product.

Stages are described in docs/architecture.md. The workflow is orchestration only: every outside
effect is an activity called by the port's name (``qtc.ports``); which vendor implements it is the
worker's choice, so this module never names a vendor or imports an SDK. The one computation it
needs at signature time, dating the invoice schedule to the signature, runs as a local activity so
its result is recorded in history: a later change to the pricing code cannot change what a running
deal bills.

A vendor failure never fails the workflow. The step that failed parks the deal in
``needs_attention`` with the error in ``status``; an operator's ``resume`` signal retries that step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any, TypeVar, cast

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

with workflow.unsafe.imports_passed_through():
    from qtc.amendments import PricedAmendment, amendment_deal_quote, schedule_amendment
    from qtc.dates import as_utc
    from qtc.deal import (
        QUERY_STATUS,
        SIGNAL_APPROVE_INVOICE,
        SIGNAL_APPROVE_QUOTE,
        SIGNAL_MARK_LOST,
        SIGNAL_REJECT_INVOICE,
        SIGNAL_REJECT_QUOTE,
        SIGNAL_RESUME,
        SIGNAL_SIGNATURE_COMPLETED,
        UPDATE_CANCEL,
        UPDATE_CORRECT_ACCOUNT,
        WORKFLOW_NAME,
        AccountCorrection,
        AmendmentTerms,
        Cancel,
        Correction,
        DealError,
        DealInput,
        DealNote,
        DealStatus,
        DecisionResult,
        InvoiceReview,
        MarkLost,
        QuoteDecision,
        Resume,
        SignatureCompleted,
        Stage,
        StageEntry,
        deal_id_for,
    )
    from qtc.errors import NON_RETRYABLE_ERROR_TYPES, QuoteRejected
    from qtc.models import Model, PricedQuote
    from qtc.operator import STEP_SUMMARIES, blocked, current_details
    from qtc.ports import (
        ACT_AMEND_SUBSCRIPTION,
        ACT_CREATE_BILLING_CUSTOMER,
        ACT_CREATE_SUBSCRIPTION,
        ACT_MARK_CLOSED_WON,
        ACT_PREVIEW_INVOICE_TAX,
        ACT_PROVISION_PRODUCT,
        ACT_SEND_AMENDMENT_INVOICE,
        ACT_SEND_CONTRACT,
        ACT_SEND_FIRST_INVOICE,
        ACT_SYNC_ERP_INVOICE,
        ACT_VOID_CONTRACT,
        ACT_WRITE_BACK_BILLING_IDS,
        AmendSubscriptionInput,
        BillingCustomer,
        ContractSent,
        ContractVoided,
        CreateCustomerInput,
        CreateSubscriptionInput,
        ErpInvoiceSynced,
        InvoiceSent,
        MarkClosedWonInput,
        PreviewTaxInput,
        Provisioned,
        ProvisionInput,
        SendAmendmentInvoiceInput,
        SendContractInput,
        SendInvoiceInput,
        SubscriptionAmended,
        SubscriptionCreated,
        SyncErpInvoiceInput,
        TaxPreview,
        VoidContractInput,
        WriteBackInput,
    )
    from qtc.pricing import reprice_for_signature
    from runtime.search_attributes import (
        ARR_KEY,
        BLOCKED_STEP_KEY,
        CURRENCY_KEY,
        CUSTOMER_KEY,
        ERROR_TYPE_KEY,
        MINOR_PER_MAJOR,
        PHASE_KEY,
        STAGE_KEY,
    )

T = TypeVar("T")

# --- activity options -----------------------------------------------------------------------

ACTIVITY_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    # About five minutes of retries: long enough to ride out a rate limit or a short vendor outage,
    # short enough that a deal stuck behind a longer one shows up in needs_attention the same hour.
    maximum_attempts=10,
    non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
)
# The blocking SDKs (DocuSign, Salesforce) run on the worker's thread pool and can answer slowly.
_START_TO_CLOSE: dict[str, timedelta] = {
    ACT_SEND_CONTRACT: timedelta(seconds=60),
    ACT_VOID_CONTRACT: timedelta(seconds=60),
    ACT_MARK_CLOSED_WON: timedelta(seconds=60),
    ACT_WRITE_BACK_BILLING_IDS: timedelta(seconds=60),
    ACT_CREATE_BILLING_CUSTOMER: timedelta(seconds=30),
    ACT_CREATE_SUBSCRIPTION: timedelta(seconds=30),
    ACT_SEND_FIRST_INVOICE: timedelta(seconds=30),
    ACT_PROVISION_PRODUCT: timedelta(seconds=30),
    ACT_AMEND_SUBSCRIPTION: timedelta(seconds=30),
    ACT_SEND_AMENDMENT_INVOICE: timedelta(seconds=30),
    ACT_PREVIEW_INVOICE_TAX: timedelta(seconds=30),
    # A handful of NetSuite requests, each of which can take seconds.
    ACT_SYNC_ERP_INVOICE: timedelta(seconds=90),
}
# The worker heartbeats every activity while its process lives (workers/heartbeat.py): a crashed
# worker's step is retried after this, not after its whole start-to-close timeout.
ACTIVITY_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
# workflow.patched ids: behaviour changes that alter the commands a recorded history replays.
PATCH_LEAVE_REVIEW_ON_APPROVAL = "leave-review-queue-on-approval"
PATCH_LOCAL_STEPS_AFTER_SIGNATURE = "local-steps-after-signature"
# Deals whose input names an ERP record the billed invoice there between invoice_sent and
# provisioned. Asked only for those deals, so a deal without an ERP records no marker and every
# history from before the step replays unchanged.
PATCH_ERP_SYNC = "erp-sync-after-invoice"
# A step that fails its first quick attempts is retried as a regular activity, so the Web UI shows
# it under Pending Activities (attempt n/10, next retry, last failure) instead of as timers and
# markers; the deal's current details, QtcBlockedStep and QtcErrorType say which step is blocked
# and why, while it retries and once it is parked; operators can correct the account or cancel.
PATCH_VISIBLE_RETRIES = "visible-retries-and-operator-actions"
# The steps after the signature are short, idempotent vendor calls (each carries its own
# idempotency key or looks up what an earlier attempt made), so they run as local activities:
# no activity task per step on the server, and the chain from Closed Won to the CRM write-back
# usually completes in the signature's own workflow task (bench/RESULTS.md: the server's CPU per
# deal fell by about two thirds). A worker that dies mid-chain is noticed by the workflow-task
# timeout instead of a heartbeat timeout, and the steps of that task run again, which their
# idempotency allows.
#
# A signal that reaches the deal while its local steps run is, if that workflow task is lost,
# replayed *before* them. So no signal may change the deal's course once the chain can start:
# under this patch a mark_lost after the signature is refused (see ``mark_lost``); a lost deal
# can no longer be replayed as lost after the CRM and billing were told it was won.
#
# A local step's retry waits longer than this on a durable timer rather than in the worker's
# memory, so a long vendor outage is retried on the same schedule as a remote step's, the attempt
# count survives a worker restart, and the first quick retry stays cheap.
LOCAL_RETRY_THRESHOLD = timedelta(seconds=1)
LOCAL_STEPS: frozenset[str] = frozenset(
    {
        ACT_MARK_CLOSED_WON,
        ACT_CREATE_BILLING_CUSTOMER,
        ACT_CREATE_SUBSCRIPTION,
        ACT_SEND_FIRST_INVOICE,
        ACT_PROVISION_PRODUCT,
        ACT_WRITE_BACK_BILLING_IDS,
        ACT_AMEND_SUBSCRIPTION,
        ACT_SEND_AMENDMENT_INVOICE,
    }
)
# The first, quick attempts of every step under PATCH_VISIBLE_RETRIES: a blip is absorbed here
# (for a local step, inside the workflow task), and anything longer is retried as a regular
# activity with ACTIVITY_RETRY_POLICY, where an operator can watch it.
FIRST_ATTEMPTS_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_attempts=2,
    non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
)
LOCAL_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    # Re-dating is pure: if it fails three times it is a bug, and the deal should wait for a fix.
    maximum_attempts=3,
    non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
)

# --- the local activity ---------------------------------------------------------------------

ACT_DATE_QUOTE_AT_SIGNATURE = "date_quote_at_signature"


class DateQuoteInput(Model):
    priced: PricedQuote
    signed_at: datetime


@activity.defn(name=ACT_DATE_QUOTE_AT_SIGNATURE)
async def date_quote_at_signature(input: DateQuoteInput) -> PricedQuote:
    """Re-date the invoice schedule to the signature, keeping the prices already on the quote."""
    return reprice_for_signature(input.priced, input.signed_at)


ACT_DATE_AMENDMENT_AT_SIGNATURE = "date_amendment_at_signature"
AMENDMENT_OUTSIDE_TERM = "AmendmentOutsideTerm"


class DateAmendmentInput(Model):
    original: PricedQuote
    amendment: PricedAmendment
    signed_at: datetime


class DatedAmendment(Model):
    amendment: PricedAmendment
    # ``amendment_deal_quote`` of the original and the re-dated amendment.
    priced: PricedQuote


@activity.defn(name=ACT_DATE_AMENDMENT_AT_SIGNATURE)
async def date_amendment_at_signature(input: DateAmendmentInput) -> DatedAmendment:
    """Re-date an amendment to its signature: its effective date, current period, proration and
    later invoices, from the prices already on it and the original's terms."""
    try:
        dated = schedule_amendment(input.amendment, input.original, input.signed_at)
    except QuoteRejected as exc:
        # Signed after the original's term ended: nothing to bill, and no retry changes that.
        raise ApplicationError(str(exc), type=AMENDMENT_OUTSIDE_TERM, non_retryable=True) from exc
    return DatedAmendment(amendment=dated, priced=amendment_deal_quote(input.original, dated))


LOCAL_ACTIVITIES: list[Callable[..., Any]] = [date_quote_at_signature, date_amendment_at_signature]
"""Local activities the worker registers next to the remote ones."""


def workflow_id_for(opportunity_id: str) -> str:
    """The workflow id of the deal for an opportunity (one deal per opportunity)."""
    return deal_id_for(opportunity_id)


# --- the workflow ---------------------------------------------------------------------------


class _QuoteExpired(Exception):
    """The quote expired while its contract step was parked; the deal ends ``expired``."""


class _DealCancelled(Exception):
    """An operator cancelled the parked deal; raised by the workflow itself, caught in ``run``."""


class _DealLost(Exception):
    """Unwinds the deal to the lost path; raised by the workflow itself, caught in ``run``."""


@workflow.defn(name=WORKFLOW_NAME)
class DealWorkflow:
    """One deal, from an approved quote to a provisioned product (see the module docstring).

    ``contract_sent`` is entered when the contract starts going out, so a new deal is findable in
    the Web UI from its first task; every later stage is entered once its step has succeeded. The
    quote's validity (end of ``valid_until``, UTC) bounds both waits that precede a signature: the
    deal-desk approval and the signature itself. ``mark_lost`` is acted on at the next wait or
    between two steps until the signature is recorded; after that it is refused (histories from
    before PATCH_LOCAL_STEPS_AFTER_SIGNATURE: until Closed Won starts).
    """

    @workflow.init
    def __init__(self, input: DealInput) -> None:
        # Built in init, not in run, so signals delivered with signal-with-start (before run's first
        # line) already find the state they update.
        priced = input.priced
        self._input = input
        self._priced = priced
        self._deal_id = deal_id_for(priced.opportunity_id)
        self._expires_at = datetime.combine(
            priced.valid_until + timedelta(days=1), time.min, tzinfo=UTC
        )
        first_stage: Stage = (
            "pending_approval" if priced.status == "needs_approval" else "contract_sent"
        )
        self._status = DealStatus(
            deal_id=self._deal_id,
            opportunity_id=priced.opportunity_id,
            quote_id=priced.quote_id,
            customer=priced.account.legal_name,
            currency=priced.currency,
            arr_minor=priced.arr_minor,
            phase=input.phase,
            stage=first_stage,
            crm=input.crm,
            erp=input.erp,
            amends=input.amends.original_deal_id if input.amends else None,
        )
        self._quote_decision: tuple[bool, QuoteDecision] | None = None
        self._review: tuple[bool, InvoiceReview] | None = None
        self._early_signatures: list[SignatureCompleted] = []
        self._lost: MarkLost | None = None
        self._resume: Resume | None = None
        self._billing_started = False
        # Set once the deal is on its way to expired or lost: later signals can no longer change
        # its course and are only noted.
        self._closing = False
        self._expiring = False
        # Set when Closed Won is about to be written: from then on the CRM says won, and a
        # mark_lost would leave it saying so for a lost deal.
        self._closed_won_started = False
        # An amendment deal: the amendment as dated at its signature.
        self._amendment: PricedAmendment | None = input.amends.amendment if input.amends else None
        # Decided once, at the signature (PATCH_LOCAL_STEPS_AFTER_SIGNATURE): whether the steps in
        # LOCAL_STEPS run as local activities. Histories recorded before the patch replay remote.
        self._local_steps = False
        # Decided at the signature too (PATCH_ERP_SYNC): whether the billed invoice goes to the ERP.
        self._erp_sync = False
        # PATCH_VISIBLE_RETRIES, decided at the first task (False when replaying older histories).
        self._visible = False
        self._cancel: Cancel | None = None

    @workflow.run
    async def run(self, input: DealInput) -> DealStatus:
        self._visible = workflow.patched(PATCH_VISIBLE_RETRIES)
        starter = f"started by {input.started_by}" if input.started_by else None
        self._enter(self._status.stage, note=starter)
        try:
            await self._run_until_done()
        except _DealLost:
            await self._close_lost()
        except _QuoteExpired:
            await self._close_expired()
        except _DealCancelled:
            await self._close_cancelled()
        return self._status

    async def _run_until_done(self) -> None:
        if not await self._get_quote_approved():
            return
        await self._send_contract()
        if not await self._wait_for_signature() and not await self._close_expired():
            return
        await self._record_signature()
        if self._input.phase == 1:
            self._enter("completed", note="phase 1: handed off to finance after Closed Won")
            return
        # An amendment deal bills the original's customer and subscription. Deals started before
        # amendments existed carry no ``amends``, so their histories take the usual path.
        if self._input.amends is not None:
            await self._bill_amendment(self._input.amends)
        else:
            await self._bill_and_provision()

    # --- stages ----------------------------------------------------------------------------

    async def _get_quote_approved(self) -> bool:
        if self._priced.status != "needs_approval":
            return True
        decided = await self._wait_before_expiry(
            lambda: self._quote_decision is not None or self._lost_requested(),
            summary="quote expires while waiting for deal-desk approval",
        )
        self._raise_if_lost()
        if not decided:
            await self._close_expired()  # no envelope yet: nothing can have been signed
            return False
        assert self._quote_decision is not None
        approved, decision = self._quote_decision
        self._status.quote_decision = decision
        if not approved:
            self._enter("quote_rejected", note=_by("rejected", decision.by, decision.note))
            return False
        self._enter("contract_sent", note=_by("approved", decision.by, decision.note))
        return True

    async def _wait_before_expiry(self, ready: Callable[[], bool], summary: str) -> bool:
        """Wait until ``ready()`` holds; False when the quote's validity ends first."""
        remaining = self._expires_at - workflow.now()
        if remaining > timedelta(0):
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(ready, timeout=remaining, timeout_summary=summary)
        return ready()

    async def _send_contract(self) -> None:
        sent = await self._activity(
            ACT_SEND_CONTRACT,
            SendContractInput(deal_id=self._deal_id, priced=self._priced),
            ContractSent,
        )
        self._status.envelope_id = sent.envelope_id
        self._status.esign = sent.system
        self._raise_if_lost()
        # A fast signer's webhook can overtake the send_contract result; now that the envelope id
        # is known, the signatures held until now can be matched against it.
        held, self._early_signatures = self._early_signatures, []
        for signature in held:
            self._take_signature(signature)
        self._enter("awaiting_signature", note=f"envelope {sent.envelope_id} ({sent.status})")

    async def _wait_for_signature(self) -> bool:
        signed = await self._wait_before_expiry(
            lambda: self._status.signature is not None or self._lost_requested(),
            summary="quote expires while waiting for the signature",
        )
        self._raise_if_lost()
        return signed

    async def _record_signature(self) -> None:
        signature = self._status.signature
        assert signature is not None
        # Asked before any local activity of this workflow task: on replay, core matches a patch
        # marker that follows a local activity's marker before the workflow has seen that
        # activity's result, and fails the task as nondeterministic.
        self._local_steps = workflow.patched(PATCH_LOCAL_STEPS_AFTER_SIGNATURE)
        self._erp_sync = self._input.erp is not None and workflow.patched(PATCH_ERP_SYNC)
        signed_at = as_utc(signature.completed_at)
        amends = self._input.amends
        if amends is not None:
            dated = await self._step(
                ACT_DATE_AMENDMENT_AT_SIGNATURE,
                lambda: workflow.execute_local_activity(
                    date_amendment_at_signature,
                    DateAmendmentInput(
                        original=amends.original,
                        amendment=amends.amendment,
                        signed_at=signed_at,
                    ),
                    start_to_close_timeout=timedelta(seconds=10),
                    retry_policy=LOCAL_RETRY_POLICY,
                ),
            )
            self._amendment = dated.amendment
            self._status.priced_amendment = dated.amendment
            self._priced = dated.priced
        else:
            self._priced = await self._step(
                ACT_DATE_QUOTE_AT_SIGNATURE,
                lambda: workflow.execute_local_activity(
                    date_quote_at_signature,
                    DateQuoteInput(priced=self._priced, signed_at=signed_at),
                    start_to_close_timeout=timedelta(seconds=10),
                    retry_policy=LOCAL_RETRY_POLICY,
                ),
            )
        self._status.start_date = self._priced.start_date
        self._status.invoice_preview = self._priced.invoices[0] if self._priced.invoices else None
        self._status.priced_quote = self._priced
        self._raise_if_lost()
        self._closed_won_started = True
        await self._activity(
            ACT_MARK_CLOSED_WON,
            MarkClosedWonInput(
                deal_id=self._deal_id,
                opportunity_id=self._priced.opportunity_id,
                close_date=signed_at.date(),
            ),
            None,
        )
        self._raise_if_lost()
        signer = signature.signer_name or signature.signer_email or "the signer"
        self._enter("signed", note=f"signed by {signer}; Closed Won on {signed_at.date()}")

    async def _bill_and_provision(self) -> None:
        self._raise_if_lost()
        # From here on the customer exists in billing: losing the deal is a refund or a
        # cancellation, a finance decision, not something a CRM click may trigger.
        self._billing_started = True
        customer = await self._activity(
            ACT_CREATE_BILLING_CUSTOMER,
            lambda: CreateCustomerInput(
                deal_id=self._deal_id,
                priced=self._priced,
                account_revision=len(self._status.corrections),
            ),
            BillingCustomer,
        )
        self._status.billing_customer_id = customer.customer_id
        self._enter("billing_account_created", note=f"customer {customer.customer_id}")

        if self._input.phase == 2 and not await self._get_invoice_reviewed():
            return
        await self._wait_for_start_date()

        subscription_id: str | None = None
        # A services order (one-time lines only) has no subscription: its one invoice is made
        # and sent by the invoice step. Quotes without a recurring line were refused before
        # services orders existed, so no recorded history takes this branch differently.
        if not _is_services_order(self._priced):
            subscription = await self._activity(
                ACT_CREATE_SUBSCRIPTION,
                CreateSubscriptionInput(
                    deal_id=self._deal_id, customer_id=customer.customer_id, priced=self._priced
                ),
                SubscriptionCreated,
            )
            subscription_id = subscription.subscription_id
            self._status.billing_subscription_id = subscription.subscription_id
            self._status.billing_schedule_id = subscription.schedule_id
            self._status.billing_invoice_id = subscription.invoice_id
            self._enter("subscription_created", note=f"subscription {subscription.subscription_id}")

        invoice = await self._activity(
            ACT_SEND_FIRST_INVOICE,
            SendInvoiceInput(
                deal_id=self._deal_id,
                customer_id=customer.customer_id,
                subscription_id=subscription_id,
                priced=self._priced,
            ),
            InvoiceSent,
        )
        self._record_invoice(invoice)
        if self._erp_sync:
            await self._sync_erp(customer.customer_id, invoice)

        provisioned = await self._activity(
            ACT_PROVISION_PRODUCT,
            ProvisionInput(
                deal_id=self._deal_id, tenant_id=customer.customer_id, priced=self._priced
            ),
            Provisioned,
        )
        self._status.provisioned_features = provisioned.features
        self._enter("provisioned", note=f"tenant {provisioned.tenant_id}")

        await self._activity(
            ACT_WRITE_BACK_BILLING_IDS,
            WriteBackInput(
                deal_id=self._deal_id,
                opportunity_id=self._priced.opportunity_id,
                billing_customer_id=customer.customer_id,
                billing_subscription_id=subscription_id,
                billing_invoice_id=invoice.invoice_id,
                billing_invoice_url=invoice.invoice_url,
            ),
            None,
        )
        self._enter("completed", note=f"phase {self._input.phase}: billing ids written to CRM")

    async def _bill_amendment(self, amends: AmendmentTerms) -> None:
        """Bill a signed amendment on the original's records: the same customer, its subscription
        changed from the end of the current period, the amendment invoice sent now, the product
        told the limits after the amendment for the same tenant, the CRM given the ids."""
        self._raise_if_lost()
        self._billing_started = True
        customer_id = amends.billing_customer_id
        self._status.billing_customer_id = customer_id
        self._enter(
            "billing_account_created",
            note=f"customer {customer_id} of {amends.original_deal_id}",
        )
        if self._input.phase == 2 and not await self._get_invoice_reviewed():
            return
        assert self._amendment is not None
        amended = await self._activity(
            ACT_AMEND_SUBSCRIPTION,
            AmendSubscriptionInput(
                deal_id=self._deal_id,
                original_deal_id=amends.original_deal_id,
                customer_id=customer_id,
                subscription_id=amends.billing_subscription_id,
                schedule_id=amends.billing_schedule_id,
                original=amends.original,
                amendment=self._amendment,
            ),
            SubscriptionAmended,
        )
        self._status.billing_subscription_id = amended.subscription_id
        self._status.billing_schedule_id = amended.schedule_id
        self._enter(
            "subscription_created",
            note=(
                f"subscription {amended.subscription_id} changed from {amended.changed_from}"
                if amended.changed_from
                else "no recurring line added: subscription unchanged"
            ),
        )
        invoice = await self._activity(
            ACT_SEND_AMENDMENT_INVOICE,
            SendAmendmentInvoiceInput(
                deal_id=self._deal_id,
                original_deal_id=amends.original_deal_id,
                customer_id=customer_id,
                priced=self._priced,
            ),
            InvoiceSent,
        )
        self._record_invoice(invoice)
        if self._erp_sync:
            await self._sync_erp(customer_id, invoice)
        provisioned = await self._activity(
            ACT_PROVISION_PRODUCT,
            ProvisionInput(deal_id=self._deal_id, tenant_id=customer_id, priced=self._priced),
            Provisioned,
        )
        self._status.provisioned_features = provisioned.features
        self._enter("provisioned", note=f"tenant {provisioned.tenant_id}")
        await self._activity(
            ACT_WRITE_BACK_BILLING_IDS,
            WriteBackInput(
                deal_id=self._deal_id,
                opportunity_id=self._priced.opportunity_id,
                billing_customer_id=customer_id,
                billing_subscription_id=amended.subscription_id,
                billing_invoice_id=invoice.invoice_id,
                billing_invoice_url=invoice.invoice_url,
            ),
            None,
        )
        self._enter(
            "completed",
            note=f"amendment of {amends.original_deal_id} billed; billing ids written to CRM",
        )

    async def _sync_erp(self, customer_id: str, invoice: InvoiceSent) -> None:
        # A regular activity, never local: an ERP such as NetSuite answers in seconds per request
        # and throttles by concurrency, so its retries belong on the server's schedule and its
        # attempts in the Web UI, and it must not hold the workflow task. The input is built per
        # attempt, so a step resumed after an operator corrected the account sends the corrected
        # customer.
        synced = await self._activity(
            ACT_SYNC_ERP_INVOICE,
            lambda: SyncErpInvoiceInput(
                deal_id=self._deal_id,
                billing_customer_id=customer_id,
                billing_invoice_id=invoice.invoice_id,
                billing_invoice_number=invoice.number,
                billed_total_minor=invoice.total_minor,
                billed_tax_minor=invoice.tax_minor or 0,
                priced=self._priced,
                # The invoice just sent (an amendment's first invoice is the amendment invoice);
                # the invoice step reconciled it with this one to the cent.
                invoice=self._priced.invoices[0],
            ),
            ErpInvoiceSynced,
        )
        self._status.erp = synced.system or self._input.erp
        self._status.erp_customer_id = synced.customer_id
        self._status.erp_invoice_id = synced.invoice_id
        self._enter(
            "erp_synced",
            note=f"{self._status.erp} invoice {synced.invoice_number or synced.invoice_id}",
        )

    def _record_invoice(self, invoice: InvoiceSent) -> None:
        self._status.invoice_sent_at = workflow.now()
        if self._visible and self._status.signature is not None:
            waited = workflow.now() - as_utc(self._status.signature.completed_at)
            workflow.metric_meter().create_histogram_float(
                "qtc_signature_to_invoice_seconds",
                "From the signature to the first invoice sent",
                "s",
            ).record(max(waited.total_seconds(), 0.0))
        self._status.billing_invoice_id = invoice.invoice_id
        self._status.invoice_number = invoice.number
        self._status.billing_invoice_url = invoice.invoice_url
        self._status.invoice_total_minor = invoice.total_minor
        self._status.invoice_tax_minor = invoice.tax_minor
        self._status.invoice_total_excluding_tax_minor = invoice.total_excluding_tax_minor
        tax = f", tax {invoice.tax_minor}" if invoice.tax_minor else ""
        self._enter(
            "invoice_sent",
            note=f"invoice {invoice.number or invoice.invoice_id}: total "
            f"{invoice.total_minor} {self._priced.currency}{tax}",
        )

    async def _get_invoice_reviewed(self) -> bool:
        preview = self._status.invoice_preview
        customer_id = self._status.billing_customer_id
        # Deals started with tax on (none before tax existed) show the reviewer the tax too.
        if self._input.tax and preview is not None and customer_id is not None:
            taxed = await self._activity(
                ACT_PREVIEW_INVOICE_TAX,
                PreviewTaxInput(
                    deal_id=self._deal_id, customer_id=customer_id, priced=self._priced
                ),
                TaxPreview,
            )
            self._status.invoice_preview_tax_minor = taxed.tax_minor
            self._status.invoice_preview_total_minor = taxed.total_minor
        self._enter(
            "awaiting_invoice_review",
            note=(
                f"first invoice {preview.total_minor} {self._priced.currency} on {preview.date}"
                if preview
                else None
            ),
        )
        hours = self._input.review_reminder_hours
        # The reminder repeats every ``hours`` until someone decides; it only nudges, never decides.
        reminder = timedelta(hours=hours) if hours else None
        while True:
            try:
                await workflow.wait_condition(
                    lambda: self._review is not None,
                    timeout=reminder,
                    timeout_summary="invoice review reminder",
                )
                break
            except TimeoutError:
                message = f"first invoice still waiting for review after {hours} h"
                workflow.logger.info("%s: %s", self._deal_id, message)
                self._note("review_reminder", message)
        assert self._review is not None
        approved, review = self._review
        self._status.invoice_review = review
        if not approved:
            self._enter("review_rejected", note=_by("rejected", review.reviewer, review.note))
            return False
        self._note("invoice_approved", _by("approved", review.reviewer, review.note))
        if workflow.patched(PATCH_LEAVE_REVIEW_ON_APPROVAL):
            # Approved: off the reviewers' queue at once, so a later reject is refused as such.
            self._enter(
                "billing_account_created", note=_by("invoice approved", review.reviewer, None)
            )
        return True

    async def _wait_for_start_date(self) -> None:
        starts_at = datetime.combine(self._priced.start_date, time.min, tzinfo=UTC)
        now = workflow.now()
        if starts_at <= now:
            return
        waiting = f"subscription starts on {self._priced.start_date}"
        if self._status.stage == "awaiting_invoice_review":
            # Histories from before PATCH_LEAVE_REVIEW_ON_APPROVAL left the queue only here.
            self._enter("billing_account_created", note=f"invoice approved; {waiting}")
        self._note("waiting_for_start_date", waiting)
        await workflow.sleep(starts_at - now, summary="contract start date")

    async def _close_expired(self) -> bool:
        """Expire the deal and void its envelope, unless the envelope turns out to have been
        signed before the quote expired (the Connect event may arrive late, or after a 503):
        then the signature stands and the deal goes on. Returns True when it goes on."""
        self._closing = True
        self._expiring = True
        reason = f"quote {self._priced.quote_id} expired at end of {self._priced.valid_until}"
        if self._status.envelope_id is not None:
            voided = await self._void_envelope(self._status.envelope_id, reason)
            if self._status.signature is None and voided is not None:
                self._take_signature_found_by_void(voided)
            if self._status.signature is not None:
                self._closing = self._expiring = False
                self._note("signed_before_expiry", "signed before the quote expired")
                return True
        self._enter("expired", note=reason)
        return False

    def _take_signature_found_by_void(self, voided: ContractVoided) -> None:
        if voided.status != "completed" or voided.completed_at is None:
            return
        if as_utc(voided.completed_at) >= self._expires_at:
            return
        self._status.signature = SignatureCompleted(
            envelope_id=voided.envelope_id,
            completed_at=voided.completed_at,
            signer_name=voided.signer_name,
            signer_email=voided.signer_email,
        )

    async def _close_cancelled(self) -> None:
        self._closing = True
        assert self._cancel is not None
        status = self._status
        envelope_id = status.envelope_id
        if envelope_id is not None and status.signature is None:
            await self._void_envelope(envelope_id, _by("cancelled", self._cancel.by, None))
        existing = [
            f"{what} {value}"
            for what, value in (
                ("signed contract", envelope_id if status.signature else None),
                ("billing customer", status.billing_customer_id),
                ("subscription", status.billing_subscription_id),
                ("invoice", status.billing_invoice_id),
                (
                    "provisioned tenant",
                    status.billing_customer_id if status.provisioned_features else None,
                ),
            )
            if value
        ]
        left = f"; left as they are: {', '.join(existing)}" if existing else "; nothing was created"
        self._enter("cancelled", note=_by("cancelled", self._cancel.by, self._cancel.reason) + left)

    async def _close_lost(self) -> None:
        self._closing = True
        assert self._lost is not None
        reason = _by("marked lost", self._lost.by, self._lost.reason)
        envelope_id = self._status.envelope_id
        if envelope_id is not None and self._status.signature is None:
            await self._void_envelope(envelope_id, reason)
        elif envelope_id is not None:
            self._note("envelope_kept", f"envelope {envelope_id} is already signed; not voided")
        self._enter("lost", note=reason)

    async def _void_envelope(self, envelope_id: str, reason: str) -> ContractVoided | None:
        # Optional: histories recorded before void_contract reported what it found carry null.
        found: ContractVoided | None = await self._activity(
            ACT_VOID_CONTRACT,
            VoidContractInput(deal_id=self._deal_id, envelope_id=envelope_id, reason=reason),
            cast(type[ContractVoided], ContractVoided | None),
        )
        return found

    # --- steps, parking and resume ---------------------------------------------------------

    async def _activity(
        self, name: str, arg: Model | Callable[[], Model], result_type: type[T] | None
    ) -> T:
        """Run a step. ``arg`` may be a function that builds the input, so a step resumed after
        an operator's correction runs with the corrected deal data."""
        if self._visible:
            return await self._step(
                name, lambda: self._attempts(name, arg() if callable(arg) else arg, result_type)
            )
        arg = arg() if callable(arg) else arg
        if self._local_steps and name in LOCAL_STEPS:
            return await self._step(
                name,
                lambda: workflow.execute_local_activity(
                    name,
                    arg,
                    result_type=result_type,
                    start_to_close_timeout=_START_TO_CLOSE[name],
                    retry_policy=ACTIVITY_RETRY_POLICY,
                    local_retry_threshold=LOCAL_RETRY_THRESHOLD,
                ),
            )
        return await self._step(name, lambda: self._remote(name, arg, result_type))

    def _remote(
        self,
        name: str,
        arg: Model,
        result_type: type[T] | None,
        retry_policy: RetryPolicy = ACTIVITY_RETRY_POLICY,
    ) -> Awaitable[T]:
        return workflow.execute_activity(
            name,
            arg,
            result_type=result_type,
            start_to_close_timeout=_START_TO_CLOSE[name],
            heartbeat_timeout=ACTIVITY_HEARTBEAT_TIMEOUT,
            retry_policy=retry_policy,
            summary=STEP_SUMMARIES.get(name) if self._visible else None,
        )

    async def _attempts(self, name: str, arg: Model, result_type: type[T] | None) -> T:
        """A step under PATCH_VISIBLE_RETRIES: two quick attempts (local where the deal runs its
        steps locally), then, if the failure may pass, the full retry budget as a regular
        activity, with the deal marked as retrying that step meanwhile."""
        try:
            if self._local_steps and name in LOCAL_STEPS and not self._input.remote_steps:
                return await workflow.execute_local_activity(
                    name,
                    arg,
                    result_type=result_type,
                    start_to_close_timeout=_START_TO_CLOSE[name],
                    retry_policy=FIRST_ATTEMPTS_POLICY,
                    summary=STEP_SUMMARIES.get(name),
                )
            return await self._remote(name, arg, result_type, FIRST_ATTEMPTS_POLICY)
        except (ActivityError, ApplicationError, ActivityTimeoutError) as err:
            if not _may_pass(err):
                raise
            error_type, message, details = _describe_failure(err)
            self._status.last_error = blocked(
                self._deal_id, name, error_type, message, details, workflow.now(), retrying=True
            )
            self._count_failure(self._status.last_error)
            self._show()
        result = await self._remote(name, arg, result_type)
        if self._status.last_error is not None and self._status.last_error.retrying:
            self._status.last_error = self._status.last_error.model_copy(
                update={"retrying": False, "resume_helps": None, "action": None}
            )
            self._show()
        return result

    async def _step(self, step: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run one step; when it fails for good, park until an operator resumes, then retry it."""
        while True:
            try:
                return await call()
            except (ActivityError, ApplicationError, ActivityTimeoutError) as err:
                # A remote step's failure arrives as ActivityError wrapping the cause; a local
                # step's final failure arrives as the cause itself.
                await self._park(step, err)
                if step == ACT_SEND_CONTRACT and workflow.now() >= self._expires_at:
                    # Resumed after the quote expired: never send a contract nobody may sign.
                    raise _QuoteExpired from err

    async def _park(self, step: str, err: FailureError) -> None:
        error_type, message, details = _describe_failure(err)
        if self._visible:
            self._status.last_error = blocked(
                self._deal_id, step, error_type, message, details, workflow.now(), retrying=False
            )
            self._count_failure(self._status.last_error)
        else:
            self._status.last_error = DealError(
                step=step, type=error_type, message=message, at=workflow.now(), details=details
            )
        workflow.logger.warning(
            "%s: step %s failed (%s): %s; waiting for resume",
            self._deal_id,
            step,
            error_type,
            message,
        )
        stage_before = self._status.stage
        self._resume = None
        self._enter("needs_attention", note=f"{step} failed: {error_type}: {message}")
        await workflow.wait_condition(
            lambda: self._resume is not None or self._lost_requested() or self._cancel is not None
        )
        self._raise_if_lost()
        if self._cancel is not None:
            raise _DealCancelled
        assert self._resume is not None
        self._enter(stage_before, note=_by(f"resumed, retrying {step}", self._resume.by, None))

    def _lost_requested(self) -> bool:
        return self._lost is not None and not self._billing_started and not self._closing

    def _raise_if_lost(self) -> None:
        if self._lost_requested():
            raise _DealLost

    # --- bookkeeping -----------------------------------------------------------------------

    def _enter(self, stage: Stage, note: str | None = None) -> None:
        self._status.stage = stage
        self._status.stage_history.append(StageEntry(stage=stage, at=workflow.now(), note=note))
        if self._visible:
            workflow.metric_meter().create_counter(
                "qtc_deal_stage_entered_total", "Deals that entered a stage"
            ).add(1, {"stage": stage})
            self._show()
            return
        workflow.upsert_search_attributes(
            [
                STAGE_KEY.value_set(stage),
                CUSTOMER_KEY.value_set(self._input.customer_label or self._status.customer),
                ARR_KEY.value_set(self._status.arr_minor / MINOR_PER_MAJOR),
                PHASE_KEY.value_set(self._input.phase),
            ]
        )

    def _count_failure(self, error: DealError) -> None:
        # Metrics from workflow code are emitted once, never again when the history replays.
        workflow.metric_meter().create_counter(
            "qtc_step_failures_total", "Steps that failed their quick attempts, or for good"
        ).add(
            1,
            {
                "system": error.system or "unknown",
                "step": error.step,
                "error": error.type or "error",
                "parked": str(not error.retrying).lower(),
            },
        )

    def _show(self) -> None:
        """What the Web UI shows: the search attributes (with the blocked step and error type
        while a step retries or the deal is parked) and the deal's current details."""
        error = self._status.last_error
        blocked_now = error is not None and (
            error.retrying or self._status.stage == "needs_attention"
        )
        workflow.upsert_search_attributes(
            [
                STAGE_KEY.value_set(self._status.stage),
                CUSTOMER_KEY.value_set(self._input.customer_label or self._status.customer),
                ARR_KEY.value_set(self._status.arr_minor / MINOR_PER_MAJOR),
                CURRENCY_KEY.value_set(self._status.currency.upper()),
                PHASE_KEY.value_set(self._input.phase),
                BLOCKED_STEP_KEY.value_set(error.step)
                if blocked_now and error is not None
                else BLOCKED_STEP_KEY.value_unset(),
                ERROR_TYPE_KEY.value_set(error.type or "error")
                if blocked_now and error is not None
                else ERROR_TYPE_KEY.value_unset(),
            ]
        )
        workflow.set_current_details(current_details(self._status))

    def _note(self, kind: str, message: str) -> None:
        self._status.notes.append(DealNote(at=workflow.now(), kind=kind, message=message))

    def _take_signature(self, signature: SignatureCompleted) -> None:
        envelope_id = self._status.envelope_id
        accepted = self._status.signature
        if accepted is not None:
            kind = (
                "duplicate_signature"
                if signature.envelope_id == accepted.envelope_id
                else "signature_for_other_envelope"
            )
            self._note(kind, f"signature for envelope {signature.envelope_id} ignored")
        elif (
            self._expiring
            and signature.envelope_id == envelope_id
            and as_utc(signature.completed_at) < self._expires_at
        ):
            # Signed in time, delivered late: the expiry in progress will let the deal go on.
            self._status.signature = signature
        elif self._closing:
            self._note("signature_ignored", f"deal is closing; envelope {signature.envelope_id}")
        elif envelope_id is None:
            self._early_signatures.append(signature)
        elif signature.envelope_id != envelope_id:
            self._note(
                "signature_for_other_envelope",
                f"signature for envelope {signature.envelope_id} ignored; deal's is {envelope_id}",
            )
        else:
            self._status.signature = signature

    def _ignore_signal(self, signal: str, by: str) -> None:
        self._note("signal_ignored", f"{signal} from {by} ignored in stage {self._status.stage}")

    # --- signals and query -----------------------------------------------------------------

    @workflow.signal(name=SIGNAL_APPROVE_QUOTE)
    def approve_quote(self, decision: QuoteDecision) -> None:
        self._decide_quote(SIGNAL_APPROVE_QUOTE, True, decision)

    @workflow.signal(name=SIGNAL_REJECT_QUOTE)
    def reject_quote(self, decision: QuoteDecision) -> None:
        self._decide_quote(SIGNAL_REJECT_QUOTE, False, decision)

    def _decide_quote(self, signal: str, approved: bool, decision: QuoteDecision) -> None:
        if self._status.stage != "pending_approval" or self._quote_decision is not None:
            self._ignore_signal(signal, decision.by)
            return
        self._quote_decision = (approved, decision)

    @workflow.signal(name=SIGNAL_SIGNATURE_COMPLETED)
    def signature_completed(self, signature: SignatureCompleted) -> None:
        self._take_signature(signature)

    @workflow.signal(name=SIGNAL_APPROVE_INVOICE)
    def approve_invoice(self, review: InvoiceReview) -> None:
        self._review_invoice(SIGNAL_APPROVE_INVOICE, True, review)

    @workflow.signal(name=SIGNAL_REJECT_INVOICE)
    def reject_invoice(self, review: InvoiceReview) -> None:
        self._review_invoice(SIGNAL_REJECT_INVOICE, False, review)

    def _review_invoice(self, signal: str, approved: bool, review: InvoiceReview) -> None:
        if self._status.stage != "awaiting_invoice_review" or self._review is not None:
            self._ignore_signal(signal, review.reviewer)
            return
        self._review = (approved, review)

    @workflow.signal(name=SIGNAL_MARK_LOST)
    def mark_lost(self, lost: MarkLost) -> None:
        if self._billing_started and self._status.billing_customer_id is not None:
            self._note(
                "lost_refused",
                f"mark_lost from {lost.by} refused: billing customer "
                f"{self._status.billing_customer_id} exists; a refund or cancellation is "
                "finance's decision",
            )
        elif self._billing_started or self._closed_won_started or self._signed_under_local_steps():
            # Truthfully: nothing is billed yet, but the contract is signed and the CRM says won.
            # A deal stuck here is ended with ``cancel``, which says what exists.
            self._note(
                "lost_refused",
                f"mark_lost from {lost.by} refused: the contract is signed and Closed Won is "
                "written; nothing is billed yet (a parked deal can be cancelled instead)",
            )
        elif self._closing or self._lost is not None:
            self._ignore_signal(SIGNAL_MARK_LOST, lost.by)
        else:
            self._lost = lost

    def _signed_under_local_steps(self) -> bool:
        """Signed, on a deal whose steps after the signature run locally (PATCH_LOCAL_STEPS...):
        then the signature alone closes the deal to mark_lost, whatever the order in which a
        replay sees the local steps (histories from before the patch keep the older rule)."""
        return self._status.signature is not None and workflow.patched(
            PATCH_LOCAL_STEPS_AFTER_SIGNATURE
        )

    @workflow.signal(name=SIGNAL_RESUME)
    def resume(self, request: Resume) -> None:
        if self._status.stage != "needs_attention" or self._resume is not None:
            self._ignore_signal(SIGNAL_RESUME, request.by)
            return
        self._resume = request

    @workflow.update(name=UPDATE_CORRECT_ACCOUNT)
    def correct_account(self, correction: AccountCorrection) -> DecisionResult:
        """Replace the signed legal entity's data of a parked deal (who and why are recorded);
        the operator then resumes the step. Prices, lines and terms cannot change here."""
        before = self._priced.account.model_dump()
        after = correction.account.model_dump()
        changed = sorted(f"/account/{key}" for key in after if after.get(key) != before.get(key))
        self._priced = self._priced.model_copy(update={"account": correction.account})
        self._status.customer = correction.account.legal_name
        self._status.corrections.append(
            Correction(
                at=workflow.now(), by=correction.by, reason=correction.reason, fields=changed
            )
        )
        self._note(
            "account_corrected",
            _by(f"account corrected ({', '.join(changed)})", correction.by, correction.reason),
        )
        if self._status.last_error is not None:
            self._status.last_error = self._status.last_error.model_copy(
                update={
                    "resume_helps": True,
                    "action": f"Corrected; retry the step: `qtc deal resume {self._deal_id}`.",
                }
            )
        self._show()
        return DecisionResult(
            stage=self._status.stage, message=f"corrected {', '.join(changed)}; now resume"
        )

    @correct_account.validator
    def _validate_correction(self, correction: AccountCorrection) -> None:
        if self._status.stage != "needs_attention":
            raise ValueError(
                f"the account can only be corrected while the deal is parked in needs_attention; "
                f"it is {self._status.stage}"
            )
        if correction.account == self._priced.account:
            raise ValueError("the correction changes nothing: the account is already so")

    @workflow.update(name=UPDATE_CANCEL)
    async def cancel(self, request: Cancel) -> DecisionResult:
        """End a parked deal for good: an unsigned contract is voided, and the closing note lists
        what already exists in each system (nothing billed is undone: that is finance's call)."""
        self._cancel = request
        await workflow.wait_condition(lambda: self._status.stage == "cancelled")
        return DecisionResult(stage="cancelled", message=self._status.stage_history[-1].note)

    @cancel.validator
    def _validate_cancel(self, request: Cancel) -> None:
        if self._status.stage != "needs_attention" or self._cancel is not None:
            raise ValueError(
                "only a deal parked in needs_attention can be cancelled; it is "
                f"{self._status.stage} (before the signature, mark it lost instead)"
            )

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> DealStatus:
        return self._status


# --- helpers --------------------------------------------------------------------------------


def _is_services_order(priced: PricedQuote) -> bool:
    return not any(line.kind == "recurring" for line in priced.lines)


def _by(what: str, who: str, note: str | None) -> str:
    return f"{what} by {who}: {note}" if note else f"{what} by {who}"


def _describe_failure(err: FailureError) -> tuple[str, str, dict[str, object] | None]:
    """The error type, message and details an operator needs, from the activity's last failure."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError):
        return cause.type or "ApplicationError", cause.message, _details(cause.details)
    if isinstance(cause, ActivityTimeoutError):
        kind = cause.type.name if cause.type is not None else "UNKNOWN"
        return f"Timeout.{kind}", cause.message or "activity timed out", None
    if isinstance(cause, FailureError):
        return type(cause).__name__, cause.message, None
    return type(err).__name__, err.message, None


def _details(values: Sequence[Any]) -> dict[str, object] | None:
    if not values:
        return None
    if len(values) == 1 and isinstance(values[0], dict):
        return {str(key): value for key, value in values[0].items()}
    return {"details": list(values)}


def _may_pass(err: FailureError) -> bool:
    """Whether more retries can help: not a failure the vendor refused on its merits."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError):
        return not cause.non_retryable and (cause.type or "") not in NON_RETRYABLE_ERROR_TYPES
    return isinstance(cause, ActivityTimeoutError)
