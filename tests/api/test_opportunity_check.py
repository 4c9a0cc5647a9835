"""POST /v1/deals for a quote whose opportunity the CRM does not hold (issue 24): refused before
any contract goes out (422 naming /opportunity_id), 503 while the CRM cannot be asked; a second
start in another phase is 409, not a silent join."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from qtc.ports import ACT_SEND_CONTRACT
from runtime.settings import Settings
from service.crm import CrmOpportunityCheck
from starters.api import create_app
from tests.api.support import FakeContracts, FakeCrm
from tests.workflows.support import FakeVendors

SALES = {"Authorization": "Bearer sandbox-sales"}


def checked_app(settings: Settings, env: WorkflowEnvironment, crm: FakeCrm) -> FastAPI:
    async def same_client() -> Client:
        return env.client

    return create_app(
        settings,
        client_factory=same_client,
        crm=crm,
        contracts=FakeContracts(),
        opportunities=CrmOpportunityCheck(crm),
    )


async def test_a_quote_for_an_opportunity_the_crm_lacks_starts_nothing(
    settings: Settings,
    env: WorkflowEnvironment,
    worker: Worker,
    crm: FakeCrm,
    fakes: FakeVendors,
    quote: dict[str, Any],
) -> None:
    transport = httpx.ASGITransport(app=checked_app(settings, env, crm))
    async with httpx.AsyncClient(transport=transport, base_url="http://qtc.test") as api:
        missing = await api.post("/v1/deals", json={"quote": quote, "phase": 3}, headers=SALES)
        crm.down = True
        unreachable = await api.post("/v1/deals", json={"quote": quote}, headers=SALES)
        crm.down = False
        crm.add(quote)
        started = await api.post("/v1/deals", json={"quote": quote, "phase": 3}, headers=SALES)
        other_phase = await api.post("/v1/deals", json={"quote": quote, "phase": 1}, headers=SALES)

    assert missing.status_code == 422
    assert missing.json()["errors"][0]["pointer"] == "/opportunity_id"
    assert quote["opportunity_id"] in missing.json()["detail"]
    assert unreachable.status_code == 503 and "Retry-After" in unreachable.headers
    assert started.status_code == 201
    assert other_phase.status_code == 409
    assert "phase 3" in other_phase.json()["detail"]
    assert fakes.names().count(ACT_SEND_CONTRACT) <= 1  # only the started deal's contract
