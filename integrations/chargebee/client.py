"""The Chargebee client a worker process shares."""

from __future__ import annotations

import threading
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
from chargebee import Chargebee, http_request
from chargebee.retry_config import RetryConfig

from runtime.settings import Settings

_pool_lock = threading.Lock()
_pool: httpx.Client | None = None


def _shared_http_client(pool_size: int) -> httpx.Client:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = httpx.Client(
                limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
                # Chargebee authenticates every request; no cookie may carry state between
                # deals or threads.
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            )
        return _pool


def _pooled_request(request_args: dict[str, Any]) -> Any:
    """The SDK's one request, sent on the process's pooled connections.

    The SDK (3.x) opens a new ``httpx.Client`` for every request: a fresh TLS context (its CA
    bundle loaded from disk, ~100 ms of CPU here) and a new connection each time, where one pooled
    client keeps connections alive. Everything else (URL, headers, timeouts, error replies) is
    the SDK's own.
    """
    request_args.pop("verify", None)
    assert _pool is not None
    response = _pool.request(**request_args)
    return http_request._handle_response(request_args, response)


def chargebee_client(
    *,
    api_key: str,
    site: str,
    api_base: str | None = None,
    timeout_s: float = 20.0,
    pool_size: int = 32,
) -> Chargebee:
    """The SDK client for one Chargebee site.

    ``api_base`` (e.g. ``http://127.0.0.1:12117``) replaces the SDK's
    ``https://{site}.chargebee.com`` where the API lives elsewhere (the sandbox's emulator).

    The SDK's own retries stay off: Temporal owns retries, so one attempt is one request,
    classified by the activity and retried with the workflow's backoff and Chargebee's
    ``Retry-After``.
    """
    # With this class-wide flag on, the SDK forces https and trusts only the CA bundle it ships;
    # off, httpx verifies https with its default bundle (still verified) and an http base works.
    Chargebee.verify_ca_certs = False
    _shared_http_client(pool_size)
    # The SDK sends through this module-level function and offers no transport of its own to
    # inject; the tests check that requests go through the pool.
    http_request._make_request = _pooled_request
    protocol = "http" if api_base is not None and api_base.startswith("http://") else "https"
    client = Chargebee(
        api_key=api_key,
        site=site,
        protocol=protocol,
        connection_time_out=int(max(timeout_s, 1)),
        read_time_out=int(max(timeout_s, 1)),
    )
    client.env.retry_config = RetryConfig(enabled=False)
    if api_base is not None:
        client.env.api_endpoint = f"{api_base.rstrip('/')}/api/{client.env.API_VERSION}"
    return client


def build_chargebee_client(settings: Settings) -> Chargebee:
    """The one Chargebee client of a worker process, from settings."""
    return chargebee_client(
        api_key=settings.chargebee_api_key.get_secret_value(),
        site=settings.chargebee_site,
        api_base=settings.chargebee_api_base or None,
        timeout_s=settings.chargebee_timeout_seconds,
        pool_size=settings.worker_activity_threads,
    )
