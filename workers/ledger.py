"""The ledger port's activity: append a deal's events to the ledger store (``runtime.ledger``)."""

from __future__ import annotations

from temporalio import activity

from qtc import ports
from runtime.ledger import LedgerStore


class LedgerActivities:
    """Blocking (SQLAlchemy): runs on the worker's thread pool as a local activity."""

    def __init__(self, store: LedgerStore) -> None:
        self._store = store

    @activity.defn(name=ports.ACT_RECORD_LEDGER_EVENTS)
    def record_ledger_events(self, input: ports.RecordLedgerInput) -> None:
        self._store.append(input.deal_id, input.opportunity_id, input.events)
