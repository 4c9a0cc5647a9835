"""``POST /v1/quotes/price``: CPQ as a service, for sales tools and the CRM."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from qtc import amendments, cpq
from runtime.settings import ApiPrincipal
from starters.api.auth import authenticated
from starters.api.pricing import price_amendment_or_reject, price_or_reject
from starters.api.problems import Problem, is_json, problem_schema
from starters.api.state import State

router = APIRouter(tags=["quotes"])


@router.post(
    "/v1/quotes/price",
    summary="Check a quote against every CPQ rule and price it",
    responses={401: problem_schema(), 415: problem_schema(), 422: problem_schema()},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "description": "A quote (docs/architecture.md), or, to price an "
                        'amendment, {"quote": AMENDMENT, "original": PRICED_ORIGINAL}',
                    }
                }
            },
        }
    },
)
async def price_quote(
    request: Request,
    state: State,
    _: Annotated[ApiPrincipal, Depends(authenticated)],
    signed_at: Annotated[
        datetime | None,
        Query(description="Price as if signed at this moment (ISO 8601); defaults to now"),
    ] = None,
) -> dict[str, Any]:
    """The priced quote (amounts in integer minor units), or 422 with every violation.

    An amendment is priced against the original's priced quote as signed, sent beside it:
    ``{"quote": AMENDMENT, "original": PRICED_ORIGINAL}``.
    """
    if not is_json(request.headers.get("content-type")):
        raise Problem(415, "unsupported-media-type", "The quote must be sent as application/json.")
    body = await request.body()
    when = signed_at or datetime.now(UTC)
    pair = _amendment_pair(body)
    if pair is not None:
        priced_amendment = price_amendment_or_reject(pair[0], pair[1], state.catalog, when)
        return amendments.amendment_to_json(priced_amendment)
    # The raw body goes to CPQ so that malformed JSON and duplicate keys are reported in the same
    # violation list as business rules.
    priced = price_or_reject(body, state.catalog, when)
    return cpq.priced_to_json(priced)


def _amendment_pair(body: bytes) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(amendment, original)`` when the body is an amendment sent with its original."""
    try:
        data = json.loads(body, parse_float=Decimal)
    except ValueError:
        return None
    if (
        isinstance(data, dict)
        and set(data) == {"quote", "original"}
        and isinstance(data["quote"], dict)
        and isinstance(data["original"], dict)
    ):
        return data["quote"], data["original"]
    return None
