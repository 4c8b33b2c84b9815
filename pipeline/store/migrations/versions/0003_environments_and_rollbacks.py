"""Verification per check (its own attempts and soak), environments (locks, freezes, overrides),
events of environments, and rollbacks asked for by people.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.add_column(_time("rollback_verified_at"))
        batch.add_column(sa.Column("rollback_reason", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("check_progress", sa.Text(), nullable=False, server_default="[]"))
        batch.drop_column("check_attempts")
        batch.drop_column("next_check_at")
    with op.batch_alter_table("releases") as batch:
        batch.alter_column("check_progress", server_default=None)
        batch.alter_column("rollback_reason", server_default=None)

    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("pipeline", sa.Text(), nullable=True))
        batch.add_column(sa.Column("environment", sa.Text(), nullable=True))
        batch.alter_column("release_id", existing_type=sa.Integer(), nullable=True)
    op.execute(
        "UPDATE events SET pipeline = "
        "(SELECT releases.pipeline FROM releases WHERE releases.id = events.release_id)"
    )
    with op.batch_alter_table("events") as batch:
        batch.alter_column("pipeline", existing_type=sa.Text(), nullable=False)
    op.create_index("ix_events_pipeline_id", "events", ["pipeline", "id"])

    op.create_table(
        "environments",
        sa.Column("pipeline", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        _time("locked_at"),
        sa.Column("locked_by", sa.Text(), nullable=False),
        sa.Column("lock_reason", sa.Text(), nullable=False),
        _time("frozen_at"),
        sa.Column("frozen_by", sa.Text(), nullable=False),
        sa.Column("freeze_reason", sa.Text(), nullable=False),
        _time("frozen_until"),
        sa.Column("override_release", sa.Integer(), nullable=True),
        _time("override_at"),
        sa.Column("override_by", sa.Text(), nullable=False),
        sa.Column("override_reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("pipeline", "name", name="pk_environments"),
    )
    op.create_table(
        "rollbacks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pipeline", sa.Text(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("app", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        _time("requested_at", nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("from_release_id", sa.Text(), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=False),
        sa.Column("to_release_id", sa.Text(), nullable=False),
        sa.Column("to_version", sa.Integer(), nullable=False),
        sa.Column("to_slug_id", sa.Text(), nullable=True),
        sa.Column("taken_out", sa.Text(), nullable=False),
        sa.Column("forced", sa.Text(), nullable=False),
        sa.Column("heroku_release_id", sa.Text(), nullable=True),
        sa.Column("heroku_version", sa.Integer(), nullable=True),
        _time("pending_since"),
        _time("verification_started_at"),
        sa.Column("check_progress", sa.Text(), nullable=False),
        _time("verified_at"),
        _time("updated_at", nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rollbacks"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_rollbacks_pipeline_environment_state", "rollbacks", ["pipeline", "environment", "state"]
    )


def downgrade() -> None:
    op.drop_index("ix_rollbacks_pipeline_environment_state", table_name="rollbacks")
    op.drop_table("rollbacks")
    op.drop_table("environments")
    op.drop_index("ix_events_pipeline_id", table_name="events")
    op.execute("DELETE FROM events WHERE release_id IS NULL")
    with op.batch_alter_table("events") as batch:
        batch.alter_column("release_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("environment")
        batch.drop_column("pipeline")
    with op.batch_alter_table("releases") as batch:
        batch.add_column(sa.Column("check_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(_time("next_check_at"))
        batch.drop_column("check_progress")
        batch.drop_column("rollback_reason")
        batch.drop_column("rollback_verified_at")
