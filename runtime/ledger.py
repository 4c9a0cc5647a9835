"""The deal ledger: an append-only record of every deal, kept outside Temporal.

Temporal forgets a closed workflow after the namespace's retention; the ledger does not. It holds
each stage a deal entered (with the external ids known then), each decision (who, when, note), the
first invoice's ids and totals, and the notifications sent. Starting a deal consults it, so an
opportunity whose deal completed is not started again after its workflow is gone.

Storage is SQLAlchemy Core: SQLite under the state directory by default, PostgreSQL (or any
database SQLAlchemy speaks) when ``QTC_LEDGER_URL`` names one. The schema is Alembic's
(``runtime/ledger_migrations``), upgraded to the newest revision the first time a process opens
the store. Rows are never updated or deleted: the database refuses it (a trigger).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.command import upgrade
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from qtc.ports import LedgerEvent

MIGRATIONS = Path(__file__).with_name("ledger_migrations")

_metadata = sa.MetaData()
ledger_events = sa.Table(
    "ledger_events",
    _metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("deal_id", sa.String(80), nullable=False),
    sa.Column("opportunity_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("stage", sa.String(40)),
    sa.Column("actor", sa.String(320)),
    sa.Column("detail", sa.JSON(), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)
notifications_sent = sa.Table(
    "notifications_sent",
    _metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
)


class LedgerStore:
    """Reads and appends ledger rows. Thread-safe; one per process (``open_ledger``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._migrated = False
        self._lock = threading.Lock()
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            # Several worker processes may share the file: wait for a writer instead of failing.
            self.engine: Engine = sa.create_engine(url, connect_args={"timeout": 30})
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True)

    def migrate(self) -> None:
        """Bring the schema to the newest revision (a no-op once done in this process)."""
        if self._migrated:
            return
        with self._lock:
            if self._migrated:
                return
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            with self.engine.begin() as connection:
                config.attributes["connection"] = connection
                upgrade(config, "head")
            self._migrated = True

    def append(self, deal_id: str, opportunity_id: str, events: Iterable[LedgerEvent]) -> int:
        """Append events; one already recorded under its (deal, seq) is skipped. Returns how
        many rows were new."""
        self.migrate()
        now = datetime.now(UTC)
        rows = [
            {
                "deal_id": deal_id,
                "opportunity_id": opportunity_id,
                "seq": event.seq,
                "at": event.at,
                "kind": event.kind,
                "stage": event.stage,
                "actor": event.actor,
                "detail": event.detail,
                "recorded_at": now,
            }
            for event in events
        ]
        if not rows:
            return 0
        insert = (
            self._insert(ledger_events)
            .on_conflict_do_nothing(index_elements=["deal_id", "seq"])
            .returning(ledger_events.c.seq)
        )
        with self.engine.begin() as connection:
            # RETURNING names only the rows inserted (a driver's rowcount for a batch is not
            # reliable across databases).
            return len(connection.execute(insert, rows).all())

    def events(self, deal_id: str) -> list[LedgerEvent]:
        """The deal's events in the order the deal recorded them."""
        self.migrate()
        query = (
            sa.select(ledger_events)
            .where(ledger_events.c.deal_id == deal_id)
            .order_by(ledger_events.c.seq)
        )
        with self.engine.connect() as connection:
            return [
                LedgerEvent(
                    seq=row.seq,
                    at=_utc(row.at),
                    kind=row.kind,
                    stage=row.stage,
                    actor=row.actor,
                    detail=row.detail or {},
                )
                for row in connection.execute(query)
            ]

    def completed(self, deal_id: str) -> bool:
        """Whether the deal ran to ``completed``: such an opportunity is never started again."""
        self.migrate()
        query = (
            sa.select(sa.func.count())
            .select_from(ledger_events)
            .where(
                ledger_events.c.deal_id == deal_id,
                ledger_events.c.kind == "stage",
                ledger_events.c.stage == "completed",
            )
        )
        with self.engine.connect() as connection:
            return bool(connection.execute(query).scalar_one())

    def notification_sent(self, key: str, channel: str) -> bool:
        self.migrate()
        query = sa.select(notifications_sent.c.key).where(
            notifications_sent.c.key == key, notifications_sent.c.channel == channel
        )
        with self.engine.connect() as connection:
            return connection.execute(query).first() is not None

    def record_notification(self, key: str, channel: str) -> None:
        self.migrate()
        with self.engine.begin() as connection:
            connection.execute(
                self._insert(notifications_sent).on_conflict_do_nothing(
                    index_elements=["key", "channel"]
                ),
                [{"key": key, "channel": channel, "sent_at": datetime.now(UTC)}],
            )

    def _insert(self, table: sa.Table) -> Any:
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            return postgresql.insert(table)
        if dialect == "sqlite":
            return sqlite.insert(table)
        raise ValueError(f"the ledger supports SQLite and PostgreSQL, not {dialect}")

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(connection: Any, _: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes for what was written as UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_stores: dict[str, LedgerStore] = {}
_stores_lock = threading.Lock()


def open_ledger(url: str) -> LedgerStore:
    """The process's store for ``url`` (one engine and connection pool per database)."""
    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = LedgerStore(url)
        return store
