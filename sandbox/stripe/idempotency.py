"""Stripe's idempotency rules for POST requests.

Same key + same endpoint + same parameters replays the stored response byte for byte (with
``Idempotent-Replayed: true``); same key with other parameters or another endpoint is a 400
``idempotency_error``; a key whose first request is still running is a 409. Keys live 24 hours.
Only results of requests that began executing are stored: a request refused by validation, an
injected fault or the rate limiter leaves the key free, as on Stripe.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.stripe.errors import (
    idempotency_in_flight,
    idempotency_mismatch,
    idempotency_other_endpoint,
)

KEY_TTL_S = 24 * 3600
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: str
    request_id: str


def fingerprint(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


class IdempotencyKeys:
    """Keys kept in the persisted state dict; in-flight keys only in memory."""

    def __init__(self, state: Callable[[], dict[str, Any]]) -> None:
        self._state = state
        self.in_flight: set[str] = set()

    @property
    def state(self) -> dict[str, Any]:
        return self._state()

    def begin(
        self, key: str, endpoint: str, params: dict[str, Any], now: int
    ) -> StoredResponse | None:
        """Return the stored response to replay, or mark ``key`` in flight (raises on conflicts)."""
        self._purge(now)
        entry = self.state.get(key)
        if entry is not None:
            if entry["endpoint"] != endpoint:
                raise idempotency_other_endpoint(key, entry["endpoint"], endpoint)
            if entry["fingerprint"] != fingerprint(params):
                raise idempotency_mismatch(key)
            return StoredResponse(entry["status"], entry["body"], entry["request_id"])
        if key in self.in_flight:
            raise idempotency_in_flight()
        self.in_flight.add(key)
        return None

    def finish(
        self,
        key: str,
        endpoint: str,
        params: dict[str, Any],
        now: int,
        response: StoredResponse | None,
    ) -> None:
        """Store ``response`` for ``key`` (None: the request never executed) and release it."""
        self.in_flight.discard(key)
        if response is not None:
            self.state[key] = {
                "endpoint": endpoint,
                "fingerprint": fingerprint(params),
                "status": response.status,
                "body": response.body,
                "request_id": response.request_id,
                "created": now,
            }

    def _purge(self, now: int) -> None:
        # Keys are stored in the order they were made, so the expired ones lead: stop at the
        # first live one instead of reading every key on every request.
        expired = []
        for key, entry in self.state.items():
            if entry["created"] + KEY_TTL_S > now:
                break
            expired.append(key)
        for key in expired:
            del self.state[key]
