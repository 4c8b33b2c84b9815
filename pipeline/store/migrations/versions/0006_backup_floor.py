"""The number of the newest backup before a release asked for its own: a capture whose answer was
lost adopts only a backup made after it, never an earlier release's.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# A plain ALTER TABLE on both databases (SQLite 3.35 drops a column in place): no copy of the
# releases table, which the events' foreign keys would refuse outside `migrate`.


def upgrade() -> None:
    op.add_column("releases", sa.Column("backup_floor", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("releases", "backup_floor")
