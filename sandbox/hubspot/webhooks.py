"""HubSpot's webhooks: ``deal.propertyChange`` events, batched, signed (v1 and v3) and retried.

A change of a subscribed property becomes one event (``eventId``, ``subscriptionId``, ``portalId``,
``appId``, ``occurredAt`` in epoch milliseconds, ``subscriptionType``, ``attemptNumber``,
``objectId``, ``propertyName``, ``propertyValue``, ``changeSource``). Pending events are sent to the
app's target URL in batches of up to 100 per request, as HubSpot does. A request is signed with
``X-HubSpot-Signature-v3`` (base64 HMAC-SHA256 of method + URI + body + timestamp, keyed with the
app's client secret) and ``X-HubSpot-Request-Timestamp``, plus the legacy v1 signature. A batch the
listener does not answer with 2xx (or that times out) is retried with backoff; every event keeps its
``eventId`` across attempts and carries the attempt number.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from sandbox.common import StateStore
from sandbox.hubspot.schema import ObjectType

MAX_EVENTS_PER_REQUEST = 100


class Subscription(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    eventType: str = "deal.propertyChange"
    propertyName: str | None = "dealstage"
    active: bool = True


class WebhookConfig(BaseModel):
    """The app's webhook settings and the delivery policy (switchable at run time)."""

    model_config = ConfigDict(extra="forbid")

    target_url: str | None = None
    client_secret: str = "sandbox-hubspot-secret"
    app_id: int = 2_000_001
    subscriptions: list[Subscription] = Field(default_factory=lambda: [Subscription(id=3_000_001)])
    max_events_per_request: int = Field(MAX_EVENTS_PER_REQUEST, ge=1, le=MAX_EVENTS_PER_REQUEST)
    # HubSpot's default concurrency limit per app is 10 requests in flight.
    max_concurrent_requests: int = Field(10, ge=1, le=1000)
    # HubSpot retries for up to a day; the sandbox keeps the count and shortens the waits.
    max_attempts: int = Field(10, ge=1, le=1000)
    initial_backoff_s: float = Field(0.2, ge=0, le=60)
    max_backoff_s: float = Field(5.0, ge=0, le=600)
    timeout_s: float = Field(5.0, gt=0, le=120)  # HubSpot waits 5 s for an answer
    # Events that arrive within this window of each other go out in one request.
    batch_window_s: float = Field(0.02, ge=0, le=5)
    deliver_twice: bool = False

    def backoff(self, attempt: int) -> float:
        return float(min(self.initial_backoff_s * 2 ** (attempt - 1), self.max_backoff_s))


