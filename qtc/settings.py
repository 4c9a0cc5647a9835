"""One typed settings object for every process (worker, API, CLI, sandbox).

Values come from ``QTC_*`` environment variables and ``.env``. Secrets are ``SecretStr`` so they
never print. The sandbox's fixed test credentials are accepted only when ``QTC_ENV=sandbox``: a
production deployment that forgot to set a real secret fails at start-up instead of running with a
value published in the README.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Role = Literal["sales", "deal_desk", "finance", "operator"]

SANDBOX_SECRETS: dict[str, str] = {
    "stripe_api_key": "sk_test_sandbox",
    "docusign_connect_secret": "sandbox-connect-secret",
    "salesforce_callout_secret": "sandbox-sf-secret",
    "provisioning_secret": "sandbox-provisioning-secret",
}
SANDBOX_TOKENS: dict[str, tuple[str, Role]] = {
    "sandbox-sales": ("sam.sales@sandbox.example", "sales"),
    "sandbox-deal-desk": ("dana.deskman@sandbox.example", "deal_desk"),
    "sandbox-finance": ("fiona.finance@sandbox.example", "finance"),
    "sandbox-operator": ("oscar.operator@sandbox.example", "operator"),
}


class ApiPrincipal(BaseModel):
    person: str
    role: Role


def _sandbox_tokens() -> dict[str, ApiPrincipal]:
    return {t: ApiPrincipal(person=p, role=r) for t, (p, r) in SANDBOX_TOKENS.items()}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="QTC_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Literal["sandbox", "production"] = "sandbox"
    catalog: Path = Path("catalog.toml")
    state_dir: Path = Path(".qtc")
    log_level: str = "INFO"
    log_json: bool | None = None  # None: JSON when stderr is not a terminal

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "qtc-deals"
    temporal_api_key: SecretStr | None = None
    temporal_tls: bool = False
    temporal_ui_port: int = 8233

    # HTTP API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_public_url: str = "http://127.0.0.1:8000"
    api_tokens: dict[str, ApiPrincipal] = Field(default_factory=_sandbox_tokens)
    max_body_bytes: int = 1_000_000
    # --- HTTP API and webhooks (starters/api) ---
    api_temporal_timeout_s: float = 5.0  # a webhook sender gets 503 after this, not a hang
    api_retry_after_s: int = 5  # Retry-After sent with every 503
    api_default_phase: Literal[1, 2, 3] = 3  # phase of deals started by Salesforce webhooks
    api_outbound_dedupe_size: int = 10_000  # remembered Outbound Message notification ids
    salesforce_callout_tolerance_s: int = 300  # max age of a signed Flow callout

    # --- Worker (workers/) ---
    worker_activity_threads: int = Field(32, ge=1)  # thread pool of the blocking vendor SDKs
    worker_max_cached_workflows: int = Field(2000, ge=0)  # keep >= deals in flight (no replays)
    worker_graceful_shutdown_s: float = Field(30.0, ge=0)  # in-flight activities may finish
    worker_register_search_attributes: bool = True  # add missing Qtc* attributes at start-up

    # Stripe
    stripe_api_key: SecretStr = SecretStr(SANDBOX_SECRETS["stripe_api_key"])
    stripe_api_base: str | None = "http://127.0.0.1:12111"
    stripe_timeout_seconds: float = 30.0  # per request; Temporal retries, the SDK does not

    # Salesforce
    salesforce_instance_url: str = "https://127.0.0.1:12112"
    salesforce_username: str | None = None
    salesforce_password: SecretStr | None = None
    salesforce_security_token: SecretStr | None = None
    salesforce_session_id: SecretStr | None = SecretStr("sandbox-session")
    salesforce_api_version: str = "59.0"
    salesforce_callout_secret: SecretStr = SecretStr(SANDBOX_SECRETS["salesforce_callout_secret"])
    salesforce_org_ids: list[str] = Field(default_factory=lambda: ["00D000000000001AAA"])
    salesforce_field_map: dict[str, str] = Field(default_factory=dict)
    salesforce_ca_file: Path | None = None  # CA bundle to trust (the sandbox's self-signed CA)
    salesforce_domain: str = "login"  # username/password login: "login", "test" or a My Domain
    salesforce_timeout_s: float = 30.0

    # DocuSign
    docusign_base_path: str = "http://127.0.0.1:12113/restapi"
    docusign_oauth_host: str = "127.0.0.1:12113"
    docusign_account_id: str = "sandbox-account"
    docusign_integration_key: str = "sandbox-integration-key"
    docusign_user_id: str = "sandbox-user"
    docusign_private_key: SecretStr | None = None
    docusign_template_id: str = "sandbox-msa-template"
    docusign_connect_secret: SecretStr = SecretStr(SANDBOX_SECRETS["docusign_connect_secret"])
    docusign_connect_secrets_extra: list[SecretStr] = Field(default_factory=list)
    docusign_timeout_s: float = 30.0
    docusign_envelope_lookback_days: int = 730  # how far back send_contract looks for a sent one

    # Product backend
    provisioning_url: str = "http://127.0.0.1:12114/v1/provision"
    provisioning_secret: SecretStr = SecretStr(SANDBOX_SECRETS["provisioning_secret"])
    provisioning_timeout_s: float = 15.0

    # Sandbox emulators
    sandbox_host: str = "127.0.0.1"
    sandbox_stripe_port: int = 12111
    sandbox_salesforce_port: int = 12112
    sandbox_docusign_port: int = 12113
    sandbox_provisioning_port: int = 12114

    @property
    def sandbox(self) -> bool:
        return self.env == "sandbox"

    @property
    def docusign_connect_secrets(self) -> list[SecretStr]:
        return [self.docusign_connect_secret, *self.docusign_connect_secrets_extra]

    @model_validator(mode="after")
    def _refuse_sandbox_secrets_outside_sandbox(self) -> Settings:
        if self.sandbox:
            return self
        offending = [
            f"QTC_{name.upper()}"
            for name, value in SANDBOX_SECRETS.items()
            if getattr(self, name).get_secret_value() == value
        ]
        if any(token in SANDBOX_TOKENS for token in self.api_tokens):
            offending.append("QTC_API_TOKENS")
        if offending:
            raise ValueError(
                "sandbox credentials are refused outside the sandbox; set real values for: "
                + ", ".join(offending)
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
