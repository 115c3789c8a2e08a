"""The ``predictions`` view: one row per prediction, read out of ``requests.outputs``.

Each accepted request stores its predictions in its own row (migration 0010): a
1,000-row request is one row and its indexes, where a row per prediction made two
thirds of what logging it cost (bench/README.md, "What the prediction rows cost at
all"). Readers that want predictions one by one select from this view; it expands a
request's ``outputs`` (``[[prediction, lower, upper, ood_score(, probabilities)], ...]``)
with the database's JSON functions. Conditions on the request's own columns
(``request_seq``, ``request_id``, ``created_at``, ``model_version``) reach the
``requests`` indexes (and, on PostgreSQL, its partitions); conditions on ``seq`` or
``prediction_id`` alone are computed per prediction, so a reader ranging over ``seq``
bounds ``request_seq`` as well (:func:`seq_between`).

A non-finite number is stored as its name (JSON has none): ``NaN``, ``Infinity``,
``-Infinity``; both databases read the names back as floats. A value no writer stores
(a foreign one's) never fails a read, and both databases read it alike: a number's text
as the number, of any length, one beyond a double's range as an infinity (``1e400``,
``1e99999``, 400 digits) or 0, anything else (text, a boolean, a list) as NULL; an item
that is no list as a prediction of no number; and outputs that are no JSON list (cut
short, text, an object) as one prediction (item 0) of no number. An item that is
``null`` is no prediction: a request logged before migration 0010 whose other
predictions the prune of the time had deleted keeps its remaining ones at their item
index.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from watchkeeper.db.prediction_seq import ITEMS_PER_REQUEST, request_seq_of
from watchkeeper.db.tables import predictions, requests

_DOUBLE_MAX = "1.7976931348623157e308"
"""Below the largest double's exact value: a number up to it casts without overflow."""
_DOUBLE_MIN = "4.9406564584124654e-324"
"""The smallest double above zero: a number under it underflows (``float8`` raises)."""


_JSON_NUMBER_START = "-0123456789"
"""What a JSON number's text starts with; nothing else JSON writes does."""


def _postgres_number(index: int) -> str:
    """Item ``index`` of an output as a float, never an error: a plain cast raised on
    text that is no number, or a number beyond a double's range (``1e400``), failing
    every read of its row (the monitor's every cycle) until it was deleted by hand.

    What the writer stores, a JSON number of up to 300 characters without an exponent,
    is cast at once: it cannot be out of range. It is told by the item's own text
    (``t.t<index>``, a JSON number's starts with a digit or ``-``), taken out of the
    item once for every test (:data:`_ITEM_TEXTS`). Testing the parsed value instead
    (migration 0015: ``json_typeof``, each ``->``/``->>`` parsing the item again) made
    reading all four numbers of 200,000 predictions cost 2.8 times the plain cast
    (1.54 s of the backend's CPU against 0.55 s); this costs 1.46 times (0.80 s;
    bench/README.md, ``view_number_bench.py``). Anything else is read by
    :data:`_ANY_NUMBER` (a function: only values the writer does not store call it)."""
    raw = f"t.t{index}"
    return (
        f"CASE WHEN strpos('{_JSON_NUMBER_START}', left({raw}, 1)) > 0"
        f" AND length({raw}) <= 300 AND strpos({raw}, 'e') = 0 AND strpos({raw}, 'E') = 0"
        f" THEN {raw}::float8"
        f" WHEN {raw} IS NULL OR {raw} = 'null' THEN NULL"
        f" ELSE watchkeeper_number(o.v ->> {index}) END"
    )


