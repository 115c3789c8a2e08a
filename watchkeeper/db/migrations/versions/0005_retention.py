"""Retention: an index on ``feedback.received_at``.

Labels are kept, and pruned, by their arrival time (``watchkeeper.db.retention``); the
monitor also reads new labels by it. Without the index each of those reads scans every
label the log holds.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_feedback_received_at", "feedback", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_received_at", table_name="feedback")
