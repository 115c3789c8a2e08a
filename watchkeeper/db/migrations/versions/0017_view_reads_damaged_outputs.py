"""The ``predictions`` view reads outputs that are no JSON list, and a number's text of
any length, without an error and alike on both databases.

A request's ``outputs`` that were no JSON list (cut short, text, an object: a foreign
writer's, a damaged row) raised in every query over the view that met the request
(PostgreSQL's ``::json`` cast, SQLite's ``json_each``): the monitor's cycle, the report,
retraining's reads, until the row was mended by hand. They read as one prediction of no
number now, on both databases (PostgreSQL: the function ``watchkeeper_outputs``, whose
cast is made in an ``EXCEPTION`` block), as does an item that is no list (a string item
raised on SQLite). A number's text of over 300 characters read as NULL on PostgreSQL
and as its value on SQLite (an infinity beyond a double's range, 0 under it); it reads
as its value on both (the function ``watchkeeper_number``,
:mod:`watchkeeper.db.prediction_view`). The downgrade keeps the new view and its
functions: it reads without an error every value the old one read.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from alembic import op

from watchkeeper.db.prediction_view import create_statements, drop_statements

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in drop_statements(dialect) + create_statements(dialect):
        op.execute(statement)


def downgrade() -> None:
    pass