class WebhookUpdate(BaseModel):
    """Body of ``POST /_sandbox/webhooks``: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    target_url: str | None = None
    client_secret: str | None = Field(None, min_length=1)
    subscriptions: list[Subscription] | None = None
    max_events_per_request: int | None = Field(None, ge=1, le=MAX_EVENTS_PER_REQUEST)
    max_concurrent_requests: int | None = Field(None, ge=1, le=1000)
    max_attempts: int | None = Field(None, ge=1, le=1000)
    initial_backoff_s: float | None = Field(None, ge=0, le=60)
    max_backoff_s: float | None = Field(None, ge=0, le=600)
    timeout_s: float | None = Field(None, gt=0, le=120)
    batch_window_s: float | None = Field(None, ge=0, le=5)
    deliver_twice: bool | None = None

    def apply(self, config: WebhookConfig) -> WebhookConfig:
        changes = {name: getattr(self, name) for name in self.model_fields_set}
        return WebhookConfig.model_validate({**config.model_dump(), **changes})


def v3_signature(secret: str, method: str, uri: str, body: bytes, timestamp_ms: str) -> str:
    """``X-HubSpot-Signature-v3``: base64(HMAC-SHA256(secret, method + uri + body + timestamp))."""
    source = method.encode() + uri.encode() + body + timestamp_ms.encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


def v1_signature(secret: str, body: bytes) -> str:
    """The legacy ``X-HubSpot-Signature`` (v1): hex SHA-256 of secret + body."""
    return hashlib.sha256(secret.encode() + body).hexdigest()


class WebhookDelivery:
    """Queues events in the state store and posts them in batches from background tasks.

    Events live in ``store.data["webhook_events"]`` (id -> record) and requests in
    ``store.data["webhook_requests"]`` (what was sent, when, and what the listener answered).
    """

    def __init__(self, store: StateStore, config: WebhookConfig, portal_id: int) -> None:
        self.store = store
        self.config = config
        self.portal_id = portal_id
        self._wake: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None
        self._slots_size = 0

    @property
    def events(self) -> dict[str, dict[str, Any]]:
        return self.store.data.setdefault("webhook_events", {})

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.store.data.setdefault("webhook_requests", [])

    def on_change(
        self,
        type_: ObjectType,
        obj: dict[str, Any],
        name: str,
        old: str | None,
        new: str | None,
    ) -> None:
        """A property changed: queue one event per matching active subscription."""
        if self.config.target_url is None:
            return
        event_type = f"{type_.singular}.propertyChange"
        now_ms = int(time.time() * 1000)
        queued = False
        for sub in self.config.subscriptions:
            if not sub.active or sub.eventType != event_type or sub.propertyName != name:
                continue
            for _copy in range(2 if self.config.deliver_twice else 1):
                with self.store.lock:
                    event_id = int(self.store.data.get("next_event_id", 1_000_000_001))
                    self.store.data["next_event_id"] = event_id + 1
                    self.events[str(event_id)] = {
                        "event": {
                            "eventId": event_id,
                            "subscriptionId": sub.id,
                            "portalId": self.portal_id,
                            "appId": self.config.app_id,
                            "occurredAt": now_ms,
                            "subscriptionType": event_type,
                            "attemptNumber": 0,
                            "objectId": int(obj["id"]),
                            "propertyName": name,
                            "propertyValue": new or "",
                            "changeSource": "INTEGRATION",
                            "sourceId": f"{self.config.app_id}",
                        },
                        "state": "pending",
                        "attempts": 0,
                        "due": 0.0,
                    }
                queued = True
        if queued:
            self.store.save()
            self._kick()

    def _kick(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): picked up by ``start`` later
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    def start(self) -> None:
        """Resume events still pending from a previous run (state written through to disk)."""
        for record in self.events.values():
            if record["state"] in ("pending", "sending"):
                # ``due`` is a monotonic time of the previous process: meaningless now.
                record["state"], record["due"] = "pending", 0.0
        if any(r["state"] == "pending" for r in self.events.values()):
            self._kick()

    async def _run(self) -> None:
        assert self._wake is not None
        await asyncio.sleep(self.config.batch_window_s)
        while True:
            pending = [r for r in self.events.values() if r["state"] == "pending"]
            if not pending:
                self._wake.clear()
                await self._wake.wait()
                await asyncio.sleep(self.config.batch_window_s)
                continue
            now = time.monotonic()
            ready = [r for r in pending if r["due"] <= now]
            if not ready:
                wait = min(r["due"] for r in pending) - now
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                continue
            size = self.config.max_events_per_request
            for start in range(0, len(ready), size):
                batch = ready[start : start + size]
                for record in batch:
                    record["state"] = "sending"
                task = asyncio.get_running_loop().create_task(self._send(batch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _slot(self) -> asyncio.Semaphore:
        if self._slots is None or self._slots_size != self.config.max_concurrent_requests:
            self._slots_size = self.config.max_concurrent_requests
            self._slots = asyncio.Semaphore(self._slots_size)
        return self._slots

    async def _send(self, batch: list[dict[str, Any]]) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient()
        url = self.config.target_url
        events = [{**r["event"], "attemptNumber": r["attempts"]} for r in batch]
        body = json.dumps(events, separators=(",", ":")).encode()
        timestamp = str(int(time.time() * 1000))
        secret = self.config.client_secret
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/)",
            "X-HubSpot-Signature": v1_signature(secret, body),
            "X-HubSpot-Signature-Version": "v1",
            "X-HubSpot-Request-Timestamp": timestamp,
            "X-HubSpot-Signature-v3": v3_signature(secret, "POST", url or "", body, timestamp),
        }
        record: dict[str, Any] = {
            "at": datetime.now(UTC).isoformat(),
            "url": url,
            "eventIds": [e["eventId"] for e in events],
            "attemptNumbers": [e["attemptNumber"] for e in events],
        }
        started = time.monotonic()
        async with self._slot():
            try:
                if url is None:
                    raise httpx.InvalidURL("no target URL configured")
                response = await self._client.post(
                    url, content=body, headers=headers, timeout=self.config.timeout_s
                )
                record["statusCode"] = response.status_code
                record["response"] = response.text[:2000]
            except httpx.HTTPError as exc:
                record["statusCode"] = None
                record["error"] = f"{type(exc).__name__}: {exc}"
        record["elapsedMs"] = round((time.monotonic() - started) * 1000, 1)
        ok = record["statusCode"] is not None and 200 <= record["statusCode"] < 300
        with self.store.lock:
            self.requests.append(record)
            for event in batch:
                event["attempts"] += 1
                if ok:
                    event["state"] = "delivered"
                elif event["attempts"] >= self.config.max_attempts:
                    event["state"] = "failed"
                else:
                    event["state"] = "pending"
                    event["due"] = time.monotonic() + self.config.backoff(event["attempts"])
        self.store.save()
        if not ok and self._wake is not None:
            self._wake.set()

    async def aclose(self) -> None:
        tasks = [*self._tasks, *([self._runner] if self._runner else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._runner = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def summary(self) -> dict[str, int]:
        counts = {"pending": 0, "sending": 0, "delivered": 0, "failed": 0}
        for record in self.events.values():
            counts[record["state"]] += 1
        counts["requests"] = len(self.requests)
        return counts
