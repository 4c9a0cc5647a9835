"""A vendor that pushes back is waited out, not given up on, and not hammered.

Each test runs one production activity (the worker's own class, the real vendor SDK, the sandbox
emulator) under the deal workflow's own retry policy, through a one-step probe workflow on the
dev server, with a fault switched on for a short burst. The timing comes from the workflow
history, which records when the attempt that succeeded started and which attempt it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from integrations.salesforce.activities import SalesforceCrm
from integrations.salesforce.client import build_salesforce_client
from integrations.stripe.activities import StripeBilling
from integrations.stripe.client import build_stripe_client
from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from qtc.ports import (
    ACT_CREATE_BILLING_CUSTOMER,
    ACT_MARK_CLOSED_WON,
    BillingCustomer,
    CreateCustomerInput,
    MarkClosedWonInput,
)
from runtime.settings import Settings
from sandbox.runner import RunningEmulators
from tests.unit.builders import REPO_ROOT
from workflows.deal import ACTIVITY_RETRY_POLICY

STRIPE_RETRY_AFTER_S = (
    3  # longer than the policy's first interval (1 s): only Retry-After explains it
)


@workflow.defn(name="ResilienceCreateCustomer")
class CreateCustomerProbe:
    @workflow.run
    async def run(self, step: CreateCustomerInput) -> BillingCustomer:
        return await workflow.execute_activity(
            ACT_CREATE_BILLING_CUSTOMER,
            step,
            result_type=BillingCustomer,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=ACTIVITY_RETRY_POLICY,
        )


@workflow.defn(name="ResilienceMarkClosedWon")
class MarkClosedWonProbe:
    @workflow.run
    async def run(self, step: MarkClosedWonInput) -> None:
        await workflow.execute_activity(
            ACT_MARK_CLOSED_WON,
            step,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=ACTIVITY_RETRY_POLICY,
        )


def vendor_settings(emulators: RunningEmulators) -> Settings:
    return Settings(
        _env_file=None,
        env="sandbox",
        catalog=REPO_ROOT / "catalog.toml",
        stripe_api_base=emulators.stripe_url,
        salesforce_instance_url=emulators.salesforce_url,
        salesforce_ca_file=emulators.salesforce_ca_file,
    )


@contextlib.asynccontextmanager
async def probe_worker(
    client: Client, workflow_class: type, activities: list[Any]
) -> AsyncIterator[str]:
    task_queue = f"resilience-{uuid.uuid4()}"
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[workflow_class],
            activities=activities,
            activity_executor=executor,
            # The probe is two lines of orchestration defined in a test module; the sandbox
            # would re-import pytest and the emulators for nothing.
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            yield task_queue


@contextlib.asynccontextmanager
async def fault_burst(
    emulators: RunningEmulators, emulator: str, rule: dict[str, Any], injected: int
) -> AsyncIterator[None]:
    """Switch ``rule`` on for one emulator and off again once it has injected ``injected``."""
    base = emulators.urls[emulator]
    tls = ssl.create_default_context(cafile=str(emulators.salesforce_ca_file))
    async with httpx.AsyncClient(timeout=10, verify=tls) as http:

        async def count() -> int:
            stats = (await http.get(f"{base}/_sandbox/stats")).json()
            return sum(int(n) for k, n in stats["faults_injected"].items() if k != "latency")

        before = await count()

        async def switch_off_after_burst() -> None:
            # Bounded: a vendor that never gets the faulty call must not hang the test.
            for _ in range(600):
                if await count() - before >= injected:
                    break
                await asyncio.sleep(0.02)
            await http.post(f"{base}/_sandbox/faults", json={"rules": []})

        (await http.post(f"{base}/_sandbox/faults", json={"rules": [rule]})).raise_for_status()
        watcher = asyncio.create_task(switch_off_after_burst())
        try:
            yield
        finally:
            await watcher


async def last_attempt(handle: WorkflowHandle[Any, Any]) -> tuple[int, timedelta]:
    """The attempt number of the activity's final attempt, and when it started after scheduling."""
    history = await handle.fetch_history()
    scheduled: datetime | None = None
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled = event.event_time.ToDatetime()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            assert scheduled is not None
            started = event.event_time.ToDatetime()
            return event.activity_task_started_event_attributes.attempt, started - scheduled
    raise AssertionError("the activity never started")


async def test_a_stripe_rate_limit_is_retried_no_sooner_than_its_retry_after(
    dev_server: WorkflowEnvironment, reset_emulators: RunningEmulators
) -> None:
    example = (REPO_ROOT / "examples" / "quote-phase3.json").read_bytes()
    priced = price_quote(example, load_catalog(REPO_ROOT / "catalog.toml"), datetime.now(UTC))
    deal_id = f"deal-resilience-{uuid.uuid4().hex[:12]}"
    billing = StripeBilling(build_stripe_client(vendor_settings(reset_emulators)))
    rule = {
        "path": r"^/v1/customers$",
        "method": "POST",
        "rate_429": 1.0,
        "retry_after_s": STRIPE_RETRY_AFTER_S,
    }
    async with (
        probe_worker(
            dev_server.client, CreateCustomerProbe, [billing.create_billing_customer]
        ) as task_queue,
        fault_burst(reset_emulators, "stripe", rule, injected=1),
    ):
        handle = await dev_server.client.start_workflow(
            CreateCustomerProbe.run,
            CreateCustomerInput(deal_id=deal_id, priced=priced),
            id=deal_id,
            task_queue=task_queue,
        )
        created = await handle.result()

    attempt, waited = await last_attempt(handle)
    assert attempt == 2
    assert waited >= timedelta(seconds=STRIPE_RETRY_AFTER_S)
    customer = build_stripe_client(vendor_settings(reset_emulators)).v1.customers.retrieve(
        created.customer_id
    )
    assert customer.metadata is not None
    assert customer.metadata.to_dict()["deal_id"] == deal_id


async def test_a_salesforce_request_limit_burst_during_closed_won_still_closes_the_opportunity(
    dev_server: WorkflowEnvironment, reset_emulators: RunningEmulators
) -> None:
    settings = vendor_settings(reset_emulators)
    sf: Any = build_salesforce_client(settings)
    opportunity_id = str(
        sf.Opportunity.create(
            {"Name": "Burst", "StageName": "Negotiation/Review", "CloseDate": "2030-12-31"}
        )["id"]
    )
    crm = SalesforceCrm(build_salesforce_client(settings))
    deal_id = f"deal-{opportunity_id}"
    # Salesforce refuses the write itself (403 REQUEST_LIMIT_EXCEEDED) twice in a row.
    rule = {"path": r"/sobjects/Opportunity/", "method": "PATCH", "rate_429": 1.0}
    async with (
        probe_worker(dev_server.client, MarkClosedWonProbe, [crm.mark_closed_won]) as task_queue,
        fault_burst(reset_emulators, "salesforce", rule, injected=2),
    ):
        handle = await dev_server.client.start_workflow(
            MarkClosedWonProbe.run,
            MarkClosedWonInput(
                deal_id=deal_id, opportunity_id=opportunity_id, close_date=date(2026, 11, 27)
            ),
            id=f"{deal_id}-{uuid.uuid4().hex[:6]}",
            task_queue=task_queue,
        )
        await handle.result()

    attempt, _ = await last_attempt(handle)
    assert attempt == 3
    opportunity = sf.Opportunity.get(opportunity_id)
    assert opportunity["StageName"] == "Closed Won"
    assert opportunity["CloseDate"] == "2026-11-27"
    assert opportunity["QTC_Deal_Id__c"] == deal_id
