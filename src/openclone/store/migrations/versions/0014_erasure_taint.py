"""erasure taint of datasets and model versions; tombstones of erased tenants and captures

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erased_tenants",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("erasure_id", sa.String(length=32), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "erased_captures",
        sa.Column("capture_id", sa.String(length=64), nullable=False),
        sa.Column("erasure_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("capture_id"),
    )
    op.create_table(
        "erased_users",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("erasure_id", sa.String(length=32), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "name"),
    )
    op.create_table(
        "erased_models",
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "erasure_taints",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=256), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("erasures", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("replaced_by", sa.String(length=256), nullable=True),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("erasure_taints", schema=None) as batch_op:
        batch_op.create_index("ix_taints_kind_target", ["kind", "target"], unique=True)
        batch_op.create_index(batch_op.f("ix_erasure_taints_name"), ["name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("erasure_taints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_erasure_taints_name"))
        batch_op.drop_index("ix_taints_kind_target")
    op.drop_table("erasure_taints")
    op.drop_table("erased_models")
    op.drop_table("erased_users")
    op.drop_table("erased_captures")
    op.drop_table("erased_tenants")
