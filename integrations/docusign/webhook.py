"""DocuSign Connect: signature verification and the envelope-completed message, in every format a
real account sends.

Connect signs the raw body with every active HMAC key and sends one ``X-DocuSign-Signature-N``
header per key. A message is genuine when any header matches any key we hold; holding both the old
and the new key during a rotation keeps messages flowing while DocuSign switches over. The HMAC
covers JSON and XML bodies alike.

Formats (``parse_message`` reads all of them into one ``ConnectMessage``):

- JSON SIM as a Connect configuration sends it by default: ``event`` and ``data`` with only
  ``accountId``, ``userId`` and ``envelopeId``. It carries neither the envelope's custom fields
  nor the completion time nor the signer: the listener must read the envelope to act on it.
- JSON SIM with the envelope summary (``includeData`` such as ``custom_fields``, ``recipients``):
  ``data.envelopeSummary`` holds what was asked for, in DocuSign's REST shapes.
- The legacy XML format, ``DocuSignEnvelopeInformation`` (namespace
  ``http://www.docusign.net/API/3.0``), still used by many older configurations: ``EnvelopeStatus``
  with the envelope's ``CustomFields``, ``RecipientStatuses`` and the dates in the account's time
  zone, given by ``TimeZoneOffset`` (hours) when the configuration includes the time zone. It is
  parsed with defusedxml with DTDs, entities and external references refused, exactly as the
  Salesforce Outbound Message is.

What a message does not carry is ``None`` in ``ConnectMessage``, never guessed: a completion time
without a known time zone is not a completion time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qtc.deal import SignatureCompleted, deal_id_for

COMPLETED_EVENT = "envelope-completed"
# The text custom fields the product writes on every envelope it sends (integrations.docusign.
# mapping); either one names the deal.
DEAL_ID_FIELD = "deal_id"
OPPORTUNITY_ID_FIELD = "opportunity_id"
XML_NAMESPACE = "http://www.docusign.net/API/3.0"
XML_ROOT = "DocuSignEnvelopeInformation"
_SIGNATURE_HEADER = re.compile(r"^x-docusign-signature-\d{1,3}$")
_MAX_ENVELOPE_ID = 100
# TimeZoneOffset is whole hours for most zones, with a fraction for a few (India: 5.5).
_MAX_OFFSET_HOURS = 14


class _Lenient(BaseModel):
    # Connect messages carry far more than we read; unknown members are DocuSign's to add.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class TextCustomField(_Lenient):
    name: str
    value: str | None = None


class CustomFields(_Lenient):
    text_custom_fields: list[TextCustomField] = Field(
        default_factory=list, alias="textCustomFields"
    )


class Signer(_Lenient):
    name: str | None = None
    email: str | None = None


class Recipients(_Lenient):
    signers: list[Signer] = Field(default_factory=list)


class EnvelopeSummary(_Lenient):
    status: str | None = None
    completed_date_time: datetime | None = Field(None, alias="completedDateTime")
    custom_fields: CustomFields = Field(default_factory=CustomFields, alias="customFields")
    recipients: Recipients = Field(default_factory=Recipients)


class EventData(_Lenient):
    account_id: str | None = Field(None, alias="accountId")
    envelope_id: str = Field(alias="envelopeId", min_length=1, max_length=_MAX_ENVELOPE_ID)
    envelope_summary: EnvelopeSummary = Field(
        default_factory=EnvelopeSummary, alias="envelopeSummary"
    )


class ConnectEvent(_Lenient):
    """The part of a Connect JSON SIM message this product acts on."""

    event: str
    data: EventData

    @property
    def has_summary(self) -> bool:
        return "envelope_summary" in self.data.model_fields_set

    def custom_field(self, name: str) -> str | None:
        for custom in self.data.envelope_summary.custom_fields.text_custom_fields:
            if custom.name == name and custom.value:
                return custom.value
        return None

    def signature(self) -> SignatureCompleted | None:
        """The ``signature_completed`` signal this event carries (None if not completed)."""
        return self.message().signature()

    def message(self) -> ConnectMessage:
        summary = self.data.envelope_summary
        carries_fields = self.has_summary and "custom_fields" in summary.model_fields_set
        signer = summary.recipients.signers[0] if summary.recipients.signers else Signer()
        completed = summary.completed_date_time
        return ConnectMessage(
            format="json",
            event=self.event.lower(),
            envelope_id=self.data.envelope_id,
            account_id=self.data.account_id,
            custom_fields=(
                {f.name: f.value for f in summary.custom_fields.text_custom_fields if f.value}
                if carries_fields
                else None
            ),
            # A completion time without a zone is read as UTC: DocuSign's REST dates carry "Z".
            completed_at=(
                completed.replace(tzinfo=UTC) if completed and not completed.tzinfo else completed
            ),
            signer_name=signer.name,
            signer_email=signer.email,
        )


@dataclass(frozen=True)
class ConnectMessage:
    """One Connect message, whatever its format; ``None`` where the message is silent.

    ``custom_fields`` is ``None`` when the message does not carry the envelope's custom fields
    at all (the default JSON SIM message), and a mapping (maybe empty) when it does: an envelope
    whose custom fields are carried and name no deal was not sent by this product.
    """

    format: Literal["json", "xml"]
    event: str
    envelope_id: str
    account_id: str | None = None
    custom_fields: Mapping[str, str] | None = None
    completed_at: datetime | None = None
    signer_name: str | None = None
    signer_email: str | None = None

    @property
    def completed(self) -> bool:
        return self.event == COMPLETED_EVENT

    def deal_id(self) -> str | None:
        """The deal the envelope's custom fields name, if the message carries them."""
        return deal_id_from_fields(self.custom_fields or {})

    def signature(self) -> SignatureCompleted | None:
        """The ``signature_completed`` signal, when the message says when it was completed."""
        if not self.completed or self.completed_at is None:
            return None
        return SignatureCompleted(
            envelope_id=self.envelope_id,
            completed_at=self.completed_at,
            signer_name=self.signer_name,
            signer_email=self.signer_email,
        )


