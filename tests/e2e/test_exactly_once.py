"""Exactly once under a worker crash: SIGKILL the worker in the middle of each billing step.

For each step the vendor call is held in flight (latency injected on its emulator path), the worker
process is killed with SIGKILL once the emulator has received the request, and a new worker
process takes over. The killed request still lands at the vendor. The billing steps run as local
activities inside the worker's workflow task (workflows/deal.py, ``LOCAL_STEPS``), so the server
notices the dead worker when that task times out (10 s) and the next worker runs the step again;
the new run must find what the killed one did instead of doing it again.

The four crashes take about 15-20 s each, most of it that timeout, so they run concurrently:
each in its own namespace, task queue, emulators and worker processes, so no fault rule or counter
is shared. The module fixture runs them once; each test reads the outcome of its own step.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import TimeoutType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from qtc.deal import DealStatus
from qtc.ports import (
    ACT_CREATE_BILLING_CUSTOMER,
    ACT_CREATE_SUBSCRIPTION,
    ACT_PROVISION_PRODUCT,
    ACT_SEND_FIRST_INVOICE,
)
from runtime.settings import Settings
from runtime.temporal import connect
from sandbox.runner import EmulatorPorts, RunningEmulators, start_emulators
from service import deals
from tests.e2e.conftest import temporal_address
from tests.e2e.support import (
    CATALOG,
    Emulated,
    WorkerProcess,
    new_opportunity,
    qtc_env,
    quote_file,
    salesforce,
    settings_from,
    sign_contract,
    wait_for_stage,
)

LATENCY_MS = 5_000  # holds the request in flight long enough to kill the worker inside it
RECOVERY_TIMEOUT_S = 120.0
LOCAL_ACTIVITY_MARKER = "core_local_activity"


def stripe_objects(kind: str) -> Callable[[Emulated], bool]:
    def landed(vendors: Emulated) -> bool:
        return bool(vendors.stripe_stats()["objects"][kind])

    return landed


def invoice_sent(vendors: Emulated) -> bool:
    return any(vendors.stripe.events.list(params={"type": "invoice.sent", "limit": 1}).data)


def tenant_provisioned(vendors: Emulated) -> bool:
    return bool(vendors.provisioning_stats()["provisioned"])


@dataclass(frozen=True)
class Step:
    activity: str
    emulator: str
    path: str
    landed: Callable[[Emulated], bool]
    """Whether the killed attempt's request has taken effect at the vendor."""


STEPS = [
    Step(ACT_CREATE_BILLING_CUSTOMER, "stripe", r"^/v1/customers$", stripe_objects("customer")),
    Step(
        ACT_CREATE_SUBSCRIPTION,
        "stripe",
        r"^/v1/subscription_schedules$",
        stripe_objects("subscription_schedule"),
    ),
    Step(ACT_SEND_FIRST_INVOICE, "stripe", r"^/v1/invoices/[^/]+/send$", invoice_sent),
    Step(ACT_PROVISION_PRODUCT, "provisioning", r"^/v1/provision$", tenant_provisioned),
]


@dataclass
class Outcome:
    status: DealStatus
    customers: int
    schedules: int
    subscriptions: int
    first_invoice_sent: int
    provisioning: dict[str, Any]
    recovery: Recovery
    kill_to_completed_s: float
    worker_exit_code: int | None
    worker_log: str
    killed_request_landed: bool = False


def emulator_url(emulators: RunningEmulators, name: str) -> str:
    return emulators.urls[name]


async def set_latency(http: httpx.AsyncClient, emulators: RunningEmulators, step: Step) -> None:
    rules = [{"path": step.path, "method": "POST", "latency_ms": LATENCY_MS}]
    response = await http.post(
        f"{emulator_url(emulators, step.emulator)}/_sandbox/faults", json={"rules": rules}
    )
    response.raise_for_status()


async def clear_faults(http: httpx.AsyncClient, emulators: RunningEmulators, step: Step) -> None:
    url = f"{emulator_url(emulators, step.emulator)}/_sandbox/faults"
    (await http.post(url, json={})).raise_for_status()


async def wait_until_request_in_flight(
    http: httpx.AsyncClient, emulators: RunningEmulators, step: Step
) -> None:
    """The emulator counts the held request before sleeping on it: the attempt is in flight."""
    url = f"{emulator_url(emulators, step.emulator)}/_sandbox/stats"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stats = (await http.get(url)).json()
        if stats["faults_injected"]["latency"] >= 1:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{step.activity} never reached the {step.emulator} emulator")


