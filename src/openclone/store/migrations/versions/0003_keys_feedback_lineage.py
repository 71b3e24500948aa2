"""keys' last use, feedback's author, export hash history, erased datasets

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 16:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_used", sa.Float(), nullable=True))
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.String(length=32), nullable=True))
        batch_op.create_foreign_key(
            "fk_feedback_user_id", "users", ["user_id"], ["id"], ondelete="CASCADE"
        )
    with op.batch_alter_table("exports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hashes", sa.JSON(), server_default="[]", nullable=False))
    with op.batch_alter_table("erasures", schema=None) as batch_op:
        batch_op.add_column(sa.Column("datasets", sa.JSON(), server_default="[]", nullable=False))
    # Exports made before this revision: their history starts with the hash they have.
    conn = op.get_bind()
    exports = sa.table(
        "exports", sa.column("id"), sa.column("sha256"), sa.column("hashes", sa.JSON)
    )
    for export_id, sha in conn.execute(sa.select(exports.c.id, exports.c.sha256)).all():
        conn.execute(exports.update().where(exports.c.id == export_id).values(hashes=[sha]))
    # Feedback before this revision was always on the author's own capture.
    feedback = sa.table("feedback", sa.column("capture_id"), sa.column("user_id"))
    captures = sa.table("captures", sa.column("id"), sa.column("user_id"))
    conn.execute(
        feedback.update().values(
            user_id=sa.select(captures.c.user_id)
            .where(captures.c.id == feedback.c.capture_id)
            .scalar_subquery()
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("erasures", schema=None) as batch_op:
        batch_op.drop_column("datasets")
    with op.batch_alter_table("exports", schema=None) as batch_op:
        batch_op.drop_column("hashes")
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_constraint("fk_feedback_user_id", type_="foreignkey")
        batch_op.drop_column("user_id")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("last_used")
