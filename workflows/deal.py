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

import asyncio
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
        DECISION_REFUSED,
        QUERY_STATUS,
        SIGNAL_APPROVE_INVOICE,
        SIGNAL_APPROVE_QUOTE,
        SIGNAL_MARK_LOST,
        SIGNAL_REJECT_INVOICE,
        SIGNAL_REJECT_QUOTE,
        SIGNAL_RESUME,
        SIGNAL_SIGNATURE_COMPLETED,
        TERMINAL_STAGES,
        UPDATE_APPROVE_INVOICE,
        UPDATE_APPROVE_QUOTE,
        UPDATE_CANCEL,
        UPDATE_CORRECT_ACCOUNT,
        UPDATE_MARK_LOST,
        UPDATE_REJECT_INVOICE,
        UPDATE_REJECT_QUOTE,
        UPDATE_RESUME,
        WAITING_STAGES,
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
    from qtc.money import format_minor
    from qtc.operator import STEP_SUMMARIES, blocked, current_details
    from qtc.ports import (
        ACT_AMEND_SUBSCRIPTION,
        ACT_CREATE_BILLING_CUSTOMER,
        ACT_CREATE_SUBSCRIPTION,
        ACT_MARK_CLOSED_WON,
        ACT_PREVIEW_INVOICE_TAX,
        ACT_PROVISION_PRODUCT,
        ACT_RECORD_LEDGER_EVENTS,
        ACT_SEND_AMENDMENT_INVOICE,
        ACT_SEND_CONTRACT,
        ACT_SEND_FIRST_INVOICE,
        ACT_SEND_NOTIFICATION,
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
        LedgerEvent,
        LedgerValue,
        MarkClosedWonInput,
        Notification,
        PreviewTaxInput,
        Provisioned,
        ProvisionInput,
        RecordLedgerInput,
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
# Deals started under this patch write the ledger and notify the people they wait for. Asked once,
# first thing in ``run``, so deals recorded before it replay without either.
PATCH_LEDGER_AND_NOTIFICATIONS = "ledger-and-notifications"
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

# The ledger and the notifications must never hold up or fail a deal's money steps: they run
# beside the deal (their own asyncio tasks), and a write or send that still fails after these
# retries is logged and noted on the deal, never parked.
#
# The ledger is written as a local activity, in batches: the events pile up while the deal
# moves and are written when it comes to rest (a wait for a person, a signature or a date) and
# when it ends, so a phase-3 deal costs two small writes and no activity task on the server.
# Each event carries the deal's own sequence number, so a batch written twice is recorded once.
LEDGER_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=8,
)
LEDGER_TIMEOUT = timedelta(seconds=30)
NOTIFY_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=6,
    non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
)
NOTIFY_TIMEOUT = timedelta(seconds=30)
_AUDIENCE: dict[str, str] = {stage: role for role, stage in WAITING_STAGES.items()}
# Stages where the deal waits (for a person, a signature, the end): the ledger is written then.
_AT_REST: frozenset[str] = frozenset(
    {"pending_approval", "awaiting_signature", "awaiting_invoice_review", "needs_attention"}
    | TERMINAL_STAGES
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
            quote_lines=priced.lines,
            quote_first_invoice=priced.invoices[0] if priced.invoices else None,
            approvals_needed=priced.approvals_needed,
            payment_terms_days=priced.payment_terms_days,
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
        # PATCH_LEDGER_AND_NOTIFICATIONS, decided at the top of ``run``.
        self._journal = False
        self._ledger_seq = 0
        self._ledger_pending: list[LedgerEvent] = []
        self._ledger_writer: asyncio.Task[None] | None = None
        self._announcers: list[asyncio.Task[None]] = []
        self._sleeping = False
        self._finished = False
        # Decided at the signature too (PATCH_ERP_SYNC): whether the billed invoice goes to the ERP.
        self._erp_sync = False
        # PATCH_VISIBLE_RETRIES, decided at the first task (False when replaying older histories).
        self._visible = False
        self._cancel: Cancel | None = None

    @workflow.run
    async def run(self, input: DealInput) -> DealStatus:
        self._visible = workflow.patched(PATCH_VISIBLE_RETRIES)
        # Before the first stage is entered, so the patch marker precedes every command of the
        # ledger and the notifications.
        self._journal = workflow.patched(PATCH_LEDGER_AND_NOTIFICATIONS)
        if self._journal:
            self._ledger_writer = asyncio.create_task(self._write_ledger())
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
        await self._wind_down()
        return self._status

    async def _wind_down(self) -> None:
        """Finish what runs beside the deal: the last ledger write and the decisions being
        answered; a notification still retrying is given up (the deal no longer waits)."""
        self._finished = True
        for announcer in self._announcers:
            announcer.cancel()
        if self._ledger_writer is not None:
            await self._ledger_writer
        await workflow.wait_condition(workflow.all_handlers_finished)

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
        self._record_decision(
            "approve_quote" if approved else "reject_quote", decision.by, decision.note
        )
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
        self._status.invoice_schedule = list(self._priced.invoices)
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
        self._status.billing = customer.system
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
        self._journal_event(
            "invoice",
            "invoice_sent",
            billing_invoice_id=invoice.invoice_id,
            invoice_number=invoice.number,
            invoice_url=invoice.invoice_url,
            total_minor=invoice.total_minor,
            tax_minor=invoice.tax_minor,
            total_excluding_tax_minor=invoice.total_excluding_tax_minor,
            quoted_total_minor=self._priced.first_invoice_total_minor,
            currency=self._priced.currency,
            status=invoice.status,
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
                f"first invoice {format_minor(preview.total_minor, self._priced.currency)} on "
                f"{preview.date}"
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
        self._record_decision(
            "approve_invoice" if approved else "reject_invoice", review.reviewer, review.note
        )
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
        self._sleeping = True
        await workflow.sleep(starts_at - now, summary="contract start date")
        self._sleeping = False

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
        self._record_decision("mark_lost", self._lost.by, self._lost.reason)
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
            self._record_decision("cancel", self._cancel.by, self._cancel.reason, step=step)
            raise _DealCancelled
        assert self._resume is not None
        self._record_decision("resume", self._resume.by, self._resume.note, step=step)
        resumed = _by(f"resumed, retrying {step}", self._resume.by, self._resume.note)
        self._enter(stage_before, note=resumed)

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
        else:
            workflow.upsert_search_attributes(
                [
                    STAGE_KEY.value_set(stage),
                    CUSTOMER_KEY.value_set(self._input.customer_label or self._status.customer),
                    ARR_KEY.value_set(self._status.arr_minor / MINOR_PER_MAJOR),
                    PHASE_KEY.value_set(self._input.phase),
                ]
            )
        if not self._journal:
            return
        self._journal_event("stage", stage, None, note=note, **self._external_ids())
        if stage in _AUDIENCE and self._input.notify:
            entry = len(self._status.stage_history)
            self._announcers.append(asyncio.create_task(self._announce(stage, entry)))

    # --- the ledger and the notifications (PATCH_LEDGER_AND_NOTIFICATIONS) ------------------

    def _external_ids(self) -> dict[str, LedgerValue]:
        status = self._status
        ids: dict[str, LedgerValue] = {
            "envelope_id": status.envelope_id,
            "billing_customer_id": status.billing_customer_id,
            "billing_subscription_id": status.billing_subscription_id,
            "billing_invoice_id": status.billing_invoice_id,
            "erp_customer_id": status.erp_customer_id,
            "erp_invoice_id": status.erp_invoice_id,
        }
        return {key: value for key, value in ids.items() if value is not None}

    def _journal_event(
        self, kind: str, stage: str | None, actor: str | None = None, /, **detail: LedgerValue
    ) -> None:
        if not self._journal:
            return
        self._ledger_seq += 1
        self._ledger_pending.append(
            LedgerEvent(
                seq=self._ledger_seq,
                at=workflow.now(),
                kind=kind,
                stage=stage,
                actor=actor,
                detail={key: value for key, value in detail.items() if value is not None},
            )
        )

    def _record_decision(self, decision: str, actor: str, note: str | None, **detail: str) -> None:
        self._journal_event(
            "decision", self._status.stage, actor, decision=decision, note=note, **detail
        )

    def _ledger_due(self) -> bool:
        at_rest = self._status.stage in _AT_REST or self._sleeping or self._finished
        return bool(self._ledger_pending) and at_rest

    async def _write_ledger(self) -> None:
        while True:
            await workflow.wait_condition(lambda: self._ledger_due() or self._finished)
            if not self._ledger_pending:
                return
            batch, self._ledger_pending = self._ledger_pending, []
            try:
                await workflow.execute_local_activity(
                    ACT_RECORD_LEDGER_EVENTS,
                    RecordLedgerInput(
                        deal_id=self._deal_id,
                        opportunity_id=self._priced.opportunity_id,
                        events=batch,
                    ),
                    start_to_close_timeout=LEDGER_TIMEOUT,
                    retry_policy=LEDGER_RETRY_POLICY,
                    local_retry_threshold=LOCAL_RETRY_THRESHOLD,
                )
            except (ActivityError, ApplicationError, ActivityTimeoutError) as err:
                _, message, _ = _describe_failure(err)
                workflow.logger.warning("%s: ledger write failed: %s", self._deal_id, message)
                self._note(
                    "ledger_write_failed", f"events {batch[0].seq}-{batch[-1].seq}: {message}"
                )
                if self._finished:
                    return
                # Kept for the next write: the ledger misses nothing a later attempt can record.
                self._ledger_pending = batch + self._ledger_pending

    async def _announce(self, stage: Stage, entry: int) -> None:
        """Tell the deciding role that the deal waits for it; remind and escalate on durable
        timers until the deal leaves the stage entry ``entry`` (1-based) of its history."""
        entered_at = workflow.now()
        remind = self._input.notify_remind_hours
        escalate = self._input.notify_escalate_hours
        reminders = 0
        escalated = False

        def left() -> bool:
            return len(self._status.stage_history) != entry or self._finished

        await self._notify(stage, entry, "entered", entered_at, escalate=False)
        while not left():
            due: list[tuple[datetime, str]] = []
            if remind:
                due.append((entered_at + timedelta(hours=remind * (reminders + 1)), "reminder"))
            if escalate and not escalated:
                due.append((entered_at + timedelta(hours=escalate), "escalation"))
            if not due:
                return
            at, kind = min(due)
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    left,
                    timeout=max(at - workflow.now(), timedelta(seconds=1)),
                    timeout_summary=f"{stage}: {kind}",
                )
            if left():
                return
            if kind == "reminder":
                reminders += 1
                await self._notify(stage, entry, f"reminder-{reminders}", entered_at, False)
            else:
                escalated = True
                await self._notify(stage, entry, "escalation", entered_at, escalate=True)

    async def _notify(
        self, stage: Stage, entry: int, kind: str, entered_at: datetime, escalate: bool
    ) -> None:
        key = f"qtc:{self._deal_id}:{stage}:{entry}:{kind}"
        waited = (workflow.now() - entered_at).total_seconds() / 3600
        note = self._status.stage_history[entry - 1].note if entry else None
        try:
            await workflow.execute_activity(
                ACT_SEND_NOTIFICATION,
                Notification(
                    key=key,
                    deal_id=self._deal_id,
                    stage=stage,
                    audience=_AUDIENCE[stage],
                    kind=kind.split("-")[0],
                    escalate=escalate,
                    customer=self._status.customer,
                    summary=note or stage,
                    waiting_hours=round(waited, 2),
                ),
                start_to_close_timeout=NOTIFY_TIMEOUT,
                retry_policy=NOTIFY_RETRY_POLICY,
            )
        except (ActivityError, ApplicationError, ActivityTimeoutError) as err:
            _, message, _ = _describe_failure(err)
            workflow.logger.warning("%s: notification %s failed: %s", self._deal_id, key, message)
            self._note("notification_failed", f"{key}: {message}")
            return
        self._journal_event("notification", stage, audience=_AUDIENCE[stage], key=key)

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

    def _quote_refusal(self) -> str | None:
        if self._status.stage != "pending_approval":
            return "the quote is not waiting for deal-desk approval"
        if self._quote_decision is not None:
            return "the quote has already been decided"
        if self._lost_requested():
            return "the deal is being marked lost"
        return None

    def _decide_quote(self, signal: str, approved: bool, decision: QuoteDecision) -> None:
        if self._quote_refusal() is not None:
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

    def _review_refusal(self) -> str | None:
        if self._status.stage != "awaiting_invoice_review":
            return "the first invoice is not waiting for review"
        if self._review is not None:
            return "the first invoice has already been reviewed"
        return None

    def _review_invoice(self, signal: str, approved: bool, review: InvoiceReview) -> None:
        if self._review_refusal() is not None:
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
        if self._resume_refusal() is not None:
            self._ignore_signal(SIGNAL_RESUME, request.by)
            return
        self._resume = request

    def _resume_refusal(self) -> str | None:
        if self._status.stage != "needs_attention":
            return "the deal is not parked in needs_attention"
        if self._resume is not None:
            return "the deal has already been resumed"
        return None

    # --- decisions as updates --------------------------------------------------------------
    #
    # Each update shares its signal's logic. The validator refuses what the signal would only
    # note as ignored, so a refused decision writes nothing to history and its caller is told
    # why; an accepted one answers with the stage the deal entered because of it.

    def _refuse(self, reason: str | None) -> None:
        if reason is not None:
            raise ApplicationError(
                reason,
                {"current_stage": self._status.stage},
                type=DECISION_REFUSED,
                non_retryable=True,
            )

    async def _led_to(self, entries_before: int) -> DecisionResult:
        await workflow.wait_condition(
            lambda: len(self._status.stage_history) > entries_before or self._finished
        )
        history = self._status.stage_history
        entered = history[entries_before] if len(history) > entries_before else history[-1]
        return DecisionResult(stage=entered.stage)

    @workflow.update(name=UPDATE_APPROVE_QUOTE)
    async def approve_quote_update(self, decision: QuoteDecision) -> DecisionResult:
        before = len(self._status.stage_history)
        self._quote_decision = (True, decision)
        return await self._led_to(before)

    @approve_quote_update.validator
    def _validate_approve_quote(self, decision: QuoteDecision) -> None:
        self._refuse(self._quote_refusal())

    @workflow.update(name=UPDATE_REJECT_QUOTE)
    async def reject_quote_update(self, decision: QuoteDecision) -> DecisionResult:
        before = len(self._status.stage_history)
        self._quote_decision = (False, decision)
        return await self._led_to(before)

    @reject_quote_update.validator
    def _validate_reject_quote(self, decision: QuoteDecision) -> None:
        self._refuse(self._quote_refusal())

    @workflow.update(name=UPDATE_APPROVE_INVOICE)
    async def approve_invoice_update(self, review: InvoiceReview) -> DecisionResult:
        before = len(self._status.stage_history)
        self._review = (True, review)
        return await self._led_to(before)

    @approve_invoice_update.validator
    def _validate_approve_invoice(self, review: InvoiceReview) -> None:
        self._refuse(self._review_refusal())

    @workflow.update(name=UPDATE_REJECT_INVOICE)
    async def reject_invoice_update(self, review: InvoiceReview) -> DecisionResult:
        before = len(self._status.stage_history)
        self._review = (False, review)
        return await self._led_to(before)

    @reject_invoice_update.validator
    def _validate_reject_invoice(self, review: InvoiceReview) -> None:
        self._refuse(self._review_refusal())

    @workflow.update(name=UPDATE_RESUME)
    async def resume_update(self, request: Resume) -> DecisionResult:
        before = len(self._status.stage_history)
        self._resume = request
        return await self._led_to(before)

    @resume_update.validator
    def _validate_resume(self, request: Resume) -> None:
        self._refuse(self._resume_refusal())

    @workflow.update(name=UPDATE_MARK_LOST)
    async def mark_lost_update(self, lost: MarkLost) -> DecisionResult:
        before = len(self._status.stage_history)
        self._lost = lost
        return await self._led_to(before)

    @mark_lost_update.validator
    def _validate_mark_lost(self, lost: MarkLost) -> None:
        # Stricter than the signal's rule for earlier histories: once the signature is recorded
        # the CRM is (about to be) told the deal is won, so a loss is refused outright.
        if self._billing_started:
            self._refuse("billing has started; a lost deal is now a cancellation for finance")
        if self._closed_won_started or self._status.signature is not None:
            self._refuse("the contract is signed")
        if self._status.stage in TERMINAL_STAGES or self._finished:
            self._refuse("the deal has ended")
        if self._closing or self._lost is not None:
            self._refuse("the deal is already closing")

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
        self._record_decision(
            "correct_account", correction.by, correction.reason, fields=", ".join(changed)
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
