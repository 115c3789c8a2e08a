"""Features stored once per request: ``requests.features`` holds an accepted request's
feature values by column; ``predictions.features`` is left empty for such rows.

Writing 71 features as one JSON object per prediction row was most of what the log
cost on large batches. Rows written before this revision keep their per-row features;
readers take either (``watchkeeper.db.features``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(
            sa.Column(
                "features",
                sa.JSON,
                comment="accepted requests: feature values by name, one list per feature",
            )
        )
    with op.batch_alter_table("predictions") as batch:
        batch.alter_column("features", existing_type=sa.JSON, nullable=True)


def downgrade() -> None:
    missing = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM predictions WHERE features IS NULL"))
        .scalar()
    )
    if missing:
        raise RuntimeError(
            f"{missing} predictions have their features only in requests.features;"
            " export or prune them before downgrading below 0004"
        )
    with op.batch_alter_table("predictions") as batch:
        batch.alter_column("features", existing_type=sa.JSON, nullable=False)
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("features")