async def wait_until_landed(vendors: Emulated, step: Step) -> bool:
    deadline = time.monotonic() + LATENCY_MS / 1000 + 10
    while time.monotonic() < deadline:
        if await asyncio.to_thread(step.landed, vendors):
            return True
        await asyncio.sleep(0.1)
    return False


@dataclass(frozen=True)
class Recovery:
    """What the deal's history says about the crashed step."""

    recorded: int
    """Local-activity markers for the step: how many of its runs the deal kept (one)."""
    task_timed_out: bool
    """A workflow task timed out: how the server noticed the dead worker."""


async def recovery_of(client: Client, deal_id: str, activity: str) -> Recovery:
    """The billing steps run as local activities (workflows/deal.py, ``LOCAL_STEPS``): the dead
    worker's workflow task times out, and the next worker runs the step again."""
    history = await client.get_workflow_handle(deal_id).fetch_history()
    recorded = 0
    for event in history.events:
        if not event.HasField("marker_recorded_event_attributes"):
            continue
        marker = event.marker_recorded_event_attributes
        if marker.marker_name != LOCAL_ACTIVITY_MARKER:
            continue
        data = json.loads(marker.details["data"].payloads[0].data)
        recorded += data["activity_type"] == activity
    timed_out = any(
        event.HasField("workflow_task_timed_out_event_attributes")
        and event.workflow_task_timed_out_event_attributes.timeout_type
        == TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE
        for event in history.events
    )
    return Recovery(recorded=recorded, task_timed_out=timed_out)


async def crash_in(
    step: Step, temporal: WorkflowEnvironment, namespace: str, directory: Path
) -> Outcome:
    directory.mkdir(parents=True)
    emulators = await asyncio.to_thread(
        start_emulators, directory / "emulators", ports=EmulatorPorts()
    )
    env = qtc_env(
        temporal_address(temporal), namespace, f"crash-{uuid.uuid4()}", emulators, directory
    )
    first = WorkerProcess(env, directory / "worker-1.log")
    second = WorkerProcess(env, directory / "worker-2.log")
    try:
        client = await connect(settings_from(env))
        sf = salesforce(emulators)
        opportunity_id = await asyncio.to_thread(new_opportunity, sf, f"crash in {step.activity}")
        quote = quote_file(directory, "quote-phase3.json", opportunity_id)
        priced = price_quote(quote.read_bytes(), load_catalog(CATALOG), datetime.now(UTC))
        await asyncio.to_thread(first.start)
        async with httpx.AsyncClient(timeout=10) as http:
            await set_latency(http, emulators, step)
            deal_id = (
                await deals.start_deal(
                    client,
                    Settings(temporal_task_queue=env_queue(env)),
                    priced,
                    phase=3,
                    started_by="e2e",
                )
            ).deal_id
            await sign_contract(client, emulators, deal_id)
            await wait_until_request_in_flight(http, emulators, step)
            first.kill()
            killed_at = time.monotonic()
            await clear_faults(http, emulators, step)
        # The vendor finishes the killed worker's request on its own: the retry must find it.
        landed = await wait_until_landed(Emulated(emulators), step)
        await asyncio.to_thread(second.start)
        done = await wait_for_stage(client, deal_id, "completed", timeout_s=RECOVERY_TIMEOUT_S)
        kill_to_completed_s = time.monotonic() - killed_at
        exit_code = await asyncio.to_thread(second.stop)
        recovery = await recovery_of(client, deal_id, step.activity)
        return await asyncio.to_thread(
            observe,
            emulators,
            done,
            recovery=recovery,
            kill_to_completed_s=kill_to_completed_s,
            exit_code=exit_code,
            log=second.tail(),
            landed=landed,
        )
    finally:
        first.kill()
        second.kill()
        await asyncio.to_thread(emulators.stop)


def env_queue(env: dict[str, str]) -> str:
    return env["QTC_TEMPORAL_TASK_QUEUE"]


