"""The ``predictions`` view reads the writer's numbers as cheaply as a plain cast, and
both databases read every other value alike.

Migration 0015's view tested each value before its cast on PostgreSQL, parsing the item
again for each test: reading all four numbers of 200,000 predictions took 3.8 s of one
core where the plain cast took 1.3 s. The view now takes each value's JSON text out of
the item once and casts a plain number (what the writer stores) at once; only other
values are tested as before (:func:`watchkeeper.db.prediction_view._postgres_number`).
Two values read differently on the two databases: a number with an exponent of 5 digits
or more (``1e99999``) was NULL on PostgreSQL and an infinity on SQLite, and is an
infinity (0 for a negative exponent) on both, as ``1e400`` is; a JSON boolean was 1 or 0
on SQLite and NULL on PostgreSQL, and is NULL (no number) on both. The downgrade keeps
the new view: it reads every value the old one read without an error.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from alembic import op

from watchkeeper.db.prediction_view import create_statements, drop_statements

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in drop_statements(dialect) + create_statements(dialect):
        op.execute(statement)


def downgrade() -> None:
    pass
