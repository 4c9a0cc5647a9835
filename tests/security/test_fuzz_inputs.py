"""Untrusted input never crashes the parsers: quotes, DocuSign Connect events, Salesforce callouts
and SOAP Outbound Messages. Each either parses or is refused with its own error type; anything
else would be a 500 at the API and a lost webhook. Examples are bounded so this runs in seconds.
"""

from __future__ import annotations

import copy
import io
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError

from integrations.docusign.webhook import (
    ConnectMessageError,
    is_signed_by_any,
    parse_event,
    parse_message,
    signature_headers,
)
from integrations.salesforce.webhook import (
    OutboundMessage,
    OutboundMessageError,
    parse_outbound_message,
)
from qtc.catalog import load_catalog
from qtc.cpq import parse_quote, price_quote
from qtc.errors import QuoteRejected
from qtc.models import PricedQuote, Quote
from runtime.settings import Settings
from runtime.signing import SignatureError, verify
from starters.api import create_app

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog(ROOT / "catalog.toml")
EXAMPLES = [
    json.loads(path.read_text()) for path in sorted((ROOT / "examples").glob("quote-*.json"))
]
FAST = hypothesis_settings(max_examples=200, deadline=None)
SIGNED_AT = datetime(2026, 12, 15, 9, 30, tzinfo=UTC)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.decimals(allow_nan=False, allow_infinity=False).map(str)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["on_signature", "2026-12-31", "2199-12-31", "usd", "PLATFORM-PRO", ""])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_paths(value, (*prefix, index)))
    return found


@st.composite
def mutated_quotes(draw: st.DrawFn) -> dict[str, Any]:
    """A real example quote with one to three places replaced, removed or added to."""
    quote = copy.deepcopy(draw(st.sampled_from(EXAMPLES)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(quote)[1:]))
        parent = quote
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "remove" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(st.text(max_size=10))] = draw(json_values)
    return quote


@st.composite
def catalog_quotes(draw: st.DrawFn) -> dict[str, Any]:
    """Well-formed quotes over the catalog with values at and past every limit."""
    quote = copy.deepcopy(draw(st.sampled_from(EXAMPLES)))
    skus = [sku.code for sku in CATALOG.skus] + ["NOPE"]
    quote["currency"] = draw(st.sampled_from(["usd", "eur", "gbp", "jpy"]))
    quote["term_months"] = draw(st.sampled_from([1, 3, 12, 24, 36, 0, 120]))
    quote["billing_frequency"] = draw(st.sampled_from(["monthly", "quarterly", "annual"]))
    quote["billing_anchor"] = draw(st.sampled_from(["start", "first_of_month"]))
    quote["start"] = draw(
        st.sampled_from(["on_signature"]) | st.dates(min_value=datetime(2000, 1, 1).date()).map(str)
    )
    quote["valid_until"] = str(draw(st.dates(min_value=datetime(2000, 1, 1).date())))
    quote["uplift_percent"] = str(draw(st.decimals(0, 100, places=3)))
    quote["payment_terms_days"] = draw(st.sampled_from([0, 15, 30, 45, 60, 7]))
    quote["lines"] = [
        {
            "sku": draw(st.sampled_from(skus)),
            "quantity": draw(st.integers(1, 20_000)),
            "discount_percent": str(draw(st.decimals(0, 100, places=4))),
        }
        for _ in range(draw(st.integers(1, 4)))
    ]
    return quote


signing_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(9998, 1, 1)).map(
    lambda moment: moment.replace(tzinfo=UTC)
) | st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(9998, 1, 1),
    timezones=st.integers(-23, 23).map(lambda hours: timezone(timedelta(hours=hours))),
)


def _price_or_reject(raw: Any, signed_at: datetime = SIGNED_AT) -> PricedQuote | None:
    try:
        return price_quote(raw, CATALOG, signed_at)
    except QuoteRejected as rejected:
        assert rejected.violations, "a rejection must list at least one violation"
        return None


# --- quotes ---------------------------------------------------------------------------------


