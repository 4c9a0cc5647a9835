"""Serve an emulator app on an ephemeral loopback port for the length of a ``with`` block.

Used by the tests and reusable for any ASGI emulator::

    with serve_app(create_app()) as url:
        client = stripe.StripeClient("sk_test_sandbox", base_addresses={"api": url})
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from sandbox.stripe.app import create_app

STARTUP_TIMEOUT_S = 10.0


@contextmanager
def serve_app(app: ASGIApp) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread on 127.0.0.1:<free port>; yield its URL."""
    # Port 0: the OS picks a free port when uvicorn binds, so there is no window in which another
    # process could take it. (Handing uvicorn a pre-bound socket instead costs ~40 ms a request.)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the emulator did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT_S)


@contextmanager
def serve_stripe_emulator(
    state_file: Path | None = None,
    api_key: str = "sk_test_sandbox",
    clock: Callable[[], float] = time.time,
) -> Iterator[str]:
    """A fresh Stripe emulator on an ephemeral port; yields its base URL."""
    with serve_app(create_app(state_file, api_key, clock=clock)) as url:
        yield url
