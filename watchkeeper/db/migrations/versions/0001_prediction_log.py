"""Prediction log: one row per request, one per prediction.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("request_id", sa.String(32), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("status_code", sa.SmallInteger, nullable=False),
        sa.Column("latency_seconds", sa.Float, nullable=False),
        sa.Column("model_version", sa.String(64)),
        sa.Column("n_items", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.JSON),
        sa.Column("body", sa.Text, comment="rejected requests only, truncated"),
        sa.Column("client_request_id", sa.String(128)),
    )
    op.create_index("ix_requests_received_at", "requests", ["received_at"])
    op.create_table(
        "predictions",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("prediction_id", sa.String(48), nullable=False, unique=True),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("item_index", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("features", sa.JSON, nullable=False),
        sa.Column("prediction", sa.Float, nullable=False),
        sa.Column("lower", sa.Float, nullable=False),
        sa.Column("upper", sa.Float, nullable=False),
    )
    op.create_index("ix_predictions_request_id", "predictions", ["request_id"])
    op.create_index("ix_predictions_created_at", "predictions", ["created_at"])
    op.create_index("ix_predictions_model_version", "predictions", ["model_version"])


def downgrade() -> None:
    op.drop_table("predictions")
    op.drop_table("requests")