_ANY_NUMBER = f"""
CREATE OR REPLACE FUNCTION watchkeeper_number(t text) RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    parts text[];
    digits text;
    exponent text;
    magnitude bigint;
    number numeric;
BEGIN
    IF t IN ('NaN', 'Infinity', '-Infinity') THEN
        RETURN t::float8;
    END IF;
    parts := regexp_match(t, '^(-?)([0-9]+)(?:\\.([0-9]+))?(?:[eE]([-+]?[0-9]+))?$');
    IF parts IS NULL THEN
        RETURN NULL;
    END IF;
    digits := ltrim(parts[2] || coalesce(parts[3], ''), '0');
    IF digits = '' THEN
        RETURN 0;
    END IF;
    exponent := ltrim(coalesce(parts[4], '0'), '+');
    IF length(ltrim(ltrim(exponent, '-'), '0')) > 15 THEN
        magnitude := CASE WHEN left(exponent, 1) = '-' THEN -1000 ELSE 1000 END;
    ELSE
        magnitude := exponent::bigint - length(coalesce(parts[3], '')) + length(digits);
    END IF;
    IF magnitude > 309 THEN
        RETURN (parts[1] || 'Infinity')::float8;
    ELSIF magnitude < -323 THEN
        RETURN 0;
    END IF;
    number := (parts[1] || '0.' || left(digits, 1000) || 'e' || magnitude)::numeric;
    IF number > {_DOUBLE_MAX} THEN
        RETURN 'Infinity';
    ELSIF number < -{_DOUBLE_MAX} THEN
        RETURN '-Infinity';
    ELSIF abs(number) < {_DOUBLE_MIN} THEN
        RETURN 0;
    END IF;
    RETURN number::float8;
END
$$
"""
"""A value's text (as ``->>`` reads it) as a float, never an error: the writer's names
of non-finite numbers (``NaN``, ``Infinity``, ``-Infinity``) as those; a number's text
(:data:`~watchkeeper.db.tables.NUMBER_TEXT`, in a JSON number or a string) as the number,
as SQLite reads it: of any length, one beyond a double's range an infinity and one
under it 0; anything else (text, ``true``, a list) as NULL. Its magnitude is worked out
from its digits and exponent, so that ``numeric`` (which cannot hold an exponent of
1,000 or more, nor 131,072 digits) is given a number a double can hold, of its 1,000
first significant digits (more than a double's rounding needs). Migration 0016's test
read a number of over 300 characters as NULL (SQLite as the number), and judged one of
an exponent of 5 digits by the exponent alone (``1`` and 20,000 zeros ``e-10000`` was 0).
Only values the writer does not store reach it (:func:`_postgres_number`)."""


_OUTPUTS = """
CREATE OR REPLACE FUNCTION watchkeeper_outputs(t text) RETURNS json
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL RESTRICTED AS $$
DECLARE
    outputs json;
BEGIN
    outputs := t::json;
    IF json_typeof(outputs) = 'array' THEN
        RETURN outputs;
    END IF;
    RETURN '[[]]';
EXCEPTION WHEN invalid_text_representation OR untranslatable_character
    OR statement_too_complex THEN
    RETURN '[[]]';
END
$$
"""
"""A request's outputs as JSON, never an error: outputs that are no JSON list (cut
short, text, an object: a foreign writer's, a damaged row) as ``[[]]``, one prediction
of no number. The cast raised there, failing every read that met the request (the
monitor's cycle, the report, retraining's reads). PostgreSQL 15 has no test of a text's
validity but the cast (``pg_input_is_valid`` is 16's), so the cast is made inside an
``EXCEPTION`` block (text that is no JSON; a character the database's encoding lacks; a
nesting too deep for its stack): a subtransaction each request, ~2 µs, which made
reading the view cost 1.4% more on 1,000-item requests and 8% more on single records
(bench/README.md, ``view_number_bench.py``). No test cheaper than that proves a text is
JSON (a regular expression of the writer's layout cost more than the guard on a single
record, and as much as the cast itself on 1,000 items), so every request takes it.
``PARALLEL RESTRICTED``: a parallel worker can start no subtransaction."""


_ITEM_TEXTS = """CROSS JOIN LATERAL (
    SELECT (o.v -> 0)::text, (o.v -> 1)::text, (o.v -> 2)::text, (o.v -> 3)::text OFFSET 0
) AS t(t0, t1, t2, t3)"""
"""The first four values of an item as its JSON text, each taken out once: ``OFFSET 0``
keeps PostgreSQL from pulling the subquery up and so computing each again wherever a
column's expression names it."""