class ConnectMessageError(ValueError):
    """The body is not a Connect message this listener can read (the message says why)."""


def deal_id_from_fields(fields: Mapping[str, str]) -> str | None:
    """The deal the product's custom fields name (``deal_id``, else from the opportunity)."""
    deal_id = fields.get(DEAL_ID_FIELD)
    if deal_id:
        return deal_id
    opportunity_id = fields.get(OPPORTUNITY_ID_FIELD)
    return deal_id_for(opportunity_id) if opportunity_id else None


def signature_headers(headers: Mapping[str, str]) -> list[str]:
    """Every ``X-DocuSign-Signature-N`` value in a request (header names are case-insensitive)."""
    return [value for name, value in headers.items() if _SIGNATURE_HEADER.match(name.lower())]


def is_signed_by_any(body: bytes, signatures: Iterable[str], secrets: Iterable[str]) -> bool:
    """Whether any signature equals base64(HMAC-SHA256(secret, body)) for any secret.

    Every pair is compared (in constant time each), so the answer takes as long for a forgery as
    for the first header matching.
    """
    expected = [
        base64.b64encode(hmac.new(s.encode(), body, hashlib.sha256).digest()) for s in secrets
    ]
    matched = False
    for presented in signatures:
        candidate = presented.strip().encode()
        for wanted in expected:
            matched |= hmac.compare_digest(candidate, wanted)
    return matched


def parse_event(body: bytes) -> ConnectEvent:
    """Parse a Connect JSON SIM message.

    Raises:
        pydantic.ValidationError: Not JSON, or not a Connect event with an envelope id.
    """
    return ConnectEvent.model_validate_json(body)


def parse_message(body: bytes, media_type: Literal["json", "xml"]) -> ConnectMessage:
    """Read a Connect message in JSON SIM (with or without the summary) or legacy XML.

    Raises:
        ConnectMessageError: Malformed, refused (DTD, entities) or not a Connect message.
    """
    if media_type == "xml":
        return parse_xml_message(body)
    try:
        return parse_event(body).message()
    except ValidationError as err:
        raise ConnectMessageError(
            f"not a Connect JSON SIM event: {err.error_count()} problem(s)"
        ) from err


