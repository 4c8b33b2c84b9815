"""The release store: releases, events (append-only) and locks.

Revision ID: 0001
Revises:
Create Date: 2026-05-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pipeline", sa.Text(), nullable=False),
        sa.Column("commit", sa.Text(), nullable=False),
        sa.Column("branch", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        _time("created_at", nullable=False),
        _time("updated_at", nullable=False),
        sa.Column("commits", sa.Text(), nullable=False),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.Column("staging_app", sa.Text(), nullable=False),
        sa.Column("staging_build_id", sa.Text(), nullable=True),
        sa.Column("staging_release_id", sa.Text(), nullable=True),
        sa.Column("staging_release_version", sa.Integer(), nullable=True),
        sa.Column("staging_slug_id", sa.Text(), nullable=True),
        _time("staging_verified_at", nullable=True),
        sa.Column("release_branch", sa.Text(), nullable=True),
        sa.Column("pull_request_id", sa.Integer(), nullable=True),
        sa.Column("pull_request_url", sa.Text(), nullable=True),
        sa.Column("approvals", sa.Text(), nullable=False),
        _time("approved_at", nullable=True),
        sa.Column("production_app", sa.Text(), nullable=False),
        sa.Column("backup_id", sa.Text(), nullable=True),
        sa.Column("backup_name", sa.Text(), nullable=True),
        sa.Column("promotion_id", sa.Text(), nullable=True),
        sa.Column("previous_release_id", sa.Text(), nullable=True),
        sa.Column("previous_release_version", sa.Integer(), nullable=True),
        sa.Column("production_release_id", sa.Text(), nullable=True),
        sa.Column("production_release_version", sa.Integer(), nullable=True),
        sa.Column("rollback_release_id", sa.Text(), nullable=True),
        sa.Column("rollback_release_version", sa.Integer(), nullable=True),
        _time("released_at", nullable=True),
        _time("verification_started_at", nullable=True),
        sa.Column("check_attempts", sa.Integer(), nullable=False),
        _time("next_check_at", nullable=True),
        sa.Column("pending_action", sa.Text(), nullable=True),
        _time("pending_since", nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("superseded_by", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_releases"),
        sa.UniqueConstraint("pipeline", "commit", name="uq_releases_pipeline_commit"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_releases_pipeline_state", "releases", ["pipeline", "state"])
    op.create_index("ix_releases_pipeline_id", "releases", ["pipeline", "id"])

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        _time("at", nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state_from", sa.Text(), nullable=True),
        sa.Column("state_to", sa.Text(), nullable=True),
        sa.Column("refs", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(["release_id"], ["releases.id"], name="fk_events_release_id_releases"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_release_id_id", "events", ["release_id", "id"])

    op.create_table(
        "locks",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        _time("expires_at", nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_locks"),
    )


def downgrade() -> None:
    op.drop_table("locks")
    op.drop_index("ix_events_release_id_id", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_releases_pipeline_id", table_name="releases")
    op.drop_index("ix_releases_pipeline_state", table_name="releases")
    op.drop_table("releases")