_POSTGRES = f"""
CREATE VIEW predictions AS
SELECT r.seq * {ITEMS_PER_REQUEST} + (o.n - 1) AS seq,
       CASE WHEN r.single THEN r.request_id::varchar
            ELSE r.request_id || '.' || (o.n - 1) END AS prediction_id,
       r.request_id,
       (o.n - 1)::int AS item_index,
       r.received_at AS created_at,
       r.model_version,
       NULL::text AS features,
       {_postgres_number(0)} AS prediction,
       {_postgres_number(1)} AS lower,
       {_postgres_number(2)} AS upper,
       {_postgres_number(3)} AS ood_score,
       (o.v -> 4)::text AS probabilities,
       r.seq AS request_seq
FROM requests r
CROSS JOIN LATERAL json_array_elements(watchkeeper_outputs(r.outputs)) WITH ORDINALITY AS o(v, n)
{_ITEM_TEXTS}
WHERE r.outputs IS NOT NULL AND json_typeof(o.v) <> 'null'
"""


_SQLITE_ITEM = "CASE WHEN o.atom IS NULL THEN o.value END"
"""An item's JSON text if it is a list (the writer's) or an object, else NULL: read as
no number. ``atom`` is NULL for those (and ``null``, which is no row): a test of it
cost half or less of one of ``type`` (reading 200,000 predictions: 0.02 to 0.04 s against
0.07)."""

_JSON_SPACE = "' ' || char(9, 10, 13)"
"""What JSON takes for white space."""


def _sqlite_outputs(column: str) -> str:
    """``column`` (a request's outputs) if it is a JSON list, else ``[[]]``: one
    prediction of no number, as PostgreSQL's ``watchkeeper_outputs`` reads it.
    ``json_each`` raised on text that is no JSON, and went through an object's keys.
    Valid JSON is a list if it starts with ``[``: told by that rather than by
    ``json_type``, which parsed the text once more."""
    return (
        f"CASE WHEN substr(ltrim({column}, {_JSON_SPACE}), 1, 1) <> '[' THEN '[[]]'"
        f" WHEN json_valid({column}) THEN {column} ELSE '[[]]' END"
    )


def _sqlite_number(index: int, *, nan: str = "'NaN'") -> str:
    """Item ``index`` of an output as SQLite holds numbers: an infinity as a REAL
    (``9e999``), so it sorts and compares as one; NaN, which a REAL cannot hold, as the
    text ``NaN`` (read back as NaN, as the table before 0010 held a NaN prediction) or,
    for the OOD score, NULL: a score that is no number ranks nowhere (the table before
    0010 stored it so). Names left as text would sort above every number. A JSON
    boolean is no number: NULL, as PostgreSQL reads it (``json_extract`` gives it as 1
    or 0, so only a value equal to one of those has its type looked up). An item that is
    no list reads as no number (a string item's text, which ``o.value`` gives unquoted,
    raised in ``json_extract``)."""
    path = f"'$[{index}]'"
    value = f"json_extract({_SQLITE_ITEM}, {path})"
    boolean = (
        f"CASE WHEN json_type(o.value, {path}) IN ('true', 'false') THEN NULL ELSE {value} END"
    )
    return (
        f"CASE {value} WHEN 'Infinity' THEN 9e999 WHEN '-Infinity' THEN -9e999"
        f" WHEN 'NaN' THEN {nan} WHEN 1 THEN {boolean} WHEN 0 THEN {boolean} ELSE {value} END"
    )


_SQLITE = f"""
CREATE VIEW predictions AS
SELECT r.seq * {ITEMS_PER_REQUEST} + o.key AS seq,
       CASE WHEN r.single THEN r.request_id ELSE r.request_id || '.' || o.key END
           AS prediction_id,
       r.request_id,
       o.key AS item_index,
       r.received_at AS created_at,
       r.model_version,
       NULL AS features,
       {_sqlite_number(0)} AS prediction,
       {_sqlite_number(1)} AS lower,
       {_sqlite_number(2)} AS upper,
       {_sqlite_number(3, nan="NULL")} AS ood_score,
       json_extract({_SQLITE_ITEM}, '$[4]') AS probabilities,
       r.seq AS request_seq
FROM requests r, json_each({_sqlite_outputs("r.outputs")}) o
WHERE r.outputs IS NOT NULL AND o.type <> 'null'
"""

