"""A finance reviewer approves a phase-2 deal on the review page in a real browser.

The worker and the API run as processes on the real dev server with the sandbox emulators; the
reviewer signs in with a token in headless Chromium (driven over the DevTools protocol), sees the
invoice preview, approves, and the invoice goes out. Then: a second approval and one in the wrong
stage are refused and change nothing, the ledger shows every stage and the reviewer, Slack and
e-mail got the review notification, and once the workflow is deleted from Temporal the ledger still
refuses a second start for the opportunity.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from tests.browser import CHROMIUM, Page, browser_page
from tests.e2e.conftest import Deployment
from tests.e2e.support import (
    ROOT,
    WorkerProcess,
    new_opportunity,
    quote_file,
    sign_contract,
    wait_for_stage,
)
from tests.stack_support import free_port

ARTIFACTS = ROOT / "artifacts"
SALES = {"Authorization": "Bearer sandbox-sales"}
FINANCE = {"Authorization": "Bearer sandbox-finance"}
DEAL_DESK = {"Authorization": "Bearer sandbox-deal-desk"}
REVIEWER = "fiona.finance@sandbox.example"


@pytest_asyncio.fixture
async def api(deployment: Deployment) -> AsyncIterator[str]:
    """``qtc serve`` as a process, configured like the worker; yields its base URL. Requested
    before the worker, so the worker's notifications link to this API's review page."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    deployment.env.update({"QTC_API_PORT": str(port), "QTC_API_PUBLIC_URL": url})
    env = deployment.env
    log = deployment.directory / "api.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "starters.cli", "serve"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                try:
                    if (await http.get(f"{url}/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"API did not start:\n{log.read_text()[-3000:]}")
                await asyncio.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)


async def wait_for(page: Page, expression: str, timeout_s: float = 20.0) -> Any:
    """Poll ``expression`` in the page until it is truthy (form posts navigate)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{expression} never held; the page shows:\n{await page.text()}")
        await asyncio.sleep(0.1)


async def type_into(page: Page, selector: str, text: str) -> None:
    await page.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
    await page.call("Input.insertText", text=text)


async def click(page: Page, selector: str) -> None:
    """A real mouse click in the middle of the element, as a reviewer's."""
    x, y = await page.evaluate(
        f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
        ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
    )
    for kind in ("mousePressed", "mouseReleased"):
        await page.call(
            "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
        )


async def history_length(client: Client, deal_id: str) -> int:
    return len((await client.get_workflow_handle(deal_id).fetch_history()).events)


async def wait_until_gone(client: Client, deal_id: str) -> None:
    # The dev server deletes in the background: quick when idle, slower on a busy machine.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            await client.get_workflow_handle(deal_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return
            raise
        await asyncio.sleep(0.2)
    raise AssertionError(f"{deal_id} is still in Temporal")


async def received(url: str, path: str, deal_id: str) -> list[dict[str, Any]]:
    """What an emulator received for this deal (polled: notifications run beside the deal)."""
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            messages = (await http.get(f"{url}{path}")).json()["messages"]
            mine = [m for m in messages if deal_id in json.dumps(m)]
            if mine or time.monotonic() > deadline:
                return mine
            await asyncio.sleep(0.2)


@pytest.mark.e2e
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)")
async def test_finance_approves_a_phase_2_deal_on_the_review_page_in_a_browser(
    deployment: Deployment, client: Client, api: str, worker: WorkerProcess, tmp_path: Path
) -> None:
    opportunity_id = new_opportunity(deployment.sf, "Initech review")
    quote = json.loads(quote_file(tmp_path, "quote-phase2.json", opportunity_id).read_text())
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        started = await http.post("/v1/deals", json={"quote": quote, "phase": 2}, headers=SALES)
        assert started.status_code == 201, started.text
        deal_id = started.json()["deal_id"]
        await sign_contract(client, deployment.emulators, deal_id)
        waiting = await wait_for_stage(client, deal_id, "awaiting_invoice_review")
        assert waiting.invoice_preview is not None

        async with browser_page() as page:
            await page.goto(f"{api}/review")
            await wait_for(page, "!!document.getElementById('token')")
            await type_into(page, "#token", "sandbox-finance")
            await click(page, "#sign-in-button")
            section = f"document.getElementById({json.dumps(deal_id)})"
            await wait_for(page, f"!!{section}")
            await page.screenshot(ARTIFACTS / "review-pending-invoice.png")
            shown_total = await page.evaluate(
                f"{section}.querySelector('[data-total-minor]').dataset.totalMinor"
            )
            lines = await page.evaluate(f"{section}.querySelectorAll('table tr').length")
            cookies = (await page.call("Network.getCookies", urls=[f"{api}/review"]))["cookies"]
            await type_into(page, f"#{deal_id} textarea", "matches the order form")
            await click(page, f"#{deal_id} button.approve")
            outcome = await wait_for(page, "document.getElementById('result')?.textContent")
            await page.screenshot(ARTIFACTS / "review-approved.png")

        assert int(shown_total) == waiting.invoice_preview.total_minor
        assert lines >= len(waiting.invoice_preview.lines) + 3  # header, subtotal, tax, total
        [session] = [c for c in cookies if c["name"] == "qtc_review_session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        assert "approve_invoice recorded" in outcome
        assert "billing_account_created" in outcome
        done = await wait_for_stage(client, deal_id, "completed")
        assert done.invoice_sent_at is not None and done.billing_invoice_id is not None
        assert done.invoice_review is not None and done.invoice_review.reviewer == REVIEWER

        # A second approval, and an approval for a stage the deal is not in: 409, nothing written.
        before = await history_length(client, deal_id)
        again = await http.post(
            f"/v1/deals/{deal_id}/invoice-review", json={"decision": "approve"}, headers=FINANCE
        )
        wrong = await http.post(
            f"/v1/deals/{deal_id}/quote-approval", json={"decision": "approve"}, headers=DEAL_DESK
        )
        assert (again.status_code, again.json()["current_stage"]) == (409, "completed")
        assert (wrong.status_code, wrong.json()["current_stage"]) == (409, "completed")
        assert await history_length(client, deal_id) == before

        # The ledger: every stage, the reviewer from the token, the invoice's totals.
        ledger = (await http.get(f"/v1/deals/{deal_id}/events", headers=SALES)).json()["events"]
        assert [e["stage"] for e in ledger if e["kind"] == "stage"] == [
            entry.stage for entry in done.stage_history
        ]
        [decision] = [e for e in ledger if e["kind"] == "decision"]
        assert decision["actor"] == REVIEWER
        assert decision["detail"] == {
            "decision": "approve_invoice",
            "note": "matches the order form",
        }
        [invoice] = [e for e in ledger if e["kind"] == "invoice"]
        assert invoice["detail"]["total_minor"] == done.invoice_preview.total_minor  # type: ignore[union-attr]

        # The review was announced on Slack and by e-mail, with a link to the review page.
        emulators = deployment.emulators
        slack = await received(emulators.slack_url, "/_sandbox/messages", deal_id)
        mail = await received(emulators.slack_url, "/_sandbox/mail", deal_id)
        assert [m["metadata"]["event_payload"]["stage"] for m in slack] == [
            "awaiting_invoice_review"
        ]
        assert f"{api}/review" in slack[0]["text"]
        assert len(mail) == 1 and f"{api}/review" in mail[0]["body"]
        assert mail[0]["rcpt_tos"] == ["reviewers@sandbox.example"]

        # Gone from Temporal (retention, or deleted): the ledger still refuses a second deal.
        await client.workflow_service.delete_workflow_execution(
            DeleteWorkflowExecutionRequest(
                namespace=client.namespace,
                workflow_execution=WorkflowExecution(workflow_id=deal_id),
            )
        )
        await wait_until_gone(client, deal_id)
        restart = await http.post("/v1/deals", json={"quote": quote, "phase": 2}, headers=SALES)
        assert restart.status_code == 409, restart.text
        assert "ledger" in restart.json()["detail"]
        still = await http.get(f"/v1/deals/{deal_id}/events", headers=SALES)
        assert still.status_code == 200 and len(still.json()["events"]) == len(ledger)
