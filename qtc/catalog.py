"""Loading the product catalog and pricing policy from TOML.

A broken catalog must stop a worker, API or CLI at start-up with a message that names the file and
the key, never misprice a quote later. Besides the shape of every value, the loader checks what a
schema cannot: cross-references between SKUs and limits that contradict each other.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from qtc.errors import CatalogError
from qtc.models import Catalog, Requirement
from qtc.money import round_money

_MESSAGES = {
    "decimal_parsing": "not a decimal",
    "decimal_type": "not a decimal",
    "missing": "missing",
    "extra_forbidden": "not a known key",
    "int_type": "not a whole number",
    "int_parsing": "not a whole number",
    "int_from_float": "not a whole number",
    "bool_type": "not true or false",
    "string_type": "not a string",
    "list_type": "not a list",
    "dict_type": "not a table",
    "model_type": "not a table",
}


def load_catalog(path: Path) -> Catalog:
    """Read, validate and cross-check the catalog at ``path``.

    Raises:
        CatalogError: the file cannot be read, is not TOML, or breaks a rule; the message starts
            with the file name and names each offending key, e.g.
            ``catalog.toml: skus[2].prices.usd: not a decimal``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the catalog: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text (byte offset {exc.start})") from exc
    try:
        # Floats written without quotes are read as exact decimals, never as binary floats.
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: not valid TOML: {exc}") from exc
    try:
        catalog = Catalog.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_key(err['loc'])}: {_describe(err)}" for err in exc.errors()]
        raise CatalogError(f"{path}: " + f"; {path}: ".join(problems)) from exc
    problems = catalog_problems(catalog)
    if problems:
        raise CatalogError(f"{path}: " + f"; {path}: ".join(problems))
    return catalog


def catalog_problems(catalog: Catalog) -> list[str]:
    """Rules a schema cannot express, each as ``key: sentence``; empty when the catalog is sound."""
    problems: list[str] = []
    policy = catalog.policy
    codes = {sku.code for sku in catalog.skus}
    first_index: dict[str, int] = {}

    for key, values in (
        ("policy.currencies", policy.currencies),
        ("policy.term_months", policy.term_months),
        ("policy.billing_frequencies", policy.billing_frequencies),
        ("policy.payment_terms_days", policy.payment_terms_days),
    ):
        if not values:
            problems.append(f"{key}: empty; nothing could be sold")
    for i, currency in enumerate(policy.currencies):
        if not _is_currency_code(currency):
            problems.append(f"policy.currencies[{i}]: {currency!r} is not a lowercase ISO code")
    for i, months in enumerate(policy.term_months):
        if months < 1:
            problems.append(f"policy.term_months[{i}]: a term must be at least 1 month")
    for i, days in enumerate(policy.payment_terms_days):
        if days < 0:
            problems.append(f"policy.payment_terms_days[{i}]: payment terms cannot be negative")
    if policy.default_uplift_percent > policy.max_uplift_percent:
        problems.append("policy.default_uplift_percent: above policy.max_uplift_percent")

    for i, sku in enumerate(catalog.skus):
        key = f"skus[{i}]"
        if sku.code in first_index:
            problems.append(
                f"{key}.code: duplicate SKU code {sku.code!r} "
                f"(first at skus[{first_index[sku.code]}])"
            )
        else:
            first_index[sku.code] = i
        if not sku.prices:
            problems.append(f"{key}.prices: no price in any currency")
        for currency, price in sku.prices.items():
            if not _is_currency_code(currency):
                problems.append(f"{key}.prices.{currency}: not a lowercase ISO currency code")
            elif round_money(price, currency) != price:
                problems.append(
                    f"{key}.prices.{currency}: {price} is finer than {currency}'s minor unit"
                )
        if sku.min_quantity < 1:
            problems.append(f"{key}.min_quantity: must be at least 1")
        if sku.max_quantity < sku.min_quantity:
            problems.append(f"{key}.max_quantity: below min_quantity")
        if sku.max_discount_percent > sku.hard_max_discount_percent:
            problems.append(f"{key}.max_discount_percent: above hard_max_discount_percent")
        problems.extend(_reference_problems(key, sku.code, sku.requires, sku.excludes, codes))
        for j, requirement in enumerate(sku.requires):
            required = catalog.sku(requirement.sku)
            if required is not None and not (
                required.min_quantity <= requirement.quantity <= required.max_quantity
            ):
                problems.append(
                    f"{key}.requires[{j}].quantity: {requirement.quantity} is outside "
                    f"{required.code}'s {required.min_quantity}..{required.max_quantity}"
                )
    return problems


def _reference_problems(
    key: str, code: str, requires: list[Requirement], excludes: list[str], codes: set[str]
) -> list[str]:
    problems: list[str] = []
    for j, requirement in enumerate(requires):
        target = requirement.sku
        if target == code:
            problems.append(f"{key}.requires[{j}].sku: {code} cannot require itself")
        elif target not in codes:
            problems.append(f"{key}.requires[{j}].sku: unknown SKU {target!r}")
    for j, target in enumerate(excludes):
        if target == code:
            problems.append(f"{key}.excludes[{j}]: {code} cannot exclude itself")
        elif target not in codes:
            problems.append(f"{key}.excludes[{j}]: unknown SKU {target!r}")
    return problems


def _is_currency_code(code: str) -> bool:
    return len(code) == 3 and code.isascii() and code.isalpha() and code.islower()


def _key(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _describe(err: ErrorDetails) -> str:
    return _MESSAGES.get(err["type"], err["msg"][:1].lower() + err["msg"][1:])
