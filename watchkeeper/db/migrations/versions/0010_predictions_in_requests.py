"""Predictions stored in their request's row; ``predictions`` becomes a view.

A row per prediction, with its five indexes, was two thirds of what logging a
1,000-row request cost on both databases and half of a single record's
(bench/README.md, "What the prediction rows cost at all"). Each accepted request now
holds its predictions in ``requests.outputs`` (``[[prediction, lower, upper, ood_score(,
probabilities)], ...]``, JSON text), with ``requests.seq`` numbering requests in the
order they were stored and ``requests.single`` telling a single record's prediction id
(its request id) from a batch item's. The view ``predictions``
(:mod:`watchkeeper.db.prediction_view`) gives readers a row per prediction as before.

The upgrade moves every stored prediction into its request's row (a request whose row
is gone gets one back, as accepted), folds the features of rows logged before 0004 into
their request's columns, and maps the positions kept by ``seq`` to the new positions
(:mod:`watchkeeper.db.prediction_seq`): the monitor's watermark and its windows' first
and last rows. A prediction's new position keeps the order of the old ``seq`` except
where two writers' requests interleaved their rows (PostgreSQL): around the watermark
such a request's later items may count as read. The retention's resume point within
``predictions`` is dropped (it deletes requests now). On PostgreSQL the predictions'
sequence numbers the requests from where it was. The downgrade rebuilds a plain
``predictions`` table from the outputs (not partitioned: 0007's downgrade takes either).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from collections.abc import Iterable
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

from watchkeeper.db.prediction_seq import ITEMS_PER_REQUEST
from watchkeeper.db.prediction_view import create_statements, drop_statements

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_SEQUENCE = "predictions_seq_seq"
_REQUEST_SEQUENCE = "requests_seq_seq"
_CHUNK = 1000


def _run(sql: str, **params: Any) -> sa.CursorResult[Any]:
    return op.get_bind().execute(sa.text(sql), params)


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


# -- upgrade ---------------------------------------------------------------------------


def _add_columns() -> None:
    if _postgres():
        _run(
            "ALTER TABLE requests ADD COLUMN seq bigint, ADD COLUMN single boolean,"
            " ADD COLUMN outputs text"
        )
        _run("COMMENT ON COLUMN requests.outputs IS 'accepted requests: one [prediction,"
             " lower, upper, ood_score (, probabilities)] per item'")  # fmt: skip
        return
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger))
        batch.add_column(sa.Column("single", sa.Boolean))
        batch.add_column(sa.Column("outputs", sa.JSON))


def _restore_orphans() -> None:
    """A request row for predictions whose request row is gone (rows written by other
    means): the view reads predictions through their request."""
    _run(
        "INSERT INTO requests (request_id, received_at, endpoint, method, status_code,"
        " latency_seconds, model_version, n_items)"
        " SELECT p.request_id, min(p.created_at), '/predict', 'POST', 200, 0,"
        " min(p.model_version), count(*) FROM predictions p"
        " WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.request_id = p.request_id)"
        " GROUP BY p.request_id"
    )


def _number_text(value: float | None) -> Any:
    if value is None or value == value and abs(value) != float("inf"):
        return value
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _output(row: Any) -> list[Any]:
    out = [_number_text(_float(v)) for v in (row.prediction, row.lower, row.upper, row.ood_score)]
    if row.probabilities is not None:
        probabilities = row.probabilities
        out.append(orjson.loads(probabilities) if isinstance(probabilities, str) else probabilities)
    return out


def _float(value: Any) -> float | None:
    return None if value is None else float(value)  # SQLite: NaN stored as the text 'NaN'


def _move_sqlite() -> None:
    """SQLite: each request's outputs built here (its JSON aggregate keeps no order)."""
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT request_id, prediction_id, item_index, seq, prediction, lower, upper,"
            " ood_score, probabilities FROM predictions ORDER BY request_id, item_index"
        )
    )
    batch: list[dict[str, Any]] = []
    for request_id, items in _by_request(rows):
        batch.append(
            {
                "request_id": request_id,
                "seq": min(r.seq for r in items),
                "single": len(items) == 1 and items[0].prediction_id == request_id,
                "outputs": orjson.dumps([_output(r) for r in items]).decode(),
            }
        )
        if len(batch) >= _CHUNK:
            _store_outputs(batch)
            batch = []
    if batch:
        _store_outputs(batch)


