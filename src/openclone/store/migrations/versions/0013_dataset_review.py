"""dataset review: examples, review state, edits

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_datasets",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("search_key", sa.Text(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("review_datasets", schema=None) as batch_op:
        batch_op.create_index("ix_review_datasets_path_sha", ["path", "sha256"], unique=True)
    op.create_table(
        "review_examples",
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("capture_id", sa.String(length=64), nullable=True),
        sa.Column("teacher", sa.String(length=256), nullable=True),
        sa.Column("example", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("words", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reviewer", sa.String(length=256), nullable=True),
        sa.Column("updated", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["dataset_id"], ["review_datasets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dataset_id", "row"),
    )
    with op.batch_alter_table("review_examples", schema=None) as batch_op:
        batch_op.create_index(
            "ix_review_examples_dataset_state", ["dataset_id", "state", "row"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_review_examples_capture_id"), ["capture_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("review_examples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_review_examples_capture_id"))
        batch_op.drop_index("ix_review_examples_dataset_state")
    op.drop_table("review_examples")
    with op.batch_alter_table("review_datasets", schema=None) as batch_op:
        batch_op.drop_index("ix_review_datasets_path_sha")
    op.drop_table("review_datasets")
