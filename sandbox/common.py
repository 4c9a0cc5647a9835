"""Pieces every emulator shares: persisted state, run-time fault injection, body limits.

Each emulator is a Starlette app. Its state is a JSON-able dict kept in memory and, when a state
file is given, written through to disk after every mutating request so a restart loses nothing.
Faults are switchable at run time through ``POST /_sandbox/faults`` on each emulator.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

M = TypeVar("M", bound=BaseModel)


class StateStore:
    """A dict of state, optionally written through to a JSON file (atomic replace)."""

    def __init__(self, path: Path | None, initial: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self._initial = initial
        self.lock = threading.RLock()
        self.data: dict[str, Any] = initial()
        if path is not None and path.exists():
            self.data = json.loads(path.read_text(encoding="utf-8"))

    def save(self) -> None:
        if self.path is None:
            return
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.data, fh, separators=(",", ":"), default=str)
            os.replace(tmp, self.path)

    def reset(self) -> None:
        with self.lock:
            self.data = self._initial()
            self.save()


class FaultRule(BaseModel):
    """Faults for requests whose path matches ``path`` (a regular expression) and ``method``."""

    path: str = ".*"
    method: str | None = None
    rate_429: float = Field(0.0, ge=0, le=1)
    rate_500: float = Field(0.0, ge=0, le=1)
    retry_after_s: int = Field(1, ge=0)
    latency_ms: int = Field(0, ge=0, le=60_000)


class FaultConfig(BaseModel):
    rules: list[FaultRule] = Field(default_factory=list)
    seed: int | None = None


class Faults:
    """Run-time switchable fault injection; counts what it injected by kind."""

    def __init__(self) -> None:
        self.config = FaultConfig()
        self.injected: dict[str, int] = {"429": 0, "500": 0, "latency": 0}
        self._random = random.Random()

    def configure(self, config: FaultConfig) -> None:
        self.config = config
        self._random = random.Random(config.seed)

    def reset(self) -> None:
        self.configure(FaultConfig())
        self.injected = {"429": 0, "500": 0, "latency": 0}

    async def pick(self, method: str, path: str) -> tuple[str | None, FaultRule | None]:
        """Apply latency and return ``("429"|"500"|None, rule)`` for one request."""
        for rule in self.config.rules:
            if rule.method and rule.method.upper() != method.upper():
                continue
            if not re.search(rule.path, path):
                continue
            if rule.latency_ms:
                self.injected["latency"] += 1
                await asyncio.sleep(rule.latency_ms / 1000)
            roll = self._random.random()
            if roll < rule.rate_429:
                self.injected["429"] += 1
                return "429", rule
            if roll < rule.rate_429 + rule.rate_500:
                self.injected["500"] += 1
                return "500", rule
        return None, None


async def read_json_model(request: Request, model: type[M]) -> M:
    """Parse a control-endpoint body into ``model`` (raises pydantic.ValidationError)."""
    return model.model_validate_json(await request.body() or b"{}")


Handler = Callable[[Request], Awaitable[Response]]
