"""Stripe's error envelope and status codes, as the SDK expects them.

The SDK picks its exception class from the HTTP status (and ``error.type`` for idempotency), so the
status and body here decide whether a caller sees ``InvalidRequestError``, ``AuthenticationError``,
``CardError``, ``IdempotencyError``, ``RateLimitError`` or ``APIError``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

DOC_URL = "https://docs.stripe.com/error-codes"


class StripeError(Exception):
    """An error Stripe would return; ``to_response`` renders it exactly as the API does."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"{DOC_URL}#{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}

    def to_response(self, request_id: str | None = None) -> Response:
        headers = dict(self.headers)
        if request_id:
            headers["Request-Id"] = request_id
        return Response(
            json.dumps(self.body(), indent=2),
            status_code=self.status,
            media_type="application/json",
            headers=headers,
        )


def invalid_request(
    message: str, *, param: str | None = None, code: str | None = None
) -> StripeError:
    return StripeError(400, "invalid_request_error", message, code=code, param=param)


def parameter_unknown(param: str, suggestion: str | None = None) -> StripeError:
    hint = f" Did you mean {suggestion}?" if suggestion else ""
    return invalid_request(
        f"Received unknown parameter: {param}.{hint}", param=param, code="parameter_unknown"
    )


def parameter_missing(param: str) -> StripeError:
    return invalid_request(
        f"Missing required param: {param}.", param=param, code="parameter_missing"
    )


def parameter_invalid(
    param: str, message: str, code: str = "parameter_invalid_string"
) -> StripeError:
    return invalid_request(message, param=param, code=code)


def resource_missing(
    kind: str, object_id: str, param: str = "id", *, in_path: bool | None = None
) -> StripeError:
    """An object that does not exist: 404 when the URL names it, 400 when a parameter does.

    Stripe answers ``GET /v1/customers/cus_nope`` with 404, but a body that refers to a missing
    object (``customer=cus_nope`` on a subscription) with 400, naming the parameter.
    """
    named_by_url = param == "id" if in_path is None else in_path
    return StripeError(
        404 if named_by_url else 400,
        "invalid_request_error",
        f"No such {kind}: '{object_id}'",
        code="resource_missing",
        param=param,
    )


def authentication(message: str) -> StripeError:
    # Stripe answers bad keys with 401 and type invalid_request_error; the SDK maps 401 to
    # AuthenticationError from the status alone.
    return StripeError(401, "invalid_request_error", message)


def card_declined(message: str, *, decline_code: str, param: str | None = None) -> StripeError:
    return StripeError(
        402,
        "card_error",
        message,
        code="card_declined",
        param=param,
        extra={"decline_code": decline_code},
    )


def idempotency_mismatch(key: str) -> StripeError:
    return StripeError(
        400,
        "idempotency_error",
        "Keys for idempotent requests can only be used with the same parameters they were first "
        f"used with. Try using a key other than '{key}' if you meant to execute a different "
        "request.",
    )


def idempotency_other_endpoint(key: str, first: str, now: str) -> StripeError:
    return StripeError(
        400,
        "idempotency_error",
        f"Keys for idempotent requests can only be used for the same endpoint they were first "
        f"used for ('{first}' vs '{now}'). Try using a key other than '{key}' if you meant to "
        "execute a different request.",
    )


def idempotency_in_flight() -> StripeError:
    return StripeError(
        409,
        "idempotency_error",
        "There is currently another in-progress request using this Idempotent Key (that "
        "probably means you submitted twice, and the other request is still going through): "
        "please try again later.",
        code="idempotency_key_in_use",
    )


def rate_limited(retry_after_s: int) -> StripeError:
    return StripeError(
        429,
        "invalid_request_error",
        "Request rate limit exceeded. Learn more about rate limits here "
        "https://stripe.com/docs/rate-limits.",
        code="rate_limit",
        headers={"Retry-After": str(retry_after_s)},
    )


def api_error() -> StripeError:
    return StripeError(500, "api_error", "An unknown error occurred while processing your request.")
