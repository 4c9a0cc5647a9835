"""The HubSpot v3 signature check against the official SDK's own signer, and the settings that
refuse HubSpot's sandbox credentials only where HubSpot is used."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from hubspot.utils.signature import Signature
from pydantic import SecretStr, ValidationError

from integrations.hubspot.webhook import (
    MalformedEvents,
    WebhookSignatureError,
    parse_events,
    signed_uri,
    verify_v3,
)
from runtime.settings import Settings

SECRET = "client-secret"
URI = "https://qtc.example.com/webhooks/hubspot"
BODY = json.dumps(
    [{"eventId": 1, "subscriptionType": "deal.propertyChange", "objectId": 7}]
).encode()


def sdk_signature(uri: str, timestamp: str, secret: str = SECRET, body: bytes = BODY) -> str:
    return Signature.get_signature(
        secret, body.decode(), "v3", http_uri=uri, http_method="POST", timestamp=timestamp
    )


def verify(*, clock_offset_ms: int = 0, **overrides: Any) -> None:
    """Verify a request signed now, checked ``clock_offset_ms`` later (or earlier)."""
    now = int(time.time() * 1000)
    values: dict[str, Any] = {
        "method": "POST",
        "uri": URI,
        "body": BODY,
        "timestamp": str(now),
        "signature": sdk_signature(URI, str(now)),
        "tolerance_s": 300,
        "now_ms": now + clock_offset_ms,
    }
    values.update(overrides)
    secrets = values.pop("secrets", [SECRET])
    verify_v3(secrets, **values)


def test_a_request_signed_by_hubspots_own_signer_is_accepted() -> None:
    verify()


def test_a_rotated_secret_is_accepted_while_both_are_configured() -> None:
    verify(secrets=["new-secret", SECRET])


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"secrets": ["other"]}, "does not match"),
        ({"uri": URI + "?x=1"}, "does not match"),
        ({"body": BODY + b" "}, "does not match"),
        ({"signature": None}, "required"),
        ({"timestamp": "soon"}, "epoch milliseconds"),
        ({"clock_offset_ms": 301_000}, "older than 300 s"),
        ({"clock_offset_ms": -301_000}, "future"),
    ],
)
def test_forged_stale_or_incomplete_requests_are_refused(
    overrides: dict[str, Any], reason: str
) -> None:
    with pytest.raises(WebhookSignatureError, match=reason):
        verify(**overrides)


def test_the_signed_uri_is_the_public_one_with_hubspots_characters_decoded() -> None:
    assert signed_uri("https://qtc.example.com/", "/webhooks/hubspot", "a=b%3Ac%2Fd%20e") == (
        "https://qtc.example.com/webhooks/hubspot?a=b:c/d%20e"
    )


def test_events_must_be_an_array_of_hubspot_events() -> None:
    assert [e.object_id for e in parse_events(BODY)] == [7]
    for body in (b"{}", b"[{}]", b'[{"eventId": 1, "subscriptionType": "x", "objectId": 0}]'):
        with pytest.raises(MalformedEvents):
            parse_events(body)


def test_hubspots_sandbox_credentials_are_refused_only_where_hubspot_is_used() -> None:
    production: dict[str, Any] = {
        "_env_file": None,
        "env": "production",
        "stripe_api_key": SecretStr("sk_live_" + os.urandom(8).hex()),
        "docusign_connect_secret": SecretStr(os.urandom(8).hex()),
        "salesforce_callout_secret": SecretStr(os.urandom(8).hex()),
        "provisioning_secret": SecretStr(os.urandom(8).hex()),
        "api_tokens": {os.urandom(8).hex(): {"person": "ops@corp.example", "role": "operator"}},
        "codec_enabled": False,
    }
    Settings(**production)
    with pytest.raises(ValidationError) as refused:
        Settings(**production, crm="hubspot")
    assert "QTC_HUBSPOT_ACCESS_TOKEN" in str(refused.value)
    assert "QTC_HUBSPOT_CLIENT_SECRET" in str(refused.value)
    real = Settings(
        **production,
        crm="hubspot",
        hubspot_access_token=SecretStr("pat-na1-" + os.urandom(8).hex()),
        hubspot_client_secret=SecretStr(os.urandom(8).hex()),
    )
    assert not real.hubspot_creates_properties
