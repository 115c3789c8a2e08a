"""``requests.max_ood_score``: each request's highest OOD score, indexed.

Since 0010 a prediction's score lives in its request's ``outputs``, and the report's
"most out of distribution" rows, ranked over a period (by default the whole log), had
every request of the period expanded through the ``predictions`` view to sort its
items: 649 ms on 400,000 logged predictions where the table before 0010 took 63 ms.
With each request's highest score in a column, indexed, the report takes the requests
that can hold its top rows by that index and expands only those
(:func:`monitoring.report.log_rows.most_out_of_distribution`). The log's writer sets
the column from the scores it stores, the monitor where it writes its scores back.

The upgrade computes it for every stored request through the view (NaN scores left
out, as the view's SQLite form reads them as NULL); the downgrade drops it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_SQLITE_FILL = """
UPDATE requests SET max_ood_score = (
    SELECT max(p.ood_score) FROM predictions p WHERE p.request_seq = requests.seq
) WHERE outputs IS NOT NULL
"""
# PostgreSQL reads a NaN score as NaN, which its max() would rank above every number;
# ``<> 'NaN'`` leaves it (and NULL) out.
_POSTGRES_FILL = """
UPDATE requests r SET max_ood_score = m.top
FROM (
    SELECT request_seq, max(ood_score) AS top FROM predictions
    WHERE ood_score <> 'NaN' GROUP BY request_seq
) m
WHERE r.seq = m.request_seq
"""


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.execute("ALTER TABLE requests ADD COLUMN max_ood_score FLOAT")
    op.execute(_POSTGRES_FILL if postgres else _SQLITE_FILL)
    op.execute("CREATE INDEX ix_requests_max_ood_score ON requests (max_ood_score)")
    if postgres:
        op.execute("ANALYZE requests")


def downgrade() -> None:
    op.execute("DROP INDEX ix_requests_max_ood_score")
    op.execute("ALTER TABLE requests DROP COLUMN max_ood_score")
