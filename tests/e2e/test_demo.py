"""The README's first command: ``qtc demo`` runs every sample deal to its expected final stage.

The demo runs twice in a row on the same ports and state directory (once in-process so the Temporal
Web UI can be inspected while the stack is still up, once as the real ``qtc demo`` command), which
also proves it stops every process it started.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from rich.console import Console

from runtime.settings import Settings
from sandbox.demo import Demo, run_demo
from sandbox.stack import Stack, port_free, temporal_binary
from tests.browser import CHROMIUM, HEADLESS
from tests.stack_support import all_ports, stack_settings

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"


@dataclass
class DemoRun:
    settings: Settings
    exit_code: int
    stages: dict[str, str] = field(default_factory=dict)
    expected: dict[str, str] = field(default_factory=dict)
    web_ui_dom: str | None = None
    web_ui_error: str | None = None
    stored_history: str = ""
    erp_by_deal: dict[str, str | None] = field(default_factory=dict)
    netsuite_records: dict[str, Any] = field(default_factory=dict)
    # (format, carries the envelope summary, final delivery state) of every Connect delivery.
    connect_deliveries: list[tuple[str, bool, str]] = field(default_factory=list)
    worker_metrics: str = ""
    api_metrics: str = ""


def _look_at_web_ui(stack: Stack, run: DemoRun) -> None:
    """Headless Chromium renders the Web UI's workflow list filtered on QtcStage."""
    if CHROMIUM is None:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    query = quote('QtcStage="completed"')
    url = f"{stack.web_ui_url}/namespaces/default/workflows?query={query}"
    flags = [
        *HEADLESS,
        f"--user-data-dir={stack.state_dir / 'chromium'}",
        "--window-size=1600,1000",
        "--virtual-time-budget=15000",
    ]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=90
    )
    run.web_ui_dom = dom.stdout
    if dom.returncode != 0:
        run.web_ui_error = dom.stderr[-2000:]
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={ARTIFACTS / 'webui-demo-deals.png'}", url],
        capture_output=True,
        timeout=90,
    )


