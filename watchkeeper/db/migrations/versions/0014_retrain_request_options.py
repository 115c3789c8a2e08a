"""``retrain_requests.options``: the training options a request asks for.

``watchkeeper retrain --max-iter 1`` (or ``--csv``, ``--rdataset``, ``--target``) run
while a job held the lease said its request was queued for the next job, and that job
trained with the champion's parameters and data: the options lived only in the
command's process. They are stored with the request now
(:class:`watchkeeper.retrain_options.RetrainOptions`; NULL: the champion's), and the job
that claims it trains with them. The downgrade drops the column.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("retrain_requests") as batch:
        batch.add_column(sa.Column("options", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("retrain_requests") as batch:
        batch.drop_column("options")
