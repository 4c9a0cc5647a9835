"""Webhook bodies as a real DocuSign account and a real Salesforce org send them.

Built from the vendors' published formats, not from what our emulators or our adapters produce:

- DocuSign Connect JSON SIM (Connect 2.0 "JSON SIM event model"): ``event``, ``apiVersion``,
  ``uri``, ``retryCount``, ``configurationId``, ``generatedDateTime`` and ``data``. With the
  configuration's defaults ``data`` holds only ``accountId``, ``userId`` and ``envelopeId``; with
  ``includeData`` it adds ``envelopeSummary`` in the REST v2.1 shapes (7-digit fractions, ``Z``).
- DocuSign Connect legacy XML (``DocuSignEnvelopeInformation``, namespace
  ``http://www.docusign.net/API/3.0``): ``EnvelopeStatus`` with ``RecipientStatuses``, the envelope
  fields and dates as wall time in the account's zone (milliseconds, no zone), the envelope's
  ``CustomFields``, then ``TimeZone`` and ``TimeZoneOffset`` after ``EnvelopeStatus``.
- Salesforce Outbound Message (the ``notifications()`` call of the outbound messaging WSDL): a SOAP
  envelope with ``OrganizationId``, ``ActionId``, ``SessionId`` (nil unless "Send Session ID"),
  ``EnterpriseUrl``, ``PartnerUrl`` and up to 100 ``Notification`` elements, each an ``Id`` and
  an ``sObject`` of ``xsi:type="sf:Opportunity"`` carrying only the fields the definition
  selected, ids in their 18-character form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

DOCUSIGN_ACCOUNT_ID = "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"
DOCUSIGN_USER_ID = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
CONFIGURATION_ID = 10418278
# A real org id (15 characters as Setup shows it; 18 as the messages carry it).
ORG_ID_15 = "00D5e000000ZrQk"
ORG_ID_18 = "00D5e000000ZrQkEAK"


def connect_sim(
    envelope_id: str,
    *,
    event: str = "envelope-completed",
    account_id: str = DOCUSIGN_ACCOUNT_ID,
    summary: Mapping[str, Any] | None = None,
    generated: str = "2026-11-20T10:15:03.4630000Z",
) -> bytes:
    """A JSON SIM message; ``summary`` is the ``envelopeSummary`` (None: the default message)."""
    data: dict[str, Any] = {
        "accountId": account_id,
        "userId": DOCUSIGN_USER_ID,
        "envelopeId": envelope_id,
    }
    if summary is not None:
        data["envelopeSummary"] = dict(summary)
    message = {
        "event": event,
        "apiVersion": "v2.1",
        "uri": f"/restapi/v2.1/accounts/{account_id}/envelopes/{envelope_id}",
        "retryCount": 0,
        "configurationId": CONFIGURATION_ID,
        "generatedDateTime": generated,
        "data": data,
    }
    return json.dumps(message, indent=2).encode()


def envelope_summary(
    envelope_id: str,
    *,
    custom_fields: Mapping[str, str] | None,
    completed: str = "2026-11-20T10:15:00.0000000Z",
    signer: tuple[str, str] = ("Jane Doe", "jane@acme.example"),
    status: str = "completed",
) -> dict[str, Any]:
    """``envelopeSummary`` with ``includeData: ["custom_fields", "recipients"]``.

    ``custom_fields`` None leaves the section out (a configuration that did not ask for it).
    """
    summary: dict[str, Any] = {
        "status": status,
        "documentsUri": f"/envelopes/{envelope_id}/documents",
        "recipientsUri": f"/envelopes/{envelope_id}/recipients",
        "attachmentsUri": f"/envelopes/{envelope_id}/attachments",
        "envelopeUri": f"/envelopes/{envelope_id}",
        "emailSubject": "Please DocuSign: Order form",
        "envelopeId": envelope_id,
        "signingLocation": "online",
        "customFieldsUri": f"/envelopes/{envelope_id}/custom_fields",
        "notificationUri": f"/envelopes/{envelope_id}/notification",
        "enableWetSign": "true",
        "allowMarkup": "false",
        "allowReassign": "true",
        "createdDateTime": "2026-11-20T10:01:12.2030000Z",
        "lastModifiedDateTime": "2026-11-20T10:01:12.2170000Z",
        "deliveredDateTime": "2026-11-20T10:14:31.5530000Z",
        "initialSentDateTime": "2026-11-20T10:01:12.9800000Z",
        "sentDateTime": "2026-11-20T10:01:12.9800000Z",
        "completedDateTime": completed,
        "statusChangedDateTime": completed,
        "documentsCombinedUri": f"/envelopes/{envelope_id}/documents/combined",
        "certificateUri": f"/envelopes/{envelope_id}/documents/certificate",
        "templatesUri": f"/envelopes/{envelope_id}/templates",
        "expireEnabled": "true",
        "expireDateTime": "2027-03-20T10:01:12.9800000Z",
        "expireAfter": "120",
        "sender": {
            "userName": "Sales Ops",
            "userId": DOCUSIGN_USER_ID,
            "accountId": DOCUSIGN_ACCOUNT_ID,
            "email": "salesops@vendor.example",
        },
        "recipients": {
            "signers": [
                {
                    "creationReason": "sender",
                    "isBulkRecipient": "false",
                    "requireUploadSignature": "false",
                    "name": signer[0],
                    "email": signer[1],
                    "recipientId": "1",
                    "recipientIdGuid": "5e8a4b8e-0d3c-4d6c-9b1a-2f1f3a4b5c6d",
                    "requireIdLookup": "false",
                    "userId": "0f1e2d3c-4b5a-4697-8a7b-6c5d4e3f2a1b",
                    "routingOrder": "1",
                    "roleName": "Signer",
                    "status": "completed",
                    "completedCount": "1",
                    "signedDateTime": completed,
                    "deliveredDateTime": "2026-11-20T10:14:31.5530000Z",
                    "deliveryMethod": "email",
                    "recipientType": "signer",
                }
            ],
            "agents": [],
            "editors": [],
            "intermediaries": [],
            "carbonCopies": [],
            "certifiedDeliveries": [],
            "inPersonSigners": [],
            "seals": [],
            "witnesses": [],
            "notaries": [],
            "recipientCount": "1",
            "currentRoutingOrder": "1",
        },
        "purgeState": "unpurged",
        "envelopeIdStamping": "true",
        "is21CFRPart11": "false",
        "signerCanSignOnMobile": "true",
        "autoNavigation": "true",
        "isSignatureProviderEnvelope": "false",
        "hasFormDataChanged": "false",
        "allowComments": "true",
        "hasComments": "false",
        "allowViewHistory": "true",
        "envelopeMetadata": {
            "allowAdvancedCorrect": "true",
            "enableSignWithNotary": "false",
            "allowCorrect": "true",
        },
        "anySigner": None,
        "envelopeLocation": "current_site",
        "isDynamicEnvelope": "false",
    }
    if custom_fields is not None:
        summary["customFields"] = {
            "textCustomFields": [
                {
                    "fieldId": str(10_843_211 + i),
                    "name": name,
                    "show": "false",
                    "required": "false",
                    "value": value,
                }
                for i, (name, value) in enumerate(custom_fields.items())
            ],
            "listCustomFields": [],
        }
    return summary


def connect_xml(
    envelope_id: str,
    *,
    custom_fields: Mapping[str, str],
    status: str = "Completed",
    completed_local: str = "2026-11-20T02:15:00.133",
    time_zone: tuple[str, str] | None = ("Pacific Standard Time", "-8"),
    signer: tuple[str, str] = ("Jane Doe", "jane@acme.example"),
    doctype: str = "",
) -> bytes:
    """A legacy ``DocuSignEnvelopeInformation`` message; ``time_zone`` None leaves it out."""
    fields = "".join(
        f"""
        <CustomField>
            <Name>{escape(name)}</Name>
            <Show>false</Show>
            <Required>false</Required>
            <Value>{escape(value)}</Value>
            <CustomFieldType>Text</CustomFieldType>
        </CustomField>"""
        for name, value in custom_fields.items()
    )
    zone = (
        f"<TimeZone>{time_zone[0]}</TimeZone>\n    <TimeZoneOffset>{time_zone[1]}</TimeZoneOffset>"
        if time_zone
        else ""
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>{doctype}
<DocuSignEnvelopeInformation xmlns:xsd="http://www.w3.org/2001/XMLSchema"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns="http://www.docusign.net/API/3.0">
  <EnvelopeStatus>
    <RecipientStatuses>
      <RecipientStatus>
        <Type>Signer</Type>
        <Email>{signer[1]}</Email>
        <UserName>{signer[0]}</UserName>
        <RoutingOrder>1</RoutingOrder>
        <Sent>2026-11-20T02:01:12.98</Sent>
        <Delivered>2026-11-20T02:14:31.553</Delivered>
        <Signed>{completed_local}</Signed>
        <DeclineReason xsi:nil="true" />
        <Status>{status}</Status>
        <RecipientIPAddress>203.0.113.7</RecipientIPAddress>
        <CustomFields />
        <TabStatuses>
          <TabStatus>
            <TabType>SignHere</TabType>
            <Status>Signed</Status>
            <TabLabel>sign</TabLabel>
            <TabName>Please Sign</TabName>
            <TabValue />
            <DocumentID>1</DocumentID>
            <PageNumber>3</PageNumber>
          </TabStatus>
        </TabStatuses>
        <AccountStatus>Active</AccountStatus>
        <RecipientId>5e8a4b8e-0d3c-4d6c-9b1a-2f1f3a4b5c6d</RecipientId>
      </RecipientStatus>
    </RecipientStatuses>
    <TimeGenerated>2026-11-20T02:15:03.9661043</TimeGenerated>
    <EnvelopeID>{envelope_id}</EnvelopeID>
    <Subject>Please DocuSign: Order form</Subject>
    <UserName>Sales Ops</UserName>
    <Email>salesops@vendor.example</Email>
    <Status>{status}</Status>
    <Created>2026-11-20T02:01:12.203</Created>
    <Sent>2026-11-20T02:01:12.98</Sent>
    <Delivered>2026-11-20T02:14:31.553</Delivered>
    <Signed>{completed_local}</Signed>
    <Completed>{completed_local}</Completed>
    <ACStatus>Original</ACStatus>
    <ACStatusDate>2026-11-20T02:01:12.203</ACStatusDate>
    <ACHolder>Sales Ops</ACHolder>
    <ACHolderEmail>salesops@vendor.example</ACHolderEmail>
    <ACHolderLocation>DocuSign</ACHolderLocation>
    <SigningLocation>Online</SigningLocation>
    <SenderIPAddress>198.51.100.4</SenderIPAddress>
    <EnvelopePDFHash />
    <CustomFields>{fields}
    </CustomFields>
    <AutoNavigation>true</AutoNavigation>
    <EnvelopeIdStamping>true</EnvelopeIdStamping>
    <AuthoritativeCopy>false</AuthoritativeCopy>
    <DocumentStatuses>
      <DocumentStatus>
        <ID>1</ID>
        <Name>Order form</Name>
        <TemplateName />
        <Sequence>1</Sequence>
      </DocumentStatus>
    </DocumentStatuses>
  </EnvelopeStatus>
  {zone}
</DocuSignEnvelopeInformation>
""".encode()


