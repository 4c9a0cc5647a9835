"""Ironclad settings: the sandbox key only in the sandbox, and a production deployment that does
not use Ironclad needs no Ironclad setting."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from integrations.ironclad.client import build_ironclad_api
from runtime.settings import Settings

PRODUCTION: dict[str, Any] = {
    "env": "production",
    "stripe_api_key": "sk_live_real",
    "docusign_connect_secret": "real-connect",
    "salesforce_callout_secret": "real-sf",
    "provisioning_secret": "real-provisioning",
    "api_tokens": {"real-token": {"person": "p@example.com", "role": "operator"}},
    "codec_enabled": False,
}


def test_production_without_ironclad_needs_no_ironclad_setting() -> None:
    settings = Settings(**PRODUCTION)
    assert settings.ironclad_api_key is None
    with pytest.raises(ValueError, match="QTC_IRONCLAD_API_KEY"):
        build_ironclad_api(settings)


def test_the_sandbox_ironclad_key_is_refused_outside_the_sandbox() -> None:
    with pytest.raises(ValidationError, match="QTC_IRONCLAD_API_KEY"):
        Settings(**PRODUCTION, esign="ironclad", ironclad_api_key="sandbox-ironclad-key")


async def test_oauth_client_credentials_are_chosen_when_a_client_id_is_set() -> None:
    settings = Settings(
        **PRODUCTION,
        esign="ironclad",
        ironclad_client_id="client",
        ironclad_client_secret="secret",
        ironclad_api_key="a-real-key",
    )
    api = build_ironclad_api(settings)
    assert api.uses_oauth
    await api.aclose()
    with pytest.raises(ValueError, match="QTC_IRONCLAD_CLIENT_SECRET"):
        build_ironclad_api(Settings(**PRODUCTION, ironclad_client_id="client"))


async def test_the_sandbox_uses_the_sandbox_key_by_default() -> None:
    api = build_ironclad_api(Settings(env="sandbox"))
    assert not api.uses_oauth
    await api.aclose()
