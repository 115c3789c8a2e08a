"""Request ids are time-ordered (UUIDv7 layout), unique across processes, and the log's
rows carry them in the order the requests came."""

from __future__ import annotations

import multiprocessing
import re
import time
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient

from serving import request_ids
from serving.request_ids import new_request_id
from tests.serving.conftest import LogReader

_HEX_32 = re.compile(r"[0-9a-f]{32}")


def _millisecond(request_id: str) -> int:
    return int(request_id[:12], 16)


def test_ids_are_32_lowercase_hex_digits_of_a_version_7_uuid() -> None:
    for request_id in (new_request_id() for _ in range(1000)):
        assert _HEX_32.fullmatch(request_id)
        parsed = uuid.UUID(hex=request_id)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert parsed.hex == request_id


def test_ids_made_in_sequence_sort_in_the_order_they_were_made() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_request_id() for _ in range(20_000)]
    after = time.time_ns() // 1_000_000

    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert before <= _millisecond(ids[0]) <= _millisecond(ids[-1]) <= after + 1


def test_an_id_made_a_millisecond_later_sorts_after_ids_of_another_process_made_before() -> None:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        earlier = pool.apply(_ids, (100,))
    deadline = time.monotonic() + 5
    while time.time_ns() // 1_000_000 <= _millisecond(earlier[-1]):  # wait out its millisecond
        assert time.monotonic() < deadline
    assert new_request_id() > max(earlier)


def test_ids_stay_ordered_when_a_millisecond_runs_out_or_the_clock_steps_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [time.time_ns()]
    monkeypatch.setattr(request_ids.time, "time_ns", lambda: now[0])
    monkeypatch.setattr(request_ids, "_clock", request_ids._Clock())  # others' clock untouched
    same_millisecond = [new_request_id() for _ in range(10_000)]  # > 4,096 counter values
    now[0] -= 5_000_000_000  # the clock steps 5 s back
    stepped_back = [new_request_id() for _ in range(100)]

    ids = same_millisecond + stepped_back
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert _millisecond(ids[-1]) > _millisecond(ids[0])  # moved on when the counter ran out
    assert all(uuid.UUID(hex=i).version == 7 for i in ids)


def _ids(n: int) -> list[str]:
    return [new_request_id() for _ in range(n)]


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_ids_are_unique_across_processes(start_method: str) -> None:
    # Forked processes start with the parent's millisecond and counter, as gunicorn's
    # workers do: their random bits alone keep them apart.
    new_request_id()
    with multiprocessing.get_context(start_method).Pool(3) as pool:
        batches = pool.map(_ids, [20_000] * 3)
    ids = [i for batch in batches for i in batch]

    assert len(set(ids)) == len(ids) == 60_000
    assert all(batch == sorted(batch) for batch in batches)


def test_logged_requests_ids_are_in_the_order_the_requests_came(
    client: FlaskClient, replay_records: list[dict[str, Any]], log_reader: LogReader
) -> None:
    answered = []
    for record in replay_records[:30]:
        response = client.post("/predict", json={"features": record})
        assert response.status_code == 200
        answered.append(response.json["request_id"])
    batch = client.post("/predict", json={"instances": replay_records[:3]}).json
    answered.append(batch["request_id"])
    rejected = client.post("/predict", json={"features": {}})
    assert rejected.status_code == 422
    answered.append(rejected.json["request_id"])

    logged = [row["request_id"] for row in log_reader.requests()]  # by received_at
    assert logged == answered
    assert answered == sorted(answered)
    ids = [p["prediction_id"] for p in log_reader.predictions()]  # by seq
    assert ids == sorted(ids) and ids[-1] == f"{batch['request_id']}.2"
    labelled = client.post("/feedback", json={"id": ids[-1], "actual": 180_000})
    assert (labelled.status_code, labelled.json["accepted"]) == (200, 1)
