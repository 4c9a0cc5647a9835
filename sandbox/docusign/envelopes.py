"""Envelopes as DocuSign keeps them: creation from a server template, views, status changes.

Envelopes are plain JSON-able dicts (they live in the emulator's ``StateStore``) whose keys are the
camelCase names DocuSign uses on the wire, so a view is mostly a copy. Numbers travel as strings
(``"recipientId": "1"``), as they do in DocuSign's responses.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SANDBOX_TEMPLATE_ID = "sandbox-msa-template"


class TemplateRole(BaseModel):
    role_name: str
    recipient_type: Literal["signer", "carbonCopy"]
    routing_order: str
    required: bool


class Template(BaseModel):
    template_id: str
    name: str
    email_subject: str
    roles: list[TemplateRole]


TEMPLATES: dict[str, Template] = {
    SANDBOX_TEMPLATE_ID: Template(
        template_id=SANDBOX_TEMPLATE_ID,
        name="Master Subscription Agreement (sandbox)",
        email_subject="Please sign: Master Subscription Agreement",
        roles=[
            TemplateRole(
                role_name="Signer", recipient_type="signer", routing_order="1", required=True
            ),
            TemplateRole(
                role_name="Sales", recipient_type="carbonCopy", routing_order="2", required=False
            ),
        ],
    )
}


class DocuSignError(Exception):
    """An error DocuSign answers with ``{"errorCode": ..., "message": ...}``."""

    def __init__(self, status_code: int, error_code: str, message: str) -> None:
        super().__init__(f"{error_code}: {message}")
        self.status_code = status_code
        self.error_code = error_code
        self.message = message


def invalid_body(detail: str) -> DocuSignError:
    return DocuSignError(
        400,
        "INVALID_REQUEST_BODY",
        f"The request body is missing or improperly formatted. {detail}".strip(),
    )


def invalid_parameter(detail: str) -> DocuSignError:
    return DocuSignError(
        400,
        "INVALID_REQUEST_PARAMETER",
        f"The request contained at least one invalid parameter. {detail}",
    )


# DocuSign names envelopes by GUID; anything else in an envelope-id position is a bad parameter.
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# The statuses an envelope can have, which is what ``status=`` may filter on (besides ``any``).
ENVELOPE_STATUSES = frozenset(
    {
        "any",
        "authoritativecopy",
        "completed",
        "correct",
        "created",
        "declined",
        "deleted",
        "delivered",
        "sent",
        "signed",
        "template",
        "timedout",
        "transfercompleted",
        "voided",
    }
)
# The envelope events an eventNotification may subscribe to, in both of DocuSign's spellings.
ENVELOPE_EVENT_CODES = frozenset({"sent", "delivered", "completed", "declined", "voided"})
CONNECT_EVENTS = frozenset(
    {
        "envelope-created",
        "envelope-sent",
        "envelope-resent",
        "envelope-delivered",
        "envelope-completed",
        "envelope-declined",
        "envelope-voided",
        "envelope-corrected",
        "envelope-purge",
        "envelope-deleted",
        "envelope-discard",
        "recipient-sent",
        "recipient-autoresponded",
        "recipient-delivered",
        "recipient-completed",
        "recipient-declined",
        "recipient-authenticationfailed",
        "recipient-resent",
        "recipient-reassign",
        "recipient-finish-later",
    }
)
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def check_envelope_id(envelope_id: str) -> None:
    """DocuSign refuses an envelope id that is not a GUID before it looks anything up."""
    if not GUID.fullmatch(envelope_id):
        raise invalid_parameter("Invalid value specified for envelopeId.")


def envelope_not_found() -> DocuSignError:
    # DocuSign's specification documents only 200 and 400 for envelope routes: an envelope that
    # does not exist is a 400 with this code, not a 404.
    return DocuSignError(
        400,
        "ENVELOPE_DOES_NOT_EXIST",
        "The envelope specified either does not exist or you have no rights to it.",
    )


# --- request bodies -----------------------------------------------------------------------
# Lenient like DocuSign: unknown properties are ignored, numbers may come as strings or numbers.


class _Wire(BaseModel):
    model_config = ConfigDict(
        extra="ignore", populate_by_name=True, coerce_numbers_to_str=True, frozen=True
    )


class TabIn(_Wire):
    tab_label: str = Field(alias="tabLabel")
    value: str | None = None
    selected: str | None = None


class TabsIn(_Wire):
    text_tabs: list[TabIn] = Field(default_factory=list, alias="textTabs")
    number_tabs: list[TabIn] = Field(default_factory=list, alias="numberTabs")
    checkbox_tabs: list[TabIn] = Field(default_factory=list, alias="checkboxTabs")


class TemplateRoleIn(_Wire):
    role_name: str = Field(alias="roleName")
    name: str | None = None
    email: str | None = None
    routing_order: str | None = Field(None, alias="routingOrder")
    client_user_id: str | None = Field(None, alias="clientUserId")
    tabs: TabsIn = Field(default_factory=TabsIn)


class CustomFieldIn(_Wire):
    name: str
    value: str = ""
    show: str | None = None
    required: str | None = None


class CustomFieldsIn(_Wire):
    text_custom_fields: list[CustomFieldIn] = Field(default_factory=list, alias="textCustomFields")


class EnvelopeEventIn(_Wire):
    envelope_event_status_code: str = Field(alias="envelopeEventStatusCode")


class ConnectEventDataIn(_Wire):
    """``eventData``: present means JSON SIM (with ``includeData``); absent means legacy XML."""

    format: str | None = None
    version: str | None = None
    include_data: list[str] = Field(default_factory=list, alias="includeData")


class EventNotificationIn(_Wire):
    url: str
    event_data: ConnectEventDataIn | None = Field(None, alias="eventData")
    events: list[str] = Field(default_factory=list)
    envelope_events: list[EnvelopeEventIn] = Field(default_factory=list, alias="envelopeEvents")
    include_hmac: bool = Field(False, alias="includeHMAC")
    require_acknowledgment: bool = Field(False, alias="requireAcknowledgment")


class EnvelopeDefinitionIn(_Wire):
    template_id: str | None = Field(None, alias="templateId")
    template_roles: list[TemplateRoleIn] = Field(default_factory=list, alias="templateRoles")
    status: str = "created"
    email_subject: str | None = Field(None, alias="emailSubject")
    email_blurb: str | None = Field(None, alias="emailBlurb")
    custom_fields: CustomFieldsIn = Field(default_factory=CustomFieldsIn, alias="customFields")
    event_notification: EventNotificationIn | None = Field(None, alias="eventNotification")

    @field_validator("status")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class EnvelopeUpdateIn(_Wire):
    status: str | None = None
    voided_reason: str | None = Field(None, alias="voidedReason")
    email_subject: str | None = Field(None, alias="emailSubject")


def parse_body(model: type[_Wire], raw: bytes) -> Any:
    """Validate a JSON body, turning every problem into DocuSign's INVALID_REQUEST_BODY."""
    if not raw.strip():
        raise invalid_body("")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise invalid_body(f"{where}: {first['msg']}") from exc


