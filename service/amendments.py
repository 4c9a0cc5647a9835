"""Start an amendment deal: more seats or products added mid-term to a billed deal.

The amendment is priced against the original as signed (its ``priced_quote`` in the status) and
started as a deal of its own (``deal-{amendment opportunity id}``) that carries what it needs of
the original: its terms and its billing customer and subscription, so it bills the same ones.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client

from qtc.amendments import (
    PricedAmendment,
    amendment_deal_quote,
    parse_amendment,
    price_amendment,
)
from qtc.deal import AmendmentTerms, Phase
from qtc.errors import QuoteRejected
from qtc.models import Catalog, Violation
from runtime.settings import Settings
from service.deals import StartResult, get_status, rpc_timeout, start_deal

# An amendment adds to what was billed: the original must have sent its first invoice.
BILLED_STAGES = frozenset({"invoice_sent", "erp_synced", "provisioned", "completed"})


async def start_amendment(
    client: Client,
    settings: Settings,
    original_deal_id: str,
    raw: bytes | str | dict[str, Any],
    catalog: Catalog,
    *,
    phase: Phase,
    started_by: str,
    now: datetime | None = None,
) -> tuple[StartResult, PricedAmendment]:
    """Price ``raw`` against the original deal and start (or join) its amendment deal.

    Raises:
        QuoteRejected: the amendment breaks a rule, names another deal in ``amends``, or the
            original has not been billed (``original_not_billed``).
        DealNotFound: no deal ``original_deal_id``.
        DealConflict: the amendment's deal exists with another quote.
        TemporalUnavailable: Temporal could not be reached.
    """
    amendment = parse_amendment(raw)
    if amendment.amends != original_deal_id:
        raise QuoteRejected(
            [
                Violation(
                    pointer="/amends",
                    code="invalid_field",
                    message=f"the amendment amends {amendment.amends!r}, "
                    f"not the deal {original_deal_id!r} it was sent to",
                )
            ]
        )
    status = await get_status(client, original_deal_id, rpc_timeout=rpc_timeout(settings))
    reached = {entry.stage for entry in status.stage_history} | {status.stage}
    if (
        status.amends is not None
        or not reached & BILLED_STAGES
        or status.priced_quote is None
        or status.billing_customer_id is None
    ):
        why = (
            f"{original_deal_id} is itself an amendment of {status.amends}; amend that deal"
            if status.amends is not None
            else f"{original_deal_id} is in stage {status.stage} and has not sent its first "
            "invoice; an amendment adds to a billed contract"
        )
        raise QuoteRejected([Violation(pointer="/amends", code="original_not_billed", message=why)])
    original = status.priced_quote
    priced = price_amendment(amendment, original, catalog, now or datetime.now(UTC))
    if status.billing_subscription_id is None and status.billing_schedule_id is None:
        # A services order has no subscription to add recurring lines to.
        refused = [
            Violation(
                pointer=f"/lines/{i}/sku",
                code="invalid_field",
                message=f"{original_deal_id} is a services order without a subscription; "
                f"{line.sku} is recurring and must be sold as a new deal",
            )
            for i, line in enumerate(amendment.lines)
            if any(p.sku == line.sku and p.kind == "recurring" for p in priced.lines)
        ]
        if refused:
            raise QuoteRejected(refused)
    terms = AmendmentTerms(
        original_deal_id=original_deal_id,
        original=original,
        amendment=priced,
        billing_customer_id=status.billing_customer_id,
        billing_subscription_id=status.billing_subscription_id,
        billing_schedule_id=status.billing_schedule_id,
    )
    result = await start_deal(
        client,
        settings,
        amendment_deal_quote(original, priced),
        phase=phase,
        started_by=started_by,
        amends=terms,
    )
    return result, priced
