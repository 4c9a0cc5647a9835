"""The provisioning request signature, as the product backend checks it.

Scheme (the production adapter implements it independently; it must not import ``sandbox``):

1. ``t`` is the current Unix time in whole seconds, as a decimal integer.
2. The signed payload is the ASCII bytes of ``f"{t}."`` followed by the exact raw request body
   bytes (no re-serialisation: sign the bytes you send).
3. ``v1`` is the lower-case hex HMAC-SHA256 of the signed payload, keyed with the shared secret
   encoded as UTF-8.
4. The request carries the header ``X-Qtc-Signature: t=<t>,v1=<hex>``. During a secret rotation a
   sender may add more ``v1=`` entries (``t=...,v1=<new>,v1=<old>``); one matching entry is enough.

The receiver rejects the request when the header is missing or malformed, when ``t`` is more than
300 seconds away from its own clock (in either direction, which bounds replays), or when no
``v1`` matches (compared in constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Qtc-Signature"
TOLERANCE_S = 300


class SignatureError(Exception):
    """The signature header is missing, malformed, stale or does not match."""


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
    """Check ``header`` against ``body``; return its timestamp or raise ``SignatureError``."""
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header: expected t=<unix>,v1=<hex>")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise SignatureError(f"signature timestamp is more than {tolerance_s} s from server time")
    expected = _digest(secret, body, timestamp)
    # Check every candidate so the time taken does not depend on which one matched.
    matched = [hmac.compare_digest(expected, c) for c in candidates]
    if not any(matched):
        raise SignatureError("signature does not match the request body")
    return timestamp
