"""DocuSign Connect: event messages, HMAC signatures and background delivery with retries.

Message formats, as a real Connect configuration chooses them:

- ``format="json"`` (JSON SIM) with ``include_data=[]``: what a configuration made in the eSignature
  admin with the defaults sends: ``event`` and a ``data`` holding only ``accountId``, ``userId``
  and ``envelopeId``. No envelope summary, no custom fields, no completion time.
- ``format="json"`` with ``include_data`` such as ``["custom_fields", "recipients"]`` (DocuSign's
  ``eventData.includeData``): ``data.envelopeSummary`` with the envelope's REST fields and the
  sections asked for.
- ``format="xml"``: the legacy ``DocuSignEnvelopeInformation`` document, dates in the account's
  time zone (``TimeZone``/``TimeZoneOffset`` when ``include_time_zone``), envelope custom fields
  and recipient statuses always included.

Every format is signed the same way (``X-DocuSign-Signature-N`` over the raw body).

Connect is at-least-once: a listener that does not answer 2xx gets the message again, with
exponential backoff, and ``deliver_twice`` sends every message twice on purpose so a listener's
de-duplication is exercised. Every attempt is recorded in the emulator state, so a test or an
operator can see exactly what was sent, when, and what the listener answered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from xml.sax.saxutils import escape

import httpx
from pydantic import BaseModel, ConfigDict, Field

from sandbox.common import StateStore
from sandbox.docusign.envelopes import ds_time, parse_time, recipients_view

ACCOUNT_CONFIGURATION_ID = 10_000_001
ENVELOPE_CONFIGURATION_ID = 0
MessageFormat = Literal["json", "xml"]
# DocuSign's eventData.includeData values this emulator can fill in.
IncludeData = Literal["custom_fields", "recipients", "tabs", "documents"]
FULL_SUMMARY: list[IncludeData] = ["custom_fields", "recipients", "documents"]
XML_NAMESPACE = "http://www.docusign.net/API/3.0"


class ConnectConfig(BaseModel):
    """The account-level Connect configuration and delivery policy (switchable at run time)."""

    url: str | None = None
    secrets: list[str] = Field(default_factory=lambda: ["sandbox-connect-secret"])
    deliver_twice: bool = False
    events: list[str] = Field(default_factory=lambda: ["envelope-completed"])
    # Like a configuration made in the admin with its defaults: JSON SIM without the summary.
    format: MessageFormat = "json"
    include_data: list[IncludeData] = Field(default_factory=list)
    include_time_zone: bool = True
    # The account's time zone, in which the XML format writes its dates.
    time_zone: str = "Pacific Standard Time"
    time_zone_offset_hours: float = Field(-8, ge=-12, le=14)
    max_attempts: int = Field(50, ge=1, le=1000)
    initial_backoff_s: float = Field(0.2, ge=0, le=60)
    max_backoff_s: float = Field(5.0, ge=0, le=600)
    timeout_s: float = Field(10.0, gt=0, le=120)
    # Connect works through its queue with a bounded number of requests in flight per
    # configuration; without a bound, thousands of signatures at once opened thousands of
    # requests, timed them out in the client's pool and starved the emulator's own API.
    max_in_flight: int = Field(16, ge=1, le=1000)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.initial_backoff_s * 2 ** (attempt - 1), self.max_backoff_s))


class ConnectUpdate(BaseModel):
    """Body of ``POST /_sandbox/connect``: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    secret: str | None = Field(None, min_length=1)
    secrets: list[str] | None = Field(None, min_length=1)
    deliver_twice: bool | None = None
    events: list[str] | None = None
    format: MessageFormat | None = None
    include_data: list[IncludeData] | None = None
    include_time_zone: bool | None = None
    time_zone: str | None = None
    time_zone_offset_hours: float | None = Field(None, ge=-12, le=14)
    max_attempts: int | None = Field(None, ge=1, le=1000)
    initial_backoff_s: float | None = Field(None, ge=0, le=60)
    max_backoff_s: float | None = Field(None, ge=0, le=600)
    timeout_s: float | None = Field(None, gt=0, le=120)
    max_in_flight: int | None = Field(None, ge=1, le=1000)

    def apply(self, config: ConnectConfig) -> ConnectConfig:
        changes: dict[str, Any] = {
            name: getattr(self, name)
            for name in self.model_fields_set
            if name not in {"secret", "secrets"}
        }
        if self.secrets is not None:
            changes["secrets"] = list(self.secrets)
        elif self.secret is not None:
            changes["secrets"] = [self.secret]
        if "events" in changes:
            changes["events"] = [e.lower() for e in changes["events"] or []]
        return ConnectConfig.model_validate({**config.model_dump(), **changes})


