"""What the API tests share: settings, quotes, a fake CRM, signed webhook bodies, dev servers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from qtc import errors
from qtc.models import Quote
from qtc.ports import ContractRecord
from runtime.search_attributes import SEARCH_ATTRIBUTES
from runtime.settings import Settings
from runtime.signing import sign
from tests.stack_support import free_port
from tests.unit.builders import quote_dict

ROOT = Path(__file__).resolve().parents[2]
TEMPORAL_CLI = Path(sys.prefix) / "bin" / "temporal"
CONNECT_SECRET = "sandbox-connect-secret"
CALLOUT_SECRET = "sandbox-sf-secret"
ORG_ID = "00D000000000001AAA"

SALES = {"Authorization": "Bearer sandbox-sales"}
DEAL_DESK = {"Authorization": "Bearer sandbox-deal-desk"}
FINANCE = {"Authorization": "Bearer sandbox-finance"}
OPERATOR = {"Authorization": "Bearer sandbox-operator"}
PEOPLE = {
    "sales": "sam.sales@sandbox.example",
    "deal_desk": "dana.deskman@sandbox.example",
    "finance": "fiona.finance@sandbox.example",
    "operator": "oscar.operator@sandbox.example",
}


def api_settings(task_queue: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Sandbox settings for one test: the repo's catalog, a fresh task queue, short timeouts.

    ``.env`` and the environment are ignored so a developer's own settings cannot leak in.
    """
    values: dict[str, Any] = {
        "env": "sandbox",
        "catalog": ROOT / "catalog.toml",
        "state_dir": tmp_path / "state",
        "temporal_task_queue": task_queue,
        "api_temporal_timeout_s": 2.0,
        "api_retry_after_s": 7,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def new_opportunity_id() -> str:
    return "006" + uuid.uuid4().hex[:15].upper()


def new_quote(**overrides: Any) -> dict[str, Any]:
    """The documented example quote (36 months, 50 seats at 10% off) for a fresh opportunity."""
    opportunity_id = new_opportunity_id()
    return quote_dict(
        **{
            "quote_id": f"Q-{opportunity_id[-6:]}",
            "opportunity_id": opportunity_id,
            "lines": [
                {"sku": "PLATFORM-PRO", "quantity": 50, "discount_percent": "10"},
                {"sku": "SUPPORT-PREMIUM", "quantity": 1},
            ],
            **overrides,
        }
    )


class FakeCrm:
    """A ``qtc.ports.CrmReader``: opportunities by id, read the way a CRM reader reads them
    (blocking, by id).

    Unknown ids fail like the CRM activity does (``VendorNotFound``); ``down`` makes every read
    fail as an unreachable Salesforce would. ``reads`` counts calls.
    """

    name = "fake-crm"

    def __init__(self) -> None:
        self.opportunities: dict[str, dict[str, Any]] = {}
        self.stages: dict[str, str] = {}
        self.down = False
        self.reads: list[str] = []
        self.stage_reads: list[str] = []

    def is_closed_won(self, opportunity_id: str) -> bool:
        """``qtc.ports.OpportunityStageReader``: the stage set in ``stages``."""
        self.stage_reads.append(opportunity_id)
        if self.down:
            raise ApplicationError(
                "Salesforce could not be reached", type=errors.VENDOR_UNAVAILABLE
            )
        if opportunity_id not in self.opportunities:
            raise ApplicationError(
                f"Salesforce has no opportunity {opportunity_id}",
                type=errors.VENDOR_NOT_FOUND,
                non_retryable=True,
            )
        return self.stages.get(opportunity_id) == "Closed Won"

    def add(self, quote: dict[str, Any]) -> str:
        self.opportunities[quote["opportunity_id"]] = quote
        return str(quote["opportunity_id"])

    def read_quote(self, opportunity_id: str) -> Quote:
        self.reads.append(opportunity_id)
        if self.down:
            raise ApplicationError(
                "Salesforce could not be reached", type=errors.VENDOR_UNAVAILABLE
            )
        if opportunity_id not in self.opportunities:
            raise ApplicationError(
                f"Salesforce has no opportunity {opportunity_id}",
                type=errors.VENDOR_NOT_FOUND,
                non_retryable=True,
            )
        return Quote.model_validate(self.opportunities[opportunity_id])


class FakeContracts:
    """A ``qtc.ports.ContractReader``: envelopes by id as DocuSign would answer a read of them.

    An id not in ``envelopes`` is one the account does not hold (None); ``down`` makes every read
    fail as an unreachable DocuSign would. ``reads`` lists the ids read.
    """

    name = "fake-esign"

    def __init__(self) -> None:
        self.envelopes: dict[str, ContractRecord] = {}
        self.down = False
        self.reads: list[str] = []

    def sign(
        self,
        envelope_id: str,
        deal_id: str | None,
        completed_at: datetime = datetime(2026, 11, 20, 10, 15, tzinfo=UTC),
    ) -> ContractRecord:
        record = ContractRecord(
            contract_id=envelope_id,
            deal_id=deal_id,
            status="completed",
            completed_at=completed_at,
            signer_name="Jane Doe",
            signer_email="jane@acme.example",
        )
        self.envelopes[envelope_id] = record
        return record

    def read_contract(self, contract_id: str) -> ContractRecord | None:
        self.reads.append(contract_id)
        if self.down:
            raise ApplicationError("DocuSign could not be reached", type=errors.VENDOR_UNAVAILABLE)
        return self.envelopes.get(contract_id)


# --- DocuSign Connect --------------------------------------------------------------------------


def connect_event(
    envelope_id: str,
    *,
    opportunity_id: str | None,
    event: str = "envelope-completed",
    completed_at: str = "2026-11-20T10:15:00.0000000Z",
) -> bytes:
    """A Connect JSON SIM message as DocuSign sends it (the parts the listener reads, and more)."""
    custom = [{"fieldId": "1", "name": "opportunity_id", "value": opportunity_id, "show": "false"}]
    message = {
        "event": event,
        "apiVersion": "v2.1",
        "uri": f"/restapi/v2.1/accounts/acc/envelopes/{envelope_id}",
        "retryCount": 0,
        "configurationId": 10000001,
        "generatedDateTime": completed_at,
        "data": {
            "accountId": "sandbox-account",
            "userId": "sandbox-user",
            "envelopeId": envelope_id,
            "envelopeSummary": {
                "status": "completed" if event == "envelope-completed" else "sent",
                "envelopeId": envelope_id,
                "completedDateTime": completed_at,
                "customFields": {
                    "textCustomFields": custom if opportunity_id else [],
                    "listCustomFields": [],
                },
                "recipients": {
                    "signers": [
                        {"name": "Jane Doe", "email": "jane@acme.example", "status": "completed"}
                    ]
                },
            },
        },
    }
    return json.dumps(message).encode()


def connect_headers(body: bytes, *secrets: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "X-Authorization-Digest": "HMACSHA256"}
    for number, secret in enumerate(secrets or (CONNECT_SECRET,), start=1):
        digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        headers[f"X-DocuSign-Signature-{number}"] = base64.b64encode(digest).decode()
    return headers


# --- Salesforce ------------------------------------------------------------------------------


def callout(opportunity_id: str, *, event: str = "closed_won", phase: int | None = None) -> bytes:
    body: dict[str, Any] = {"event": event, "opportunity_id": opportunity_id}
    if phase is not None:
        body["phase"] = phase
    return json.dumps(body).encode()


def callout_headers(
    body: bytes, *, secret: str = CALLOUT_SECRET, at: float | None = None
) -> dict[str, str]:
    timestamp = int(time.time() if at is None else at)
    return {
        "Content-Type": "application/json",
        "X-Qtc-Signature": sign(secret, body, timestamp),
    }


def outbound_message(
    notifications: Mapping[str, tuple[str, str]], *, org_id: str = ORG_ID
) -> bytes:
    """A SOAP Outbound Message: notification id -> (opportunity id, StageName)."""
    items = "".join(
        f"""<Notification><Id>{notification_id}</Id>
<sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
<sf:Id>{opportunity_id}</sf:Id><sf:StageName>{stage}</sf:StageName></sObject>
</Notification>"""
        for notification_id, (opportunity_id, stage) in notifications.items()
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soapenv:Body>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound">
<OrganizationId>{org_id}</OrganizationId><ActionId>04k000000000001AAA</ActionId>
<SessionId xsi:nil="true"/>
<EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/59.0</EnterpriseUrl>
<PartnerUrl>https://example.my.salesforce.com/services/Soap/u/59.0</PartnerUrl>
{items}
</notifications></soapenv:Body></soapenv:Envelope>""".encode()


# --- waiting -------------------------------------------------------------------------------


async def wait_for_stage(
    api: httpx.AsyncClient, deal_id: str, stage: str, *, seconds: float = 15.0
) -> dict[str, Any]:
    """Poll ``GET /v1/deals/{id}`` until the deal is in ``stage``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        response = await api.get(f"/v1/deals/{deal_id}", headers=OPERATOR)
        if response.status_code == 200 and response.json()["stage"] == stage:
            return dict(response.json())
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{deal_id} never reached {stage}: {response.text}")
        await asyncio.sleep(0.05)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# --- the real dev server ------------------------------------------------------------------------


async def start_dev_server(database: Path, port: int) -> WorkflowEnvironment:
    """The Temporal CLI dev server on ``port`` with its SQLite file and our search attributes.

    Every port it opens is chosen here, never a default one, so parallel runs cannot collide.
    """
    return await WorkflowEnvironment.start_local(
        port=port,
        ui=False,
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_existing_path=str(TEMPORAL_CLI),
        dev_server_database_filename=str(database),
        dev_server_extra_args=[
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
        ],
    )
