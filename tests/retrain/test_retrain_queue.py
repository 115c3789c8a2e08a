"""The retrain queue answers with typed requests, validated where they are read from
the database: a row no queue wrote (a status outside the enum, an evidence that is
not an object) is one error naming the row and the column."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from watchkeeper import retrain_queue
from watchkeeper.db.tables import retrain_requests
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
    [("status", "paused"), ("evidence", ["not", "an", "object"])],
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
    assert f"{column}:" in str(caught.value)
