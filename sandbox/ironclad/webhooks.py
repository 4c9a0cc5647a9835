"""Ironclad webhooks: event bodies, RSA signatures and background delivery with retries.

Every delivery carries ``X-Ironclad-Webhook-Event-Id`` and ``X-Ironclad-Webhook-Verification``, a
JSON object of ``nonce``, ``signAlgorithm``, ``signature`` and ``encoding``. The signature is
RSA (PKCS#1 v1.5) with SHA-256 over the event id, then the JSON body as sent, then the nonce, in
that order, base64-encoded; the public half of the key is what ``GET
/public/api/v1/webhooks/verification-key`` serves. A response other than 2xx is retried with
exponential backoff; 410 disables the webhook, as Ironclad does. Every attempt is recorded so a
test or an operator can see what was sent and what the listener answered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import BaseModel, ConfigDict, Field

from sandbox.common import StateStore

SIGN_ALGORITHM = "RSA-SHA256"
ENCODING = "base64"
EVENT_ID_HEADER = "X-Ironclad-Webhook-Event-Id"
VERIFICATION_HEADER = "X-Ironclad-Webhook-Verification"


def new_private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_key_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sign_event(private_pem: str, event_id: str, body: bytes, nonce: str) -> str:
    """The base64 RSA-SHA256 signature of ``event_id + body + nonce``."""
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signed = event_id.encode() + body + nonce.encode()
    return base64.b64encode(key.sign(signed, padding.PKCS1v15(), hashes.SHA256())).decode()


def verification_headers(private_pem: str, event_id: str, body: bytes) -> dict[str, str]:
    nonce = secrets.token_hex(16)
    verification = {
        "nonce": nonce,
        "signAlgorithm": SIGN_ALGORITHM,
        "signature": sign_event(private_pem, event_id, body, nonce),
        "encoding": ENCODING,
    }
    return {
        EVENT_ID_HEADER: event_id,
        VERIFICATION_HEADER: json.dumps(verification, separators=(",", ":")),
    }


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DeliveryPolicy(BaseModel):
    """How deliveries are retried (switchable at run time through ``POST /_sandbox/webhooks``)."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(11, ge=1, le=1000)
    initial_backoff_s: float = Field(0.2, ge=0, le=60)
    max_backoff_s: float = Field(5.0, ge=0, le=600)
    timeout_s: float = Field(10.0, gt=0, le=120)
    deliver_twice: bool = False

    def backoff(self, attempt: int) -> float:
        return float(min(self.initial_backoff_s * 2 ** (attempt - 1), self.max_backoff_s))


class WebhookDelivery:
    """Queues events in the state store per subscribed webhook and posts them in the background."""

    def __init__(self, store: StateStore, policy: DeliveryPolicy, company_id: str) -> None:
        self.store = store
        self.policy = policy
        self.company_id = company_id
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def publish(self, event: str, workflow: dict[str, Any], now: datetime) -> list[str]:
        """Queue ``event`` for every enabled webhook subscribed to it; return the delivery ids."""
        ids: list[str] = []
        for webhook in self.store.data["webhooks"].values():
            if webhook["status"] != "enabled":
                continue
            if event not in webhook["events"] and "*" not in webhook["events"]:
                continue
            body = {
                "companyID": self.company_id,
                "payload": {
                    "event": event,
                    "templateID": workflow["template"],
                    "workflowID": workflow["id"],
                },
                "timestamp": iso(now),
                "webhookID": webhook["id"],
            }
            event_id = f"webhookEvent{uuid.uuid4().hex}"
            for copy in range(2 if self.policy.deliver_twice else 1):
                delivery_id = f"dlv-{uuid.uuid4().hex}"
                self.store.data["deliveries"][delivery_id] = {
                    "id": delivery_id,
                    "eventId": event_id,
                    "event": event,
                    "workflowId": workflow["id"],
                    "webhookId": webhook["id"],
                    "url": webhook["targetURL"],
                    "copy": copy + 1,
                    "state": "pending",
                    "createdAt": iso(now),
                    "body": body,
                    "attempts": [],
                }
                ids.append(delivery_id)
        self.store.save()
        for delivery_id in ids:
            self._start(delivery_id)
        return ids

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
            body = json.dumps(record["body"], separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json", "User-Agent": "Ironclad-Webhooks"}
            # Signed with the key current at this attempt: after a rotation, retries carry the
            # new key's signature, as a listener that re-fetched the key expects.
            headers.update(
                verification_headers(self.store.data["signingKey"], record["eventId"], body)
            )
            started = time.monotonic()
            attempt: dict[str, Any] = {"attempt": number, "at": iso(datetime.now(UTC))}
            try:
                response = await self._client.post(
                    record["url"], content=body, headers=headers, timeout=self.policy.timeout_s
                )
                attempt["statusCode"] = response.status_code
            except httpx.HTTPError as exc:
                attempt["statusCode"] = None
                attempt["error"] = f"{type(exc).__name__}: {exc}"
            attempt["elapsedMs"] = round((time.monotonic() - started) * 1000, 1)
            record["attempts"].append(attempt)
            status = attempt["statusCode"]
            webhook = self.store.data["webhooks"].get(record["webhookId"])
            if status is not None and 200 <= status < 300:
                record["state"] = "delivered"
                if webhook is not None:
                    webhook["consecutiveFailureCount"] = 0
            elif status == 410:
                record["state"] = "failed"
                if webhook is not None:
                    webhook["status"] = "disabledBySystem"
                    webhook["statusLastUpdatedAt"] = iso(datetime.now(UTC))
                    webhook["statusLastUpdatedBy"] = "system"
            else:
                if webhook is not None:
                    webhook["consecutiveFailureCount"] += 1
                if number >= self.policy.max_attempts:
                    record["state"] = "failed"
            self.store.save()
            if record["state"] != "pending":
                return
            await asyncio.sleep(self.policy.backoff(number))

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