@FAST
@given(raw=st.binary(max_size=400))
def test_arbitrary_bytes_are_either_a_quote_or_a_listed_rejection(raw: bytes) -> None:
    try:
        assert isinstance(parse_quote(raw), Quote)
    except QuoteRejected as rejected:
        assert rejected.violations


@FAST
@given(value=json_values)
def test_arbitrary_json_values_are_either_a_quote_or_a_listed_rejection(value: Any) -> None:
    for raw in (json.dumps(value), json.dumps(value).encode()):
        try:
            parse_quote(raw)
        except QuoteRejected as rejected:
            assert rejected.violations
    if isinstance(value, dict):
        try:
            parse_quote(value)
        except QuoteRejected as rejected:
            assert rejected.violations


@FAST
@given(quote=mutated_quotes())
def test_a_damaged_real_quote_is_priced_or_rejected_never_a_crash(quote: dict[str, Any]) -> None:
    _price_or_reject(quote)
    _price_or_reject(json.dumps(quote, default=str))


@FAST
@given(quote=catalog_quotes(), signed_at=signing_times)
def test_any_catalog_quote_signed_at_any_time_is_priced_or_rejected(
    quote: dict[str, Any], signed_at: datetime
) -> None:
    priced = _price_or_reject(quote, signed_at)
    if priced is not None:
        assert priced.tcv_minor == sum(invoice.total_minor for invoice in priced.invoices)
        assert priced.first_invoice_total_minor == priced.invoices[0].total_minor


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 200_000 + b"]" * 200_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        '{"quote_id": "\ud800"}',
        b'{"quote_id": "\\ud800"}',
        b"\xef\xbb\xbf\xef\xbb\xbf{}",
        b'{"lines": [{"quantity": 1e999999}]}',
        b'{"lines": [{"discount_percent": 1e-999999}]}',
        b'{"uplift_percent": "1e999999999"}',
    ],
    ids=[
        "nested-arrays",
        "nested-objects",
        "lone-surrogate-text",
        "lone-surrogate-escape",
        "double-bom",
        "huge-exponent",
        "tiny-exponent",
        "huge-exponent-string",
    ],
)
def test_hostile_quote_documents_are_rejected_not_crashed_on(raw: bytes | str) -> None:
    with pytest.raises(QuoteRejected):
        price_quote(raw, CATALOG, SIGNED_AT)


def test_a_quote_with_an_absurd_decimal_exponent_is_rejected_quickly() -> None:
    example_quote = copy.deepcopy(EXAMPLES[0])
    example_quote["lines"][0]["discount_percent"] = "1E-100000000"
    started = datetime.now(UTC)

    _price_or_reject(example_quote)

    assert datetime.now(UTC) - started < timedelta(seconds=2)


# --- DocuSign Connect ---------------------------------------------------------------------


def _connect_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event": "envelope-completed",
        "data": {
            "envelopeId": "env-1",
            "envelopeSummary": {
                "status": "completed",
                "completedDateTime": "2026-12-15T10:00:00Z",
                "customFields": {"textCustomFields": [{"name": "opportunity_id", "value": "006X"}]},
                "recipients": {"signers": [{"name": "Jane Doe", "email": "jane@acme.example"}]},
            },
        },
    }
    event.update(changes)
    return event


@st.composite
def connect_events(draw: st.DrawFn) -> bytes:
    event = _connect_event()
    path = draw(st.sampled_from(_paths(event)[1:]))
    parent: Any = event
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = draw(json_values)
    return json.dumps(event).encode()


@FAST
@given(body=st.binary(max_size=300) | connect_events())
def test_any_connect_body_is_an_event_or_a_validation_error(body: bytes) -> None:
    try:
        event = parse_event(body)
    except ValidationError:
        return
    event.signature()
    event.custom_field("opportunity_id")