def _by_request(rows: Iterable[Any]) -> Iterable[tuple[str, list[Any]]]:
    current: str | None = None
    items: list[Any] = []
    for row in rows.fetchall() if hasattr(rows, "fetchall") else rows:
        if row.request_id != current and items:
            yield current, items  # type: ignore[misc]
            items = []
        current = row.request_id
        items.append(row)
    if items:
        yield current, items  # type: ignore[misc]


def _store_outputs(batch: list[dict[str, Any]]) -> None:
    op.get_bind().execute(
        sa.text(
            "UPDATE requests SET seq = :seq, single = :single, outputs = :outputs"
            " WHERE request_id = :request_id"
        ),
        batch,
    )


def _move_postgres() -> None:
    """PostgreSQL: one statement; ``to_json`` names NaN and the infinities."""
    _run(
        "UPDATE requests r SET seq = p.first_seq, single = p.single, outputs = p.outputs"
        " FROM (SELECT request_id, min(seq) AS first_seq,"
        " count(*) = 1 AND bool_and(prediction_id = request_id) AS single,"
        " json_agg(CASE WHEN probabilities IS NULL"
        " THEN json_build_array(prediction, lower, upper, ood_score)"
        " ELSE json_build_array(prediction, lower, upper, ood_score, probabilities) END"
        " ORDER BY item_index)::text AS outputs"
        " FROM predictions GROUP BY request_id) p"
        " WHERE r.request_id = p.request_id"
    )


def _fold_row_features() -> None:
    """Rows logged before 0004 held their features themselves: their request's
    columns now hold them (a feature a row lacks is null)."""
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT p.request_id, p.item_index, p.features FROM predictions p"
            " WHERE p.features IS NOT NULL AND CAST(p.features AS TEXT) != 'null'"
            " ORDER BY p.request_id, p.item_index"
        )
    )
    updates = []
    for request_id, items in _by_request(rows):
        records = [
            orjson.loads(r.features) if isinstance(r.features, str) else r.features for r in items
        ]
        n = max(r.item_index for r in items) + 1
        columns: dict[str, list[Any]] = {}
        for row, record in zip(items, records, strict=True):
            for name, value in (record or {}).items():
                columns.setdefault(name, [None] * n)[row.item_index] = value
        updates.append({"request_id": request_id, "features": orjson.dumps(columns).decode()})
    if updates:
        connection.execute(
            sa.text(
                "UPDATE requests SET features = :features"
                " WHERE request_id = :request_id AND features IS NULL"
            ),
            updates,
        )


def _new_position(old: int) -> int:
    """The position of the prediction stored as ``seq`` ``old`` or, if it is gone, of
    the latest one before it; 0 when there is none."""
    row = _run(
        "SELECT p.item_index, r.seq FROM predictions p JOIN requests r"
        " ON r.request_id = p.request_id WHERE p.seq <= :old ORDER BY p.seq DESC LIMIT 1",
        old=old,
    ).first()
    return 0 if row is None else int(row.seq) * ITEMS_PER_REQUEST + int(row.item_index)


def _map_positions() -> None:
    """The monitor's watermark and its windows' first and last rows, as positions."""
    mapped: dict[int, int] = {}

    def new(old: int) -> int:
        if old not in mapped:
            mapped[old] = _new_position(int(old))
        return mapped[old]

    watermark = _run("SELECT watermark FROM monitor_state WHERE name = 'windows'").scalar()
    if watermark is not None:
        _run("UPDATE monitor_state SET watermark = :w WHERE name = 'windows'", w=new(watermark))
    windows = _run("SELECT id, first_seq, last_seq FROM window_results").all()
    updates = [
        # a window's first row: the one after the row before it
        {"id": w.id, "first": _first_position(int(w.first_seq)), "last": new(w.last_seq)}
        for w in windows
    ]
    if updates:
        op.get_bind().execute(
            sa.text(
                "UPDATE window_results SET first_seq = :first, last_seq = :last WHERE id = :id"
            ),
            updates,
        )
    _run("DELETE FROM monitor_state WHERE name = 'retention_predictions'")


def _first_position(old: int) -> int:
    row = _run(
        "SELECT p.item_index, r.seq FROM predictions p JOIN requests r"
        " ON r.request_id = p.request_id WHERE p.seq >= :old ORDER BY p.seq LIMIT 1",
        old=old,
    ).first()
    return (
        old * ITEMS_PER_REQUEST
        if row is None
        else int(row.seq) * ITEMS_PER_REQUEST + int(row.item_index)
    )


