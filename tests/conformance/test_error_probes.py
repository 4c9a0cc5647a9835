"""Error probes: requests the real services refuse, each with the answer the vendor documents,
sent to the emulators through the vendors' own SDKs.

A defect that sends one of these would pass every other test here and fail on the first real
deal; each row is the request and the answer the vendor documents for it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import stripe
from docusign_esign import (
    ApiClient,
    EnvelopeDefinition,
    EnvelopesApi,
    TemplateRole,
)
from docusign_esign.client.api_exception import ApiException
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError

from runtime.signing import SIGNATURE_HEADER, sign
from sandbox.docusign.app import SANDBOX_TOKEN
from sandbox.docusign.envelopes import SANDBOX_TEMPLATE_ID
from sandbox.provisioning.app import SANDBOX_PROVISIONING_SECRET
from sandbox.runner import RunningEmulators
from sandbox.salesforce.client import sandbox_salesforce, sobject

OPPORTUNITY = "006000000000001AAA"
DS_ACCOUNT = "sandbox-account"


@dataclass(frozen=True)
class Answer:
    """What the vendor answers: HTTP status, its error code (Stripe: ``error.code``, or
    ``error.type`` where Stripe sends no code) and, where the vendor names it, the parameter."""

    status: int
    code: str
    param: str | None = None


@dataclass(frozen=True)
class Clients:
    stripe: stripe.StripeClient
    docusign: EnvelopesApi
    salesforce: Salesforce
    provisioning_url: str


@dataclass(frozen=True)
class Probe:
    name: str
    request: Callable[[Clients], object]
    answer: Answer
    documented: str


def _customer(c: Clients) -> str:
    return str(c.stripe.v1.customers.create(params={"name": "Probe"}).id)


def _schedule(c: Clients, **override: Any) -> object:
    params: dict[str, Any] = {
        "customer": _customer(c),
        "start_date": "now",
        "end_behavior": "cancel",
        "phases": [{"items": [{"price": _price(c)}], "duration": {"interval": "year"}}],
        **override,
    }
    return c.stripe.v1.subscription_schedules.create(params=params)  # type: ignore[arg-type]


def _price(c: Clients) -> str:
    product = c.stripe.v1.products.create(params={"name": "Probe"})
    price = c.stripe.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 100,
            "recurring": {"interval": "year"},
        }
    )
    return str(price.id)


def _opportunity(c: Clients) -> Any:
    return sobject(c.salesforce, "Opportunity")


def _envelope(email: str) -> EnvelopeDefinition:
    return EnvelopeDefinition(
        template_id=SANDBOX_TEMPLATE_ID,
        status="sent",
        template_roles=[TemplateRole(role_name="Signer", name="Jane Doe", email=email)],
    )


def _provision(c: Clients, body: dict[str, Any]) -> httpx.Response:
    raw = json.dumps(body).encode()
    response = httpx.post(
        f"{c.provisioning_url}/v1/provision",
        content=raw,
        headers={
            SIGNATURE_HEADER: sign(SANDBOX_PROVISIONING_SECRET, raw, int(time.time())),
            "Idempotency-Key": "probe-1",
            "Content-Type": "application/json",
        },
    )
    response.raise_for_status()
    return response


STRIPE_ERRORS = "Stripe API reference, Errors: invalid_request_error with the parameter"
PROBES = [
    Probe(
        "stripe: unknown tax-id type",
        lambda c: c.stripe.v1.customers.create(
            params={"tax_id_data": [{"type": "xx_vat", "value": "1"}]}
        ),
        Answer(400, "invalid_request_error", "tax_id_data[0][type]"),
        f"{STRIPE_ERRORS}; tax_id_data.type is an enum in Stripe's OpenAPI document",
    ),
    Probe(
        "stripe: tax_exempt outside its enum",
        lambda c: c.stripe.v1.customers.create(params={"tax_exempt": "sometimes"}),
        Answer(400, "invalid_request_error", "tax_exempt"),
        f"{STRIPE_ERRORS}; tax_exempt is one of none, exempt, reverse",
    ),
    Probe(
        "stripe: collection_method outside its enum",
        lambda c: c.stripe.v1.invoices.create(
            params={"customer": _customer(c), "collection_method": "by_carrier_pigeon"}
        ),
        Answer(400, "invalid_request_error", "collection_method"),
        f"{STRIPE_ERRORS}; collection_method is charge_automatically or send_invoice",
    ),
    Probe(
        "stripe: end_behavior outside its enum",
        lambda c: _schedule(c, end_behavior="explode"),
        Answer(400, "invalid_request_error", "end_behavior"),
        f"{STRIPE_ERRORS}; end_behavior is one of cancel, none, release, renew",
    ),
    Probe(
        "stripe: EU VAT number not in its format",
        lambda c: c.stripe.v1.customers.create(
            params={"tax_id_data": [{"type": "eu_vat", "value": "123"}]}
        ),
        Answer(400, "tax_id_invalid", "tax_id_data[0][value]"),
        "Stripe error codes: tax_id_invalid; customer tax IDs: the published format per type",
    ),
    Probe(
        "stripe: customer email that is no address",
        lambda c: c.stripe.v1.customers.create(params={"email": "ap at acme"}),
        Answer(400, "email_invalid", "email"),
        "Stripe error codes: email_invalid",
    ),
    Probe(
        "stripe: schedule for an unknown customer",
        lambda c: _schedule(c, customer="cus_doesnotexist"),
        Answer(400, "resource_missing", "customer"),
        "Stripe error codes: resource_missing, 400 when a parameter names a missing object",
    ),
    Probe(
        "stripe: price for an unknown product",
        lambda c: c.stripe.v1.prices.create(
            params={"product": "prod_doesnotexist", "currency": "usd", "unit_amount": 100}
        ),
        Answer(400, "resource_missing", "product"),
        "Stripe error codes: resource_missing, 400 when a parameter names a missing object",
    ),
    Probe(
        "stripe: unknown customer in the URL",
        lambda c: c.stripe.v1.customers.retrieve("cus_doesnotexist"),
        Answer(404, "resource_missing", "id"),
        "Stripe API reference, Errors: 404 when the requested resource does not exist",
    ),
    Probe(
        "stripe: expanding a property that is not expandable",
        lambda c: c.stripe.v1.customers.retrieve(_customer(c), params={"expand": ["email"]}),
        Answer(400, "invalid_request_error", "expand"),
        "Stripe API reference, Expanding responses: only fields marked expandable",
    ),
    Probe(
        "docusign: envelope that does not exist",
        lambda c: c.docusign.get_envelope(DS_ACCOUNT, "00000000-0000-0000-0000-000000000000"),
        Answer(400, "ENVELOPE_DOES_NOT_EXIST"),
        "DocuSign eSignature API: Envelopes:get answers 200 or 400 errorDetails",
    ),
    Probe(
        "docusign: malformed envelope id",
        lambda c: c.docusign.get_envelope(DS_ACCOUNT, "not-a-guid"),
        Answer(400, "INVALID_REQUEST_PARAMETER"),
        "DocuSign eSignature API error codes: INVALID_REQUEST_PARAMETER",
    ),
    Probe(
        "docusign: recipient email that is not an address",
        lambda c: c.docusign.create_envelope(DS_ACCOUNT, envelope_definition=_envelope("jane")),
        Answer(400, "INVALID_EMAIL_ADDRESS_FOR_RECIPIENT"),
        "DocuSign eSignature API error codes: INVALID_EMAIL_ADDRESS_FOR_RECIPIENT",
    ),
    Probe(
        "docusign: status filter that is no envelope status",
        lambda c: c.docusign.list_status_changes(
            DS_ACCOUNT, from_date="2020-01-01", status="explode"
        ),
        Answer(400, "INVALID_REQUEST_PARAMETER"),
        "DocuSign Envelopes:listStatusChanges: status is a list of envelope statuses",
    ),
    Probe(
        "salesforce: stage outside the restricted picklist",
        lambda c: _opportunity(c).update(OPPORTUNITY, {"StageName": "Exploded"}),
        Answer(400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
        "Salesforce API error codes: INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
    ),
    Probe(
        "salesforce: path segment that is no record id",
        lambda c: _opportunity(c).get("not-an-id"),
        Answer(404, "NOT_FOUND"),
        "Salesforce REST API: sObject Rows, NOT_FOUND for an id or external id that is not found",
    ),
    Probe(
        "salesforce: email field that is no address",
        lambda c: _opportunity(c).update(OPPORTUNITY, {"QTC_Signer_Email__c": "jane"}),
        Answer(400, "INVALID_EMAIL_ADDRESS"),
        "Salesforce API error codes: INVALID_EMAIL_ADDRESS",
    ),
    Probe(
        "salesforce: reference field that is no record id",
        lambda c: _opportunity(c).update(OPPORTUNITY, {"AccountId": "acme"}),
        Answer(400, "MALFORMED_ID"),
        "Salesforce API error codes: MALFORMED_ID",
    ),
    Probe(
        "provisioning: quantity below one",
        lambda c: _provision(
            c,
            {
                "tenant_id": "cus_1",
                "deal_id": "deal-1",
                "account_name": "Acme",
                "skus": [{"sku": "PLATFORM-PRO", "quantity": 0}],
            },
        ),
        Answer(422, "invalid-request"),
        "the product backend's contract (sandbox/provisioning): 422 problem+json",
    ),
]


@pytest.fixture
def clients(reset_emulators: RunningEmulators) -> Iterator[Clients]:
    docusign = ApiClient(host=f"{reset_emulators.docusign_url}/restapi")
    docusign.set_default_header("Authorization", f"Bearer {SANDBOX_TOKEN}")
    salesforce = sandbox_salesforce(
        reset_emulators.salesforce_url, reset_emulators.salesforce_ca_file
    )
    yield Clients(
        stripe=stripe.StripeClient(
            "sk_test_sandbox",
            base_addresses={"api": reset_emulators.stripe_url},
            max_network_retries=0,
        ),
        docusign=EnvelopesApi(docusign),
        salesforce=salesforce,
        provisioning_url=reset_emulators.provisioning_url,
    )
    salesforce.session.close()


def _answer_of(exc: BaseException) -> Answer:
    if isinstance(exc, stripe.StripeError):
        error = exc.error
        assert error is not None
        return Answer(exc.http_status or 0, error.code or error.type or "", error.param)
    if isinstance(exc, ApiException):
        return Answer(exc.status, json.loads(exc.body)["errorCode"])
    if isinstance(exc, SalesforceError):
        content: Any = exc.content
        return Answer(exc.status, content[0]["errorCode"])
    if isinstance(exc, httpx.HTTPStatusError):
        slug = exc.response.json()["type"].rsplit("/", 1)[-1]
        return Answer(exc.response.status_code, slug)
    raise AssertionError(f"not a vendor's error: {exc!r}")


@pytest.mark.parametrize("probe", PROBES, ids=[p.name for p in PROBES])
def test_the_emulator_answers_as_the_vendor_documents(probe: Probe, clients: Clients) -> None:
    with pytest.raises(Exception) as caught:
        probe.request(clients)

    answer = _answer_of(caught.value)
    expected = probe.answer
    assert (answer.status, answer.code) == (expected.status, expected.code), probe.documented
    if expected.param is not None:
        assert answer.param == expected.param, probe.documented