def signature_headers(body: bytes, secrets: list[str]) -> dict[str, str]:
    """``X-DocuSign-Signature-N`` = base64(HMAC-SHA256(key N, raw body)), one per key."""
    headers = {"X-Authorization-Digest": "HMACSHA256"}
    for number, secret in enumerate(secrets, start=1):
        digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        headers[f"X-DocuSign-Signature-{number}"] = base64.b64encode(digest).decode()
    return headers


@dataclass(frozen=True)
class MessageShape:
    """What one Connect configuration puts in its messages."""

    format: MessageFormat = "json"
    include_data: tuple[str, ...] = ()
    include_time_zone: bool = True
    time_zone: str = "Pacific Standard Time"
    time_zone_offset_hours: float = -8

    @classmethod
    def of(cls, config: ConnectConfig) -> MessageShape:
        return cls(
            format=config.format,
            include_data=tuple(config.include_data),
            include_time_zone=config.include_time_zone,
            time_zone=config.time_zone,
            time_zone_offset_hours=config.time_zone_offset_hours,
        )

    @classmethod
    def of_envelope(cls, notification: dict[str, Any]) -> MessageShape:
        """An envelope's own ``eventNotification``: SIM when it has ``eventData``, else XML."""
        data = notification.get("eventData")
        if not data:
            return cls(format="xml")
        return cls(format="json", include_data=tuple(data.get("includeData") or ()))


def event_message(
    event: str,
    envelope: dict[str, Any],
    *,
    account_id: str,
    user_id: str,
    configuration_id: int,
    generated_at: datetime,
    include_data: tuple[str, ...] | list[str] = tuple(FULL_SUMMARY),
) -> dict[str, Any]:
    """A JSON SIM message (``retryCount`` is set per attempt).

    ``data.envelopeSummary`` is there only when ``include_data`` asks for something, with the
    sections asked for; the default configuration's message has none.
    """
    envelope_id = envelope["envelopeId"]
    uri = f"/envelopes/{envelope_id}"
    data: dict[str, Any] = {"accountId": account_id, "userId": user_id, "envelopeId": envelope_id}
    if include_data:
        data["envelopeSummary"] = _summary(envelope, uri, set(include_data), account_id, user_id)
    return {
        "event": event,
        "apiVersion": "v2.1",
        "uri": f"/restapi/v2.1/accounts/{account_id}/envelopes/{envelope_id}",
        "retryCount": 0,
        "configurationId": configuration_id,
        "generatedDateTime": ds_time(generated_at),
        "data": data,
    }


def _summary(
    envelope: dict[str, Any], uri: str, include: set[str], account_id: str, user_id: str
) -> dict[str, Any]:
    summary_keys = (
        "status",
        "emailSubject",
        "emailBlurb",
        "envelopeId",
        "createdDateTime",
        "lastModifiedDateTime",
        "statusChangedDateTime",
        "sentDateTime",
        "initialSentDateTime",
        "deliveredDateTime",
        "completedDateTime",
        "voidedDateTime",
        "voidedReason",
    )
    summary: dict[str, Any] = {k: envelope[k] for k in summary_keys if k in envelope}
    summary.update(
        envelopeUri=uri,
        documentsUri=f"{uri}/documents",
        recipientsUri=f"{uri}/recipients",
        attachmentsUri=f"{uri}/attachments",
        customFieldsUri=f"{uri}/custom_fields",
        notificationUri=f"{uri}/notification",
        signingLocation="online",
        sender={
            "userName": "QTC Sandbox Sender",
            "userId": user_id,
            "accountId": account_id,
            "email": "sender@sandbox.example",
        },
    )
    if "recipients" in include or "tabs" in include:
        summary["recipients"] = recipients_view(envelope, include_tabs="tabs" in include)
    if "custom_fields" in include:
        summary["customFields"] = {
            "textCustomFields": [dict(f) for f in envelope["customFields"]["textCustomFields"]],
            "listCustomFields": [dict(f) for f in envelope["customFields"]["listCustomFields"]],
        }
    if "documents" in include:
        summary["envelopeDocuments"] = [
            {
                "documentId": "1",
                "documentIdGuid": str(uuid.uuid5(uuid.NAMESPACE_URL, envelope["envelopeId"])),
                "name": "Master Subscription Agreement.pdf",
                "type": "content",
                "uri": f"{uri}/documents/1",
                "order": "1",
                "pages": "1",
            }
        ]
    return summary


