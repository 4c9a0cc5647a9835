"""One typed settings object for every process (worker, API, CLI, sandbox).

Values come from ``QTC_*`` environment variables and ``.env``. Secrets are ``SecretStr`` so they
never print. The sandbox's fixed test credentials are accepted only when ``QTC_ENV=sandbox``: a
production deployment that forgot to set a real secret fails at start-up instead of running with a
value published in the README.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from runtime.logging import register_secrets

# A Salesforce record id: 15 case-sensitive characters, or 18 with the case-encoding suffix.
SALESFORCE_ID_PATTERN = r"^[A-Za-z0-9]{15}(?:[A-Za-z0-5]{3})?$"

Role = Literal["sales", "deal_desk", "finance", "operator"]
NotifyChannel = Literal["slack", "email"]

SANDBOX_SECRETS: dict[str, str] = {
    "stripe_api_key": "sk_test_sandbox",
    "chargebee_api_key": "test_sandbox_chargebee",
    "docusign_connect_secret": "sandbox-connect-secret",
    "salesforce_callout_secret": "sandbox-sf-secret",
    "provisioning_secret": "sandbox-provisioning-secret",
    "hubspot_access_token": "sandbox-hubspot-token",
    "hubspot_client_secret": "sandbox-hubspot-secret",
    "netsuite_consumer_secret": "sandbox-ns-consumer-secret",
    "netsuite_token_secret": "sandbox-ns-token-secret",
    "ironclad_api_key": "sandbox-ironclad-key",
}
# The NetSuite emulator's account, consumer key and token id (their secrets are in
# SANDBOX_SECRETS), used when the NetSuite settings are unset in the sandbox.
SANDBOX_NETSUITE: dict[str, str] = {
    "account": "SANDBOX",
    "consumer_key": "sandbox-ns-consumer-key",
    "token_id": "sandbox-ns-token-id",
}
# The Slack emulator's bot token. Not a default outside the sandbox, where Slack is optional: a
# deployment without QTC_NOTIFY=slack needs no token at all.
SANDBOX_SLACK_BOT_TOKEN = "xoxb-sandbox"  # noqa: S105 - a published sandbox value
# Secrets that only one vendor of a port needs: (the port's setting, the vendor).
_VENDOR_SECRETS: dict[str, tuple[str, str]] = {
    "stripe_api_key": ("billing", "stripe"),
    "chargebee_api_key": ("billing", "chargebee"),
}
SANDBOX_TOKENS: dict[str, tuple[str, Role]] = {
    "sandbox-sales": ("sam.sales@sandbox.example", "sales"),
    "sandbox-deal-desk": ("dana.deskman@sandbox.example", "deal_desk"),
    "sandbox-finance": ("fiona.finance@sandbox.example", "finance"),
    "sandbox-operator": ("oscar.operator@sandbox.example", "operator"),
}


# --- Payload encryption (runtime/codec.py) ---------------------------------------------------
SANDBOX_CODEC_KEY_ID = "sandbox-key-1"
# A published test key ("qtc-sandbox-codec-key-not-secret", 32 bytes): sandbox payloads are
# encrypted only to exercise the codec, never to hide anything. Refused outside the sandbox.
SANDBOX_CODEC_KEY_B64 = "cXRjLXNhbmRib3gtY29kZWMta2V5LW5vdC1zZWNyZXQ="
_CODEC_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_AES_256_KEY_BYTES = 32


def parse_codec_keys(text: str) -> dict[str, bytes]:
    """Read ``QTC_CODEC_KEYS`` (``{"key-id": "<base64 of 32 bytes>"}``) into key material.

    Messages name the key id and the problem, never the key itself.

    Raises:
        ValueError: Not a non-empty JSON object of key ids to base64 AES-256 keys.
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError('QTC_CODEC_KEYS is not JSON; expected {"key-id": "<base64>"}') from err
    if not isinstance(raw, dict) or not raw:
        raise ValueError("QTC_CODEC_KEYS must be a non-empty JSON object of key id to base64 key")
    keys: dict[str, bytes] = {}
    for key_id, encoded in raw.items():
        if not _CODEC_KEY_ID.match(key_id):
            raise ValueError(f"codec key id {key_id!r} must be 1-64 letters, digits, '.', '_', '-'")
        try:
            material = base64.b64decode(encoded if isinstance(encoded, str) else "", validate=True)
        except binascii.Error as err:
            raise ValueError(f"codec key {key_id!r} is not valid base64") from err
        if len(material) != _AES_256_KEY_BYTES:
            raise ValueError(
                f"codec key {key_id!r} is {len(material)} bytes; AES-256 needs exactly 32"
            )
        keys[key_id] = material
    return keys


