"""Start a deal from the CRM: read the opportunity, price it, start it.

The Closed-Won webhooks (Salesforce, HubSpot) and ``qtc deal start-from-crm`` all come here. The
opportunity is read by the configured CRM's ``read_quote`` (``qtc.ports.CrmReader``, the code the
``read_opportunity`` activity runs), priced as of now and started through ``start_deal``, so a
deal started here is the deal the API or ``qtc deal start`` would have started for the same
opportunity (same workflow id, same policies: never two).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Literal

from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from qtc import errors
from qtc.cpq import price_quote
from qtc.deal import Phase
from qtc.models import Catalog, PricedQuote
from qtc.ports import CrmNotes, CrmReader, OpportunityStageReader
from runtime.settings import Settings
from service.deals import DealServiceError, StartResult, start_deal

UnavailableReason = Literal["not_found", "not_quotable", "unavailable", "refused"]


class OpportunityUnavailable(DealServiceError):
    """The opportunity cannot be read, or its CRM data cannot make a quote; nothing was started.

    ``reason`` says which: ``not_found``, ``not_quotable`` (the message names each field),
    ``unavailable`` (the CRM could not be reached: retry later) or ``refused``.
    """

    def __init__(self, reason: UnavailableReason, message: str) -> None:
        self.reason = reason
        super().__init__(message)


async def read_and_price(
    crm: CrmReader, catalog: Catalog, opportunity_id: str, now: datetime | None = None
) -> PricedQuote:
    """Read the opportunity (the blocking CRM client runs in a thread) and price it.

    Raises:
        OpportunityUnavailable: The CRM has no such opportunity, refused, could not be reached,
            or its data cannot make a quote.
        qtc.errors.QuoteRejected: The quote breaks CPQ rules (every violation listed).
    """
    try:
        quote = await asyncio.to_thread(crm.read_quote, opportunity_id)
    except ApplicationError as err:
        raise _unavailable(err) from err
    return price_quote(quote, catalog, now or datetime.now(UTC))


async def is_closed_won(stages: OpportunityStageReader, opportunity_id: str) -> bool:
    """Whether the CRM records the opportunity as won now (for a notification that did not say).

    Raises:
        OpportunityUnavailable: No such opportunity, or the CRM refused or could not be reached.
    """
    try:
        return await asyncio.to_thread(stages.is_closed_won, opportunity_id)
    except ApplicationError as err:
        raise _unavailable(err) from err


def _unavailable(err: ApplicationError) -> OpportunityUnavailable:
    if err.type == errors.VENDOR_NOT_FOUND:
        return OpportunityUnavailable("not_found", err.message)
    if err.type == errors.VENDOR_INVALID_REQUEST:
        return OpportunityUnavailable("not_quotable", err.message)
    if not err.non_retryable:
        return OpportunityUnavailable("unavailable", err.message)
    return OpportunityUnavailable("refused", err.message)


async def note_refusal(crm: CrmReader, opportunity_id: str, reason: str) -> str | None:
    """Tell the CRM's users on the opportunity itself why no deal was started, when the CRM
    takes notes (HubSpot); the note's id, or None.

    Raises:
        OpportunityUnavailable: The CRM refused the note or could not be reached.
    """
    if not isinstance(crm, CrmNotes):
        return None
    try:
        return await asyncio.to_thread(crm.note_refusal, opportunity_id, reason)
    except ApplicationError as err:
        raise _unavailable(err) from err


async def start_from_crm(
    client: Client,
    settings: Settings,
    crm: CrmReader,
    catalog: Catalog,
    opportunity_id: str,
    *,
    phase: Phase,
    started_by: str,
) -> StartResult:
    """Start (or join) the deal of a Closed-Won-ready opportunity.

    Raises:
        OpportunityUnavailable: The opportunity cannot be read or mapped.
        qtc.errors.QuoteRejected: The quote breaks CPQ rules (every violation listed).
        service.deals.DealConflict: The opportunity already has a deal with a different quote.
        service.deals.TemporalUnavailable: Temporal could not be reached.
    """
    priced = await read_and_price(crm, catalog, opportunity_id)
    return await start_deal(client, settings, priced, phase=phase, started_by=started_by)