def _legacy_time(value: str | None, offset_hours: float) -> str | None:
    """A REST date as the legacy format writes it: wall time in the account's zone, no zone."""
    if not value:
        return None
    moment = parse_time(value) + timedelta(hours=offset_hours)
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds")


def _element(name: str, value: object) -> str:
    if value is None or value == "":
        return f"<{name} />"
    return f"<{name}>{escape(str(value))}</{name}>"


def xml_message(envelope: dict[str, Any], shape: MessageShape, generated_at: datetime) -> str:
    """The legacy ``DocuSignEnvelopeInformation`` document for the envelope as it is now."""
    offset = shape.time_zone_offset_hours

    def when(key: str) -> str | None:
        return _legacy_time(envelope.get(key), offset)

    recipients = []
    for kind, recipient in [("Signer", s) for s in envelope["recipients"]["signers"]] + [
        ("CarbonCopy", c) for c in envelope["recipients"]["carbonCopies"]
    ]:
        recipients.append(
            "<RecipientStatus>"
            + _element("Type", kind)
            + _element("Email", recipient.get("email"))
            + _element("UserName", recipient.get("name"))
            + _element("RoutingOrder", recipient.get("routingOrder", "1"))
            + _element("Sent", _legacy_time(envelope.get("sentDateTime"), offset))
            + _element("Delivered", _legacy_time(recipient.get("deliveredDateTime"), offset))
            + _element("Signed", _legacy_time(recipient.get("signedDateTime"), offset))
            + '<DeclineReason xsi:nil="true" />'
            + _element("Status", str(recipient.get("status", "sent")).capitalize())
            + _element("RecipientIPAddress", "127.0.0.1")
            + "<CustomFields />"
            + _element(
                "RecipientId", recipient.get("recipientIdGuid", recipient.get("recipientId"))
            )
            + "</RecipientStatus>"
        )
    custom_fields = "".join(
        "<CustomField>"
        + _element("Name", field["name"])
        + _element("Show", field.get("show", "false"))
        + _element("Required", field.get("required", "false"))
        + _element("Value", field.get("value"))
        + _element("CustomFieldType", "Text")
        + "</CustomField>"
        for field in envelope["customFields"]["textCustomFields"]
    )
    zone = (
        _element("TimeZone", shape.time_zone) + _element("TimeZoneOffset", f"{offset:g}")
        if shape.include_time_zone
        else ""
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<DocuSignEnvelopeInformation xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="{XML_NAMESPACE}">'
        "<EnvelopeStatus>"
        f"<RecipientStatuses>{''.join(recipients)}</RecipientStatuses>"
        + _element("TimeGenerated", _legacy_time(ds_time(generated_at), offset))
        + _element("EnvelopeID", envelope["envelopeId"])
        + _element("Subject", envelope.get("emailSubject"))
        + _element("UserName", "QTC Sandbox Sender")
        + _element("Email", "sender@sandbox.example")
        + _element("Status", str(envelope["status"]).capitalize())
        + _element("Created", when("createdDateTime"))
        + _element("Sent", when("sentDateTime"))
        + _element("Delivered", when("deliveredDateTime"))
        + _element("Signed", when("completedDateTime"))
        + _element("Completed", when("completedDateTime"))
        + _element("VoidReason", envelope.get("voidedReason"))
        + f"<CustomFields>{custom_fields}</CustomFields>"
        + "<DocumentStatuses><DocumentStatus><ID>1</ID>"
        "<Name>Master Subscription Agreement</Name><TemplateName /><Sequence>1</Sequence>"
        "</DocumentStatus></DocumentStatuses>"
        "</EnvelopeStatus>"
        f"{zone}"
        "</DocuSignEnvelopeInformation>"
    )


def _body(message: dict[str, Any] | str, retry_count: int) -> tuple[bytes, str]:
    """The bytes of one attempt: JSON SIM counts its retries in the body, XML does not."""
    if isinstance(message, str):
        return message.encode(), "text/xml; charset=utf-8"
    body = json.dumps({**message, "retryCount": retry_count}, separators=(",", ":"))
    return body.encode(), "application/json"


