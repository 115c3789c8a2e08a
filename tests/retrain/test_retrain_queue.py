"""The retrain queue answers with typed requests, validated where they are read from
the database: a row no queue wrote (a status outside the enum, an evidence that is
not an object) is one error naming the row and the column."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from watchkeeper import retrain_queue
from watchkeeper.db.tables import retrain_requests
from watchkeeper.retrain_options import RetrainOptions
from watchkeeper.retrain_queue import RetrainRequest, StoredRequestError
from watchkeeper.retrain_status import RequestStatus


def test_queued_requests_come_back_as_records(engine: sa.Engine) -> None:
    first = retrain_queue.enqueue(
        engine, trigger="manual", reason="by hand", evidence={"window_id": "v1:1-2"}
    )
    second = retrain_queue.enqueue(engine, trigger="monitor", reason="drift", model_version="v1")

    pending = retrain_queue.pending(engine)
    claimed = retrain_queue.claim(engine, run_id=7)

    assert [r.id for r in pending] == [first, second]
    assert all(isinstance(r, RetrainRequest) for r in pending)
    assert pending[0].evidence == {"window_id": "v1:1-2"} and pending[1].model_version == "v1"
    assert pending[0].status is RequestStatus.PENDING
    assert {(r.id, r.status, r.run_id) for r in claimed} == {
        (first, RequestStatus.RUNNING, 7),
        (second, RequestStatus.RUNNING, 7),
    }
    assert retrain_queue.pending(engine) == []


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("status", "paused"),
        ("evidence", ["not", "an", "object"]),
        ("options", {"max_iter": 0}),
        ("options", {"max_iter": 0, "learning_rate": 2}),
    ],
)
def test_a_row_the_queue_did_not_write_is_one_error_naming_it(
    engine: sa.Engine, column: str, value: object
) -> None:
    row = {
        "requested_at": datetime.now(UTC),
        "trigger": "manual",
        "reason": "written by hand",
        "evidence": {},
        "status": "pending",
        "run_id": 3,  # a claimed row is read back by its run
        column: value,
    }
    with engine.begin() as connection:  # a row from elsewhere: the queue writes none such
        inserted = connection.execute(retrain_requests.insert().values(**row))
    request_id = inserted.inserted_primary_key[0]

    with pytest.raises(
        StoredRequestError, match=f"retrain request {request_id} is malformed"
    ) as caught:
        retrain_queue.claim(engine, run_id=3)
    assert f"{column}:" in str(caught.value) or f"{column}." in str(caught.value)


def test_a_job_claims_only_the_requests_asking_for_the_same_options(engine: sa.Engine) -> None:
    weak = RetrainOptions(max_iter=2)
    drift = retrain_queue.enqueue(engine, trigger="monitor", reason="drift")
    asked = retrain_queue.enqueue(engine, trigger="manual", reason="weak", options=weak)
    again = retrain_queue.enqueue(engine, trigger="manual", reason="weak too", options=weak)
    alerts = retrain_queue.enqueue(engine, trigger="alertmanager", reason="alerts")

    first = retrain_queue.claim(engine, run_id=1)
    second = retrain_queue.claim(engine, run_id=2)

    assert [(r.id, r.options) for r in first] == [(drift, None), (alerts, None)]
    assert [(r.id, r.options) for r in second] == [(asked, weak), (again, weak)]
    assert retrain_queue.pending(engine) == []


def test_a_job_claims_the_request_it_was_started_for_first(engine: sa.Engine) -> None:
    retrain_queue.enqueue(engine, trigger="monitor", reason="drift")
    own = retrain_queue.enqueue(
        engine, trigger="manual", reason="cli", options=RetrainOptions(data="/d.csv", target="y")
    )

    claimed = retrain_queue.claim(engine, run_id=1, first=own)

    assert [r.id for r in claimed] == [own]
    assert claimed[0].asked == RetrainOptions(data="/d.csv", target="y")
    assert len(retrain_queue.pending(engine)) == 1


def _queued_by_a_newer_watchkeeper(engine: sa.Engine) -> int:
    """A request asking for an option this Watchkeeper does not know, as a newer one
    stores it (a rolling upgrade: its CLI or API queued it, an older worker reads it)."""
    request_id = retrain_queue.enqueue(
        engine, trigger="manual", reason="newer", options=RetrainOptions(max_iter=3)
    )
    with engine.begin() as connection:
        connection.execute(
            retrain_requests.update()
            .where(retrain_requests.c.id == request_id)
            .values(options={"max_iter": 3, "learning_rate": 0.05})
        )
    return request_id


def test_a_request_with_options_this_watchkeeper_does_not_know_is_left_for_a_newer_one(
    engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Every read of the queue failed ("stored retrain request 1 is malformed:
    options.learning_rate: Extra inputs are not permitted"): the worker logged a
    traceback at every poll and trained nothing, the requests behind it included. The
    request is left pending, said once, and the others are trained."""
    newer = _queued_by_a_newer_watchkeeper(engine)
    plain = retrain_queue.enqueue(engine, trigger="monitor", reason="drift")

    assert [r.id for r in retrain_queue.pending(engine)] == [plain]
    assert [r.id for r in retrain_queue.claim(engine, run_id=7)] == [plain]
    assert retrain_queue.pending(engine) == []

    with engine.connect() as connection:
        left = connection.execute(
            sa.select(retrain_requests.c.status, retrain_requests.c.run_id).where(
                retrain_requests.c.id == newer
            )
        ).one()
    assert tuple(left) == ("pending", None), "trained without the options it asked for"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"stored retrain request {newer} asks for training options this Watchkeeper does "
        "not know (learning_rate): queued by a newer one; left pending for a worker of a "
        "Watchkeeper that knows them, never trained without them"
    ]
