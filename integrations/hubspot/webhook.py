"""HubSpot webhooks: the v3 request signature and the event batch.

HubSpot signs every webhook request with ``X-HubSpot-Signature-v3``: base64 of HMAC-SHA256, keyed
with the app's client secret, over method + URI + raw body + ``X-HubSpot-Request-Timestamp``
(epoch milliseconds). The URI is the full URL HubSpot posted to, which behind a proxy is not what
the server sees, so it is rebuilt from the API's public URL. HubSpot leaves a few characters
percent-encoded in the URI it signs and expects them decoded (``%3A`` as ``:``, ...); a request
older than five minutes is refused, so a captured request cannot be replayed later.

A request carries a JSON array of up to 100 events; ``deal.propertyChange`` of ``dealstage``
into a start stage is what starts a deal. Each event has an ``eventId`` that stays the same when
HubSpot delivers it again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
DEAL_PROPERTY_CHANGE = "deal.propertyChange"
STAGE_PROPERTY = "dealstage"
MAX_EVENTS = 1000
# HubSpot's list of characters it signs decoded (its request-validation guide).
_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


class WebhookSignatureError(ValueError):
    """The request is not signed by HubSpot with our client secret now; the message says why."""


class HubSpotEvent(BaseModel):
    """One webhook event (HubSpot adds fields over time, so unknown ones are kept, not refused)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    event_id: int = Field(alias="eventId")
    subscription_type: str = Field(alias="subscriptionType")
    object_id: int = Field(alias="objectId", ge=1)
    portal_id: int | None = Field(None, alias="portalId")
    occurred_at: int | None = Field(None, alias="occurredAt")
    attempt_number: int = Field(0, alias="attemptNumber")
    property_name: str | None = Field(None, alias="propertyName")
    property_value: str | None = Field(None, alias="propertyValue")

    def starts_deal(self, start_stages: Iterable[str]) -> bool:
        """A deal moved into one of the stages that start a deal."""
        return (
            self.subscription_type == DEAL_PROPERTY_CHANGE
            and self.property_name == STAGE_PROPERTY
            and self.property_value in set(start_stages)
        )


_EVENTS = TypeAdapter(list[HubSpotEvent])


def signed_uri(public_url: str, path: str, query: str = "") -> str:
    """The URI HubSpot signed: the public URL it posts to, with its listed characters decoded."""
    uri = public_url.rstrip("/") + path + (f"?{query}" if query else "")
    for encoded, plain in _DECODED.items():
        uri = uri.replace(encoded, plain).replace(encoded.lower(), plain)
    return uri


def signature_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    source = method.upper().encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


def verify_v3(
    secrets: Sequence[str],
    *,
    method: str,
    uri: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    tolerance_s: int = 300,
    now_ms: int | None = None,
) -> None:
    """Check a request's v3 signature and age.

    Args:
        secrets: The app's client secret(s); more than one while rotating.
        method, uri, body: The request as HubSpot sent it (``signed_uri`` for the URI).
        signature, timestamp: The ``X-HubSpot-Signature-v3`` and ``X-HubSpot-Request-Timestamp``
            headers.
        tolerance_s: The oldest request accepted (HubSpot: five minutes); a timestamp as far in
            the future is refused too.

    Raises:
        WebhookSignatureError: A header is missing or malformed, the request is too old (or from
            the future), or no secret produces the signature.
    """
    if not signature or not timestamp:
        raise WebhookSignatureError(f"{SIGNATURE_HEADER} and {TIMESTAMP_HEADER} are required")
    if not timestamp.isdigit() or len(timestamp) > 16:
        raise WebhookSignatureError(f"{TIMESTAMP_HEADER} is not epoch milliseconds")
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    age_ms = now - int(timestamp)
    if age_ms > tolerance_s * 1000:
        raise WebhookSignatureError(
            f"the request was signed {age_ms // 1000} s ago; older than {tolerance_s} s is refused"
        )
    if -age_ms > tolerance_s * 1000:
        raise WebhookSignatureError("the request's timestamp is in the future")
    for secret in secrets:
        expected = signature_v3(secret, method, uri, body, timestamp)
        if hmac.compare_digest(expected.encode(), signature.strip().encode()):
            return
    raise WebhookSignatureError(f"{SIGNATURE_HEADER} does not match the request")


class MalformedEvents(ValueError):
    """The body is not a JSON array of HubSpot events; the message says what is wrong."""


def parse_events(body: bytes) -> list[HubSpotEvent]:
    """The events of one webhook request, in the order HubSpot sent them."""
    try:
        events = _EVENTS.validate_json(body)
    except ValidationError as err:
        first = err.errors()[0]
        where = "/".join(str(p) for p in first["loc"])
        raise MalformedEvents(
            f"not a JSON array of HubSpot events: {first['msg']} at /{where} "
            f"({err.error_count()} problem(s))"
        ) from err
    if len(events) > MAX_EVENTS:
        raise MalformedEvents(f"{len(events)} events in one request; at most {MAX_EVENTS}")
    return events
