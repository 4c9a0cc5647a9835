"""deploy/kubernetes: valid against the Kubernetes schemas, and wired the way the README says
(probes, secrets by reference, a worker that drains)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
KUBERNETES_VERSION = "1.31.0"


def documents() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in MANIFESTS:
        found.extend(doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc)
    return found


def deployment(name: str) -> dict[str, Any]:
    return next(
        d for d in documents() if d["kind"] == "Deployment" and d["metadata"]["name"] == name
    )


@pytest.mark.parametrize(
    "resource", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}"
)
def test_every_manifest_is_valid_against_the_kubernetes_schema(resource: dict[str, Any]) -> None:
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_the_api_is_probed_on_healthz_and_readyz() -> None:
    (api,) = deployment("qtc-api")["spec"]["template"]["spec"]["containers"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_secrets_are_referenced_and_never_written_in_a_manifest() -> None:
    assert not [d for d in documents() if d["kind"] == "Secret"]
    for name in ("qtc-api", "qtc-worker"):
        (container,) = deployment(name)["spec"]["template"]["spec"]["containers"]
        assert {"secretRef": {"name": "qtc-secrets"}} in container["envFrom"]
        assert "resources" in container


def test_the_worker_gets_longer_to_stop_than_its_graceful_shutdown() -> None:
    spec = deployment("qtc-worker")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > Settings().worker_graceful_shutdown_s


def test_every_setting_in_the_config_map_is_a_real_setting() -> None:
    config = next(d for d in documents() if d["kind"] == "ConfigMap")
    known = {f"QTC_{name.upper()}" for name in Settings.model_fields}
    assert set(config["data"]) <= known
