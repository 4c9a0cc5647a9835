"""Contract tests: the production adapters against the real vendors' test environments.

They run only when the vendor's credentials are in the environment and say so when skipped:

- Stripe test mode: ``QTC_CONTRACT_STRIPE_KEY`` (an ``sk_test_`` key; live keys are refused).
- Salesforce sandbox: ``QTC_CONTRACT_SF_INSTANCE_URL``, ``QTC_CONTRACT_SF_SESSION_ID`` and
  ``QTC_CONTRACT_SF_OPPORTUNITY_ID`` (an opportunity carrying the QTC fields, see README).
- DocuSign demo: ``QTC_CONTRACT_DOCUSIGN_ACCOUNT_ID``, ``..._INTEGRATION_KEY``, ``..._USER_ID``,
  ``..._PRIVATE_KEY_FILE`` and ``..._TEMPLATE_ID`` (base path https://demo.docusign.net/restapi).
"""

from __future__ import annotations

import os

import pytest
from pydantic import SecretStr

from runtime.settings import ApiPrincipal, Settings


def require_env(*names: str) -> dict[str, str]:
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        pytest.skip(f"contract test not run: set {', '.join(missing)} to run it")
    return {name: os.environ[name] for name in names}


def production_settings(**overrides: object) -> Settings:
    """Production settings with throwaway values for what a contract test does not touch."""
    values: dict[str, object] = {
        "env": "production",
        "codec_enabled": False,
        "stripe_api_key": SecretStr("sk_test_unused"),
        "stripe_api_base": None,
        "docusign_connect_secret": SecretStr("contract-test-connect-secret"),
        "salesforce_callout_secret": SecretStr("contract-test-sf-secret"),
        "provisioning_secret": SecretStr("contract-test-provisioning-secret"),
        "api_tokens": {"contract-test": ApiPrincipal(person="contract@test", role="operator")},
        "salesforce_session_id": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]
