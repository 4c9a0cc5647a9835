"""The Closed-Won starter: turn a CRM opportunity into a running deal.

The opportunity, its account and its line items are read with the same SOQL and the same mapping
the ``read_opportunity`` activity uses (``integrations.salesforce.activities``), priced as of now, and started through
``service.deals.start_deal``, so a deal started here is the deal the API or ``qtc deal start``
would have started for the same opportunity (same workflow id, same policies: never two).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError
from temporalio.client import Client

from integrations.salesforce.mapping import FieldMap, OpportunityDataError, quote_from_opportunity
from qtc.cpq import price_quote
from qtc.deal import Phase
from qtc.models import Catalog, Quote
from service.deals import StartResult, start_deal


class OpportunityUnavailable(Exception):
    """The opportunity cannot be read, or its CRM data cannot make a quote; the message says why."""


def read_quote(sf: Salesforce, field_map: FieldMap, opportunity_id: str) -> Quote:
    """Read one opportunity as a ``Quote`` (blocking: call it in a thread from async code).

    Raises:
        OpportunityUnavailable: Not found, Salesforce refused or could not be reached, or the
            record lacks fields a quote needs (each one named).
    """
    try:
        result = sf.query(field_map.opportunity_soql(opportunity_id))
        records = result.get("records") or []
        if not records:
            raise OpportunityUnavailable(f"Salesforce has no opportunity {opportunity_id}")
        record = dict(records[0])
        record[field_map.line_items] = _all_line_items(sf, record.get(field_map.line_items))
    except SalesforceError as exc:
        raise OpportunityUnavailable(
            f"Salesforce refused to read opportunity {opportunity_id}: HTTP {exc.status}"
        ) from exc
    except requests.RequestException as exc:
        raise OpportunityUnavailable(f"cannot reach Salesforce: {exc}") from exc
    try:
        return quote_from_opportunity(record, field_map)
    except OpportunityDataError as exc:
        raise OpportunityUnavailable(str(exc)) from exc


def _all_line_items(sf: Salesforce, page: Any) -> Any:
    """The line-item subquery with every page: Salesforce pages a long one by ``nextRecordsUrl``."""
    if not isinstance(page, Mapping) or page.get("done", True):
        return page
    records = list(page.get("records") or [])
    next_url = page.get("nextRecordsUrl")
    while next_url:
        more = sf.query_more(str(next_url), identifier_is_url=True)
        records.extend(more.get("records") or [])
        next_url = None if more.get("done", True) else more.get("nextRecordsUrl")
    return {"records": records, "done": True, "totalSize": len(records)}


async def start_from_crm(
    client: Client,
    sf: Salesforce,
    field_map: FieldMap,
    catalog: Catalog,
    opportunity_id: str,
    phase: Phase,
    started_by: str,
    task_queue: str,
    *,
    customer_label: str | None = None,
    review_reminder_hours: int | None = None,
) -> StartResult:
    """Start (or join) the deal of a Closed-Won-ready opportunity.

    Args:
        client: A Temporal client with the pydantic data converter.
        sf: A Salesforce client (simple-salesforce is blocking; it runs in a thread here).
        field_map: Where each quote fact lives in the CRM.
        catalog: The catalog the quote is priced against.
        opportunity_id: The Salesforce Opportunity id.
        phase: Rollout phase (1, 2 or 3).
        started_by: Who asked, recorded on the deal.
        task_queue: The deal worker's task queue.
        customer_label: The QtcCustomer search attribute's value instead of the legal name.

    Raises:
        OpportunityUnavailable: The opportunity cannot be read or mapped.
        qtc.errors.QuoteRejected: The quote breaks CPQ rules (every violation listed).
        service.deals.DealConflict: The opportunity already has a deal with a different quote.
        service.deals.TemporalUnavailable: Temporal could not be reached.
    """
    quote = await asyncio.to_thread(read_quote, sf, field_map, opportunity_id)
    priced = price_quote(quote, catalog, datetime.now(UTC))
    return await start_deal(
        client,
        priced,
        phase,
        started_by,
        task_queue,
        customer_label=customer_label,
        review_reminder_hours=review_reminder_hours,
    )
