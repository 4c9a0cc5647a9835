"""The demo off a terminal (CI, a pipe): its result table starts on a line of its own, not on
the progress table's last line (issue 24)."""

from __future__ import annotations

import io

from rich.console import Console

from runtime.settings import load_settings
from sandbox.demo import Demo
from tests.unit.builders import REPO_ROOT


def test_the_result_table_starts_on_its_own_line_off_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    demo = Demo(load_settings(), REPO_ROOT / "examples", console)
    for deal in demo.deals:
        deal.stage = deal.expected  # every deal already done: follow() only draws
    assert demo.follow(timeout_s=1)
    console.print(demo.results())

    lines = out.getvalue().splitlines()
    [title] = [line for line in lines if "Demo deals: final state" in line]
    assert title.strip().startswith("Demo deals: final state"), title
    assert not any("┘" in line and "Demo deals" in line for line in lines)


def test_sandbox_up_help_states_where_the_state_goes() -> None:
    from typer.testing import CliRunner

    from starters.cli import app

    shown = CliRunner().invoke(app, ["sandbox", "up", "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    assert "Default: <QTC_STATE_DIR>/sandbox, that is .qtc/sandbox" in " ".join(
        shown.output.split()
    )
