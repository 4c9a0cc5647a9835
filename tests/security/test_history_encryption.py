"""With the codec on, a deal's history holds no customer data in clear, and rotation is safe."""

from __future__ import annotations

import base64
import json
import os
import uuid

from google.protobuf.message import Message
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from qtc.deal import QUERY_STATUS, DealStatus
from qtc.errors import VENDOR_UNAVAILABLE
from qtc.models import PricedQuote
from qtc.ports import ACT_CREATE_BILLING_CUSTOMER
from runtime.codec import AesGcmCodec, build_data_converter
from runtime.settings import Settings
from tests.security.conftest import client_with
from tests.security.deals import (
    LoggingVendors,
    a_fresh_quote,
    deal_worker,
    sign_and_finish,
    start_until_signature,
)
from workflows.deal import workflow_id_for

KEY_1 = os.urandom(32)
KEY_2 = os.urandom(32)


def with_keys(active: str, **keys: bytes) -> Settings:
    encoded = {key_id: base64.b64encode(material).decode() for key_id, material in keys.items()}
    return Settings(
        _env_file=None,
        env="sandbox",
        codec_enabled=True,
        codec_keys=SecretStr(json.dumps(encoded)),
        codec_active_key_id=active,
    )


def customer_data(priced: PricedQuote) -> list[bytes]:
    address = priced.account.address
    return [
        text.encode()
        for text in (
            priced.account.legal_name,
            priced.account.billing_email,
            address.line1,
            priced.signer.email,
            priced.signer.name,
        )
    ]


def without_search_attributes(event: HistoryEvent) -> bytes:
    """The event as the server stores it, minus the search attributes: those are indexed in clear
    by design (``QtcCustomer`` holds the legal name so a stuck deal can be found in the Web UI)."""
    copy = HistoryEvent()
    copy.CopyFrom(event)
    copy.workflow_execution_started_event_attributes.ClearField("search_attributes")
    copy.upsert_workflow_search_attributes_event_attributes.ClearField("search_attributes")
    return copy.SerializeToString()


def encrypted_payloads(events: list[HistoryEvent]) -> list[Payload]:
    """Every encrypted payload anywhere in the events (inputs, results, signals, failures)."""
    found: list[Payload] = []

    def walk(message: Message) -> None:
        if isinstance(message, Payload):
            if message.metadata.get("encoding") == b"binary/encrypted":
                found.append(message)
            return
        for field, value in message.ListFields():
            if field.message_type is None:
                continue
            if not field.is_repeated:
                walk(value)
            elif field.message_type.GetOptions().map_entry:
                for item in value.values():
                    if isinstance(item, Message):
                        walk(item)
            else:
                for item in value:
                    walk(item)

    for event in events:
        walk(event)
    return found


async def history_of(client: Client, priced: PricedQuote) -> list[HistoryEvent]:
    history = await client.get_workflow_handle(
        workflow_id_for(priced.opportunity_id)
    ).fetch_history()
    return list(history.events)


async def test_a_history_read_without_the_codec_shows_no_customer_data_in_clear(
    env: WorkflowEnvironment, plain_client: Client
) -> None:
    settings = with_keys("k1", k1=KEY_1)
    client = client_with(env, build_data_converter(settings))
    vendors = LoggingVendors(settings)
    # A vendor error quoting the customer's email: the failure message is stored in history too.
    priced = await a_fresh_quote(env)
    vendors.fakes.failures[ACT_CREATE_BILLING_CUSTOMER] = [
        ApplicationError(
            f"Invalid email {priced.account.billing_email} for {priced.account.legal_name}",
            type=VENDOR_UNAVAILABLE,
        )
    ]
    task_queue = f"security-{uuid.uuid4()}"

    async with deal_worker(client, task_queue, vendors.activities()):
        handle = await start_until_signature(client, task_queue, priced)
        await sign_and_finish(env, handle)
        status = await handle.query(QUERY_STATUS, result_type=DealStatus)

    assert status.stage == "completed"
    assert status.customer == priced.account.legal_name
    assert vendors.fakes.names().count(ACT_CREATE_BILLING_CUSTOMER) == 2
    events = await history_of(plain_client, priced)
    stored = b"".join(without_search_attributes(event) for event in events)
    for clear in customer_data(priced):
        assert clear not in stored, f"{clear!r} is in the history in clear"
    # The data is there, only encrypted: the codec client decodes it back.
    payloads = encrypted_payloads(events)
    assert payloads, "no encrypted payload found in the history"
    decoded = await AesGcmCodec({"k1": KEY_1}, "k1").decode(payloads)
    assert any(priced.account.billing_email.encode() in p.data for p in decoded)


async def test_the_status_query_is_unreadable_without_the_codec(
    env: WorkflowEnvironment, plain_client: Client
) -> None:
    settings = with_keys("k1", k1=KEY_1)
    client = client_with(env, build_data_converter(settings))
    task_queue = f"security-{uuid.uuid4()}"
    priced = await a_fresh_quote(env)

    async with deal_worker(client, task_queue, LoggingVendors(settings).activities()):
        await start_until_signature(client, task_queue, priced)
        handle = plain_client.get_workflow_handle(workflow_id_for(priced.opportunity_id))
        raw = await handle.query(QUERY_STATUS, result_type=RawValue)

    assert raw.payload.metadata["encoding"] == b"binary/encrypted"
    assert priced.account.legal_name.encode() not in raw.payload.SerializeToString()


async def test_a_deal_started_under_key_1_finishes_and_reads_after_key_2_becomes_active(
    env: WorkflowEnvironment,
) -> None:
    before = with_keys("k1", k1=KEY_1)
    after = with_keys("k2", k1=KEY_1, k2=KEY_2)
    task_queue = f"security-{uuid.uuid4()}"
    priced = await a_fresh_quote(env)

    old_client = client_with(env, build_data_converter(before))
    # No workflow cache, so no sticky queue: the Java test server would keep routing the deal to
    # the stopped worker's sticky queue instead of to the new worker.
    old_worker = deal_worker(
        old_client, task_queue, LoggingVendors(before).activities(), max_cached_workflows=0
    )
    async with old_worker:
        await start_until_signature(old_client, task_queue, priced)

    # Rotation: every worker and client restarts with both keys, the new one active. The new
    # worker replays the deal's history, written under key 1, before it can continue.
    new_client = client_with(env, build_data_converter(after))
    handle = new_client.get_workflow_handle(
        workflow_id_for(priced.opportunity_id), result_type=DealStatus
    )
    async with deal_worker(new_client, task_queue, LoggingVendors(after).activities()):
        status = await sign_and_finish(env, handle)

    assert status.stage == "completed"
    assert status.customer == priced.account.legal_name
    used = {
        p.metadata["encryption-key-id"]
        for p in encrypted_payloads(await history_of(new_client, priced))
    }
    assert used == {b"k1", b"k2"}