@FAST
@given(
    headers=st.dictionaries(
        st.sampled_from(["X-DocuSign-Signature-1", "x-docusign-signature-99", "Other"]),
        st.text(max_size=60),
    ),
    body=st.binary(max_size=100),
)
def test_any_signature_header_is_checked_without_error(
    headers: dict[str, str], body: bytes
) -> None:
    assert is_signed_by_any(body, signature_headers(headers), ["a-connect-secret"]) in {True, False}


# --- Salesforce Flow callout --------------------------------------------------------------


@FAST
@given(header=st.text(max_size=60) | st.from_regex(r"t=\w{0,14},v1=\w{0,64}", fullmatch=True))
@example(header="t=1,v1=00")
def test_any_callout_signature_header_is_refused_with_a_signature_error(header: str) -> None:
    try:
        verify("a-callout-secret", b"{}", header, tolerance_s=300)
    except SignatureError:
        return
    raise AssertionError(f"{header!r} was accepted")


# --- Salesforce SOAP Outbound Message ---------------------------------------------------------

ENVELOPE = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org}</OrganizationId>
   <Notification>
    <Id>{notification}</Id>
    <sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>{record}</sf:Id>
     <sf:StageName>{stage}</sf:StageName>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"""
xml_text = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=20).map(
    lambda text: text.replace("&", "&amp;").replace("<", "&lt;")
)


@FAST
@given(
    body=st.binary(max_size=300)
    | st.builds(
        lambda org, notification, record, stage: ENVELOPE.format(
            org=org, notification=notification, record=record, stage=stage
        ).encode(),
        xml_text,
        xml_text,
        xml_text,
        xml_text,
    )
)
def test_any_outbound_message_body_parses_or_is_refused_with_its_own_error(body: bytes) -> None:
    try:
        message = parse_outbound_message(body)
    except OutboundMessageError:
        return
    assert isinstance(message, OutboundMessage)
    for notification in message.notifications:
        assert notification.closed_won_opportunity in {None, notification.record_id}


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<notifications><OrganizationId>&lol9;</OrganizationId></notifications>"""
XML_ATTACKS = {
    "billion-laughs": BILLION_LAUGHS,
    "quadratic-blowup": (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "'
        + b"A" * 50_000
        + b'">]><notifications><OrganizationId>'
        + b"&a;" * 200
        + b"</OrganizationId></notifications>"
    ),
    "xxe-file": b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<notifications><OrganizationId>&e;</OrganizationId></notifications>""",
    "xxe-parameter-entity": b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]>
<notifications><OrganizationId>00D000000000001AAA</OrganizationId></notifications>""",
    "external-dtd": b"""<?xml version="1.0"?>
<!DOCTYPE notifications SYSTEM "http://127.0.0.1:9/evil.dtd">
<notifications><OrganizationId>00D000000000001AAA</OrganizationId></notifications>""",
    "internal-dtd-without-entities": b"""<?xml version="1.0"?>
<!DOCTYPE notifications [<!ELEMENT notifications ANY>]>
<notifications><OrganizationId>00D000000000001AAA</OrganizationId></notifications>""",
    "xxe-utf16": (
        '<?xml version="1.0" encoding="UTF-16"?>'
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        "<notifications><OrganizationId>&e;</OrganizationId></notifications>"
    ).encode("utf-16"),
}


@pytest.mark.parametrize("body", list(XML_ATTACKS.values()), ids=list(XML_ATTACKS))
def test_entity_expansion_and_external_entities_are_refused_by_the_parser(body: bytes) -> None:
    with pytest.raises(OutboundMessageError):
        parse_outbound_message(body)


def _as_connect(body: bytes) -> bytes:
    """The same attack addressed to the Connect listener's XML format."""
    return body.replace(b"notifications", b"DocuSignEnvelopeInformation").replace(
        b"OrganizationId", b"EnvelopeID"
    )


@pytest.mark.parametrize("body", list(XML_ATTACKS.values()), ids=list(XML_ATTACKS))
def test_the_connect_xml_parser_refuses_the_same_attacks(body: bytes) -> None:
    with pytest.raises(ConnectMessageError):
        parse_message(_as_connect(body), "xml")


