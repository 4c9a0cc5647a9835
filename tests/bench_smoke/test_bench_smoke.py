"""The benchmarks still run end to end: ``--smoke`` on a stack of their own, JSON line checked.

Not a timed test: no figure is asserted, only that every deal the benchmark signed was completed
and that the JSON line ``make bench`` promises carries its keys. Each run starts its own dev
server, emulators, worker and API on ephemeral ports and stops them before returning.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120

MAKE_BENCH_KEYS = {
    "deals",
    "completed",
    "throughput_per_s",
    "ceiling_throughput_per_s",
    "throughput_ratio_vs_ceiling",
    "p50_sig_to_invoice_ms",
    "p99_sig_to_invoice_ms",
    "overhead_p50_ms",
    "worker_peak_rss_mb",
    "server_peak_rss_mb",
}


def run_bench(module: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", module, "--smoke", "--json-only", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-3000:]
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def test_smoke_benchmark_completes_every_signed_deal_and_prints_the_make_bench_figures() -> None:
    figures = run_bench("bench.latency_throughput")

    assert MAKE_BENCH_KEYS - figures.keys() == set()
    assert figures["deals"] == 5
    assert figures["completed"] == figures["deals"]
    assert figures["offered_completed"] == figures["offered_deals"] == 10
    assert figures["ceiling_deals"] == figures["deals"]
    assert figures["throughput_per_s"] > 0
    assert 0 < figures["p50_sig_to_invoice_ms"] <= figures["p99_sig_to_invoice_ms"]
    assert figures["worker_peak_rss_mb"] > 0
    assert figures["server_peak_rss_mb"] > 0


def test_waiting_deals_smoke_loses_no_deal_when_the_cache_is_smaller_than_the_waiting_deals() -> (
    None
):
    figures = run_bench("bench.waiting_deals", "--deals", "12", "--worker-cache", "5")

    assert figures["deals"] == 12
    assert figures["worker_max_cached_workflows"] == 5
    assert figures["completed"] == 12
    assert figures["lost"] == 0
    assert figures["needs_attention"] == 0
    assert figures["worker_idle_rss_mb"] > 0
    assert figures["p99_sig_to_invoice_ms"] is not None
