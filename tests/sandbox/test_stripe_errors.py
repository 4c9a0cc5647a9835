"""Bad input and injected faults reach the SDK as the exception Stripe would cause."""

from __future__ import annotations

import base64

import httpx
import pytest
import stripe

from tests.sandbox.conftest import make_stripe_client, raw_params


def _faults(url: str, **rule: object) -> None:
    httpx.post(f"{url}/_sandbox/faults", json={"rules": [rule], "seed": 1}).raise_for_status()


def test_unknown_nested_parameter_is_rejected_naming_the_parameter(
    stripe_client: stripe.StripeClient,
) -> None:
    customer = stripe_client.v1.customers.create(params={"name": "Acme"})

    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.subscriptions.create(
            params=raw_params({"customer": customer.id, "items": [{"pricee": "price_x"}]})
        )

    assert caught.value.code == "parameter_unknown"
    assert caught.value.param == "items[0][pricee]"
    assert caught.value.http_status == 400


def test_missing_required_parameter_and_bad_integer_are_invalid_requests(
    stripe_client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        stripe_client.v1.prices.create(params=raw_params({"unit_amount": 100, "product": "x"}))
    with pytest.raises(stripe.InvalidRequestError) as bad_int:
        stripe_client.v1.prices.create(
            params=raw_params({"currency": "usd", "unit_amount": "ten", "product": "x"})
        )

    assert (missing.value.code, missing.value.param) == ("parameter_missing", "currency")
    assert (bad_int.value.code, bad_int.value.param) == ("parameter_invalid_integer", "unit_amount")


def test_unknown_object_is_resource_missing(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.customers.retrieve("cus_nope")
    with pytest.raises(stripe.InvalidRequestError) as referenced:
        stripe_client.v1.subscriptions.create(
            params={"customer": "cus_nope", "items": [{"price": "price_nope"}]}
        )

    assert caught.value.http_status == 404 and caught.value.code == "resource_missing"
    # Named in the body rather than the URL, a missing object is a bad request, not a 404.
    assert referenced.value.http_status == 400 and referenced.value.code == "resource_missing"
    assert referenced.value.param == "customer"


def test_wrong_api_key_is_an_authentication_error(stripe_url: str) -> None:
    client = make_stripe_client(stripe_url, api_key="sk_test_wrong_key_1234")

    with pytest.raises(stripe.AuthenticationError) as caught:
        client.v1.customers.list()

    assert caught.value.http_status == 401
    assert "sk_test_wrong_key_1234" not in str(caught.value.user_message)


def test_basic_auth_with_the_key_as_user_is_accepted(stripe_url: str) -> None:
    token = base64.b64encode(b"sk_test_sandbox:").decode()

    response = httpx.get(f"{stripe_url}/v1/customers", headers={"Authorization": f"Basic {token}"})
    anonymous = httpx.get(f"{stripe_url}/v1/customers")

    assert response.status_code == 200 and response.json()["object"] == "list"
    assert (
        anonymous.status_code == 401
        and anonymous.json()["error"]["type"] == "invalid_request_error"
    )


def test_declined_card_is_a_card_error(stripe_client: stripe.StripeClient) -> None:
    customer = stripe_client.v1.customers.create(params={"name": "Acme"})
    stripe_client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 500, "currency": "usd"}
    )
    invoice = stripe_client.v1.invoices.create(
        params={"customer": customer.id, "pending_invoice_items_behavior": "include"}
    )

    with pytest.raises(stripe.CardError) as caught:
        stripe_client.v1.invoices.pay(
            invoice.id, params={"payment_method": "pm_card_chargeDeclined"}
        )

    assert caught.value.http_status == 402 and caught.value.code == "card_declined"
    assert stripe_client.v1.invoices.retrieve(invoice.id).status == "open"


def test_injected_rate_limit_is_a_rate_limit_error_with_retry_after(
    stripe_client: stripe.StripeClient, stripe_url: str
) -> None:
    _faults(stripe_url, path="^/v1/customers$", method="POST", rate_429=1.0, retry_after_s=7)

    with pytest.raises(stripe.RateLimitError) as caught:
        stripe_client.v1.customers.create(params={"name": "Acme"})

    assert caught.value.http_status == 429
    assert caught.value.headers is not None and caught.value.headers["Retry-After"] == "7"
    stats = httpx.get(f"{stripe_url}/_sandbox/stats").json()
    assert stats["faults_injected"]["429"] == 1 and stats["objects"]["customer"] == 0
    assert stripe_client.v1.customers.list().data == []


def test_injected_server_error_is_an_api_error_and_creates_nothing(
    stripe_client: stripe.StripeClient, stripe_url: str
) -> None:
    _faults(stripe_url, path="^/v1/customers", rate_500=1.0)

    with pytest.raises(stripe.APIError) as caught:
        stripe_client.v1.customers.create(params={"name": "Acme"})

    assert caught.value.http_status == 500
    assert httpx.get(f"{stripe_url}/_sandbox/stats").json()["objects"]["customer"] == 0


def test_sdk_retries_through_transient_server_errors(
    stripe_client: stripe.StripeClient, stripe_url: str
) -> None:
    _faults(stripe_url, path="^/v1/customers$", rate_500=0.5)
    retrying = make_stripe_client(stripe_url, max_network_retries=8)

    for _ in range(2):
        retrying.v1.customers.create(params={"name": "Acme"})

    stats = httpx.get(f"{stripe_url}/_sandbox/stats").json()
    assert stats["objects"]["customer"] == 2 and stats["faults_injected"]["500"] >= 1


def test_invalid_fault_configuration_is_refused(stripe_url: str) -> None:
    response = httpx.post(f"{stripe_url}/_sandbox/faults", json={"rules": [{"rate_429": 3}]})

    assert response.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        "items[0][price=x",
        "name=a&name[first]=b",
        "%ff%fe=1",
        '{"name": "json is not form encoding"}',
    ],
)
def test_malformed_form_bodies_are_invalid_requests_not_server_errors(
    stripe_url: str, body: str
) -> None:
    response = httpx.post(
        f"{stripe_url}/v1/customers",
        content=body.encode("latin-1"),
        headers={
            "Authorization": "Bearer sk_test_sandbox",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_curl_style_expand_brackets_are_understood(
    stripe_client: stripe.StripeClient, stripe_url: str
) -> None:
    customer = stripe_client.v1.customers.create(params={"name": "Acme"})
    stripe_client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 5, "currency": "usd"}
    )

    response = httpx.get(
        f"{stripe_url}/v1/invoiceitems?expand[]=data.customer",
        headers={"Authorization": "Bearer sk_test_sandbox"},
    )

    assert response.json()["data"][0]["customer"]["name"] == "Acme"


def test_oversized_body_is_an_invalid_request(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.customers.create(params={"description": "x" * 2_100_000})

    assert caught.value.http_status == 400


def test_unknown_url_is_a_not_found_invalid_request(stripe_url: str) -> None:
    response = httpx.get(
        f"{stripe_url}/v1/teleporters", headers={"Authorization": "Bearer sk_test_sandbox"}
    )

    assert response.status_code == 404
    assert "Unrecognized request URL" in response.json()["error"]["message"]
