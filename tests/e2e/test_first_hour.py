"""A new user's first hour (issue 24), as the user did it: `qtc sandbox up` beside another stack
(one port base), every command of the README's examples as written, a quote written by hand, the
mistakes a user makes, and stopping the stack with SIGTERM or by closing the terminal (SIGHUP).

Everything runs through the installed ``qtc`` command in subprocesses, with the user's own state
directory, so what passes here is what a fresh clone does.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.settings import PORT_OFFSETS, load_settings
from sandbox.stack import free_port_base, port_free
from tests.stack_support import ROOT

QTC = str(Path(sys.executable).parent / "qtc")
SALES = {"Authorization": "Bearer sandbox-sales"}
README = (ROOT / "README.md").read_text(encoding="utf-8")


@dataclass
class Sandbox:
    """`qtc sandbox up --port-base BASE` running in the foreground, as a user starts it."""

    proc: subprocess.Popen[str]
    base: int
    env: dict[str, str]
    printed: str

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.base + PORT_OFFSETS['api_port']}"

    def qtc(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [QTC, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def status(self, deal_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.api}/v1/deals/{deal_id}", headers=SALES, timeout=10)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def wait_for(self, deal_id: str, *stages: str, timeout_s: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status(deal_id)
            if status["stage"] in stages:
                return status
            time.sleep(0.2)
        pytest.fail(f"{deal_id} never reached {stages}: {status.get('stage')} {status}")

    def sign(self, deal_id: str) -> None:
        envelope = self.wait_for(deal_id, "awaiting_signature")["envelope_id"]
        signed = self.qtc("sign", envelope)  # the README's `qtc sign ENVELOPE_ID`
        assert signed.returncode == 0, signed.stderr

    def ports(self) -> list[int]:
        return [self.base + offset for offset in PORT_OFFSETS.values()]


def start_sandbox(tmp_path: Path, *extra: str, base: int | None = None) -> Sandbox:
    base = base or free_port_base()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTC_")}
    # The user's own state directory and port base; nothing else is set.
    env.update(QTC_STATE_DIR=str(tmp_path / ".qtc"), QTC_PORT_BASE=str(base), QTC_LOG_JSON="true")
    proc = subprocess.Popen(
        [QTC, "sandbox", "up", "--fresh", *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    printed: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        printed.append(line)
        if "Ctrl-C" in line:
            break
    assert "Ctrl-C" in "".join(printed), "".join(printed)
    return Sandbox(proc, base, env, "".join(printed))


def stop(sandbox: Sandbox, signum: int) -> int:
    sandbox.proc.send_signal(signum)
    sandbox.proc.communicate(timeout=60)
    return sandbox.proc.returncode


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    running = start_sandbox(tmp_path)
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            stop(running, signal.SIGINT)


def readme_shell_commands() -> list[str]:
    """Every command of the README's ``sh`` blocks (continuation lines joined, comments cut)."""
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("  #")[0].strip()
            if command:
                commands.append(command)
    return commands


