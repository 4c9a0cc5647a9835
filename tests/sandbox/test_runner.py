"""The emulator runner: every emulator in one thread, the foreground mode, ``qtc sandbox up``."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import httpx
import pytest

from runtime.signing import sign
from sandbox.provisioning.app import SANDBOX_PROVISIONING_SECRET
from sandbox.runner import EmulatorPorts, EmulatorStartError, RunningEmulators, start_emulators
from sandbox.salesforce.client import sandbox_salesforce, sobject

ROOT = Path(__file__).resolve().parents[2]
OPP = "006000000000001AAA"


def client_for(emulators: RunningEmulators) -> httpx.Client:
    tls = ssl.create_default_context(cafile=str(emulators.salesforce_ca_file))
    return httpx.Client(timeout=10, verify=tls)


def refuses_connections(url: str) -> bool:
    host, port = url.rsplit("//", 1)[1].split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return True
    return False


def test_runner_serves_every_emulator_and_stop_releases_their_ports(tmp_path: Path) -> None:
    emulators = start_emulators(tmp_path, ports=EmulatorPorts())
    with emulators, client_for(emulators) as client:
        statuses = {
            name: client.get(f"{url}/_sandbox/stats").status_code
            for name, url in emulators.urls.items()
        }
        assert emulators.salesforce_url.startswith("https://127.0.0.1:")
        assert len(set(emulators.urls.values())) == 9
        assert emulators.smtp_port not in {
            0,
            *(int(u.rsplit(":", 1)[1]) for u in emulators.urls.values()),
        }
    assert statuses == {
        "stripe": 200,
        "salesforce": 200,
        "docusign": 200,
        "provisioning": 200,
        "hubspot": 200,
        "netsuite": 200,
        "chargebee": 200,
        "slack": 200,
        "ironclad": 200,
    }
    assert not emulators.running
    assert all(refuses_connections(url) for url in emulators.urls.values())
    assert refuses_connections(f"http://{emulators.smtp_host}:{emulators.smtp_port}")
    emulators.stop()  # a second stop is harmless


def test_restart_with_state_files_loses_nothing(tmp_path: Path) -> None:
    tenant = json.dumps(
        {
            "tenant_id": "cus_1",
            "deal_id": "deal-1",
            "account_name": "Acme",
            "skus": [{"sku": "PLATFORM-PRO", "quantity": 5, "features": {"sso": True}}],
        }
    ).encode()

    def provision(client: httpx.Client, url: str) -> httpx.Response:
        headers = {
            "X-Qtc-Signature": sign(SANDBOX_PROVISIONING_SECRET, tenant, int(time.time())),
            "Idempotency-Key": "deal-1:provision",
        }
        return client.post(f"{url}/v1/provision", content=tenant, headers=headers)

    with start_emulators(tmp_path, ports=EmulatorPorts(), persist=True) as first:
        sf = sandbox_salesforce(first.salesforce_url, first.salesforce_ca_file)
        sobject(sf, "Opportunity").update(
            OPP, {"StageName": "Closed Won", "QTC_Deal_Id__c": "deal-1"}
        )
        created = sobject(sf, "Account").create({"Name": "Created before the restart"})
        sf.session.close()
        with client_for(first) as client:
            assert provision(client, first.provisioning_url).status_code == 201
        ca_before = first.salesforce_ca_file.read_bytes()

    with start_emulators(tmp_path, ports=EmulatorPorts(), persist=True) as second:
        sf = sandbox_salesforce(second.salesforce_url, second.salesforce_ca_file)
        opportunity = sobject(sf, "Opportunity").get_by_custom_id("QTC_Deal_Id__c", "deal-1")
        account = sobject(sf, "Account").get(created["id"])
        another = sobject(sf, "Account").create({"Name": "Created after the restart"})
        sf.session.close()
        with client_for(second) as client:
            replay = provision(client, second.provisioning_url)
            stats = client.get(f"{second.provisioning_url}/_sandbox/stats").json()

    assert (opportunity["Id"], opportunity["StageName"]) == (OPP, "Closed Won")
    assert account["Name"] == "Created before the restart"
    assert another["id"] != created["id"]
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (201, "true")
    assert (stats["provisioned"], stats["duplicates"]) == (1, 1)
    assert second.salesforce_ca_file.read_bytes() == ca_before


def test_busy_port_fails_naming_the_emulator_and_leaves_nothing_listening(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(
            EmulatorStartError, match=f"salesforce emulator cannot listen on .*:{port}"
        ):
            start_emulators(tmp_path, ports=EmulatorPorts(salesforce=port))


def read_until(stream: IO[str] | None, done: Callable[[str], bool], timeout_s: float = 30) -> str:
    """A child's output until a line satisfies ``done``; fails the test instead of hanging."""
    assert stream is not None
    # Raw reads on the descriptor: a buffered readline could hold the awaited line in Python's
    # buffer while select() reports nothing more to read.
    fd = stream.fileno()
    text = ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        text += chunk.decode()
        if any(done(line) for line in text.splitlines()):
            return text
    pytest.fail("child did not print the expected line; it printed:\n" + text)


@pytest.fixture
def child_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "QTC_STATE_DIR": str(tmp_path),
            "QTC_SANDBOX_STRIPE_PORT": "0",
            "QTC_SANDBOX_SALESFORCE_PORT": "0",
            "QTC_SANDBOX_DOCUSIGN_PORT": "0",
            "QTC_SANDBOX_PROVISIONING_PORT": "0",
            "QTC_LOG_JSON": "true",
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200",
        }
    )
    return env


def stop_child(proc: subprocess.Popen[str], sig: signal.Signals) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("child did not stop on " + sig.name)
    return proc.returncode, (out or "") + (err or "")


def test_python_m_sandbox_runner_serves_in_the_foreground_until_sigterm(
    child_env: dict[str, str], tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.runner"],
        cwd=ROOT,
        env=child_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        output = read_until(proc.stderr, lambda line: "emulators started" in line)
        started = next(
            json.loads(line) for line in output.splitlines() if "emulators started" in line
        )
        ca_file = Path(started["salesforce_ca_file"])
        with httpx.Client(timeout=10, verify=ssl.create_default_context(cafile=str(ca_file))) as c:
            for name in ("stripe", "salesforce", "docusign", "provisioning"):
                assert c.get(f"{started[name]}/_sandbox/stats").status_code == 200
    finally:
        code, rest = stop_child(proc, signal.SIGTERM)

    assert code == 0
    assert "emulators stopped" in rest
    assert ca_file.is_relative_to(tmp_path / "emulators")


def test_qtc_sandbox_up_emulators_only_prints_the_addresses_and_stops_on_ctrl_c(
    child_env: dict[str, str],
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "starters.cli", "sandbox", "up", "--fresh", "--emulators-only"],
        cwd=ROOT,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        table = read_until(proc.stdout, lambda line: "Ctrl-C" in line)
        urls = dict(
            re.findall(r"(stripe|salesforce|docusign|provisioning)\W+(https?://[\d.:]+)", table)
        )
        with httpx.Client(timeout=10) as client:
            assert client.get(f"{urls['provisioning']}/v1/tenants").json() == {"data": []}
    finally:
        code, rest = stop_child(proc, signal.SIGINT)

    assert set(urls) == {"stripe", "salesforce", "docusign", "provisioning"}
    assert urls["salesforce"].startswith("https://")
    assert "sk_test_sandbox" in table
    assert (code, "Sandbox stopped." in rest) == (0, True)
