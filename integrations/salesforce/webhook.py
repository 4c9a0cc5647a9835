"""Salesforce webhooks: the signed Flow HTTP callout and the SOAP Outbound Message.

A Flow callout is signed with the product's ``X-Qtc-Signature`` scheme (``runtime.signing``):
an HMAC over the timestamp and the body, so a captured request cannot be replayed later and no
signature can be moved onto another body.

An Outbound Message is SOAP. It is parsed with defusedxml (no DTDs, no entity expansion) and only
accepted from the organisations listed in ``QTC_SALESFORCE_ORG_IDS``; Salesforce re-sends a message
until it receives ``<Ack>true</Ack>``.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class OutboundNotification:
    notification_id: str
    object_type: str | None
    record_id: str | None
    stage: str | None

    @property
    def closed_won_opportunity(self) -> str | None:
        """The opportunity id when this notification is an Opportunity now Closed Won."""
        is_opportunity = (self.object_type or "").split(":")[-1] == "Opportunity"
        if is_opportunity and self.stage == CLOSED_WON and self.record_id:
            return self.record_id
        return None


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
        parsed.append(
            OutboundNotification(
                notification_id=notification_id,
                object_type=_xsi_type(record) if record is not None else None,
                record_id=_text(record, "Id") if record is not None else None,
                stage=_text(record, "StageName") if record is not None else None,
            )
        )
    return OutboundMessage(organization_id=organization_id, notifications=parsed)