# --- Ports of the local stack ----------------------------------------------------------------
# One setting moves the whole local stack (``QTC_PORT_BASE``, ``qtc sandbox up --port-base``,
# ``qtc demo --port-base``): each part listens on base + its offset, and every address that points
# at a part (the vendor URLs, the API's public URL, the Web UI's codec origins) follows, so a stack
# beside another one is consistent by construction. This table is the one place that knows the
# layout: an emulator added later takes its offset here and its URL in ``SANDBOX_URLS``. A field
# listed that does not exist (yet) is skipped. Settings given explicitly always win over the base.
# The offsets follow the default ports: base 12100 puts the emulators on their defaults.
PORT_OFFSETS: dict[str, int] = {
    "temporal_port": 0,  # the port of QTC_TEMPORAL_ADDRESS
    "temporal_ui_port": 1,
    "api_port": 2,
    "sandbox_stripe_port": 11,
    "sandbox_salesforce_port": 12,
    "sandbox_docusign_port": 13,
    "sandbox_provisioning_port": 14,
    "sandbox_hubspot_port": 15,
    "sandbox_netsuite_port": 16,
    "sandbox_chargebee_port": 17,
    "sandbox_slack_port": 18,
    "sandbox_smtp_port": 19,
    "sandbox_ironclad_port": 20,
    # The first worker's /metrics; a stack's further workers take the ports after it.
    "worker_metrics_port": 21,
}
PORT_SPAN = 32  # ports a base reserves: the offsets above plus room for more workers

# Addresses that point at a part of the local stack, derived from its port unless set explicitly:
# setting ``QTC_SANDBOX_DOCUSIGN_PORT`` alone moves the emulator and the worker follows it.
# url setting -> (port setting, template; ``{host}`` is the sandbox host as a client dials it).
SANDBOX_URLS: dict[str, tuple[str, str]] = {
    "stripe_api_base": ("sandbox_stripe_port", "http://{host}:{port}"),
    "salesforce_instance_url": ("sandbox_salesforce_port", "https://{host}:{port}"),
    "docusign_base_path": ("sandbox_docusign_port", "http://{host}:{port}/restapi"),
    "docusign_oauth_host": ("sandbox_docusign_port", "{host}:{port}"),
    "provisioning_url": ("sandbox_provisioning_port", "http://{host}:{port}/v1/provision"),
    "hubspot_api_base": ("sandbox_hubspot_port", "http://{host}:{port}"),
    "chargebee_api_base": ("sandbox_chargebee_port", "http://{host}:{port}"),
    "slack_api_url": ("sandbox_slack_port", "http://{host}:{port}/api/"),
}