def _drop_predictions() -> None:
    if _postgres():
        _run(f"ALTER SEQUENCE {_SEQUENCE} OWNED BY NONE")
        _run("DROP TABLE predictions")
        _run(f"ALTER SEQUENCE {_SEQUENCE} RENAME TO {_REQUEST_SEQUENCE}")
        _run(f"ALTER SEQUENCE {_REQUEST_SEQUENCE} OWNED BY requests.seq")
        _run(f"ALTER TABLE requests ALTER COLUMN seq SET DEFAULT nextval('{_REQUEST_SEQUENCE}')")
    else:
        _run("DROP TABLE predictions")
    _run("CREATE INDEX ix_requests_seq ON requests (seq)")
    _run("CREATE INDEX ix_requests_model_version ON requests (model_version)")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    _add_columns()
    _restore_orphans()
    if dialect == "postgresql":
        _move_postgres()
    else:
        _move_sqlite()
    _fold_row_features()
    _map_positions()
    _drop_predictions()
    for statement in create_statements(dialect):
        _run(statement)
    if dialect == "postgresql":
        _run("ANALYZE requests")


# -- downgrade -------------------------------------------------------------------------


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in drop_statements(dialect):
        _run(statement)
    postgres = dialect == "postgresql"
    op.create_table(
        "predictions",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("prediction_id", sa.String(48), nullable=False, unique=True),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("item_index", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("model_version", sa.String(64), nullable=False, index=True),
        sa.Column("features", sa.JSON),
        sa.Column("prediction", sa.Float, nullable=False),
        sa.Column("lower", sa.Float, nullable=False),
        sa.Column("upper", sa.Float, nullable=False),
        sa.Column("ood_score", sa.Float, comment="set by the monitor"),
        sa.Column(
            "probabilities",
            sa.JSON,
            comment="classifiers: class probabilities, in the version's classes order",
        ),
    )
    if postgres:
        _run("CREATE INDEX ix_predictions_request_id ON predictions (request_id)")
    # Rows in the order of their positions; ``seq`` numbers them afresh.
    rows = _run(
        "SELECT request_id, received_at, model_version, single, outputs FROM requests"
        " WHERE outputs IS NOT NULL ORDER BY seq"
    )
    insert = sa.text(
        "INSERT INTO predictions (prediction_id, request_id, item_index, created_at,"
        " model_version, prediction, lower, upper, ood_score, probabilities)"
        " VALUES (:prediction_id, :request_id, :item_index, :created_at, :model_version,"
        " :prediction, :lower, :upper, :ood_score, :probabilities)"
    )
    batch: list[dict[str, Any]] = []
    for row in rows.fetchall():
        outputs = orjson.loads(row.outputs) if isinstance(row.outputs, str) else row.outputs
        for i, out in enumerate(outputs):
            batch.append(
                {
                    "prediction_id": row.request_id if row.single else f"{row.request_id}.{i}",
                    "request_id": row.request_id,
                    "item_index": i,
                    "created_at": row.received_at,
                    "model_version": row.model_version or "",
                    "prediction": _downgraded(out[0]),
                    "lower": _downgraded(out[1]),
                    "upper": _downgraded(out[2]),
                    "ood_score": None if out[3] is None else _downgraded(out[3]),
                    "probabilities": None if len(out) < 5 else orjson.dumps(out[4]).decode(),
                }
            )
        if len(batch) >= _CHUNK:
            op.get_bind().execute(insert, batch)
            batch = []
    if batch:
        op.get_bind().execute(insert, batch)
    _run("DROP INDEX ix_requests_seq")
    _run("DROP INDEX ix_requests_model_version")
    if postgres:
        _run("ALTER TABLE requests DROP COLUMN seq, DROP COLUMN single, DROP COLUMN outputs")
        _run(f"DROP SEQUENCE IF EXISTS {_REQUEST_SEQUENCE}")
    else:
        with op.batch_alter_table("requests") as batch_op:
            batch_op.drop_column("outputs")
            batch_op.drop_column("single")
            batch_op.drop_column("seq")


def _downgraded(value: Any) -> Any:
    """A stored number as the old columns held it: SQLite kept NaN as the text 'NaN'."""
    if isinstance(value, str):
        number = float(value)
        return "NaN" if number != number and not _postgres() else number
    return value
