"""``requests.max_ood_score`` indexed beside ``seq`` rather than on its own.

Migration 0011 indexed each request's highest OOD score on its own. Scores come in no
order, so every logged request inserted an entry at a random leaf of that index: once
the index outgrew the database's cache, each insert read and dirtied a leaf of its own
(on SQLite a page of WAL per request, on PostgreSQL a full page image after each
checkpoint). At 3 M requests stored a busy SQLite writer spent 1.4–1.9× the CPU per
request and twice the WAL, PostgreSQL 3–3.5× the WAL (bench/README.md,
``log_scale_bench.py --compare score-index``). The score now sits in the ``seq``
index as a second key: requests enter it at its end, in the order they are stored, and
the report's ranking of the whole log reads that index alone (no table row) and sorts
it (:func:`monitoring.report.log_rows.most_out_of_distribution`: 0.4–0.5 s at 3 M
requests, where the score's index took milliseconds); ``seq`` reads use it as before.
The downgrade builds the two indexes of 0011 again.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX ix_requests_max_ood_score")
    op.execute("DROP INDEX ix_requests_seq")
    op.execute("CREATE INDEX ix_requests_seq ON requests (seq, max_ood_score)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ANALYZE requests")


def downgrade() -> None:
    op.execute("DROP INDEX ix_requests_seq")
    op.execute("CREATE INDEX ix_requests_seq ON requests (seq)")
    op.execute("CREATE INDEX ix_requests_max_ood_score ON requests (max_ood_score)")
