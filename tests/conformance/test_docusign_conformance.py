"""Every eSignature route of the DocuSign emulator, driven through the official SDK, answers with
bodies that match DocuSign's own definitions (as generated into ``docusign_esign`` from its
OpenAPI document): the definition each SDK call deserializes into, or ``errorDetails``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from docusign_esign import (
    ApiClient,
    CustomFields,
    EnvelopeDefinition,
    EnvelopesApi,
    Tabs,
    TemplateRole,
    Text,
    TextCustomField,
)
from docusign_esign.client.api_exception import ApiException
from docusign_esign.models import Envelope
from starlette.routing import Route

from sandbox.docusign import create_app
from sandbox.docusign.app import SANDBOX_TOKEN
from sandbox.docusign.envelopes import SANDBOX_TEMPLATE_ID
from sandbox.stripe.testing import serve_app
from tests.conformance.recording import Exchange, Recorder
from tests.conformance.vendor_models import DocuSignSchemas

ACCOUNT = "sandbox-account"
API = f"/restapi/v2.1/accounts/{ACCOUNT}"
MISSING = "00000000-0000-0000-0000-000000000000"

# The definition each route answers with, as the SDK's EnvelopesApi declares it.
MODELS = {
    ("POST", "/envelopes"): "EnvelopeSummary",
    ("GET", "/envelopes"): "EnvelopesInformation",
    ("GET", "/envelopes/{envelope_id}"): "Envelope",
    ("PUT", "/envelopes/{envelope_id}"): "EnvelopeUpdateSummary",
    ("GET", "/envelopes/{envelope_id}/custom_fields"): "CustomFieldsEnvelope",
    ("GET", "/envelopes/{envelope_id}/recipients"): "Recipients",
}
# The OAuth service is not part of the eSignature document; the SDK's OAuthToken and
# OAuthUserInfo take exactly these properties.
OAUTH: dict[str, dict[str, Any]] = {
    "/oauth/token": {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in"],
        "additionalProperties": False,
        "properties": {
            "access_token": {"type": "string"},
            "token_type": {"const": "Bearer"},
            "expires_in": {"type": "integer"},
            "refresh_token": {"type": "string"},
            "scope": {"type": "string"},
            "data": {},
        },
    },
    "/oauth/userinfo": {
        "type": "object",
        "required": ["sub", "accounts"],
        "additionalProperties": False,
        "properties": {
            "sub": {"type": "string"},
            "email": {"type": "string"},
            "name": {"type": "string"},
            "given_name": {"type": "string"},
            "family_name": {"type": "string"},
            "created": {"type": "string"},
            "accounts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["account_id", "is_default", "account_name", "base_uri"],
                    "additionalProperties": False,
                    "properties": {
                        "account_id": {"type": "string"},
                        "is_default": {"type": "boolean"},
                        "account_name": {"type": "string"},
                        "base_uri": {"type": "string"},
                        "organization": {"type": "object"},
                    },
                },
            },
        },
    },
}


def _definition(status: str) -> EnvelopeDefinition:
    return EnvelopeDefinition(
        template_id=SANDBOX_TEMPLATE_ID,
        status=status,
        template_roles=[
            TemplateRole(
                role_name="Signer",
                name="Jane Doe",
                email="jane@acme.example",
                tabs=Tabs(text_tabs=[Text(tab_label="customer_legal_name", value="Acme")]),
            )
        ],
        custom_fields=CustomFields(
            text_custom_fields=[TextCustomField(name="opportunity_id", value="006A", show="false")]
        ),
    )


def _assertion(host: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    now = int(time.time())
    claims = {
        "iss": "integration-key",
        "sub": "sandbox-user",
        "aud": host,
        "iat": now,
        "exp": now + 600,
        "scope": "signature impersonation",
    }
    return jwt.encode(claims, pem, algorithm="RS256")


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[list[Exchange], list[Route]]]:
    app = create_app()
    recorder = Recorder(app)
    with serve_app(recorder) as url:
        client = ApiClient(host=f"{url}/restapi")
        client.set_default_header("Authorization", f"Bearer {SANDBOX_TOKEN}")
        api = EnvelopesApi(client)
        sent = api.create_envelope(ACCOUNT, envelope_definition=_definition("sent"))
        draft = api.create_envelope(ACCOUNT, envelope_definition=_definition("created"))
        api.get_envelope(ACCOUNT, sent.envelope_id, include="recipients,custom_fields")
        api.list_custom_fields(ACCOUNT, sent.envelope_id)
        api.list_recipients(ACCOUNT, sent.envelope_id, include_tabs="true")
        api.update(ACCOUNT, draft.envelope_id, envelope=Envelope(status="sent"))
        api.update(
            ACCOUNT, sent.envelope_id, envelope=Envelope(status="voided", voided_reason="lost")
        )
        api.list_status_changes(ACCOUNT, from_date="2020-01-01", include="custom_fields")
        api.list_status_changes(ACCOUNT, envelope_ids=MISSING)
        for call in (
            lambda: api.get_envelope(ACCOUNT, MISSING),
            lambda: api.get_envelope(ACCOUNT, "not-a-guid"),
            lambda: api.update(ACCOUNT, draft.envelope_id, envelope=Envelope(status="created")),
        ):
            with pytest.raises(ApiException):
                call()
        host = url.removeprefix("http://")
        httpx.post(
            f"{url}/oauth/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": _assertion(host),
            },
        ).raise_for_status()
        httpx.get(
            f"{url}/oauth/userinfo", headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}
        ).raise_for_status()
    routes = [r for r in app.routes if isinstance(r, Route) and not r.path.startswith("/_")]
    yield recorder.exchanges, routes


def _model_of(exchange: Exchange) -> str | None:
    if not exchange.path.startswith(API):
        return None
    tail = exchange.path.removeprefix(API)
    parts = tail.split("/")
    if len(parts) >= 3:
        parts[2] = "{envelope_id}"
    return MODELS.get((exchange.method, "/".join(parts)))


def test_every_esignature_and_oauth_route_was_driven(
    recorded: tuple[list[Exchange], list[Route]],
) -> None:
    exchanges, routes = recorded
    answered = {(e.method, e.path) for e in exchanges if e.status < 300}
    for route in routes:
        for method in route.methods or ():
            if method == "HEAD":
                continue
            assert any(m == method and route.path_regex.match(p) for m, p in answered), (
                f"{method} {route.path} was not driven"
            )


def test_every_response_matches_docusigns_definitions(
    recorded: tuple[list[Exchange], list[Route]],
) -> None:
    exchanges, _ = recorded
    schemas = DocuSignSchemas()
    problems: dict[str, list[str]] = {}
    for e in exchanges:
        if e.path in OAUTH:
            found = DocuSignSchemas.check(OAUTH[e.path], e.json())
        else:
            model = "ErrorDetails" if e.status >= 400 else _model_of(e)
            assert model is not None, f"{e.method} {e.path} has no definition"
            found = schemas.violations(model, e.json())
        if found:
            problems[f"{e.method} {e.path} ({e.status})"] = found

    assert problems == {}


def test_errors_carry_docusigns_code_and_message(
    recorded: tuple[list[Exchange], list[Route]],
) -> None:
    exchanges, _ = recorded
    errors = [e.json() for e in exchanges if e.status >= 400]

    assert [sorted(body) for body in errors] == [["errorCode", "message"]] * len(errors)
    assert {body["errorCode"] for body in errors} == {
        "ENVELOPE_DOES_NOT_EXIST",
        "INVALID_REQUEST_PARAMETER",
        "ENVELOPE_INVALID_STATUS",
    }
