"""What every request needs: settings, catalog, the Temporal client and the vendor readers.

The Temporal client is connected on first use, not at start-up, so the API starts (and answers
``/healthz``) while Temporal is down and reports 503 until it is back.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from temporalio.client import Client
from temporalio.service import RPCError

from qtc.models import Catalog
from qtc.ports import ContractReader, CrmReader, OpportunityStageReader
from runtime.settings import Settings
from service.deals import TemporalUnavailable

ClientFactory = Callable[[], Awaitable[Client]]


class TemporalGateway:
    """Connects to Temporal once, on first use, and hands out the shared client."""

    def __init__(self, factory: ClientFactory, timeout: timedelta) -> None:
        self._factory = factory
        self._timeout = timeout
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        """The connected client.

        Raises:
            TemporalUnavailable: Temporal cannot be reached now; the next call tries again.
        """
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    async with asyncio.timeout(self._timeout.total_seconds()):
                        self._client = await self._factory()
                except (RuntimeError, OSError, TimeoutError, RPCError) as err:
                    raise TemporalUnavailable(f"cannot connect to Temporal: {err}") from err
            return self._client

    async def reachable(self) -> bool:
        """Whether Temporal's frontend answers a health check now."""
        try:
            client = await self.client()
            async with asyncio.timeout(self._timeout.total_seconds()):
                return await client.service_client.check_health(timeout=self._timeout)
        except (TemporalUnavailable, TimeoutError, RPCError, RuntimeError):
            return False


class RecentIds:
    """A bounded set of recently seen ids (oldest forgotten first), for webhook de-duplication."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def add(self, key: str) -> None:
        self._ids[key] = None
        self._ids.move_to_end(key)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


@dataclass
class ApiState:
    settings: Settings
    catalog: Catalog
    temporal: TemporalGateway
    crm: CrmReader
    # Reads a contract by its id, for e-signature webhooks that name only the contract.
    contracts: ContractReader
    # Reads an opportunity's stage, for Outbound Messages that leave StageName out; None when the
    # CRM reader given cannot (such notifications are then refused, never acknowledged).
    opportunity_stages: OpportunityStageReader | None
    # The HubSpot reader of /webhooks/hubspot: the CRM itself when QTC_CRM=hubspot, a second one
    # when QTC_HUBSPOT_TASK_QUEUE serves HubSpot beside another CRM, else None.
    hubspot: CrmReader | None = None
    outbound_seen: RecentIds = field(init=False)
    hubspot_seen: RecentIds = field(init=False)

    def __post_init__(self) -> None:
        self.outbound_seen = RecentIds(self.settings.api_outbound_dedupe_size)
        self.hubspot_seen = RecentIds(self.settings.hubspot_webhook_dedupe_size)

    @property
    def rpc_timeout(self) -> timedelta:
        return timedelta(seconds=self.settings.api_temporal_timeout_s)


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.qtc
    return state


State = Annotated[ApiState, Depends(get_state)]


async def get_client(state: State) -> Client:
    return await state.temporal.client()


TemporalClient = Annotated[Client, Depends(get_client)]
