"""Salesforce webhooks: the signed Flow HTTP callout and the SOAP Outbound Message.

A Flow callout is signed with the product's ``X-Qtc-Signature`` scheme (``runtime.signing``):
an HMAC over the timestamp and the body, so a captured request cannot be replayed later and no
signature can be moved onto another body.

An Outbound Message is SOAP. It is parsed with defusedxml (no DTDs, no entity expansion) and only
accepted from the organisations listed in ``QTC_SALESFORCE_ORG_IDS``; Salesforce re-sends a message
until it receives ``<Ack>true</Ack>``, so a message is acknowledged only once every notification in
it has been acted on or can never be.

Org ids are compared as Salesforce defines record ids: the 15-character id is case-sensitive, and
the 18-character id is the same id with a 3-character suffix that encodes the case of the first 15,
so it survives case-insensitive systems. Setup shows the 15-character org id and Outbound Messages
carry the 18-character one; both name the same org, and so does an 18-character id whose letters
lost their case.

An Outbound Message carries only the fields its definition selects. Without ``StageName`` a
notification says "this opportunity changed" but not to what: ``needs_stage`` marks it, and the
listener reads the stage from Salesforce before deciding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET
from pydantic import BaseModel, ConfigDict, Field

from qtc.deal import Phase

CLOSED_WON = "Closed Won"
ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    "<soapenv:Body>"
    '<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    "<Ack>true</Ack>"
    "</notificationsResponse>"
    "</soapenv:Body>"
    "</soapenv:Envelope>"
)


class FlowCallout(BaseModel):
    """Body of the Flow HTTP callout."""

    model_config = ConfigDict(extra="forbid")

    event: Literal["closed_won", "quote_approved"]
    opportunity_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    phase: Phase | None = None


_ID_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-5]{3})?$")


def _case_suffix(id15: str) -> str:
    """The 3 characters Salesforce appends: per 5-character chunk, which letters are capitals."""
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, c in enumerate(id15[start : start + 5]) if "A" <= c <= "Z")
        suffix += _ID_SUFFIX_ALPHABET[bits]
    return suffix


def canonical_id(value: str) -> str | None:
    """The case-sensitive 15-character form of a Salesforce id given in 15 or 18 characters.

    An 18-character id whose first 15 characters agree with its suffix is taken as it is; one
    whose letters lost their case (``00d...``) gets its case back from the suffix. None when the
    value is not a Salesforce id, or its suffix cannot belong to its first 15 characters.
    """
    text = value.strip()
    if not _RECORD_ID.match(text):
        return None
    head = text[:15]
    if len(text) == 15:
        return head
    suffix = text[15:].upper()
    if _case_suffix(head) == suffix:
        return head
    bits = [_ID_SUFFIX_ALPHABET.index(c) for c in suffix]
    restored = "".join(
        (c.upper() if bits[i // 5] >> (i % 5) & 1 else c.lower()) if c.isalpha() else c
        for i, c in enumerate(head)
    )
    return restored if _case_suffix(restored) == suffix else None


def org_id_allowed(org_id: str, allowed: Iterable[str]) -> bool:
    """Whether ``org_id`` names one of the ``allowed`` orgs (15- or 18-character ids, any mix)."""
    wanted = canonical_id(org_id)
    return wanted is not None and any(canonical_id(a) == wanted for a in allowed)


@dataclass(frozen=True)
class OutboundNotification:
    notification_id: str
    object_type: str | None
    record_id: str | None
    stage: str | None
    # False when the Outbound Message's field selection leaves StageName out.
    stage_sent: bool = True

    @property
    def opportunity_id(self) -> str | None:
        """The record id when the notification is about an Opportunity."""
        is_opportunity = (self.object_type or "").split(":")[-1] == "Opportunity"
        return self.record_id if is_opportunity and self.record_id else None

    @property
    def needs_stage(self) -> bool:
        """An opportunity whose stage the message does not say: read it before deciding."""
        return self.opportunity_id is not None and not self.stage_sent

    @property
    def closed_won_opportunity(self) -> str | None:
        """The opportunity id when this notification is an Opportunity now Closed Won."""
        return self.opportunity_id if self.stage == CLOSED_WON else None


@dataclass(frozen=True)
class OutboundMessage:
    organization_id: str
    notifications: list[OutboundNotification]


class OutboundMessageError(ValueError):
    """The body is not a well-formed, safe Outbound Message (the message says why)."""


def _local(tag: object) -> str:
    text = tag if isinstance(tag, str) else ""
    return text.rsplit("}", 1)[-1]


def _children(element: Element, name: str) -> Iterable[Element]:
    return (child for child in element if _local(child.tag) == name)


def _text(element: Element, name: str) -> str | None:
    found = next(iter(_children(element, name)), None)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _xsi_type(element: Element) -> str | None:
    for key, value in element.attrib.items():
        if _local(key) == "type":
            return value
    return None


def parse_outbound_message(body: bytes) -> OutboundMessage:
    """Read the organisation and the notifications from an Outbound Message envelope.

    Raises:
        OutboundMessageError: Malformed XML, a DTD or entity declaration, or no
            ``notifications`` element with an ``OrganizationId``.
    """
    try:
        root = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except SafeET.ParseError as err:
        raise OutboundMessageError(f"the body is not well-formed XML ({err})") from err
    except DefusedXmlException as err:
        raise OutboundMessageError(f"the XML is refused: {type(err).__name__}") from err
    notifications = next((e for e in root.iter() if _local(e.tag) == "notifications"), None)
    if notifications is None:
        raise OutboundMessageError("the envelope has no notifications element")
    organization_id = _text(notifications, "OrganizationId")
    if organization_id is None:
        raise OutboundMessageError("the notifications element has no OrganizationId")
    parsed: list[OutboundNotification] = []
    for notification in _children(notifications, "Notification"):
        notification_id = _text(notification, "Id")
        if notification_id is None:
            raise OutboundMessageError("a Notification has no Id")
        record = next(iter(_children(notification, "sObject")), None)
        stage = _text(record, "StageName") if record is not None else None
        parsed.append(
            OutboundNotification(
                notification_id=notification_id,
                object_type=_xsi_type(record) if record is not None else None,
                record_id=_text(record, "Id") if record is not None else None,
                stage=stage,
                # An empty or nil StageName says no more than an absent one.
                stage_sent=stage is not None,
            )
        )
    return OutboundMessage(organization_id=organization_id, notifications=parsed)
