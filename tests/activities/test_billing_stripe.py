"""The billing activities against the Stripe emulator, through the real stripe SDK over HTTP."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest
import requests
import stripe
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from integrations.stripe import plan
from integrations.stripe.activities import StripeBilling
from integrations.stripe.client import build_stripe_client
from qtc import errors
from qtc.deal import deal_id_for
from qtc.models import PricedQuote
from qtc.ports import (
    CreateCustomerInput,
    CreateSubscriptionInput,
    SendInvoiceInput,
    SubscriptionCreated,
)
from runtime.http import PooledSession
from runtime.settings import Settings
from sandbox.stripe.testing import serve_stripe_emulator
from tests.activities.billing_deals import days_ago, design_example, priced, stub_deal

API_KEY = "sk_test_sandbox"
_opportunities = itertools.count(1)


@pytest.fixture(scope="module")
def stripe_base() -> Iterator[str]:
    """The Stripe emulator on an ephemeral port, served by uvicorn in a thread."""
    with serve_stripe_emulator(api_key=API_KEY) as url:
        yield url


@pytest.fixture(scope="module")
def client(stripe_base: str) -> stripe.StripeClient:
    return build_stripe_client(Settings(stripe_api_base=stripe_base))


@pytest.fixture(scope="module")
def billing(client: stripe.StripeClient) -> StripeBilling:
    return StripeBilling(client)


@pytest.fixture
def faults(stripe_base: str) -> Iterator[httpx.Client]:
    """The emulator's fault switch; every test leaves it off."""
    with httpx.Client(base_url=stripe_base) as control:
        yield control
        control.post("/_sandbox/faults", json={"rules": []}).raise_for_status()


def new_opportunity() -> str:
    """A fresh opportunity per deal so tests sharing the emulator never see each other's objects."""
    return f"006T{next(_opportunities):011d}{int(time.time() * 1000) % 10**6:06d}"


def fresh(quote: PricedQuote) -> PricedQuote:
    return quote.model_copy(update={"opportunity_id": new_opportunity()})


def run_billing(billing: StripeBilling, quote: PricedQuote) -> tuple[str, SubscriptionCreated]:
    env = ActivityEnvironment()
    deal_id = deal_id_for(quote.opportunity_id)
    customer = env.run(
        billing.create_billing_customer, CreateCustomerInput(deal_id=deal_id, priced=quote)
    )
    created = env.run(
        billing.create_subscription,
        CreateSubscriptionInput(deal_id=deal_id, customer_id=customer.customer_id, priced=quote),
    )
    return customer.customer_id, created


def send_input(
    quote: PricedQuote, customer_id: str, created: SubscriptionCreated
) -> SendInvoiceInput:
    return SendInvoiceInput(
        deal_id=deal_id_for(quote.opportunity_id),
        customer_id=customer_id,
        subscription_id=created.subscription_id,
        priced=quote,
    )


def create_products(client: stripe.StripeClient, quote: PricedQuote) -> None:
    """The quote's products, as an earlier attempt of the deal would have left them."""
    existing = {p.id for p in client.v1.products.list(params={"limit": 100}).auto_paging_iter()}
    for line in quote.lines:
        if plan.product_id_for(line.sku) not in existing:
            client.v1.products.create(
                params={"id": plan.product_id_for(line.sku), "name": line.name}
            )


