"""docker-compose.temporal.yml: valid for Compose, and it runs what the README says it runs.

No Docker engine runs here; ``docker-compose config -q`` validates the file against the Compose
schema without one (CI installs docker-compose for this).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.temporal.yml"
SEARCH_ATTRIBUTES = {
    "QtcStage": "Keyword",
    "QtcCustomer": "Text",
    "QtcArr": "Double",
    "QtcPhase": "Int",
}


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def readme_services() -> set[str]:
    """Service names the README's cluster section names in backticks or --scale."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Running on a Temporal cluster", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"--scale ([a-z-]+)=", section)) | set(
        re.findall(r"service `([a-z-]+)`", section)
    )


def test_the_compose_file_runs_postgres_temporal_its_ui_and_the_qtc_worker_and_api() -> None:
    services = compose()["services"]
    assert {"postgresql", "temporal", "temporal-ui", "qtc-worker", "qtc-api"} <= set(services)
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    for qtc in ("qtc-worker", "qtc-api"):
        assert services[qtc]["build"] == "."
        assert services[qtc]["environment"]["QTC_TEMPORAL_ADDRESS"] == "temporal:7233"


def test_every_service_the_readme_names_is_in_the_compose_file() -> None:
    named = readme_services()
    assert named, "the README's cluster section names no service"
    assert named <= set(compose()["services"])


def test_the_compose_file_registers_every_search_attribute_the_workflow_upserts() -> None:
    job = compose()["services"]["temporal-search-attributes"]
    script = " ".join(job["command"])
    for name, kind in SEARCH_ATTRIBUTES.items():
        assert f"{name}={kind}" in script


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not installed (CI installs it; `apt-get install docker-compose`)",
)
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    # The file reads .env for vendor credentials; an empty one stands in for the user's.
    shutil.copy(COMPOSE, tmp_path / COMPOSE.name)
    (tmp_path / ".env").write_text("", encoding="utf-8")
    result = subprocess.run(
        ["docker-compose", "-f", COMPOSE.name, "config", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
