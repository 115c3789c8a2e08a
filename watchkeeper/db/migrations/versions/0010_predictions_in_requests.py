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
is gone gets one back, as accepted), at its item index: a request some of whose
predictions an earlier prune deleted (it kept labelled ones) holds ``null`` for each
item that is gone, which the view skips, so that its prediction ids, labels and
features still match; ``n_items`` then counts the predictions it holds. A request
without a model version (the view reads the request's) takes its predictions'. Features of
rows logged before 0004 are folded into their request's columns. The positions kept by
``seq`` are mapped to the new positions (:mod:`watchkeeper.db.prediction_seq`): the
monitor's watermark becomes the position of the newest prediction it had read, a
window's last row likewise, and its first row the position after that of the row
before it (a window whose rows were pruned maps to an empty range). A prediction's new
position keeps the order of the old ``seq`` except where two writers' requests
interleaved their rows (PostgreSQL, concurrent writers): a request straddling the
watermark is placed by its first row, so around the watermark such a request's items may
be read a second time (first row after the watermark's request) or count as read (first
row before it). Only the window being cut at the upgrade is concerned. The retention's
resume points are dropped (it resumes by request ``seq`` now). On PostgreSQL the
predictions' sequence numbers the requests from where it was. The downgrade rebuilds a
plain ``predictions`` table from the outputs (not partitioned: 0007's downgrade takes
either), numbering the rows afresh in position order and mapping the watermark and the
windows back to those numbers.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from collections.abc import Iterable, Iterator
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
    probabilities = row.probabilities
    if isinstance(probabilities, str):
        probabilities = orjson.loads(probabilities)
    if probabilities is not None:  # JSON null too: a regression row
        out.append(probabilities)
    return out


def _float(value: Any) -> float | None:
    return None if value is None else float(value)  # SQLite: NaN stored as the text 'NaN'


def _outputs(items: list[Any]) -> list[Any]:
    """A request's items by their index, ``None`` where a prediction is gone."""
    outputs: list[Any] = [None] * (max(r.item_index for r in items) + 1)
    for row in items:
        outputs[row.item_index] = _output(row)
    return outputs


def _move_sqlite() -> None:
    """SQLite: each request's outputs built here (its JSON aggregate keeps no order)."""
    rows = op.get_bind().execute(
        sa.text(
            "SELECT request_id, prediction_id, item_index, seq, model_version, prediction,"
            " lower, upper, ood_score, probabilities FROM predictions"
            " ORDER BY request_id, item_index"
        )
    )
    batch: list[dict[str, Any]] = []
    for request_id, items in _by_request(rows):
        batch.append(
            {
                "request_id": request_id,
                "seq": min(r.seq for r in items),
                "single": len(items) == 1 and items[0].prediction_id == request_id,
                "outputs": orjson.dumps(_outputs(items)).decode(),
                "n_items": len(items),
                "version": items[0].model_version,
            }
        )
        if len(batch) >= _CHUNK:
            _store_outputs(batch)
            batch = []
    if batch:
        _store_outputs(batch)


def _by_request(rows: Iterable[Any]) -> Iterator[tuple[str, list[Any]]]:
    """Rows ordered by request, a request's together; read as they come."""
    current: str | None = None
    items: list[Any] = []
    for row in rows:
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
            "UPDATE requests SET seq = :seq, single = :single, outputs = :outputs,"
            " n_items = :n_items, model_version = coalesce(model_version, :version)"
            " WHERE request_id = :request_id"
        ),
        batch,
    )


# PostgreSQL: one item; ``to_json`` names NaN and the infinities. A JSON ``null`` in
# ``probabilities`` is a regression row's.
_POSTGRES_ITEM = (
    "CASE WHEN p.probabilities IS NULL OR p.probabilities::text = 'null'"
    " THEN json_build_array(p.prediction, p.lower, p.upper, p.ood_score)"
    " ELSE json_build_array(p.prediction, p.lower, p.upper, p.ood_score, p.probabilities) END"
)