# --- the legacy XML format ----------------------------------------------------------------------


def _local(tag: object) -> str:
    text = tag if isinstance(tag, str) else ""
    return text.rsplit("}", 1)[-1]


def _child(element: Element, name: str) -> Element | None:
    return next((child for child in element if _local(child.tag) == name), None)


def _text(element: Element | None, name: str) -> str | None:
    found = _child(element, name) if element is not None else None
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _offset(root: Element) -> timedelta | None:
    text = _text(root, "TimeZoneOffset")
    if text is None:
        return None
    try:
        hours = Decimal(text)
    except InvalidOperation as err:
        raise ConnectMessageError(f"TimeZoneOffset {text!r} is not a number of hours") from err
    if not hours.is_finite() or abs(hours) > _MAX_OFFSET_HOURS:
        raise ConnectMessageError(f"TimeZoneOffset {text!r} is not a time zone offset")
    return timedelta(minutes=int(hours * 60))


def _local_time(text: str | None, offset: timedelta | None, name: str) -> datetime | None:
    """A legacy date (local wall time, no zone) in UTC; None when the zone is not known."""
    if text is None or offset is None:
        return None
    try:
        wall = datetime.fromisoformat(text)
    except ValueError as err:
        raise ConnectMessageError(f"{name} {text!r} is not a date and time") from err
    if wall.tzinfo is not None:
        return wall.astimezone(UTC)
    return (wall - offset).replace(tzinfo=UTC)


def _signer(status: Element) -> tuple[str | None, str | None]:
    recipients = _child(status, "RecipientStatuses")
    signers = [
        r
        for r in (recipients if recipients is not None else [])
        if _local(r.tag) == "RecipientStatus" and (_text(r, "Type") or "").lower() == "signer"
    ]
    completed = [r for r in signers if (_text(r, "Status") or "").lower() == "completed"]
    chosen = completed or signers
    if not chosen:
        return None, None
    return _text(chosen[0], "UserName"), _text(chosen[0], "Email")


def parse_xml_message(body: bytes) -> ConnectMessage:
    """Read a legacy ``DocuSignEnvelopeInformation`` message.

    Raises:
        ConnectMessageError: Malformed XML, a DTD or entity declaration, another root element,
            or no ``EnvelopeStatus`` with an ``EnvelopeID``.
    """
    try:
        root = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except SafeET.ParseError as err:
        raise ConnectMessageError(f"the body is not well-formed XML ({err})") from err
    except DefusedXmlException as err:
        raise ConnectMessageError(f"the XML is refused: {type(err).__name__}") from err
    if _local(root.tag) != XML_ROOT:
        raise ConnectMessageError(f"the root element is not {XML_ROOT}")
    status = _child(root, "EnvelopeStatus")
    if status is None:
        raise ConnectMessageError("the message has no EnvelopeStatus")
    envelope_id = _text(status, "EnvelopeID")
    if envelope_id is None or len(envelope_id) > _MAX_ENVELOPE_ID:
        raise ConnectMessageError("the EnvelopeStatus has no usable EnvelopeID")
    envelope_status = (_text(status, "Status") or "").lower()
    fields_element = _child(status, "CustomFields")
    custom_fields = (
        {
            name: value
            for field in fields_element
            if _local(field.tag) == "CustomField"
            and (name := _text(field, "Name"))
            and (value := _text(field, "Value"))
        }
        if fields_element is not None
        else None
    )
    signer_name, signer_email = _signer(status)
    return ConnectMessage(
        format="xml",
        event=f"envelope-{envelope_status}" if envelope_status else "envelope-unknown",
        envelope_id=envelope_id,
        custom_fields=custom_fields,
        completed_at=_local_time(_text(status, "Completed"), _offset(root), "Completed"),
        signer_name=signer_name,
        signer_email=signer_email,
    )