class ConnectDelivery:
    """Queues Connect messages in the state store and posts them from background tasks.

    Records live in ``store.data["deliveries"]`` (id -> record, in creation order). A record that
    is still ``pending`` when the process stops is picked up again by ``resume_pending``.
    """

    def __init__(self, store: StateStore, config: ConnectConfig, *, account_id: str, user_id: str):
        self.store = store
        self.config = config
        self.account_id = account_id
        self.user_id = user_id
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._in_flight: asyncio.Semaphore | None = None
        self._in_flight_limit = 0

    def publish(self, event: str, envelope: dict[str, Any], now: datetime) -> list[str]:
        """Queue ``event`` for the envelope's own listener, else the account's; return ids.

        Must be called from the running event loop (the delivery tasks start at once).
        """
        target = self._target(event, envelope)
        if target is None:
            return []
        url, configuration_id, signed, shape = target
        message: dict[str, Any] | str
        if shape.format == "xml":
            message = xml_message(envelope, shape, now)
        else:
            message = event_message(
                event,
                envelope,
                account_id=self.account_id,
                user_id=self.user_id,
                configuration_id=configuration_id,
                generated_at=now,
                include_data=shape.include_data,
            )
        ids = []
        for copy in range(2 if self.config.deliver_twice else 1):
            delivery_id = f"dlv-{uuid.uuid4()}"
            self.store.data["deliveries"][delivery_id] = {
                "id": delivery_id,
                "event": event,
                "envelopeId": envelope["envelopeId"],
                "url": url,
                "hmac": signed,
                "format": shape.format,
                "copy": copy + 1,
                "state": "pending",
                "createdAt": ds_time(now),
                "message": message,
                "attempts": [],
            }
            ids.append(delivery_id)
        self.store.save()
        for delivery_id in ids:
            self._start(delivery_id)
        return ids

    def _target(
        self, event: str, envelope: dict[str, Any]
    ) -> tuple[str, int, bool, MessageShape] | None:
        own = envelope.get("eventNotification")
        if own:
            legacy = {
                f"envelope-{e['envelopeEventStatusCode'].lower()}"
                for e in own.get("envelopeEvents") or []
            }
            if event in {e.lower() for e in own.get("events") or []} | legacy:
                return (
                    own["url"],
                    ENVELOPE_CONFIGURATION_ID,
                    bool(own.get("includeHMAC")),
                    MessageShape.of_envelope(own),
                )
            return None
        if self.config.url and event in self.config.events:
            # An account-level Connect configuration in this sandbox always has HMAC enabled.
            return self.config.url, ACCOUNT_CONFIGURATION_ID, True, MessageShape.of(self.config)
        return None

    def resume_pending(self) -> None:
        for delivery_id, record in list(self.store.data["deliveries"].items()):
            if record["state"] == "pending":
                self._start(delivery_id)

    def _start(self, delivery_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(delivery_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery_id: str) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient()
        while True:
            record = self.store.data["deliveries"].get(delivery_id)
            if record is None or record["state"] != "pending":
                return
            number = len(record["attempts"]) + 1
            body, content_type = _body(record["message"], number - 1)
            headers = {"Content-Type": content_type, "User-Agent": "DocuSign-Connect/2.0"}
            if record["hmac"]:
                headers.update(signature_headers(body, self.config.secrets))
            async with self._slot():
                started = time.monotonic()
                attempt: dict[str, Any] = {"attempt": number, "at": ds_time(datetime.now(UTC))}
                try:
                    response = await self._client.post(
                        record["url"], content=body, headers=headers, timeout=self.config.timeout_s
                    )
                    attempt["statusCode"] = response.status_code
                except httpx.HTTPError as exc:
                    attempt["statusCode"] = None
                    attempt["error"] = f"{type(exc).__name__}: {exc}"
            attempt["elapsedMs"] = round((time.monotonic() - started) * 1000, 1)
            record["attempts"].append(attempt)
            status = attempt["statusCode"]
            if status is not None and 200 <= status < 300:
                record["state"] = "delivered"
                record["deliveredAt"] = attempt["at"]
            elif number >= self.config.max_attempts:
                record["state"] = "failed"
            self.store.save()
            if record["state"] != "pending":
                return
            await asyncio.sleep(self.config.backoff(number))

    def _slot(self) -> asyncio.Semaphore:
        """One of ``max_in_flight`` delivery slots (a changed limit applies to later waits)."""
        if self._in_flight is None or self._in_flight_limit != self.config.max_in_flight:
            self._in_flight_limit = self.config.max_in_flight
            self._in_flight = asyncio.Semaphore(self._in_flight_limit)
        return self._in_flight

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def aclose(self) -> None:
        await self.cancel_all()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def summary(self) -> dict[str, int]:
        counts = {"pending": 0, "delivered": 0, "failed": 0, "attempts": 0}
        for record in self.store.data["deliveries"].values():
            counts[record["state"]] += 1
            counts["attempts"] += len(record["attempts"])
        return counts
