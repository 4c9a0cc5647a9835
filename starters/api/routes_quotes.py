"""``POST /v1/quotes/price``: CPQ as a service, for sales tools and the CRM."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from qtc import cpq
from runtime.settings import ApiPrincipal
from starters.api.auth import authenticated
from starters.api.pricing import price_or_reject
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
                    "schema": {"type": "object", "description": "A quote (docs/architecture.md)"}
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
    """The priced quote (amounts in integer minor units), or 422 with every violation."""
    if not is_json(request.headers.get("content-type")):
        raise Problem(415, "unsupported-media-type", "The quote must be sent as application/json.")
    # The raw body goes to CPQ so that malformed JSON and duplicate keys are reported in the same
    # violation list as business rules.
    priced = price_or_reject(await request.body(), state.catalog, signed_at or datetime.now(UTC))
    return cpq.priced_to_json(priced)
