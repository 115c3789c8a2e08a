"""The ``predictions`` view on PostgreSQL reads any stored value without an error.

Its columns cast each output's text with ``::float8``: a value no server writes (text,
or a number beyond a double's range such as ``1e400``, written into ``requests.outputs``
by a buggy or foreign writer) raised in every query that read its row, and the monitor
failed every cycle on it, for good. The view reads such a value as NULL now, a number
beyond a double's range as an infinity (as SQLite reads it)
(:func:`watchkeeper.db.prediction_view._postgres_number`). SQLite's view is unchanged
(its reads turn such text into NULL, ``watchkeeper.db.tables.LoggedFloat``). The
downgrade keeps the new view: it reads every value the old one read, and as it did.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from alembic import op

from watchkeeper.db.prediction_view import create_statements, drop_statements

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in drop_statements("postgresql") + create_statements("postgresql"):
        op.execute(statement)


def downgrade() -> None:
    pass
