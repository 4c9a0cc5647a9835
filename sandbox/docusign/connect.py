"""DocuSign Connect: JSON SIM event messages, HMAC signatures and background delivery with retries.

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
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from sandbox.common import StateStore
from sandbox.docusign.envelopes import ds_time, recipients_view

ACCOUNT_CONFIGURATION_ID = 10_000_001
ENVELOPE_CONFIGURATION_ID = 0


class ConnectConfig(BaseModel):
    """The account-level Connect configuration and delivery policy (switchable at run time)."""

    url: str | None = None
    secrets: list[str] = Field(default_factory=lambda: ["sandbox-connect-secret"])
    deliver_twice: bool = False
    events: list[str] = Field(default_factory=lambda: ["envelope-completed"])
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


def event_message(
    event: str,
    envelope: dict[str, Any],
    *,
    account_id: str,
    user_id: str,
    configuration_id: int,
    generated_at: datetime,
) -> dict[str, Any]:
    """A JSON SIM message (``retryCount`` is set per attempt) with the envelope summary."""
    envelope_id = envelope["envelopeId"]
    uri = f"/envelopes/{envelope_id}"
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
        recipients=recipients_view(envelope, include_tabs=True),
        customFields={
            "textCustomFields": [dict(f) for f in envelope["customFields"]["textCustomFields"]],
            "listCustomFields": [dict(f) for f in envelope["customFields"]["listCustomFields"]],
        },
        envelopeDocuments=[
            {
                "documentId": "1",
                "documentIdGuid": str(uuid.uuid5(uuid.NAMESPACE_URL, envelope_id)),
                "name": "Master Subscription Agreement.pdf",
                "type": "content",
                "uri": f"{uri}/documents/1",
                "order": "1",
                "pages": "1",
            }
        ],
    )
    return {
        "event": event,
        "apiVersion": "v2.1",
        "uri": f"/restapi/v2.1/accounts/{account_id}/envelopes/{envelope_id}",
        "retryCount": 0,
        "configurationId": configuration_id,
        "generatedDateTime": ds_time(generated_at),
        "data": {
            "accountId": account_id,
            "userId": user_id,
            "envelopeId": envelope_id,
            "envelopeSummary": summary,
        },
    }


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
        url, configuration_id, signed = target
        message = event_message(
            event,
            envelope,
            account_id=self.account_id,
            user_id=self.user_id,
            configuration_id=configuration_id,
            generated_at=now,
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

    def _target(self, event: str, envelope: dict[str, Any]) -> tuple[str, int, bool] | None:
        own = envelope.get("eventNotification")
        if own:
            legacy = {
                f"envelope-{e['envelopeEventStatusCode'].lower()}"
                for e in own.get("envelopeEvents") or []
            }
            if event in {e.lower() for e in own.get("events") or []} | legacy:
                return own["url"], ENVELOPE_CONFIGURATION_ID, bool(own.get("includeHMAC"))
            return None
        if self.config.url and event in self.config.events:
            # An account-level Connect configuration in this sandbox always has HMAC enabled.
            return self.config.url, ACCOUNT_CONFIGURATION_ID, True
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
            body = json.dumps(
                {**record["message"], "retryCount": number - 1}, separators=(",", ":")
            ).encode()
            headers = {"Content-Type": "application/json", "User-Agent": "DocuSign-Connect/2.0"}
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
