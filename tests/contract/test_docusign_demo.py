"""The e-signature adapter against a DocuSign developer (demo) account."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from integrations.docusign.activities import DocusignESignature
from integrations.docusign.client import build_docusign_client
from qtc.cpq import price_quote
from qtc.ports import SendContractInput, VoidContractInput
from tests.activities.billing_deals import CATALOG, quote
from tests.contract.conftest import production_settings, require_env


def test_a_contract_is_sent_once_from_the_template_and_voided() -> None:
    env = require_env(
        "QTC_CONTRACT_DOCUSIGN_ACCOUNT_ID",
        "QTC_CONTRACT_DOCUSIGN_INTEGRATION_KEY",
        "QTC_CONTRACT_DOCUSIGN_USER_ID",
        "QTC_CONTRACT_DOCUSIGN_PRIVATE_KEY_FILE",
        "QTC_CONTRACT_DOCUSIGN_TEMPLATE_ID",
    )
    settings = production_settings(
        docusign_base_path="https://demo.docusign.net/restapi",
        docusign_oauth_host="account-d.docusign.com",
        docusign_account_id=env["QTC_CONTRACT_DOCUSIGN_ACCOUNT_ID"],
        docusign_integration_key=env["QTC_CONTRACT_DOCUSIGN_INTEGRATION_KEY"],
        docusign_user_id=env["QTC_CONTRACT_DOCUSIGN_USER_ID"],
        docusign_private_key=SecretStr(
            Path(env["QTC_CONTRACT_DOCUSIGN_PRIVATE_KEY_FILE"]).read_text(encoding="utf-8")
        ),
        docusign_template_id=env["QTC_CONTRACT_DOCUSIGN_TEMPLATE_ID"],
    )
    esign = DocusignESignature.from_settings(build_docusign_client(settings), settings)
    opportunity = f"006CT{uuid.uuid4().hex[:12].upper()}"
    priced = price_quote(quote(opportunity_id=opportunity), CATALOG, datetime.now(UTC))
    deal_id = f"deal-{opportunity}"

    sent = esign.send_contract(SendContractInput(deal_id=deal_id, priced=priced))
    again = esign.send_contract(SendContractInput(deal_id=deal_id, priced=priced))
    assert again.envelope_id == sent.envelope_id
    # What the Connect listener reads for a message that names only the envelope.
    read = esign.read_contract(sent.envelope_id)
    assert read is not None and (read.deal_id, read.status) == (deal_id, "sent")
    assert esign.read_contract(str(uuid.uuid4())) is None
    esign.void_contract(
        VoidContractInput(deal_id=deal_id, envelope_id=sent.envelope_id, reason="contract test")
    )
