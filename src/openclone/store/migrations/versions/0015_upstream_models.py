"""what upstream models lists report: shutdown dates of proxied closed models

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upstream_models",
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("upstream", sa.Text(), nullable=False),
        sa.Column("upstream_model", sa.String(length=256), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("shutdown", sa.Date(), nullable=True),
        sa.Column("checked", sa.Float(), nullable=False),
        sa.Column("listed", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("model"),
    )


def downgrade() -> None:
    op.drop_table("upstream_models")
