"""Reading what real DocuSign accounts and Salesforce orgs send (tests/vendor_formats.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from integrations.docusign.webhook import ConnectMessageError, parse_message
from integrations.salesforce.webhook import (
    OutboundMessageError,
    canonical_id,
    org_id_allowed,
    parse_outbound_message,
)
from tests.vendor_formats import (
    ORG_ID_15,
    ORG_ID_18,
    connect_sim,
    connect_xml,
    envelope_summary,
    outbound_message,
)

ENVELOPE = "93be49ab-afa0-4adf-933c-f752070d71ec"
OURS = {"opportunity_id": "0065e00000AbCdEAAZ", "deal_id": "deal-0065e00000AbCdEAAZ"}

# --- DocuSign Connect --------------------------------------------------------------------------


def test_the_default_sim_message_names_the_envelope_and_nothing_more() -> None:
    message = parse_message(connect_sim(ENVELOPE), "json")

    assert (message.event, message.envelope_id, message.completed) == (
        "envelope-completed",
        ENVELOPE,
        True,
    )
    assert message.custom_fields is None  # not carried, so nothing can be concluded from it
    assert message.deal_id() is None
    assert message.signature() is None  # no completion time: the envelope must be read


def test_the_sim_message_with_the_summary_names_the_deal_the_time_and_the_signer() -> None:
    body = connect_sim(ENVELOPE, summary=envelope_summary(ENVELOPE, custom_fields=OURS))

    message = parse_message(body, "json")
    signature = message.signature()

    assert message.deal_id() == "deal-0065e00000AbCdEAAZ"
    assert signature is not None
    assert signature.completed_at == datetime(2026, 11, 20, 10, 15, tzinfo=UTC)
    assert (signature.signer_name, signature.signer_email) == ("Jane Doe", "jane@acme.example")


def test_a_summary_without_custom_fields_says_nothing_about_whose_envelope_it_is() -> None:
    body = connect_sim(ENVELOPE, summary=envelope_summary(ENVELOPE, custom_fields=None))

    message = parse_message(body, "json")

    assert message.custom_fields is None
    assert message.signature() is not None


def test_a_summary_whose_custom_fields_name_no_deal_is_not_ours() -> None:
    fields = {"Salesforce_Opportunity__c": "0065e00000XyZaBAAV"}
    body = connect_sim(ENVELOPE, summary=envelope_summary(ENVELOPE, custom_fields=fields))

    message = parse_message(body, "json")

    assert message.custom_fields == fields
    assert message.deal_id() is None


def test_the_opportunity_field_alone_names_the_deal() -> None:
    fields = {"opportunity_id": "0065e00000AbCdEAAZ"}
    body = connect_sim(ENVELOPE, summary=envelope_summary(ENVELOPE, custom_fields=fields))

    assert parse_message(body, "json").deal_id() == "deal-0065e00000AbCdEAAZ"


def test_the_legacy_xml_message_is_read_with_its_time_zone_offset() -> None:
    message = parse_message(connect_xml(ENVELOPE, custom_fields=OURS), "xml")
    signature = message.signature()

    assert (message.format, message.event, message.envelope_id) == (
        "xml",
        "envelope-completed",
        ENVELOPE,
    )
    assert message.deal_id() == "deal-0065e00000AbCdEAAZ"
    assert signature is not None
    # 02:15:00.133 Pacific Standard Time (offset -8) is 10:15:00.133 UTC.
    assert signature.completed_at == datetime(2026, 11, 20, 10, 15, 0, 133000, tzinfo=UTC)
    assert (signature.signer_name, signature.signer_email) == ("Jane Doe", "jane@acme.example")


def test_a_fractional_offset_is_honoured() -> None:
    body = connect_xml(ENVELOPE, custom_fields=OURS, time_zone=("India Standard Time", "5.5"))

    signature = parse_message(body, "xml").signature()

    assert signature is not None
    assert signature.completed_at == datetime(2026, 11, 19, 20, 45, 0, 133000, tzinfo=UTC)


def test_an_xml_message_without_its_time_zone_has_no_completion_time_to_trust() -> None:
    message = parse_message(connect_xml(ENVELOPE, custom_fields=OURS, time_zone=None), "xml")

    assert message.completed and message.completed_at is None
    assert message.deal_id() == "deal-0065e00000AbCdEAAZ"


def test_other_xml_statuses_are_other_events() -> None:
    message = parse_message(connect_xml(ENVELOPE, custom_fields=OURS, status="Delivered"), "xml")

    assert message.event == "envelope-delivered"
    assert message.signature() is None


@pytest.mark.parametrize(
    "body",
    [
        connect_xml(
            ENVELOPE,
            custom_fields={"deal_id": "&boom;"},
            doctype='<!DOCTYPE d [<!ENTITY boom "deal-evil">]>',
        ),
        connect_xml(
            ENVELOPE,
            custom_fields={},
            doctype='<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
        ),
        b"<DocuSignEnvelopeInformation><EnvelopeStatus>",
        b'<?xml version="1.0"?><notifications/>',
        b"<DocuSignEnvelopeInformation><EnvelopeStatus/></DocuSignEnvelopeInformation>",
        connect_xml(ENVELOPE, custom_fields=OURS, time_zone=("Nowhere", "eight")),
        connect_xml(ENVELOPE, custom_fields=OURS, time_zone=("Nowhere", "99")),
        connect_xml(ENVELOPE, custom_fields=OURS, completed_local="yesterday"),
    ],
)
def test_malicious_or_malformed_xml_is_refused(body: bytes) -> None:
    with pytest.raises(ConnectMessageError):
        parse_message(body, "xml")


def test_malformed_json_is_refused() -> None:
    for body in [b"{not json", b"[]", b'{"event": "envelope-completed"}', b"\xff"]:
        with pytest.raises(ConnectMessageError):
            parse_message(body, "json")


# --- Salesforce org ids ------------------------------------------------------------------------


def test_the_15_and_18_character_forms_of_an_org_id_name_the_same_org() -> None:
    assert org_id_allowed(ORG_ID_18, [ORG_ID_15])
    assert org_id_allowed(ORG_ID_15, [ORG_ID_18])
    assert org_id_allowed(ORG_ID_18, [ORG_ID_18.lower()])  # case restored from the suffix
    assert canonical_id("001a0000006vm9riac") == "001A0000006Vm9r"


def test_another_org_or_a_case_changed_15_character_id_is_refused() -> None:
    assert not org_id_allowed(ORG_ID_18, ["00D5e000000ZrQl"])
    assert not org_id_allowed(ORG_ID_15.lower(), [ORG_ID_15])  # 15 characters: case counts
    assert not org_id_allowed(ORG_ID_18, [])
    assert not org_id_allowed("00D5e000000ZrQkZZZ", [ORG_ID_15])  # a suffix that cannot be
    assert not org_id_allowed("not an id", ["not an id"])


# --- Salesforce Outbound Message ---------------------------------------------------------------


def test_an_outbound_message_without_stage_name_asks_for_the_stage_to_be_read() -> None:
    body = outbound_message({"04l5e00000NbXyZAAV": {"Id": "0065e00000AbCdEAAZ"}})

    (notification,) = parse_outbound_message(body).notifications

    assert notification.opportunity_id == "0065e00000AbCdEAAZ"
    assert notification.needs_stage
    assert notification.closed_won_opportunity is None


def test_an_outbound_message_with_stage_name_decides_on_its_own() -> None:
    body = outbound_message(
        {
            "04l5e00000NbXyZAAV": {"Id": "0065e00000AbCdEAAZ", "StageName": "Closed Won"},
            "04l5e00000NbXyaAAF": {"Id": "0065e00000AbCdFAAZ", "StageName": "Negotiation"},
        }
    )

    won, open_deal = parse_outbound_message(body).notifications

    assert parse_outbound_message(body).organization_id == ORG_ID_18
    assert (won.needs_stage, won.closed_won_opportunity) == (False, "0065e00000AbCdEAAZ")
    assert (open_deal.needs_stage, open_deal.closed_won_opportunity) == (False, None)


def test_a_notification_about_another_object_never_asks_for_a_stage() -> None:
    body = outbound_message(
        {"04l5e00000NbXyZAAV": {"Id": "0015e00000QrStUAAV"}}, object_type="Account"
    )

    (notification,) = parse_outbound_message(body).notifications

    assert (notification.opportunity_id, notification.needs_stage) == (None, False)


def test_an_outbound_message_with_entities_is_refused() -> None:
    body = outbound_message({"04l5e00000NbXyZAAV": {"Id": "0065e00000AbCdEAAZ"}}).replace(
        b"<soapenv:Envelope", b'<!DOCTYPE e [<!ENTITY x "y">]><soapenv:Envelope', 1
    )

    with pytest.raises(OutboundMessageError):
        parse_outbound_message(body)
