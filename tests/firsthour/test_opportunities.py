"""A quote written by hand names an opportunity the CRM may not hold (issue: "contracted and
signed, then parks in needs_attention"). In the sandbox the CRM emulator is given it, from the
quote's data, before the deal starts; outside the sandbox the deal is refused before any contract
goes out. The example quotes and the seeded CRM records agree."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from qtc import errors
from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from qtc.models import PricedQuote, Quote
from runtime.settings import Settings
from sandbox.runner import RunningEmulators
from service import deals
from service.crm import CrmOpportunityCheck
from tests.unit.builders import REPO_ROOT
from workers.compose import LazyCrmReader, SandboxOpportunities, opportunity_check

CATALOG = load_catalog(REPO_ROOT / "catalog.toml")
NOW = datetime(2026, 12, 15, 10, tzinfo=UTC)


def settings_for(emulators: RunningEmulators, env: str = "sandbox") -> Settings:
    return Settings(
        env="sandbox",
        salesforce_instance_url=emulators.salesforce_url,
        salesforce_ca_file=emulators.salesforce_ca_file,
    ).model_copy(update={"env": env})


def hand_written_quote(opportunity_id: str, **changes: Any) -> PricedQuote:
    quote = json.loads((REPO_ROOT / "examples" / "quote-phase3.json").read_text("utf-8"))
    quote.update(opportunity_id=opportunity_id, quote_id=f"Q-{opportunity_id[-6:]}", **changes)
    return price_quote(quote, CATALOG, NOW)


def new_id() -> str:
    return "006" + uuid.uuid4().hex[:12].upper() + "AAA"


def test_the_sandbox_gives_the_crm_emulator_a_hand_written_quotes_opportunity(
    emulators: RunningEmulators,
) -> None:
    settings = settings_for(emulators)
    reader = LazyCrmReader(settings)
    try:
        check = opportunity_check(settings, reader)
        assert isinstance(check, SandboxOpportunities)
        priced = hand_written_quote(new_id())
        check.ensure_opportunity(priced)
        check.ensure_opportunity(priced)  # a second start (a join) leaves it as it is

        read_back = price_quote(reader.read_quote(priced.opportunity_id), CATALOG, NOW)
    finally:
        reader.close()
    # What the CRM now holds prices to exactly the hand-written quote: same customer, currency,
    # lines and totals, so Closed Won and the write-back find it.
    assert read_back.account == priced.account
    assert (read_back.currency, read_back.lines, read_back.invoices) == (
        priced.currency,
        priced.lines,
        priced.invoices,
    )


def test_outside_the_sandbox_a_missing_opportunity_is_refused_before_anything_starts(
    emulators: RunningEmulators,
) -> None:
    settings = settings_for(emulators, env="production")
    reader = LazyCrmReader(settings.model_copy(update={"env": "sandbox"}))
    try:
        check = CrmOpportunityCheck(reader)
        with pytest.raises(ApplicationError) as raised:
            check.ensure_opportunity(hand_written_quote(new_id()))
        assert raised.value.type == errors.VENDOR_NOT_FOUND
        check.ensure_opportunity(hand_written_quote("006000000000003AAA"))  # a seeded one: fine

        # The use case refuses before it talks to Temporal at all (no client is needed).
        with pytest.raises(deals.OpportunityUnavailable) as refused:
            asyncio.run(
                deals.start_deal(
                    cast(Client, None),
                    settings,
                    hand_written_quote("006NOSUCHOPP0000AAA"),
                    phase=3,
                    started_by="test",
                    opportunities=check,
                )
            )
    finally:
        reader.close()
    assert refused.value.reason == "not_found"
    assert "006NOSUCHOPP0000AAA" in str(refused.value)
    assert "no contract was sent" in str(refused.value)


@pytest.mark.parametrize(
    "example", sorted(p.name for p in (REPO_ROOT / "examples").glob("quote-*.json"))
)
def test_each_example_quote_is_the_seeded_opportunity_with_its_id(
    reset_emulators: RunningEmulators, example: str
) -> None:
    written = Quote.model_validate_json((REPO_ROOT / "examples" / example).read_bytes())
    reader = LazyCrmReader(settings_for(reset_emulators))
    try:
        seeded = reader.read_quote(written.opportunity_id)
    finally:
        reader.close()
    if example == "quote-rejected.json":
        # Its unknown SKU has no product in the org; everything else is the example's.
        seeded = seeded.model_copy(update={"lines": written.lines})
    assert seeded == written
