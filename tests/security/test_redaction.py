"""No configured secret reaches a log line: the redaction processor, and a whole deal's logs."""

from __future__ import annotations

import io
import json
import os
import uuid
from typing import Any

import pytest
import structlog
from pydantic import SecretStr, ValidationError
from temporalio.testing import WorkflowEnvironment

from runtime.codec import build_data_converter
from runtime.logging import REDACTED, redact_secrets, register_secrets
from runtime.settings import SANDBOX_SECRETS, SANDBOX_TOKENS, Settings
from tests.security.conftest import client_with
from tests.security.deals import (
    LoggingVendors,
    a_fresh_quote,
    deal_worker,
    sign_and_finish,
    start_until_signature,
)


def redact(**event: Any) -> dict[str, Any]:
    return dict(redact_secrets(None, "info", dict(event)))


# --- the processor ------------------------------------------------------------------------------


def test_signature_headers_and_tokens_are_redacted_by_name_at_any_depth() -> None:
    event = redact(
        event="docusign connect received",
        headers={
            "X-DocuSign-Signature-1": "c2lnbmF0dXJlLTE=",
            "X-DocuSign-Signature-7": "c2lnbmF0dXJlLTc=",
            "X-Qtc-Signature": "t=1,v1=abcdef",
            "Content-Type": "application/json",
        },
        asgi_headers=[(b"authorization", b"Bearer abc"), (b"host", b"api.example")],
        provisioning_secret="whatever",
    )

    assert event["headers"] == {
        "X-DocuSign-Signature-1": REDACTED,
        "X-DocuSign-Signature-7": REDACTED,
        "X-Qtc-Signature": REDACTED,
        "Content-Type": "application/json",
    }
    assert event["asgi_headers"] == [(b"authorization", REDACTED), (b"host", b"api.example")]
    assert event["provisioning_secret"] == REDACTED
    assert event["event"] == "docusign connect received"


def test_a_registered_secret_value_is_cut_out_of_any_string_however_nested() -> None:
    secret = "hunter2-" + uuid.uuid4().hex
    register_secrets([secret])

    event = redact(
        event=f"login failed for key {secret}!",
        details={"vendor": {"message": f"bad credential '{secret}'", "codes": [f"x{secret}y"]}},
        raw=f"sid={secret}".encode(),
        count=3,
    )

    assert event["event"] == f"login failed for key {REDACTED}!"
    assert event["details"]["vendor"]["message"] == f"bad credential '{REDACTED}'"
    assert event["details"]["vendor"]["codes"] == [f"x{REDACTED}y"]
    assert event["raw"] == f"sid={REDACTED}"
    assert event["count"] == 3


def test_a_secret_containing_another_is_redacted_whole() -> None:
    inner = "inner-" + uuid.uuid4().hex
    outer = f"outer-{inner}-tail"
    register_secrets([inner, outer])

    assert redact(event=f"<{outer}>")["event"] == f"<{REDACTED}>"


def test_bearer_tokens_and_stripe_keys_are_redacted_even_when_not_configured() -> None:
    event = redact(
        event=(
            "vendor said: Authorization: Bearer eyJhbGciOi.J9.x "
            "and key sk_live_4eC39HqLyjWDarjtT1zdp7dc"
        ),
        note="webhook secret whsec_abcdef123456",
    )

    assert "eyJhbGciOi" not in event["event"]
    assert "Bearer " + REDACTED in event["event"]
    assert "sk_live_4eC39" not in event["event"]
    assert "whsec_abcdef" not in event["note"]


def test_short_values_are_not_treated_as_secrets_so_logs_stay_readable() -> None:
    register_secrets(["usd", "1234"])

    assert redact(event="invoice 1234 in usd")["event"] == "invoice 1234 in usd"


def test_settings_register_their_secrets_when_they_are_built() -> None:
    token = "tok-" + uuid.uuid4().hex
    stripe_key = "sk_live_" + uuid.uuid4().hex
    connect = "connect-" + uuid.uuid4().hex
    Settings(
        _env_file=None,
        env="production",
        stripe_api_key=SecretStr(stripe_key),
        docusign_connect_secret=SecretStr(connect),
        salesforce_callout_secret=SecretStr("flow-" + uuid.uuid4().hex),
        provisioning_secret=SecretStr("prov-" + uuid.uuid4().hex),
        api_tokens={token: {"person": "ops@corp.example", "role": "operator"}},
        codec_enabled=False,
    )

    event = redact(event=f"{token} {connect} {stripe_key}")["event"]

    assert event == f"{REDACTED} {REDACTED} {REDACTED}"