def connect_signature_headers(
    body: bytes, *secrets: str, content_type: str = "application/json"
) -> dict[str, str]:
    """The headers Connect sends with HMAC on: one ``X-DocuSign-Signature-N`` per active key."""
    headers = {"Content-Type": content_type, "X-Authorization-Digest": "HMACSHA256"}
    for number, secret in enumerate(secrets, start=1):
        digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        headers[f"X-DocuSign-Signature-{number}"] = base64.b64encode(digest).decode()
    return headers


def outbound_message(
    notifications: Mapping[str, Mapping[str, str]],
    *,
    org_id: str = ORG_ID_18,
    object_type: str = "Opportunity",
) -> bytes:
    """An Outbound Message: notification id -> the selected fields of the record (``Id`` first)."""

    def record(fields: Mapping[str, str]) -> str:
        return "".join(f"\n     <sf:{k}>{escape(v)}</sf:{k}>" for k, v in fields.items())

    items = "".join(
        f"""
   <Notification>
    <Id>{notification_id}</Id>
    <sObject xsi:type="sf:{object_type}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">\
{record(fields)}
    </sObject>
   </Notification>"""
        for notification_id, fields in notifications.items()
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org_id}</OrganizationId>
   <ActionId>04k5e000000KzTbAAK</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/61.0/{org_id[:15]}</EnterpriseUrl>
   <PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/61.0/{org_id[:15]}</PartnerUrl>\
{items}
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>
""".encode()
