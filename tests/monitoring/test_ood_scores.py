"""OOD scores written back into their requests' outputs, on real SQLite and PostgreSQL
logs: each scored item gets its score fourth (a classifier's probabilities stay fifth),
the other items and requests are left as they were, a NaN score is stored as none and
an infinite one by its name, a pruned request or item is skipped, and the requests
are rewritten with one ``UPDATE`` per chunk."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from monitoring import ood_scores
from monitoring.ood_scores import store_ood_scores
from serving.log_store import LogStore
from tests.log_entries import log_entry
from watchkeeper.db.engine import create_engine
from watchkeeper.db.prediction_seq import prediction_seq
from watchkeeper.db.tables import predictions, requests


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    """Request 1: 3 items unscored; 2: a classifier's 2 items, unscored; 3: one item
    scored as served."""
    engine = create_engine(database_url)
    LogStore(engine).insert(
        [
            log_entry(1, 3),
            log_entry(2, 2, probabilities=[[0.25, 0.75], [0.5, 0.5]]),
            log_entry(3, 1, ood=[0.125]),
        ]
    )
    yield engine
    engine.dispose()


def _seqs(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return dict(connection.execute(sa.select(requests.c.request_id, requests.c.seq)).all())


def _view(engine: sa.Engine) -> dict[tuple[str, int], tuple[float | None, object]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                predictions.c.request_id,
                predictions.c.item_index,
                predictions.c.ood_score,
                predictions.c.probabilities,
            )
        ).all()
    return {(r.request_id, r.item_index): (r.ood_score, r.probabilities) for r in rows}


def _updates(engine: sa.Engine) -> list[str]:
    """The statements that update ``requests`` as the next call runs them."""
    seen: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.startswith("UPDATE requests"):
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", note)
    return seen


def test_scores_go_into_their_items_and_nothing_else_changes(engine: sa.Engine) -> None:
    seq = {n: s for n, s in ((int(r, 16), s) for r, s in _seqs(engine).items())}
    before = _view(engine)
    updates = _updates(engine)
    scored = {
        prediction_seq(seq[1], 0): 1.5,
        prediction_seq(seq[1], 2): math.inf,
        prediction_seq(seq[2], 1): 2.5,
        prediction_seq(seq[3], 0): math.nan,
    }

    with engine.begin() as connection:
        rewritten = store_ood_scores(connection, list(scored), list(scored.values()))

    assert rewritten == 3 and len(updates) == 1  # one statement for the three requests
    after = _view(engine)
    one, two, three = (f"{n:032x}" for n in (1, 2, 3))
    assert after[one, 0] == (1.5, None)
    assert after[one, 1] == before[one, 1] == (None, None)
    assert after[one, 2][0] == math.inf
    assert after[two, 0] == before[two, 0]
    assert after[two, 1] == (2.5, [0.5, 0.5])  # the probabilities kept, fifth
    assert before[three, 0][0] == 0.125 and after[three, 0][0] is None  # NaN: no score
    with engine.connect() as connection:
        other = connection.execute(
            sa.select(predictions.c.prediction, predictions.c.lower, predictions.c.upper)
            .where(predictions.c.request_id == one)
            .order_by(predictions.c.item_index)
        ).all()
    assert [tuple(r) for r in other] == [(1.0, 0.0, 2.0)] * 3


def test_a_rewritten_request_keeps_its_highest_score(engine: sa.Engine) -> None:
    """``requests.max_ood_score`` follows the scores written (NaN left out), for the
    report's ranking of requests."""
    seq = {int(r, 16): s for r, s in _seqs(engine).items()}

    def highest() -> dict[int, float | None]:
        with engine.connect() as connection:
            rows = connection.execute(sa.select(requests.c.request_id, requests.c.max_ood_score))
            return {int(r, 16): top for r, top in rows}

    assert highest() == {1: None, 2: None, 3: 0.125}
    with engine.begin() as connection:
        store_ood_scores(
            connection,
            [prediction_seq(seq[1], 0), prediction_seq(seq[1], 1), prediction_seq(seq[2], 0)],
            [1.5, -math.inf, 2.5],
        )
        store_ood_scores(connection, [prediction_seq(seq[3], 0)], [math.nan])
    assert highest() == {1: 1.5, 2: 2.5, 3: None}
    with engine.begin() as connection:
        store_ood_scores(connection, [prediction_seq(seq[1], 2)], [math.inf])
    assert highest()[1] == math.inf


def test_a_request_no_longer_in_the_log_is_skipped(engine: sa.Engine) -> None:
    seq = _seqs(engine)
    gone = max(seq.values()) + 1

    with engine.begin() as connection:
        rewritten = store_ood_scores(
            connection,
            [prediction_seq(gone, 0), prediction_seq(seq[f"{1:032x}"], 1)],
            [9.0, 3.0],
        )

    assert rewritten == 1
    assert _view(engine)[f"{1:032x}", 1][0] == 3.0


def test_an_item_that_is_no_prediction_stays_none(engine: sa.Engine) -> None:
    """A batch logged before migration 0010 whose other items the prune of the time had
    deleted keeps its remaining ones at their index, the others ``null``."""
    seq = _seqs(engine)[f"{1:032x}"]
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE requests SET outputs = :outputs WHERE seq = :seq"),
            {"outputs": "[null, [1.0, 0.0, 2.0], null]", "seq": seq},
        )
        store_ood_scores(connection, [prediction_seq(seq, i) for i in range(4)], [7.0] * 4)
        stored = connection.execute(
            sa.select(sa.cast(requests.c.outputs, sa.Text)).where(requests.c.seq == seq)
        ).scalar_one()

    assert stored == "[null,[1.0,0.0,2.0,7.0],null]"


def test_many_requests_are_rewritten_a_chunk_a_statement(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ood_scores, "_CHUNK", 2)
    seq = _seqs(engine)
    updates = _updates(engine)

    with engine.begin() as connection:
        store_ood_scores(connection, [prediction_seq(s, 0) for s in seq.values()], [4.0] * 3)

    assert len(updates) == 2
    assert {k: v[0] for k, v in _view(engine).items() if k[1] == 0} == dict.fromkeys(
        ((r, 0) for r in seq), 4.0
    )