def _move_postgres() -> None:
    """PostgreSQL: one statement for every request; then the few whose item indexes
    have gaps (predictions an earlier prune deleted) again, with ``null`` there."""
    _run(
        "UPDATE requests r SET seq = p.first_seq, single = p.single, outputs = p.outputs,"
        " n_items = p.n, model_version = coalesce(r.model_version, p.version)"
        " FROM (SELECT p.request_id, min(p.seq) AS first_seq, count(*) AS n,"
        " min(p.model_version) AS version,"
        " count(*) = 1 AND bool_and(p.prediction_id = p.request_id) AS single,"
        f" json_agg({_POSTGRES_ITEM} ORDER BY p.item_index)::text AS outputs"
        " FROM predictions p GROUP BY p.request_id) p"
        " WHERE r.request_id = p.request_id"
    )
    _run(
        "UPDATE requests r SET outputs = g.outputs"
        " FROM (SELECT s.request_id,"
        f" json_agg(CASE WHEN p.seq IS NULL THEN NULL ELSE {_POSTGRES_ITEM} END"
        " ORDER BY i.i)::text AS outputs"
        " FROM (SELECT request_id, max(item_index) AS last FROM predictions"
        " GROUP BY request_id HAVING count(*) <> max(item_index) + 1) s"
        " CROSS JOIN LATERAL generate_series(0, s.last) AS i(i)"
        " LEFT JOIN predictions p ON p.request_id = s.request_id AND p.item_index = i.i"
        " GROUP BY s.request_id) g"
        " WHERE r.request_id = g.request_id"
    )


def _fold_row_features() -> None:
    """Rows logged before 0004 held their features themselves: their request's
    columns now hold them, by item index (a feature a row lacks is null)."""
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT p.request_id, p.item_index, p.features FROM predictions p"
            " WHERE p.features IS NOT NULL AND CAST(p.features AS TEXT) != 'null'"
            " ORDER BY p.request_id, p.item_index"
        )
    )
    update = sa.text(
        "UPDATE requests SET features = :features"
        " WHERE request_id = :request_id AND features IS NULL"
    )
    updates = []
    for request_id, items in _by_request(rows):
        n = max(r.item_index for r in items) + 1
        columns: dict[str, list[Any]] = {}
        for row in items:
            record = orjson.loads(row.features) if isinstance(row.features, str) else row.features
            for name, value in (record or {}).items():
                columns.setdefault(name, [None] * n)[row.item_index] = value
        updates.append({"request_id": request_id, "features": orjson.dumps(columns).decode()})
        if len(updates) >= _CHUNK:
            connection.execute(update, updates)
            updates = []
    if updates:
        connection.execute(update, updates)


