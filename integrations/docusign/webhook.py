"""DocuSign Connect (JSON SIM): signature verification and the envelope-completed event.

Connect signs the raw body with every active HMAC key and sends one ``X-DocuSign-Signature-N``
header per key. A message is genuine when any header matches any key we hold; holding both the old
and the new key during a rotation keeps messages flowing while DocuSign switches over.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from qtc.deal import SignatureCompleted

COMPLETED_EVENT = "envelope-completed"
_SIGNATURE_HEADER = re.compile(r"^x-docusign-signature-\d{1,3}$")


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
    envelope_id: str = Field(alias="envelopeId", min_length=1, max_length=100)
    envelope_summary: EnvelopeSummary = Field(
        default_factory=EnvelopeSummary, alias="envelopeSummary"
    )


class ConnectEvent(_Lenient):
    """The part of a Connect JSON SIM message this product acts on."""

    event: str
    data: EventData

    def custom_field(self, name: str) -> str | None:
        for custom in self.data.envelope_summary.custom_fields.text_custom_fields:
            if custom.name == name and custom.value:
                return custom.value
        return None

    def signature(self) -> SignatureCompleted | None:
        """The ``signature_completed`` signal this event carries (None if not completed)."""
        summary = self.data.envelope_summary
        if summary.completed_date_time is None:
            return None
        signer = summary.recipients.signers[0] if summary.recipients.signers else Signer()
        return SignatureCompleted(
            envelope_id=self.data.envelope_id,
            completed_at=summary.completed_date_time,
            signer_name=signer.name,
            signer_email=signer.email,
        )


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
    """Parse a Connect message.

    Raises:
        pydantic.ValidationError: Not JSON, or not a Connect event with an envelope id.
    """
    return ConnectEvent.model_validate_json(body)
