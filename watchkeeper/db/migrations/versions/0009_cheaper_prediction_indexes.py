"""SQLite: no index on ``predictions.request_id`` (one B-tree less per logged row).

Every prediction row goes into the table and each of its indexes; on SQLite the three
secondary ones cost ~2 ms of the writer's ~7 ms for a 1,000-row request, and the one on
``request_id`` holds nothing the unique prediction id index does not: a request's
predictions have the ids ``<request id>`` (a single record) or ``<request id>.<index>``
(batch items), a range of that index (:mod:`watchkeeper.db.request_rows`, which the
retention's reads by request use). Without it the writer spent 7–12 % less CPU per
1,000-row request and 11–25 % less per single record, and every reader kept an index
plan (bench/README.md, "Indexes of predictions", 2026-11-29).

PostgreSQL keeps its indexes: measured the same way, the changes that keep every
reader's plan (``created_at`` as BRIN, the ids in the ``"C"`` collation) saved 4–7 % of
the backend's CPU, within the run-to-run noise, and the ones that would save more cost
a reader its plan: without ``request_id`` its planner misjudges the id range whose
bounds come from ``requests`` and read every prediction for a prune's count (3.7 s
instead of 51 ms); without ``model_version`` the report's count by version over the
whole log scans every row.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP INDEX ix_predictions_request_id")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE INDEX ix_predictions_request_id ON predictions (request_id)")
