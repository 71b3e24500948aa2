"""loop runs count takeovers from processes that died mid-run

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 08:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("loop_runs") as batch:
        batch.add_column(sa.Column("takeovers", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("loop_runs") as batch:
        batch.drop_column("takeovers")
