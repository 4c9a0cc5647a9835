"""What an operator reads about a deal: which step is blocked, why, and what to do.

The workflow shows this text as its current details (the Temporal Web UI's "User Metadata" on the
deal's page) and keeps the same facts in ``DealStatus.last_error``, so the Web UI, ``qtc deal
status`` and the API say the same thing without anyone expanding a failure's raw JSON. Pure
functions of the deal's state: the workflow calls them, so they must stay deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from qtc import errors
from qtc.deal import DealError, DealStatus
from qtc.money import format_minor
from qtc.ports import (
    ACT_AMEND_SUBSCRIPTION,
    ACT_CREATE_BILLING_CUSTOMER,
    ACT_CREATE_SUBSCRIPTION,
    ACT_MARK_CLOSED_WON,
    ACT_PREVIEW_INVOICE_TAX,
    ACT_PROVISION_PRODUCT,
    ACT_READ_OPPORTUNITY,
    ACT_SEND_AMENDMENT_INVOICE,
    ACT_SEND_CONTRACT,
    ACT_SEND_FIRST_INVOICE,
    ACT_SYNC_ERP_INVOICE,
    ACT_VOID_CONTRACT,
    ACT_WRITE_BACK_BILLING_IDS,
)

# Which port each step belongs to: the "system" an operator looks at.
STEP_SYSTEMS: dict[str, str] = {
    ACT_READ_OPPORTUNITY: "crm",
    ACT_MARK_CLOSED_WON: "crm",
    ACT_WRITE_BACK_BILLING_IDS: "crm",
    ACT_SEND_CONTRACT: "esign",
    ACT_VOID_CONTRACT: "esign",
    ACT_CREATE_BILLING_CUSTOMER: "billing",
    ACT_CREATE_SUBSCRIPTION: "billing",
    ACT_SEND_FIRST_INVOICE: "billing",
    ACT_SYNC_ERP_INVOICE: "erp",
    ACT_AMEND_SUBSCRIPTION: "billing",
    ACT_SEND_AMENDMENT_INVOICE: "billing",
    ACT_PREVIEW_INVOICE_TAX: "billing",
    ACT_PROVISION_PRODUCT: "product_backend",
}
# One line per step, shown as the activity's summary in the Web UI's event history.
STEP_SUMMARIES: dict[str, str] = {
    ACT_READ_OPPORTUNITY: "Read the opportunity from the CRM",
    ACT_MARK_CLOSED_WON: "Mark the opportunity Closed Won in the CRM",
    ACT_WRITE_BACK_BILLING_IDS: "Write the billing ids back to the CRM",
    ACT_SEND_CONTRACT: "Send the contract for signature",
    ACT_VOID_CONTRACT: "Void the unsigned contract",
    ACT_CREATE_BILLING_CUSTOMER: "Create the billing customer from the signed legal entity",
    ACT_CREATE_SUBSCRIPTION: "Create the subscription priced as the quote",
    ACT_SEND_FIRST_INVOICE: "Send the first invoice, reconciled with the quote",
    ACT_SYNC_ERP_INVOICE: "Record the billed invoice in the ERP, with its revenue dates",
    ACT_PROVISION_PRODUCT: "Switch on the signed features in the product",
    ACT_AMEND_SUBSCRIPTION: "Change the original's subscription from the next period",
    ACT_SEND_AMENDMENT_INVOICE: "Send the amendment invoice, reconciled with the amendment",
    ACT_PREVIEW_INVOICE_TAX: "Ask billing for the tax on the invoice under review",
}

_RETRYABLE = frozenset({errors.VENDOR_UNAVAILABLE, errors.VENDOR_RATE_LIMITED})
_CREDENTIALS = frozenset({errors.VENDOR_AUTHENTICATION, errors.VENDOR_PERMISSION})
# Fields of the signed legal entity an operator may correct (``qtc deal correct``).
ACCOUNT_POINTER = "/account"


def blocked(
    deal_id: str,
    step: str,
    error_type: str,
    message: str,
    details: Mapping[str, object] | None,
    at: datetime,
    *,
    retrying: bool,
) -> DealError:
    """The operator's view of a failed step.

    Args:
        deal_id: For the commands in the advice.
        step: The activity name.
        error_type: The failure's type (``qtc.errors`` names, or a timeout kind).
        message: The failure's message.
        details: The failure's details (``vendor``, ``status``, ``code``, ``param``, ``field``).
        at: When it was seen (workflow time).
        retrying: True while Temporal still retries the step; False once the deal is parked.
    """
    facts = dict(details or {})
    vendor = str(facts.get("vendor") or STEP_SYSTEMS.get(step, "the vendor"))
    code = facts.get("code")
    field = facts.get("field")
    resume_helps, action = _advice(
        deal_id, step, error_type, vendor, str(field) if field else None, retrying=retrying
    )
    return DealError(
        step=step,
        type=error_type,
        message=message,
        at=at,
        details=facts or None,
        system=STEP_SYSTEMS.get(step),
        code=str(code) if code is not None else None,
        field=str(field) if field else None,
        retrying=retrying,
        resume_helps=resume_helps,
        action=action,
    )


def _advice(
    deal_id: str, step: str, error_type: str, vendor: str, field: str | None, *, retrying: bool
) -> tuple[bool | None, str]:
    resume = f"`qtc deal resume {deal_id}`"
    cancel = f"`qtc deal cancel {deal_id} --reason ...`"
    if retrying:
        return False, (
            f"Nothing yet: {vendor} is retried automatically (the attempts and the last failure "
            "are under Pending Activities). If it keeps failing, the deal parks in "
            "needs_attention."
        )
    if field is not None and field.startswith(ACCOUNT_POINTER):
        return False, (
            f"The deal's own data is wrong: {vendor} refuses the signed legal entity's {field}. "
            f"Correct it with `qtc deal correct {deal_id} --account ACCOUNT.json --reason ...`, "
            f"then {resume}; or end the deal with {cancel}."
        )
    if error_type in _CREDENTIALS:
        return False, (
            f"{vendor} refused our credentials or permissions: fix the worker's settings for "
            f"{vendor} (and restart it), then {resume}."
        )
    if error_type in _RETRYABLE or error_type.startswith("Timeout."):
        return True, f"{vendor} kept failing for every retry; once it answers again, {resume}."
    if error_type == errors.INVOICE_MISMATCH and STEP_SYSTEMS.get(step) == "erp":
        return False, (
            f"{vendor}'s invoice differs from the billed invoice (the message names each field; "
            "a tax code or an item's price is the usual cause): fix it in "
            f"{vendor}, then {resume}; or {cancel}."
        )
    if error_type == errors.INVOICE_MISMATCH:
        return False, (
            "The billed invoice differs from the priced quote (both are in the status): fix it "
            f"in {vendor}, then {resume}; or {cancel}."
        )
    return None, f"Fix the cause in {vendor} (the message says what it refused), then {resume}."


def current_details(status: DealStatus) -> str:
    """The deal's current details as Markdown, for the Web UI's deal page."""
    lines = [f"**Stage:** `{status.stage}`", f"**Customer:** {status.customer}"]
    if status.arr_minor:
        lines.append(f"**ARR:** {format_minor(status.arr_minor, status.currency)}")
    error = status.last_error
    if error is not None and (error.retrying or status.stage == "needs_attention"):
        state = "retrying" if error.retrying else "blocked"
        system = f" ({error.system})" if error.system else ""
        lines.append(f"**{state.capitalize()} step:** `{error.step}`{system}")
        kind = error.type or "error"
        if error.code:
            kind += f", code `{error.code}`"
        if error.field:
            kind += f", field `{error.field}`"
        lines.append(f"**Error:** {kind}")
        lines.append(f"**Message:** {error.message}")
        if error.resume_helps is not None:
            lines.append(f"**Will resume help now?** {'yes' if error.resume_helps else 'no'}")
        if error.action:
            lines.append(f"**What to do:** {error.action}")
    return "\n\n".join(lines)
