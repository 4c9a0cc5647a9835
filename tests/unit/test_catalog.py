"""Loading the catalog: a broken file stops start-up with a message naming the file and the key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from qtc.catalog import load_catalog
from qtc.errors import CatalogError
from qtc.models import Catalog
from tests.unit.builders import REPO_ROOT, catalog_from_toml, tiny_catalog_toml

SAMPLE = (REPO_ROOT / "catalog.toml").read_text(encoding="utf-8")

GOOD_SKUS = """
[[skus]]
code = "A"
name = "Alpha"
kind = "recurring"
prices = { usd = "10.00" }
requires = [{ sku = "B", quantity = 1 }]

[[skus]]
code = "B"
name = "Beta"
kind = "one_time"
prices = { usd = "100.00" }
"""


def load_text(tmp_path: Path, text: str) -> Catalog:
    return catalog_from_toml(tmp_path, text)


def test_sample_catalog_offers_the_documented_products(catalog: Catalog) -> None:
    pro = catalog.sku("PLATFORM-PRO")
    assert pro is not None
    assert pro.prices["usd"] == Decimal("120.00")
    assert [r.sku for r in pro.requires] == ["IMPL-SERVICES"]
    assert pro.excludes == ["PLATFORM-STARTER"]
    assert pro.features == {"sso": True, "audit_log": True, "seats": "quantity"}
    assert {s.code for s in catalog.skus} >= {
        "PLATFORM-STARTER",
        "IMPL-SERVICES",
        "SUPPORT-PREMIUM",
        "ANALYTICS-ADDON",
        "EXTRA-STORAGE-TB",
    }
    assert catalog.policy.currencies == ["usd", "eur", "gbp"]


def test_a_price_that_is_not_a_decimal_is_named_by_file_and_key(tmp_path: Path) -> None:
    broken = SAMPLE.replace('prices = { usd = "5000.00"', 'prices = { usd = "five grand"')
    with pytest.raises(CatalogError) as caught:
        load_text(tmp_path, broken)
    assert str(caught.value) == f"{tmp_path / 'catalog.toml'}: skus[2].prices.usd: not a decimal"


def test_a_missing_catalog_file_is_reported_with_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(CatalogError, match=r"nowhere\.toml: cannot read the catalog"):
        load_catalog(missing)


def test_a_file_that_is_not_toml_is_reported_as_such(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"catalog\.toml: not valid TOML"):
        load_text(tmp_path, "[policy\ncurrencies = ")


def test_a_requirement_naming_an_unknown_sku_is_refused(tmp_path: Path) -> None:
    text = tiny_catalog_toml(GOOD_SKUS.replace('sku = "B"', 'sku = "GAMMA"'))
    with pytest.raises(CatalogError, match=r"skus\[0\]\.requires\[0\]\.sku: unknown SKU 'GAMMA'"):
        load_text(tmp_path, text)


def test_an_exclusion_naming_an_unknown_sku_is_refused(tmp_path: Path) -> None:
    text = tiny_catalog_toml(
        GOOD_SKUS.replace('kind = "one_time"', 'kind = "one_time"\nexcludes = ["ZED"]')
    )
    with pytest.raises(CatalogError, match=r"skus\[1\]\.excludes\[0\]: unknown SKU 'ZED'"):
        load_text(tmp_path, text)


def test_two_skus_with_the_same_code_are_refused(tmp_path: Path) -> None:
    text = tiny_catalog_toml(GOOD_SKUS.replace('code = "B"', 'code = "A"'))
    with pytest.raises(CatalogError, match=r"skus\[1\]\.code: duplicate SKU code 'A'"):
        load_text(tmp_path, text)


def test_a_soft_discount_limit_above_the_hard_limit_is_refused(tmp_path: Path) -> None:
    text = tiny_catalog_toml(
        GOOD_SKUS.replace(
            'prices = { usd = "10.00" }',
            'prices = { usd = "10.00" }\nmax_discount_percent = "30"\n'
            'hard_max_discount_percent = "20"',
        )
    )
    with pytest.raises(CatalogError, match=r"skus\[0\]\.max_discount_percent: above hard_max"):
        load_text(tmp_path, text)


def test_a_default_uplift_above_the_policy_maximum_is_refused(tmp_path: Path) -> None:
    text = tiny_catalog_toml(GOOD_SKUS).replace(
        'default_uplift_percent = "3"', 'default_uplift_percent = "12"'
    )
    with pytest.raises(CatalogError, match=r"policy\.default_uplift_percent: above"):
        load_text(tmp_path, text)


def test_a_price_finer_than_the_currency_minor_unit_is_refused(tmp_path: Path) -> None:
    text = tiny_catalog_toml(GOOD_SKUS.replace('usd = "10.00"', 'usd = "10.005"'))
    with pytest.raises(CatalogError, match=r"skus\[0\]\.prices\.usd: 10\.005 is finer than"):
        load_text(tmp_path, text)


def test_every_catalog_problem_is_listed_in_one_message(tmp_path: Path) -> None:
    text = tiny_catalog_toml(
        GOOD_SKUS.replace('sku = "B"', 'sku = "NOPE"').replace('code = "B"', 'code = "A"')
    )
    with pytest.raises(CatalogError) as caught:
        load_text(tmp_path, text)
    message = str(caught.value)
    assert "skus[1].code: duplicate SKU code 'A'" in message
    assert "skus[0].requires[0].sku: unknown SKU 'NOPE'" in message
    assert "\n" not in message


def test_unquoted_decimal_prices_are_read_exactly_not_as_floats(tmp_path: Path) -> None:
    catalog = load_text(
        tmp_path, tiny_catalog_toml(GOOD_SKUS.replace('usd = "10.00"', "usd = 10.10"))
    )
    sku = catalog.sku("A")
    assert sku is not None
    assert sku.prices["usd"] == Decimal("10.10")
    assert isinstance(sku.prices["usd"], Decimal)


def test_an_unknown_key_in_a_sku_is_refused(tmp_path: Path) -> None:
    text = tiny_catalog_toml(GOOD_SKUS.replace('name = "Alpha"', 'name = "Alpha"\ncolour = "red"'))
    with pytest.raises(CatalogError, match=r"skus\[0\]\.colour: not a known key"):
        load_text(tmp_path, text)
