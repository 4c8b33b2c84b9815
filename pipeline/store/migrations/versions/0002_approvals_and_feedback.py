"""Approval evidence and Bitbucket feedback: release notes' base, feedback keys, the description's
digest, long event details, and the webhook deliveries already taken in.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.add_column(sa.Column("base_commit", sa.Text(), nullable=True))
        batch.add_column(sa.Column("feedback", sa.Text(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("description_digest", sa.Text(), nullable=True))
    with op.batch_alter_table("releases") as batch:
        batch.alter_column("feedback", server_default=None)
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("detail", sa.Text(), nullable=True))
    op.create_table(
        "webhook_deliveries",
        sa.Column("pipeline", sa.Text(), nullable=False),
        sa.Column("request_uuid", sa.Text(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pipeline", "request_uuid", name="pk_webhook_deliveries"),
    )
    op.create_index("ix_webhook_deliveries_received_at", "webhook_deliveries", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_received_at", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("detail")
    with op.batch_alter_table("releases") as batch:
        batch.drop_column("description_digest")
        batch.drop_column("feedback")
        batch.drop_column("base_commit")
