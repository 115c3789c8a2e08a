"""OOD scores the monitor computed, written back into the log.

A prediction is an item of its request's ``requests.outputs`` (``[prediction, lower,
upper, ood_score(, probabilities)]``, :mod:`serving.log_outputs`), so storing its score
rewrites its request's outputs: each request holding scored rows is read once by the
index on ``requests.seq``, its items given their scores, and written back, one
``UPDATE`` per chunk of requests (``executemany`` on SQLite; on PostgreSQL one statement
over arrays: an ``UPDATE`` per row looks ``seq`` up in every day partition, since
``seq`` does not determine the day). The rewrite is done here rather than with the
databases' JSON functions: one code for both, and the outputs keep the writer's exact
numbers (SQLite's ``json_set`` prints a float with 15 significant digits). The
request's highest score (``requests.max_ood_score``, migration 0011) is set with them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa

from watchkeeper.db.max_ood import highest_score
from watchkeeper.db.prediction_seq import item_index_of, request_seq_of
from watchkeeper.db.tables import requests

SCORE = 3
"""An item's OOD score's place in it."""
_CHUNK = 500
"""Requests per statement: bounded statements whatever the sample."""

_UPDATE_SQLITE = sa.text(
    "UPDATE requests SET outputs = :outputs, max_ood_score = :top WHERE seq = :seq"
)
_UPDATE_POSTGRES = sa.text(
    "UPDATE requests SET outputs = v.outputs, max_ood_score = v.top"
    " FROM unnest(CAST(:seqs AS bigint[]), CAST(:outputs AS text[]),"
    " CAST(:tops AS float8[])) AS v(seq, outputs, top)"
    " WHERE requests.seq = v.seq"
)


def store_ood_scores(
    connection: sa.Connection, seqs: Iterable[int], scores: Iterable[float]
) -> int:
    """Set the OOD score of the prediction at each position in ``seqs``; return the
    requests rewritten. A prediction no longer in the log (its request pruned) is
    skipped. A NaN score is stored as no score (``null``), as SQLite's old column held
    it; an infinite one by its name, as the writer stores non-finite numbers."""
    wanted: dict[int, dict[int, Any]] = {}
    for seq, score in zip(seqs, scores, strict=True):
        wanted.setdefault(request_seq_of(int(seq)), {})[item_index_of(int(seq))] = _json_number(
            float(score)
        )
    ordered = sorted(wanted)
    rewritten = 0
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        stored = sa.select(requests.c.seq, sa.cast(requests.c.outputs, sa.Text)).where(
            requests.c.seq.in_(chunk), requests.c.outputs.is_not(None)
        )
        if connection.dialect.name == "postgresql":
            stored = stored.with_for_update()  # a concurrent rewrite waits, not lost
        updates = [
            (int(seq), *scored)
            for seq, outputs in connection.execute(stored)
            if (scored := _with_scores(outputs, wanted[int(seq)])) is not None
        ]
        _write(connection, updates)
        rewritten += len(updates)
    return rewritten


def _with_scores(outputs: str, scores: dict[int, Any]) -> tuple[str, float | None] | None:
    """The outputs with ``scores`` set, and their highest score (``max_ood_score``);
    None for outputs orjson cannot read (a number beyond a double's range, ``1e400``,
    that no server writes) or that are no JSON list: left as they are, the scores
    counted in the window but not stored; an item that is no list is not scored.
    Raised, it failed the window's OOD check each time the row was sampled."""
    try:
        items = orjson.loads(outputs)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(items, list):  # no JSON list: read as one prediction of no number
        return None
    for index, score in scores.items():
        item = items[index] if index < len(items) else None
        if not isinstance(item, list):
            continue  # no such prediction (a pruned item of a batch logged before 0010)
        if len(item) > SCORE:
            item[SCORE] = score
        else:  # logged without a score: the score becomes its fourth value
            item.extend([None] * (SCORE - len(item)) + [score])
    top = highest_score(
        item[SCORE] for item in items if isinstance(item, list) and len(item) > SCORE
    )
    return orjson.dumps(items).decode(), top


def _write(connection: sa.Connection, updates: Sequence[tuple[int, str, float | None]]) -> None:
    if not updates:
        return
    if connection.dialect.name == "postgresql":
        seqs, outputs, tops = zip(*updates, strict=True)
        connection.execute(
            _UPDATE_POSTGRES, {"seqs": list(seqs), "outputs": list(outputs), "tops": list(tops)}
        )
        return
    connection.execute(
        _UPDATE_SQLITE,
        [{"seq": seq, "outputs": text, "top": top} for seq, text, top in updates],
    )


def _json_number(value: float) -> float | str | None:
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value
