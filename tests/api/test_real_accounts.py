"""What real DocuSign accounts and Salesforce orgs send, through the API, each to its right end.

Bodies come from the vendors' published formats (``tests/vendor_formats.py``), not from our
emulators. The deal runs on the real workflow with fake activities; DocuSign's envelope reads and
Salesforce's stage reads are the fakes behind the API's reader seams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from fastapi import FastAPI
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from qtc.ports import ACT_MARK_CLOSED_WON
from runtime.settings import Settings
from starters.api import create_app
from tests.api.support import (
    CONNECT_SECRET,
    OPERATOR,
    SALES,
    FakeContracts,
    FakeCrm,
    api_settings,
    new_quote,
    wait_for_stage,
)
from tests.vendor_formats import (
    ORG_ID_15,
    ORG_ID_18,
    connect_signature_headers,
    connect_sim,
    connect_xml,
    envelope_summary,
    outbound_message,
)
from tests.workflows.support import FakeVendors, deal_worker

SOAP = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
XML = "text/xml; charset=utf-8"


async def _awaiting_signature(api: httpx.AsyncClient) -> tuple[str, str, str]:
    quote = new_quote()
    started = await api.post("/v1/deals", json={"quote": quote, "phase": 1}, headers=SALES)
    deal_id: str = started.json()["deal_id"]
    await wait_for_stage(api, deal_id, "awaiting_signature")
    return deal_id, quote["opportunity_id"], FakeVendors.envelope_id_for(deal_id)


async def _connect(api: httpx.AsyncClient, body: bytes, content_type: str) -> httpx.Response:
    headers = connect_signature_headers(body, CONNECT_SECRET, content_type=content_type)
    return await api.post("/webhooks/docusign", content=body, headers=headers)


# --- 1. the default JSON SIM message: the deal is found from the envelope id alone --------------


async def test_the_default_sim_message_signs_the_deal_from_a_read_of_the_envelope(
    api: httpx.AsyncClient, contracts: FakeContracts, fakes: FakeVendors
) -> None:
    deal_id, _, envelope_id = await _awaiting_signature(api)
    contracts.sign(envelope_id, deal_id, datetime(2026, 11, 20, 10, 15, 42, tzinfo=UTC))

    response = await _connect(api, connect_sim(envelope_id), "application/json")

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "accepted", "envelope_id": envelope_id, "deal_id": deal_id}
    status = await wait_for_stage(api, deal_id, "completed")
    assert status["signature"]["completed_at"].startswith("2026-11-20T10:15:42")
    assert status["signature"]["signer_email"] == "jane@acme.example"
    assert fakes.names()[-1] == ACT_MARK_CLOSED_WON
    assert contracts.reads == [envelope_id]


async def test_the_sim_message_with_the_summary_signs_the_deal_without_a_read(
    api: httpx.AsyncClient, contracts: FakeContracts
) -> None:
    deal_id, opportunity_id, envelope_id = await _awaiting_signature(api)
    fields = {"opportunity_id": opportunity_id, "deal_id": deal_id}
    body = connect_sim(envelope_id, summary=envelope_summary(envelope_id, custom_fields=fields))

    response = await _connect(api, body, "application/json")

    assert response.json()["status"] == "accepted"
    status = await wait_for_stage(api, deal_id, "completed")
    assert status["signature"]["completed_at"].startswith("2026-11-20T10:15:00")
    assert contracts.reads == []


async def test_while_docusign_cannot_be_read_the_message_is_retried_not_lost(
    api: httpx.AsyncClient, contracts: FakeContracts
) -> None:
    deal_id, _, envelope_id = await _awaiting_signature(api)
    contracts.sign(envelope_id, deal_id)
    contracts.down = True
    body = connect_sim(envelope_id)

    refused = await _connect(api, body, "application/json")
    contracts.down = False
    redelivered = await _connect(api, body, "application/json")

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "7"
    assert redelivered.json()["status"] == "accepted"
    await wait_for_stage(api, deal_id, "completed")


# --- the legacy XML format -----------------------------------------------------------------------


async def test_the_legacy_xml_message_signs_the_deal_at_the_time_it_was_signed(
    api: httpx.AsyncClient, contracts: FakeContracts
) -> None:
    deal_id, opportunity_id, envelope_id = await _awaiting_signature(api)
    body = connect_xml(envelope_id, custom_fields={"opportunity_id": opportunity_id})

    response = await _connect(api, body, XML)

    assert response.json() == {"status": "accepted", "envelope_id": envelope_id, "deal_id": deal_id}
    status = await wait_for_stage(api, deal_id, "completed")
    # 02:15:00.133 in Pacific Standard Time.
    assert status["signature"]["completed_at"].startswith("2026-11-20T10:15:00.133")
    assert contracts.reads == []


async def test_an_xml_message_without_its_time_zone_takes_the_time_from_docusign(
    api: httpx.AsyncClient, contracts: FakeContracts
) -> None:
    deal_id, _, envelope_id = await _awaiting_signature(api)
    contracts.sign(envelope_id, deal_id, datetime(2026, 11, 20, 10, 15, 0, 133000, tzinfo=UTC))
    body = connect_xml(envelope_id, custom_fields={"deal_id": deal_id}, time_zone=None)

    response = await _connect(api, body, XML)

    assert response.json()["status"] == "accepted"
    status = await wait_for_stage(api, deal_id, "completed")
    assert status["signature"]["completed_at"].startswith("2026-11-20T10:15:00.133")


async def test_xml_with_a_bad_signature_or_entities_is_refused_and_records_nothing(
    api: httpx.AsyncClient, env: WorkflowEnvironment
) -> None:
    deal_id, opportunity_id, envelope_id = await _awaiting_signature(api)
    genuine = connect_xml(envelope_id, custom_fields={"opportunity_id": opportunity_id})
    bomb = connect_xml(
        envelope_id,
        custom_fields={"deal_id": "&a;"},
        doctype='<!DOCTYPE d [<!ENTITY a "deal-x"><!ENTITY b "&a;&a;&a;&a;">]>',
    )

    forged = await api.post(
        "/webhooks/docusign",
        content=genuine,
        headers=connect_signature_headers(genuine, "not-the-secret", content_type=XML),
    )
    expanded = await _connect(api, bomb, XML)

    assert (forged.status_code, expanded.status_code) == (401, 400)
    assert expanded.headers["content-type"] == "application/problem+json"
    status = await wait_for_stage(api, deal_id, "awaiting_signature")
    assert status["signature"] is None


# --- 4. envelopes of the account that this product never sent ----------------------------------


async def test_envelopes_this_product_never_sent_are_acknowledged_and_ignored(
    api: httpx.AsyncClient, contracts: FakeContracts
) -> None:
    contracts.sign("c0ffee00-0000-4000-8000-000000000001", deal_id=None)  # no deal field
    unknown = "c0ffee00-0000-4000-8000-000000000002"  # not in our account at all
    summarised = "c0ffee00-0000-4000-8000-000000000003"
    other_fields = envelope_summary(summarised, custom_fields={"PO": "4711"})

    answers = [
        await _connect(
            api, connect_sim("c0ffee00-0000-4000-8000-000000000001"), "application/json"
        ),
        await _connect(api, connect_sim(unknown), "application/json"),
        await _connect(api, connect_sim(summarised, summary=other_fields), "application/json"),
        await _connect(api, connect_xml(unknown, custom_fields={"PO": "4711"}), XML),
    ]

    assert [a.status_code for a in answers] == [200, 200, 200, 200]
    assert [a.json()["status"] for a in answers] == ["ignored"] * 4
    assert all("deal_id" not in a.json() for a in answers)
    # Only the messages that did not carry the custom fields needed a read.
    assert contracts.reads == ["c0ffee00-0000-4000-8000-000000000001", unknown]


async def test_a_forged_message_about_a_foreign_envelope_is_still_a_401(
    api: httpx.AsyncClient, contracts: FakeContracts
) -> None:
    body = connect_sim("c0ffee00-0000-4000-8000-000000000009")

    response = await api.post(
        "/webhooks/docusign",
        content=body,
        headers=connect_signature_headers(body, "guessed-secret"),
    )

    assert response.status_code == 401
    assert contracts.reads == []


# --- 2. an Outbound Message whose fields leave StageName out ------------------------------------


async def test_an_outbound_message_without_stage_name_starts_the_deal_when_salesforce_says_won(
    api: httpx.AsyncClient, crm: FakeCrm
) -> None:
    won = crm.add(new_quote())
    still_open = crm.add(new_quote())
    crm.stages[won] = "Closed Won"
    crm.stages[still_open] = "Negotiation/Review"
    body = outbound_message(
        {"04l5e00000NbXyZAAV": {"Id": won}, "04l5e00000NbXyaAAF": {"Id": still_open}},
        org_id="00D000000000001AAA",
    )

    response = await api.post("/webhooks/salesforce/outbound-message", content=body, headers=SOAP)

    assert response.status_code == 200
    assert "<Ack>true</Ack>" in response.text
    await wait_for_stage(api, f"deal-{won}", "awaiting_signature")
    assert (await api.get(f"/v1/deals/deal-{still_open}", headers=SALES)).status_code == 404
    assert crm.stage_reads == [won, still_open]


async def test_while_the_stage_cannot_be_read_the_outbound_message_is_not_acknowledged(
    api: httpx.AsyncClient, crm: FakeCrm
) -> None:
    won = crm.add(new_quote())
    crm.stages[won] = "Closed Won"
    body = outbound_message({"04l5e00000NbXyZAAV": {"Id": won}}, org_id="00D000000000001AAA")
    crm.down = True

    refused = await api.post("/webhooks/salesforce/outbound-message", content=body, headers=SOAP)
    crm.down = False
    retried = await api.post("/webhooks/salesforce/outbound-message", content=body, headers=SOAP)

    assert refused.status_code == 503
    assert "Ack" not in refused.text
    assert retried.status_code == 200 and "<Ack>true</Ack>" in retried.text
    await wait_for_stage(api, f"deal-{won}", "awaiting_signature")


async def test_an_outbound_message_is_refused_unacknowledged_when_no_stage_reader_exists(
    settings: Settings, env: WorkflowEnvironment, worker: Worker
) -> None:
    class QuotesOnly:
        name = "quotes-only"

        def read_quote(self, opportunity_id: str) -> Any:
            raise AssertionError("a notification without a stage must not be priced")

    async def same_client() -> Client:
        return env.client

    app = create_app(
        settings, client_factory=same_client, crm=QuotesOnly(), contracts=FakeContracts()
    )
    body = outbound_message(
        {"04l5e00000NbXyZAAV": {"Id": "0065e00000AbCdEAAZ"}}, org_id="00D000000000001AAA"
    )
    async with _client(app) as api:
        response = await api.post(
            "/webhooks/salesforce/outbound-message", content=body, headers=SOAP
        )

    assert response.status_code == 503
    assert response.json()["type"] == "/problems/stage-unknown"


# --- 3. org ids in 15 and 18 characters ---------------------------------------------------------


@pytest_asyncio.fixture
async def org_apis(
    env: WorkflowEnvironment, worker: Worker, task_queue: str, tmp_path: Path, crm: FakeCrm
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two APIs on the same deals: one configured with the 15-character org id, one with 18."""

    async def same_client() -> Client:
        return env.client

    def app(org_id: str, name: str) -> FastAPI:
        settings = api_settings(task_queue, tmp_path / name, salesforce_org_ids=[org_id])
        return create_app(settings, client_factory=same_client, crm=crm, contracts=FakeContracts())

    async with _client(app(ORG_ID_15, "15")) as short, _client(app(ORG_ID_18, "18")) as long:
        yield short, long


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://qtc.test")


