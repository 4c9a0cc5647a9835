"""E-signature activities against the DocuSign emulator, through the docusign-esign SDK."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from docusign_esign import ApiClient, EnvelopeDefinition, EnvelopesApi, TemplateRole
from docusign_esign.client.api_exception import ApiException
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from integrations.docusign.activities import DocusignESignature
from integrations.docusign.client import build_docusign_client
from integrations.docusign.mapping import contract_tabs
from qtc import errors, ports
from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from qtc.models import PricedQuote
from qtc.money import format_minor
from runtime.settings import Settings
from sandbox.runner import RunningEmulators

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def priced() -> PricedQuote:
    """The phase-3 example: GBP, monthly, three SKUs plus an auto-added one-time SKU."""
    quote = json.loads((ROOT / "examples" / "quote-phase3.json").read_text())
    return price_quote(quote, load_catalog(ROOT / "catalog.toml"), datetime.now(UTC))


@pytest.fixture
def settings(emulators: RunningEmulators) -> Settings:
    return Settings(docusign_base_path=f"{emulators.docusign_url}/restapi")


@pytest.fixture
def api_client(settings: Settings) -> ApiClient:
    return build_docusign_client(settings)


@pytest.fixture
def esign(api_client: ApiClient, settings: Settings) -> DocusignESignature:
    return DocusignESignature.from_settings(api_client, settings)


@pytest.fixture
def envelopes(api_client: ApiClient) -> EnvelopesApi:
    return EnvelopesApi(api_client)


@pytest.fixture
def deal_id() -> str:
    return f"deal-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def control(emulators: RunningEmulators) -> Iterator[httpx.Client]:
    """The emulator's sandbox controls; faults are always switched off afterwards."""
    client = httpx.Client(base_url=emulators.docusign_url, timeout=10)
    try:
        yield client
    finally:
        client.post("/_sandbox/faults", json={"rules": []}).raise_for_status()
        client.close()


def run(fn: Callable[..., Any], arg: Any) -> Any:
    return ActivityEnvironment().run(fn, arg)


def sent_for(envelopes: EnvelopesApi, deal_id: str) -> list[Any]:
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    found = envelopes.list_status_changes(
        "sandbox-account", custom_field=f"deal_id={deal_id}", from_date=since
    )
    return list(found.envelopes or [])


def test_the_contract_goes_out_with_the_priced_terms_in_its_tabs(
    esign: DocusignESignature, envelopes: EnvelopesApi, priced: PricedQuote, deal_id: str
) -> None:
    sent = run(esign.send_contract, ports.SendContractInput(deal_id=deal_id, priced=priced))

    assert sent.status == "sent"
    recipients = envelopes.list_recipients("sandbox-account", sent.envelope_id, include_tabs="true")
    (signer,) = recipients.signers
    assert (signer.role_name, signer.name, signer.email) == (
        "Signer",
        "Bill Lumbergh",
        "bill@initech.example",
    )
    tabs = {t.tab_label: t.value for t in signer.tabs.text_tabs}
    assert tabs["legal_name"] == "Initech Ltd"
    assert tabs["address"] == "10 Finsbury Square, London, EC2A 1AF, GB"
    assert tabs["currency"] == "GBP"
    assert tabs["term_months"] == "12"
    assert tabs["billing_frequency"] == "monthly"
    assert tabs["payment_terms"] == "Net 30 days"
    assert tabs["start"] == "on signature"
    pro = priced.lines[0]
    assert tabs["line_1_sku"] == pro.sku == "PLATFORM-PRO"
    assert tabs["line_1_quantity"] == "25"
    assert tabs["line_1_discount"] == "5%"
    assert tabs["line_1_unit_amount_year_1"] == format_minor(
        (pro.unit_amounts_by_year_minor or [])[0], "gbp"
    )
    one_time = [i for i, line in enumerate(priced.lines, start=1) if line.kind == "one_time"]
    assert one_time, "the example should carry a one-time line"
    assert tabs[f"line_{one_time[0]}_one_time_amount"].endswith(" GBP")
    assert tabs["first_invoice_total"] == format_minor(priced.first_invoice_total_minor, "gbp")
    assert tabs["arr"] == format_minor(priced.arr_minor, "gbp")
    assert tabs["tcv"] == format_minor(priced.tcv_minor, "gbp")
    schedule = [v for k, v in tabs.items() if k.startswith("payment_schedule_")]
    assert len(schedule) == len(priced.invoices) == 12
    first = priced.invoices[0]
    assert tabs["payment_schedule_1"] == (
        f"{first.date.isoformat()}: {format_minor(first.total_minor, 'gbp')}"
    )
    custom = envelopes.list_custom_fields("sandbox-account", sent.envelope_id)
    assert {f.name: f.value for f in custom.text_custom_fields} == {
        "opportunity_id": priced.opportunity_id,
        "deal_id": deal_id,
    }


