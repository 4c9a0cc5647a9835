"""CPQ at the API edge: a rejected quote becomes a 422 problem listing every violation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from qtc import amendments, cpq
from qtc.errors import QuoteRejected
from qtc.models import Catalog, PricedQuote, Quote
from starters.api.problems import Problem


def price_or_reject(
    quote: Quote | bytes | dict[str, Any], catalog: Catalog, signed_at: datetime
) -> PricedQuote:
    """Price a quote, or raise a 422 problem whose ``errors`` are the CPQ violations."""
    try:
        return cpq.price_quote(quote, catalog, signed_at)
    except QuoteRejected as rejected:
        raise rejected_problem(rejected) from rejected


def price_amendment_or_reject(
    amendment: amendments.AmendmentQuote | dict[str, Any],
    original: PricedQuote | dict[str, Any],
    catalog: Catalog,
    signed_at: datetime,
) -> amendments.PricedAmendment:
    """Price an amendment against its original, or raise a 422 listing every violation (a
    malformed original is reported with pointers under ``/original``)."""
    if not isinstance(original, PricedQuote):
        try:
            original = amendments.original_from_json(original, catalog)
        except QuoteRejected as rejected:
            for violation in rejected.violations:
                violation.pointer = f"/original{violation.pointer}"
            raise rejected_problem(rejected) from rejected
    try:
        return amendments.price_amendment(amendment, original, catalog, signed_at)
    except QuoteRejected as rejected:
        raise rejected_problem(rejected) from rejected


def rejected_problem(rejected: QuoteRejected) -> Problem:
    """The 422 problem for a rejected quote: every violation in ``errors``."""
    count = len(rejected.violations)
    return Problem(
        422,
        "quote-rejected",
        f"The quote breaks {count} CPQ rule{'s' if count != 1 else ''}; see errors.",
        errors=cpq.violations_to_json(rejected.violations)["errors"],
    )
