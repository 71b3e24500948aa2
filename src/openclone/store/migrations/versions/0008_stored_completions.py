"""stored chat completions: store=true exchanges, their metadata and imports

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 22:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_completions",
        sa.Column("capture_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("completion_id", sa.String(length=128), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["capture_id"], ["captures.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("capture_id"),
    )
    with op.batch_alter_table("stored_completions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_stored_completions_tenant_created", ["tenant_id", "created"], unique=False
        )
        batch_op.create_index(
            "ix_stored_completions_tenant_completion", ["tenant_id", "completion_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("stored_completions", schema=None) as batch_op:
        batch_op.drop_index("ix_stored_completions_tenant_completion")
        batch_op.drop_index("ix_stored_completions_tenant_created")
    op.drop_table("stored_completions")
