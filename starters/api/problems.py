"""Problem documents (RFC 9457): every error this API returns is ``application/problem+json``.

A client always gets ``type``, ``title``, ``status`` and ``detail``; validation failures add an
``errors`` list in the same shape the CPQ engine uses (``pointer``, ``code``, ``message``), so a
rejected quote and a malformed request read alike. Nothing here ever echoes a stack trace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.settings import Settings
from service.deals import (
    DealConflict,
    DealFinished,
    DealNotFound,
    DealServiceError,
    DealWorkerUnavailable,
    DecisionRefused,
    TemporalUnavailable,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = structlog.get_logger("qtc.api")


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


class Problem(Exception):
    """Raise anywhere in a request to answer with a problem document.

    Args:
        status: HTTP status code.
        slug: The problem type's last path segment (``/problems/{slug}``).
        detail: One sentence for a human about this occurrence.
        errors: Validation errors (``pointer``, ``code``, ``message``), when there are any.
        headers: Extra response headers (``WWW-Authenticate``, ``Retry-After``).
        extra: Further members of the problem document (``deal_id``).
    """

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self) -> ProblemResponse:
        body: dict[str, Any] = {
            "type": f"/problems/{self.slug}",
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        return ProblemResponse(body, status_code=self.status, headers=self.headers)


def problem_schema() -> dict[str, Any]:
    """OpenAPI description of a problem document, for the ``responses`` of each route."""
    return {
        "content": {
            PROBLEM_MEDIA_TYPE: {
                "schema": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "pointer": {"type": "string"},
                                    "code": {"type": "string"},
                                    "message": {"type": "string"},
                                },
                            },
                        },
                    },
                    "required": ["type", "title", "status", "detail"],
                }
            }
        }
    }


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _pointer(loc: Sequence[int | str]) -> str:
    # FastAPI prefixes body errors with "body"; the pointer is into the document the client sent.
    parts = list(loc[1:]) if loc and loc[0] == "body" else list(loc)
    escaped = (str(p).replace("~", "~0").replace("/", "~1") for p in parts)
    return "/" + "/".join(escaped) if parts else ""


def validation_problem(request: Request, exc: RequestValidationError) -> Problem:
    """Turn FastAPI's validation error into a 400 / 415 / 422 problem."""
    raw = exc.errors()
    if any(e.get("type") == "json_invalid" for e in raw):
        return Problem(400, "malformed-json", "The request body is not valid JSON.")
    has_body = any(e.get("loc", ("",))[0] == "body" for e in raw)
    if has_body and not is_json(request.headers.get("content-type")):
        return Problem(
            415,
            "unsupported-media-type",
            "This endpoint accepts application/json only.",
        )
    errors = [
        {
            "pointer": _pointer(e.get("loc", ())),
            "code": "invalid_field",
            "message": str(e.get("msg", "invalid value")),
        }
        for e in raw
    ]
    return Problem(422, "invalid-request", "The request does not match the schema.", errors=errors)


def install_problem_handlers(app: FastAPI, settings: Settings) -> None:
    """Map every error the routes and the framework raise to a problem document."""
    retry_after = {"Retry-After": str(settings.api_retry_after_s)}

    async def on_problem(_: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, Problem)
        return exc.response()

    async def on_validation(request: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, RequestValidationError)
        return validation_problem(request, exc).response()

    async def on_http(_: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, StarletteHTTPException)
        slug = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "-")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return Problem(exc.status_code, slug, detail, headers=exc.headers).response()

    async def on_not_found(_: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, DealNotFound)
        return Problem(404, "deal-not-found", str(exc), extra={"deal_id": exc.deal_id}).response()

    async def on_conflict(_: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, DealConflict)
        if isinstance(exc, DecisionRefused):
            return Problem(
                409,
                "decision-refused",
                exc.reason,
                extra={"deal_id": exc.deal_id, "current_stage": exc.current_stage},
            ).response()
        slug = "deal-finished" if isinstance(exc, DealFinished) else "deal-conflict"
        return Problem(409, slug, str(exc), extra={"deal_id": exc.deal_id}).response()

    async def on_unavailable(_: Request, exc: Exception) -> ProblemResponse:
        log.warning("temporal_unavailable", error=str(exc))
        return Problem(
            503,
            "temporal-unavailable",
            "The workflow service is unavailable; nothing was recorded. Retry later.",
            headers=retry_after,
        ).response()

    async def on_no_worker(_: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, DealWorkerUnavailable)
        log.warning("deal_worker_unavailable", deal_id=exc.deal_id, stage=exc.stage)
        return Problem(
            503,
            "deal-worker-unavailable",
            "No deal worker answered; the status shown is the last stage recorded. Retry later.",
            headers=retry_after,
            extra={"deal_id": exc.deal_id, "stage": exc.stage},
        ).response()

    async def on_refused(_: Request, exc: Exception) -> ProblemResponse:
        log.error("temporal_refused", error=str(exc))
        return Problem(
            502, "temporal-refused", "The workflow service refused the request."
        ).response()

    async def on_unexpected(_: Request, exc: Exception) -> ProblemResponse:
        log.error("unhandled_error", exc_info=exc)
        return Problem(500, "internal-error", "An internal error occurred.").response()

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(DealNotFound, on_not_found)
    app.add_exception_handler(DealConflict, on_conflict)
    app.add_exception_handler(DealWorkerUnavailable, on_no_worker)
    app.add_exception_handler(TemporalUnavailable, on_unavailable)
    app.add_exception_handler(DealServiceError, on_refused)
    app.add_exception_handler(Exception, on_unexpected)
