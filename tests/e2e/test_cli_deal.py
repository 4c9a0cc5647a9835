"""The ``qtc deal`` / ``qtc review`` / ``qtc worker`` commands as a user runs them: a process, exit
codes, one JSON document on stdout, one line on stderr and never a traceback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import Client

from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from runtime.settings import Settings
from service import deals
from tests.e2e.conftest import Deployment
from tests.e2e.support import CATALOG, EXAMPLES, ROOT, new_opportunity, quote_file
from tests.stack_support import free_port


def qtc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starters.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def start_without_worker(deployment: Deployment, client: Client, tmp_path: Path) -> str:
    """A deal in its first stage: no worker runs, so it stays there."""
    opportunity_id = new_opportunity(deployment.sf, "Umbrella pilot")
    quote = quote_file(tmp_path, "quote-phase2.json", opportunity_id)
    priced = price_quote(quote.read_bytes(), load_catalog(CATALOG), datetime.now(UTC))
    return (
        await deals.start_deal(
            client,
            Settings(temporal_task_queue=deployment.task_queue),
            priced,
            phase=2,
            started_by="e2e",
        )
    ).deal_id


async def test_a_rejected_quote_exits_2_with_the_errors_json_and_starts_no_deal(
    deployment: Deployment, client: Client
) -> None:
    result = qtc(deployment.env, "deal", "start", str(EXAMPLES / "quote-rejected.json"), "--json")

    assert result.returncode == 2, result.stderr
    document = json.loads(result.stdout)
    codes = {error["code"] for error in document["errors"]}
    assert {"term_not_allowed", "payment_terms_not_allowed"} <= codes
    assert all(error["pointer"].startswith("/") for error in document["errors"])
    with pytest.raises(deals.DealNotFound):
        await deals.get_status(client, "deal-006000000000005AAA")


async def test_deal_list_json_is_one_document_listing_the_deal_by_stage(
    deployment: Deployment, client: Client, tmp_path: Path
) -> None:
    deal_id = await start_without_worker(deployment, client, tmp_path)

    listed: list[str] = []
    for _ in range(50):  # visibility is eventually consistent
        result = qtc(deployment.env, "deal", "list", "--stage", "contract_sent", "--json")
        assert result.returncode == 0, result.stderr
        listed = [row["deal_id"] for row in json.loads(result.stdout)["deals"]]
        if deal_id in listed:
            break
        await asyncio.sleep(0.2)
    assert listed == [deal_id]


async def test_approving_an_invoice_of_a_deal_not_in_review_is_refused_with_exit_4(
    deployment: Deployment, client: Client, tmp_path: Path
) -> None:
    deal_id = await start_without_worker(deployment, client, tmp_path)

    result = qtc(deployment.env, "review", "approve", deal_id, "--as", "fiona@example.com")

    assert result.returncode == 4
    assert f"deal {deal_id} is in stage contract_sent, not awaiting_invoice_review" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_of_an_unknown_deal_exits_3(deployment: Deployment) -> None:
    result = qtc(deployment.env, "deal", "status", "006999999999999AAA", "--json")

    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr.strip() == "qtc: no deal with id 'deal-006999999999999AAA'"


@pytest.mark.parametrize(
    "command",
    [("deal", "status", "deal-006000000000001AAA", "--json"), ("review", "list"), ("worker",)],
)
def test_an_unreachable_temporal_exits_1_naming_the_address(
    deployment: Deployment, command: tuple[str, ...]
) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    env = {**deployment.env, "QTC_TEMPORAL_ADDRESS": address}

    result = qtc(env, *command)

    assert result.returncode == 1
    assert f"cannot reach Temporal at {address}" in result.stderr
    assert "Traceback" not in result.stderr
