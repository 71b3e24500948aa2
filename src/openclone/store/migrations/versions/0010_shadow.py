"""shadow and canary: live-traffic splits, shadow pairs, canary counts per window

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 22:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "traffic_splits",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("candidate", sa.String(length=256), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("budget", sa.Integer(), nullable=True),
        sa.Column("pairs", sa.Integer(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("traffic_splits", schema=None) as batch_op:
        batch_op.create_index("ix_traffic_splits_name_state", ["name", "state"], unique=False)
    op.create_table(
        "shadow_pairs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("split_id", sa.String(length=32), nullable=False),
        sa.Column("capture_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=True),
        sa.Column("conversation_id", sa.String(length=64), nullable=True),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("live_model", sa.String(length=256), nullable=False),
        sa.Column("live_response", sa.JSON(), nullable=False),
        sa.Column("live_latency_ms", sa.Float(), nullable=False),
        sa.Column("shadow_model", sa.String(length=256), nullable=False),
        sa.Column("shadow_response", sa.JSON(), nullable=True),
        sa.Column("shadow_error", sa.Text(), nullable=True),
        sa.Column("shadow_latency_ms", sa.Float(), nullable=True),
        sa.Column("redactions", sa.JSON(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["split_id"], ["traffic_splits.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("shadow_pairs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_shadow_pairs_split_created", ["split_id", "created"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_shadow_pairs_capture_id"), ["capture_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_shadow_pairs_user_id"), ["user_id"], unique=False)
    op.create_table(
        "split_windows",
        sa.Column("split_id", sa.String(length=32), nullable=False),
        sa.Column("arm", sa.String(length=16), nullable=False),
        sa.Column("start", sa.Integer(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["split_id"], ["traffic_splits.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("split_id", "arm", "start"),
    )


def downgrade() -> None:
    op.drop_table("split_windows")
    with op.batch_alter_table("shadow_pairs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shadow_pairs_user_id"))
        batch_op.drop_index(batch_op.f("ix_shadow_pairs_capture_id"))
        batch_op.drop_index("ix_shadow_pairs_split_created")
    op.drop_table("shadow_pairs")
    with op.batch_alter_table("traffic_splits", schema=None) as batch_op:
        batch_op.drop_index("ix_traffic_splits_name_state")
    op.drop_table("traffic_splits")
