"""Tables of the prediction log, as SQLAlchemy Core metadata.

This module describes the schema the code expects; migrations in
``watchkeeper/db/migrations`` create it, and a test checks the two agree.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from watchkeeper.feature_columns import row_columns


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware timestamp on every backend. SQLite stores no zone and hands back
    naive datetimes; every value written here is UTC, so reads are marked UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


NUMBER_TEXT = r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?"
"""A number's text as the writer stores one (a JSON number): the only text either
database's reads take for a number (PostgreSQL's view, :mod:`watchkeeper.db.prediction_view`)."""
_NUMBER = re.compile(NUMBER_TEXT)
_NAMED = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
"""The non-finite numbers the writer stores by name (JSON has none)."""


def _sqlite_number(value: Any) -> Any:
    """A stored number: a float, or its name as the writer stores a non-finite one.
    Text that is no number (no server writes it; a foreign writer's) is read as no
    number, NULL, as PostgreSQL's view reads it: raised, it failed every read of its
    row (the monitor's every cycle)."""
    if value.__class__ is not str:
        return value
    named = _NAMED.get(value)
    if named is not None:
        return named
    # a number's text only, as PostgreSQL's view reads one (float() also takes "inf")
    return float(value) if _NUMBER.fullmatch(value) else None


def _sqlite_nan(value: Any) -> Any:
    return "NaN" if value != value else value


class LoggedFloat(sa.TypeDecorator[float]):
    """A logged prediction or bound, which may be NaN or infinite (what the model
    returned). SQLite turns a NaN bound as a number into NULL, so it is stored there as
    the text ``NaN`` (as serving.log_store writes it), and read back as a float.
    PostgreSQL's float8 holds NaN itself: no conversion there."""

    impl = sa.Float
    cache_ok = True

    def bind_processor(self, dialect: Any) -> Any:
        return _sqlite_nan if dialect.name == "sqlite" else None

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        return _sqlite_number if dialect.name == "sqlite" else None


class _UntypedText(sa.types.UserDefinedType[str]):
    """PostgreSQL ``text`` whose values are sent as untyped literals, not cast to text
    (the dialect casts its own text type's): a database still at a revision before
    0008 takes them into ``json`` as well (a migration test writing rows to upgrade)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "TEXT"


class JsonText(sa.TypeDecorator[Any]):
    """JSON that PostgreSQL keeps as ``text`` (migration 0008); SQLite as before.

    PostgreSQL's ``json`` type parses every value it is given to check it: for a
    request's features, about 1.7 ms of the server's CPU per 1,000 rows, a sixth of
    what storing the request costs it. The values are written by the log's writer
    only, as text orjson wrote or orjson parsed (``serving.log_entry``), and every
    reader decodes them with orjson, so the check bought nothing. Reads and writes
    through SQLAlchemy still see decoded JSON on both databases."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(_UntypedText())
        return dialect.type_descriptor(sa.JSON())

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if dialect.name == "postgresql" and value is not None:
            return orjson.dumps(value).decode()
        return value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        if dialect.name == "postgresql" and isinstance(value, str):
            return orjson.loads(value)
        return value  # SQLite's JSON type decoded it; before 0008 psycopg did


class FeaturesJson(JsonText):
    """A request's features: read back with every column as its row values, whichever
    form it was stored in (:mod:`watchkeeper.feature_columns`)."""

    cache_ok = True

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        stored = super().process_result_value(value, dialect)
        return row_columns(stored) if isinstance(stored, dict) else stored


metadata = sa.MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

requests = sa.Table(
    "requests",
    metadata,
    # PostgreSQL: the primary key is (request_id, received_at), the partition key.
    sa.Column("request_id", sa.String(32), primary_key=True),
    sa.Column("received_at", UtcDateTime(), nullable=False, index=True),
    sa.Column("endpoint", sa.String(64), nullable=False),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("status_code", sa.SmallInteger, nullable=False),
    sa.Column("latency_seconds", sa.Float, nullable=False),
    sa.Column("model_version", sa.String(64)),
    sa.Column("n_items", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", sa.JSON),
    # As sent when UTF-8 text without NUL, else "wk-escaped:" and the body with
    # backslashes doubled, NUL and non-UTF-8 bytes as \xNN: lossless, and the two forms
    # never meet (serving.log_body; received_body gives the bytes back).
    sa.Column("body", sa.Text, comment="rejected requests only, truncated"),
    sa.Column("client_request_id", sa.String(128)),
    sa.Column(
        "features",
        FeaturesJson(),
        # a category column may be stored as its values and codes (feature_columns)
        comment="accepted requests: feature values by name, one list per feature",
    ),
    # The order requests were stored in (PostgreSQL: a sequence; SQLite: the writer's
    # max + 1, or a trigger for other inserts). A prediction's position in the log is
    # this and its item index (watchkeeper.db.prediction_seq).
    sa.Column("seq", sa.BigInteger, sa.Sequence("requests_seq_seq")),
    # A single-record request's prediction id is its request id; a batch item's is
    # ``<request id>.<index>`` (serving.log_entry.prediction_id).
    sa.Column("single", sa.Boolean),
    sa.Column(
        "outputs",
        JsonText(),
        comment="accepted requests: one [prediction, lower, upper, ood_score"
        " (, probabilities)] per item",
    ),
    # The highest OOD score among the request's items (NaN left out; NULL when none):
    # the report ranks requests by it and expands only those that can hold its top rows
    # rather than every request of its period (migration 0011).
    sa.Column("max_ood_score", sa.Float),
    sa.Index("ix_requests_model_version", "model_version"),
    # The score as a second key of the ``seq`` index, not an index of its own: scores
    # come in no order, and each logged request dirtied a random leaf of that one; this
    # one grows at its end, and ranking the whole log reads it alone (migration 0013).
    sa.Index("ix_requests_seq", "seq", "max_ood_score"),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("prediction_id", sa.String(48), primary_key=True),
    # a number: a regression target, or a class label that is one; NULL for text labels
    sa.Column("actual", sa.Float),
    sa.Column("received_at", UtcDateTime(), nullable=False, index=True),
    sa.Column("label", sa.String(256), comment="classifiers: the true class, as text"),
)

monitor_state = sa.Table(
    "monitor_state",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("watermark", sa.BigInteger, nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

window_results = sa.Table(
    "window_results",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("window_id", sa.String(64), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("detector", sa.String(32), nullable=False),
    sa.Column("first_seq", sa.BigInteger, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("n_rows", sa.Integer, nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("ended_at", UtcDateTime(), nullable=False),
    sa.Column("evaluated_at", UtcDateTime(), nullable=False, index=True),
    sa.Column("is_drift", sa.Boolean),
    sa.Column("score", sa.Float),
    sa.Column("details", sa.JSON, nullable=False),
    sa.UniqueConstraint("window_id", "detector", name="uq_window_results_window_detector"),
)

retrain_requests = sa.Table(
    "retrain_requests",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("requested_at", UtcDateTime(), nullable=False),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("model_version", sa.String(64)),
    sa.Column("evidence", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending", index=True),
    sa.Column("dedupe_key", sa.String(255)),
    sa.Column("run_id", sa.BigInteger),
    # what the request asks the job to train with (RetrainOptions); NULL: the champion's
    sa.Column("options", sa.JSON(none_as_null=True)),  # no options: SQL NULL, as 0014 says
    sa.UniqueConstraint("dedupe_key", name="uq_retrain_requests_dedupe_key"),
)

retrain_runs = sa.Table(
    "retrain_runs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("started_at", UtcDateTime(), nullable=False, index=True),
    sa.Column("finished_at", UtcDateTime()),
    sa.Column("trigger", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("request_ids", sa.JSON, nullable=False),
    sa.Column("champion_version", sa.String(64)),
    sa.Column("candidate_version", sa.String(64)),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("champion_metrics", sa.JSON),
    sa.Column("candidate_metrics", sa.JSON),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("decision_reason", sa.Text),
)

retrain_lease = sa.Table(
    "retrain_lease",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("holder", sa.String(128)),
    sa.Column("expires_at", UtcDateTime()),
)


views = sa.MetaData()
"""Views over the tables: read through them, never written (migrations create them)."""

predictions = sa.Table(
    "predictions",
    views,
    # One row per prediction, expanded from ``requests.outputs``
    # (watchkeeper.db.prediction_view). ``seq`` is the prediction's position
    # (watchkeeper.db.prediction_seq): a reader ranging over it bounds ``request_seq``
    # too, which the index on ``requests.seq`` answers.
    sa.Column("seq", sa.BigInteger),
    sa.Column("prediction_id", sa.String(48)),
    sa.Column("request_id", sa.String(32)),
    sa.Column("item_index", sa.Integer),
    sa.Column("created_at", UtcDateTime()),  # the request's ``received_at``
    sa.Column("model_version", sa.String(64)),
    sa.Column("features", JsonText()),  # always NULL: features are the request's
    sa.Column("prediction", LoggedFloat),
    sa.Column("lower", LoggedFloat),
    sa.Column("upper", LoggedFloat),
    sa.Column("ood_score", LoggedFloat),
    # Classifiers: ``prediction`` (and ``lower``, ``upper``) hold the predicted class's
    # position in the version's classes; these the class probabilities in that order.
    sa.Column("probabilities", JsonText()),
    sa.Column("request_seq", sa.BigInteger),
)
