"""loop cadence and run claims: when a run last stopped running, and its runner's lease

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("loop_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ended", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("loop_runs", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
        batch_op.drop_column("ended")
