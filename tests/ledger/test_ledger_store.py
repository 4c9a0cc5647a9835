"""The ledger store on SQLite (the default) and on a real PostgreSQL server: the schema comes from
the Alembic migrations, writes are idempotent per (deal, seq), rows cannot be changed or deleted,
and a completed deal is found again after its workflow is gone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from qtc.ports import LedgerEvent, RecordLedgerInput
from runtime.ledger import LedgerStore
from runtime.settings import Settings
from service import deals
from workers.ledger import LedgerActivities

AT = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerStore:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    return LedgerStore(url)


def events(*stages: str, start: int = 1) -> list[LedgerEvent]:
    return [
        LedgerEvent(
            seq=start + n,
            at=AT + timedelta(minutes=n),
            kind="stage",
            stage=stage,
            detail={"note": f"entered {stage}", "total_minor": 4577000},
        )
        for n, stage in enumerate(stages)
    ]


def new_deal() -> str:
    return f"deal-{uuid.uuid4().hex[:12]}"


def test_a_batch_written_twice_is_recorded_once_in_the_deals_order(store: LedgerStore) -> None:
    deal = new_deal()
    first = events("contract_sent", "awaiting_signature")
    decision = LedgerEvent(
        seq=3,
        at=AT + timedelta(hours=1),
        kind="decision",
        stage="awaiting_invoice_review",
        actor="fiona.finance@sandbox.example",
        detail={"decision": "approve_invoice", "note": "ok"},
    )

    assert store.append(deal, "006X", [decision, *first]) == 3
    assert store.append(deal, "006X", [*first, decision]) == 0

    recorded = store.events(deal)
    assert [e.seq for e in recorded] == [1, 2, 3]
    assert recorded[0] == first[0]
    assert recorded[2].actor == "fiona.finance@sandbox.example"
    assert recorded[2].at == decision.at


def test_the_ledger_is_append_only(store: LedgerStore) -> None:
    deal = new_deal()
    store.append(deal, "006X", events("completed"))

    for statement in ("UPDATE ledger_events SET actor = 'mallory'", "DELETE FROM ledger_events"):
        with pytest.raises(DBAPIError), store.engine.begin() as connection:
            connection.execute(sa.text(statement))

    assert [e.stage for e in store.events(deal)] == ["completed"]


def test_a_completed_deal_is_known_and_a_running_one_is_not(store: LedgerStore) -> None:
    done, running = new_deal(), new_deal()
    store.append(done, "006A", events("contract_sent", "completed"))
    store.append(running, "006B", events("contract_sent", "awaiting_signature"))

    assert store.completed(done) is True
    assert store.completed(running) is False
    assert store.completed(new_deal()) is False


def test_a_notification_key_is_remembered_per_channel(store: LedgerStore) -> None:
    key = f"qtc:{new_deal()}:awaiting_invoice_review:5:entered"

    store.record_notification(key, "slack")
    store.record_notification(key, "slack")

    assert store.notification_sent(key, "slack") is True
    assert store.notification_sent(key, "email") is False


def test_the_schema_is_alembics_newest_revision(store: LedgerStore) -> None:
    store.migrate()
    with store.engine.connect() as connection:
        version = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    assert version == "0001"


async def test_the_worker_activity_and_the_events_use_case_read_the_same_ledger(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = Settings(_env_file=None, env="sandbox", ledger_url=postgres_url, state_dir=tmp_path)
    deal = new_deal()
    activity = LedgerActivities(LedgerStore(postgres_url))

    activity.record_ledger_events(
        RecordLedgerInput(deal_id=deal, opportunity_id="006X", events=events("completed"))
    )
    read = await deals.deal_events(settings, deal)

    assert [e.stage for e in read] == ["completed"]
    with pytest.raises(deals.DealNotFound):
        await deals.deal_events(settings, new_deal())


async def test_an_unreachable_ledger_is_reported_as_unavailable(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        env="sandbox",
        ledger_url="postgresql+psycopg://qtc@127.0.0.1:1/none?connect_timeout=2",
        state_dir=tmp_path,
    )

    with pytest.raises(deals.LedgerUnavailable):
        await deals.deal_events(settings, "deal-006X")