def dial_host(host: str) -> str:
    """The address a client dials for a server listening on ``host`` (any-address: loopback)."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


class SettingsError(ValueError):
    """The settings cannot be used; the message is one line per setting, naming it (QTC_...)."""


class ApiPrincipal(BaseModel):
    person: str
    role: Role


def _sandbox_tokens() -> dict[str, ApiPrincipal]:
    return {t: ApiPrincipal(person=p, role=r) for t, (p, r) in SANDBOX_TOKENS.items()}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="QTC_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # A validation error would otherwise quote every
        # raw QTC_* value, secrets included, on stderr at start-up, before any redaction exists.
        hide_input_in_errors=True,
    )

    env: Literal["sandbox", "production"] = "sandbox"

    # --- Which vendor implements each port (workers/compose.py wires them) ---
    crm: Literal["salesforce", "hubspot"] = "salesforce"
    esign: Literal["docusign", "ironclad"] = "docusign"
    billing: Literal["stripe", "chargebee"] = "stripe"
    erp: Literal["none", "netsuite"] = "none"
    # on: the billing system computes tax on every invoice (Stripe Tax's automatic_tax); prices
    # stay net of tax and invoices are reconciled on their amount excluding tax.
    tax: Literal["off", "on"] = "off"
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
    # mTLS (self-hosted, or Temporal Cloud's certificate auth): PEM files.
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None
    temporal_tls_server_name: str | None = None
    # A profile of Temporal's environment configuration (temporal.toml / TEMPORAL_*): when set,
    # it says where and how to connect, instead of the settings above.
    temporal_profile: str | None = None
    temporal_ui_port: int = Field(8233, ge=1, le=65535)

    # HTTP API
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    # Where others reach the API (the DocuSign emulator's Connect deliveries, the Web UI's codec
    # endpoint); default: http://<API host>:<API port>.
    api_public_url: str = "http://127.0.0.1:8000"
    api_tokens: dict[str, ApiPrincipal] = Field(default_factory=_sandbox_tokens)
    max_body_bytes: int = 1_000_000
    # /metrics of the API: open in the sandbox, an operator token elsewhere (None: so decided).
    api_metrics_require_auth: bool | None = None
    # --- HTTP API and webhooks (starters/api) ---
    api_temporal_timeout_s: float = 5.0  # a webhook sender gets 503 after this, not a hang
    api_retry_after_s: int = 5  # Retry-After sent with every 503
    # Phase of deals started by the CRM webhooks (Salesforce, HubSpot). An int range, not
    # Literal[1, 2, 3]: an environment variable arrives as the string "3", which a Literal of
    # ints refuses.
    api_default_phase: int = Field(3, ge=1, le=3)
    api_outbound_dedupe_size: int = 10_000  # remembered Outbound Message notification ids
    salesforce_callout_tolerance_s: int = 300  # max age of a signed Flow callout

    # --- Worker (workers/) ---
    # Slots for remote activities, and as many again for local ones (the steps after the
    # signature); the thread pool of the blocking vendor SDKs has one thread per slot of either.
    worker_activity_threads: int = Field(32, ge=1)
    # Each cached deal costs about 370 KB of worker memory (bench/RESULTS.md): 500 keeps a worker
    # near 360 MB however many deals wait for signatures. Deals beyond the cache replay their
    # history on their next step, so raise it where many deals are in flight at once.
    worker_max_cached_workflows: int = Field(500, ge=0)
    # Workflow tasks one worker works on at once. Python runs them on one GIL: with many more
    # in progress than it can finish in the 10 s workflow-task timeout (a burst of deals beyond the
    # cache replays every history), they time out and start over. Fewer at once drain faster.
    worker_max_concurrent_workflow_tasks: int = Field(20, ge=2)
    worker_graceful_shutdown_s: float = Field(30.0, ge=0)  # in-flight activities may finish
    worker_register_search_attributes: bool = True  # add missing Qtc* attributes at start-up
    # Prometheus /metrics of the worker (the SDK's metrics and the deal's own); None: off.
    worker_metrics_port: int | None = Field(None, ge=1, le=65535)
    worker_metrics_host: str = "0.0.0.0"
    # How the steps after the signature run: ``local_first`` (two quick local attempts inside the
    # workflow task, then regular activities if the failure may pass) or ``remote`` (always
    # regular activities: every attempt visible in the Web UI, more server work per deal).
    deal_steps: Literal["local_first", "remote"] = "local_first"

    # Stripe
    stripe_api_key: SecretStr = SecretStr(SANDBOX_SECRETS["stripe_api_key"])
    stripe_api_base: str | None = "http://127.0.0.1:12111"
    # Per request, below the activities' 30 s start-to-close so a hung call fails the attempt
    # with a classified error instead of a bare timeout; Temporal retries, the SDK does not.
    stripe_timeout_seconds: float = 20.0

    # Chargebee (QTC_BILLING=chargebee): a site's name and a full-access API key. The API base
    # replaces https://{site}.chargebee.com (the sandbox's emulator); empty for a real site.
    chargebee_site: str = "sandbox"
    chargebee_api_key: SecretStr = SecretStr(SANDBOX_SECRETS["chargebee_api_key"])
    chargebee_api_base: str | None = "http://127.0.0.1:12117"
    chargebee_timeout_seconds: float = 20.0

    # Salesforce
    salesforce_instance_url: str = "https://127.0.0.1:12112"
    salesforce_username: str | None = None
    salesforce_password: SecretStr | None = None
    salesforce_security_token: SecretStr | None = None
    salesforce_session_id: SecretStr | None = SecretStr("sandbox-session")
    salesforce_api_version: str = "59.0"
    salesforce_callout_secret: SecretStr = SecretStr(SANDBOX_SECRETS["salesforce_callout_secret"])
    # 15 characters as Setup shows them or 18 as messages carry them; either matches the other.
    salesforce_org_ids: list[
        Annotated[str, StringConstraints(strip_whitespace=True, pattern=SALESFORCE_ID_PATTERN)]
    ] = Field(default_factory=lambda: ["00D000000000001AAA"])
    salesforce_field_map: dict[str, str] = Field(default_factory=dict)
    salesforce_ca_file: Path | None = None  # CA bundle to trust (the sandbox's self-signed CA)
    salesforce_domain: str = "login"  # username/password login: "login", "test" or a My Domain
    salesforce_timeout_s: float = 30.0

    # --- HubSpot (integrations/hubspot) ---
    hubspot_api_base: str = "http://127.0.0.1:12115"
    hubspot_access_token: SecretStr = SecretStr(SANDBOX_SECRETS["hubspot_access_token"])
    # The app's client secret: the key of the webhooks' X-HubSpot-Signature-v3.
    hubspot_client_secret: SecretStr = SecretStr(SANDBOX_SECRETS["hubspot_client_secret"])
    hubspot_webhook_tolerance_s: int = 300  # HubSpot's own limit for a signed request's age
    hubspot_start_stages: list[str] = Field(default_factory=lambda: ["contractsent"])
    hubspot_closed_won_stage: str = "closedwon"
    hubspot_property_map: dict[str, str] = Field(default_factory=dict)
    # Create the qtc property group, properties and the Signer label when missing. None: in the
    # sandbox yes; elsewhere only report what is missing (the private app then needs no
    # crm.schemas.*.write scope).
    hubspot_create_properties: bool | None = None
    hubspot_timeout_s: float = 20.0
    hubspot_webhook_dedupe_size: int = 10_000  # remembered webhook event ids
    # Where deals started by the HubSpot webhook run when HubSpot is not QTC_CRM: a worker with
    # QTC_CRM=hubspot polls this queue (the demo runs a HubSpot deal beside Salesforce ones).
    # None: HubSpot webhooks are served only when QTC_CRM=hubspot, on the task queue.
    hubspot_task_queue: str | None = None

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

    # NetSuite (QTC_ERP=netsuite): token-based authentication with an integration record's
    # consumer key / secret and an access token. Unset, they are the emulator's in the sandbox
    # (SANDBOX_NETSUITE, SANDBOX_SECRETS) and required elsewhere, so production without NetSuite
    # needs no NetSuite setting. The base URL: unset, the sandbox emulator in the sandbox, else
    # the account's own REST address.
    netsuite_account: str | None = None  # the account id, e.g. 1234567 or 1234567_SB1
    netsuite_base_url: str | None = None
    netsuite_consumer_key: str | None = None
    netsuite_consumer_secret: SecretStr | None = None
    netsuite_token_id: str | None = None
    netsuite_token_secret: SecretStr | None = None
    netsuite_subsidiary_id: str = "1"  # the subsidiary new customers belong to
    # Per request, well below the step's 90 s start-to-close: a hung request fails the attempt
    # with a classified error and Temporal retries.
    netsuite_timeout_s: float = 20.0
    # Ironclad (QTC_ESIGN=ironclad): a bearer API key, or an OAuth client-credentials app (set
    # the client id and secret and leave the API key unset). The user launches the workflows: the
    # creator with an API key, the x-as-user-email with OAuth.
    ironclad_base_url: str = "http://127.0.0.1:12120"
    ironclad_api_key: SecretStr | None = None  # the sandbox's own key in the sandbox
    ironclad_client_id: str | None = None
    ironclad_client_secret: SecretStr | None = None
    ironclad_user_email: str = "qtc-bot@sandbox.example"
    ironclad_template_id: str = "sandbox-order-form"
    ironclad_signer_role: str = "Counterparty Signer"
    ironclad_timeout_s: float = 20.0  # per request; two fit in the activity's 60 s
    # The least time between two fetches of the webhook key caused by failed checks.
    ironclad_key_refetch_s: float = Field(30.0, ge=0)

    # Product backend
    provisioning_url: str = "http://127.0.0.1:12114/v1/provision"
    provisioning_secret: SecretStr = SecretStr(SANDBOX_SECRETS["provisioning_secret"])
    provisioning_timeout_s: float = 15.0

    # --- The deal ledger (runtime/ledger.py) ---
    # SQLAlchemy URL; None: SQLite in the state directory. PostgreSQL in production, e.g.
    # postgresql+psycopg://qtc@db.internal/qtc.
    ledger_url: str | None = None

    # --- Notifications (integrations/slack, integrations/email) ---
    # Channels a waiting deal is announced on: "slack,email" or a JSON list. None: both in the
    # sandbox (its emulators receive them), none elsewhere.
    notify: Annotated[list[NotifyChannel] | None, NoDecode] = None
    notify_remind_hours: float | None = Field(24.0, gt=0)  # None: no reminders
    notify_escalate_hours: float | None = Field(48.0, gt=0)  # None: never escalate
    # Where a message's "open in the Temporal Web UI" link points.
    notify_web_ui_url: str = "http://127.0.0.1:8233"
    slack_bot_token: SecretStr | None = None  # the sandbox's when unset in the sandbox
    slack_api_url: str | None = "http://127.0.0.1:12118/api/"  # None: Slack's own
    slack_channel: str = "#qtc-reviews"
    slack_escalation_channel: str = "#qtc-escalations"
    slack_timeout_s: float = 15.0
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 12119
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_s: float = 15.0
    email_from: str = "qtc@sandbox.example"
    email_to: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["reviewers@sandbox.example"]
    )
    email_escalation_to: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["revops-leads@sandbox.example"]
    )

    @field_validator("notify", "email_to", "email_escalation_to", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    @property
    def slack_token(self) -> str:
        """The bot token Slack is called with (the emulator's in the sandbox when unset)."""
        if self.slack_bot_token is not None:
            return self.slack_bot_token.get_secret_value()
        return SANDBOX_SLACK_BOT_TOKEN

    @property
    def notify_channels(self) -> list[NotifyChannel]:
        if self.notify is not None:
            return list(dict.fromkeys(self.notify))
        return ["slack", "email"] if self.sandbox else []

    @property
    def ledger_database_url(self) -> str:
        return self.ledger_url or f"sqlite:///{(self.state_dir / 'ledger.sqlite').resolve()}"

    # Sandbox emulators (0: a free port the operating system picks, as the tests do)
    sandbox_host: str = "127.0.0.1"
    sandbox_stripe_port: int = Field(12111, ge=0, le=65535)
    sandbox_salesforce_port: int = Field(12112, ge=0, le=65535)
    sandbox_docusign_port: int = Field(12113, ge=0, le=65535)
    sandbox_provisioning_port: int = Field(12114, ge=0, le=65535)
    sandbox_hubspot_port: int = Field(12115, ge=0, le=65535)
    sandbox_netsuite_port: int = Field(12116, ge=0, le=65535)
    sandbox_chargebee_port: int = Field(12117, ge=0, le=65535)
    sandbox_slack_port: int = Field(12118, ge=0, le=65535)
    sandbox_smtp_port: int = Field(12119, ge=0, le=65535)
    sandbox_ironclad_port: int = Field(12120, ge=0, le=65535)
    # Moves the whole local stack at once (see PORT_OFFSETS); None: the default ports.
    port_base: int | None = Field(None, ge=1024, le=65535 - PORT_SPAN)

    # --- Payload encryption (runtime/codec.py, starters/codec_api.py) ---
    codec_enabled: bool | None = None  # None: on outside the sandbox, off in the sandbox
    codec_keys: SecretStr | None = None  # JSON {"key-id": "<base64 32 bytes>"}; sandbox: its key
    codec_active_key_id: str | None = None  # encrypts new payloads; optional with a single key
    codec_require_auth: bool | None = None  # codec endpoint; None: bearer token outside sandbox
    codec_cors_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8233", "http://localhost:8233"]
    )

    # Phase 2: remind (log + a note on the deal) every this many hours while an invoice waits for
    # its reviewer; None: no reminder.
    review_reminder_hours: int | None = Field(None, ge=1)

    # Whether the QtcCustomer search attribute holds the legal name (searchable in the Web UI).
    # Search attributes are never encrypted: None means yes unless payload encryption is on.
    searchable_customer_names: bool | None = None

    def customer_search_label(self, opportunity_id: str) -> str | None:
        """The QtcCustomer value to use instead of the legal name, or None for the legal name."""
        searchable = self.searchable_customer_names
        if searchable is None:
            searchable = not self.codec_on
        return None if searchable else f"opportunity {opportunity_id}"

    @model_validator(mode="after")
    def _place_ports(self) -> Settings:
        # Runs first among the after-validators (declared first): the others see final addresses.
        given = self.model_fields_set
        fields = type(self).model_fields
        if self.port_base is not None:
            for name, offset in PORT_OFFSETS.items():
                if name == "temporal_port":
                    if "temporal_address" not in given:
                        self.temporal_address = f"127.0.0.1:{self.port_base + offset}"
                elif name in fields and name not in given:
                    setattr(self, name, self.port_base + offset)
        host = dial_host(self.sandbox_host)
        for url_name, (port_name, template) in SANDBOX_URLS.items():
            if url_name in fields and port_name in fields and url_name not in given:
                setattr(self, url_name, template.format(host=host, port=getattr(self, port_name)))
        if "api_public_url" not in given:
            self.api_public_url = f"http://{dial_host(self.api_host)}:{self.api_port}"
        if "codec_cors_origins" not in given:
            ui = self.temporal_ui_port
            self.codec_cors_origins = [f"http://127.0.0.1:{ui}", f"http://localhost:{ui}"]
        return self

    @property
    def sandbox(self) -> bool:
        return self.env == "sandbox"

    @property
    def uses_hubspot(self) -> bool:
        """HubSpot is the CRM, or served beside another one (``QTC_HUBSPOT_TASK_QUEUE``)."""
        return self.crm == "hubspot" or bool(self.hubspot_task_queue)

    @property
    def hubspot_creates_properties(self) -> bool:
        """Whether missing HubSpot properties are created, or only reported (see the setting)."""
        if self.hubspot_create_properties is not None:
            return self.hubspot_create_properties
        return self.sandbox

    @property
    def docusign_connect_secrets(self) -> list[SecretStr]:
        return [self.docusign_connect_secret, *self.docusign_connect_secrets_extra]

    def _uses_secret(self, name: str) -> bool:
        """Whether the chosen vendors need this secret: a vendor not chosen needs no real one."""
        port, vendor = _VENDOR_SECRETS.get(name, (None, None))
        return port is None or getattr(self, port) == vendor

    @model_validator(mode="after")
    def _sandbox_ironclad_key(self) -> Settings:
        # The sandbox's published key only in the sandbox: a production deployment that does not
        # use Ironclad needs no Ironclad setting at all.
        if self.sandbox and self.ironclad_api_key is None and self.ironclad_client_id is None:
            self.ironclad_api_key = SecretStr(SANDBOX_SECRETS["ironclad_api_key"])
        return self

    @model_validator(mode="after")
    def _refuse_sandbox_secrets_outside_sandbox(self) -> Settings:
        if self.sandbox:
            return self
        offending = [
            f"QTC_{name.upper()}"
            for name, value in SANDBOX_SECRETS.items()
            if getattr(self, name) is not None
            and getattr(self, name).get_secret_value() == value
            # A vendor this deployment does not use needs no credentials of its own.
            and (self.uses_hubspot or not name.startswith("hubspot_"))
            and self._uses_secret(name)
        ]
        if any(token in SANDBOX_TOKENS for token in self.api_tokens):
            offending.append("QTC_API_TOKENS")
        if self.slack_bot_token is not None and (
            self.slack_bot_token.get_secret_value() == SANDBOX_SLACK_BOT_TOKEN
        ):
            offending.append("QTC_SLACK_BOT_TOKEN")
        if "slack" in self.notify_channels and self.slack_bot_token is None:
            raise ValueError("QTC_NOTIFY includes slack but QTC_SLACK_BOT_TOKEN is not set")
        if offending:
            raise ValueError(
                "sandbox credentials are refused outside the sandbox; set real values for: "
                + ", ".join(offending)
            )
        return self

    # --- Payload encryption (runtime/codec.py) ---

    @property
    def codec_on(self) -> bool:
        """Whether payloads are encrypted: explicitly set, else on everywhere but the sandbox."""
        return self.codec_enabled if self.codec_enabled is not None else not self.sandbox

    @property
    def codec_auth_required(self) -> bool:
        """Whether the codec endpoint needs a bearer token (see starters/codec_api.py)."""
        if self.codec_require_auth is not None:
            return self.codec_require_auth
        return not self.sandbox

    def codec_key_set(self) -> tuple[dict[str, bytes], str]:
        """The codec's keys by id and the id of the key that encrypts new payloads.

        The sandbox without ``QTC_CODEC_KEYS`` gets the published sandbox key.

        Raises:
            ValueError: No keys outside the sandbox, malformed keys, or no usable active key id.
        """
        if self.codec_keys is not None:
            keys = parse_codec_keys(self.codec_keys.get_secret_value())
        elif self.sandbox:
            keys = {SANDBOX_CODEC_KEY_ID: base64.b64decode(SANDBOX_CODEC_KEY_B64)}
        else:
            raise ValueError(
                "payload encryption is on but QTC_CODEC_KEYS is not set; set QTC_CODEC_KEYS="
                '\'{"key-1": "<base64 of 32 random bytes>"}\' or QTC_CODEC_ENABLED=false'
            )
        active = self.codec_active_key_id or (next(iter(keys)) if len(keys) == 1 else None)
        if active is None:
            raise ValueError(
                "QTC_CODEC_KEYS holds several keys; name one in QTC_CODEC_ACTIVE_KEY_ID"
            )
        if active not in keys:
            raise ValueError(
                f"QTC_CODEC_ACTIVE_KEY_ID {active!r} is not a key id of QTC_CODEC_KEYS"
            )
        return keys, active

    @model_validator(mode="after")
    def _check_payload_encryption(self) -> Settings:
        # Checked at start-up, so a worker never runs with keys it cannot use.
        if self.codec_on or self.codec_keys is not None:
            keys, _ = self.codec_key_set()
            sandbox_key = base64.b64decode(SANDBOX_CODEC_KEY_B64)
            if not self.sandbox and sandbox_key in keys.values():
                raise ValueError(
                    "the published sandbox codec key is refused outside the sandbox; "
                    "set real keys in QTC_CODEC_KEYS"
                )
        return self

    def secret_values(self) -> list[str]:
        """Every secret this process holds, as text: what the logs must never contain.

        Walks the fields, so a ``SecretStr`` field added later is covered without a change here.
        """
        found: list[str] = list(self.api_tokens)
        for name in type(self).model_fields:
            value = getattr(self, name)
            members = value if isinstance(value, list | tuple) else [value]
            found.extend(m.get_secret_value() for m in members if isinstance(m, SecretStr))
        if self.sandbox:
            # An unset vendor secret is the sandbox's published one there (the client factories
            # fall back to it), so those are held too.
            found.extend(SANDBOX_SECRETS.values())
        if self.codec_on or self.codec_keys is not None:
            keys, _ = self.codec_key_set()
            found.extend(base64.b64encode(k).decode() for k in keys.values())
        return [value for value in found if value]

    @model_validator(mode="after")
    def _register_secrets_for_log_redaction(self) -> Settings:
        # Every process builds its settings before it does any work, so registering here covers
        # the worker, the API, the CLI and the sandbox without each remembering to do it.
        register_secrets(self.secret_values())
        return self


def describe_settings_error(err: ValidationError) -> str:
    """One line per problem, each naming the setting (``QTC_API_PORT: ...``), never its value."""
    lines = []
    for problem in err.errors(include_input=False, include_url=False):
        name = "_".join(str(part) for part in problem["loc"][:1]).upper()
        message = str(problem["msg"]).removeprefix("Value error, ")
        lines.append(f"QTC_{name}: {message}" if name else message)
    return "; ".join(lines) or str(err)


def load_settings(**overrides: object) -> Settings:
    """Read the settings (``overrides`` win over the environment).

    Raises:
        SettingsError: A setting is invalid; the message names each one.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        raise SettingsError(describe_settings_error(err)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once.

    Raises:
        SettingsError: A setting is invalid; the message names each one.
    """
    return load_settings()
