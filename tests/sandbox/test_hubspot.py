"""The HubSpot emulator through the official hubspot-api-client: objects, properties, v4
associations with labels, search and paging, batch reads, HubSpot's error shapes and status codes,
faults, and signed ``deal.propertyChange`` webhook delivery."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hubspot import HubSpot
from hubspot.crm.associations.v4 import AssociationSpec
from hubspot.crm.companies import SimplePublicObjectInputForCreate as CompanyCreate
from hubspot.crm.contacts import SimplePublicObjectInputForCreate as ContactCreate
from hubspot.crm.deals import (
    BatchReadInputSimplePublicObjectId,
    PublicObjectSearchRequest,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.deals.exceptions import ApiException, NotFoundException, UnauthorizedException
from hubspot.crm.properties import PropertyCreate, PropertyGroupCreate
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException
from hubspot.utils.signature import Signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.hubspot.app import SANDBOX_CLIENT_SECRET, SANDBOX_TOKEN, create_app
from sandbox.stripe.testing import serve_app

PRIMARY_COMPANY = 5


@dataclass
class Listener:
    """A webhook target that records every POST and answers with scripted status codes."""

    answers: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.received.append((dict(request.headers), await request.body()))
            status = self.answers.pop(0) if self.answers else 200
            return JSONResponse({"ok": status < 300}, status_code=status)

        return Starlette(routes=[Route("/webhooks/hubspot", hook, methods=["POST"])])

    def wait_for(self, count: int, timeout: float = 10) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"only {len(self.received)} of {count} received"
            time.sleep(0.01)
        return self.received


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    with serve_app(create_app()) as url:
        yield url


@pytest.fixture
def url(emulator_url: str) -> str:
    httpx.post(f"{emulator_url}/_sandbox/reset").raise_for_status()
    return emulator_url


@pytest.fixture
def hs(url: str) -> HubSpot:
    return HubSpot(access_token=SANDBOX_TOKEN, host=url)


def company(hs: HubSpot, name: str = "Acme Robotics, Inc.") -> str:
    created = hs.crm.companies.basic_api.create(
        CompanyCreate(properties={"name": name, "city": "Austin", "country": "US"})
    )
    return str(created.id)


def deal(hs: HubSpot, **properties: str) -> str:
    created = hs.crm.deals.basic_api.create(
        SimplePublicObjectInputForCreate(properties={"dealname": "Acme", **properties})
    )
    return str(created.id)


def error_body(exc: ApiException | PropertiesApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


# --- objects -------------------------------------------------------------------------------------


def test_a_created_deal_reads_back_with_its_default_and_requested_properties(hs: HubSpot) -> None:
    deal_id = deal(hs, dealstage="qualifiedtobuy", amount="1200.50", closedate="2026-12-15")
    default = hs.crm.deals.basic_api.get_by_id(deal_id)
    assert default.properties["dealname"] == "Acme"
    assert default.properties["pipeline"] == "default"
    assert default.properties["closedate"] == "2026-12-15T00:00:00.000Z"
    assert default.properties["hs_object_id"] == deal_id
    chosen = hs.crm.deals.basic_api.get_by_id(
        deal_id, properties=["dealstage", "deal_currency_code", "no_such_property"]
    )
    assert chosen.properties["dealstage"] == "qualifiedtobuy"
    assert chosen.properties["deal_currency_code"] is None  # requested, never set
    assert "no_such_property" not in chosen.properties
    assert "dealname" not in chosen.properties


def test_a_missing_deal_is_a_404_object_not_found(hs: HubSpot) -> None:
    with pytest.raises(NotFoundException) as caught:
        hs.crm.deals.basic_api.get_by_id("999")
    body = error_body(caught.value)
    assert body["status"] == "error"
    assert body["category"] == "OBJECT_NOT_FOUND"
    assert body["correlationId"]


def test_invalid_property_values_are_a_400_naming_each_one_in_errors(hs: HubSpot) -> None:
    deal_id = deal(hs)
    with pytest.raises(ApiException) as caught:
        hs.crm.deals.basic_api.update(
            deal_id,
            SimplePublicObjectInput(
                properties={"dealstage": "signed", "qtc_nope": "1", "amount": "a lot"}
            ),
        )
    assert caught.value.status == 400
    body = error_body(caught.value)
    assert body["category"] == "VALIDATION_ERROR"
    codes = {e["context"]["propertyName"][0]: e["code"] for e in body["errors"]}
    assert codes == {
        "dealstage": "INVALID_OPTION",
        "qtc_nope": "PROPERTY_DOESNT_EXIST",
        "amount": "INVALID_DECIMAL",
    }
    unchanged = hs.crm.deals.basic_api.get_by_id(deal_id, properties=["amount"])
    assert unchanged.properties["amount"] is None


def test_a_wrong_token_is_a_401_and_a_missing_scope_a_403(url: str, hs: HubSpot) -> None:
    with pytest.raises(UnauthorizedException) as caught:
        HubSpot(access_token="pat-na1-wrong", host=url).crm.deals.basic_api.get_page()
    assert error_body(caught.value)["category"] == "INVALID_AUTHENTICATION"
    httpx.post(
        f"{url}/_sandbox/scopes", json={"scopes": ["crm.objects.deals.read"]}
    ).raise_for_status()
    hs.crm.deals.basic_api.get_page()
    with pytest.raises(ApiException) as forbidden:
        deal(hs)
    assert forbidden.value.status == 403
    body = error_body(forbidden.value)
    assert body["category"] == "MISSING_SCOPES"
    assert body["errors"][0]["context"]["requiredGranularScopes"] == ["crm.objects.deals.write"]


def test_listing_pages_with_after_until_no_next_page(hs: HubSpot) -> None:
    ids = [deal(hs, dealname=f"D{i}") for i in range(5)]
    seen: list[str] = []
    after = None
    while True:
        page = hs.crm.deals.basic_api.get_page(limit=2, after=after)
        seen.extend(r.id for r in page.results)
        if page.paging is None:
            break
        after = page.paging.next.after
    assert seen == ids


def test_search_filters_sorts_and_pages(hs: HubSpot) -> None:
    for i, stage in enumerate(["contractsent", "qualifiedtobuy", "contractsent", "contractsent"]):
        deal(hs, dealname=f"Deal {i}", dealstage=stage, amount=str(100 * (i + 1)))
    request = PublicObjectSearchRequest(
        filter_groups=[
            {
                "filters": [
                    {"propertyName": "dealstage", "operator": "EQ", "value": "contractsent"},
                    {"propertyName": "amount", "operator": "GTE", "value": "200"},
                ]
            }
        ],
        sorts=[{"propertyName": "amount", "direction": "DESCENDING"}],
        properties=["dealname", "amount"],
        limit=1,
    )
    first = hs.crm.deals.search_api.do_search(request)
    assert first.total == 2
    assert first.results[0].properties["dealname"] == "Deal 3"
    request.after = first.paging.next.after
    second = hs.crm.deals.search_api.do_search(request)
    assert second.results[0].properties["dealname"] == "Deal 2"
    assert second.paging is None
    with pytest.raises(ApiException) as caught:
        hs.crm.deals.search_api.do_search(PublicObjectSearchRequest(limit=201))
    assert caught.value.status == 400


def test_a_batch_read_with_a_missing_id_answers_207_with_the_error(hs: HubSpot) -> None:
    deal_id = deal(hs)
    result = hs.crm.deals.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=deal_id), SimplePublicObjectId(id="12345")],
            properties=["dealname"],
            properties_with_history=[],
        )
    )
    assert [r.id for r in result.results] == [deal_id]
    assert result.num_errors == 1
    assert result.errors[0].category == "OBJECT_NOT_FOUND"
    assert result.errors[0].context == {"ids": ["12345"]}


# --- properties ----------------------------------------------------------------------------------


def test_a_property_group_and_property_are_created_once_then_conflict(hs: HubSpot) -> None:
    with pytest.raises(PropertiesApiException) as missing:
        hs.crm.properties.core_api.get_by_name("deals", "qtc_quote_id")
    assert missing.value.status == 404
    hs.crm.properties.groups_api.create("deals", PropertyGroupCreate(name="qtc", label="QTC"))
    spec = PropertyCreate(
        name="qtc_quote_id", label="Quote id", type="string", field_type="text", group_name="qtc"
    )
    created = hs.crm.properties.core_api.create("deals", spec)
    assert created.group_name == "qtc"
    with pytest.raises(PropertiesApiException) as again:
        hs.crm.properties.core_api.create("deals", spec)
    assert again.value.status == 409
    assert error_body(again.value)["category"] == "OBJECT_ALREADY_EXISTS"
    deal_id = deal(hs, qtc_quote_id="Q-1")
    hs.crm.properties.core_api.archive("deals", "qtc_quote_id")
    with pytest.raises(ApiException):
        hs.crm.deals.basic_api.update(
            deal_id, SimplePublicObjectInput(properties={"qtc_quote_id": "Q-2"})
        )


def test_a_property_in_an_unknown_group_or_with_a_bad_type_is_refused(hs: HubSpot) -> None:
    for spec in (
        PropertyCreate(
            name="qtc_x", label="X", type="string", field_type="text", group_name="nope"
        ),
        PropertyCreate(
            name="qtc_x",
            label="X",
            type="number",
            field_type="select",
            group_name="dealinformation",
        ),
    ):
        with pytest.raises(PropertiesApiException) as caught:
            hs.crm.properties.core_api.create("deals", spec)
        assert caught.value.status == 400


# --- associations --------------------------------------------------------------------------------


def test_a_deal_has_one_primary_company_and_labels_read_back(hs: HubSpot) -> None:
    first, second = company(hs, "First"), company(hs, "Second")
    deal_id = deal(hs)
    v4 = hs.crm.associations.v4.basic_api
    primary = [AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=5)]
    v4.create("deals", deal_id, "companies", first, primary)
    v4.create("deals", deal_id, "companies", second, primary)
    page = v4.get_page("deals", deal_id, "companies")
    labels = {r.to_object_id: {t.label for t in r.association_types} for r in page.results}
    assert labels == {first: {None}, second: {"Primary", None}}
    inverse = v4.get_page("companies", second, "deals")
    assert {t.type_id for t in inverse.results[0].association_types} == {6, 342}


def test_a_user_defined_signer_label_marks_one_contact(hs: HubSpot) -> None:
    labels = hs.crm.associations.v4.schema.definitions_api.create(
        "deals", "contacts", {"label": "Signer", "name": "signer"}
    )
    signer_type = labels.results[0].type_id
    deal_id = deal(hs)
    contacts = [
        hs.crm.contacts.basic_api.create(ContactCreate(properties={"email": f"c{i}@x.example"})).id
        for i in range(2)
    ]
    v4 = hs.crm.associations.v4.basic_api
    v4.create_default("deals", deal_id, "contacts", contacts[0])
    result = v4.create(
        "deals",
        deal_id,
        "contacts",
        contacts[1],
        [AssociationSpec(association_category="USER_DEFINED", association_type_id=signer_type)],
    )
    assert result.labels == ["Signer"]
    page = v4.get_page("deals", deal_id, "contacts")
    assert [
        (r.to_object_id, sorted(str(t.label) for t in r.association_types)) for r in page.results
    ] == [
        (contacts[0], ["None"]),
        (contacts[1], ["None", "Signer"]),
    ]
    with pytest.raises(Exception) as caught:
        v4.create(
            "deals",
            deal_id,
            "contacts",
            contacts[0],
            [
                AssociationSpec(
                    association_category="HUBSPOT_DEFINED", association_type_id=signer_type
                )
            ],
        )
    assert getattr(caught.value, "status", None) == 400


def test_association_pages_follow_after(hs: HubSpot) -> None:
    deal_id = deal(hs)
    companies = [company(hs, f"C{i}") for i in range(3)]
    for company_id in companies:
        hs.crm.associations.v4.basic_api.create_default("deals", deal_id, "companies", company_id)
    first = hs.crm.associations.v4.basic_api.get_page("deals", deal_id, "companies", limit=2)
    second = hs.crm.associations.v4.basic_api.get_page(
        "deals", deal_id, "companies", limit=2, after=first.paging.next.after
    )
    assert [r.to_object_id for r in [*first.results, *second.results]] == companies
    assert second.paging is None


# --- faults --------------------------------------------------------------------------------------


def test_an_injected_429_carries_the_rate_limit_headers(url: str, hs: HubSpot) -> None:
    httpx.post(
        f"{url}/_sandbox/faults", json={"rules": [{"path": "/crm/v3/objects/deals", "rate_429": 1}]}
    ).raise_for_status()
    with pytest.raises(ApiException) as caught:
        hs.crm.deals.basic_api.get_page()
    assert caught.value.status == 429
    headers = {k.lower(): v for k, v in caught.value.headers.items()}
    assert headers["x-hubspot-ratelimit-remaining"] == "0"
    assert headers["x-hubspot-ratelimit-interval-milliseconds"] == "10000"
    assert "x-hubspot-ratelimit-max" in headers
    assert error_body(caught.value)["policyName"] == "TEN_SECONDLY_ROLLING"


def test_the_ten_second_budget_is_enforced_when_switched_on(url: str, hs: HubSpot) -> None:
    httpx.post(
        f"{url}/_sandbox/rate-limit", json={"enforced": True, "per_10s": 3}
    ).raise_for_status()
    statuses = []
    for _ in range(4):
        try:
            hs.crm.deals.basic_api.get_page()
            statuses.append(200)
        except ApiException as exc:
            statuses.append(exc.status)
    assert statuses == [200, 200, 200, 429]


# --- webhooks ------------------------------------------------------------------------------------


@pytest.fixture
def listener(url: str) -> Iterator[tuple[Listener, str]]:
    target = Listener()
    with serve_app(target.app()) as listener_url:
        hook = f"{listener_url}/webhooks/hubspot"
        httpx.post(
            f"{url}/_sandbox/webhooks",
            json={"target_url": hook, "initial_backoff_s": 0.01, "batch_window_s": 0.05},
        ).raise_for_status()
        yield target, hook


def test_a_stage_change_is_delivered_signed_v3_and_other_changes_are_not(
    hs: HubSpot, listener: tuple[Listener, str]
) -> None:
    target, hook = listener
    deal_id = deal(hs)
    hs.crm.deals.basic_api.update(deal_id, SimplePublicObjectInput(properties={"amount": "5"}))
    hs.crm.deals.basic_api.update(
        deal_id, SimplePublicObjectInput(properties={"dealstage": "contractsent"})
    )
    headers, body = target.wait_for(1)[0]
    events = json.loads(body)
    assert [(e["objectId"], e["propertyName"], e["propertyValue"]) for e in events] == [
        (int(deal_id), "dealstage", "contractsent")
    ]
    assert events[0]["subscriptionType"] == "deal.propertyChange"
    assert events[0]["attemptNumber"] == 0
    assert Signature.is_valid(
        signature=headers["x-hubspot-signature-v3"],
        client_secret=SANDBOX_CLIENT_SECRET,
        request_body=body.decode(),
        http_uri=hook,
        http_method="POST",
        signature_version="v3",
        timestamp=headers["x-hubspot-request-timestamp"],
    )
    assert not Signature.is_valid(
        signature=headers["x-hubspot-signature-v3"],
        client_secret="another-secret",
        request_body=body.decode(),
        http_uri=hook,
        signature_version="v3",
        timestamp=headers["x-hubspot-request-timestamp"],
    )


def test_changes_close_together_go_out_in_one_batch(
    url: str, hs: HubSpot, listener: tuple[Listener, str]
) -> None:
    target, _ = listener
    httpx.post(f"{url}/_sandbox/webhooks", json={"batch_window_s": 1.0}).raise_for_status()
    ids = [deal(hs) for _ in range(3)]
    for deal_id in ids:
        hs.crm.deals.basic_api.update(
            deal_id, SimplePublicObjectInput(properties={"dealstage": "contractsent"})
        )
    _, body = target.wait_for(1)[0]
    assert sorted(e["objectId"] for e in json.loads(body)) == sorted(int(i) for i in ids)


def test_a_refused_batch_is_retried_with_the_same_event_ids(
    url: str, hs: HubSpot, listener: tuple[Listener, str]
) -> None:
    target, _ = listener
    target.answers = [503, 401]
    deal_id = deal(hs)
    hs.crm.deals.basic_api.update(
        deal_id, SimplePublicObjectInput(properties={"dealstage": "contractsent"})
    )
    received = target.wait_for(3)
    batches = [json.loads(body) for _, body in received]
    assert len({b[0]["eventId"] for b in batches}) == 1
    assert [b[0]["attemptNumber"] for b in batches] == [0, 1, 2]
    deliveries = httpx.get(f"{url}/_sandbox/deliveries").json()
    assert [r["statusCode"] for r in deliveries["requests"]] == [503, 401, 200]
    assert deliveries["events"][0]["state"] == "delivered"


def test_a_deal_created_in_a_stage_sends_that_stage(
    hs: HubSpot, listener: tuple[Listener, str]
) -> None:
    target, _ = listener
    deal_id = deal(hs, dealstage="contractsent")
    _, body = target.wait_for(1)[0]
    assert [(e["objectId"], e["propertyValue"]) for e in json.loads(body)] == [
        (int(deal_id), "contractsent")
    ]