async def test_either_form_of_the_org_id_accepts_messages_carrying_the_other(
    org_apis: tuple[httpx.AsyncClient, httpx.AsyncClient], crm: FakeCrm
) -> None:
    short, long = org_apis
    first, second = crm.add(new_quote()), crm.add(new_quote())

    as_sent = outbound_message(
        {"04l5e00000NbXyZAAV": {"Id": first, "StageName": "Closed Won"}}, org_id=ORG_ID_18
    )
    in_15 = outbound_message(
        {"04l5e00000NbXyaAAF": {"Id": second, "StageName": "Closed Won"}}, org_id=ORG_ID_15
    )
    foreign = outbound_message(
        {"04l5e00000NbXybAAF": {"Id": first, "StageName": "Closed Won"}},
        org_id="00D5e000000ZrQlEAK",
    )
    path = "/webhooks/salesforce/outbound-message"

    accepted = [
        await short.post(path, content=as_sent, headers=SOAP),
        await long.post(path, content=in_15, headers=SOAP),
    ]
    refused = [
        await short.post(path, content=foreign, headers=SOAP),
        await long.post(path, content=foreign, headers=SOAP),
    ]

    assert [r.status_code for r in accepted] == [200, 200]
    assert all("<Ack>true</Ack>" in r.text for r in accepted)
    assert [r.status_code for r in refused] == [403, 403]
    await wait_for_stage(short, f"deal-{first}", "awaiting_signature")
    await wait_for_stage(short, f"deal-{second}", "awaiting_signature")


