"""The product backend sink: signed, idempotent provisioning calls, spoken to with httpx."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runtime.signing import SignatureError, sign, verify
from sandbox.provisioning.app import SANDBOX_PROVISIONING_SECRET
from sandbox.runner import RunningEmulators

BODY: dict[str, Any] = {
    "tenant_id": "cus_acme",
    "deal_id": "deal-006000000000001AAA",
    "account_name": "Acme Robotics, Inc.",
    "skus": [
        {"sku": "PLATFORM-PRO", "quantity": 50, "features": {"sso": True, "seats": 50}},
        {"sku": "SUPPORT-PREMIUM", "quantity": 1, "features": {"support_tier": "premium"}},
    ],
}


@pytest.fixture
def backend(reset_emulators: RunningEmulators) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=reset_emulators.provisioning_url, timeout=10) as client:
        yield client


def provision(
    client: httpx.Client,
    body: dict[str, Any],
    key: str | None = "key-1",
    secret: str = SANDBOX_PROVISIONING_SECRET,
    clock_skew_s: int = 0,
    signature: str | None = None,
) -> httpx.Response:
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    headers["X-Qtc-Signature"] = signature or sign(secret, raw, int(time.time()) + clock_skew_s)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/v1/provision", content=raw, headers=headers)


def test_signed_request_provisions_the_tenant_with_its_features(backend: httpx.Client) -> None:
    response = provision(backend, BODY)

    assert response.status_code == 201
    body = response.json()
    assert (body["tenant_id"], body["deal_id"]) == ("cus_acme", "deal-006000000000001AAA")
    assert body["features"] == {
        "PLATFORM-PRO": {"sso": True, "seats": 50},
        "SUPPORT-PREMIUM": {"support_tier": "premium"},
    }
    tenant = backend.get("/v1/tenants/cus_acme").json()
    assert tenant["account_name"] == "Acme Robotics, Inc."
    assert tenant["entitlements"] == {"sso": True, "seats": 50, "support_tier": "premium"}
    assert [t["tenant_id"] for t in backend.get("/v1/tenants").json()["data"]] == ["cus_acme"]


@pytest.mark.parametrize(
    "headers",
    [
        {"secret": "a-guessed-secret"},
        {"signature": "t=1700000000,v1=" + "0" * 64},
        {"clock_skew_s": -301},
        {"clock_skew_s": 301},
        {"signature": "v1=abc"},
    ],
    ids=["forged", "garbage", "stale", "from-the-future", "malformed"],
)
def test_request_without_a_valid_fresh_signature_is_refused_with_401(
    backend: httpx.Client, headers: dict[str, Any]
) -> None:
    response = provision(backend, BODY, **headers)

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 401
    assert backend.get("/v1/tenants").json()["data"] == []


def test_unsigned_request_is_refused_with_401(backend: httpx.Client) -> None:
    response = backend.post("/v1/provision", json=BODY, headers={"Idempotency-Key": "k"})

    assert response.status_code == 401
    assert "missing" in response.json()["detail"]


def test_body_changed_after_signing_is_refused(backend: httpx.Client) -> None:
    raw = json.dumps(BODY).encode()
    signature = sign(SANDBOX_PROVISIONING_SECRET, raw, int(time.time()))
    tampered = raw.replace(b'"quantity": 50', b'"quantity": 500')

    response = backend.post(
        "/v1/provision",
        content=tampered,
        headers={"X-Qtc-Signature": signature, "Idempotency-Key": "k"},
    )

    assert response.status_code == 401


def test_request_without_idempotency_key_is_a_400(backend: httpx.Client) -> None:
    response = provision(backend, BODY, key=None)

    assert response.status_code == 400
    assert response.json()["type"].endswith("idempotency-key-required")


def test_retry_with_the_same_key_replays_the_first_response_and_provisions_once(
    backend: httpx.Client,
) -> None:
    first = provision(backend, BODY, key="deal-1:provision")
    retry = provision(backend, BODY, key="deal-1:provision")

    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.json() == first.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    stats = backend.get("/_sandbox/stats").json()
    assert (stats["provision_calls"], stats["distinct_keys"]) == (2, 1)
    assert (stats["provisioned"], stats["duplicates"]) == (1, 1)


def test_same_key_with_a_different_body_is_a_409_and_changes_nothing(
    backend: httpx.Client,
) -> None:
    provision(backend, BODY, key="deal-1:provision")
    altered = {**BODY, "skus": [{"sku": "PLATFORM-PRO", "quantity": 500, "features": {}}]}

    response = provision(backend, altered, key="deal-1:provision")

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    tenant = backend.get("/v1/tenants/cus_acme").json()
    assert tenant["quantities"]["PLATFORM-PRO"] == 50
    assert backend.get("/_sandbox/stats").json()["conflicts"] == 1


def test_a_second_deal_for_the_same_tenant_merges_features(backend: httpx.Client) -> None:
    provision(backend, BODY, key="deal-1")
    upsell = {
        "tenant_id": "cus_acme",
        "deal_id": "deal-006000000000006AAA",
        "account_name": "Acme Robotics, Inc.",
        "skus": [
            {"sku": "ANALYTICS-ADDON", "quantity": 100, "features": {"analytics": True}},
            {"sku": "EXTRA-STORAGE-TB", "quantity": 2, "features": {"seats": 5, "sso": False}},
        ],
    }

    response = provision(backend, upsell, key="deal-6")

    assert response.json()["features"] == {
        "ANALYTICS-ADDON": {"analytics": True},
        "EXTRA-STORAGE-TB": {"seats": 5, "sso": False},
    }
    tenant = backend.get("/v1/tenants/cus_acme").json()
    assert tenant["deals"] == ["deal-006000000000001AAA", "deal-006000000000006AAA"]
    assert set(tenant["features"]) == {
        "PLATFORM-PRO",
        "SUPPORT-PREMIUM",
        "ANALYTICS-ADDON",
        "EXTRA-STORAGE-TB",
    }
    # A flag stays on when any SKU grants it; numeric limits add up across SKUs.
    assert tenant["entitlements"] == {
        "sso": True,
        "seats": 55,
        "support_tier": "premium",
        "analytics": True,
    }


@pytest.mark.parametrize(
    "body",
    [
        {**BODY, "skus": []},
        {**BODY, "skus": [{"sku": "PLATFORM-PRO", "quantity": "50"}]},
        {**BODY, "skus": [{"sku": "PLATFORM-PRO", "quantity": 0}]},
        {**BODY, "free_text_terms": "net 90"},
        {k: v for k, v in BODY.items() if k != "tenant_id"},
    ],
    ids=["no-skus", "quantity-as-text", "zero-quantity", "unknown-field", "no-tenant"],
)
def test_malformed_body_is_a_422_problem(backend: httpx.Client, body: dict[str, Any]) -> None:
    response = provision(backend, body)

    assert response.status_code == 422
    assert response.json()["errors"]
    assert backend.get("/v1/tenants").json()["data"] == []


def test_unknown_tenant_is_a_404_problem(backend: httpx.Client) -> None:
    response = backend.get("/v1/tenants/cus_nobody")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_oversize_body_is_refused_with_413_not_a_server_error(backend: httpx.Client) -> None:
    huge = {**BODY, "account_name": "x" * 3_000_000}

    response = provision(backend, huge)

    assert response.status_code == 413


def test_rate_limit_fault_answers_429_with_retry_after(backend: httpx.Client) -> None:
    backend.post(
        "/_sandbox/faults",
        json={"rules": [{"path": "/v1/provision", "rate_429": 1, "retry_after_s": 3}]},
    ).raise_for_status()

    response = provision(backend, BODY)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert backend.get("/v1/tenants").json()["data"] == []


def test_signature_scheme_accepts_any_matching_v1_during_secret_rotation() -> None:
    body = b'{"tenant_id":"cus_1"}'
    now = 1_800_000_000
    new = sign("new-secret", body, now)
    old = sign("old-secret", body, now).split(",")[1]

    assert new.startswith(f"t={now},v1=")
    assert verify("old-secret", body, f"{new},{old}", now=now) == now
    assert verify("new-secret", body, f"{new},{old}", now=now + 300) == now
    with pytest.raises(SignatureError):
        verify("new-secret", body, new, now=now + 301)
