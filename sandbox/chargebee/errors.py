"""Chargebee's error envelope.

Every error answers ``{"message", "type", "api_error_code", "param"}`` plus the older
``error_code`` / ``error_msg`` / ``error_param`` fields and ``http_status_code`` that Chargebee
still sends. ``type`` picks the SDK's exception class (``invalid_request``: ``InvalidRequestError``,
``operation_failed``: ``OperationFailedError``, ``payment``: ``PaymentError``; none: ``APIError``),
so it is left out exactly where Chargebee leaves it out (authentication, rate limits, server
errors).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class ChargebeeError(Exception):
    def __init__(
        self,
        status: int,
        api_error_code: str,
        message: str,
        *,
        type: str | None = "invalid_request",
        param: str | None = None,
        error_code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.api_error_code = api_error_code
        self.message = message
        self.type = type
        self.param = param
        self.error_code = error_code or api_error_code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        if self.type is not None:
            body["type"] = self.type
        body["api_error_code"] = self.api_error_code
        if self.param is not None:
            body["param"] = self.param
            body["error_param"] = self.param
        body["error_code"] = self.error_code
        body["error_msg"] = self.message
        body["http_status_code"] = self.status
        return body

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def blank(param: str) -> ChargebeeError:
    return ChargebeeError(
        400,
        "param_wrong_value",
        f"{param} : cannot be blank",
        param=param,
        error_code="param_not_present",
    )


def wrong_value(param: str, why: str) -> ChargebeeError:
    return ChargebeeError(
        400, "param_wrong_value", f"{param} : {why}", param=param, error_code="param_wrong_value"
    )


def not_found(what: str, param: str | None = None) -> ChargebeeError:
    return ChargebeeError(
        404,
        "resource_not_found",
        f"{what} not found",
        param=param,
        error_code="referenced_resource_not_found" if param else "resource_not_found",
    )


def duplicate(param: str, value: str) -> ChargebeeError:
    return ChargebeeError(
        400, "duplicate_entry", f"The value {value} is already present.", param=param
    )


def invalid_state(message: str) -> ChargebeeError:
    return ChargebeeError(400, "invalid_state_for_request", message)


def authentication_failed() -> ChargebeeError:
    return ChargebeeError(
        401,
        "api_authentication_failed",
        "Sorry, authentication failed. Invalid api key",
        type=None,
    )


def rate_limited(retry_after_s: int) -> ChargebeeError:
    return ChargebeeError(
        429,
        "api_request_limit_exceeded",
        "Sorry, access has been blocked temporarily due to request count exceeding acceptable "
        "limits. Please try after some time.",
        type=None,
        headers={"Retry-After": str(retry_after_s)},
    )


def internal_error() -> ChargebeeError:
    return ChargebeeError(
        500,
        "internal_error",
        "Sorry, something went wrong when trying to process the request (injected).",
        type=None,
    )
