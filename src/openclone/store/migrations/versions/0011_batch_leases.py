"""batch leases across gateways, sealed files

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 01:30:00

A batch gets a lease (which gateway runs it, until when) and, like a file, the person it
belongs to (erased with them). File contents and batch answers are sealed from now on by
the code; rows written before stay readable as they are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.String(length=32), nullable=True))
        batch_op.create_foreign_key(
            "fk_files_user_id", "users", ["user_id"], ["id"], ondelete="SET NULL"
        )
        batch_op.create_index(batch_op.f("ix_files_user_id"), ["user_id"], unique=False)
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.Float(), nullable=True))
        batch_op.create_foreign_key(
            "fk_batches_user_id", "users", ["user_id"], ["id"], ondelete="SET NULL"
        )
        batch_op.create_index(batch_op.f("ix_batches_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batches_user_id"))
        batch_op.drop_constraint("fk_batches_user_id", type_="foreignkey")
        batch_op.drop_column("lease_until")
        batch_op.drop_column("lease_owner")
        batch_op.drop_column("user_id")
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_files_user_id"))
        batch_op.drop_constraint("fk_files_user_id", type_="foreignkey")
        batch_op.drop_column("user_id")