def test_sending_the_contract_again_returns_the_same_envelope(
    esign: DocusignESignature, envelopes: EnvelopesApi, priced: PricedQuote, deal_id: str
) -> None:
    first = run(esign.send_contract, ports.SendContractInput(deal_id=deal_id, priced=priced))
    second = run(esign.send_contract, ports.SendContractInput(deal_id=deal_id, priced=priced))

    assert second.envelope_id == first.envelope_id
    assert [e.envelope_id for e in sent_for(envelopes, deal_id)] == [first.envelope_id]


def test_a_voided_contract_is_replaced_when_the_deal_sends_again(
    esign: DocusignESignature, priced: PricedQuote, deal_id: str
) -> None:
    first = run(esign.send_contract, ports.SendContractInput(deal_id=deal_id, priced=priced))
    run(
        esign.void_contract,
        ports.VoidContractInput(deal_id=deal_id, envelope_id=first.envelope_id, reason="re-quote"),
    )

    second = run(esign.send_contract, ports.SendContractInput(deal_id=deal_id, priced=priced))

    assert second.envelope_id != first.envelope_id


def test_voiding_a_contract_twice_is_harmless(
    esign: DocusignESignature, envelopes: EnvelopesApi, priced: PricedQuote, deal_id: str
) -> None:
    sent = run(esign.send_contract, ports.SendContractInput(deal_id=deal_id, priced=priced))
    void = ports.VoidContractInput(
        deal_id=deal_id, envelope_id=sent.envelope_id, reason="Quote expired"
    )

    run(esign.void_contract, void)
    run(esign.void_contract, void)

    envelope = envelopes.get_envelope("sandbox-account", sent.envelope_id)
    assert envelope.status == "voided"
    assert envelope.voided_reason == "Quote expired"


def test_voiding_a_signed_contract_leaves_it_signed(
    esign: DocusignESignature,
    envelopes: EnvelopesApi,
    control: httpx.Client,
    priced: PricedQuote,
    deal_id: str,
) -> None:
    sent = run(esign.send_contract, ports.SendContractInput(deal_id=deal_id, priced=priced))
    control.post(f"/_sandbox/envelopes/{sent.envelope_id}/sign", json={}).raise_for_status()

    run(
        esign.void_contract,
        ports.VoidContractInput(deal_id=deal_id, envelope_id=sent.envelope_id, reason="lost"),
    )

    assert envelopes.get_envelope("sandbox-account", sent.envelope_id).status == "completed"


def test_a_docusign_outage_is_retried(
    esign: DocusignESignature, control: httpx.Client, priced: PricedQuote, deal_id: str
) -> None:
    control.post("/_sandbox/faults", json={"rules": [{"rate_500": 1.0}]}).raise_for_status()

    with pytest.raises(ApplicationError) as caught:
        run(esign.send_contract, ports.SendContractInput(deal_id=deal_id, priced=priced))

    assert not caught.value.non_retryable
    assert caught.value.type == errors.VENDOR_UNAVAILABLE


def test_a_docusign_rate_limit_waits_as_long_as_docusign_asks(
    esign: DocusignESignature, control: httpx.Client, priced: PricedQuote, deal_id: str
) -> None:
    rule = {"method": "POST", "rate_429": 1.0, "retry_after_s": 7}
    control.post("/_sandbox/faults", json={"rules": [rule]}).raise_for_status()

    with pytest.raises(ApplicationError) as caught:
        run(esign.send_contract, ports.SendContractInput(deal_id=deal_id, priced=priced))

    assert not caught.value.non_retryable
    assert caught.value.type == errors.VENDOR_RATE_LIMITED
    assert caught.value.next_retry_delay == timedelta(seconds=7)
    injected = control.get("/_sandbox/faults").json()["injected"]["429"]
    assert injected >= 1


def test_a_rejected_access_token_is_not_retried(
    emulators: RunningEmulators, priced: PricedQuote, deal_id: str
) -> None:
    client = ApiClient(host=f"{emulators.docusign_url}/restapi")
    client.set_default_header("Authorization", "Bearer revoked-token")
    esign = DocusignESignature(client, "sandbox-account", "sandbox-msa-template")

    with pytest.raises(ApplicationError) as caught:
        run(esign.send_contract, ports.SendContractInput(deal_id=deal_id, priced=priced))

    assert caught.value.non_retryable
    assert caught.value.type == errors.VENDOR_AUTHENTICATION


