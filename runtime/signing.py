"""The ``X-Qtc-Signature`` request signature: the product signs its provisioning calls with it, and
the Salesforce Flow callout is verified with it.

Scheme:

1. ``t`` is the current Unix time in whole seconds, as a decimal integer.
2. The signed payload is the ASCII bytes of ``f"{t}."`` followed by the exact raw request body
   bytes (no re-serialisation: sign the bytes you send).
3. ``v1`` is the lower-case hex HMAC-SHA256 of the signed payload, keyed with the shared secret
   encoded as UTF-8.
4. The request carries the header ``X-Qtc-Signature: t=<t>,v1=<hex>``. During a secret rotation a
   sender may add more ``v1=`` entries (``t=...,v1=<new>,v1=<old>``); one matching entry is enough.

Binding the timestamp into the MAC and refusing timestamps more than ``tolerance_s`` away from the
receiver's clock (either direction) means a captured request cannot be replayed later, and no
signature can be moved onto another body.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Qtc-Signature"
TOLERANCE_S = 300
# Unix seconds stay below 12 digits for the next 30,000 years; a longer "number" is an attack on
# int() rather than a timestamp.
_MAX_TIMESTAMP_DIGITS = 12


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale or does not match (the message says
    which)."""


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    payload = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Qtc-Signature`` header value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    return f"t={timestamp},v1={_digest(secret, body, timestamp)}"


def verify(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    now: float | None = None,
    tolerance_s: int = TOLERANCE_S,
) -> int:
    """Check ``header`` against ``body``; return its timestamp.

    Raises:
        SignatureError: The header is missing or malformed, its timestamp is outside the
            tolerance, or no ``v1`` matches.
    """
    if not header:
        raise SignatureError(f"the {SIGNATURE_HEADER} header is missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if (
            key == "t"
            and value.isascii()
            and value.isdigit()
            and len(value) <= _MAX_TIMESTAMP_DIGITS
        ):
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError(f"the {SIGNATURE_HEADER} header needs t=<unix time>,v1=<hex mac>")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise SignatureError(f"the signature timestamp is more than {tolerance_s} s from now")
    expected = _digest(secret, body, timestamp).encode()
    # Every candidate is compared, so the time taken does not depend on which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(candidate.encode(), expected)
    if not matched:
        raise SignatureError("the signature does not match the body")
    return timestamp
