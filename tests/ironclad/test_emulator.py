"""The Ironclad emulator answers as Ironclad's public API does, through the product's httpx client
and raw HTTP: launch validation errors, list filters, cancel, signature, signed webhook delivery
with retries, OAuth client credentials, faults and persisted state."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from integrations.ironclad.client import IroncladApi, IroncladHttpError
from integrations.ironclad.mapping import launch_attributes, workflow_filter
from integrations.ironclad.webhook import verify_with_key
from qtc.models import PricedQuote
from sandbox.ironclad.app import (
    SANDBOX_API_KEY,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    create_app,
)
from sandbox.stripe.testing import serve_app
from tests.ironclad.conftest import CREATOR, TEMPLATE, Receiver

API = "/public/api/v1"


def wait_for(predicate: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


async def launch(api: IroncladApi, priced: PricedQuote, deal_id: str = "deal-1") -> dict[str, Any]:
    return await api.launch_workflow(
        TEMPLATE, launch_attributes(deal_id, priced), creator_email=CREATOR
    )


async def test_a_launched_workflow_waits_at_the_sign_step_with_the_quote_as_attributes(
    api: IroncladApi, priced: PricedQuote
) -> None:
    workflow = await launch(api, priced)
    assert workflow["status"] == "active"
    assert workflow["step"] == "Sign"
    assert workflow["template"] == TEMPLATE
    assert workflow["signatures"]["state"] == "in_progress"
    read = await api.get_workflow(workflow["id"])
    assert read["attributes"]["counterpartyName"] == priced.account.legal_name
    assert Decimal(str(read["attributes"]["totalContractValue"]["amount"])) == Decimal(
        priced.tcv_minor
    ).scaleb(-2)
    signers = await api.get_signatures(workflow["id"])
    assert signers["signers"][0]["email"] == priced.signer.email
    assert signers["signers"][0]["signatureStatus"] == {"status": "sent"}


async def test_a_missing_required_attribute_is_refused_naming_it(
    api: IroncladApi, priced: PricedQuote
) -> None:
    attributes = launch_attributes("deal-1", priced)
    del attributes["counterpartySignerEmail"]
    with pytest.raises(IroncladHttpError) as caught:
        await api.launch_workflow(TEMPLATE, attributes, creator_email=CREATOR)
    assert (caught.value.status, caught.value.code, caught.value.param) == (
        400,
        "MISSING_PARAM",
        "counterpartySignerEmail",
    )


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"termMonths": "twelve"}, "termMonths"),
        ({"counterpartyBillingEmail": "not-an-email"}, "counterpartyBillingEmail"),
        ({"billingFrequency": "weekly"}, "billingFrequency"),
        ({"totalContractValue": {"amount": "1", "currency": "GBP"}}, "totalContractValue"),
        ({"freeTextTerms": "net 365"}, "freeTextTerms"),
    ],
)
async def test_a_wrong_or_unknown_attribute_is_refused_naming_it(
    api: IroncladApi, priced: PricedQuote, change: dict[str, Any], param: str
) -> None:
    attributes = {**launch_attributes("deal-1", priced), **change}
    with pytest.raises(IroncladHttpError) as caught:
        await api.launch_workflow(TEMPLATE, attributes, creator_email=CREATOR)
    assert (caught.value.code, caught.value.param) == ("INVALID_PARAM", param)


async def test_a_bad_line_item_is_refused_naming_the_row_and_column(
    api: IroncladApi, priced: PricedQuote
) -> None:
    attributes = launch_attributes("deal-1", priced)
    attributes["lineItems"][1]["quantity"] = "one"
    with pytest.raises(IroncladHttpError) as caught:
        await api.launch_workflow(TEMPLATE, attributes, creator_email=CREATOR)
    assert caught.value.param == "lineItems[1].quantity"


async def test_a_launch_with_the_api_key_must_name_its_creator(
    ironclad_url: str, priced: PricedQuote
) -> None:
    body = {"template": TEMPLATE, "attributes": {"counterpartyName": "x"}}
    response = httpx.post(
        f"{ironclad_url}{API}/workflows",
        json=body,
        headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "code": "MISSING_PARAM",
        "message": "missing required parameter",
        "param": "creator",
    }
    unknown = httpx.post(
        f"{ironclad_url}{API}/workflows",
        json={"template": "nope", "attributes": {}, "creator": {"email": CREATOR}},
        headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"},
    )
    assert unknown.json()["param"] == "template"


async def test_an_unknown_token_is_unauthorized(ironclad_url: str) -> None:
    response = httpx.get(
        f"{ironclad_url}{API}/workflows", headers={"Authorization": "Bearer wrong"}
    )
    assert response.status_code == 401
    assert response.json() == {"code": "UNAUTHORIZED", "message": "invalid authentication token"}


async def test_client_credentials_act_as_a_user_within_their_scopes(
    ironclad_url: str, priced: PricedQuote
) -> None:
    token = httpx.post(
        f"{ironclad_url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
            "scope": "public.workflows.readWorkflows",
        },
    ).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    no_user = httpx.get(f"{ironclad_url}{API}/workflows", headers=bearer)
    assert (no_user.status_code, no_user.json()["code"]) == (400, "MISSING_PARAM")
    as_user = {**bearer, "x-as-user-email": CREATOR}
    assert httpx.get(f"{ironclad_url}{API}/workflows", headers=as_user).status_code == 200
    launch_attempt = httpx.post(f"{ironclad_url}{API}/workflows", headers=as_user, json={})
    assert (launch_attempt.status_code, launch_attempt.json()["code"]) == (403, "FORBIDDEN")
    bad_secret = httpx.post(
        f"{ironclad_url}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": SANDBOX_CLIENT_ID},
    )
    assert (bad_secret.status_code, bad_secret.json()["error"]) == (401, "invalid_client")


async def test_the_product_client_launches_with_client_credentials(
    ironclad_url: str, priced: PricedQuote
) -> None:
    api = IroncladApi(
        ironclad_url,
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SANDBOX_CLIENT_SECRET,
        as_user_email=CREATOR,
    )
    try:
        workflow = await launch(api, priced)
        assert workflow["creator"]["email"] == CREATOR
        assert (await api.get_workflow(workflow["id"]))["status"] == "active"
    finally:
        await api.aclose()


async def test_the_list_filter_finds_a_deals_workflows_by_attribute_and_status(
    api: IroncladApi, priced: PricedQuote
) -> None:
    first = await launch(api, priced, "deal-a")
    await launch(api, priced, "deal-b")
    found = await api.list_workflows(
        template_id=TEMPLATE, statuses=["active"], formula=workflow_filter("deal-a")
    )
    assert [w["id"] for w in found] == [first["id"]]
    await api.cancel_workflow(first["id"], "expired")
    assert not await api.list_workflows(
        template_id=TEMPLATE, statuses=["active", "completed"], formula=workflow_filter("deal-a")
    )
    cancelled = await api.list_workflows(
        template_id=TEMPLATE, statuses=["cancelled"], formula=workflow_filter("deal-a")
    )
    assert [w["status"] for w in cancelled] == ["cancelled"]
    with pytest.raises(IroncladHttpError) as caught:
        await api.list_workflows(template_id=None, statuses=["active"], formula="Contains(x)")
    assert caught.value.param == "filter"


async def test_the_list_pages_through_every_match(
    ironclad_url: str, api: IroncladApi, priced: PricedQuote
) -> None:
    for _ in range(3):
        await launch(api, priced, "deal-p")
    page = httpx.get(
        f"{ironclad_url}{API}/workflows",
        params={"pageSize": 2, "page": 1},
        headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"},
    ).json()
    assert (page["count"], len(page["list"]), page["page"]) == (3, 1, 1)


async def test_a_cancelled_or_completed_workflow_cannot_be_cancelled(
    ironclad_url: str, api: IroncladApi, priced: PricedQuote
) -> None:
    cancelled = await launch(api, priced)
    await api.cancel_workflow(cancelled["id"], "quote expired")
    with pytest.raises(IroncladHttpError) as again:
        await api.cancel_workflow(cancelled["id"], "again")
    assert again.value.code == "INVALID_STATE"
    signed = await launch(api, priced)
    httpx.post(f"{ironclad_url}/_sandbox/workflows/{signed['id']}/sign").raise_for_status()
    with pytest.raises(IroncladHttpError) as done:
        await api.cancel_workflow(signed["id"], "too late")
    assert done.value.code == "INVALID_STATE"
    refused = httpx.post(f"{ironclad_url}/_sandbox/workflows/{cancelled['id']}/sign")
    assert refused.json()["code"] == "INVALID_STATE"
    missing = httpx.get(
        f"{ironclad_url}{API}/workflows/nope",
        headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"},
    )
    assert (missing.status_code, missing.json()["param"]) == (404, "workflowId")


async def test_signing_completes_the_workflow_and_delivers_signed_events(
    ironclad_url: str, api: IroncladApi, priced: PricedQuote, receiver: Receiver
) -> None:
    workflow = await launch(api, priced)
    signed = httpx.post(
        f"{ironclad_url}/_sandbox/workflows/{workflow['id']}/sign",
        json={"signed_at": "2026-12-15T10:00:00Z"},
    ).json()
    assert signed["signedAt"] == "2026-12-15T10:00:00.000Z"
    read = await api.get_workflow(workflow["id"])
    assert (read["status"], read["step"], read["isComplete"]) == ("completed", "Complete", True)
    assert read["attributes"]["signed"][0]["lastModified"]["timestamp"] == signed["signedAt"]
    signers = (await api.get_signatures(workflow["id"]))["signers"]
    assert signers[0]["signatureStatus"] == {"status": "signed"}
    wait_for(lambda: len(receiver.received) >= 3)
    events = [b["payload"]["event"] for b in receiver.bodies()]
    assert events == [
        "workflow_launched",
        "workflow_signature_packet_fully_signed",
        "workflow_completed",
    ]
    key = await api.verification_key()
    for delivery in receiver.received:
        headers = delivery["headers"]
        event_id = headers["x-ironclad-webhook-event-id"]
        verification = headers["x-ironclad-webhook-verification"]
        assert json.loads(verification)["signAlgorithm"] == "RSA-SHA256"
        assert verify_with_key(key, event_id, delivery["body"], verification)
        assert not verify_with_key(key, event_id + "x", delivery["body"], verification)
    assert receiver.bodies()[2]["payload"]["workflowID"] == workflow["id"]


async def test_a_failed_delivery_is_retried_with_the_same_event_id_and_410_disables(
    ironclad_url: str, api: IroncladApi, priced: PricedQuote, receiver: Receiver
) -> None:
    receiver.statuses.extend([503, 500])
    await launch(api, priced)
    wait_for(lambda: len(receiver.received) >= 3)
    ids = {r["headers"]["x-ironclad-webhook-event-id"] for r in receiver.received}
    assert len(ids) == 1
    deliveries = httpx.get(f"{ironclad_url}/_sandbox/deliveries").json()["deliveries"]
    assert [a["statusCode"] for a in deliveries[0]["attempts"]] == [503, 500, 200]
    receiver.statuses.append(410)
    await launch(api, priced)
    wait_for(lambda: len(receiver.received) >= 4)

    def webhook() -> dict[str, Any]:
        hooks: list[dict[str, Any]] = httpx.get(f"{ironclad_url}/_sandbox/webhooks").json()[
            "webhooks"
        ]
        return hooks[0]

    wait_for(lambda: webhook()["status"] == "disabledBySystem")
    assert webhook()["targetURL"] == receiver.url


async def test_injected_rate_limits_carry_retry_after(ironclad_url: str, api: IroncladApi) -> None:
    httpx.post(
        f"{ironclad_url}/_sandbox/faults",
        json={"rules": [{"path": "/workflows", "rate_429": 1.0, "retry_after_s": 7}]},
    ).raise_for_status()
    with pytest.raises(IroncladHttpError) as caught:
        await api.get_workflow("any")
    assert (caught.value.status, caught.value.code) == (429, "TOO_MANY_REQUESTS")
    assert caught.value.headers["retry-after"] == "7"


async def test_a_rotated_key_signs_what_follows(
    ironclad_url: str, api: IroncladApi, priced: PricedQuote, receiver: Receiver
) -> None:
    old = await api.verification_key()
    new = httpx.post(f"{ironclad_url}/_sandbox/verification-key/rotate").text
    assert new != old and await api.verification_key() == new
    await launch(api, priced)
    wait_for(lambda: len(receiver.received) >= 1)
    delivery = receiver.received[0]
    args = (
        delivery["headers"]["x-ironclad-webhook-event-id"],
        delivery["body"],
        delivery["headers"]["x-ironclad-webhook-verification"],
    )
    assert verify_with_key(new, *args)
    assert not verify_with_key(old, *args)


async def test_workflows_and_the_signing_key_survive_a_restart(
    tmp_path: Path, priced: PricedQuote
) -> None:
    state = tmp_path / "ironclad.json"
    with serve_app(create_app(state)) as url:
        api = IroncladApi(url, api_key=SANDBOX_API_KEY)
        workflow = await launch(api, priced)
        key = await api.verification_key()
        await api.aclose()
    with serve_app(create_app(state)) as url:
        api = IroncladApi(url, api_key=SANDBOX_API_KEY)
        assert (await api.get_workflow(workflow["id"]))["status"] == "active"
        assert await api.verification_key() == key
        await api.aclose()
