"""Vendor failures translated into Temporal activity failures, in one place.

Every activity module classifies what its SDK raised with these helpers so that the same kind of
failure gets the same treatment everywhere (docs/architecture.md, section 5): a request the vendor
refuses on its merits (invalid, unauthenticated, forbidden, not found, conflicting) is non-retryable
and parks the deal in ``needs_attention``; a vendor that is busy or unreachable (429, 408, 5xx,
timeouts, connection errors) is retried with the workflow's backoff, or after the vendor's
``Retry-After`` when it gave one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from temporalio.exceptions import ApplicationError

from qtc import errors

# A vendor asking for a wait longer than this is treated as asking for this long: the retry policy
# still bounds the total, and a deal should not silently sleep for a day on one bad header.
MAX_RETRY_AFTER = timedelta(hours=1)


def parse_retry_after(value: str | None, now: datetime | None = None) -> timedelta | None:
    """Read an HTTP ``Retry-After`` header (delta-seconds or an HTTP-date).

    Args:
        value: The header value, or ``None`` when the response had none.
        now: The current time for HTTP-date values (defaults to the wall clock, UTC).

    Returns:
        The delay, clamped to ``[0, MAX_RETRY_AFTER]``, or ``None`` when absent or unreadable.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(timedelta(seconds=max(seconds, 0.0)), MAX_RETRY_AFTER)


def retry_after_from_headers(headers: Mapping[str, Any] | None) -> timedelta | None:
    """Find ``Retry-After`` in a header mapping whatever its case (SDKs differ)."""
    if not headers:
        return None
    for key, value in headers.items():
        if str(key).lower() == "retry-after":
            return parse_retry_after(str(value))
    return None


def retryable(
    type: str,
    message: str,
    retry_after_s: float | timedelta | None = None,
    *,
    details: Mapping[str, Any] | None = None,
) -> ApplicationError:
    """A failure Temporal should retry; ``retry_after_s`` sets the next attempt's delay.

    Args:
        type: One of the retryable names in ``qtc.errors`` (``VENDOR_UNAVAILABLE``,
            ``VENDOR_RATE_LIMITED``).
        message: One sentence naming the vendor and what failed.
        retry_after_s: The vendor's requested wait, in seconds or as a ``timedelta``.
        details: JSON-able facts for the operator (status code, vendor error code).
    """
    delay: timedelta | None
    if retry_after_s is None:
        delay = None
    elif isinstance(retry_after_s, timedelta):
        delay = min(max(retry_after_s, timedelta(0)), MAX_RETRY_AFTER)
    else:
        delay = min(timedelta(seconds=max(float(retry_after_s), 0.0)), MAX_RETRY_AFTER)
    args = (dict(details),) if details else ()
    return ApplicationError(message, *args, type=type, non_retryable=False, next_retry_delay=delay)


def non_retryable(
    type: str, message: str, *, details: Mapping[str, Any] | None = None
) -> ApplicationError:
    """A failure no retry can fix; the deal parks in ``needs_attention`` for an operator.

    Args:
        type: One of ``qtc.errors.NON_RETRYABLE_ERROR_TYPES``.
        message: One sentence naming the vendor, the object and what is wrong with it.
        details: JSON-able facts for the operator (status code, vendor error code, field).
    """
    args = (dict(details),) if details else ()
    return ApplicationError(message, *args, type=type, non_retryable=True)


def from_http_status(
    vendor: str,
    status: int,
    message: str,
    headers: Mapping[str, Any] | None = None,
    *,
    code: str | None = None,
) -> ApplicationError:
    """Classify a vendor's HTTP error response by status code.

    Args:
        vendor: Human name of the system (``"Salesforce"``, ``"DocuSign"``).
        status: The HTTP status code.
        message: The vendor's own message, quoted in ours.
        headers: Response headers, read for ``Retry-After``.
        code: The vendor's error code, when it gives one.
    """
    details: dict[str, Any] = {"vendor": vendor, "status": status}
    if code:
        details["code"] = code
    text = f"{vendor} answered {status}: {message}"
    if status == 429:
        return retryable(
            errors.VENDOR_RATE_LIMITED, text, retry_after_from_headers(headers), details=details
        )
    if status == 408 or status >= 500:
        return retryable(
            errors.VENDOR_UNAVAILABLE, text, retry_after_from_headers(headers), details=details
        )
    kind = {
        401: errors.VENDOR_AUTHENTICATION,
        403: errors.VENDOR_PERMISSION,
        404: errors.VENDOR_NOT_FOUND,
        409: errors.VENDOR_CONFLICT,
    }.get(status, errors.VENDOR_INVALID_REQUEST)
    return non_retryable(kind, text, details=details)


def unreachable(vendor: str, exc: BaseException) -> ApplicationError:
    """A timeout or connection failure before the vendor answered: always worth retrying."""
    return retryable(
        errors.VENDOR_UNAVAILABLE,
        f"{vendor} could not be reached: {type(exc).__name__}: {exc}",
        details={"vendor": vendor},
    )
