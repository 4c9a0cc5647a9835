"""The production DocuSign client: JWT grant, token reuse, against the emulator served over TLS.

The SDK always requests tokens from ``https://{oauth host}``, so this test serves its own
DocuSign emulator with a certificate from the sandbox CA and points the SDK's pool at that CA.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr
from temporalio.testing import ActivityEnvironment

from integrations.docusign.activities import DocusignESignature
from integrations.docusign.client import build_docusign_client
from qtc import ports
from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from runtime.settings import ApiPrincipal, Settings
from sandbox.docusign.app import create_app
from sandbox.tls import TlsFiles, ensure_certificates

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_certificates(tmp_path_factory.mktemp("docusign-tls"))


@pytest.fixture(scope="module")
def docusign_over_tls(tls: TlsFiles) -> Iterator[str]:
    """``127.0.0.1:<port>`` of a DocuSign emulator speaking HTTPS; stopped after the module."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    host = f"127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(),
            log_level="warning",
            ssl_certfile=str(tls.cert_file),
            ssl_keyfile=str(tls.key_file),
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield host
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def production_settings(host: str) -> Settings:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return Settings(
        env="production",
        stripe_api_key=SecretStr("sk_test_real_looking"),
        docusign_connect_secret=SecretStr("a-real-connect-secret"),
        salesforce_callout_secret=SecretStr("a-real-sf-secret"),
        provisioning_secret=SecretStr("a-real-provisioning-secret"),
        api_tokens={"t-1": ApiPrincipal(person="p@example.com", role="operator")},
        codec_enabled=False,
        docusign_base_path=f"https://{host}/restapi",
        docusign_oauth_host=host,
        docusign_private_key=SecretStr(pem),
    )


def stats(host: str, tls: TlsFiles) -> dict[str, Any]:
    trust = ssl.create_default_context(cafile=str(tls.ca_file))
    with httpx.Client(verify=trust, timeout=10) as client:
        body: dict[str, Any] = client.get(f"https://{host}/_sandbox/stats").json()
        return body


def test_a_production_worker_signs_in_with_a_jwt_grant_and_reuses_the_token(
    docusign_over_tls: str, tls: TlsFiles
) -> None:
    settings = production_settings(docusign_over_tls)
    client = build_docusign_client(settings)
    # The SDK trusts certifi's bundle by default; this test's server is signed by the sandbox CA.
    client.rest_client.pool_manager.connection_pool_kw["ca_certs"] = str(tls.ca_file)
    esign = DocusignESignature.from_settings(client, settings)
    quote = json.loads((ROOT / "examples" / "quote-phase3.json").read_text())
    priced = price_quote(quote, load_catalog(ROOT / "catalog.toml"), datetime.now(UTC))
    ask = ports.SendContractInput(deal_id=f"deal-jwt-{uuid.uuid4().hex[:8]}", priced=priced)
    before = stats(docusign_over_tls, tls)["tokens_issued"]

    first = ActivityEnvironment().run(esign.send_contract, ask)
    second = ActivityEnvironment().run(esign.send_contract, ask)

    assert first.status == "sent"
    assert second.envelope_id == first.envelope_id
    assert stats(docusign_over_tls, tls)["tokens_issued"] - before == 1
