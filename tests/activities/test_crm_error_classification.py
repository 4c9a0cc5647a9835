"""The shared vendor-error helpers (runtime/vendor_errors.py) every adapter classifies with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from qtc import errors
from runtime.vendor_errors import (
    MAX_RETRY_AFTER,
    from_http_status,
    non_retryable,
    parse_retry_after,
    retry_after_from_headers,
    retryable,
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", timedelta(seconds=7)),
        (" 2.5 ", timedelta(seconds=2.5)),
        ("-3", timedelta(0)),
        ("86400", MAX_RETRY_AFTER),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_retry_after_in_seconds_is_honoured_within_bounds(
    header: str | None, expected: timedelta | None
) -> None:
    assert parse_retry_after(header) == expected


def test_retry_after_as_an_http_date_counts_from_now() -> None:
    now = datetime(2026, 12, 15, 10, 0, 0, tzinfo=UTC)

    assert parse_retry_after("Tue, 15 Dec 2026 10:00:30 GMT", now=now) == timedelta(seconds=30)
    assert parse_retry_after("Tue, 15 Dec 2026 09:59:00 GMT", now=now) == timedelta(0)


def test_retry_after_is_found_whatever_the_header_case() -> None:
    assert retry_after_from_headers({"retry-after": "4"}) == timedelta(seconds=4)
    assert retry_after_from_headers({"RETRY-AFTER": "4"}) == timedelta(seconds=4)
    assert retry_after_from_headers({"Content-Type": "application/json"}) is None
    assert retry_after_from_headers(None) is None


@pytest.mark.parametrize(
    ("status", "expected_type", "retried"),
    [
        (400, errors.VENDOR_INVALID_REQUEST, False),
        (401, errors.VENDOR_AUTHENTICATION, False),
        (403, errors.VENDOR_PERMISSION, False),
        (404, errors.VENDOR_NOT_FOUND, False),
        (409, errors.VENDOR_CONFLICT, False),
        (422, errors.VENDOR_INVALID_REQUEST, False),
        (408, errors.VENDOR_UNAVAILABLE, True),
        (429, errors.VENDOR_RATE_LIMITED, True),
        (500, errors.VENDOR_UNAVAILABLE, True),
        (503, errors.VENDOR_UNAVAILABLE, True),
    ],
)
def test_a_vendor_status_code_decides_whether_the_deal_retries_or_parks(
    status: int, expected_type: str, retried: bool
) -> None:
    failure = from_http_status("Acme API", status, "no", code="E1")

    assert failure.type == expected_type
    assert failure.non_retryable is not retried
    assert failure.details[0] == {"vendor": "Acme API", "status": status, "code": "E1"}
    assert f"Acme API answered {status}: no" in failure.message


def test_every_permanent_failure_type_is_in_the_retry_policy_list() -> None:
    permanent = {from_http_status("X", status, "no").type for status in (400, 401, 403, 404, 409)}

    assert permanent <= set(errors.NON_RETRYABLE_ERROR_TYPES)
    assert errors.VENDOR_UNAVAILABLE not in errors.NON_RETRYABLE_ERROR_TYPES
    assert errors.VENDOR_RATE_LIMITED not in errors.NON_RETRYABLE_ERROR_TYPES


def test_a_rate_limit_carries_the_wait_the_vendor_asked_for() -> None:
    failure = from_http_status("X", 429, "slow down", {"Retry-After": "12"})

    assert failure.next_retry_delay == timedelta(seconds=12)


def test_helpers_build_failures_with_and_without_a_delay() -> None:
    assert retryable(errors.VENDOR_UNAVAILABLE, "busy").next_retry_delay is None
    assert retryable(errors.VENDOR_UNAVAILABLE, "busy", 1.5).next_retry_delay == timedelta(
        seconds=1.5
    )
    assert (
        retryable(errors.VENDOR_UNAVAILABLE, "busy", timedelta(days=2)).next_retry_delay
        == MAX_RETRY_AFTER
    )
    permanent = non_retryable(errors.VENDOR_CONFLICT, "taken", details={"key": "deal-1"})
    assert permanent.non_retryable
    assert permanent.details == ({"key": "deal-1"},)
