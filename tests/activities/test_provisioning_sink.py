"""Provisioning against the product-backend emulator, which verifies the signature itself."""

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
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from integrations.product_backend.activities import HttpProductBackend
from integrations.product_backend.client import build_provisioning_client
from qtc import errors, ports
from qtc.catalog import load_catalog
from qtc.cpq import price_quote
from qtc.models import PricedQuote
from runtime.settings import SANDBOX_SECRETS, Settings
from sandbox.runner import RunningEmulators

ROOT = Path(__file__).resolve().parents[2]
SECRET = SecretStr(SANDBOX_SECRETS["provisioning_secret"])


@pytest.fixture(scope="module")
def priced() -> PricedQuote:
    quote = json.loads((ROOT / "examples" / "quote-phase3.json").read_text())
    return price_quote(quote, load_catalog(ROOT / "catalog.toml"), datetime.now(UTC))


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    client = build_provisioning_client(Settings())
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def provisioning(http: httpx.Client, emulators: RunningEmulators) -> HttpProductBackend:
    return HttpProductBackend(http, f"{emulators.provisioning_url}/v1/provision", SECRET)


@pytest.fixture
def sink(emulators: RunningEmulators) -> Iterator[httpx.Client]:
    """The sink's read and control endpoints; faults are always switched off afterwards."""
    client = httpx.Client(base_url=emulators.provisioning_url, timeout=10)
    try:
        yield client
    finally:
        client.post("/_sandbox/faults", json={"rules": []}).raise_for_status()
        client.close()


@pytest.fixture
def request_for(priced: PricedQuote) -> Callable[..., ports.ProvisionInput]:
    """A provisioning input for a fresh deal and tenant (or the ones given)."""

    def build(
        deal_id: str | None = None, tenant_id: str | None = None, quote: PricedQuote = priced
    ) -> ports.ProvisionInput:
        suffix = uuid.uuid4().hex[:10]
        return ports.ProvisionInput(
            deal_id=deal_id or f"deal-test-{suffix}",
            tenant_id=tenant_id or f"cus_test_{suffix}",
            priced=quote,
        )

    return build


def run(fn: Callable[..., Any], arg: Any) -> Any:
    return ActivityEnvironment().run(fn, arg)


def test_a_signed_request_provisions_the_tenant_with_the_signed_features(
    provisioning: HttpProductBackend,
    sink: httpx.Client,
    request_for: Callable[..., ports.ProvisionInput],
    priced: PricedQuote,
) -> None:
    ask = request_for()

    done = run(provisioning.provision_product, ask)

    assert done.tenant_id == ask.tenant_id
    assert set(done.features) == {line.sku for line in priced.lines}
    tenant = sink.get(f"/v1/tenants/{ask.tenant_id}").json()
    assert tenant["deals"] == [ask.deal_id]
    assert tenant["account_name"] == "Initech Ltd"
    assert tenant["features"] == done.features
    pro = next(line for line in priced.lines if line.sku == "PLATFORM-PRO")
    assert tenant["features"]["PLATFORM-PRO"]["seats"] == pro.quantity == 25


def test_provisioning_the_same_deal_twice_provisions_once(
    provisioning: HttpProductBackend,
    sink: httpx.Client,
    request_for: Callable[..., ports.ProvisionInput],
) -> None:
    ask = request_for()
    before = sink.get("/_sandbox/stats").json()

    first = run(provisioning.provision_product, ask)
    second = run(provisioning.provision_product, ask)

    after = sink.get("/_sandbox/stats").json()
    assert second == first
    assert after["provision_calls"] - before["provision_calls"] == 2
    assert after["distinct_keys"] - before["distinct_keys"] == 1
    assert after["duplicates"] - before["duplicates"] == 1
    assert after["tenants"] - before["tenants"] == 1


def test_a_wrong_secret_is_refused_and_not_retried(
    http: httpx.Client,
    emulators: RunningEmulators,
    sink: httpx.Client,
    request_for: Callable[..., ports.ProvisionInput],
) -> None:
    impostor = HttpProductBackend(
        http, f"{emulators.provisioning_url}/v1/provision", SecretStr("not-the-secret")
    )
    ask = request_for()

    with pytest.raises(ApplicationError) as caught:
        run(impostor.provision_product, ask)

    assert caught.value.non_retryable
    assert caught.value.type == errors.VENDOR_AUTHENTICATION
    assert sink.get(f"/v1/tenants/{ask.tenant_id}").status_code == 404


