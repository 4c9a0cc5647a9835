"""Serve the Chargebee emulator on an ephemeral loopback port, and point the SDK at it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox.chargebee.app import create_app
from sandbox.stripe.testing import serve_app

API_KEY = "test_sandbox_chargebee"
SITE = "sandbox"


@contextmanager
def serve_chargebee_emulator(
    state_file: Path | None = None,
    api_key: str = API_KEY,
    clock: Callable[[], float] = time.time,
) -> Iterator[str]:
    """A fresh Chargebee emulator on an ephemeral port; yields its base URL (no ``/api/v2``)."""
    with serve_app(create_app(state_file, api_key, clock=clock)) as url:
        yield url
