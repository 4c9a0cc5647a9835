"""The CRM adapter against a real Salesforce sandbox org."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import SecretStr

from integrations.salesforce.activities import SalesforceCrm
from integrations.salesforce.client import build_salesforce_client
from integrations.salesforce.mapping import FieldMap
from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from qtc.ports import ReadOpportunityInput
from tests.contract.conftest import production_settings, require_env

ROOT_CATALOG = "catalog.toml"


def test_a_real_opportunity_maps_to_a_quote_the_cpq_engine_prices() -> None:
    env = require_env(
        "QTC_CONTRACT_SF_INSTANCE_URL",
        "QTC_CONTRACT_SF_SESSION_ID",
        "QTC_CONTRACT_SF_OPPORTUNITY_ID",
    )
    settings = production_settings(
        salesforce_instance_url=env["QTC_CONTRACT_SF_INSTANCE_URL"],
        salesforce_session_id=SecretStr(env["QTC_CONTRACT_SF_SESSION_ID"]),
    )
    crm = SalesforceCrm(build_salesforce_client(settings), FieldMap.from_settings(settings))
    opportunity_id = env["QTC_CONTRACT_SF_OPPORTUNITY_ID"]
    quote = crm.read_opportunity(ReadOpportunityInput(opportunity_id=opportunity_id))
    assert quote.opportunity_id == opportunity_id
    priced = price_quote(quote, load_catalog(settings.catalog), datetime.now(UTC))
    assert priced.first_invoice_total_minor > 0
