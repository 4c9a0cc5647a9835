"""The DocuSign emulator, driven through the real docusign-esign SDK, httpx and the ``qtc`` CLI.

Each test starts its own emulator (and, where Connect is involved, a small listener) with uvicorn
on an ephemeral loopback port in a background thread, and stops it at the end.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from defusedxml import ElementTree
from docusign_esign import (
    ApiClient,
    Checkbox,
    ConnectEventData,
    CustomFields,
    Envelope,
    EnvelopeDefinition,
    EnvelopesApi,
    EventNotification,
    Number,
    Tabs,
    TemplateRole,
    Text,
    TextCustomField,
)
from docusign_esign.client.api_exception import ApiException
from docusign_esign.client.api_response import RESTClientObject
from docusign_esign.client.configuration import Configuration
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from runtime.settings import get_settings
from sandbox.docusign import create_app
from sandbox.tls import ensure_certificates
from starters.cli import app as qtc_cli

ACCOUNT = "sandbox-account"
SECRET = "sandbox-connect-secret"
TEMPLATE = "sandbox-msa-template"
SANDBOX_TOKEN = "sandbox-docusign-token"


# --- servers ---------------------------------------------------------------------------------


class Served:
    """An ASGI app served by uvicorn on 127.0.0.1:<ephemeral> in a daemon thread."""

    def __init__(self, app: Any, *, tls_dir: Path | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        options: dict[str, Any] = {}
        scheme = "http"
        if tls_dir is not None:
            files = ensure_certificates(tls_dir)
            options = {"ssl_certfile": str(files.cert_file), "ssl_keyfile": str(files.key_file)}
            self.ca_file = files.ca_file
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2, **options
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive(), "server thread died during start-up"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
        assert not self.thread.is_alive(), "server did not stop"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


@dataclass
class Listener:
    """A Connect listener that records every POST and answers with scripted status codes."""

    answers: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.received.append(
                Received(dict(request.headers), await request.body(), time.monotonic())
            )
            status = self.answers.pop(0) if self.answers else 200
            return JSONResponse({"ok": status < 300}, status_code=status)

        return Starlette(routes=[Route("/webhooks/docusign", hook, methods=["POST"])])

    def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"only {len(self.received)} of {count} received"
            time.sleep(0.02)
        return self.received


@pytest.fixture
def listener() -> Iterator[tuple[Listener, str]]:
    hooks = Listener()
    with Served(hooks.app()) as served:
        yield hooks, f"{served.url}/webhooks/docusign"


@pytest.fixture
def emulator() -> Iterator[Served]:
    with Served(create_app()) as served:
        yield served


def envelopes_api(base_url: str, token: str = SANDBOX_TOKEN) -> EnvelopesApi:
    client = ApiClient(host=f"{base_url}/restapi")
    client.set_default_header("Authorization", f"Bearer {token}")
    return EnvelopesApi(client)


def send_contract(
    api: EnvelopesApi,
    opportunity_id: str = "006000000000001AAA",
    *,
    status: str = "sent",
    event_notification: EventNotification | None = None,
    template_id: str = TEMPLATE,
) -> str:
    definition = EnvelopeDefinition(
        template_id=template_id,
        status=status,
        template_roles=[
            TemplateRole(
                role_name="Signer",
                name="Jane Doe",
                email="jane@acme.example",
                tabs=Tabs(
                    text_tabs=[Text(tab_label="customer_legal_name", value="Acme Robotics, Inc.")],
                    number_tabs=[Number(tab_label="platform_pro_seats", value="50")],
                    checkbox_tabs=[Checkbox(tab_label="auto_renew", selected="true")],
                ),
            )
        ],
        custom_fields=CustomFields(
            text_custom_fields=[
                TextCustomField(name="opportunity_id", value=opportunity_id, show="false"),
                TextCustomField(name="deal_id", value=f"deal-{opportunity_id}", show="false"),
            ]
        ),
        event_notification=event_notification,
    )
    summary = api.create_envelope(ACCOUNT, envelope_definition=definition)
    envelope_id: str = summary.envelope_id
    return envelope_id


def error_of(exc: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.value.body)
    return body


def expected_signature(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


# --- REST API through the SDK ---------------------------------------------------------------


def test_contract_from_template_keeps_tabs_and_opportunity_custom_field(emulator: Served) -> None:
    api = envelopes_api(emulator.url)
    envelope_id = send_contract(api, "006000000000042AAA")

    envelope = api.get_envelope(ACCOUNT, envelope_id)
    assert envelope.status == "sent"
    assert envelope.envelope_id == envelope_id
    assert envelope.sent_date_time.endswith("Z")

    fields = api.list_custom_fields(ACCOUNT, envelope_id)
    assert {(f.name, f.value) for f in fields.text_custom_fields} == {
        ("opportunity_id", "006000000000042AAA"),
        ("deal_id", "deal-006000000000042AAA"),
    }

    recipients = api.list_recipients(ACCOUNT, envelope_id, include_tabs="true")
    (signer,) = recipients.signers
    assert (signer.role_name, signer.name, signer.email) == (
        "Signer",
        "Jane Doe",
        "jane@acme.example",
    )
    assert signer.status == "sent"
    assert [(t.tab_label, t.value) for t in signer.tabs.text_tabs] == [
        ("customer_legal_name", "Acme Robotics, Inc.")
    ]
    assert [(t.tab_label, t.value) for t in signer.tabs.number_tabs] == [
        ("platform_pro_seats", "50")
    ]
    assert [(t.tab_label, t.selected) for t in signer.tabs.checkbox_tabs] == [
        ("auto_renew", "true")
    ]

    without_tabs = api.list_recipients(ACCOUNT, envelope_id)
    assert without_tabs.signers[0].tabs is None


def test_unknown_template_is_refused_with_template_id_invalid(emulator: Served) -> None:
    api = envelopes_api(emulator.url)
    with pytest.raises(ApiException) as exc:
        send_contract(api, template_id="no-such-template")
    assert exc.value.status == 400
    assert error_of(exc)["errorCode"] == "TEMPLATE_ID_INVALID"


def test_a_call_without_a_valid_bearer_token_is_refused_with_401(emulator: Served) -> None:
    with pytest.raises(ApiException) as exc:
        send_contract(envelopes_api(emulator.url, token="made-up"))
    assert exc.value.status == 401
    assert error_of(exc)["errorCode"] == "AUTHORIZATION_INVALID_TOKEN"

    anonymous = httpx.get(f"{emulator.url}/restapi/v2.1/accounts/{ACCOUNT}/envelopes/x")
    assert anonymous.status_code == 401
    assert anonymous.json()["errorCode"] == "USER_AUTHENTICATION_FAILED"


def test_unknown_envelope_and_foreign_account_are_docusign_errors(emulator: Served) -> None:
    api = envelopes_api(emulator.url)
    with pytest.raises(ApiException) as missing:
        api.get_envelope(ACCOUNT, "00000000-0000-0000-0000-000000000000")
    # DocuSign's specification gives envelope routes 200 and 400 only: a missing one is a 400.
    assert missing.value.status == 400
    assert error_of(missing)["errorCode"] == "ENVELOPE_DOES_NOT_EXIST"
    with pytest.raises(ApiException) as malformed:
        api.get_envelope(ACCOUNT, "not-a-guid")
    assert malformed.value.status == 400
    assert error_of(malformed)["errorCode"] == "INVALID_REQUEST_PARAMETER"

    with pytest.raises(ApiException) as foreign:
        api.get_envelope("someone-elses-account", "00000000-0000-0000-0000-000000000000")
    assert error_of(foreign)["errorCode"] == "USER_DOES_NOT_BELONG_TO_SPECIFIED_ACCOUNT"


def test_status_changes_can_be_searched_by_opportunity_custom_field(emulator: Served) -> None:
    api = envelopes_api(emulator.url)
    first = send_contract(api, "006000000000001AAA")
    send_contract(api, "006000000000002AAA")
    draft = send_contract(api, "006000000000001AAA", status="created")

    found = api.list_status_changes(
        ACCOUNT, from_date="2020-01-01", custom_field="opportunity_id=006000000000001AAA"
    )
    assert {e.envelope_id for e in found.envelopes} == {first, draft}
    assert found.total_set_size == "2"

    sent_only = api.list_status_changes(
        ACCOUNT,
        from_date="2020-01-01T00:00:00Z",
        status="sent",
        custom_field="opportunity_id=006000000000001AAA",
    )
    assert [e.envelope_id for e in sent_only.envelopes] == [first]

    nothing = api.list_status_changes(
        ACCOUNT, from_date="2020-01-01", custom_field="opportunity_id=006999999999999AAA"
    )
    assert nothing.result_set_size == "0"
    assert nothing.envelopes is None  # like DocuSign: no "envelopes" key when nothing matches

    with pytest.raises(ApiException) as exc:
        api.list_status_changes(ACCOUNT, status="sent")
    assert error_of(exc)["errorCode"] == "INVALID_REQUEST_PARAMETER"


def test_a_sent_envelope_can_be_voided_but_a_completed_one_cannot(emulator: Served) -> None:
    api = envelopes_api(emulator.url)
    to_void = send_contract(api)
    api.update(ACCOUNT, to_void, envelope=Envelope(status="voided", voided_reason="quote expired"))
    voided = api.get_envelope(ACCOUNT, to_void)
    assert (voided.status, voided.voided_reason) == ("voided", "quote expired")
    assert voided.voided_date_time is not None

    with pytest.raises(ApiException) as twice:
        api.update(ACCOUNT, to_void, envelope=Envelope(status="voided", voided_reason="again"))
    assert error_of(twice)["errorCode"] == "ENVELOPE_CANNOT_VOID_INVALID_STATE"

    signed = send_contract(api)
    assert httpx.post(f"{emulator.url}/_sandbox/envelopes/{signed}/sign").status_code == 200
    with pytest.raises(ApiException) as completed:
        api.update(ACCOUNT, signed, envelope=Envelope(status="voided", voided_reason="too late"))
    assert completed.value.status == 400
    assert error_of(completed)["errorCode"] == "ENVELOPE_CANNOT_VOID_INVALID_STATE"

    without_reason = send_contract(api)
    with pytest.raises(ApiException) as reasonless:
        api.update(ACCOUNT, without_reason, envelope=Envelope(status="voided"))
    assert error_of(reasonless)["errorCode"] == "INVALID_REQUEST_PARAMETER"


def test_injected_server_faults_reach_the_sdk_as_docusign_5xx(emulator: Served) -> None:
    api = envelopes_api(emulator.url)
    envelope_id = send_contract(api)
    switched = httpx.post(
        f"{emulator.url}/_sandbox/faults", json={"rules": [{"path": "/envelopes", "rate_500": 1}]}
    )
    assert switched.status_code == 200
    with pytest.raises(ApiException) as exc:
        api.get_envelope(ACCOUNT, envelope_id)
    assert exc.value.status == 500
    assert error_of(exc)["errorCode"] == "UNSPECIFIED_ERROR"

    httpx.post(f"{emulator.url}/_sandbox/faults", json={})
    assert api.get_envelope(ACCOUNT, envelope_id).status == "sent"
    assert httpx.get(f"{emulator.url}/_sandbox/stats").json()["faults_injected"]["500"] == 1


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b'{"templateRoles": "Signer"}', b""],
    ids=["malformed", "array", "wrong-type", "empty"],
)
def test_a_bad_envelope_body_is_a_docusign_400_not_a_500(emulator: Served, body: bytes) -> None:
    response = httpx.post(
        f"{emulator.url}/restapi/v2.1/accounts/{ACCOUNT}/envelopes",
        content=body,
        headers={
            "Authorization": f"Bearer {SANDBOX_TOKEN}",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 400
    assert response.json()["errorCode"] == "INVALID_REQUEST_BODY"


def test_an_oversized_body_is_refused_with_413() -> None:
    with Served(create_app(max_body_bytes=1_000)) as served:
        response = httpx.post(
            f"{served.url}/restapi/v2.1/accounts/{ACCOUNT}/envelopes",
            content=b"{" + b" " * 5_000 + b"}",
            headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"},
        )
    assert response.status_code == 413
    assert response.json()["errorCode"] == "REQUEST_ENTITY_TOO_LARGE"


# --- OAuth -----------------------------------------------------------------------------------


def _rsa_private_key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_the_sdk_jwt_grant_over_tls_yields_a_token_the_envelopes_api_accepts(
    tmp_path: Path,
) -> None:
    with Served(create_app(), tls_dir=tmp_path / "tls") as served:
        client = ApiClient(host=f"{served.url}/restapi")
        # The SDK forces https for OAuth; trust the sandbox CA without touching the global config.
        config = copy.copy(Configuration())
        config.ssl_ca_cert = str(served.ca_file)
        client.rest_client = RESTClientObject(configuration=config)
        # An idle TLS keep-alive connection would hold up the server's graceful shutdown.
        client.set_default_header("Connection", "close")
        oauth_host = f"127.0.0.1:{served.port}"

        token = client.request_jwt_user_token(
            client_id="sandbox-integration-key",
            user_id="sandbox-user",
            oauth_host_name=oauth_host,
            private_key_bytes=_rsa_private_key_pem(),
            expires_in=3600,
            scopes=["signature", "impersonation"],
        )
        assert token.token_type == "Bearer"
        assert int(token.expires_in) == 3600

        client.set_oauth_host_name(oauth_host)
        info = client.get_user_info(token.access_token)
        (account,) = info.accounts
        assert account.account_id == ACCOUNT
        assert account.base_uri == served.url
        assert info.sub == "sandbox-user"

        envelope_id = send_contract(EnvelopesApi(client))
        assert EnvelopesApi(client).get_envelope(ACCOUNT, envelope_id).status == "sent"


def test_a_jwt_for_another_audience_or_expired_is_an_invalid_grant(emulator: Served) -> None:
    key = _rsa_private_key_pem()
    now = math.floor(time.time())
    host = emulator.url.removeprefix("http://")

    def grant(claims: dict[str, Any]) -> httpx.Response:
        assertion = jwt.encode(claims, key, algorithm="RS256")
        return httpx.post(
            f"{emulator.url}/oauth/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion,
            },
        )

    base = {"iss": "ik", "sub": "sandbox-user", "iat": now, "exp": now + 600, "scope": "signature"}
    accepted = grant({**base, "aud": host})
    assert accepted.status_code == 200
    assert accepted.json()["token_type"] == "Bearer"
    token = accepted.json()["access_token"]
    send_contract(envelopes_api(emulator.url, token=token))

    wrong_audience = grant({**base, "aud": "account-d.docusign.com"})
    assert wrong_audience.status_code == 400
    assert wrong_audience.json()["error"] == "invalid_grant"

    expired = grant({**base, "aud": host, "iat": now - 7200, "exp": now - 3600})
    assert expired.json() == {"error": "invalid_grant", "error_description": "expired"}

    not_a_jwt = httpx.post(
        f"{emulator.url}/oauth/token",
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "x.y"},
    )
    assert not_a_jwt.json()["error"] == "invalid_grant"


# --- signing and Connect ---------------------------------------------------------------------


def test_signing_delivers_an_hmac_signed_envelope_completed_event_with_the_summary_asked_for(
    listener: tuple[Listener, str],
) -> None:
    hooks, hook_url = listener
    app = create_app(connect_url=hook_url, connect_include_data=["custom_fields", "recipients"])
    with Served(app) as served:
        api = envelopes_api(served.url)
        envelope_id = send_contract(api, "006000000000007AAA")
        signed = httpx.post(
            f"{served.url}/_sandbox/envelopes/{envelope_id}/sign",
            json={"signed_at": "2026-12-15T10:30:00Z"},
        )
        assert signed.status_code == 200
        assert signed.json()["completedDateTime"].startswith("2026-12-15T10:30:00.")

        (message,) = hooks.wait_for(1)
        assert message.headers["content-type"] == "application/json"
        assert message.headers["x-docusign-signature-1"] == expected_signature(message.body)
        event = message.json()
        assert (event["event"], event["apiVersion"], event["retryCount"]) == (
            "envelope-completed",
            "v2.1",
            0,
        )
        assert event["uri"] == f"/restapi/v2.1/accounts/{ACCOUNT}/envelopes/{envelope_id}"
        data = event["data"]
        assert (data["accountId"], data["envelopeId"]) == (ACCOUNT, envelope_id)
        summary = data["envelopeSummary"]
        assert summary["status"] == "completed"
        assert summary["completedDateTime"].startswith("2026-12-15T10:30:00.")
        assert {f["name"]: f["value"] for f in summary["customFields"]["textCustomFields"]} == {
            "opportunity_id": "006000000000007AAA",
            "deal_id": "deal-006000000000007AAA",
        }
        (signer,) = summary["recipients"]["signers"]
        assert (signer["name"], signer["email"], signer["status"]) == (
            "Jane Doe",
            "jane@acme.example",
            "completed",
        )
        assert signer["signedDateTime"].startswith("2026-12-15T10:30:00.")
        assert "envelopeDocuments" not in summary  # "documents" was not asked for

        envelope = api.get_envelope(ACCOUNT, envelope_id)
        assert envelope.status == "completed"
        wait_until(
            lambda: (
                httpx.get(f"{served.url}/_sandbox/deliveries").json()["deliveries"][0]["state"]
                == "delivered"
            )
        )


def test_a_configuration_with_the_defaults_sends_only_the_event_and_the_envelope_id(
    listener: tuple[Listener, str],
) -> None:
    hooks, hook_url = listener
    with Served(create_app(connect_url=hook_url)) as served:
        envelope_id = send_contract(envelopes_api(served.url))
        httpx.post(f"{served.url}/_sandbox/envelopes/{envelope_id}/sign")

        (message,) = hooks.wait_for(1)
        assert message.headers["x-docusign-signature-1"] == expected_signature(message.body)
        event = message.json()
        assert event["event"] == "envelope-completed"
        assert event["data"] == {
            "accountId": ACCOUNT,
            "userId": "sandbox-user",
            "envelopeId": envelope_id,
        }


def test_the_legacy_xml_format_carries_custom_fields_and_local_dates_with_their_offset(
    listener: tuple[Listener, str],
) -> None:
    hooks, hook_url = listener
    with Served(create_app(connect_url=hook_url, connect_format="xml")) as served:
        envelope_id = send_contract(envelopes_api(served.url), "006000000000008AAA")
        httpx.post(
            f"{served.url}/_sandbox/envelopes/{envelope_id}/sign",
            json={"signed_at": "2026-12-15T03:30:00Z"},
        )

        (message,) = hooks.wait_for(1)
        assert message.headers["content-type"].startswith("text/xml")
        assert message.headers["x-docusign-signature-1"] == expected_signature(message.body)
        ns = {"ds": "http://www.docusign.net/API/3.0"}
        root = ElementTree.fromstring(message.body)
        assert root.tag == "{http://www.docusign.net/API/3.0}DocuSignEnvelopeInformation"
        status = root.find("ds:EnvelopeStatus", ns)
        assert status is not None
        assert status.findtext("ds:EnvelopeID", namespaces=ns) == envelope_id
        assert status.findtext("ds:Status", namespaces=ns) == "Completed"
        # Pacific Standard Time: 03:30 UTC is 19:30 the day before, written without a zone.
        assert status.findtext("ds:Completed", namespaces=ns) == "2026-12-14T19:30:00.000"
        assert root.findtext("ds:TimeZoneOffset", namespaces=ns) == "-8"
        fields = {
            f.findtext("ds:Name", namespaces=ns): f.findtext("ds:Value", namespaces=ns)
            for f in status.findall("ds:CustomFields/ds:CustomField", ns)
        }
        assert fields == {
            "opportunity_id": "006000000000008AAA",
            "deal_id": "deal-006000000000008AAA",
        }
        signer = status.find("ds:RecipientStatuses/ds:RecipientStatus", ns)
        assert signer is not None
        assert [signer.findtext(f"ds:{n}", namespaces=ns) for n in ("Type", "Status")] == [
            "Signer",
            "Completed",
        ]


def test_the_message_format_can_be_switched_at_run_time(
    listener: tuple[Listener, str],
) -> None:
    hooks, hook_url = listener
    with Served(create_app(connect_url=hook_url)) as served:
        api = envelopes_api(served.url)
        for update in ({"format": "xml"}, {"format": "json", "include_data": ["custom_fields"]}):
            assert httpx.post(f"{served.url}/_sandbox/connect", json=update).status_code == 200
            envelope_id = send_contract(api)
            httpx.post(f"{served.url}/_sandbox/envelopes/{envelope_id}/sign")
        refused = httpx.post(f"{served.url}/_sandbox/connect", json={"include_data": ["nope"]})

        xml, summary = hooks.wait_for(2)
        assert xml.body.startswith(b"<?xml")
        assert set(summary.json()["data"]["envelopeSummary"]) >= {"customFields", "status"}
        assert "recipients" not in summary.json()["data"]["envelopeSummary"]
        assert refused.status_code == 400


def test_connect_retries_with_backoff_until_the_listener_accepts(
    listener: tuple[Listener, str],
) -> None:
    hooks, hook_url = listener
    hooks.answers = [503, 503]
    with Served(create_app(connect_url=hook_url)) as served:
        envelope_id = send_contract(envelopes_api(served.url))
        httpx.post(f"{served.url}/_sandbox/envelopes/{envelope_id}/sign")

        first, second, third = hooks.wait_for(3)
        assert second.at - first.at >= 0.15
        assert third.at - second.at >= 0.35  # the wait doubles
        assert [m.json()["retryCount"] for m in (first, second, third)] == [0, 1, 2]
        for message in (first, second, third):
            assert message.headers["x-docusign-signature-1"] == expected_signature(message.body)

        def delivered() -> bool:
            (record,) = httpx.get(f"{served.url}/_sandbox/deliveries").json()["deliveries"]
            return bool(record["state"] == "delivered")

        wait_until(delivered)
        (record,) = httpx.get(
            f"{served.url}/_sandbox/deliveries", params={"envelope_id": envelope_id}
        ).json()["deliveries"]
        assert [a["statusCode"] for a in record["attempts"]] == [503, 503, 200]
        time.sleep(0.3)
        assert len(hooks.received) == 3  # nothing more once the listener said 2xx


def test_deliver_twice_sends_two_identical_signed_bodies(listener: tuple[Listener, str]) -> None:
    hooks, hook_url = listener
    with Served(create_app()) as served:
        switched = httpx.post(
            f"{served.url}/_sandbox/connect",
            json={"url": hook_url, "deliver_twice": True, "secret": "rotated-secret"},
        )
        assert switched.json()["url"] == hook_url
        assert "rotated-secret" not in switched.text
        envelope_id = send_contract(envelopes_api(served.url))
        httpx.post(f"{served.url}/_sandbox/envelopes/{envelope_id}/sign")

        first, second = hooks.wait_for(2)
        assert first.body == second.body
        assert first.headers["x-docusign-signature-1"] == expected_signature(
            first.body, "rotated-secret"
        )
        assert first.headers["x-docusign-signature-1"] == second.headers["x-docusign-signature-1"]


def test_the_envelopes_own_event_notification_gets_the_event_instead_of_the_account_listener(
    listener: tuple[Listener, str],
) -> None:
    hooks, hook_url = listener
    account_hooks = Listener()
    with (
        Served(account_hooks.app()) as account_listener,
        Served(create_app(connect_url=f"{account_listener.url}/webhooks/docusign")) as served,
    ):
        api = envelopes_api(served.url)
        notification = EventNotification(
            url=hook_url,
            include_hmac="true",
            events=["envelope-sent", "envelope-completed"],
            event_data=ConnectEventData(format="json", version="restv2.1", include_data=[]),
        )
        envelope_id = send_contract(api, event_notification=notification)
        httpx.post(f"{served.url}/_sandbox/envelopes/{envelope_id}/sign")

        sent, completed = hooks.wait_for(2)
        assert sorted([sent.json()["event"], completed.json()["event"]]) == [
            "envelope-completed",
            "envelope-sent",
        ]
        assert completed.headers["x-docusign-signature-1"] == expected_signature(completed.body)
        time.sleep(0.2)
        assert account_hooks.received == []


def test_a_voided_or_draft_envelope_cannot_be_signed(listener: tuple[Listener, str]) -> None:
    hooks, hook_url = listener
    with Served(create_app(connect_url=hook_url)) as served:
        api = envelopes_api(served.url)
        voided = send_contract(api)
        api.update(ACCOUNT, voided, envelope=Envelope(status="voided", voided_reason="lost"))
        refused = httpx.post(f"{served.url}/_sandbox/envelopes/{voided}/sign")
        assert refused.status_code == 409
        assert refused.json()["errorCode"] == "ENVELOPE_NOT_SIGNABLE"
        assert api.get_envelope(ACCOUNT, voided).status == "voided"

        draft = send_contract(api, status="created")
        assert httpx.post(f"{served.url}/_sandbox/envelopes/{draft}/sign").status_code == 409

        missing = httpx.post(f"{served.url}/_sandbox/envelopes/nope/sign")
        assert missing.status_code == 404
        time.sleep(0.2)
        assert hooks.received == []


def test_envelopes_survive_a_restart_and_pending_deliveries_resume(
    tmp_path: Path, listener: tuple[Listener, str]
) -> None:
    hooks, hook_url = listener
    hooks.answers = [503] * 1000
    state = tmp_path / "docusign.json"
    with Served(create_app(state_file=state, connect_url=hook_url)) as served:
        envelope_id = send_contract(envelopes_api(served.url), "006000000000009AAA")
        httpx.post(f"{served.url}/_sandbox/envelopes/{envelope_id}/sign")
        hooks.wait_for(1)

    hooks.answers.clear()
    with Served(create_app(state_file=state, connect_url=hook_url)) as restarted:
        envelope = envelopes_api(restarted.url).get_envelope(ACCOUNT, envelope_id)
        assert envelope.status == "completed"

        def delivered() -> bool:
            (record,) = httpx.get(f"{restarted.url}/_sandbox/deliveries").json()["deliveries"]
            return bool(record["state"] == "delivered")

        wait_until(delivered)
        assert hooks.received[-1].json()["data"]["envelopeId"] == envelope_id

        assert httpx.post(f"{restarted.url}/_sandbox/reset").status_code == 200
        assert httpx.get(f"{restarted.url}/_sandbox/stats").json()["envelopes"] == 0


# --- qtc sign --------------------------------------------------------------------------------


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("QTC_ENV", "sandbox")
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_qtc_sign_completes_the_envelope_and_prints_json(
    fresh_settings: pytest.MonkeyPatch, listener: tuple[Listener, str]
) -> None:
    hooks, hook_url = listener
    with Served(create_app(connect_url=hook_url)) as served:
        envelope_id = send_contract(envelopes_api(served.url))
        fresh_settings.setenv("QTC_DOCUSIGN_BASE_PATH", f"{served.url}/restapi")
        result = CliRunner().invoke(
            qtc_cli, ["sign", envelope_id, "--json", "--signed-at", "2026-12-15T10:00:00+00:00"]
        )
        assert result.exit_code == 0, result.output
        answer = json.loads(result.stdout)
        assert answer["status"] == "completed"
        assert answer["completedDateTime"].startswith("2026-12-15T10:00:00.")
        assert answer["deliveries"][0]["url"] == hook_url
        (message,) = hooks.wait_for(1)
        assert message.json()["data"]["envelopeId"] == envelope_id

        again = CliRunner().invoke(qtc_cli, ["sign", envelope_id, "--docusign-url", served.url])
        assert again.exit_code == 1
        assert "ENVELOPE_NOT_SIGNABLE" in again.stderr


def test_qtc_sign_refuses_outside_the_sandbox(fresh_settings: pytest.MonkeyPatch) -> None:
    for name, value in {
        "QTC_ENV": "production",
        "QTC_STRIPE_API_KEY": "sk_live_real",
        "QTC_DOCUSIGN_CONNECT_SECRET": "real-connect",
        "QTC_SALESFORCE_CALLOUT_SECRET": "real-sf",
        "QTC_PROVISIONING_SECRET": "real-provisioning",
        "QTC_API_TOKENS": '{"real-token": {"person": "p@example.com", "role": "operator"}}',
        "QTC_CODEC_ENABLED": "false",
    }.items():
        fresh_settings.setenv(name, value)
    result = CliRunner().invoke(
        qtc_cli, ["sign", "any-envelope", "--docusign-url", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 1
    assert "only in the sandbox" in result.stderr


def test_qtc_sign_says_when_the_emulator_is_not_running(
    fresh_settings: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    result = CliRunner().invoke(
        qtc_cli, ["sign", "any-envelope", "--docusign-url", f"http://127.0.0.1:{closed_port}"]
    )
    assert result.exit_code == 1
    assert "cannot reach the DocuSign emulator" in result.stderr


@dataclass
class SlowListener:
    """A Connect listener that takes its time and counts how many deliveries it holds at once."""

    delay_s: float = 0.2
    in_flight: int = 0
    most_in_flight: int = 0
    received: int = 0

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            await asyncio.sleep(self.delay_s)
            self.in_flight -= 1
            self.received += 1
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/webhooks/docusign", hook, methods=["POST"])])


def test_connect_keeps_at_most_max_in_flight_deliveries_open_and_still_delivers_all() -> None:
    slow = SlowListener()
    with (
        Served(slow.app()) as hooks,
        Served(create_app(connect_url=f"{hooks.url}/webhooks/docusign")) as served,
    ):
        limited = httpx.post(f"{served.url}/_sandbox/connect", json={"max_in_flight": 2})
        assert limited.json()["max_in_flight"] == 2
        api = envelopes_api(served.url)
        envelope_ids = [send_contract(api) for _ in range(6)]
        for envelope_id in envelope_ids:
            httpx.post(f"{served.url}/_sandbox/envelopes/{envelope_id}/sign").raise_for_status()

        wait_until(lambda: slow.received == 6)
        assert slow.most_in_flight == 2
