"""``qtc sign WORKFLOW_ID`` signs an Ironclad workflow in the emulator, whichever e-signature
vendor the shell's settings name."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from integrations.ironclad.client import IroncladApi
from integrations.ironclad.mapping import launch_attributes
from qtc.models import PricedQuote
from runtime.settings import get_settings
from sandbox.docusign.app import create_app as create_docusign_app
from sandbox.stripe.testing import serve_app
from starters.cli import app as qtc_cli
from tests.ironclad.conftest import CREATOR, TEMPLATE, Receiver


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("QTC_ENV", "sandbox")
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


async def test_qtc_sign_signs_the_workflow_with_qtc_esign_ironclad(
    fresh_settings: pytest.MonkeyPatch,
    ironclad_url: str,
    api: IroncladApi,
    priced: PricedQuote,
    receiver: Receiver,
) -> None:
    workflow = await api.launch_workflow(
        TEMPLATE, launch_attributes("deal-cli", priced), creator_email=CREATOR
    )
    fresh_settings.setenv("QTC_ESIGN", "ironclad")
    fresh_settings.setenv("QTC_IRONCLAD_BASE_URL", ironclad_url)
    result = CliRunner().invoke(
        qtc_cli, ["sign", workflow["id"], "--json", "--signed-at", "2026-12-15T10:00:00Z"]
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert (answer["status"], answer["signedAt"]) == ("completed", "2026-12-15T10:00:00.000Z")
    assert answer["deliveries"][-1]["url"] == receiver.url
    again = CliRunner().invoke(qtc_cli, ["sign", workflow["id"]])
    assert again.exit_code == 1
    assert "INVALID_STATE" in again.stderr


async def test_qtc_sign_finds_a_workflow_id_the_docusign_emulator_does_not_know(
    fresh_settings: pytest.MonkeyPatch, ironclad_url: str, api: IroncladApi, priced: PricedQuote
) -> None:
    workflow = await api.launch_workflow(
        TEMPLATE, launch_attributes("deal-cli", priced), creator_email=CREATOR
    )
    with serve_app(create_docusign_app()) as docusign_url:
        fresh_settings.setenv("QTC_DOCUSIGN_BASE_PATH", f"{docusign_url}/restapi")
        fresh_settings.setenv("QTC_IRONCLAD_BASE_URL", ironclad_url)
        result = CliRunner().invoke(qtc_cli, ["sign", workflow["id"]])
        unknown = CliRunner().invoke(qtc_cli, ["sign", "no-such-contract"])
    assert result.exit_code == 0, result.output
    assert f"Ironclad workflow {workflow['id']}" in result.stdout
    assert unknown.exit_code == 1
    assert "no-such-contract not signed" in unknown.stderr
