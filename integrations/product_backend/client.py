"""The HTTP client a worker process shares for the product backend."""

from __future__ import annotations

import httpx

from runtime.settings import Settings


def build_provisioning_client(settings: Settings) -> httpx.Client:
    """The worker's one HTTP client for the product backend (pooled, with timeouts)."""
    return httpx.Client(timeout=httpx.Timeout(settings.provisioning_timeout_s, connect=5.0))
