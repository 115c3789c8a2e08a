"""``requests.features`` as ``text`` on PostgreSQL instead of ``json``.

The ``json`` type parses every value written to it to check that it is JSON: for a
1,000-row request's features, ~1.7 ms of PostgreSQL's CPU, a sixth of what storing
the request costs the server. Only the prediction log's writer writes the column, with
text orjson wrote or parsed, and every reader decodes it with orjson; reads through
SQLAlchemy still return decoded JSON (``watchkeeper.db.tables.JsonText``).

The upgrade rewrites ``requests`` (every partition) in its transaction, in time and disk
proportional to the table. The downgrade converts back and fails, changing nothing, if
some stored value is not JSON. SQLite stores JSON as text already: nothing changes
there.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _convert(to: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE requests ALTER COLUMN features TYPE {to} USING features::{to}")


def upgrade() -> None:
    _convert("text")


def downgrade() -> None:
    _convert("json")
