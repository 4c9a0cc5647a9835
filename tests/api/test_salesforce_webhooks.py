"""Salesforce Flow callouts and Outbound Messages start deals from the CRM's own data."""

from __future__ import annotations

import asyncio
import time

import httpx

from qtc.ports import ACT_SEND_CONTRACT
from tests.api.support import (
    SALES,
    FakeCrm,
    callout,
    callout_headers,
    new_quote,
    outbound_message,
    wait_for_stage,
)
from tests.workflows.support import FakeVendors

SOAP = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}


async def test_a_signed_closed_won_callout_prices_the_opportunity_and_starts_its_deal(
    api: httpx.AsyncClient, crm: FakeCrm, fakes: FakeVendors
) -> None:
    opportunity_id = crm.add(new_quote())
    body = callout(opportunity_id, phase=2)

    response = await api.post("/webhooks/salesforce", content=body, headers=callout_headers(body))

    assert response.status_code == 201, response.text
    deal_id = f"deal-{opportunity_id}"
    assert response.json() == {"deal_id": deal_id, "created": True}
    status = await wait_for_stage(api, deal_id, "awaiting_signature")
    assert status["phase"] == 2
    assert status["stage_history"][0]["note"] == "started by salesforce-flow:closed_won"
    assert crm.reads == [opportunity_id]


async def test_a_repeated_callout_joins_the_deal_instead_of_starting_another(
    api: httpx.AsyncClient, crm: FakeCrm, fakes: FakeVendors
) -> None:
    opportunity_id = crm.add(new_quote())
    approved = callout(opportunity_id, event="quote_approved")
    won = callout(opportunity_id, event="closed_won")

    first = await api.post(
        "/webhooks/salesforce", content=approved, headers=callout_headers(approved)
    )
    again = await api.post("/webhooks/salesforce", content=won, headers=callout_headers(won))

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {"deal_id": f"deal-{opportunity_id}", "created": False}
    await wait_for_stage(api, f"deal-{opportunity_id}", "awaiting_signature")
    assert fakes.names() == [ACT_SEND_CONTRACT]


