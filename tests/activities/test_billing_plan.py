"""The priced quote as Stripe parameters, and Stripe's invoice checked against it (no I/O)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import stripe
from temporalio.exceptions import ApplicationError

from integrations.stripe import plan
from integrations.stripe.activities import classify_stripe_error, stripe_failures
from qtc import errors
from tests.activities.billing_deals import design_example, priced, stub_deal

DEAL = "deal-006000000000001AAA"


def midnight(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def test_each_contract_year_is_one_phase_billing_that_years_uplifted_unit_amount() -> None:
    quote = design_example()
    phases = plan.schedule_phases(DEAL, quote)

    assert [phase["items"][0]["price_data"]["unit_amount"] for phase in phases] == [
        129600,
        138672,
        148379,
    ]
    assert [phase["end_date"] for phase in phases] == [
        midnight(date(2027, 12, 15)),
        midnight(date(2028, 12, 15)),
        midnight(date(2029, 12, 15)),
    ]
    for phase in phases:
        (item,) = phase["items"]
        assert item["quantity"] == 50
        assert item["price_data"]["product"] == plan.product_id_for("PLATFORM-PRO")
        assert item["price_data"]["recurring"] == {"interval": "year", "interval_count": 1}
        assert item["price_data"]["currency"] == "usd"
        assert phase["proration_behavior"] == "none"
        assert phase["metadata"]["deal_id"] == DEAL


def test_one_time_lines_are_billed_once_on_the_first_phase() -> None:
    phases = plan.schedule_phases(DEAL, design_example())

    assert phases[0]["add_invoice_items"] == [
        {
            "price_data": {
                "currency": "usd",
                "product": plan.product_id_for("IMPL-SERVICES"),
                "unit_amount": 500000,
            },
            "quantity": 1,
            "metadata": {
                "deal_id": DEAL,
                "sku": "IMPL-SERVICES",
                "qtc_kind": "one_time",
                "qtc_line": "0",
            },
        }
    ]
    assert all("add_invoice_items" not in phase for phase in phases[1:])


def test_schedule_invoices_on_payment_terms_from_the_start_date_and_cancels_at_term_end() -> None:
    quote = design_example()
    params = plan.schedule_params(DEAL, "cus_123", quote)

    assert params["customer"] == "cus_123"
    assert params["start_date"] == midnight(date(2026, 12, 15))
    assert params["end_behavior"] == "cancel"
    assert params["default_settings"] == {
        "collection_method": "send_invoice",
        "invoice_settings": {"days_until_due": 30},
    }
    assert params["metadata"] == {
        "deal_id": DEAL,
        "opportunity_id": "006000000000001AAA",
        "quote_id": "Q-1001",
    }


def test_an_eighteen_month_monthly_term_ends_with_a_six_month_phase() -> None:
    quote = priced(datetime(2026, 1, 31, tzinfo=UTC), term_months=18, billing_frequency="monthly")
    phases = plan.schedule_phases(DEAL, quote)

    assert [phase["end_date"] for phase in phases] == [
        midnight(date(2027, 1, 31)),
        midnight(date(2027, 7, 31)),
    ]
    assert [phase["items"][0]["price_data"]["unit_amount"] for phase in phases] == (
        quote.lines[0].unit_amounts_by_year_minor
    )
    assert phases[0]["items"][0]["price_data"]["recurring"] == {
        "interval": "month",
        "interval_count": 1,
    }


def test_quarterly_billing_prices_one_quarter_per_period() -> None:
    quote = priced(datetime(2026, 3, 3, tzinfo=UTC), billing_frequency="quarterly")
    (first, *_) = plan.schedule_phases(DEAL, quote)

    assert first["items"][0]["price_data"]["recurring"] == {
        "interval": "month",
        "interval_count": 3,
    }
    assert first["items"][0]["price_data"]["unit_amount"] == 32400  # 108.00 x 3 months


def test_terms_longer_than_ten_contract_years_are_refused() -> None:
    quote = design_example().model_copy(update={"term_months": 132})

    with pytest.raises(plan.UnbillableQuote, match="at most 10"):
        plan.schedule_phases(DEAL, quote)


def test_an_unbillable_quote_fails_the_activity_for_good() -> None:
    quote = design_example().model_copy(update={"term_months": 132})

    with pytest.raises(ApplicationError) as raised, stripe_failures():
        plan.schedule_phases(DEAL, quote)

    assert raised.value.type == errors.VENDOR_INVALID_REQUEST
    assert raised.value.non_retryable


def test_a_stub_deal_starts_the_schedule_at_the_anchor_and_bills_the_stub_separately() -> None:
    quote = stub_deal(datetime(2026, 10, 19, 9, tzinfo=UTC))
    params = plan.schedule_params(DEAL, "cus_123", quote)

    assert params["start_date"] == midnight(date(2026, 11, 1))
    assert all("add_invoice_items" not in phase for phase in params["phases"])

    items = plan.stub_invoice_items(DEAL, "cus_123", "in_1", quote)
    billed = [
        (item["price_data"]["product"], item["quantity"], item["price_data"]["unit_amount"])
        for item in items
    ]
    assert billed == [
        (plan.product_id_for(line.sku), line.quantity, line.unit_amount_minor)
        for line in quote.invoices[0].lines
    ]
    assert {item["invoice"] for item in items} == {"in_1"}
    stub_item = items[0]
    assert stub_item["period"] == {
        "start": midnight(date(2026, 10, 19)),
        "end": midnight(date(2026, 11, 1)),
    }
    assert "period" not in items[-1]


def test_the_stub_invoice_waits_for_us_to_reconcile_and_send_it() -> None:
    quote = stub_deal(datetime(2026, 10, 19, 9, tzinfo=UTC))
    params = plan.stub_invoice_params(DEAL, "cus_123", quote)

    assert params["auto_advance"] is False
    assert params["collection_method"] == "send_invoice"
    assert params["days_until_due"] == 15
    assert params["currency"] == "eur"
    assert params["pending_invoice_items_behavior"] == "exclude"
    assert params["metadata"] == {
        "deal_id": DEAL,
        "qtc_first_invoice": "true",
        "quote_id": "Q-1001",
    }


def test_a_deal_starting_on_the_first_has_no_stub() -> None:
    quote = stub_deal(datetime(2026, 11, 1, 9, tzinfo=UTC))

    assert not plan.has_stub(quote)
    assert plan.schedule_phases(DEAL, quote)[0]["add_invoice_items"][0]["metadata"]["sku"] == (
        "IMPL-SERVICES"
    )


def test_the_customer_is_the_signed_legal_entity() -> None:
    params = plan.customer_params(DEAL, design_example())

    assert params == {
        "name": "Acme Robotics, Inc.",
        "email": "ap@acme.example",
        "address": {
            "line1": "1 Main St",
            "city": "Austin",
            "state": "TX",
            "postal_code": "78701",
            "country": "US",
        },
        "tax_id_data": [{"type": "us_ein", "value": "12-3456789"}],
        "metadata": {
            "deal_id": DEAL,
            "opportunity_id": "006000000000001AAA",
            "quote_id": "Q-1001",
        },
    }


def test_a_customer_without_tax_id_or_state_sends_neither() -> None:
    quote = stub_deal(datetime(2026, 10, 19, tzinfo=UTC))
    quote.account.tax_id = None

    params = plan.customer_params(DEAL, quote)

    assert "tax_id_data" not in params
    assert "state" not in params["address"]


def test_product_ids_are_derived_from_the_sku_and_safe_for_stripe() -> None:
    assert plan.product_id_for("PLATFORM-PRO") == "qtc_PLATFORM-PRO"
    assert plan.product_id_for("ADD ON/v2") == "qtc_ADD_ON_v2"


def test_contract_years_are_counted_from_the_term_start_not_chained() -> None:
    quote = priced(datetime(2028, 2, 29, tzinfo=UTC), term_months=48)

    # Chaining would carry the clamped 28th forward and end the last year on 2032-02-28.
    assert [end for _, end in plan.contract_years(quote)] == [
        date(2029, 2, 28),
        date(2030, 2, 28),
        date(2031, 2, 28),
        date(2032, 2, 29),
    ]


# --- reconciliation -------------------------------------------------------------------------


def billed(sku: str, quantity: int, unit: int | str, amount: int) -> plan.BilledLine:
    return plan.BilledLine(sku=sku, quantity=quantity, unit_amount_minor=unit, amount_minor=amount)


def test_an_invoice_with_the_quoted_lines_in_another_order_reconciles() -> None:
    first = design_example().invoices[0]
    stripe_lines = [
        billed("IMPL-SERVICES", 1, 500000, 500000),
        billed("PLATFORM-PRO", 50, 129600, 6480000),
    ]

    assert plan.reconcile("in_1", first, "usd", stripe_lines, 6980000, "usd") is None


def test_a_changed_unit_amount_is_a_mismatch_showing_both_sides() -> None:
    first = design_example().invoices[0]
    stripe_lines = [
        billed("PLATFORM-PRO", 50, 120000, 6000000),
        billed("IMPL-SERVICES", 1, 500000, 500000),
    ]

    mismatch = plan.reconcile("in_1", first, "usd", stripe_lines, 6500000, "usd")

    assert mismatch is not None
    assert mismatch.missing_in_stripe == [billed("PLATFORM-PRO", 50, 129600, 6480000)]
    assert mismatch.unexpected_in_stripe == [billed("PLATFORM-PRO", 50, 120000, 6000000)]
    assert mismatch.total_minor == {"expected": 6980000, "actual": 6500000}
    assert "total 6500000 instead of 6980000" in mismatch.summary()


def test_an_extra_line_or_another_currency_is_a_mismatch() -> None:
    first = design_example().invoices[0]
    quoted = [
        billed("PLATFORM-PRO", 50, 129600, 6480000),
        billed("IMPL-SERVICES", 1, 500000, 500000),
    ]

    extra = plan.reconcile(
        "in_1", first, "usd", [*quoted, billed("SUPPORT-PREMIUM", 1, 0, 0)], 6980000, "usd"
    )
    currency = plan.reconcile("in_1", first, "usd", quoted, 6980000, "eur")

    assert extra is not None and extra.unexpected_in_stripe == [billed("SUPPORT-PREMIUM", 1, 0, 0)]
    assert currency is not None and currency.currency == {"expected": "usd", "actual": "eur"}


def test_fractional_stripe_unit_amounts_never_equal_whole_minor_units() -> None:
    assert plan.minor_units("129600") == 129600
    assert plan.minor_units("129600.000") == 129600
    assert plan.minor_units("129599.5") == "129599.5"


# --- vendor error classification --------------------------------------------------------------


def test_an_invalid_request_is_not_retried() -> None:
    failure = classify_stripe_error(
        stripe.InvalidRequestError("No such price", "price", "resource_missing", http_status=400)
    )

    assert failure.type == errors.VENDOR_INVALID_REQUEST
    assert failure.non_retryable
    assert failure.details[0]["param"] == "price"


def test_a_missing_object_is_not_found_and_not_retried() -> None:
    failure = classify_stripe_error(
        stripe.InvalidRequestError("No such customer", "id", "resource_missing", http_status=404)
    )

    assert (failure.type, failure.non_retryable) == (errors.VENDOR_NOT_FOUND, True)


def test_an_idempotency_key_reused_with_other_parameters_is_our_bug_and_not_retried() -> None:
    failure = classify_stripe_error(
        stripe.IdempotencyError("Keys for idempotent requests ...", http_status=400)
    )

    assert (failure.type, failure.non_retryable) == (errors.VENDOR_CONFLICT, True)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (
            stripe.AuthenticationError("Invalid API Key", http_status=401),
            errors.VENDOR_AUTHENTICATION,
        ),
        (stripe.PermissionError("Forbidden", http_status=403), errors.VENDOR_PERMISSION),
        (stripe.CardError("Declined", None, "card_declined", http_status=402), errors.VENDOR_CARD),
    ],
)
def test_credentials_permissions_and_cards_are_not_retried(
    exc: stripe.StripeError, kind: str
) -> None:
    failure = classify_stripe_error(exc)

    assert (failure.type, failure.non_retryable) == (kind, True)


def test_a_rate_limit_is_retried_after_the_wait_stripe_asked_for() -> None:
    failure = classify_stripe_error(
        stripe.RateLimitError("Too many requests", http_status=429, headers={"Retry-After": "7"})
    )

    assert (failure.type, failure.non_retryable) == (errors.VENDOR_RATE_LIMITED, False)
    assert failure.next_retry_delay == timedelta(seconds=7)


@pytest.mark.parametrize(
    "exc",
    [
        stripe.APIError("Internal error", http_status=500),
        stripe.APIError("Concurrent idempotent request", http_status=409),
        stripe.APIConnectionError("Read timed out", should_retry=True),
    ],
)
def test_server_errors_conflicts_in_flight_and_timeouts_are_retried(
    exc: stripe.StripeError,
) -> None:
    failure = classify_stripe_error(exc)

    assert (failure.type, failure.non_retryable) == (errors.VENDOR_UNAVAILABLE, False)
    assert failure.next_retry_delay is None


def test_a_server_error_stripe_says_not_to_retry_parks_the_deal() -> None:
    failure = classify_stripe_error(
        stripe.APIError("Internal error", http_status=500, headers={"Stripe-Should-Retry": "false"})
    )

    assert (failure.type, failure.non_retryable) == (errors.VENDOR_UNAVAILABLE, True)


def test_a_lock_timeout_stripe_says_to_retry_is_retried() -> None:
    failure = classify_stripe_error(
        stripe.InvalidRequestError(
            "Lock timeout",
            None,
            "lock_timeout",
            http_status=400,
            headers={"stripe-should-retry": "true"},
        )
    )

    assert (failure.type, failure.non_retryable) == (errors.VENDOR_UNAVAILABLE, False)
