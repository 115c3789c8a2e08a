"""The prediction log's journal running out of room, for real: a server whose journal
disk is full is not ready and answers 503 rather than failing to start, answers again
once there is room; and worker restarts during a database outage keep the journal
within its documented disk bound (workers × WATCHKEEPER_LOG_JOURNAL_MAX_BYTES)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from flask import Flask

from tests.postgres import PostgresServer
from tests.processes import Process, children, metric, query, wait_for
from tests.serving.conftest import fill_disk

pytestmark = pytest.mark.integration


def _journal_bytes(directory: Path) -> int:
    total = 0
    for path in directory.glob("*.seg"):
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            continue  # replayed meanwhile
    return total


def _prediction_log_check(answer: Any) -> dict[str, Any]:
    check: dict[str, Any] = answer["checks"]["prediction_log"]
    return check


def test_a_server_whose_journal_disk_is_full_is_not_ready_and_answers_again_with_room(
    small_disk: Path, make_app: Callable[..., Flask], replay_records: list[dict[str, Any]]
) -> None:
    """The worker starts without a journal (it could not be created), refuses what it
    would have to log, and says it is not ready so that a load balancer sends the
    requests elsewhere; once there is room it creates its journal and answers. (The disk
    is asked for first so that it is unmounted last: the app's writer, stopped before,
    drains into it at once rather than waiting out its timeout on an unmounted journal.)"""
    filler = fill_disk(small_disk)
    app = make_app(spill_dir=small_disk / "journal", log_probe_interval=0.05)
    client = app.test_client()

    refused = client.post("/predict", json={"features": replay_records[0]})
    assert refused.status_code == 503
    assert refused.json["error"]["code"] == "log_unavailable"
    readiness = client.get("/readyz")
    assert readiness.status_code == 503
    check = _prediction_log_check(readiness.json)
    assert (check["ok"], check["journal_writable"], check["writer_alive"]) == (False, False, True)
    assert "error" not in check  # no error text on an unauthenticated endpoint

    filler.unlink()
    assert wait_for(
        lambda: client.post("/predict", json={"features": replay_records[0]}).status_code == 200,
        timeout=30,
    )
    readiness = client.get("/readyz")
    assert readiness.status_code == 200
    assert _prediction_log_check(readiness.json)["journal_writable"] is True


class _Client:
    """Posts one body to a real server, a new connection each time (so that every
    worker gets some); keeps the ids answered 200."""

    def __init__(self, server: Process, body: bytes) -> None:
        self.url = f"{server.url}/predict"
        self.body = body
        self.accepted: set[str] = set()

    def post(self) -> requests.Response:
        response = requests.post(
            self.url, data=self.body, headers={"Content-Type": "application/json"}, timeout=30
        )
        if response.status_code == 200:
            self.accepted.add(response.headers["X-Request-ID"])
        else:
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "log_unavailable"
        return response

    def fill(self, refused_for: float = 1.0) -> None:
        """Post until every worker has refused for ``refused_for`` seconds on end (a
        worker that has just started gets requests within that)."""
        refused_since: float | None = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.post().status_code == 200:
                refused_since = None
            elif refused_since is None:
                refused_since = time.monotonic()
            elif time.monotonic() - refused_since >= refused_for:
                return
        raise AssertionError("the server never refused for long: is the journal bounded?")


def _workers_with_journals(server: Process, spill: Path, old: set[int]) -> Callable[[], bool]:
    """A condition: the server has its workers again, none of ``old``, each with its
    journal created (its app is built)."""

    def replaced() -> bool:
        workers = set(children(server.process.pid))
        return (
            len(workers) == 2
            and not workers & old
            and all(list(spill.glob(f"j-{pid}-*.ckpt")) for pid in workers)
        )

    return replaced


def _stored_once(url: str, accepted: set[str]) -> bool:
    rows = query(url, "SELECT request_id FROM requests")
    ids = [row[0] for row in rows]
    return accepted <= set(ids) and len(ids) == len(set(ids))


@pytest.mark.postgres
def test_a_worker_replaced_while_the_journal_disk_is_full_starts_and_the_server_recovers(
    start_watchkeeper: Callable[..., Process],
    replay_records: list[dict[str, Any]],
    private_postgres: PostgresServer,
    small_disk: Path,
) -> None:
    """The database away, the journal's disk full, a worker killed: its replacement
    could not create a journal and failed to boot, and gunicorn took the whole server
    down with it (and a new one failed alike). It boots and refuses; once the database
    is back the journals are stored, their room given back, and the server answers
    again, ready, with every accepted prediction stored once."""
    url = private_postgres.create_database()
    spill = small_disk / "spill"
    server = start_watchkeeper(
        "serve",
        WATCHKEEPER_WORKERS="2",
        WATCHKEEPER_DATABASE_URL=url,
        WATCHKEEPER_AUTO_MIGRATE="1",
        WATCHKEEPER_SPILL_DIR=str(spill),
        WATCHKEEPER_LOG_PROBE_INTERVAL="0.2",
    )
    batch = [replay_records[i % len(replay_records)] for i in range(200)]
    client = _Client(server, orjson.dumps({"instances": batch}))
    private_postgres.stop("fast")
    client.fill()  # the disk is full: at 4 MiB long before any journal's own limit
    accepted = set(client.accepted)
    assert accepted
    fill_disk(small_disk)  # to the last byte: less room than a batch may still be a page

    killed = children(server.process.pid)[0]
    os.kill(killed, signal.SIGKILL)
    # The replacement has booted once it holds a worker's place and the server lives on.
    assert wait_for(
        lambda: (
            server.process.poll() is not None
            or "cannot create its journal" in server.log_path.read_text()
        ),
        timeout=60,
    )
    assert server.process.poll() is None, server.log_path.read_text()
    assert killed not in children(server.process.pid)

    def a_worker_says_its_journal_cannot_be_written() -> bool:
        readiness = server.get("/readyz")  # a new connection: either worker answers
        check = _prediction_log_check(readiness.json())
        return readiness.status_code == 503 and check["journal_writable"] is False

    assert wait_for(a_worker_says_its_journal_cannot_be_written, timeout=30)

    private_postgres.start()
    single = orjson.dumps({"features": replay_records[0]})
    answers = _Client(server, single)
    assert wait_for(lambda: answers.post().status_code == 200, timeout=120, interval=0.2), (
        server.log_path.read_text()
    )
    assert wait_for(lambda: server.get("/readyz").status_code == 200, timeout=30)
    assert wait_for(lambda: _stored_once(url, accepted | answers.accepted), timeout=120)


@pytest.mark.postgres
def test_journal_bytes_stay_within_workers_times_the_limit_across_restarts(
    start_watchkeeper: Callable[..., Process],
    replay_records: list[dict[str, Any]],
    private_postgres: PostgresServer,
    tmp_path: Path,
) -> None:
    """Each replaced worker used to start a journal of its own limit next to the one its
    predecessor left: the journal grew by a worker's limit per ``kill -9`` or reload
    for as long as the database was away. Journals of ended processes now count
    against every live worker's room."""
    max_bytes = 1 << 20
    url = private_postgres.create_database()
    spill = tmp_path / "var" / "spill"
    server = start_watchkeeper(
        "serve",
        WATCHKEEPER_WORKERS="2",
        WATCHKEEPER_DATABASE_URL=url,
        WATCHKEEPER_AUTO_MIGRATE="1",
        WATCHKEEPER_LOG_JOURNAL_MAX_BYTES=str(max_bytes),
        WATCHKEEPER_LOG_PROBE_INTERVAL="0.2",
    )
    batch = [replay_records[i % len(replay_records)] for i in range(50)]
    client = _Client(server, orjson.dumps({"instances": batch}))
    private_postgres.stop("fast")
    client.fill()
    entry = max(
        len(line) + 1 for path in spill.glob("*.seg") for line in path.read_bytes().splitlines()
    )
    bound = 2 * max_bytes + 2 * entry  # each journal may pass its limit by one entry
    assert _journal_bytes(spill) <= bound

    for restart in ("kill -9", "reload", "kill -9", "reload"):
        workers = set(children(server.process.pid))
        if restart == "kill -9":
            os.kill(min(workers), signal.SIGKILL)
            old = {min(workers)}
        else:
            server.process.send_signal(signal.SIGHUP)
            old = workers
        assert wait_for(_workers_with_journals(server, spill, old), timeout=60)
        client.fill()
        assert _journal_bytes(spill) <= bound, f"after a {restart}"

    private_postgres.start()
    assert wait_for(lambda: _stored_once(url, client.accepted), timeout=180, interval=0.5)


def test_a_worker_whose_journal_could_not_be_created_refuses_before_predicting(
    small_disk: Path, make_app: Callable[..., Flask], replay_records: list[dict[str, Any]]
) -> None:
    """Refused before the model runs, as a full journal is: no CPU spent on an answer
    that will not be given, and no prediction counted that no client received."""
    fill_disk(small_disk)
    client = make_app(spill_dir=small_disk / "journal").test_client()

    refused = client.post("/predict", json={"features": replay_records[0]})

    assert refused.status_code == 503
    assert refused.json["error"]["code"] == "log_unavailable"
    counted = metric(
        client.get("/metrics").text, "watchkeeper_predictions_total", model_version="v1"
    )
    assert not counted
