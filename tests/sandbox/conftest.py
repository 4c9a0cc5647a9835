"""Fixtures for the Stripe emulator tests.

``stripe_emulator_url``: one emulator per session on an ephemeral port (uvicorn thread).
``stripe_url``: its URL after a reset of state and faults; ``stripe_client``: the real SDK on it.
``stripe_clock`` / ``stripe_clocked_client``: a separate emulator whose clock the test moves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import stripe

from sandbox.stripe.testing import serve_stripe_emulator

STRIPE_KEY = "sk_test_sandbox"


@pytest.fixture(scope="session")
def stripe_emulator_url() -> Iterator[str]:
    with serve_stripe_emulator(api_key=STRIPE_KEY) as url:
        yield url


def make_stripe_client(
    url: str, *, max_network_retries: int = 0, timeout_s: float = 30.0, api_key: str = STRIPE_KEY
) -> stripe.StripeClient:
    """The real SDK against the emulator; no SDK retries unless asked, so tests see each reply."""
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": url},
        max_network_retries=max_network_retries,
        http_client=stripe.RequestsClient(timeout=timeout_s),
    )


@pytest.fixture
def stripe_url(stripe_emulator_url: str) -> str:
    """The session emulator's URL, with its state and faults reset for this test."""
    httpx.post(f"{stripe_emulator_url}/_sandbox/reset").raise_for_status()
    return stripe_emulator_url


@pytest.fixture
def stripe_client(stripe_url: str) -> stripe.StripeClient:
    return make_stripe_client(stripe_url)


def raw_params(params: dict[str, Any]) -> Any:
    """Parameters passed to the SDK untyped: deliberately wrong ones, or the legacy phase
    ``iterations`` that SDK 16.1's TypedDicts no longer list."""
    return params


@dataclass
class StripeClock:
    """A clock the test moves; the emulator reads it on every request."""

    now: float

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class ClockedStripe:
    url: str
    clock: StripeClock
    client: stripe.StripeClient


@pytest.fixture
def stripe_clocked() -> Iterator[ClockedStripe]:
    clock = StripeClock(time.time())
    with serve_stripe_emulator(api_key=STRIPE_KEY, clock=clock) as url:
        yield ClockedStripe(url, clock, make_stripe_client(url))
