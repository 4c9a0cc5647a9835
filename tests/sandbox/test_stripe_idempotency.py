"""Idempotency keys: replays, mismatches, lost responses, concurrent duplicates, expiry."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import stripe

from tests.sandbox.conftest import ClockedStripe, make_stripe_client, raw_params

KEY = "qtc:deal-006A:customer"


def _customers(url: str) -> int:
    return int(httpx.get(f"{url}/_sandbox/stats").json()["objects"]["customer"])


def _slow_customer_creation(url: str, latency_ms: int) -> None:
    rule = {"path": "^/v1/customers$", "method": "POST", "latency_ms": latency_ms}
    httpx.post(f"{url}/_sandbox/faults", json={"rules": [rule]}).raise_for_status()


def test_same_key_and_parameters_replays_the_identical_response(
    stripe_client: stripe.StripeClient, stripe_url: str
) -> None:
    params: stripe.params.CustomerCreateParams = {"name": "Acme", "metadata": {"deal_id": "d1"}}

    first = stripe_client.v1.customers.create(params=params, options={"idempotency_key": KEY})
    again = stripe_client.v1.customers.create(params=params, options={"idempotency_key": KEY})

    assert again.id == first.id
    assert first.last_response is not None and again.last_response is not None
    assert again.last_response.body == first.last_response.body
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert _customers(stripe_url) == 1


def test_same_key_with_different_parameters_is_an_idempotency_error(
    stripe_client: stripe.StripeClient, stripe_url: str
) -> None:
    stripe_client.v1.customers.create(params={"name": "Acme"}, options={"idempotency_key": KEY})

    with pytest.raises(stripe.IdempotencyError) as caught:
        stripe_client.v1.customers.create(
            params={"name": "Other"}, options={"idempotency_key": KEY}
        )

    assert caught.value.http_status == 400
    assert _customers(stripe_url) == 1


def test_same_key_on_another_endpoint_is_an_idempotency_error(
    stripe_client: stripe.StripeClient,
) -> None:
    stripe_client.v1.customers.create(params={"name": "Acme"}, options={"idempotency_key": KEY})

    with pytest.raises(stripe.IdempotencyError):
        stripe_client.v1.products.create(params={"name": "Acme"}, options={"idempotency_key": KEY})


def test_created_then_crashed_call_retried_with_the_same_key_creates_nothing_new(
    stripe_url: str,
) -> None:
    # The emulator creates the customer, but only after the client has given up waiting: the
    # caller sees a connection failure although Stripe did the work, as in a worker crash.
    _slow_customer_creation(stripe_url, latency_ms=1200)
    impatient = make_stripe_client(stripe_url, timeout_s=0.3)
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.customers.create(params={"name": "Acme"}, options={"idempotency_key": KEY})
    httpx.post(f"{stripe_url}/_sandbox/faults", json={"rules": []}).raise_for_status()
    deadline = time.monotonic() + 5
    while _customers(stripe_url) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)

    retried = make_stripe_client(stripe_url).v1.customers.create(
        params={"name": "Acme"}, options={"idempotency_key": KEY}
    )

    assert _customers(stripe_url) == 1
    assert retried.last_response is not None
    assert retried.last_response.headers["Idempotent-Replayed"] == "true"
    assert [c.id for c in make_stripe_client(stripe_url).v1.customers.list().data] == [retried.id]


def test_duplicate_sent_while_the_first_is_running_is_a_conflict(stripe_url: str) -> None:
    _slow_customer_creation(stripe_url, latency_ms=800)
    client = make_stripe_client(stripe_url)
    first: list[stripe.Customer] = []
    worker = threading.Thread(
        target=lambda: first.append(
            client.v1.customers.create(params={"name": "Acme"}, options={"idempotency_key": KEY})
        )
    )
    worker.start()
    time.sleep(0.3)

    with pytest.raises(stripe.APIError) as caught:
        client.v1.customers.create(params={"name": "Acme"}, options={"idempotency_key": KEY})
    worker.join()

    assert caught.value.http_status == 409
    assert caught.value.json_body["error"]["type"] == "idempotency_error"  # type: ignore[index]
    assert len(first) == 1 and _customers(stripe_url) == 1


def test_requests_refused_before_running_leave_the_key_usable(
    stripe_client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.customers.create(
            params=raw_params({"nmae": "Acme"}),
            options={"idempotency_key": KEY},
        )

    created = stripe_client.v1.customers.create(
        params={"name": "Acme"}, options={"idempotency_key": KEY}
    )

    assert created.name == "Acme"


def test_keys_are_forgotten_after_24_hours(stripe_clocked: ClockedStripe) -> None:
    client, clock = stripe_clocked.client, stripe_clocked.clock
    first = client.v1.customers.create(params={"name": "Acme"}, options={"idempotency_key": KEY})

    clock.advance(23 * 3600)
    replay = client.v1.customers.create(params={"name": "Acme"}, options={"idempotency_key": KEY})
    clock.advance(2 * 3600)
    fresh = client.v1.customers.create(params={"name": "Acme"}, options={"idempotency_key": KEY})

    assert replay.id == first.id
    assert fresh.id != first.id


def test_many_threads_creating_at_once_get_distinct_customers_and_keys_hold(
    stripe_url: str,
) -> None:
    client = make_stripe_client(stripe_url, max_network_retries=3)
    created: list[str] = []
    lock = threading.Lock()

    def create(n: int) -> None:
        for attempt in range(2):
            customer = client.v1.customers.create(
                params={"name": f"c{n}"}, options={"idempotency_key": f"k-{n}"}
            )
            with lock:
                created.append(f"{n}:{attempt}:{customer.id}")

    threads = [threading.Thread(target=create, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ids_by_n: dict[str, set[str]] = {}
    for entry in created:
        n, _, cid = entry.split(":")
        ids_by_n.setdefault(n, set()).add(cid)
    assert len(created) == 32
    assert all(len(ids) == 1 for ids in ids_by_n.values())
    assert _customers(stripe_url) == 16
