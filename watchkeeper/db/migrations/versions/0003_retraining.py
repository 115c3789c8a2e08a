"""Retraining: run history, a single-flight lease, and de-duplicated requests.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("retrain_requests") as batch:
        batch.add_column(sa.Column("dedupe_key", sa.String(255)))
        batch.add_column(sa.Column("run_id", sa.BigInteger))
        batch.create_unique_constraint("uq_retrain_requests_dedupe_key", ["dedupe_key"])
    op.create_table(
        "retrain_runs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("trigger", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("request_ids", sa.JSON, nullable=False),
        sa.Column("champion_version", sa.String(64)),
        sa.Column("candidate_version", sa.String(64)),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("champion_metrics", sa.JSON),
        sa.Column("candidate_metrics", sa.JSON),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("decision_reason", sa.Text),
    )
    op.create_index("ix_retrain_runs_started_at", "retrain_runs", ["started_at"])
    op.create_table(
        "retrain_lease",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("holder", sa.String(128)),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
    )
    op.execute("INSERT INTO retrain_lease (name) VALUES ('retrain')")


def downgrade() -> None:
    op.drop_table("retrain_lease")
    op.drop_table("retrain_runs")
    with op.batch_alter_table("retrain_requests") as batch:
        batch.drop_constraint("uq_retrain_requests_dedupe_key", type_="unique")
        batch.drop_column("run_id")
        batch.drop_column("dedupe_key")
