"""``requests.features`` may hold a category column as its values and codes.

From this revision the log's writer stores a category column that reached it
dictionary-encoded (an Arrow body's) as ``{"values": [...], "codes": [...]}`` instead
of each row's text (:mod:`watchkeeper.feature_columns`): a fifth of the text for
Ames' category columns. Readers of this revision decode either form; those of earlier
revisions read lists only. The schema does not change, so the upgrade does nothing.
The downgrade rewrites each request stored so into lists, as earlier revisions wrote
it, in time proportional to those requests.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_CHUNK = 200
# Every stored value of this form holds this text; lists may hold it only in a string.
_MARK = '%"codes":%'


def upgrade() -> None:
    pass


def _row_values(column: Any) -> Any:
    if not isinstance(column, dict):
        return column
    values = column["values"]
    return [values[code] for code in column["codes"]]


def downgrade() -> None:
    connection = op.get_bind()
    ids = connection.execute(
        sa.text(
            "SELECT request_id FROM requests WHERE CAST(features AS TEXT) LIKE :mark"
        ).bindparams(mark=_MARK)
    ).scalars()
    ids = list(ids)
    select = sa.text(
        "SELECT request_id, CAST(features AS TEXT) AS features FROM requests"
        " WHERE request_id IN :ids"
    ).bindparams(sa.bindparam("ids", expanding=True))
    update = sa.text("UPDATE requests SET features = :features WHERE request_id = :request_id")
    for start in range(0, len(ids), _CHUNK):
        rows = connection.execute(select, {"ids": ids[start : start + _CHUNK]}).all()
        updates = []
        for row in rows:
            stored = orjson.loads(row.features)
            if not any(isinstance(column, dict) for column in stored.values()):
                continue  # the mark was in a value
            columns = {name: _row_values(column) for name, column in stored.items()}
            updates.append(
                {"request_id": row.request_id, "features": orjson.dumps(columns).decode()}
            )
        if updates:
            connection.execute(update, updates)
