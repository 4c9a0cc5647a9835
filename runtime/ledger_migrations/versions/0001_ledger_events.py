"""The append-only ledger of deals and the record of notifications sent.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_PG_GUARD = """
CREATE FUNCTION qtc_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the deal ledger is append-only';
END $$;
CREATE TRIGGER ledger_events_append_only BEFORE UPDATE OR DELETE ON ledger_events
  FOR EACH ROW EXECUTE FUNCTION qtc_ledger_append_only();
"""
_SQLITE_GUARDS = [
    f"CREATE TRIGGER ledger_events_no_{what.lower()} BEFORE {what} ON ledger_events "
    "BEGIN SELECT RAISE(ABORT, 'the deal ledger is append-only'); END"
    for what in ("UPDATE", "DELETE")
]


def upgrade() -> None:
    op.create_table(
        "ledger_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("deal_id", sa.String(80), nullable=False),
        sa.Column("opportunity_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("stage", sa.String(40), nullable=True),
        sa.Column("actor", sa.String(320), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("deal_id", "seq", name="ledger_events_deal_seq"),
    )
    op.create_index("ledger_events_stage", "ledger_events", ["deal_id", "stage"])
    op.create_table(
        "notifications_sent",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_PG_GUARD)
    elif dialect == "sqlite":
        for statement in _SQLITE_GUARDS:
            op.execute(statement)


def downgrade() -> None:
    op.drop_table("notifications_sent")
    op.drop_table("ledger_events")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION qtc_ledger_append_only()")
