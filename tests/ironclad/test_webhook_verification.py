"""Ironclad webhook verification: RSA signature over event id + body + nonce with the key from the
API, cached, re-fetched once on a failed check; the signature read back from the workflow."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from integrations.ironclad.client import IroncladApi
from integrations.ironclad.mapping import launch_attributes
from integrations.ironclad.webhook import (
    VerificationError,
    WebhookVerifier,
    parse_event,
    signed_contract,
    verify_with_key,
)
from qtc.models import PricedQuote
from sandbox.ironclad.webhooks import (
    new_private_key_pem,
    public_key_pem,
    sign_event,
    verification_headers,
)
from tests.ironclad.conftest import CREATOR, TEMPLATE, Receiver

BODY = json.dumps(
    {
        "companyID": "c1",
        "payload": {"event": "workflow_completed", "templateID": "t", "workflowID": "w1"},
        "timestamp": "2026-12-15T10:00:00.000Z",
        "webhookID": "h1",
    },
    separators=(",", ":"),
).encode()
KEY = new_private_key_pem()
OTHER_KEY = new_private_key_pem()


class KeySource:
    def __init__(self, pem: str) -> None:
        self.pem = pem
        self.fetches = 0

    async def __call__(self) -> str:
        self.fetches += 1
        return self.pem


def signed(private_pem: str = KEY, body: bytes = BODY, event_id: str = "evt-1") -> dict[str, str]:
    return verification_headers(private_pem, event_id, body)


async def test_a_genuine_webhook_is_accepted_and_the_key_fetched_once() -> None:
    source = KeySource(public_key_pem(KEY))
    verifier = WebhookVerifier(source)
    assert await verifier.verify(signed(), BODY) == "evt-1"
    assert await verifier.verify(signed(event_id="evt-2"), BODY) == "evt-2"
    assert source.fetches == 1


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h: {**h, "X-Ironclad-Webhook-Event-Id": "evt-other"}, id="event id"),
        pytest.param(
            lambda h: {k: v for k, v in h.items() if "Verification" not in k},
            id="missing verification",
        ),
        pytest.param(
            lambda h: {k: v for k, v in h.items() if "Event-Id" not in k}, id="missing event id"
        ),
        pytest.param(
            lambda h: {**h, "X-Ironclad-Webhook-Verification": "not json"}, id="malformed"
        ),
        pytest.param(
            lambda h: {
                **h,
                "X-Ironclad-Webhook-Verification": json.dumps(
                    {**json.loads(h["X-Ironclad-Webhook-Verification"]), "nonce": "other"}
                ),
            },
            id="nonce",
        ),
        pytest.param(
            lambda h: {
                **h,
                "X-Ironclad-Webhook-Verification": json.dumps(
                    {**json.loads(h["X-Ironclad-Webhook-Verification"]), "signAlgorithm": "md5"}
                ),
            },
            id="algorithm",
        ),
    ],
)
async def test_a_forged_or_incomplete_verification_is_refused(tamper: Any) -> None:
    verifier = WebhookVerifier(KeySource(public_key_pem(KEY)), min_refetch_s=0)
    with pytest.raises(VerificationError):
        await verifier.verify(tamper(signed()), BODY)


async def test_a_changed_body_is_refused() -> None:
    verifier = WebhookVerifier(KeySource(public_key_pem(KEY)), min_refetch_s=0)
    forged = BODY.replace(b"w1", b"w2")
    with pytest.raises(VerificationError, match="does not match"):
        await verifier.verify(signed(), forged)


async def test_a_webhook_signed_by_another_key_is_refused_after_one_refetch() -> None:
    source = KeySource(public_key_pem(KEY))
    verifier = WebhookVerifier(source, min_refetch_s=0)
    with pytest.raises(VerificationError):
        await verifier.verify(signed(OTHER_KEY), BODY)
    assert source.fetches == 2


async def test_a_rotated_key_is_fetched_again_once_and_kept() -> None:
    source = KeySource(public_key_pem(KEY))
    verifier = WebhookVerifier(source, min_refetch_s=0)
    await verifier.verify(signed(), BODY)
    source.pem = public_key_pem(OTHER_KEY)
    assert await verifier.verify(signed(OTHER_KEY), BODY) == "evt-1"
    assert await verifier.verify(signed(OTHER_KEY, event_id="evt-3"), BODY) == "evt-3"
    assert source.fetches == 2


async def test_forgeries_do_not_make_the_key_be_fetched_again_and_again() -> None:
    source = KeySource(public_key_pem(KEY))
    verifier = WebhookVerifier(source, min_refetch_s=3600)
    await verifier.verify(signed(), BODY)
    for _ in range(5):
        with pytest.raises(VerificationError):
            await verifier.verify(signed(OTHER_KEY), BODY)
    assert source.fetches == 1


def test_the_body_is_checked_as_json_text_when_reformatted_in_transit() -> None:
    spaced = json.dumps(json.loads(BODY), indent=2).encode()
    nonce = "n1"
    signature = sign_event(KEY, "evt-1", BODY, nonce)
    header = json.dumps(
        {"nonce": nonce, "signAlgorithm": "sha256", "signature": signature, "encoding": "base64"}
    )
    assert verify_with_key(public_key_pem(KEY), "evt-1", spaced, header)


async def test_the_signature_is_read_from_the_completed_workflow(
    api: IroncladApi, ironclad_url: str, priced: PricedQuote, receiver: Receiver
) -> None:
    workflow = await api.launch_workflow(
        TEMPLATE, launch_attributes("deal-x", priced), creator_email=CREATOR
    )
    assert await signed_contract(api, workflow["id"], signer_role="Counterparty Signer") is None
    httpx.post(
        f"{ironclad_url}/_sandbox/workflows/{workflow['id']}/sign",
        json={"signed_at": "2026-12-15T10:00:00Z"},
    ).raise_for_status()
    found = await signed_contract(api, workflow["id"], signer_role="Counterparty Signer")
    assert found is not None
    assert found.deal_id == "deal-x"
    assert found.signature.envelope_id == workflow["id"]
    assert found.signature.completed_at.isoformat() == "2026-12-15T10:00:00+00:00"
    assert found.signature.signer_email == priced.signer.email
    deadline = time.monotonic() + 5
    while len(receiver.received) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    event = parse_event(receiver.received[-1]["body"])
    assert (event.payload.event, event.payload.workflow_id) == (
        "workflow_completed",
        workflow["id"],
    )
    verifier = WebhookVerifier(api.verification_key)
    headers = receiver.received[-1]["headers"]
    assert await verifier.verify(headers, receiver.received[-1]["body"])
