"""Classification: class probabilities on predictions, class labels on feedback.

A classifier's prediction row keeps ``prediction`` as the predicted class's position in
the version's classes (``lower`` and ``upper`` repeat it) and its class probabilities in
``probabilities``; the prediction set is those probabilities against the version's
threshold. A class label arrives as text in ``feedback.label``; ``actual`` holds a
number (a regression target, or a label that is one) and is NULL for text labels.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PROBABILITIES_COMMENT = "classifiers: class probabilities, in the version's classes order"
LABEL_COMMENT = "classifiers: the true class, as text"


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("probabilities", sa.JSON, comment=PROBABILITIES_COMMENT))
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("label", sa.String(256), comment=LABEL_COMMENT))
        batch.alter_column("actual", existing_type=sa.Float, nullable=True)


def downgrade() -> None:
    labelled = (
        op.get_bind()
        .execute(sa.text("SELECT count(*) FROM feedback WHERE actual IS NULL"))
        .scalar()
    )
    if labelled:
        raise RuntimeError(
            f"{labelled} labels are class names with no number;"
            " export or prune them before downgrading below 0006"
        )
    with op.batch_alter_table("feedback") as batch:
        batch.alter_column("actual", existing_type=sa.Float, nullable=False)
        batch.drop_column("label")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("probabilities")
