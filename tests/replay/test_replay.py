"""Today's DealWorkflow must replay every committed history: a change that would break deals
already running in production fails here (NondeterminismError) instead of in production.

``histories/`` holds the main paths recorded with today's code (``python -m
tests.replay.record_histories``); each subfolder keeps the histories of an earlier version, which
deals started then may still be running.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from qtc.ports import (
    ACT_AMEND_SUBSCRIPTION,
    ACT_PROVISION_PRODUCT,
    ACT_SEND_AMENDMENT_INVOICE,
    ACT_SEND_CONTRACT,
    ACT_SYNC_ERP_INVOICE,
)
from tests.replay.record_histories import HISTORIES, PATHS
from workflows.deal import LOCAL_STEPS, DealWorkflow

EARLIER_VERSIONS = sorted(HISTORIES.glob("*/*.json"))


async def replays(path: Path) -> None:
    history = WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
    replayer = Replayer(workflows=[DealWorkflow], data_converter=pydantic_data_converter)

    result = await replayer.replay_workflow(history)

    assert result.replay_failure is None
    assert len(history.events) > 10, "a deal history has at least its stage upserts"


@pytest.mark.parametrize("name", sorted(PATHS))
async def test_todays_workflow_replays_the_recorded_history_of(name: str) -> None:
    path = HISTORIES / f"{name}.json"
    assert path.exists(), f"{path} missing: run python -m tests.replay.record_histories"
    await replays(path)


@pytest.mark.parametrize("path", EARLIER_VERSIONS, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_todays_workflow_replays_histories_of_earlier_versions(path: Path) -> None:
    await replays(path)


def test_histories_of_earlier_versions_are_kept() -> None:
    assert len(EARLIER_VERSIONS) >= len(PATHS)


def test_todays_phase_3_history_runs_billing_as_local_steps() -> None:
    """The recorded histories exercise today's path: every step after the signature is a local
    activity marker; only the contract is scheduled as an activity."""
    history = WorkflowHistory.from_json(
        "phase-3", (HISTORIES / "phase_3_completed.json").read_text()
    )
    scheduled = [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    markers = [
        event.marker_recorded_event_attributes.marker_name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]

    assert scheduled == [ACT_SEND_CONTRACT]
    # The re-dating step and the six steps from Closed Won to the write-back, plus the patches.
    # (An amendment deal's two billing steps replace the customer and subscription steps there.)
    new_deal_steps = LOCAL_STEPS - {ACT_AMEND_SUBSCRIPTION, ACT_SEND_AMENDMENT_INVOICE}
    assert markers.count("core_local_activity") == 1 + len(new_deal_steps)
    assert markers.count("core_patch") == 2


def test_a_local_step_that_keeps_failing_is_retried_as_a_regular_activity() -> None:
    """Where an operator can see it: the Web UI lists a regular activity's pending attempts and
    last failure, never a local one's."""
    history = WorkflowHistory.from_json(
        "retried", (HISTORIES / "retried_as_activity_then_completed.json").read_text()
    )
    scheduled = [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]

    assert scheduled == [ACT_SEND_CONTRACT, ACT_PROVISION_PRODUCT]


def test_the_erp_step_is_a_remote_activity_behind_its_patch() -> None:
    """A deal with an ERP schedules the ERP step on the server after the local billing steps,
    and records the ERP patch beside the others."""
    history = WorkflowHistory.from_json(
        "phase-3-erp", (HISTORIES / "phase_3_erp_synced.json").read_text()
    )
    scheduled = [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    markers = [
        event.marker_recorded_event_attributes.marker_name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]

    assert scheduled == [ACT_SEND_CONTRACT, ACT_SYNC_ERP_INVOICE]
    assert markers.count("core_patch") == 3