def test_a_different_contract_under_the_same_deal_is_a_conflict(
    provisioning: HttpProductBackend,
    request_for: Callable[..., ports.ProvisionInput],
    priced: PricedQuote,
) -> None:
    ask = request_for()
    run(provisioning.provision_product, ask)
    changed_lines = [
        line.model_copy(update={"quantity": line.quantity + 1}) for line in priced.lines
    ]
    changed = priced.model_copy(update={"lines": changed_lines})

    with pytest.raises(ApplicationError) as caught:
        run(
            provisioning.provision_product,
            request_for(deal_id=ask.deal_id, tenant_id=ask.tenant_id, quote=changed),
        )

    assert caught.value.non_retryable
    assert caught.value.type == errors.VENDOR_CONFLICT


def test_a_limit_written_quantity_is_sent_as_the_signed_quantity(
    provisioning: HttpProductBackend,
    sink: httpx.Client,
    request_for: Callable[..., ports.ProvisionInput],
    priced: PricedQuote,
) -> None:
    unresolved = [
        line.model_copy(update={"features": {"sso": True, "seats": "quantity"}})
        for line in priced.lines
    ]
    ask = request_for(quote=priced.model_copy(update={"lines": unresolved}))

    done = run(provisioning.provision_product, ask)

    expected = {line.sku: {"sso": True, "seats": line.quantity} for line in priced.lines}
    assert done.features == expected
    assert sink.get(f"/v1/tenants/{ask.tenant_id}").json()["features"] == expected


def test_a_busy_backend_is_retried_after_the_wait_it_asks_for(
    provisioning: HttpProductBackend,
    sink: httpx.Client,
    request_for: Callable[..., ports.ProvisionInput],
) -> None:
    rule = {"path": "/v1/provision", "rate_429": 1.0, "retry_after_s": 3}
    sink.post("/_sandbox/faults", json={"rules": [rule]}).raise_for_status()

    with pytest.raises(ApplicationError) as caught:
        run(provisioning.provision_product, request_for())

    assert not caught.value.non_retryable
    assert caught.value.type == errors.VENDOR_RATE_LIMITED
    assert caught.value.next_retry_delay == timedelta(seconds=3)


def test_a_backend_error_is_retried(
    provisioning: HttpProductBackend,
    sink: httpx.Client,
    request_for: Callable[..., ports.ProvisionInput],
) -> None:
    rule = {"path": "/v1/provision", "rate_500": 1.0}
    sink.post("/_sandbox/faults", json={"rules": [rule]}).raise_for_status()

    with pytest.raises(ApplicationError) as caught:
        run(provisioning.provision_product, request_for())

    assert not caught.value.non_retryable
    assert caught.value.type == errors.VENDOR_UNAVAILABLE


def test_an_unreachable_backend_is_retried(
    http: httpx.Client, request_for: Callable[..., ports.ProvisionInput]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    nowhere = HttpProductBackend(http, f"http://127.0.0.1:{closed_port}/v1/provision", SECRET)

    with pytest.raises(ApplicationError) as caught:
        run(nowhere.provision_product, request_for())

    assert not caught.value.non_retryable
    assert caught.value.type == errors.VENDOR_UNAVAILABLE


def test_a_signature_from_a_skewed_clock_is_refused(
    http: httpx.Client,
    emulators: RunningEmulators,
    request_for: Callable[..., ports.ProvisionInput],
) -> None:
    an_hour_ago = datetime.now(UTC).timestamp() - 3600
    skewed = HttpProductBackend(
        http, f"{emulators.provisioning_url}/v1/provision", SECRET, clock=lambda: an_hour_ago
    )

    with pytest.raises(ApplicationError) as caught:
        run(skewed.provision_product, request_for())

    assert caught.value.type == errors.VENDOR_AUTHENTICATION
    assert "300" in caught.value.message