def _map_positions() -> None:
    """The monitor's watermark and its windows' first and last rows, as positions.

    A value's position is that of the newest prediction at or before it (0: none), a
    window's first row the position after that of the row before it. The mapping is
    built in one pass over the predictions in ``seq`` order, which the primary key
    gives, merged with the sorted values (a query per value would probe every
    partition of a partitioned table for each of a long history's windows)."""
    connection = op.get_bind()
    old = _kept_positions()
    if old:
        rows = connection.execute(
            sa.text(
                "SELECT p.seq, p.item_index, r.seq AS request_seq FROM predictions p"
                " JOIN requests r ON r.request_id = p.request_id"
                " WHERE p.seq <= :last ORDER BY p.seq"
            ).execution_options(yield_per=10_000),
            {"last": old[-1]},
        )
        mapped: dict[int, int] = {}
        values = iter(old)
        value = next(values)
        position = 0
        done = False
        for row in rows:
            while row.seq > value:
                mapped[value] = position
                value = next(values, None)  # type: ignore[arg-type]
                if value is None:
                    done = True
                    break
            if done:
                break
            position = int(row.request_seq) * ITEMS_PER_REQUEST + int(row.item_index)
        if not done:
            mapped[value] = position
            mapped.update({v: position for v in values})
        rows.close()
        _remap(mapped)
    _run("DELETE FROM monitor_state WHERE name IN ('retention_predictions', 'retention_requests')")


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
    positions = _kept_positions()
    old = iter(positions)
    position = next(old, None)
    mapped: dict[int, int] = {}
    # Rows in the order of their positions, numbered afresh: a kept position becomes
    # the number of the rows at or before it.
    rows = _run(
        "SELECT request_id, received_at, model_version, seq, single, outputs FROM requests"
        " WHERE outputs IS NOT NULL ORDER BY seq"
    )
    insert = sa.text(
        "INSERT INTO predictions (seq, prediction_id, request_id, item_index, created_at,"
        " model_version, prediction, lower, upper, ood_score, probabilities)"
        " VALUES (:seq, :prediction_id, :request_id, :item_index, :created_at,"
        " :model_version, :prediction, :lower, :upper, :ood_score, :probabilities)"
    )
    batch: list[dict[str, Any]] = []
    n = 0
    for row in rows:
        outputs = orjson.loads(row.outputs) if isinstance(row.outputs, str) else row.outputs
        for i, out in enumerate(outputs):
            if out is None:  # a prediction gone before 0010
                continue
            here = int(row.seq) * ITEMS_PER_REQUEST + i
            while position is not None and position < here:
                mapped[position] = n
                position = next(old, None)
            n += 1
            batch.append(
                {
                    "seq": n,
                    "prediction_id": row.request_id if row.single else f"{row.request_id}.{i}",
                    "request_id": row.request_id,
                    "item_index": i,
                    "created_at": row.received_at,
                    "model_version": row.model_version or "",
                    "prediction": _downgraded(out[0]),
                    "lower": _downgraded(out[1]),
                    "upper": _downgraded(out[2]),
                    "ood_score": None if len(out) < 4 else _downgraded(out[3]),
                    "probabilities": None if len(out) < 5 else orjson.dumps(out[4]).decode(),
                }
            )
        if len(batch) >= _CHUNK:
            op.get_bind().execute(insert, batch)
            batch = []
    if batch:
        op.get_bind().execute(insert, batch)
    while position is not None:
        mapped[position] = n
        position = next(old, None)
    _remap(mapped)
    if postgres:  # the sequence goes on after the rows numbered here
        _run(f"SELECT setval('{_SEQUENCE}', :n, :called)", n=max(n, 1), called=n > 0)
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


def _kept_positions() -> list[int]:
    """The positions (before 0010: ``seq`` values) kept elsewhere, whose counterpart
    the other side of the migration needs: the watermark, each window's last row and
    the one before its first."""
    return sorted(
        {
            int(v)
            for v in _run(
                "SELECT watermark FROM monitor_state WHERE name = 'windows'"
                " UNION SELECT last_seq FROM window_results"
                " UNION SELECT first_seq - 1 FROM window_results"
            ).scalars()
        }
    )


def _remap(mapped: dict[int, int]) -> None:
    """The watermark and the windows' rows as ``mapped`` gives them (a window's first
    row: one past the row before it)."""
    if not mapped:
        return
    _run("CREATE TEMPORARY TABLE wk_positions (old BIGINT PRIMARY KEY, new BIGINT)")
    op.get_bind().execute(
        sa.text("INSERT INTO wk_positions (old, new) VALUES (:old, :new)"),
        [{"old": k, "new": v} for k, v in mapped.items()],
    )
    _run(
        "UPDATE monitor_state SET watermark ="
        " (SELECT new FROM wk_positions WHERE old = monitor_state.watermark)"
        " WHERE name = 'windows'"
    )
    _run(
        "UPDATE window_results SET"
        " first_seq = (SELECT new + 1 FROM wk_positions WHERE old = window_results.first_seq - 1),"
        " last_seq = (SELECT new FROM wk_positions WHERE old = window_results.last_seq)"
    )
    _run("DROP TABLE wk_positions")


def _downgraded(value: Any) -> Any:
    """A stored number as the old columns held it: SQLite kept NaN as the text 'NaN'."""
    if isinstance(value, str):
        number = float(value)
        return "NaN" if number != number and not _postgres() else number
    return value
