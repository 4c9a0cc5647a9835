"""``qtc sandbox up``: the whole stack in the foreground for clicking around, stopped by Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from sandbox.stack import Stack, port_free
from tests.stack_support import ROOT, all_ports, stack_settings


def test_sandbox_up_serves_the_web_ui_api_and_emulators_until_ctrl_c(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path / "state")
    env = Stack(settings, settings.state_dir).env
    proc = subprocess.Popen(
        [sys.executable, "-m", "starters.cli", "sandbox", "up", "--fresh"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    printed: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            printed.append(line)
            if "Ctrl-C" in line:
                break
        table = "".join(printed)
        assert "Ctrl-C" in table, table
        api = f"http://127.0.0.1:{settings.api_port}"
        assert f"{api}/docs" in table
        assert f"http://127.0.0.1:{settings.temporal_ui_port}" in table
        with httpx.Client(timeout=10) as http:
            assert http.get(f"{api}/readyz").status_code == 200
            assert http.get(f"http://127.0.0.1:{settings.temporal_ui_port}/").status_code == 200
            quote = json.loads((ROOT / "examples" / "quote-phase3.json").read_text("utf-8"))
            priced = http.post(
                f"{api}/v1/quotes/price",
                json=quote,
                headers={"Authorization": "Bearer sandbox-sales"},
            )
            assert priced.status_code == 200
            assert priced.json()["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)

    assert proc.returncode == 0
    assert "Sandbox stopped." in rest
    assert all(port_free("127.0.0.1", port) for port in all_ports(settings))
