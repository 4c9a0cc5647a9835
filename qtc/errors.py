"""Error types, in one place.

Domain errors are Python exceptions. Activity failures cross Temporal as ``ApplicationError`` whose
``type`` is one of the names below; the non-retryable ones feed every activity's
``RetryPolicy.non_retryable_error_types`` so a permanent failure parks the deal in
``needs_attention`` at once instead of retrying for days.
"""

from __future__ import annotations

from qtc.models import Violation


class QtcError(Exception):
    """Base class of every error this project raises on purpose."""


class CatalogError(QtcError):
    """The catalog file cannot be read or is not valid; the message names the file and key."""


class QuoteRejected(QtcError):
    """The quote breaks one or more CPQ rules; every violation is listed."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.pointer}: {v.code}: {v.message}" for v in violations))


class QuoteUnreadable(QuoteRejected):
    """The input is not a JSON document at all (not UTF-8, not JSON, too large): nothing could be
    checked against the rules. Still a ``QuoteRejected`` (the API answers 422 for both); the CLI
    tells it apart, since a file it cannot parse is a usage error, not a rejected quote."""


# ApplicationError type names raised by activities.
VENDOR_INVALID_REQUEST = "VendorInvalidRequest"
VENDOR_AUTHENTICATION = "VendorAuthentication"
VENDOR_PERMISSION = "VendorPermission"
VENDOR_CARD = "VendorCardError"
VENDOR_NOT_FOUND = "VendorNotFound"
VENDOR_CONFLICT = "VendorConflict"
INVOICE_MISMATCH = "InvoiceMismatch"
CONTRACT_NOT_SENDABLE = "ContractNotSendable"
# Retryable: rate limits, timeouts, connection errors, 5xx (backoff, Retry-After honoured).
VENDOR_UNAVAILABLE = "VendorUnavailable"
VENDOR_RATE_LIMITED = "VendorRateLimited"

NON_RETRYABLE_ERROR_TYPES: list[str] = [
    VENDOR_INVALID_REQUEST,
    VENDOR_AUTHENTICATION,
    VENDOR_PERMISSION,
    VENDOR_CARD,
    VENDOR_NOT_FOUND,
    VENDOR_CONFLICT,
    INVOICE_MISMATCH,
    CONTRACT_NOT_SENDABLE,
]
