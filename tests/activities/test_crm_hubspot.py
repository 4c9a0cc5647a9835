"""CRM activities against the HubSpot emulator, through hubspot-api-client: the deal read as a
quote (line items, primary company, Signer contact), Closed Won, billing ids written back, a note
for a deal that cannot start, the qtc properties checked or created, and every HubSpot failure
classified."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hubspot import HubSpot
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from integrations.hubspot import activities as hubspot_activities
from integrations.hubspot.activities import HubSpotCrm
from integrations.hubspot.client import build_hubspot_client
from integrations.hubspot.mapping import PropertyMap
from qtc import errors, ports
from sandbox.hubspot.app import SANDBOX_TOKEN, create_app
from sandbox.hubspot.seed import acme_company, deal_terms, seed_deal
from sandbox.stripe.testing import serve_app


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    with serve_app(create_app()) as url:
        yield url


@pytest.fixture(scope="module")
def prepared(emulator_url: str) -> str:
    """The emulator with the qtc properties and the Signer label created once for the module."""
    httpx.post(f"{emulator_url}/_sandbox/reset").raise_for_status()
    crm = HubSpotCrm(build_hubspot_client(SANDBOX_TOKEN, emulator_url))
    assert crm.ensure_schema(create=True).complete
    return emulator_url


@pytest.fixture
def url(prepared: str) -> Iterator[str]:
    yield prepared
    for control in ("faults", "scopes"):
        body: dict[str, Any] = {"rules": []} if control == "faults" else {}
        httpx.post(f"{prepared}/_sandbox/{control}", json=body).raise_for_status()


@pytest.fixture
def hs(url: str) -> HubSpot:
    return HubSpot(access_token=SANDBOX_TOKEN, host=url)


@pytest.fixture
def crm(url: str) -> HubSpotCrm:
    return HubSpotCrm(build_hubspot_client(SANDBOX_TOKEN, url, timeout_s=5))


def run(fn: Any, arg: Any) -> Any:
    return ActivityEnvironment().run(fn, arg)


def quote_id() -> str:
    return f"Q-{uuid.uuid4().hex[:8]}"


# --- reading -------------------------------------------------------------------------------------


def test_a_deal_reads_as_the_quote_the_salesperson_built(hs: HubSpot, crm: HubSpotCrm) -> None:
    qid = quote_id()
    seeded = seed_deal(hs, quote_id=qid)
    quote = run(crm.read_opportunity, ports.ReadOpportunityInput(opportunity_id=seeded.deal_id))
    assert quote.quote_id == qid
    assert quote.opportunity_id == seeded.deal_id
    assert quote.currency == "usd"
    assert quote.account.legal_name == "Acme Robotics, Inc."
    assert quote.account.billing_email == "ap@acme.example"
    assert quote.account.address.model_dump(exclude_none=True) == {
        "line1": "1 Main St",
        "city": "Austin",
        "state": "TX",
        "postal_code": "78701",
        "country": "US",
    }
    assert quote.account.tax_id is not None and quote.account.tax_id.value == "12-3456789"
    # The labelled contact, not the first one associated.
    assert (quote.signer.name, quote.signer.email) == ("Jane Doe", "jane@acme.example")
    assert (quote.term_months, quote.billing_frequency, quote.payment_terms_days) == (
        36,
        "annual",
        30,
    )
    assert quote.uplift_percent == Decimal("7")
    assert quote.valid_until == date(2099, 1, 31)
    assert [(line.sku, line.quantity, line.discount_percent) for line in quote.lines] == [
        ("PLATFORM-PRO", 50, Decimal("10")),
        ("SUPPORT-PREMIUM", 1, Decimal("0")),
    ]


def test_without_a_signer_label_the_first_contact_signs(hs: HubSpot, crm: HubSpotCrm) -> None:
    seeded = seed_deal(hs, quote_id=quote_id(), other_contacts=1, signer_label="Signer")
    v4 = hs.crm.associations.v4.basic_api
    v4.archive("deals", seeded.deal_id, "contacts", seeded.contact_ids[-1])
    quote = crm.read_quote(seeded.deal_id)
    assert quote.signer.email == "buyer0@acme.example"


def test_every_page_of_associations_and_line_items_is_read(
    hs: HubSpot, crm: HubSpotCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [{"hs_sku": sku, "quantity": "1"} for sku in ("PLATFORM-PRO", "SUPPORT-PREMIUM")] + [
        {"hs_sku": "IMPL-SERVICES", "quantity": "1"}
    ]
    seeded = seed_deal(hs, quote_id=quote_id(), lines=lines)
    monkeypatch.setattr(hubspot_activities, "ASSOCIATION_PAGE", 1)
    monkeypatch.setattr(hubspot_activities, "BATCH_READ_SIZE", 2)
    quote = crm.read_quote(seeded.deal_id)
    assert [line.sku for line in quote.lines] == [
        "PLATFORM-PRO",
        "SUPPORT-PREMIUM",
        "IMPL-SERVICES",
    ]


def test_a_deal_that_cannot_make_a_quote_names_each_hubspot_property(
    hs: HubSpot, crm: HubSpotCrm
) -> None:
    terms = deal_terms(quote_id())
    del terms["qtc_term_months"]
    company = acme_company()
    company["country"] = "United States"
    seeded = seed_deal(
        hs,
        quote_id="unused",
        terms=terms,
        company=company,
        lines=[{"hs_sku": "PLATFORM-PRO", "quantity": "2.5"}],
    )
    with pytest.raises(ApplicationError) as caught:
        crm.read_quote(seeded.deal_id)
    assert caught.value.type == errors.VENDOR_INVALID_REQUEST
    assert caught.value.non_retryable
    fields = caught.value.details[0]["fields"]
    assert set(fields) == {"deal.qtc_term_months", "company.country", "line_items[0].quantity"}


def test_a_deal_without_a_primary_company_names_the_company(hs: HubSpot, crm: HubSpotCrm) -> None:
    seeded = seed_deal(hs, quote_id=quote_id())
    hs.crm.associations.v4.basic_api.archive(
        "deals", seeded.deal_id, "companies", seeded.company_id
    )
    with pytest.raises(ApplicationError) as caught:
        crm.read_quote(seeded.deal_id)
    assert "company" in caught.value.details[0]["fields"]
    assert "no primary company" in caught.value.message


def test_a_missing_deal_is_not_found_and_a_bad_id_is_refused(crm: HubSpotCrm) -> None:
    with pytest.raises(ApplicationError) as missing:
        crm.read_quote("123")
    assert missing.value.type == errors.VENDOR_NOT_FOUND
    with pytest.raises(ApplicationError) as bad:
        crm.read_quote("006000000000001AAA")
    assert bad.value.type == errors.VENDOR_INVALID_REQUEST


def test_renamed_properties_are_read_from_their_new_names(url: str, hs: HubSpot) -> None:
    hs.crm.properties.core_api.create(
        "deals",
        {
            "name": "contract_months",
            "label": "Contract months",
            "type": "number",
            "fieldType": "number",
            "groupName": "dealinformation",
        },
    )
    terms = deal_terms(quote_id())
    terms["contract_months"] = terms.pop("qtc_term_months")
    seeded = seed_deal(hs, quote_id="unused", terms={**terms, "qtc_term_months": "12"})
    renamed = HubSpotCrm(
        build_hubspot_client(SANDBOX_TOKEN, url),
        PropertyMap.model_validate({"term_months": "contract_months"}),
    )
    assert renamed.read_quote(seeded.deal_id).term_months == 36


# --- writing -------------------------------------------------------------------------------------


def test_closed_won_and_billing_ids_land_on_the_deal(hs: HubSpot, crm: HubSpotCrm) -> None:
    seeded = seed_deal(hs, quote_id=quote_id(), stage="contractsent")
    won = ports.MarkClosedWonInput(
        deal_id=f"deal-{seeded.deal_id}",
        opportunity_id=seeded.deal_id,
        close_date=date(2026, 12, 15),
    )
    run(crm.mark_closed_won, won)
    run(crm.mark_closed_won, won)  # a retried attempt changes nothing
    run(
        crm.write_back_billing_ids,
        ports.WriteBackInput(
            deal_id=f"deal-{seeded.deal_id}",
            opportunity_id=seeded.deal_id,
            billing_customer_id="cus_123",
            billing_subscription_id="sub_456",
            billing_invoice_id="in_789",
            billing_invoice_url="https://invoice.example/in_789",
        ),
    )
    deal = hs.crm.deals.basic_api.get_by_id(
        seeded.deal_id,
        properties=[
            "dealstage",
            "closedate",
            "qtc_deal_id",
            "qtc_billing_customer_id",
            "qtc_billing_subscription_id",
            "qtc_billing_invoice_id",
            "qtc_billing_invoice_url",
        ],
    ).properties
    assert deal["dealstage"] == "closedwon"
    assert deal["closedate"].startswith("2026-12-15T00:00:00")
    assert deal["qtc_deal_id"] == f"deal-{seeded.deal_id}"
    assert (deal["qtc_billing_customer_id"], deal["qtc_billing_invoice_id"]) == (
        "cus_123",
        "in_789",
    )
    assert deal["qtc_billing_invoice_url"] == "https://invoice.example/in_789"


def test_a_refusal_note_is_attached_to_the_deal(hs: HubSpot, crm: HubSpotCrm) -> None:
    seeded = seed_deal(hs, quote_id=quote_id())
    note_id = crm.note_refusal(seeded.deal_id, "/lines/0/discount_percent: discount_above_hard_max")
    notes = hs.crm.associations.v4.basic_api.get_page("deals", seeded.deal_id, "notes")
    assert [r.to_object_id for r in notes.results] == [note_id]
    body = hs.crm.objects.notes.basic_api.get_by_id(note_id, properties=["hs_note_body"])
    assert "discount_above_hard_max" in body.properties["hs_note_body"]


# --- the properties the product needs ------------------------------------------------------------


def test_missing_properties_are_reported_exactly_or_created() -> None:
    with serve_app(create_app()) as fresh_url:
        crm = HubSpotCrm(build_hubspot_client(SANDBOX_TOKEN, fresh_url))
        report = crm.ensure_schema(create=False)
        assert "deals.qtc_term_months" in report.missing
        assert "companies.qtc_billing_email" in report.missing
        assert "deal-to-contact association label 'Signer'" in report.missing
        assert "deals property group 'qtc'" in report.missing
        assert not report.created
        assert "qtc_term_months" in report.message()
        assert "crm.schemas.deals.write" in report.message()
        made = crm.ensure_schema(create=True)
        assert sorted(made.created) == sorted(report.missing)
        again = crm.ensure_schema(create=False)
        assert again.complete and not again.created


# --- failures ------------------------------------------------------------------------------------


def fault(url: str, **rule: Any) -> None:
    httpx.post(f"{url}/_sandbox/faults", json={"rules": [rule]}).raise_for_status()


def test_a_429_is_retried_as_a_rate_limit(url: str, hs: HubSpot, crm: HubSpotCrm) -> None:
    seeded = seed_deal(hs, quote_id=quote_id())
    fault(url, path="/crm/v3/objects/deals", rate_429=1)
    with pytest.raises(ApplicationError) as caught:
        crm.read_quote(seeded.deal_id)
    assert caught.value.type == errors.VENDOR_RATE_LIMITED
    assert not caught.value.non_retryable
    assert "TEN_SECONDLY_ROLLING" in caught.value.message


def test_a_500_is_retried_and_a_missing_scope_parks_naming_the_scope(
    url: str, hs: HubSpot, crm: HubSpotCrm
) -> None:
    seeded = seed_deal(hs, quote_id=quote_id())
    won = ports.MarkClosedWonInput(
        deal_id="deal-x", opportunity_id=seeded.deal_id, close_date=date(2026, 12, 15)
    )
    fault(url, path="/crm/v3/objects/deals", method="PATCH", rate_500=1)
    with pytest.raises(ApplicationError) as unavailable:
        run(crm.mark_closed_won, won)
    assert unavailable.value.type == errors.VENDOR_UNAVAILABLE
    fault(url, path="/nothing")
    httpx.post(
        f"{url}/_sandbox/scopes", json={"scopes": ["crm.objects.deals.read"]}
    ).raise_for_status()
    with pytest.raises(ApplicationError) as forbidden:
        run(crm.mark_closed_won, won)
    assert forbidden.value.type == errors.VENDOR_PERMISSION
    assert forbidden.value.non_retryable
    assert "crm.objects.deals.write" in forbidden.value.message


def test_a_wrong_token_parks_and_an_unreachable_portal_is_retried(url: str) -> None:
    wrong = HubSpotCrm(build_hubspot_client("pat-na1-wrong", url))
    with pytest.raises(ApplicationError) as auth:
        wrong.read_quote("123")
    assert auth.value.type == errors.VENDOR_AUTHENTICATION
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    gone = HubSpotCrm(build_hubspot_client(SANDBOX_TOKEN, f"http://127.0.0.1:{closed_port}"))
    with pytest.raises(ApplicationError) as unreachable:
        gone.read_quote("123")
    assert unreachable.value.type == errors.VENDOR_UNAVAILABLE
    assert not unreachable.value.non_retryable
