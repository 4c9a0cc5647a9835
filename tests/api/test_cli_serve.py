"""``qtc serve`` runs the API under uvicorn and logs one JSON line per request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.api.support import ROOT, free_port


def test_qtc_serve_answers_health_and_reports_temporal_not_ready(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "QTC_ENV": "sandbox",
        "QTC_CATALOG": str(ROOT / "catalog.toml"),
        "QTC_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "QTC_API_TEMPORAL_TIMEOUT_S": "1",
        "QTC_LOG_JSON": "true",
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "starters.cli", "serve", "--port", str(port)],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                try:
                    health = httpx.get(f"{base}/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    assert server.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.1)
            ready = httpx.get(f"{base}/readyz", timeout=5)
            refused = httpx.get(
                f"{base}/v1/deals/deal-X", headers={"Authorization": "Bearer not-a-token"}
            )
        finally:
            server.terminate()
            server.wait(timeout=10)

    assert health.json() == {"status": "ok"}
    assert ready.status_code == 503
    assert refused.status_code == 401
    requests = [
        json.loads(line)
        for line in log_path.read_text().splitlines()
        if line.startswith("{") and '"http_request"' in line
    ]
    assert [(r["path"], r["status"]) for r in requests] == [
        ("/healthz", 200),
        ("/readyz", 503),
        ("/v1/deals/deal-X", 401),
    ]
    assert "not-a-token" not in log_path.read_text()
