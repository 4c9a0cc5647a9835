"""How every process reaches Temporal: an environment-configuration profile, mTLS settings, and
clear errors for incomplete TLS settings (never a half-configured connection)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.service import TLSConfig
from temporalio.testing import WorkflowEnvironment

from runtime.settings import Settings
from runtime.temporal import connect, tls_for


async def test_a_temporal_profile_says_where_to_connect(
    env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "temporal.toml"
    target = env.client.service_client.config.target_host
    config.write_text(f'[profile.ci]\naddress = "{target}"\nnamespace = "default"\n')
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))

    client = await connect(Settings(temporal_address="127.0.0.1:1", temporal_profile="ci"))

    assert client.namespace == "default"
    assert await client.service_client.check_health()


def test_a_client_certificate_makes_the_connection_mutual_tls(tmp_path: Path) -> None:
    cert, key, ca = (tmp_path / name for name in ("client.pem", "client.key", "ca.pem"))
    cert.write_bytes(b"-----BEGIN CERTIFICATE-----\ncert\n")
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nkey\n")
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nca\n")

    tls = tls_for(
        Settings(temporal_tls_cert=cert, temporal_tls_key=key, temporal_tls_ca=ca), api_key=None
    )

    assert isinstance(tls, TLSConfig)
    assert tls.client_cert == cert.read_bytes()
    assert tls.client_private_key == key.read_bytes()
    assert tls.server_root_ca_cert == ca.read_bytes()


def test_a_certificate_without_its_key_is_refused_by_name(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_bytes(b"cert")

    with pytest.raises(ValueError, match="QTC_TEMPORAL_TLS_KEY"):
        tls_for(Settings(temporal_tls_cert=cert), api_key=None)


def test_an_api_key_implies_tls_and_nothing_else_does() -> None:
    assert tls_for(Settings(), api_key="key") is True
    assert tls_for(Settings(), api_key=None) is False
    assert tls_for(Settings(temporal_tls=True), api_key=None) is True