def test_the_readme_walked_through_on_a_sandbox_beside_another_stack(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # The table of addresses names the moved ports, and nothing points elsewhere.
    assert f"{sandbox.api}/docs" in sandbox.printed
    assert "do not point at each other" not in sandbox.printed

    # Every shell example of the README, as written, in a directory laid out as a fresh clone
    # (files a command writes stay out of the repository). `make` runs this suite; the API's port
    # is the one the port base gave it. The amendment example needs its original billed first,
    # and `deal-006...` in it stands for that deal.
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in (".venv", "examples", "catalog.toml"):
        (clone / name).symlink_to(ROOT / name)
    amendable = "deal-006000000000007AAA"
    original = sandbox.qtc("deal", "start", "examples/quote-amendable.json", "--phase", "3")
    assert original.returncode == 0, original.stderr
    sandbox.sign(amendable)
    sandbox.wait_for(amendable, "completed")
    commands = readme_shell_commands()
    assert any(c.startswith("curl") for c in commands)
    for command in commands:
        if command.startswith("make "):
            continue
        command = command.replace("http://127.0.0.1:8000", sandbox.api)
        command = command.replace("deal-006... ", f"{amendable} ")
        ran = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=clone,
            env=sandbox.env,
            capture_output=True,
            text=True,
        )
        assert ran.returncode == 0, (command, ran.stdout, ran.stderr)
        if command.startswith("curl"):
            assert json.loads(ran.stdout)["deal_id"] == "deal-006000000000003AAA"
    sandbox.sign("deal-006000000000003AAA")

    # Phase 1 as the README's rollout section says: the whole schedule in `deal status --json`.
    started = sandbox.qtc("deal", "start", "examples/quote-phase1.json", "--phase", "1")
    assert started.returncode == 0, started.stderr
    sandbox.sign("deal-006000000000001AAA")
    sandbox.wait_for("deal-006000000000001AAA", "completed")
    shown = sandbox.qtc("deal", "status", "deal-006000000000001AAA", "--json")
    assert shown.returncode == 0, shown.stderr
    schedule = json.loads(shown.stdout)["invoice_schedule"]
    assert [i["date"][:4] for i in schedule] == [
        str(int(schedule[0]["date"][:4]) + year) for year in range(3)
    ]

    # A quote written by hand, for an opportunity the sandbox CRM does not hold: it runs to the end.
    mine = json.loads((ROOT / "examples" / "quote-phase1.json").read_text("utf-8"))
    mine.update(opportunity_id="006MYOWNQUOTE01AAA", quote_id="Q-MINE-1")
    path = tmp_path / "my-quote.json"
    path.write_text(json.dumps(mine), encoding="utf-8")
    assert sandbox.qtc("deal", "start", str(path), "--phase", "1").returncode == 0
    sandbox.sign("deal-006MYOWNQUOTE01AAA")
    done = sandbox.wait_for("deal-006MYOWNQUOTE01AAA", "completed", "needs_attention")
    assert done["stage"] == "completed", done.get("last_error")

    # The same quote again in another phase: refused, not silently joined.
    again = sandbox.qtc("deal", "start", str(path), "--phase", "3")
    assert again.returncode == 4, again.stderr
    assert "phase 1" in again.stderr

    # Finance review as the README writes it (`qtc review approve deal-006... --note "ok" --as
    # you@company`), after switching the emulator's Connect format with the README's curl.
    connect = re.search(
        r"`(curl -X POST http://127\.0\.0\.1:12113/_sandbox/connect [^`]+)`", README
    )
    assert connect is not None
    docusign = f"127.0.0.1:{sandbox.base + PORT_OFFSETS['sandbox_docusign_port']}"
    switched = subprocess.run(
        ["bash", "-c", connect.group(1).replace("127.0.0.1:12113", docusign)],
        capture_output=True,
        text=True,
    )
    assert switched.returncode == 0 and '"xml"' in switched.stdout, switched
    phase2 = sandbox.qtc("deal", "start", "examples/quote-phase2.json", "--phase", "2")
    assert phase2.returncode == 0, phase2.stderr
    sandbox.sign("deal-006000000000002AAA")
    sandbox.wait_for("deal-006000000000002AAA", "awaiting_invoice_review")
    listed = sandbox.qtc("review", "list")
    assert "deal-006000000000002AAA" in listed.stdout, listed
    approved = sandbox.qtc(
        "review", "approve", "deal-006000000000002AAA", "--note", "ok", "--as", "you@company"
    )
    assert approved.returncode == 0, approved.stderr
    reviewed = sandbox.wait_for("deal-006000000000002AAA", "completed")
    assert reviewed["invoice_review"]["reviewer"] == "you@company"
    history = [entry["stage"] for entry in reviewed["stage_history"]]
    # The README's state diagram: out of review to billing_account_created, then billing.
    review_at = history.index("awaiting_invoice_review")
    assert history[review_at + 1 : review_at + 3] == [
        "billing_account_created",
        "subscription_created",
    ]
    assert "awaiting_invoice_review --> billing_account_created: approve_invoice" in README

    # The Closed-Won starter reaches the Salesforce emulator (its CA is where the CLI looks).
    from_crm = sandbox.qtc("deal", "start-from-crm", "006000000000004AAA", "--phase", "1")
    assert from_crm.returncode == 0, from_crm.stderr
    assert sandbox.wait_for("deal-006000000000004AAA", "pending_approval")["customer"] == (
        "Umbrella Health Corp."
    )

    # Mistakes: a usage error and a file that is not JSON exit 64, never 2 (a rejected quote).
    broken = tmp_path / "broken.json"
    broken.write_text('{"quote_id": ', encoding="utf-8")
    assert sandbox.qtc("deal", "start", str(broken)).returncode == 64
    assert sandbox.qtc("deal", "start", str(path), "--phase", "7").returncode == 64
    assert sandbox.qtc("quote", "price", "examples/quote-rejected.json").returncode == 2
    unusable = sandbox.qtc("deal", "list", timeout=30)
    assert unusable.returncode == 0, unusable.stderr

    # Stopped with SIGTERM (`kill`): every process it started is gone, every port free.
    assert stop(sandbox, signal.SIGTERM) == 0
    assert all(port_free("127.0.0.1", port) for port in sandbox.ports())


# What `qtc demo` and `qtc sandbox up` do around their stack, in a process of its own: a child
# that listens on a port (as every part of the stack does), then the parent waits to be stopped.
HOLDER = """
import sys, time
from pathlib import Path
from runtime.settings import load_settings
from sandbox.stack import Stack, stop_on_signals
port = int(sys.argv[1])
stack = Stack(load_settings(), Path(sys.argv[2]))
child = [sys.executable, "-c",
         "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', %d)); s.listen();"
         " time.sleep(600)" % port]
with stop_on_signals():
    try:
        stack._require(stack._spawn("part", child), "127.0.0.1", port, timeout_s=30)
        print("up", flush=True)
        time.sleep(600)
    finally:
        stack.stop()
"""


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_every_way_of_stopping_stops_what_the_stack_started(
    tmp_path: Path, signum: signal.Signals
) -> None:
    port = free_port_base()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(port), str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "up"
    assert not port_free("127.0.0.1", port)
    holder.send_signal(signum)
    holder.wait(timeout=30)
    # The part ran in a session of its own (a closed terminal never reaches it): only the stack's
    # clean-up can have stopped it.
    assert port_free("127.0.0.1", port)


def test_a_bad_setting_is_one_line_naming_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTC_")}
    env.update(QTC_STATE_DIR=str(tmp_path), QTC_API_PORT="eight thousand")
    ran = subprocess.run(
        [QTC, "deal", "list"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 1
    assert ran.stderr.strip().count("\n") == 0, ran.stderr
    assert "QTC_API_PORT" in ran.stderr and "Traceback" not in ran.stderr


def test_settings_that_do_not_point_at_each_other_are_named_before_the_stack_starts() -> None:
    from sandbox.stack import disagreements

    assert disagreements(load_settings(port_base=20000)) == []
    moved_alone = load_settings(sandbox_docusign_port=20013)
    assert moved_alone.docusign_base_path == "http://127.0.0.1:20013/restapi"
    assert disagreements(moved_alone) == []
    pinned = load_settings(
        sandbox_docusign_port=20013, docusign_base_path="http://127.0.0.1:12113/restapi"
    )
    [problem] = disagreements(pinned)
    assert "QTC_DOCUSIGN_BASE_PATH" in problem and "20013" in problem
