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

from runtime.search_attributes import SEARCH_ATTRIBUTES as WORKFLOW_SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.temporal.yml"
SEARCH_ATTRIBUTES = {
    key.name: key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_").title()
    for key in WORKFLOW_SEARCH_ATTRIBUTES
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


def test_the_cluster_sets_up_its_schema_in_a_job_and_no_longer_uses_auto_setup() -> None:
    services = compose()["services"]
    images = [service.get("image", "") for service in services.values()]
    assert not any("auto-setup" in image for image in images)
    schema = " ".join(services["temporal-schema"]["command"])
    assert "setup-schema" in schema and "update-schema" in schema
    depends = services["temporal"]["depends_on"]["temporal-schema"]
    assert depends == {"condition": "service_completed_successfully"}


def test_the_namespace_is_created_with_an_explicit_retention() -> None:
    job = " ".join(compose()["services"]["temporal-namespace"]["command"])
    assert "namespace create" in job
    assert re.search(r"--retention \$\{QTC_NAMESPACE_RETENTION:-\d+d\}", job)


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
