"""encryption at rest: a wrapped data key per tenant

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 22:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "encryption_keys",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("master_id", sa.String(length=128), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("rotated", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id"),
    )
    # A sealed title is longer than the 256 characters PostgreSQL enforced. SQLite never
    # enforced it, and copying `conversations` there (batch mode) would cascade-delete its
    # messages, so SQLite keeps the declared type.
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "conversations", "title", type_=sa.Text(), existing_type=sa.String(length=256),
            existing_nullable=False,
        )  # fmt: skip


def downgrade() -> None:
    keys = op.get_bind().execute(sa.text("SELECT count(*) FROM encryption_keys")).scalar()
    if keys:
        # Dropping them would make every sealed value unreadable for good.
        raise RuntimeError(
            f"the store holds {keys} tenant data keys: downgrading below 0009 would destroy "
            "them and with them every encrypted value"
        )
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "conversations", "title", type_=sa.String(length=256), existing_type=sa.Text(),
            existing_nullable=False, postgresql_using="left(title, 256)",
        )  # fmt: skip
    op.drop_table("encryption_keys")
