"""The remote codec endpoint the Temporal Web UI and CLI call, through the real API app."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload

from runtime.codec import AesGcmCodec
from runtime.settings import Settings
from starters import codec_api
from starters.api import create_app

ROOT = Path(__file__).resolve().parents[2]
UI = "http://localhost:8233"
SALES = {"Authorization": "Bearer sandbox-sales"}
DEAL_DESK = {"Authorization": "Bearer sandbox-deal-desk"}
FINANCE = {"Authorization": "Bearer sandbox-finance"}
OPERATOR = {"Authorization": "Bearer sandbox-operator"}
PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=b'{"legal_name": "Acme Robotics"}')


def sandbox_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"env": "sandbox", "catalog": ROOT / "catalog.toml"}
    values.update(overrides)
    return Settings(_env_file=None, codec_enabled=True, **values)


def api_for(settings: Settings) -> httpx.AsyncClient:
    async def no_temporal() -> Any:
        raise RuntimeError("the codec endpoint never needs Temporal")

    app = create_app(settings, client_factory=no_temporal)
    if not any(getattr(route, "path", "") == "/codec/decode" for route in app.routes):
        app.include_router(codec_api.router)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://qtc.test")


@pytest_asyncio.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    async with api_for(sandbox_settings()) as client:
        yield client


def as_json(*payloads: Payload) -> dict[str, Any]:
    """Payloads in the codec protocol's JSON: metadata values and data base64-encoded."""
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in payloads
        ]
    }


def from_json(body: dict[str, Any]) -> list[Payload]:
    return [
        Payload(
            metadata={k: base64.b64decode(v) for k, v in p.get("metadata", {}).items()},
            data=base64.b64decode(p.get("data", "")),
        )
        for p in body["payloads"]
    ]


async def sandbox_encrypted(payload: Payload) -> Payload:
    keys, active = sandbox_settings().codec_key_set()
    [encrypted] = await AesGcmCodec(keys, active).encode([payload])
    return encrypted


@pytest.mark.parametrize("role", [FINANCE, DEAL_DESK, OPERATOR])
async def test_finance_deal_desk_and_operators_can_read_encrypted_payloads_in_the_web_ui(
    api: httpx.AsyncClient, role: dict[str, str]
) -> None:
    encrypted = await sandbox_encrypted(PLAIN)

    response = await api.post(
        "/codec/decode",
        json=as_json(encrypted),
        headers={**role, "X-Namespace": "default", "Origin": UI},
    )

    assert response.status_code == 200
    assert from_json(response.json()) == [PLAIN]
    assert response.headers["access-control-allow-origin"] == UI


async def test_sales_is_refused_because_decode_would_show_every_reps_customers(
    api: httpx.AsyncClient,
) -> None:
    encrypted = await sandbox_encrypted(PLAIN)

    response = await api.post(
        "/codec/decode", json=as_json(encrypted), headers={**SALES, "Origin": UI}
    )

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert "Acme" not in response.text
    # The UI can read the refusal: error responses carry the CORS headers too.
    assert response.headers["access-control-allow-origin"] == UI


async def test_only_operators_may_encode_since_encoded_input_bypasses_the_api_roles(
    api: httpx.AsyncClient,
) -> None:
    refused = await api.post("/codec/encode", json=as_json(PLAIN), headers=FINANCE)
    encoded = await api.post("/codec/encode", json=as_json(PLAIN), headers=OPERATOR)

    assert refused.status_code == 403
    assert encoded.status_code == 200
    [ciphertext] = from_json(encoded.json())
    assert ciphertext.metadata["encryption-key-id"] == b"sandbox-key-1"
    assert b"Acme" not in ciphertext.data
    decoded = await api.post("/codec/decode", json=encoded.json(), headers=OPERATOR)
    assert from_json(decoded.json()) == [PLAIN]


async def test_the_sandbox_web_ui_may_decode_without_a_token_but_a_bad_token_is_refused(
    api: httpx.AsyncClient,
) -> None:
    encrypted = await sandbox_encrypted(PLAIN)

    anonymous = await api.post("/codec/decode", json=as_json(encrypted))
    forged = await api.post(
        "/codec/decode", json=as_json(encrypted), headers={"Authorization": "Bearer nope"}
    )

    assert anonymous.status_code == 200
    assert forged.status_code == 401


async def test_outside_the_sandbox_a_token_is_required() -> None:
    settings = sandbox_settings(codec_require_auth=True)
    async with api_for(settings) as api:
        response = await api.post(
            "/codec/decode", json=as_json(await sandbox_encrypted(PLAIN)), headers={"Origin": UI}
        )

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["access-control-allow-origin"] == UI


async def test_the_web_ui_preflight_is_answered_for_its_origin_only(
    api: httpx.AsyncClient,
) -> None:
    asked = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }

    allowed = await api.options("/codec/decode", headers={**asked, "Origin": UI})
    other = await api.options("/codec/decode", headers={**asked, "Origin": "https://evil.example"})

    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == UI
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    allowed_headers = allowed.headers["access-control-allow-headers"]
    assert {"authorization", "content-type", "x-namespace"} <= {
        h.strip() for h in allowed_headers.split(",")
    }
    assert other.status_code == 403
    assert "access-control-allow-origin" not in other.headers


async def test_a_request_for_another_namespace_is_refused(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/codec/decode",
        json=as_json(await sandbox_encrypted(PLAIN)),
        headers={**FINANCE, "X-Namespace": "someone-else"},
    )

    assert response.status_code == 400
    assert response.json()["type"] == "/problems/unknown-namespace"


async def test_a_payload_under_an_unknown_key_is_a_400_naming_the_key(
    api: httpx.AsyncClient,
) -> None:
    [foreign] = await AesGcmCodec({"other-key": bytes(32)}, "other-key").encode([PLAIN])

    response = await api.post("/codec/decode", json=as_json(foreign), headers=FINANCE)

    assert response.status_code == 400
    assert "'other-key'" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"not json", "application/json", 400),
        (b'{"payloads": 5}', "application/json", 400),
        (b'{"payloads": [{"data": 5}]}', "application/json", 400),
        (b'{"payloads": []}', "text/plain", 415),
        (b"[" * 100_000, "application/json", 400),
    ],
)
async def test_malformed_codec_requests_are_4xx_problems(
    api: httpx.AsyncClient, body: bytes, content_type: str, status: int
) -> None:
    response = await api.post(
        "/codec/decode", content=body, headers={**FINANCE, "Content-Type": content_type}
    )

    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.sampled_from(["payloads", "metadata", "data", "x"]), inner)
            ),
            max_leaves=12,
        ).map(lambda value: json.dumps(value).encode()),
    )
)
async def test_no_codec_request_body_makes_the_endpoint_fail_with_a_5xx(
    api: httpx.AsyncClient, body: bytes
) -> None:
    for path in ("/codec/decode", "/codec/encode"):
        response = await api.post(
            path, content=body, headers={**OPERATOR, "Content-Type": "application/json"}
        )
        assert response.status_code < 500, (path, body, response.text)