def test_an_unknown_template_parks_the_deal(
    api_client: ApiClient, priced: PricedQuote, deal_id: str
) -> None:
    esign = DocusignESignature(api_client, "sandbox-account", "no-such-template")

    with pytest.raises(ApplicationError) as caught:
        run(esign.send_contract, ports.SendContractInput(deal_id=deal_id, priced=priced))

    assert caught.value.non_retryable
    assert caught.value.type == errors.VENDOR_INVALID_REQUEST
    assert "TEMPLATE_ID_INVALID" in str(caught.value.details)


def test_an_unreachable_docusign_is_retried(priced: PricedQuote, deal_id: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    client = build_docusign_client(
        Settings(docusign_base_path=f"http://127.0.0.1:{closed_port}/restapi")
    )
    esign = DocusignESignature(client, "sandbox-account", "sandbox-msa-template")

    with pytest.raises(ApplicationError) as caught:
        run(esign.send_contract, ports.SendContractInput(deal_id=deal_id, priced=priced))

    assert not caught.value.non_retryable
    assert caught.value.type == errors.VENDOR_UNAVAILABLE


def test_a_contract_with_a_later_start_names_the_date(priced: PricedQuote) -> None:
    later = priced.model_copy(update={"requested_start": priced.valid_until})

    assert contract_tabs(later)["start"] == priced.valid_until.isoformat()
    assert contract_tabs(priced)["start"] == "on signature"


def test_a_contract_read_by_its_id_names_its_deal_and_its_signature(
    esign: DocusignESignature, control: httpx.Client, priced: PricedQuote, deal_id: str
) -> None:
    sent = run(esign.send_contract, ports.SendContractInput(deal_id=deal_id, priced=priced))
    unsigned = esign.read_contract(sent.envelope_id)
    control.post(
        f"/_sandbox/envelopes/{sent.envelope_id}/sign", json={"signed_at": "2026-12-15T10:30:00Z"}
    ).raise_for_status()

    signed = esign.read_contract(sent.envelope_id)

    assert unsigned is not None and (unsigned.status, unsigned.completed_at) == ("sent", None)
    assert signed is not None
    assert (signed.contract_id, signed.deal_id, signed.status) == (
        sent.envelope_id,
        deal_id,
        "completed",
    )
    assert signed.completed_at == datetime(2026, 12, 15, 10, 30, tzinfo=UTC)
    assert (signed.signer_name, signed.signer_email) == ("Bill Lumbergh", "bill@initech.example")


def test_an_envelope_this_account_does_not_hold_reads_as_none(
    esign: DocusignESignature, envelopes: EnvelopesApi
) -> None:
    assert esign.read_contract(str(uuid.uuid4())) is None


def test_an_envelope_sent_by_someone_else_reads_without_a_deal(
    esign: DocusignESignature, envelopes: EnvelopesApi
) -> None:
    summary = envelopes.create_envelope(
        "sandbox-account",
        envelope_definition=EnvelopeDefinition(
            template_id="sandbox-msa-template",
            status="sent",
            template_roles=[TemplateRole(role_name="Signer", name="Ann", email="ann@x.example")],
        ),
    )

    found = esign.read_contract(summary.envelope_id)

    assert found is not None and found.deal_id is None and found.status == "sent"


def test_a_contract_read_during_a_docusign_outage_is_to_be_retried(
    esign: DocusignESignature, control: httpx.Client
) -> None:
    control.post("/_sandbox/faults", json={"rules": [{"rate_500": 1.0}]}).raise_for_status()

    with pytest.raises(ApplicationError) as caught:
        esign.read_contract(str(uuid.uuid4()))

    assert not caught.value.non_retryable


@pytest.mark.parametrize(
    "code", ["ACCOUNT_NOT_AUTHORIZED_FOR_ENVELOPE", "USER_NOT_ENVELOPE_SENDER_OR_RECIPIENT"]
)
def test_an_envelope_of_another_account_or_sender_reads_as_none(
    esign: DocusignESignature, monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    # How DocuSign answers a read of an envelope our sending user did not send.
    def refuse(*args: Any, **kwargs: Any) -> Any:
        error = ApiException(status=400, reason="Bad Request")
        error.body = json.dumps({"errorCode": code, "message": "no rights"}).encode()
        raise error

    monkeypatch.setattr(esign._envelopes, "get_envelope", refuse)

    assert esign.read_contract(str(uuid.uuid4())) is None