# SQLite: a request inserted without ``seq`` (not by the log's writer, which numbers
# its rows itself) gets the next one, so any insert is read by the monitor.
_SQLITE_SEQ_TRIGGER = """
CREATE TRIGGER requests_seq AFTER INSERT ON requests WHEN NEW.seq IS NULL
BEGIN
    UPDATE requests SET seq = (SELECT coalesce(max(seq), 0) + 1 FROM requests)
    WHERE rowid = NEW.rowid;
END
"""


def create_statements(dialect: str) -> list[str]:
    """DDL creating the view (with PostgreSQL's functions it calls, or SQLite's
    numbering trigger)."""
    if dialect == "postgresql":
        return [_ANY_NUMBER, _OUTPUTS, _POSTGRES]
    return [_SQLITE, _SQLITE_SEQ_TRIGGER]


def drop_statements(dialect: str) -> list[str]:
    statements = ["DROP VIEW IF EXISTS predictions"]
    if dialect == "postgresql":
        statements += [
            "DROP FUNCTION IF EXISTS watchkeeper_outputs(text)",
            "DROP FUNCTION IF EXISTS watchkeeper_number(text)",
        ]
    else:
        statements.append("DROP TRIGGER IF EXISTS requests_seq")
    return statements


def readable_outputs(dialect: str) -> sa.ColumnElement[Any]:
    """``requests.outputs`` as the view reads it, as JSON: outputs that are no JSON list
    as ``[[]]`` (for their length, say: one item)."""
    if dialect == "postgresql":
        return sa.func.watchkeeper_outputs(sa.type_coerce(requests.c.outputs, sa.Text))
    return sa.literal_column(_sqlite_outputs("requests.outputs"))


EARLIEST = datetime(1677, 9, 21, 0, 12, 43, 145225, tzinfo=UTC)
LATEST = datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC)
"""The first and last microsecond pandas holds (``pd.Timestamp.min``/``max``)."""


def held_time(column: sa.ColumnElement[datetime]) -> sa.ColumnElement[datetime]:
    """``column`` where pandas can hold it, else NULL: no writer stores a time outside
    1677 to 2262, a foreign one may (year 1000 or 9999, PostgreSQL's ``infinity``, which
    psycopg cannot read at all), and such a time raised wherever a reader made it a
    timestamp."""
    return sa.case((column.between(EARLIEST, LATEST), column), else_=sa.null())


def seq_between(after: int, up_to: int) -> sa.ColumnElement[bool]:
    """``after < seq <= up_to`` on the view, with the request bounds its index answers."""
    return sa.and_(
        predictions.c.request_seq >= request_seq_of(after),
        predictions.c.request_seq <= request_seq_of(up_to),
        predictions.c.seq > after,
        predictions.c.seq <= up_to,
    )


def seq_in(seqs: list[int]) -> sa.ColumnElement[bool]:
    """``seq IN seqs`` on the view, with the requests named for the index."""
    requests = sorted({request_seq_of(s) for s in seqs})
    return sa.and_(predictions.c.request_seq.in_(requests), predictions.c.seq.in_(seqs))


def request_id_of(prediction_id: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """The request id within a prediction id (``<request id>`` or ``<request id>.<n>``;
    request ids hold no dot): joined to ``predictions.request_id`` besides the prediction
    id, it lets the database find a label's request by its key instead of expanding
    every request's predictions to match ids."""
    dot = _position(prediction_id, sa.literal(".", sa.String))
    return sa.case((dot > 0, sa.func.substr(prediction_id, 1, dot - 1)), else_=prediction_id)


class _position(FunctionElement[int]):
    """Where a text first holds another (1-based, 0 if not): ``instr`` on SQLite,
    ``strpos`` on PostgreSQL."""

    type = sa.Integer()
    inherit_cache = True
    name = "position"


@compiles(_position)
def _position_default(element: _position, compiler: Any, **kw: Any) -> str:
    return f"strpos({compiler.process(element.clauses, **kw)})"


@compiles(_position, "sqlite")
def _position_sqlite(element: _position, compiler: Any, **kw: Any) -> str:
    return f"instr({compiler.process(element.clauses, **kw)})"