def test_a_secret_in_an_exception_message_is_redacted_from_the_rendered_traceback(
    captured_logs: io.StringIO,
) -> None:
    secret = "boom-" + uuid.uuid4().hex
    register_secrets([secret])
    log = structlog.get_logger("tests.security")

    try:
        raise RuntimeError(f"vendor rejected {secret}")
    except RuntimeError:
        log.exception("vendor call failed")

    output = captured_logs.getvalue()
    assert "vendor call failed" in output
    assert "RuntimeError: vendor rejected " + REDACTED in output
    assert secret not in output


# --- a whole deal ---------------------------------------------------------------------------------


def sandbox_with_encryption() -> Settings:
    return Settings(_env_file=None, env="sandbox", codec_enabled=True)


def production_with_fresh_secrets() -> Settings:
    return Settings(
        _env_file=None,
        env="production",
        stripe_api_key=SecretStr("sk_live_" + os.urandom(12).hex()),
        salesforce_session_id=SecretStr("00D!" + os.urandom(16).hex()),
        docusign_connect_secret=SecretStr(os.urandom(16).hex()),
        docusign_connect_secrets_extra=[SecretStr(os.urandom(16).hex())],
        salesforce_callout_secret=SecretStr(os.urandom(16).hex()),
        provisioning_secret=SecretStr(os.urandom(16).hex()),
        api_tokens={
            os.urandom(16).hex(): {"person": "fin@corp.example", "role": "finance"},
            os.urandom(16).hex(): {"person": "ops@corp.example", "role": "operator"},
        },
        codec_keys=SecretStr(json.dumps({"prod-1": base64_key()})),
    )


def base64_key() -> str:
    import base64

    return base64.b64encode(os.urandom(32)).decode()


@pytest.mark.parametrize(
    "make_settings",
    [sandbox_with_encryption, production_with_fresh_secrets],
    ids=["sandbox", "production"],
)
async def test_a_full_phase_3_deal_logs_its_work_but_never_a_configured_secret(
    env: WorkflowEnvironment, captured_logs: io.StringIO, make_settings: Any
) -> None:
    settings: Settings = make_settings()
    secrets = settings.secret_values()
    if settings.sandbox:
        # What the brief names explicitly: the sandbox tokens and the HMAC secrets.
        assert set(SANDBOX_TOKENS) | set(SANDBOX_SECRETS.values()) <= set(secrets)
    client = client_with(env, build_data_converter(settings))
    vendors = LoggingVendors(settings)
    task_queue = f"security-{uuid.uuid4()}"
    priced = await a_fresh_quote(env)

    async with deal_worker(client, task_queue, vendors.activities()):
        handle = await start_until_signature(client, task_queue, priced)
        status = await sign_and_finish(env, handle)

    assert status.stage == "completed"
    output = captured_logs.getvalue()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    events = " ".join(str(line.get("event")) for line in lines)
    # The deal's own lines are there: the capture sees the activities and the SDK loggers.
    for expected in (
        "sent envelope",
        "marked Closed Won",
        "stripe customer created",
        "Request to Stripe api",
        "stripe call failed once",
        "stripe invoice sent",
        "HTTP Request: POST",
        "provisioned tenant",
    ):
        assert expected in events, f"no {expected!r} line was captured"
    assert priced.opportunity_id in output
    # Every secret was written by some line above, and every one of them was redacted.
    assert output.count(REDACTED) >= 9
    leaked = [secret for secret in secrets if secret in output]
    assert leaked == []


def test_a_settings_error_at_start_up_never_quotes_a_secret() -> None:
    stripe_key = "sk_live_" + uuid.uuid4().hex
    token = "tok-" + uuid.uuid4().hex
    with pytest.raises(ValidationError) as refused:
        Settings(
            _env_file=None,
            env="production",
            stripe_api_key=SecretStr(stripe_key),
            api_tokens={token: {"person": "ops@corp.example", "role": "operator"}},
        )  # sandbox HMAC secrets and no codec keys: refused

    message = str(refused.value)
    assert "QTC_CODEC_KEYS is not set" in message or "sandbox credentials" in message
    assert stripe_key not in message
    assert token not in message
    assert "sandbox-connect-secret" not in message