# --- 5. a deal's status while no worker polls --------------------------------------------------


async def test_a_deals_status_without_a_worker_is_the_recorded_one_or_a_503_with_retry_after(
    app: FastAPI, env: WorkflowEnvironment, task_queue: str, contracts: FakeContracts
) -> None:
    async with _client(app) as api:
        async with deal_worker(env.client, task_queue, FakeVendors()):
            done, _, done_envelope = await _awaiting_signature(api)
            open_deal, _, _ = await _awaiting_signature(api)
            contracts.sign(done_envelope, done)
            await _connect(api, connect_sim(done_envelope), "application/json")
            await wait_for_stage(api, done, "completed")

        completed = await api.get(f"/v1/deals/{done}", headers=OPERATOR)
        waiting = await api.get(f"/v1/deals/{open_deal}", headers=OPERATOR)

    assert completed.status_code == 200
    assert completed.json()["stage"] == "completed"
    assert completed.json()["signature"]["envelope_id"] == done_envelope
    assert waiting.status_code == 503
    assert waiting.headers["retry-after"] == "7"
    assert waiting.json()["type"] == "/problems/deal-worker-unavailable"
    assert (waiting.json()["deal_id"], waiting.json()["stage"]) == (open_deal, "awaiting_signature")


async def test_a_read_that_does_not_show_the_envelope_completed_yet_is_retried(
    api: httpx.AsyncClient, contracts: FakeContracts
) -> None:
    deal_id, _, envelope_id = await _awaiting_signature(api)
    record = contracts.sign(envelope_id, deal_id)
    contracts.envelopes[envelope_id] = record.model_copy(
        update={"status": "delivered", "completed_at": None}
    )
    body = connect_sim(envelope_id)

    early = await _connect(api, body, "application/json")
    contracts.envelopes[envelope_id] = record
    later = await _connect(api, body, "application/json")

    assert early.status_code == 503
    assert later.json()["status"] == "accepted"
    await wait_for_stage(api, deal_id, "completed")
