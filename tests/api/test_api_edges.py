"""Pricing, problem documents, limits, health and logs: bad input is a clear 4xx, never a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI
from temporalio.client import Client

from runtime.temporal import connect
from starters.api import create_app
from tests.api.support import (
    FINANCE,
    OPERATOR,
    SALES,
    FakeContracts,
    FakeCrm,
    api_settings,
    connect_event,
    connect_headers,
    new_quote,
    outbound_message,
)
from tests.stack_support import free_port

PROBLEM = "application/problem+json"


async def test_pricing_the_design_example_gives_the_documented_figures(
    api: httpx.AsyncClient,
) -> None:
    quote = new_quote(lines=[{"sku": "PLATFORM-PRO", "quantity": 50, "discount_percent": "10"}])

    response = await api.post(
        "/v1/quotes/price",
        params={"signed_at": "2026-12-15T09:00:00Z"},
        json=quote,
        headers=FINANCE,
    )

    assert response.status_code == 200, response.text
    priced = response.json()
    assert priced["status"] == "ok"
    assert (priced["term_start"], priced["term_end"]) == ("2026-12-15", "2029-12-15")
    assert priced["lines"][0]["unit_amounts_by_year_minor"] == [129600, 138672, 148379]
    assert priced["lines"][1]["sku"] == "IMPL-SERVICES"
    assert priced["lines"][1]["auto_added"] is True
    assert (priced["mrr_minor"], priced["arr_minor"]) == (540000, 6480000)
    assert (priced["tcv_minor"], priced["first_invoice_total_minor"]) == (21332550, 6980000)


async def test_a_rejected_quote_is_a_422_problem_listing_every_violation(
    api: httpx.AsyncClient,
) -> None:
    quote = new_quote(currency="jpy", payment_terms_days=17)
    quote["lines"].append({"sku": "PLATFORM-PRO", "quantity": 2})

    response = await api.post("/v1/quotes/price", json=quote, headers=SALES)

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 422 and problem["title"] == "Unprocessable Entity"
    codes = {e["code"] for e in problem["errors"]}
    assert {"currency_not_supported", "payment_terms_not_allowed", "duplicate_sku"} <= codes
    assert all(set(e) == {"pointer", "code", "message"} for e in problem["errors"])


async def test_pricing_needs_a_valid_token_but_any_role(api: httpx.AsyncClient) -> None:
    quote = new_quote()
    assert (await api.post("/v1/quotes/price", json=quote)).status_code == 401
    for headers in (SALES, FINANCE, OPERATOR):
        assert (await api.post("/v1/quotes/price", json=quote, headers=headers)).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "content_type", "expected"),
    [
        ("/v1/quotes/price", b"{not json", "application/json", 422),
        ("/v1/quotes/price", b"[1, 2]", "application/json", 422),
        ("/v1/quotes/price", b'{"quote_id": 5}', "text/plain", 415),
        ("/v1/deals", b"{not json", "application/json", 400),
        ("/v1/deals", b'{"quote": {}, "phase": 1}', "text/plain", 415),
        ("/v1/deals", b'{"quote": "x", "phase": "three"}', "application/json", 422),
        ("/v1/deals", b"\xff\xfe\x00", "application/json", 400),
        ("/v1/deals", b'{"quote": {"quote_id": []}}', "application/json", 422),
    ],
)
async def test_malformed_requests_are_clear_problems(
    api: httpx.AsyncClient, path: str, body: bytes, content_type: str, expected: int
) -> None:
    response = await api.post(
        path, content=body, headers={**OPERATOR, "Content-Type": content_type}
    )

    assert response.status_code == expected, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert {"type", "title", "status", "detail"} <= set(problem)
    assert "Traceback" not in response.text


async def test_wrong_types_are_reported_with_a_pointer_to_each_field(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post(
        "/v1/deals", json={"quote": 12, "phase": 9, "extra": True}, headers=SALES
    )

    assert response.status_code == 422
    pointers = {e["pointer"] for e in response.json()["errors"]}
    assert pointers == {"/quote", "/phase", "/extra"}


async def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(
    api: httpx.AsyncClient,
) -> None:
    huge = b'{"quote": "' + b"x" * 1_100_000 + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(huge), 64_000):
            yield huge[start : start + 64_000]

    declared = await api.post(
        "/v1/deals", content=huge, headers={**SALES, "Content-Type": "application/json"}
    )
    streamed = await api.post(
        "/webhooks/docusign", content=chunks(), headers={"Content-Type": "application/json"}
    )

    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"] == "/problems/body-too-large"


async def test_unknown_paths_and_methods_are_problems(api: httpx.AsyncClient) -> None:
    missing = await api.get("/v2/everything", headers=SALES)
    wrong_method = await api.delete("/v1/deals", headers=SALES)

    assert (missing.status_code, wrong_method.status_code) == (404, 405)
    assert missing.headers["content-type"] == wrong_method.headers["content-type"] == PROBLEM


async def test_an_unknown_stage_filter_is_a_422(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/deals", params={"stage": "x' OR 1=1"}, headers=SALES)

    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/query/stage"


async def test_health_is_the_process_and_readiness_is_temporal(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    assert (await api.get("/readyz")).json() == {"status": "ready"}
    docs = await api.get("/docs")
    spec = await api.get("/openapi.json")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "/webhooks/salesforce/outbound-message" in spec.json()["paths"]


async def test_with_temporal_unreachable_requests_get_503_with_retry_after(
    tmp_path: Path, crm: FakeCrm
) -> None:
    settings = api_settings(
        "unused", tmp_path, temporal_address=f"127.0.0.1:{free_port()}", api_temporal_timeout_s=1.0
    )

    async def nowhere() -> Client:
        return await connect(settings)

    app: FastAPI = create_app(settings, client_factory=nowhere, crm=crm, contracts=FakeContracts())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://qtc.test"
    ) as api:
        health = await api.get("/healthz")
        ready = await api.get("/readyz")
        start = await api.post("/v1/deals", json={"quote": new_quote()}, headers=SALES)
        body = connect_event("env-1", opportunity_id="006000000000001AAA")
        webhook = await api.post("/webhooks/docusign", content=body, headers=connect_headers(body))
        unauthenticated = await api.post("/v1/deals", json={"quote": new_quote()})
        won = crm.add(new_quote())
        soap = outbound_message({"04l0000000000ZZAAA": (won, "Closed Won")})
        outbound = [
            await api.post(
                "/webhooks/salesforce/outbound-message",
                content=soap,
                headers={"Content-Type": "text/xml"},
            )
            for _ in range(2)
        ]

    assert health.status_code == 200
    assert (ready.status_code, start.status_code, webhook.status_code) == (503, 503, 503)
    # The notification is not remembered as handled, so Salesforce's retry is tried again.
    assert [r.status_code for r in outbound] == [503, 503]
    assert crm.reads == [won, won]
    assert start.headers["retry-after"] == webhook.headers["retry-after"] == "7"
    assert start.headers["content-type"] == PROBLEM
    assert unauthenticated.status_code == 401


async def test_access_logs_carry_no_tokens_or_signatures(
    api: httpx.AsyncClient, quote: dict[str, Any]
) -> None:
    body = connect_event("env-logged", opportunity_id=quote["opportunity_id"])
    headers = connect_headers(body)
    with structlog.testing.capture_logs() as logs:
        await api.post("/v1/quotes/price", json=quote, headers=SALES)
        await api.post("/webhooks/docusign", content=body, headers=headers)

    lines = [entry for entry in logs if entry["event"] == "http_request"]
    assert [(e["method"], e["path"], e["status"]) for e in lines] == [
        ("POST", "/v1/quotes/price", 200),
        ("POST", "/webhooks/docusign", 200),
    ]
    logged = json.dumps(logs, default=str)
    assert "sandbox-sales" not in logged
    assert headers["X-DocuSign-Signature-1"] not in logged
