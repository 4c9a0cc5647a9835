"""A contract was signed: find its deal and record the signature, whatever the webhook carried.

The e-signature webhooks (DocuSign Connect in every format) come here with what their message
says. A real account often says little: DocuSign's default JSON SIM message names only the
envelope, and the legacy XML format gives its dates without a zone unless the configuration
includes one. What the message lacks is read from the e-signature service itself
(``qtc.ports.ContractReader``), by the contract id alone.

Why a read of the contract, and not a record of our own (a search attribute carrying the envelope
id, looked up in Temporal visibility):

- The contract is the authority. The deal id was written on it, as a custom field, in the same
  call that created it, so a completed contract always names its deal; a visibility record is
  written later, by the workflow, after ``send_contract`` returns, and is indexed later still
  (eventually consistent). A signer faster than that record would find no deal, and the
  signature would be answered "not ours" and lost.
- The default message carries no completion time and no signer; the deal's start date and
  invoice schedule are dated to the signature, so the contract must be read for them anyway.
- It works for deals started by every earlier version, without a workflow change, a new
  search attribute to register, or a replay concern.

The cost is one envelope read per message that lacks the facts (none for the message with the
summary, or the XML message with its time zone). A failed read is never answered as "not ours":
the sender gets 503 and delivers again.

Whose contract: one that the service does not hold for our account, or whose fields name no deal,
was not sent by this product (an account-level Connect configuration sends every envelope of the
account). It is acknowledged and ignored, so the sender does not retry it for days, and logged.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Literal

import structlog
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from qtc.deal import SignatureCompleted
from qtc.models import Model
from qtc.ports import ContractReader, ContractRecord
from service.deals import DEFAULT_RPC_TIMEOUT, DealFinished, DealNotFound, DealServiceError
from service.deals import record_signature as signal_signature

log = structlog.get_logger("qtc.service.esign")

COMPLETED = "completed"


class ContractCompleted(Model):
    """What an e-signature webhook says about a completed contract (None where it is silent).

    ``carries_fields`` is true when the message carries the contract's own fields, so that a
    missing deal id there means the contract names no deal.
    """

    contract_id: str
    deal_id: str | None = None
    carries_fields: bool = False
    completed_at: datetime | None = None
    signer_name: str | None = None
    signer_email: str | None = None


class SignatureOutcome(Model):
    status: Literal["accepted", "ignored"]
    contract_id: str
    deal_id: str | None = None
    reason: str | None = None


class ContractUnreadable(DealServiceError):
    """The e-signature service could not be read now; nothing was recorded. Retry later."""


async def record_completed_contract(
    client: Client,
    contracts: ContractReader,
    completed: ContractCompleted,
    *,
    rpc_timeout: timedelta = DEFAULT_RPC_TIMEOUT,
) -> SignatureOutcome:
    """Record the signature on the contract's deal, reading the contract for what is missing.

    Returns:
        ``accepted`` once Temporal has durably recorded the signal; ``ignored`` (with the reason)
        for a contract this product did not send, a deal that does not exist here, or a deal
        that has finished.

    Raises:
        ContractUnreadable: The contract had to be read and could not be.
        service.deals.TemporalUnavailable: Temporal could not be reached.
    """
    known = completed
    if known.deal_id is None and known.carries_fields:
        return _ignored(known, None, "its fields name no deal of this product")
    if known.deal_id is None or known.completed_at is None:
        record = await _read(contracts, known.contract_id)
        if record is None:
            return _ignored(known, None, f"{contracts.name} holds no such contract for us")
        if record.deal_id is None:
            return _ignored(known, None, "its fields name no deal of this product")
        if record.status != COMPLETED or record.completed_at is None:
            # The message says completed and the contract is ours: a read that does not agree
            # yet is retried, never taken as the last word (a completed contract stays so).
            raise ContractUnreadable(
                f"contract {known.contract_id} reads as {record.status or 'unknown'}, "
                "not completed, in " + contracts.name
            )
        known = _completed_from(known, record)
    assert known.deal_id is not None and known.completed_at is not None
    signature = SignatureCompleted(
        envelope_id=known.contract_id,
        completed_at=known.completed_at,
        signer_name=known.signer_name,
        signer_email=known.signer_email,
    )
    try:
        await signal_signature(client, known.deal_id, signature, rpc_timeout=rpc_timeout)
    except DealFinished:
        # Redelivered after the deal closed: nothing left to change, and a retry cannot help.
        return _ignored(known, known.deal_id, "deal finished")
    except DealNotFound:
        # Named by its fields but unknown here: another installation sharing the e-signature
        # account, or a deal deleted after retention. A retry cannot make it appear.
        return _ignored(known, known.deal_id, "no such deal here")
    log.info("signature_signalled", deal_id=known.deal_id, contract_id=known.contract_id)
    return SignatureOutcome(status="accepted", contract_id=known.contract_id, deal_id=known.deal_id)


async def _read(contracts: ContractReader, contract_id: str) -> ContractRecord | None:
    try:
        return await asyncio.to_thread(contracts.read_contract, contract_id)
    except ApplicationError as err:
        log.warning(
            "contract_unreadable",
            contract_id=contract_id,
            error_type=err.type,
            error=err.message,
            retryable=not err.non_retryable,
        )
        raise ContractUnreadable(
            f"{contracts.name} could not be read for contract {contract_id}: {err.message}"
        ) from err


def _completed_from(known: ContractCompleted, record: ContractRecord) -> ContractCompleted:
    """The message's facts, completed from the contract (the contract wins on the deal)."""
    from_message = known.signer_name is not None or known.signer_email is not None
    return known.model_copy(
        update={
            "deal_id": record.deal_id,
            "completed_at": known.completed_at or record.completed_at,
            "signer_name": known.signer_name if from_message else record.signer_name,
            "signer_email": known.signer_email if from_message else record.signer_email,
        }
    )


def _ignored(known: ContractCompleted, deal_id: str | None, reason: str) -> SignatureOutcome:
    log.info("signature_ignored", contract_id=known.contract_id, deal_id=deal_id, reason=reason)
    return SignatureOutcome(
        status="ignored", contract_id=known.contract_id, deal_id=deal_id, reason=reason
    )
