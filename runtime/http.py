"""The requests session of the worker's blocking vendor SDKs (Stripe, simple-salesforce)."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies


class PooledSession(requests.Session):
    """Connections kept per activity thread; the proxy environment read once per host.

    Connections: requests keeps 10 per host by default; with more threads than that, connections
    are discarded and reopened under load (with a TLS handshake each for Salesforce and Stripe).

    Proxies: requests works out ``HTTP(S)_PROXY`` and ``NO_PROXY`` for every request, which walks
    the whole process environment each time (about 80 microseconds, a few percent of the worker's
    CPU at saturation, bench/RESULTS.md). The answer depends only on the host and the environment,
    which a worker does not change while it runs, so it is kept per host. The CA-bundle variables
    are still read per request, as requests does.
    """

    def __init__(self, pool_size: int = 10) -> None:
        super().__init__()
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
        self.mount("https://", adapter)
        self.mount("http://", adapter)
        # (scheme, host, no_proxy) -> proxies; a race only computes the same answer twice.
        self._environ_proxies: dict[tuple[str, str, str | None], dict[str, str]] = {}

    def merge_environment_settings(
        self,
        url: str | bytes | None,
        proxies: Any,
        stream: Any,
        verify: Any,
        cert: Any,
    ) -> Any:  # requests.sessions._Settings, a TypedDict of the stubs only
        if not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        target = url.decode() if isinstance(url, bytes) else str(url)
        merged = dict(proxies or {})
        no_proxy = merged.get("no_proxy")
        parts = urlsplit(target)
        key = (parts.scheme, parts.netloc, no_proxy)
        environ = self._environ_proxies.get(key)
        if environ is None:
            environ = self._environ_proxies[key] = get_environ_proxies(target, no_proxy=no_proxy)
        for scheme, proxy in environ.items():
            merged.setdefault(scheme, proxy)
        if verify is True or verify is None:
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            verify = bundle or verify
        return {
            "proxies": merge_setting(merged, self.proxies),
            "stream": merge_setting(stream, self.stream),
            "verify": merge_setting(verify, self.verify),
            "cert": merge_setting(cert, self.cert),
        }