@FAST
@given(body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_connect_xml_body_is_a_message_or_refused_with_its_own_error(body: bytes) -> None:
    try:
        message = parse_message(body, "xml")
    except ConnectMessageError:
        return
    message.signature()
    message.deal_id()


def test_deeply_nested_xml_is_refused_or_parsed_without_crashing() -> None:
    body = b"<a>" * 100_000 + b"</a>" * 100_000

    with pytest.raises(OutboundMessageError):
        parse_outbound_message(body)


# --- through the HTTP API -------------------------------------------------------------------


def _api() -> httpx.AsyncClient:
    """The real API app. Tests that expect a crash take ``captured_logs``: a 500's traceback then
    renders as one JSON line instead of a slow pretty-printed one."""
    settings = Settings(_env_file=None, env="sandbox", catalog=ROOT / "catalog.toml")

    async def no_temporal() -> Any:
        raise RuntimeError("a refused webhook never reaches Temporal")

    app = create_app(settings, client_factory=no_temporal)
    # App exceptions become the 500 a sender would see, so a crash is asserted, not raised.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://qtc.test")


@pytest.mark.parametrize("body", list(XML_ATTACKS.values()), ids=list(XML_ATTACKS))
async def test_xml_attacks_on_the_outbound_message_webhook_are_4xx_and_expand_nothing(
    body: bytes,
) -> None:
    async with _api() as api:
        response = await api.post(
            "/webhooks/salesforce/outbound-message",
            content=body,
            headers={"Content-Type": "text/xml"},
        )

    assert 400 <= response.status_code < 500
    assert "lollol" not in response.text
    assert "root:" not in response.text


async def test_a_callout_signature_with_a_latin1_digit_lookalike_is_a_401_not_a_500(
    captured_logs: io.StringIO,
) -> None:
    async with _api() as api:
        response = await api.post(
            "/webhooks/salesforce",
            content=b'{"event": "closed_won", "opportunity_id": "006X"}',
            # Header bytes are Latin-1: 0xB2 arrives as "\u00b2", which str.isdigit() accepts.
            headers={b"Content-Type": b"application/json", b"X-Qtc-Signature": b"t=\xb2,v1=00"},
        )

    assert response.status_code == 401


BIG_INTEGER_QUOTE = b'{"term_months": 1' + b"0" * 5000 + b"}"
# Fuzzing finding (fixed): a 5000-digit number made json.loads raise a plain ValueError -> 500.


def test_a_number_with_thousands_of_digits_is_a_rejected_quote() -> None:
    with pytest.raises(QuoteRejected):
        parse_quote(BIG_INTEGER_QUOTE)


async def test_pricing_a_quote_with_a_5000_digit_number_is_a_422_not_a_500(
    captured_logs: io.StringIO,
) -> None:
    async with _api() as api:
        response = await api.post(
            "/v1/quotes/price",
            content=BIG_INTEGER_QUOTE,
            headers={"Authorization": "Bearer sandbox-sales", "Content-Type": "application/json"},
        )

    assert response.status_code == 422


# Fuzzing finding (fixed): a start in year 9999 overflowed the schedule dates -> 500.


def far_future_quote() -> dict[str, Any]:
    quote = copy.deepcopy(EXAMPLES[0])
    quote["start"] = "9999-06-01"
    quote["valid_until"] = "9999-12-31"
    return quote


def test_a_start_date_whose_term_ends_after_year_9999_is_a_rejected_quote() -> None:
    with pytest.raises(QuoteRejected):
        price_quote(far_future_quote(), CATALOG, SIGNED_AT)


async def test_pricing_a_quote_starting_in_year_9999_is_a_422_not_a_500(
    captured_logs: io.StringIO,
) -> None:
    async with _api() as api:
        response = await api.post(
            "/v1/quotes/price",
            json=far_future_quote(),
            headers={"Authorization": "Bearer sandbox-sales"},
        )

    assert response.status_code == 422