def _history_without_codec(stack: Stack, workflow_id: str) -> str:
    """The deal's history as Temporal stores it, read with the temporal CLI (no codec)."""
    shown = subprocess.run(
        [
            str(temporal_binary()),
            "workflow",
            "show",
            "--address",
            stack.settings.temporal_address,
            "--workflow-id",
            workflow_id,
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    # The sandbox can run with payload encryption on; the demo runs with it here.
    settings = stack_settings(tmp_path_factory.mktemp("demo-state"), codec=True)
    run = DemoRun(settings=settings, exit_code=-1)

    def after(stack: Stack, demo: Demo) -> None:
        run.stages = {d.label: d.stage for d in demo.deals}
        run.expected = {d.label: d.expected for d in demo.deals}
        _look_at_web_ui(stack, run)
        run.stored_history = _history_without_codec(stack, "deal-006000000000003AAA")
        run.erp_by_deal = {d.label: d.status.get("erp_invoice_id") for d in demo.deals}
        netsuite = f"http://127.0.0.1:{stack.settings.sandbox_netsuite_port}/_sandbox/records"
        run.netsuite_records = httpx.get(netsuite, timeout=10).json()
        deliveries = demo.docusign.get("/_sandbox/deliveries").json()["deliveries"]
        run.connect_deliveries = [
            (
                d["format"],
                isinstance(d["message"], dict) and "envelopeSummary" in d["message"]["data"],
                d["state"],
            )
            for d in deliveries
        ]
        worker = f"http://127.0.0.1:{stack.worker_metrics_port()}/metrics"
        api = f"http://127.0.0.1:{stack.settings.api_port}/metrics"
        run.worker_metrics = httpx.get(worker, timeout=10).text
        run.api_metrics = httpx.get(api, timeout=10).text

    run.exit_code = run_demo(
        settings, ROOT / "examples", Console(width=200), keep_up=False, after_run=after
    )
    yield run


def test_every_sample_deal_reaches_its_expected_final_stage(demo_run: DemoRun) -> None:
    assert demo_run.stages == demo_run.expected
    assert set(demo_run.stages.values()) == {"completed", "rejected"}
    assert demo_run.exit_code == 0


def test_only_the_deal_started_with_qtc_erp_netsuite_is_recorded_in_netsuite(
    demo_run: DemoRun,
) -> None:
    recorded = {label: erp for label, erp in demo_run.erp_by_deal.items() if erp}
    [invoice] = demo_run.netsuite_records["invoice"]
    assert recorded == {"phase 3: the whole loop, ERP NetSuite": invoice["id"]}
    assert len(demo_run.netsuite_records["customer"]) == 1


def test_the_demo_signs_through_every_connect_format_a_real_account_sends(
    demo_run: DemoRun,
) -> None:
    kinds = {(fmt, summary) for fmt, summary, _ in demo_run.connect_deliveries}
    assert kinds == {("json", False), ("json", True), ("xml", False)}
    assert {state for _, _, state in demo_run.connect_deliveries} == {"delivered"}


def test_the_worker_and_the_api_serve_the_products_metrics_after_the_demo(
    demo_run: DemoRun,
) -> None:
    worker, api = demo_run.worker_metrics, demo_run.api_metrics

    assert "qtc_deal_stage_entered_total{" in worker
    assert 'stage="completed"' in worker
    assert "qtc_signature_to_invoice_seconds_bucket" in worker
    # The SDK's own runtime metrics come out of the same endpoint.
    assert "temporal_workflow_completed" in worker
    assert 'qtc_api_requests_total{method="POST",route="/webhooks/docusign",status="200"}' in api
    assert "temporal_request" in api


def _decoded_strings(node: object) -> list[str]:
    """Every string in the document, and what it says once base64-decoded (unencrypted payload
    data is base64 JSON in the CLI's output: a plain search would miss it)."""
    found: list[str] = []
    if isinstance(node, dict):
        for value in node.values():
            found += _decoded_strings(value)
    elif isinstance(node, list):
        for value in node:
            found += _decoded_strings(value)
    elif isinstance(node, str):
        found.append(node)
        with contextlib.suppress(ValueError):  # not base64: the plain string is enough
            found.append(base64.b64decode(node, validate=True).decode("utf-8", "replace"))
    return found


def test_temporal_stores_no_customer_data_in_clear_for_a_demo_deal(demo_run: DemoRun) -> None:
    quote = json.loads((ROOT / "examples" / "quote-phase3.json").read_text(encoding="utf-8"))
    account = quote["account"]
    in_clear = [
        account["legal_name"],
        account["billing_email"],
        account["address"]["line1"],
        account["tax_id"]["value"],
        quote["signer"]["email"],
    ]
    history = demo_run.stored_history
    assert '"workflowExecutionCompletedEventAttributes"' in history
    # Payload metadata is base64 in the CLI's JSON: every payload says it is encrypted.
    assert base64.b64encode(b"binary/encrypted").decode() in history
    readable = history + "\n".join(_decoded_strings(json.loads(history)))
    leaked = [value for value in in_clear if value in readable]
    assert leaked == []


def test_the_demo_stops_every_process_it_started(demo_run: DemoRun) -> None:
    busy = [p for p in all_ports(demo_run.settings) if not port_free("127.0.0.1", p)]
    assert busy == []


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (CI installs it)")
def test_the_web_ui_lists_the_demo_deals_by_their_stage_attribute(demo_run: DemoRun) -> None:
    assert demo_run.web_ui_error is None
    dom = demo_run.web_ui_dom or ""
    completed = [f"deal-00600000000000{n}AAA" for n in "12346"]
    missing = [deal for deal in completed if deal not in dom]
    assert missing == [], f"Web UI list filtered on QtcStage lacks {missing}"
    assert (ARTIFACTS / "webui-demo-deals.png").stat().st_size > 10_000


def test_qtc_demo_runs_again_as_a_command_and_exits_zero_off_a_terminal(
    demo_run: DemoRun,
) -> None:
    env = dict(os.environ)
    env.update(Stack(demo_run.settings, demo_run.settings.state_dir).env)
    result = subprocess.run(
        [sys.executable, "-m", "starters.cli", "demo", "--no-keep-up"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Every deal reached its expected final stage." in result.stdout
    assert "rejected (" in result.stdout
    assert all(port_free("127.0.0.1", p) for p in all_ports(demo_run.settings))