# --- time ---------------------------------------------------------------------------------


def ds_time(moment: datetime) -> str:
    """DocuSign's timestamp format: UTC with seven fractional digits and a ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 date or date-time; naive values are taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = datetime.combine(date.fromisoformat(text), time())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- building and changing envelopes ------------------------------------------------------


def _tabs(tabs: TabsIn, recipient_id: str) -> dict[str, Any]:
    def common(tab: TabIn, tab_type: str) -> dict[str, Any]:
        return {
            "tabId": str(uuid.uuid4()),
            "tabLabel": tab.tab_label,
            "tabType": tab_type,
            "documentId": "1",
            "pageNumber": "1",
            "recipientId": recipient_id,
            "locked": "true",
        }

    out: dict[str, Any] = {}
    if tabs.text_tabs:
        out["textTabs"] = [{**common(t, "text"), "value": t.value or ""} for t in tabs.text_tabs]
    if tabs.number_tabs:
        out["numberTabs"] = [
            {**common(t, "number"), "value": t.value or ""} for t in tabs.number_tabs
        ]
    if tabs.checkbox_tabs:
        # DocuSign's checkbox tab carries ``selected``; ``value`` is accepted as its spelling too.
        out["checkboxTabs"] = [
            {**common(t, "checkbox"), "selected": _truthy(t.selected or t.value)}
            for t in tabs.checkbox_tabs
        ]
    return out


def _truthy(value: str | None) -> str:
    return "true" if (value or "").strip().lower() in {"true", "1", "yes", "x", "on"} else "false"


def create_envelope(definition: EnvelopeDefinitionIn, now: datetime) -> dict[str, Any]:
    """Build a new envelope from a template-based definition, or raise a DocuSignError."""
    if definition.status not in {"created", "sent"}:
        raise DocuSignError(
            400,
            "ENVELOPE_INVALID_STATUS",
            "Invalid envelope status. Envelope status must be one of: created, sent.",
        )
    if not definition.template_id:
        raise DocuSignError(
            400,
            "ENVELOPE_IS_INCOMPLETE",
            "The Envelope is not Complete. A Complete Envelope Requires Documents, Recipients, "
            "Tabs, and a Subject Line. This sandbox only creates envelopes from a server template "
            "(templateId + templateRoles).",
        )
    template = TEMPLATES.get(definition.template_id)
    if template is None:
        raise DocuSignError(400, "TEMPLATE_ID_INVALID", "Invalid template ID.")
    for offered in definition.template_roles:
        if offered.email and not EMAIL.fullmatch(offered.email):
            raise DocuSignError(
                400,
                "INVALID_EMAIL_ADDRESS_FOR_RECIPIENT",
                "The email address for the recipient is invalid. The recipient Id follows.",
            )
    _check_event_notification(definition.event_notification)

    given = {role.role_name: role for role in definition.template_roles}
    signers: list[dict[str, Any]] = []
    carbon_copies: list[dict[str, Any]] = []
    for number, role in enumerate(template.roles, start=1):
        filled = given.get(role.role_name)
        if filled is None or not filled.name or not filled.email:
            if role.required and definition.status == "sent":
                raise DocuSignError(
                    400,
                    "ENVELOPE_IS_INCOMPLETE",
                    "The Envelope is not Complete. A Complete Envelope Requires Documents, "
                    f"Recipients, Tabs, and a Subject Line. Role '{role.role_name}' needs a name "
                    "and an email.",
                )
            if filled is None:
                continue
        recipient_id = str(number)
        recipient: dict[str, Any] = {
            "recipientId": recipient_id,
            "recipientIdGuid": str(uuid.uuid4()),
            "recipientType": "signer" if role.recipient_type == "signer" else "carboncopy",
            "roleName": role.role_name,
            "name": filled.name or "",
            "email": filled.email or "",
            "routingOrder": filled.routing_order or role.routing_order,
            "status": "sent" if definition.status == "sent" else "created",
        }
        if definition.status == "sent":
            recipient["sentDateTime"] = ds_time(now)
        if filled.client_user_id:
            recipient["clientUserId"] = filled.client_user_id
        if role.recipient_type == "signer":
            recipient["tabs"] = _tabs(filled.tabs, recipient_id)
            signers.append(recipient)
        else:
            carbon_copies.append(recipient)

    # DocuSign silently ignores template roles the template does not define.
    envelope_id = str(uuid.uuid4())
    stamp = ds_time(now)
    envelope: dict[str, Any] = {
        "envelopeId": envelope_id,
        "status": definition.status,
        "templateId": template.template_id,
        "emailSubject": definition.email_subject or template.email_subject,
        "emailBlurb": definition.email_blurb or "",
        "createdDateTime": stamp,
        "lastModifiedDateTime": stamp,
        "statusChangedDateTime": stamp,
        "recipients": {
            "signers": signers,
            "carbonCopies": carbon_copies,
            "recipientCount": str(len(signers) + len(carbon_copies)),
            "currentRoutingOrder": "1",
        },
        "customFields": {
            "textCustomFields": [
                {
                    "fieldId": str(10_000_000 + i),
                    "name": field.name,
                    "value": field.value,
                    "show": field.show or "true",
                    "required": field.required or "false",
                }
                for i, field in enumerate(definition.custom_fields.text_custom_fields, start=1)
            ],
            "listCustomFields": [],
        },
        "eventNotification": (
            definition.event_notification.model_dump(by_alias=True)
            if definition.event_notification
            else None
        ),
    }
    if definition.status == "sent":
        envelope["sentDateTime"] = stamp
        envelope["initialSentDateTime"] = stamp
    return envelope


def _check_event_notification(notification: EventNotificationIn | None) -> None:
    if notification is None:
        return
    codes = [e.envelope_event_status_code.lower() for e in notification.envelope_events]
    unknown = [c for c in codes if c not in ENVELOPE_EVENT_CODES] + [
        e for e in notification.events if e not in CONNECT_EVENTS
    ]
    if unknown:
        raise invalid_body(f"eventNotification: '{unknown[0]}' is not an event DocuSign sends.")


def send(envelope: dict[str, Any], now: datetime) -> None:
    """Move a draft (``created``) envelope to ``sent``."""
    if envelope["status"] != "created":
        raise DocuSignError(
            400,
            "ENVELOPE_INVALID_STATUS",
            f"Invalid envelope status. The envelope is '{envelope['status']}' and cannot be sent.",
        )
    signer = next(iter(envelope["recipients"]["signers"]), None)
    if signer is None or not signer["name"] or not signer["email"]:
        raise DocuSignError(
            400,
            "ENVELOPE_IS_INCOMPLETE",
            "The Envelope is not Complete. A Complete Envelope Requires Documents, Recipients, "
            "Tabs, and a Subject Line.",
        )
    stamp = ds_time(now)
    envelope.update(
        status="sent",
        sentDateTime=stamp,
        initialSentDateTime=stamp,
        statusChangedDateTime=stamp,
        lastModifiedDateTime=stamp,
    )
    for recipient in _all_recipients(envelope):
        recipient.update(status="sent", sentDateTime=stamp)


def void(envelope: dict[str, Any], reason: str | None, now: datetime) -> None:
    if not reason:
        raise invalid_parameter(
            "Value for 'voidedReason' must be specified when voiding an envelope."
        )
    if envelope["status"] not in {"sent", "delivered"}:
        raise DocuSignError(
            400,
            "ENVELOPE_CANNOT_VOID_INVALID_STATE",
            "Only envelopes in the 'Sent' or 'Delivered' states may be voided.",
        )
    stamp = ds_time(now)
    envelope.update(
        status="voided",
        voidedReason=reason,
        voidedDateTime=stamp,
        statusChangedDateTime=stamp,
        lastModifiedDateTime=stamp,
    )


def complete(envelope: dict[str, Any], signed_at: datetime) -> None:
    """Every recipient signs (or receives a copy) at ``signed_at``; the envelope completes."""
    stamp = ds_time(signed_at)
    envelope.update(
        status="completed",
        deliveredDateTime=envelope.get("deliveredDateTime") or stamp,
        completedDateTime=stamp,
        statusChangedDateTime=stamp,
        lastModifiedDateTime=stamp,
    )
    for signer in envelope["recipients"]["signers"]:
        signer.update(status="completed", deliveredDateTime=stamp, signedDateTime=stamp)
    for copy in envelope["recipients"]["carbonCopies"]:
        copy.update(status="completed", deliveredDateTime=stamp)


def _all_recipients(envelope: dict[str, Any]) -> list[dict[str, Any]]:
    recipients = envelope["recipients"]
    return [*recipients["signers"], *recipients["carbonCopies"]]


# --- views ---------------------------------------------------------------------------------


def recipients_view(envelope: dict[str, Any], *, include_tabs: bool) -> dict[str, Any]:
    recipients = envelope["recipients"]

    def strip(recipient: dict[str, Any]) -> dict[str, Any]:
        if include_tabs:
            return dict(recipient)
        return {k: v for k, v in recipient.items() if k != "tabs"}

    return {
        "signers": [strip(s) for s in recipients["signers"]],
        "carbonCopies": [strip(c) for c in recipients["carbonCopies"]],
        "recipientCount": recipients["recipientCount"],
        "currentRoutingOrder": recipients["currentRoutingOrder"],
    }


def custom_fields_view(envelope: dict[str, Any]) -> dict[str, Any]:
    fields = envelope["customFields"]
    return {
        "textCustomFields": [dict(f) for f in fields["textCustomFields"]],
        "listCustomFields": [dict(f) for f in fields["listCustomFields"]],
    }


def envelope_view(envelope: dict[str, Any], include: set[str]) -> dict[str, Any]:
    """The ``Envelope`` DocuSign returns; ``include`` may add recipients and custom fields."""
    envelope_id = envelope["envelopeId"]
    uri = f"/envelopes/{envelope_id}"
    view = {
        k: v
        for k, v in envelope.items()
        if k not in {"recipients", "customFields", "eventNotification", "templateId"}
    }
    view.update(
        envelopeUri=uri,
        recipientsUri=f"{uri}/recipients",
        customFieldsUri=f"{uri}/custom_fields",
        documentsUri=f"{uri}/documents",
        documentsCombinedUri=f"{uri}/documents/combined",
        certificateUri=f"{uri}/documents/certificate",
        notificationUri=f"{uri}/notification",
        templatesUri=f"{uri}/templates",
        attachmentsUri=f"{uri}/attachments",
        statusDateTime=envelope["statusChangedDateTime"],
        is21CFRPart11="false",
        signerCanSignOnMobile="true",
        allowComments="true",
    )
    if "recipients" in include:
        view["recipients"] = recipients_view(envelope, include_tabs="tabs" in include)
    if "custom_fields" in include:
        view["customFields"] = custom_fields_view(envelope)
    return view


def matches_custom_field(envelope: dict[str, Any], expression: str) -> bool:
    """DocuSign's ``custom_field=name=value`` filter on list status changes."""
    name, _, value = expression.partition("=")
    return any(
        f["name"] == name and f["value"] == value
        for f in envelope["customFields"]["textCustomFields"]
    )
