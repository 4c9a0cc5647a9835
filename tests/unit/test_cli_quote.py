"""`qtc quote price`: tables or JSON for a good quote, exit 2 with the error JSON for a rejected
one, exit 1 with one line on stderr for a catalog it cannot use, 64 for a file it cannot read or
parse and for a bad option; never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from runtime.settings import get_settings
from starters.cli import app
from tests.unit.builders import REPO_ROOT, quote_dict

EXAMPLES = REPO_ROOT / "examples"
SIGNED = "2026-12-15T10:00:00Z"
runner = CliRunner()


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings are cached per process; each test reads the catalog path from its own env."""
    monkeypatch.setenv("QTC_CATALOG", str(REPO_ROOT / "catalog.toml"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def price(*args: str) -> Result:
    result = runner.invoke(app, ["quote", "price", *args, "--signed-at", SIGNED])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result


def write(tmp_path: Path, content: bytes | str | dict[str, Any], name: str = "quote.json") -> str:
    path = tmp_path / name
    if isinstance(content, dict):
        content = json.dumps(content)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return str(path)


def errors(result: Result) -> list[tuple[str, str]]:
    return [(e["pointer"], e["code"]) for e in json.loads(result.stdout)["errors"]]


def test_json_output_is_the_priced_quote_of_the_design_example(tmp_path: Path) -> None:
    result = price(write(tmp_path, quote_dict()), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (
        document["tcv_minor"],
        document["mrr_minor"],
        document["first_invoice_total_minor"],
    ) == (
        21332550,
        540000,
        6980000,
    )
    assert document["lines"][1]["reason"] == "required by PLATFORM-PRO"


def test_the_default_output_shows_lines_schedule_totals_and_adjustments(tmp_path: Path) -> None:
    result = price(write(tmp_path, quote_dict()))
    assert result.exit_code == 0
    for heading in ("Lines (USD)", "Invoice schedule (USD)", "Totals (USD)", "Adjustments"):
        assert heading in result.stdout
    assert "213,325.50" in result.stdout
    assert "69,800.00" in result.stdout


def test_a_quote_needing_approval_prices_and_lists_the_approvals(tmp_path: Path) -> None:
    result = price(str(EXAMPLES / "quote-needs-approval.json"))
    assert result.exit_code == 0
    assert "needs approval" in result.stdout
    assert "Deal-desk approvals needed" in result.stdout


def test_the_example_quotes_price_as_their_names_say() -> None:
    for name, status in (
        ("quote-phase1.json", "ok"),
        ("quote-phase2.json", "ok"),
        ("quote-phase3.json", "ok"),
        ("quote-monthly-stub.json", "ok"),
        ("quote-needs-approval.json", "needs_approval"),
    ):
        result = price(str(EXAMPLES / name), "--json")
        assert result.exit_code == 0, (name, result.output)
        assert json.loads(result.stdout)["status"] == status, name
    stub = json.loads(price(str(EXAMPLES / "quote-monthly-stub.json"), "--json").stdout)
    assert (stub["currency"], stub["billing_frequency"], stub["billing_anchor"]) == (
        "eur",
        "monthly",
        "first_of_month",
    )
    assert stub["invoices"][0]["lines"][0]["kind"] == "stub"


def test_the_example_opportunities_are_distinct() -> None:
    ids = [
        json.loads(p.read_text())["opportunity_id"] for p in sorted(EXAMPLES.glob("quote-*.json"))
    ]
    assert len(ids) == len(set(ids)) == 10


def test_the_rejected_example_exits_2_with_every_violation_as_json() -> None:
    result = price(str(EXAMPLES / "quote-rejected.json"), "--json")
    assert result.exit_code == 2
    assert {code for _, code in errors(result)} == {
        "term_not_allowed",
        "term_not_multiple_of_period",
        "payment_terms_not_allowed",
        "uplift_out_of_policy",
        "quantity_out_of_range",
        "discount_above_hard_max",
        "excluded_sku",
        "unknown_sku",
    }


def test_a_rejected_quote_without_json_still_prints_the_error_json_and_a_table(
    tmp_path: Path,
) -> None:
    result = price(write(tmp_path, quote_dict(payment_terms_days=90)))
    assert result.exit_code == 2
    assert errors(result) == [("/payment_terms_days", "payment_terms_not_allowed")]
    assert "rejected: 1 problem" in result.stderr


def test_malformed_json_exits_64_naming_the_problem(tmp_path: Path) -> None:
    result = price(write(tmp_path, '{"quote_id": '), "--json")
    assert result.exit_code == 64
    [error] = json.loads(result.stdout)["errors"]
    assert "not valid JSON" in error["message"]


def test_wrong_types_exit_2_with_pointers(tmp_path: Path) -> None:
    result = price(write(tmp_path, quote_dict(term_months="three years", payment_terms_days=None)))
    assert result.exit_code == 2
    assert errors(result) == [
        ("/term_months", "invalid_field"),
        ("/payment_terms_days", "invalid_field"),
    ]


@pytest.mark.parametrize("quantity", ["-5", "2.5", "0"])
def test_negative_fractional_or_zero_quantities_exit_2(tmp_path: Path, quantity: str) -> None:
    text = json.dumps(quote_dict()).replace('"quantity": 50', f'"quantity": {quantity}')
    result = price(write(tmp_path, text), "--json")
    assert result.exit_code == 2
    assert errors(result) == [("/lines/0/quantity", "invalid_field")]


def test_an_unknown_field_exits_2(tmp_path: Path) -> None:
    result = price(
        write(tmp_path, quote_dict(notes="free onboarding, promised by phone")), "--json"
    )
    assert result.exit_code == 2
    assert errors(result) == [("/notes", "invalid_field")]


def test_a_ten_megabyte_file_exits_64_without_being_read_whole(tmp_path: Path) -> None:
    result = price(write(tmp_path, b" " * 10_000_000 + json.dumps(quote_dict()).encode()), "--json")
    assert result.exit_code == 64
    [error] = json.loads(result.stdout)["errors"]
    assert "limit is 1000000 bytes" in error["message"]


def test_non_utf8_bytes_exit_64(tmp_path: Path) -> None:
    result = price(write(tmp_path, json.dumps(quote_dict()).encode("utf-16")), "--json")
    assert result.exit_code == 64
    assert "not UTF-8" in json.loads(result.stdout)["errors"][0]["message"]


def test_a_missing_file_exits_64_with_one_line_on_stderr(tmp_path: Path) -> None:
    result = price(str(tmp_path / "no-such-quote.json"))
    assert result.exit_code == 64
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0
    assert "cannot read" in result.stderr
    assert "no-such-quote.json" in result.stderr


def test_a_broken_catalog_given_with_catalog_exits_1_naming_file_and_key(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(
        (REPO_ROOT / "catalog.toml").read_text().replace('usd = "120.00"', 'usd = "lots"')
    )
    result = price(write(tmp_path, quote_dict()), "--catalog", str(broken))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"{broken}: skus[0].prices.usd: not a decimal" in result.stderr


def test_the_catalog_comes_from_qtc_catalog_unless_overridden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QTC_CATALOG", str(tmp_path / "missing-catalog.toml"))
    get_settings.cache_clear()
    quote_file = write(tmp_path, quote_dict())
    from_env = price(quote_file)
    assert from_env.exit_code == 1
    assert "missing-catalog.toml: cannot read the catalog" in from_env.stderr
    overridden = price(quote_file, "--json", "--catalog", str(REPO_ROOT / "catalog.toml"))
    assert overridden.exit_code == 0


def test_an_unparseable_signature_time_is_a_usage_error_64(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["quote", "price", write(tmp_path, quote_dict()), "--signed-at", "tuesday"]
    )
    assert result.exit_code == 64
    assert "--signed-at" in result.stderr
    assert "Traceback" not in result.output


def test_the_signature_time_zone_decides_the_start_date(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "quote",
            "price",
            write(tmp_path, quote_dict()),
            "--json",
            "--signed-at",
            "2026-12-15T23:30:00-08:00",
        ],
    )
    assert json.loads(result.stdout)["start_date"] == "2026-12-16"


def test_the_installed_qtc_command_prices_and_rejects_without_tracebacks(tmp_path: Path) -> None:
    qtc = Path(sys.executable).parent / "qtc"
    bad = write(tmp_path, b"\xff\xfe not a quote")
    process = subprocess.run(  # the real entry point, as a user runs it
        [str(qtc), "quote", "price", bad, "--json", "--catalog", str(REPO_ROOT / "catalog.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 64  # not a JSON document: a usage error, not a rejected quote
    assert json.loads(process.stdout)["errors"][0]["code"] == "invalid_field"
    assert "Traceback" not in process.stderr
