"""Shared fixtures for the domain unit tests: the sample catalog and quote builders."""

from __future__ import annotations

import pytest

from qtc.catalog import load_catalog
from qtc.models import Catalog
from tests.unit.builders import REPO_ROOT, catalog_from_toml


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The sample catalog shipped in the repository."""
    return load_catalog(REPO_ROOT / "catalog.toml")


@pytest.fixture(scope="session")
def flexible_catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """The sample catalog with an 18-month term allowed, for term-length tests."""
    text = (
        (REPO_ROOT / "catalog.toml")
        .read_text()
        .replace("term_months = [12, 24, 36]", "term_months = [12, 18, 24, 36]")
    )
    return catalog_from_toml(tmp_path_factory.mktemp("catalog"), text)
