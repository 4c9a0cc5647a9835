"""The Chargebee client a worker process shares."""

from __future__ import annotations

from chargebee import Chargebee
from chargebee.retry_config import RetryConfig


def chargebee_client(
    *, api_key: str, site: str, api_base: str | None = None, timeout_s: float = 20.0
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
    protocol = "https"
    if api_base is not None and api_base.startswith("http://"):
        protocol = "http"
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
