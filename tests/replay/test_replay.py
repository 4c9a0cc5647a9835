"""Today's DealWorkflow must replay every committed history: a change that would break deals
already running in production fails here (NondeterminismError) instead of in production."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.replay.record_histories import HISTORIES, PATHS
from workflows.deal import DealWorkflow


@pytest.mark.parametrize("name", sorted(PATHS))
async def test_todays_workflow_replays_the_recorded_history_of(name: str) -> None:
    path = HISTORIES / f"{name}.json"
    assert path.exists(), f"{path} missing: run python -m tests.replay.record_histories"
    history = WorkflowHistory.from_json(f"replay-{name}", path.read_text())
    replayer = Replayer(workflows=[DealWorkflow], data_converter=pydantic_data_converter)

    result = await replayer.replay_workflow(history)

    assert result.replay_failure is None
    assert len(history.events) > 10, "a deal history has at least its stage upserts"