async def test_forged_stale_and_replayed_callouts_are_refused_and_start_nothing(
    api: httpx.AsyncClient, crm: FakeCrm
) -> None:
    opportunity_id = crm.add(new_quote())
    body = callout(opportunity_id)
    genuine = callout_headers(body)
    other_id = crm.add(new_quote())
    other = callout(other_id)
    attempts = [
        (body, {"Content-Type": "application/json"}),
        (body, callout_headers(body, secret="guessed")),
        (body, callout_headers(body, at=time.time() - 400)),
        (body, callout_headers(body, at=time.time() + 400)),
        (body, {**genuine, "X-Qtc-Signature": genuine["X-Qtc-Signature"][:-8]}),
        (body, {**genuine, "X-Qtc-Signature": "v1=" + genuine["X-Qtc-Signature"].split("v1=")[1]}),
        (body, {**genuine, "X-Qtc-Signature": "garbage"}),
        (other, genuine),  # a captured signature replayed with another body
    ]

    for sent, headers in attempts:
        response = await api.post("/webhooks/salesforce", content=sent, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["type"] == "/problems/invalid-signature"

    assert crm.reads == []
    for deal in (f"deal-{opportunity_id}", f"deal-{other_id}"):
        assert (await api.get(f"/v1/deals/{deal}", headers=SALES)).status_code == 404


async def test_callout_for_an_unknown_opportunity_is_a_404_problem(api: httpx.AsyncClient) -> None:
    body = callout("006NOSUCHOPPORTUN")

    response = await api.post("/webhooks/salesforce", content=body, headers=callout_headers(body))

    assert response.status_code == 404
    assert response.json()["type"] == "/problems/unknown-opportunity"


async def test_callout_while_salesforce_is_down_asks_for_a_retry(
    api: httpx.AsyncClient, crm: FakeCrm
) -> None:
    opportunity_id = crm.add(new_quote())
    crm.down = True
    body = callout(opportunity_id)

    response = await api.post("/webhooks/salesforce", content=body, headers=callout_headers(body))

    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert (await api.get(f"/v1/deals/deal-{opportunity_id}", headers=SALES)).status_code == 404


async def test_callout_for_an_opportunity_whose_quote_breaks_the_rules_is_refused(
    api: httpx.AsyncClient, crm: FakeCrm
) -> None:
    opportunity_id = crm.add(new_quote(term_months=7))
    body = callout(opportunity_id)

    response = await api.post("/webhooks/salesforce", content=body, headers=callout_headers(body))

    assert response.status_code == 422
    assert {"pointer": "/term_months", "code": "term_not_allowed"}.items() <= response.json()[
        "errors"
    ][0].items()


async def test_signed_but_malformed_callouts_are_4xx_problems(api: httpx.AsyncClient) -> None:
    for body in [
        b"{",
        b'{"event": "closed_won"}',
        b'{"event": "won", "opportunity_id": "1"}',
        b'{"event": "closed_won", "opportunity_id": "1", "phase": 4}',
    ]:
        response = await api.post(
            "/webhooks/salesforce", content=body, headers=callout_headers(body)
        )
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"


async def test_an_outbound_message_starts_closed_won_deals_and_is_acknowledged(
    api: httpx.AsyncClient, crm: FakeCrm, fakes: FakeVendors
) -> None:
    won = crm.add(new_quote())
    open_deal = crm.add(new_quote())
    body = outbound_message(
        {"04l000000000001AAA": (won, "Closed Won"), "04l000000000002AAA": (open_deal, "Proposal")}
    )

    response = await api.post("/webhooks/salesforce/outbound-message", content=body, headers=SOAP)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert "<Ack>true</Ack>" in response.text
    assert "notificationsResponse" in response.text
    await wait_for_stage(api, f"deal-{won}", "awaiting_signature")
    assert (await api.get(f"/v1/deals/deal-{open_deal}", headers=SALES)).status_code == 404
    assert crm.reads == [won]


async def test_one_unstartable_opportunity_does_not_block_the_rest_of_an_outbound_message(
    api: httpx.AsyncClient, crm: FakeCrm, fakes: FakeVendors
) -> None:
    first = crm.add(new_quote())
    unknown = new_quote()["opportunity_id"]  # not in the CRM: it can never start
    rejected = crm.add(new_quote(term_months=7))  # breaks a CPQ rule
    last = crm.add(new_quote())
    body = outbound_message(
        {
            "04l000000000011AAA": (first, "Closed Won"),
            "04l000000000012AAA": (unknown, "Closed Won"),
            "04l000000000013AAA": (rejected, "Closed Won"),
            "04l000000000014AAA": (last, "Closed Won"),
        }
    )

    response = await api.post("/webhooks/salesforce/outbound-message", content=body, headers=SOAP)

    assert response.status_code == 200
    assert "<Ack>true</Ack>" in response.text
    await wait_for_stage(api, f"deal-{first}", "awaiting_signature")
    await wait_for_stage(api, f"deal-{last}", "awaiting_signature")
    assert (await api.get(f"/v1/deals/deal-{rejected}", headers=SALES)).status_code == 404


async def test_a_repeated_outbound_message_is_acknowledged_once_and_changes_nothing(
    api: httpx.AsyncClient, crm: FakeCrm, fakes: FakeVendors
) -> None:
    won = crm.add(new_quote())
    body = outbound_message({"04l00000000000AAAA": (won, "Closed Won")})

    responses = [
        await api.post("/webhooks/salesforce/outbound-message", content=body, headers=SOAP)
        for _ in range(3)
    ]

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert all("<Ack>true</Ack>" in r.text for r in responses)
    assert crm.reads == [won]
    await wait_for_stage(api, f"deal-{won}", "awaiting_signature")
    assert fakes.names() == [ACT_SEND_CONTRACT]


async def test_an_outbound_message_from_an_unknown_org_is_refused(
    api: httpx.AsyncClient, crm: FakeCrm
) -> None:
    won = crm.add(new_quote())
    body = outbound_message(
        {"04l0000000000XXAAA": (won, "Closed Won")}, org_id="00DEVIL000000001AA"
    )

    response = await api.post("/webhooks/salesforce/outbound-message", content=body, headers=SOAP)

    assert response.status_code == 403
    assert crm.reads == []


async def test_malicious_or_malformed_xml_is_a_400_problem_and_expands_nothing(
    api: httpx.AsyncClient, crm: FakeCrm
) -> None:
    billion_laughs = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<notifications><OrganizationId>&lol2;</OrganizationId></notifications>"""
    external = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<notifications><OrganizationId>&e;</OrganizationId></notifications>"""
    bodies = [billion_laughs, external, b"<notifications>", b"not xml at all", b"<a><b/></a>", b""]

    for body in bodies:
        response = await api.post(
            "/webhooks/salesforce/outbound-message", content=body, headers=SOAP
        )
        assert response.status_code == 400, body
        assert response.headers["content-type"] == "application/problem+json"
        assert "root:" not in response.text
    assert crm.reads == []


async def test_concurrent_outbound_and_callout_for_one_opportunity_make_one_deal(
    api: httpx.AsyncClient, crm: FakeCrm, fakes: FakeVendors
) -> None:
    won = crm.add(new_quote())
    soap = outbound_message({"04l0000000000YYAAA": (won, "Closed Won")})
    flow = callout(won)

    results = await asyncio.gather(
        api.post("/webhooks/salesforce/outbound-message", content=soap, headers=SOAP),
        api.post("/webhooks/salesforce", content=flow, headers=callout_headers(flow)),
    )

    outbound, flow_callout = results
    assert outbound.status_code == 200
    assert flow_callout.status_code in (200, 201)
    await wait_for_stage(api, f"deal-{won}", "awaiting_signature")
    assert fakes.names() == [ACT_SEND_CONTRACT]
