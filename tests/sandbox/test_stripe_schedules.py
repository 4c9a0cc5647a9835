"""Subscription schedules: uplift phases, start dates, the clock, limits."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.sandbox.conftest import ClockedStripe, raw_params

DAY = 86400
YEAR_PRICES = [129600, 138672, 148379]


def _setup(client: stripe.StripeClient) -> tuple[str, str, str]:
    customer = client.v1.customers.create(
        params={"name": "Acme", "metadata": {"deal_id": "deal-1"}}
    )
    seats = client.v1.products.create(params={"id": "PLATFORM-PRO", "name": "Platform Pro"})
    setup = client.v1.products.create(params={"id": "IMPL-SERVICES", "name": "Implementation"})
    return customer.id, seats.id, setup.id


def _phases(seats: str, setup: str, **first_extra: Any) -> list[dict[str, Any]]:
    phases: list[dict[str, Any]] = [
        {
            "items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "product": seats,
                        "unit_amount": amount,
                        "recurring": {"interval": "year"},
                    },
                    "quantity": 50,
                }
            ],
            "iterations": 1,
            "metadata": {"deal_id": "deal-1", "contract_year": str(year)},
        }
        for year, amount in enumerate(YEAR_PRICES, start=1)
    ]
    phases[0]["add_invoice_items"] = [
        {"price_data": {"currency": "usd", "product": setup, "unit_amount": 500000}, "quantity": 1}
    ]
    phases[0].update(first_extra)
    return phases


def _schedule(
    client: stripe.StripeClient, start: int | str = "now", **extra: Any
) -> stripe.SubscriptionSchedule:
    customer, seats, setup = _setup(client)
    params: dict[str, Any] = {
        "customer": customer,
        "start_date": start,
        "end_behavior": "release",
        "default_settings": {
            "collection_method": "send_invoice",
            "invoice_settings": {"days_until_due": 30},
        },
        "metadata": {"deal_id": "deal-1"},
        "phases": _phases(seats, setup),
        **extra,
    }
    return client.v1.subscription_schedules.create(params=raw_params(params))


def test_three_yearly_uplift_phases_bill_year_one_and_the_one_time_fee_first(
    stripe_client: stripe.StripeClient,
) -> None:
    schedule = _schedule(stripe_client)

    assert schedule.status == "active" and schedule.subscription is not None
    sub = stripe_client.v1.subscriptions.retrieve(
        str(schedule.subscription), params={"expand": ["latest_invoice"]}
    )
    invoice = sub.latest_invoice
    assert isinstance(invoice, stripe.Invoice)
    amounts = sorted((line.amount, line.quantity) for line in invoice.lines.data)
    assert amounts == [(500000, 1), (6480000, 50)]
    assert invoice.total == 6980000 and invoice.status == "draft"
    assert invoice.collection_method == "send_invoice"
    assert sub.schedule == schedule.id and sub.metadata["contract_year"] == "1"
    assert sub.days_until_due == 30
    starts = [p.start_date for p in schedule.phases]
    ends = [p.end_date for p in schedule.phases]
    assert starts[1:] == ends[:-1]
    assert all(
        364 * DAY <= end - start <= 366 * DAY for start, end in zip(starts, ends, strict=True)
    )
    assert schedule.current_phase is not None and schedule.current_phase.end_date == ends[0]


def test_phase_end_dates_are_the_same_day_of_month_in_later_years(
    stripe_client: stripe.StripeClient,
) -> None:
    leap_day_2028 = 1835395200  # 2028-02-29T00:00:00Z

    schedule = _schedule(stripe_client, start=leap_day_2028)

    assert schedule.status == "not_started" and schedule.subscription is None
    ends = [p.end_date for p in schedule.phases]
    # 2029-02-28 (clamped), 2030-02-28, 2031-02-28: always counted from the start.
    assert ends == [1866931200, 1898467200, 1930003200]


def test_future_schedule_starts_when_the_clock_passes_its_start_date(
    stripe_clocked: ClockedStripe,
) -> None:
    client, clock = stripe_clocked.client, stripe_clocked.clock
    start = int(clock.now) + 5 * DAY
    schedule = _schedule(client, start=start)
    assert schedule.status == "not_started"
    assert client.v1.invoices.list().data == []

    clock.advance(5 * DAY + 1)
    started = client.v1.subscription_schedules.retrieve(schedule.id)

    assert started.status == "active" and started.subscription is not None
    sub = client.v1.subscriptions.retrieve(str(started.subscription))
    assert sub.start_date == start
    assert client.v1.invoices.retrieve(str(sub.latest_invoice)).total == 6980000
    types = {e.type for e in client.v1.events.list(params={"limit": 100}).data}
    assert {
        "subscription_schedule.created",
        "customer.subscription.created",
        "invoice.created",
    } <= types


def test_year_two_is_invoiced_at_the_uplifted_price_when_the_phase_begins(
    stripe_clocked: ClockedStripe,
) -> None:
    client, clock = stripe_clocked.client, stripe_clocked.clock
    schedule = _schedule(client)

    clock.advance(366 * DAY)
    invoices = client.v1.invoices.list(params={"subscription": str(schedule.subscription)}).data

    assert [i.billing_reason for i in invoices] == ["subscription_cycle", "subscription_create"]
    assert invoices[0].total == 50 * YEAR_PRICES[1]
    sub = client.v1.subscriptions.retrieve(str(schedule.subscription))
    assert sub.metadata["contract_year"] == "2"
    assert sub["items"].data[0].price.unit_amount == YEAR_PRICES[1]


def test_schedule_is_released_after_its_last_phase(stripe_clocked: ClockedStripe) -> None:
    client, clock = stripe_clocked.client, stripe_clocked.clock
    schedule = _schedule(client)

    clock.advance(3 * 366 * DAY)
    released = client.v1.subscription_schedules.retrieve(schedule.id)

    assert released.status == "released"
    assert released.released_subscription == schedule.subscription
    assert client.v1.subscriptions.retrieve(str(schedule.subscription)).schedule is None


def test_draft_subscription_invoice_finalizes_itself_an_hour_after_creation(
    stripe_clocked: ClockedStripe,
) -> None:
    client, clock = stripe_clocked.client, stripe_clocked.clock
    schedule = _schedule(client)
    sub = client.v1.subscriptions.retrieve(str(schedule.subscription))

    # Reads before the hour find nothing due (and let the emulator skip its pass); the first read
    # after it sees Stripe's work done.
    clock.advance(3598)
    assert client.v1.invoices.retrieve(str(sub.latest_invoice)).status == "draft"
    clock.advance(3)
    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))

    assert invoice.status == "open" and invoice.number is not None


def test_a_schedule_can_have_at_most_ten_phases(stripe_client: stripe.StripeClient) -> None:
    customer, seats, setup = _setup(stripe_client)
    phase = _phases(seats, setup)[1]

    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.subscription_schedules.create(
            params=raw_params({"customer": customer, "phases": [phase] * 11})
        )
    assert caught.value.param == "phases"


def test_phase_end_date_and_duration_set_the_phase_length(
    stripe_client: stripe.StripeClient,
) -> None:
    customer, seats, setup = _setup(stripe_client)
    first, second = _phases(seats, setup)[1:]
    del first["iterations"], second["iterations"]
    start = 1893456000  # 2030-01-01
    first["end_date"] = start + 90 * DAY
    second["duration"] = {"interval": "month", "interval_count": 6}

    schedule = stripe_client.v1.subscription_schedules.create(
        params=raw_params({"customer": customer, "start_date": start, "phases": [first, second]})
    )

    assert schedule.phases[0].end_date == start + 90 * DAY
    # 2030-04-01 plus six calendar months is 2030-10-01, 183 days later.
    assert schedule.phases[1].end_date == start + 90 * DAY + 183 * DAY


def test_phase_with_both_iterations_and_end_date_is_rejected(
    stripe_client: stripe.StripeClient,
) -> None:
    customer, seats, setup = _setup(stripe_client)
    phase = _phases(seats, setup)[1]
    phase["end_date"] = 1893456000

    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.subscription_schedules.create(
            params=raw_params({"customer": customer, "phases": [phase]})
        )
    assert caught.value.param is not None and caught.value.param.startswith("phases[0]")


def test_cancelling_a_schedule_cancels_its_subscription(stripe_client: stripe.StripeClient) -> None:
    schedule = _schedule(stripe_client)

    canceled = stripe_client.v1.subscription_schedules.cancel(schedule.id)

    assert canceled.status == "canceled"
    assert stripe_client.v1.subscriptions.retrieve(str(schedule.subscription)).status == "canceled"


def test_preview_of_an_unstarted_schedule_is_its_first_invoice(
    stripe_client: stripe.StripeClient,
) -> None:
    schedule = _schedule(stripe_client, start=1893456000)

    preview = stripe_client.v1.invoices.create_preview(params={"schedule": schedule.id})

    assert preview.total == 6980000
    assert stripe_client.v1.subscription_schedules.retrieve(schedule.id).status == "not_started"
