"""Fixtures for the Ironclad emulator and adapter tests.

``ironclad_url``: one emulator per module on an ephemeral port, reset before each test, with its
webhook subscribed to ``receiver``: a listener that records every delivery and answers with the
status the test sets. ``api``: the product's httpx client on the emulator with the sandbox API key.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from integrations.ironclad.client import IroncladApi
from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from qtc.models import PricedQuote
from sandbox.ironclad.app import SANDBOX_API_KEY, create_app
from sandbox.ironclad.webhooks import DeliveryPolicy
from sandbox.stripe.testing import serve_app

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = "sandbox-order-form"
CREATOR = "qtc-bot@sandbox.example"


@dataclass
class Receiver:
    """A webhook listener: records deliveries, answers ``statuses`` in turn, then 200."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            self.received.append({"headers": dict(request.headers), "body": body})
            status = self.statuses.pop(0) if self.statuses else 200
        return JSONResponse({}, status_code=status)

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.received]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])
    with serve_app(app) as url:
        receiver.url = f"{url}/hook"
        yield receiver


@pytest.fixture(scope="module")
def ironclad_emulator(receiver: Receiver) -> Iterator[str]:
    policy = DeliveryPolicy(initial_backoff_s=0.01, max_backoff_s=0.05, max_attempts=5)
    with serve_app(create_app(webhook_url=receiver.url, policy=policy)) as url:
        yield url


@pytest.fixture
def ironclad_url(ironclad_emulator: str, receiver: Receiver) -> str:
    httpx.post(f"{ironclad_emulator}/_sandbox/reset").raise_for_status()
    with receiver.lock:
        receiver.received.clear()
        receiver.statuses.clear()
    return ironclad_emulator


@pytest.fixture
async def api(ironclad_url: str) -> AsyncIterator[IroncladApi]:
    client = IroncladApi(ironclad_url, api_key=SANDBOX_API_KEY)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def priced() -> PricedQuote:
    """The phase-3 example: three SKUs plus an auto-added one-time SKU, priced now."""
    quote = json.loads((ROOT / "examples" / "quote-phase3.json").read_text())
    return price_quote(quote, load_catalog(ROOT / "catalog.toml"), datetime.now(UTC))
