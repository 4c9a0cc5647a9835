"""HTTP connection pools sized for the worker's activity threads."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter


def mount_pools(session: requests.Session, size: int) -> requests.Session:
    """Keep up to ``size`` connections per host, one per activity thread.

    requests keeps 10 by default: with more threads than that, connections are discarded and
    reopened under load (with a TLS handshake each for Salesforce and Stripe).
    """
    adapter = HTTPAdapter(pool_connections=size, pool_maxsize=size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
