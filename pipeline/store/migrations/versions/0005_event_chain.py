"""A history nobody can quietly rewrite: every event carries ``hash`` and ``prev_hash`` (one hash
chain per store, in id order, see ``pipeline.store.chain``), and ``chain_head`` holds where the
chain ends. The events already stored are hashed here, once, in id order.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pipeline.ports import ChainHead
from pipeline.store import chain
from pipeline.store.tables import UtcDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Events are hashed this many at a time, so a long history is never held in memory whole.
PAGE = 1000

_events = sa.table(
    "events",
    sa.column("id", sa.Integer()),
    sa.column("pipeline", sa.Text()),
    sa.column("environment", sa.Text()),
    sa.column("release_id", sa.Integer()),
    sa.column("at", UtcDateTime()),
    sa.column("kind", sa.Text()),
    sa.column("actor", sa.Text()),
    sa.column("reason", sa.Text()),
    sa.column("state_from", sa.Text()),
    sa.column("state_to", sa.Text()),
    sa.column("refs", sa.Text()),
    sa.column("detail", sa.Text()),
    sa.column("hash", sa.Text()),
    sa.column("prev_hash", sa.Text()),
)


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("hash", sa.Text(), nullable=True))
        batch.add_column(sa.Column("prev_hash", sa.Text(), nullable=True))
    head = _hash_the_events(op.get_bind())
    with op.batch_alter_table("events") as batch:
        batch.alter_column("hash", existing_type=sa.Text(), nullable=False)
    chain_head = op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_chain_head_one_row"),
        sa.PrimaryKeyConstraint("id", name="pk_chain_head"),
    )
    op.bulk_insert(
        chain_head, [{"id": 1, "events": head.events, "event_id": head.event_id or 0, "hash": head.hash}]
    )


def _hash_the_events(conn: sa.Connection) -> ChainHead:
    """Link every stored event into the chain, in id order; the head it ends at."""
    head = ChainHead()
    columns = [_events.c[name] for name in chain.RECORD_COLUMNS]
    while True:
        rows = (
            conn.execute(
                sa.select(*columns)
                .where(_events.c.id > (head.event_id or 0))
                .order_by(_events.c.id)
                .limit(PAGE)
            )
            .mappings()
            .all()
        )
        if not rows:
            return head
        hashes = []
        for row in rows:
            prev_hash = head.hash or None
            value = chain.digest(chain.record(row, prev_hash))
            hashes.append({"key": row["id"], "hash": value, "prev_hash": prev_hash})
            head = ChainHead(head.events + 1, row["id"], value)
        conn.execute(
            sa.update(_events)
            .where(_events.c.id == sa.bindparam("key"))
            .values(hash=sa.bindparam("hash"), prev_hash=sa.bindparam("prev_hash")),
            hashes,
        )


def downgrade() -> None:
    op.drop_table("chain_head")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("prev_hash")
        batch.drop_column("hash")
    if op.get_bind().dialect.name == "postgresql":
        # The chain gave ids itself, past the sequence: the revision below takes them from it again.
        op.execute(
            "SELECT setval(pg_get_serial_sequence('events', 'id'), COALESCE(MAX(id), 0) + 1, false) "
            "FROM events"
        )
