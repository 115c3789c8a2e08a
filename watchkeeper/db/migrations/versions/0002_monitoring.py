"""Monitoring: ground-truth feedback, OOD scores, monitor state, window results and
retrain requests.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("ood_score", sa.Float))
    op.create_table(
        "feedback",
        sa.Column("prediction_id", sa.String(48), primary_key=True),
        sa.Column("actual", sa.Float, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "monitor_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("watermark", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "window_results",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("window_id", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("detector", sa.String(32), nullable=False),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("n_rows", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("is_drift", sa.Boolean),
        sa.Column("score", sa.Float),
        sa.Column("details", sa.JSON, nullable=False),
        sa.UniqueConstraint("window_id", "detector", name="uq_window_results_window_detector"),
    )
    op.create_index("ix_window_results_evaluated_at", "window_results", ["evaluated_at"])
    op.create_table(
        "retrain_requests",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("model_version", sa.String(64)),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    )
    op.create_index("ix_retrain_requests_status", "retrain_requests", ["status"])


def downgrade() -> None:
    op.drop_table("retrain_requests")
    op.drop_table("window_results")
    op.drop_table("monitor_state")
    op.drop_table("feedback")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("ood_score")
