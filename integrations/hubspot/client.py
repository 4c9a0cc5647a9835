"""The HubSpot client a process shares: the official SDK's API objects, each built once.

``HubSpot().crm.deals.basic_api`` builds a new configuration, API client and urllib3 pool on every
access, so a client used per call would open a connection per request. ``HubSpotClient`` takes
each API object once and keeps it; they are thread-safe (urllib3 pools) and shared by the
worker's activity threads.

Retries: urllib3 retries a failed *connection* (the request never left) twice; it never retries a
read or a status, because Temporal owns retries: one attempt, one request, classified by the
activity. Every call carries ``timeout_s`` (the SDK passes none by default, and a hung socket would
pin a worker thread).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hubspot import HubSpot
from urllib3.util.retry import Retry

from runtime.settings import Settings


@dataclass(frozen=True)
class HubSpotClient:
    deals: Any
    deals_search: Any
    line_items_batch: Any
    companies: Any
    contacts: Any
    notes: Any
    associations: Any
    properties: Any
    property_groups: Any
    association_labels: Any
    timeout_s: float
    base_url: str


def build_hubspot_client(
    access_token: str, base_url: str, *, timeout_s: float = 20.0, pool_size: int = 10
) -> HubSpotClient:
    """The SDK's API objects on ``base_url`` (``https://api.hubapi.com`` for a real portal)."""
    sdk = HubSpot(
        access_token=access_token,
        host=base_url.rstrip("/"),
        retry=Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0),
        connection_pool_maxsize=pool_size,
    )
    crm = sdk.crm
    return HubSpotClient(
        deals=crm.deals.basic_api,
        deals_search=crm.deals.search_api,
        line_items_batch=crm.line_items.batch_api,
        companies=crm.companies.basic_api,
        contacts=crm.contacts.basic_api,
        notes=crm.objects.notes.basic_api,
        associations=crm.associations.v4.basic_api,
        properties=crm.properties.core_api,
        property_groups=crm.properties.groups_api,
        association_labels=crm.associations.v4.schema.definitions_api,
        timeout_s=timeout_s,
        base_url=base_url.rstrip("/"),
    )


def build_hubspot_client_from_settings(settings: Settings) -> HubSpotClient:
    return build_hubspot_client(
        settings.hubspot_access_token.get_secret_value(),
        settings.hubspot_api_base,
        timeout_s=settings.hubspot_timeout_s,
        pool_size=settings.worker_activity_threads,
    )
