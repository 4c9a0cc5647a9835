"""PooledSession answers what requests would, reading the proxy environment once per host."""

from __future__ import annotations

import pytest
import requests

from runtime.http import PooledSession

URLS = [
    "https://api.stripe.com/v1/customers",
    "https://internal.example/services/data",
    "http://127.0.0.1:8080/v1/invoices",
]


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example,127.0.0.1")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/bundle.pem")


@pytest.mark.usefixtures("proxy_env")
@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("verify", [None, True, False, "/custom/ca.pem"])
def test_same_settings_as_requests(url: str, verify: bool | str | None) -> None:
    ours = PooledSession().merge_environment_settings(url, {}, None, verify, None)
    theirs = requests.Session().merge_environment_settings(url, {}, None, verify, None)
    assert ours == theirs


@pytest.mark.usefixtures("proxy_env")
def test_proxy_applies_only_where_no_proxy_does_not() -> None:
    session = PooledSession()
    proxied = session.merge_environment_settings(URLS[0], {}, None, None, None)
    bypassed = session.merge_environment_settings(URLS[1], {}, None, None, None)
    assert proxied["proxies"]["https"] == "http://proxy.example:3128"
    assert "https" not in bypassed["proxies"]
    assert proxied["verify"] == "/etc/ssl/certs/bundle.pem"


@pytest.mark.usefixtures("proxy_env")
def test_environment_is_read_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    session = PooledSession()
    first = session.merge_environment_settings(URLS[0], {}, None, None, None)
    monkeypatch.setenv("HTTPS_PROXY", "http://elsewhere.example:8080")
    again = session.merge_environment_settings(URLS[0], {}, None, None, None)
    assert again["proxies"] == first["proxies"]
    # A host seen for the first time reads the environment as it is now.
    other = session.merge_environment_settings("https://hooks.example/x", {}, None, None, None)
    assert other["proxies"]["https"] == "http://elsewhere.example:8080"


@pytest.mark.usefixtures("proxy_env")
def test_explicit_proxies_win_and_untrusted_environment_is_ignored() -> None:
    session = PooledSession()
    explicit = {"https": "http://mine.example:1"}
    merged = session.merge_environment_settings(URLS[0], explicit, None, None, None)
    assert merged["proxies"]["https"] == "http://mine.example:1"
    session.trust_env = False
    untrusted = session.merge_environment_settings(URLS[0], {}, None, None, None)
    assert "https" not in untrusted["proxies"]


def test_pool_size_reaches_both_schemes() -> None:
    session = PooledSession(pool_size=24)
    for prefix in ("https://", "http://"):
        adapter = session.get_adapter(prefix + "host.example/")
        assert adapter._pool_maxsize == 24  # type: ignore[attr-defined]