def midnight(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def invoice_lines(client: stripe.StripeClient, invoice_id: str) -> list[tuple[str, int, int, int]]:
    """(product, quantity, unit amount, amount) of every line of a Stripe invoice, sorted."""
    invoice = client.v1.invoices.retrieve(invoice_id)
    rows = []
    for line in invoice.lines.data:
        assert line.pricing is not None and line.pricing.price_details is not None
        unit = line.pricing.unit_amount_decimal
        rows.append(
            (line.pricing.price_details.product, line.quantity or 0, int(unit or 0), line.amount)
        )
    return sorted(rows)


def quoted_lines(quote: PricedQuote) -> list[tuple[str, int, int, int]]:
    return sorted(
        (plan.product_id_for(line.sku), line.quantity, line.unit_amount_minor, line.amount_minor)
        for line in quote.invoices[0].lines
    )


def sent_events(client: stripe.StripeClient, invoice_id: str) -> int:
    events = client.v1.events.list(params={"type": "invoice.sent", "limit": 100})
    return sum(1 for event in events.auto_paging_iter() if event.data.object["id"] == invoice_id)


# --- the documented example: 36 months, annual, 7% uplift -----------------------------------------


def test_the_design_example_becomes_a_schedule_with_one_uplifted_phase_per_year(
    billing: StripeBilling, client: stripe.StripeClient
) -> None:
    quote = fresh(design_example(days_ago(20)))
    customer_id, created = run_billing(billing, quote)

    assert created.schedule_id is not None
    schedule = client.v1.subscription_schedules.retrieve(created.schedule_id)
    unit_amounts = [
        client.v1.prices.retrieve(str(phase.items[0].price)).unit_amount
        for phase in schedule.phases
    ]
    assert unit_amounts == [129600, 138672, 148379]
    assert [phase.items[0].quantity for phase in schedule.phases] == [50, 50, 50]
    assert [phase.end_date for phase in schedule.phases] == [
        midnight(quote.term_start.replace(year=quote.term_start.year + k)) for k in (1, 2, 3)
    ]
    assert schedule.phases[0].start_date == midnight(quote.start_date)
    assert schedule.end_behavior == "cancel"
    assert schedule.default_settings.collection_method == "send_invoice"
    assert schedule.default_settings.invoice_settings.days_until_due == 30
    assert schedule.metadata is not None
    assert schedule.metadata["deal_id"] == deal_id_for(quote.opportunity_id)
    subscription = client.v1.subscriptions.retrieve(created.subscription_id)
    assert subscription.customer == customer_id
    assert subscription.metadata["deal_id"] == deal_id_for(quote.opportunity_id)

    customer = client.v1.customers.retrieve(customer_id)
    assert (customer.name, customer.email) == ("Acme Robotics, Inc.", "ap@acme.example")
    assert customer.address is not None and customer.address.postal_code == "78701"
    assert customer.metadata is not None and customer.metadata["quote_id"] == "Q-1001"
    tax_ids = client.v1.customers.tax_ids.list(customer_id)
    assert [(t.type, t.value) for t in tax_ids.data] == [("us_ein", "12-3456789")]


def test_the_design_examples_first_invoice_is_the_quoted_one_and_is_sent(
    billing: StripeBilling, client: stripe.StripeClient
) -> None:
    quote = fresh(design_example(days_ago(20)))
    customer_id, created = run_billing(billing, quote)

    sent = ActivityEnvironment().run(
        billing.send_first_invoice, send_input(quote, customer_id, created)
    )

    assert sent.invoice_id == created.invoice_id
    assert sent.total_minor == 6980000 == quote.invoices[0].total_minor
    assert sent.status == "open"
    assert sent.number and sent.invoice_url
    assert invoice_lines(client, sent.invoice_id) == quoted_lines(quote)
    assert sent_events(client, sent.invoice_id) == 1


# --- a monthly EUR deal with a first-of-month stub ---------------------------------------------


def test_a_stub_deal_bills_the_stub_and_one_time_lines_on_its_own_first_invoice(
    billing: StripeBilling, client: stripe.StripeClient
) -> None:
    quote = fresh(stub_deal(days_ago(40, avoid_first=True)))
    customer_id, created = run_billing(billing, quote)
    assert plan.has_stub(quote)

    sent = ActivityEnvironment().run(
        billing.send_first_invoice, send_input(quote, customer_id, created)
    )

    assert sent.invoice_id == created.invoice_id
    assert sent.total_minor == quote.invoices[0].total_minor
    invoice = client.v1.invoices.retrieve(sent.invoice_id)
    assert invoice.currency == "eur"
    assert invoice_lines(client, sent.invoice_id) == quoted_lines(quote)
    assert created.schedule_id is not None
    schedule = client.v1.subscription_schedules.retrieve(created.schedule_id)
    assert schedule.phases[0].start_date == midnight(quote.term_start)
    assert schedule.phases[0].add_invoice_items == []


def test_a_stub_deal_signed_today_sends_the_stub_before_the_subscription_starts(
    billing: StripeBilling, client: stripe.StripeClient
) -> None:
    quote = fresh(stub_deal(days_ago(0, avoid_first=True)))
    customer_id, created = run_billing(billing, quote)

    assert created.schedule_id is not None
    schedule = client.v1.subscription_schedules.retrieve(created.schedule_id)
    assert schedule.status == "not_started"
    assert created.subscription_id == created.schedule_id
    sent = ActivityEnvironment().run(
        billing.send_first_invoice, send_input(quote, customer_id, created)
    )
    assert sent.total_minor == quote.invoices[0].total_minor
    assert sent_events(client, sent.invoice_id) == 1


# --- idempotency --------------------------------------------------------------------------------


def test_running_every_billing_step_twice_makes_one_customer_one_schedule_and_one_sending(
    billing: StripeBilling, client: stripe.StripeClient
) -> None:
    quote = fresh(design_example(days_ago(10)))
    deal_id = deal_id_for(quote.opportunity_id)
    first_customer, first = run_billing(billing, quote)
    second_customer, second = run_billing(billing, quote)
    env = ActivityEnvironment()
    once = env.run(billing.send_first_invoice, send_input(quote, first_customer, first))
    twice = env.run(billing.send_first_invoice, send_input(quote, second_customer, second))

    assert (second_customer, second) == (first_customer, first)
    assert once == twice
    customers = client.v1.customers.list(params={"email": "ap@acme.example", "limit": 100})
    ours = [
        c.id
        for c in customers.auto_paging_iter()
        if c.metadata is not None and "deal_id" in c.metadata and c.metadata["deal_id"] == deal_id
    ]
    assert ours == [first_customer]
    schedules = client.v1.subscription_schedules.list(params={"customer": first_customer})
    assert len(schedules.data) == 1
    invoices = client.v1.invoices.list(params={"customer": first_customer})
    assert [i.id for i in invoices.data] == [once.invoice_id]
    assert sent_events(client, once.invoice_id) == 1


def test_an_invoice_sent_before_a_crash_is_not_sent_again(
    billing: StripeBilling, client: stripe.StripeClient
) -> None:
    quote = fresh(design_example(days_ago(5)))
    customer_id, created = run_billing(billing, quote)
    assert created.invoice_id is not None
    # The earlier attempt finalized and sent (with the deal's keys, as the activity does), then
    # died before recording it on the invoice.
    deal_id = deal_id_for(quote.opportunity_id)
    client.v1.invoices.finalize_invoice(
        created.invoice_id,
        params={"auto_advance": False},
        options={"idempotency_key": f"qtc:{deal_id}:invoice-finalize"},
    )
    client.v1.invoices.send_invoice(
        created.invoice_id, options={"idempotency_key": f"qtc:{deal_id}:invoice-send"}
    )

    sent = ActivityEnvironment().run(
        billing.send_first_invoice, send_input(quote, customer_id, created)
    )

    assert sent.status == "open"
    assert sent_events(client, created.invoice_id) == 1


def test_a_stub_invoice_left_half_built_by_a_crash_is_completed_without_duplicates(
    billing: StripeBilling, client: stripe.StripeClient
) -> None:
    quote = fresh(stub_deal(days_ago(40, avoid_first=True)))
    deal_id = deal_id_for(quote.opportunity_id)
    customer = ActivityEnvironment().run(
        billing.create_billing_customer, CreateCustomerInput(deal_id=deal_id, priced=quote)
    )
    # A day-old attempt (its idempotency keys long expired) made the products, the invoice and
    # its first item, then died.
    create_products(client, quote)
    invoice = client.v1.invoices.create(
        params=plan.stub_invoice_params(deal_id, customer.customer_id, quote)
    )
    first_item = plan.stub_invoice_items(deal_id, customer.customer_id, invoice.id, quote)[0]
    client.v1.invoice_items.create(params=first_item)

    created = ActivityEnvironment().run(
        billing.create_subscription,
        CreateSubscriptionInput(deal_id=deal_id, customer_id=customer.customer_id, priced=quote),
    )

    assert created.invoice_id == invoice.id
    assert invoice_lines(client, invoice.id) == quoted_lines(quote)


# --- reconciliation ----------------------------------------------------------------------------


def test_an_invoice_that_differs_from_the_quote_is_held_and_shows_both_sides(
    billing: StripeBilling, client: stripe.StripeClient
) -> None:
    quote = fresh(design_example(days_ago(3)))
    customer_id, created = run_billing(billing, quote)
    assert created.invoice_id is not None
    # Someone adds a line to the draft in the Stripe dashboard before it goes out.
    client.v1.invoice_items.create(
        params={
            "customer": customer_id,
            "invoice": created.invoice_id,
            "price_data": {
                "currency": "usd",
                "product": plan.product_id_for("PLATFORM-PRO"),
                "unit_amount": 9900,
            },
            "quantity": 2,
        }
    )

    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(
            billing.send_first_invoice, send_input(quote, customer_id, created)
        )

    failure = raised.value
    assert (failure.type, failure.non_retryable) == (errors.INVOICE_MISMATCH, True)
    (details,) = failure.details
    assert details["total_minor"] == {"expected": 6980000, "actual": 6980000 + 19800}
    assert details["unexpected_in_stripe"] == [
        {"sku": "PLATFORM-PRO", "quantity": 2, "unit_amount_minor": 9900, "amount_minor": 19800}
    ]
    assert details["missing_in_stripe"] == []
    assert len(details["expected_lines"]) == 2 and len(details["actual_lines"]) == 3
    invoice = client.v1.invoices.retrieve(created.invoice_id)
    assert invoice.status == "draft"
    assert sent_events(client, created.invoice_id) == 0


# --- vendor error classification ---------------------------------------------------------------


def test_an_invalid_api_key_fails_the_step_for_good(stripe_base: str) -> None:
    settings = Settings(stripe_api_base=stripe_base, stripe_api_key=SecretStr("sk_test_wrong"))
    billing = StripeBilling(build_stripe_client(settings))
    quote = fresh(design_example(days_ago(1)))

    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(
            billing.create_billing_customer,
            CreateCustomerInput(deal_id=deal_id_for(quote.opportunity_id), priced=quote),
        )

    assert (raised.value.type, raised.value.non_retryable) == (errors.VENDOR_AUTHENTICATION, True)


def test_subscribing_a_customer_stripe_does_not_know_is_not_retried(
    billing: StripeBilling,
) -> None:
    quote = fresh(design_example(days_ago(1)))

    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(
            billing.create_subscription,
            CreateSubscriptionInput(
                deal_id=deal_id_for(quote.opportunity_id), customer_id="cus_missing", priced=quote
            ),
        )

    assert raised.value.non_retryable
    assert raised.value.type in (errors.VENDOR_NOT_FOUND, errors.VENDOR_INVALID_REQUEST)


def test_a_rate_limited_stripe_is_retried_after_its_retry_after(
    billing: StripeBilling, faults: httpx.Client
) -> None:
    faults.post(
        "/_sandbox/faults",
        json={"rules": [{"path": "^/v1/customers", "rate_429": 1.0, "retry_after_s": 7}]},
    ).raise_for_status()
    quote = fresh(design_example(days_ago(1)))

    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(
            billing.create_billing_customer,
            CreateCustomerInput(deal_id=deal_id_for(quote.opportunity_id), priced=quote),
        )

    assert (raised.value.type, raised.value.non_retryable) == (errors.VENDOR_RATE_LIMITED, False)
    assert raised.value.next_retry_delay == timedelta(seconds=7)


def test_a_failing_stripe_is_retried(billing: StripeBilling, faults: httpx.Client) -> None:
    faults.post(
        "/_sandbox/faults", json={"rules": [{"path": "^/v1/customers", "rate_500": 1.0}]}
    ).raise_for_status()
    quote = fresh(design_example(days_ago(1)))

    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(
            billing.create_billing_customer,
            CreateCustomerInput(deal_id=deal_id_for(quote.opportunity_id), priced=quote),
        )

    assert (raised.value.type, raised.value.non_retryable) == (errors.VENDOR_UNAVAILABLE, False)


def test_an_unreachable_stripe_is_retried() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings = Settings(stripe_api_base=f"http://127.0.0.1:{closed_port}", stripe_timeout_seconds=2)
    billing = StripeBilling(build_stripe_client(settings))
    quote = fresh(design_example(days_ago(1)))

    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(
            billing.create_billing_customer,
            CreateCustomerInput(deal_id=deal_id_for(quote.opportunity_id), priced=quote),
        )

    assert (raised.value.type, raised.value.non_retryable) == (errors.VENDOR_UNAVAILABLE, False)


# --- time: Stripe's own automation and future starts ------------------------------------------


class Clock:
    """The clocked emulator's time, moved by the test."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clocked() -> Iterator[tuple[Clock, StripeBilling, stripe.StripeClient]]:
    clock = Clock()
    with serve_stripe_emulator(api_key=API_KEY, clock=clock) as url:
        client = build_stripe_client(Settings(stripe_api_base=url))
        yield clock, StripeBilling(client, clock=clock), client


def test_stripe_does_not_finalize_or_email_the_first_invoice_before_it_is_reconciled(
    clocked: tuple[Clock, StripeBilling, stripe.StripeClient],
) -> None:
    clock, billing, client = clocked
    quote = fresh(design_example(days_ago(2)))
    _, created = run_billing(billing, quote)
    assert created.invoice_id is not None

    clock.now += 3 * 3600  # past Stripe's one-hour automatic finalization of drafts
    invoice = client.v1.invoices.retrieve(created.invoice_id)

    assert (invoice.status, invoice.auto_advance) == ("draft", False)
    assert sent_events(client, created.invoice_id) == 0


def test_an_old_invoice_someone_sent_from_the_dashboard_is_not_sent_again(
    clocked: tuple[Clock, StripeBilling, stripe.StripeClient],
) -> None:
    clock, billing, client = clocked
    clock.now -= 2 * 3600  # the deal was billed two hours ago and parked before sending
    quote = fresh(design_example(days_ago(2)))
    customer_id, created = run_billing(billing, quote)
    assert created.invoice_id is not None
    # Meanwhile a finance user finalized and sent it by hand (no idempotency key of ours).
    client.v1.invoices.finalize_invoice(created.invoice_id, params={"auto_advance": False})
    client.v1.invoices.send_invoice(created.invoice_id)
    clock.now = time.time()

    sent = ActivityEnvironment().run(
        billing.send_first_invoice, send_input(quote, customer_id, created)
    )

    assert sent.status == "open"
    assert sent_events(client, created.invoice_id) == 1


def test_a_deal_starting_next_month_waits_for_stripe_to_issue_its_first_invoice(
    clocked: tuple[Clock, StripeBilling, stripe.StripeClient],
) -> None:
    clock, billing, client = clocked
    start = (datetime.now(UTC) + timedelta(days=30)).date()
    quote = fresh(priced(days_ago(0), start=start.isoformat()))
    customer_id, created = run_billing(billing, quote)
    assert created.subscription_id == created.schedule_id

    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(
            billing.send_first_invoice, send_input(quote, customer_id, created)
        )
    assert (raised.value.type, raised.value.non_retryable) == (errors.VENDOR_UNAVAILABLE, False)
    assert raised.value.next_retry_delay is not None
    assert raised.value.next_retry_delay > timedelta(0)

    clock.now = midnight(start) + 3600
    sent = ActivityEnvironment().run(
        billing.send_first_invoice, send_input(quote, customer_id, created)
    )
    assert sent.total_minor == quote.invoices[0].total_minor
    assert invoice_lines(client, sent.invoice_id) == quoted_lines(quote)


# --- requests per deal (bench/RESULTS.md) ------------------------------------------------------


def recording_billing(base: str) -> tuple[StripeBilling, list[tuple[str, str]]]:
    """Billing activities whose every Stripe request is recorded as (method, path)."""
    seen: list[tuple[str, str]] = []
    session = PooledSession()

    def record(response: requests.Response, *args: object, **kwargs: object) -> None:
        seen.append((str(response.request.method), urlsplit(response.request.url or "").path))

    session.hooks["response"].append(record)
    client = stripe.StripeClient(
        API_KEY,
        base_addresses={"api": base},
        max_network_retries=0,
        http_client=stripe.RequestsClient(session=session),
    )
    return StripeBilling(client), seen


def test_a_new_subscription_brings_its_first_invoice_back_with_the_schedule(
    stripe_base: str, client: stripe.StripeClient
) -> None:
    billing, seen = recording_billing(stripe_base)
    quote = fresh(design_example(days_ago(3)))
    deal_id = deal_id_for(quote.opportunity_id)
    customer = ActivityEnvironment().run(
        billing.create_billing_customer, CreateCustomerInput(deal_id=deal_id, priced=quote)
    )
    seen.clear()

    created = ActivityEnvironment().run(
        billing.create_subscription,
        CreateSubscriptionInput(deal_id=deal_id, customer_id=customer.customer_id, priced=quote),
    )

    assert created.invoice_id is not None
    assert ("GET", "/v1/invoices") not in seen
    assert ("POST", "/v1/subscription_schedules") in seen
    held = client.v1.invoices.retrieve(created.invoice_id)
    assert (held.billing_reason, held.status, held.auto_advance) == (
        "subscription_create",
        "draft",
        False,
    )


def test_a_retried_subscription_step_finds_the_first_invoice_not_a_later_one(
    clocked: tuple[Clock, StripeBilling, stripe.StripeClient],
) -> None:
    clock, billing, client = clocked
    quote = fresh(priced(days_ago(0), billing_frequency="monthly"))
    customer_id, created = run_billing(billing, quote)
    assert created.invoice_id is not None
    clock.now += 40 * 86400  # Stripe has billed the second month since
    later = client.v1.invoices.list(params={"customer": customer_id, "limit": 100}).data
    assert len(later) == 2

    again = ActivityEnvironment().run(
        billing.create_subscription,
        CreateSubscriptionInput(
            deal_id=deal_id_for(quote.opportunity_id), customer_id=customer_id, priced=quote
        ),
    )

    assert again.invoice_id == created.invoice_id


def test_an_invoice_sent_a_day_ago_is_not_sent_again_once_its_key_expired(
    clocked: tuple[Clock, StripeBilling, stripe.StripeClient],
) -> None:
    clock, billing, client = clocked
    clock.now -= 26 * 3600  # billed and sent 26 hours ago: the send's idempotency key is gone
    quote = fresh(design_example(days_ago(3)))
    customer_id, created = run_billing(billing, quote)
    first = ActivityEnvironment().run(
        billing.send_first_invoice, send_input(quote, customer_id, created)
    )
    clock.now = time.time()

    again = ActivityEnvironment().run(
        billing.send_first_invoice, send_input(quote, customer_id, created)
    )

    assert again.invoice_id == first.invoice_id
    assert sent_events(client, first.invoice_id) == 1


def test_a_deal_signed_moments_ago_creates_under_its_keys_without_looking_up(
    stripe_base: str, client: stripe.StripeClient
) -> None:
    billing, seen = recording_billing(stripe_base)
    quote = fresh(priced(datetime.now(UTC)))

    first_customer, first = run_billing(billing, quote)
    calls = list(seen)
    second_customer, second = run_billing(billing, quote)

    assert ("GET", "/v1/customers/search") not in seen
    assert ("GET", "/v1/subscription_schedules") not in seen
    assert calls.count(("POST", "/v1/customers")) == 1
    # The repeated steps got the same objects back from the same idempotency keys.
    assert (second_customer, second) == (first_customer, first)
    schedules = client.v1.subscription_schedules.list(params={"customer": first_customer})
    assert len(schedules.data) == 1
    deal_id = deal_id_for(quote.opportunity_id)
    found = client.v1.customers.search(params={"query": f"metadata['deal_id']:'{deal_id}'"})
    assert [c.id for c in found.data] == [first_customer]


def test_a_deal_signed_days_ago_looks_up_what_an_earlier_attempt_made(stripe_base: str) -> None:
    billing, seen = recording_billing(stripe_base)
    quote = fresh(priced(days_ago(2)))

    run_billing(billing, quote)

    assert ("GET", "/v1/customers/search") in seen
    assert ("GET", "/v1/subscription_schedules") in seen


def test_a_schedule_made_by_the_previous_version_under_the_same_key_is_found(
    billing: StripeBilling, client: stripe.StripeClient
) -> None:
    quote = fresh(priced(datetime.now(UTC)))
    deal_id = deal_id_for(quote.opportunity_id)
    customer_id = (
        ActivityEnvironment()
        .run(billing.create_billing_customer, CreateCustomerInput(deal_id=deal_id, priced=quote))
        .customer_id
    )
    create_products(client, quote)
    # The step as an earlier version ran it (the same key, no ``expand``); its worker died after.
    old = client.v1.subscription_schedules.create(
        params=plan.schedule_params(deal_id, customer_id, quote),
        options={"idempotency_key": f"qtc:{deal_id}:subscription"},
    )

    created = ActivityEnvironment().run(
        billing.create_subscription,
        CreateSubscriptionInput(deal_id=deal_id, customer_id=customer_id, priced=quote),
    )

    assert created.schedule_id == old.id
    schedules = client.v1.subscription_schedules.list(params={"customer": customer_id})
    assert [s.id for s in schedules.data] == [old.id]
    assert created.invoice_id is not None
