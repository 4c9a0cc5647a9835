"""The Stripe client a worker process shares."""

from __future__ import annotations

import stripe
from stripe._base_address import BaseAddresses

from runtime.http import PooledSession
from runtime.settings import Settings


def build_stripe_client(settings: Settings) -> stripe.StripeClient:
    """The one Stripe client of a worker process, from settings.

    ``max_network_retries=0``: Temporal owns retries. SDK retries inside an attempt would hide
    Stripe's trouble from the workflow's retry policy and history, stretch one attempt past its
    start-to-close timeout, and ignore ``Retry-After``; one attempt, one request, classified here.
    """
    base_addresses: BaseAddresses = {}
    if settings.stripe_api_base:
        base_addresses["api"] = settings.stripe_api_base
    return stripe.StripeClient(
        settings.stripe_api_key.get_secret_value(),
        base_addresses=base_addresses,
        max_network_retries=0,
        http_client=stripe.RequestsClient(
            timeout=settings.stripe_timeout_seconds,
            session=PooledSession(settings.worker_activity_threads),
        ),
    )