def observe(
    emulators: RunningEmulators,
    done: DealStatus,
    *,
    recovery: Recovery,
    kill_to_completed_s: float,
    exit_code: int | None,
    log: str,
    landed: bool,
) -> Outcome:
    vendors = Emulated(emulators)
    customer_id = done.billing_customer_id or ""
    return Outcome(
        status=done,
        customers=len(vendors.customers(done.deal_id)),
        schedules=len(vendors.schedules(customer_id)),
        subscriptions=len(vendors.subscriptions(customer_id)),
        first_invoice_sent=vendors.sent_events(done.billing_invoice_id or ""),
        provisioning=vendors.provisioning_stats(),
        recovery=recovery,
        kill_to_completed_s=kill_to_completed_s,
        worker_exit_code=exit_code,
        worker_log=log,
        killed_request_landed=landed,
    )


@pytest_asyncio.fixture(scope="module")
async def crashes(
    temporal: WorkflowEnvironment,
    namespaces: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Outcome | BaseException]:
    root = tmp_path_factory.mktemp("crashes")
    results = await asyncio.gather(
        *(crash_in(step, temporal, next(namespaces), root / step.activity) for step in STEPS),
        return_exceptions=True,
    )
    return {step.activity: result for step, result in zip(STEPS, results, strict=True)}


def outcome_of(crashes: dict[str, Outcome | BaseException], activity: str) -> Outcome:
    result = crashes[activity]
    if isinstance(result, BaseException):
        raise result
    return result


def assert_billed_exactly_once(outcome: Outcome) -> None:
    assert outcome.status.stage == "completed"
    assert outcome.customers == 1
    assert outcome.schedules == 1
    assert outcome.subscriptions == 1
    assert outcome.first_invoice_sent == 1
    provisioning = outcome.provisioning
    assert (provisioning["provisioned"], provisioning["tenants"]) == (1, 1)
    assert provisioning["conflicts"] == 0


def assert_the_killed_attempt_was_retried(outcome: Outcome) -> None:
    assert outcome.killed_request_landed
    assert outcome.recovery.task_timed_out
    assert outcome.recovery.recorded == 1


async def test_worker_killed_while_creating_the_billing_customer_bills_the_deal_once(
    crashes: dict[str, Outcome | BaseException],
) -> None:
    outcome = outcome_of(crashes, ACT_CREATE_BILLING_CUSTOMER)
    assert_the_killed_attempt_was_retried(outcome)
    assert_billed_exactly_once(outcome)


async def test_worker_killed_while_creating_the_subscription_bills_the_deal_once(
    crashes: dict[str, Outcome | BaseException],
) -> None:
    outcome = outcome_of(crashes, ACT_CREATE_SUBSCRIPTION)
    assert_the_killed_attempt_was_retried(outcome)
    assert_billed_exactly_once(outcome)


async def test_worker_killed_while_sending_the_first_invoice_sends_it_once(
    crashes: dict[str, Outcome | BaseException],
) -> None:
    outcome = outcome_of(crashes, ACT_SEND_FIRST_INVOICE)
    assert_the_killed_attempt_was_retried(outcome)
    assert_billed_exactly_once(outcome)


async def test_worker_killed_while_provisioning_provisions_the_tenant_once(
    crashes: dict[str, Outcome | BaseException],
) -> None:
    outcome = outcome_of(crashes, ACT_PROVISION_PRODUCT)
    assert_the_killed_attempt_was_retried(outcome)
    assert_billed_exactly_once(outcome)
    # Both attempts reached the backend; the second was answered from its idempotency record.
    assert outcome.provisioning["provision_calls"] == 2
    assert outcome.provisioning["duplicates"] == 1


async def test_a_worker_stopped_with_sigterm_shuts_down_cleanly(
    crashes: dict[str, Outcome | BaseException],
) -> None:
    for step in STEPS:
        outcome = outcome_of(crashes, step.activity)
        assert outcome.worker_exit_code == 0, outcome.worker_log
        assert '"worker stopped"' in outcome.worker_log


def test_a_crashed_step_is_retried_once_its_workflow_task_times_out_not_after_start_to_close(
    crashes: dict[str, Outcome | BaseException],
) -> None:
    # The killed worker's workflow task times out after 10 s and the next worker runs the step
    # again, well before the step's 30 s start-to-close timeout would have expired.
    for activity in crashes:
        seconds = outcome_of(crashes, activity).kill_to_completed_s
        assert 8 < seconds < 28, (activity, seconds)
