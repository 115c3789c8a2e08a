"""Database work in request threads is bounded in threads and in time: a frozen
PostgreSQL holds neither ``/predict`` nor ``/feedback`` (gunicorn for real), work cut
off during its commit is told as such and its retry accepted, and a request beyond the
slots waits for one only while the database answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from serving.app import create_app, shutdown
from serving.request_database import SLOT_PATIENCE, RequestDatabase
from serving.services import services
from tests.postgres import PostgresServer
from tests.processes import Process
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade
from watchkeeper.db.tables import feedback
from watchkeeper.errors import DatabaseUnavailable

FREEZE_SECONDS = 8.0
TIMEOUT_SECONDS = 2.0
# A cut-off connection is noticed at once; a new one to a frozen server gives up after
# libpq's 2 s at least: either well within this of the deadline.
MARGIN_SECONDS = 1.5


@pytest.mark.integration
@pytest.mark.postgres
def test_a_frozen_database_holds_neither_predictions_nor_feedback(
    private_postgres: PostgresServer,
    start_watchkeeper: Callable[..., Process],
    replay_records: list[dict[str, Any]],
) -> None:
    """Frozen (SIGSTOP), PostgreSQL held every /feedback for the whole freeze, and
    clients sending labels took every request thread of the worker: /predict waited
    for one (8-10 predictions in 40 s instead of ~640)."""
    server = start_watchkeeper(
        "serve",
        WATCHKEEPER_DATABASE_URL=private_postgres.create_database(),
        WATCHKEEPER_WORKERS="1",
        WATCHKEEPER_THREADS="4",
        WATCHKEEPER_REQUEST_DATABASE_TIMEOUT=str(TIMEOUT_SECONDS),
    )
    record = replay_records[0]
    assert server.post("/feedback", json={"id": "warm", "actual": 1.0}).status_code == 200
    predictions: list[tuple[float, int]] = []
    labels: list[tuple[float, int, dict[str, str]]] = []
    until = time.monotonic() + FREEZE_SECONDS - 1

    def predict() -> None:
        while time.monotonic() < until:
            started = time.monotonic()
            status = requests.post(
                f"{server.url}/predict", json={"features": record}, timeout=30
            ).status_code
            predictions.append((time.monotonic() - started, status))
            time.sleep(0.05)

    def label(client: int) -> None:
        n = 0
        while time.monotonic() < until:
            n += 1
            started = time.monotonic()
            response = requests.post(
                f"{server.url}/feedback", json={"id": f"c{client}-{n}", "actual": 1.0}, timeout=60
            )
            labels.append((time.monotonic() - started, response.status_code, response.headers))
            time.sleep(0.1)

    private_postgres.stall()
    try:
        clients = [threading.Thread(target=predict)]
        clients += [threading.Thread(target=label, args=(i,)) for i in range(8)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=90)
    finally:
        private_postgres.resume()

    assert predictions and {status for _, status in predictions} == {200}
    assert max(seconds for seconds, _ in predictions) < 1.0, sorted(predictions)[-5:]
    assert len(predictions) >= 20
    assert {status for _, status, _ in labels} == {503}
    assert max(seconds for seconds, _, _ in labels) < TIMEOUT_SECONDS + MARGIN_SECONDS
    assert all(headers.get("Retry-After") for _, _, headers in labels)
    # the connections cut off were discarded: the database back, labels are stored
    assert server.post("/feedback", json={"id": "after", "actual": 1.0}).status_code == 200


@pytest.mark.integration
@pytest.mark.postgres
def test_feedback_cut_off_in_its_commit_says_so_and_its_retry_is_accepted(
    private_postgres: PostgresServer, make_settings: Any
) -> None:
    """Frozen after the COMMIT was sent, the server commits once it runs again: the 503
    must not say nothing was stored, and the retry it asks for must not be a 409."""
    url = private_postgres.create_database()
    engine = create_engine(url)
    upgrade(engine)
    app = create_app(
        make_settings(database_url=url, request_database_timeout=1.0), registry=CollectorRegistry()
    )
    client = app.test_client()
    label = {"id": "cut-in-commit", "actual": 180000.0}
    thaw = threading.Timer(3.0, private_postgres.resume)

    def mark(connection: sa.Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO feedback"):
            connection.info["label"] = True

    def freeze(connection: sa.Connection) -> None:
        if connection.info.pop("label", False):  # the COMMIT goes to a frozen server
            private_postgres.stall()
            thaw.start()

    sa.event.listen(sa.Engine, "before_cursor_execute", mark)
    sa.event.listen(sa.Engine, "commit", freeze)
    try:
        started = time.monotonic()
        cut = client.post("/feedback", json=label)
        elapsed = time.monotonic() - started
    finally:
        sa.event.remove(sa.Engine, "commit", freeze)
        sa.event.remove(sa.Engine, "before_cursor_execute", mark)
        if thaw.is_alive():
            thaw.join()
        private_postgres.resume()
    try:
        again = client.post("/feedback", json=label)
        other = client.post("/feedback", json={"id": label["id"], "actual": 1.0})
        with engine.connect() as connection:
            stored = connection.execute(sa.select(feedback.c.prediction_id, feedback.c.actual))
            stored_rows = stored.all()
    finally:
        shutdown(app, timeout=30)
        services(app).engine.dispose()
        engine.dispose()

    assert cut.status_code == 503, cut.json
    assert elapsed < 1.0 + MARGIN_SECONDS
    assert cut.json["error"]["code"] == "database_unavailable"
    assert "may have been done" in cut.json["error"]["message"]
    assert stored_rows == [(label["id"], label["actual"])]  # the COMMIT was carried out
    assert again.status_code == 200, again.json  # the retry: the same label, accepted
    assert again.json["accepted"] == 1
    assert other.status_code == 409  # another label for it is still refused


@pytest.fixture
def one_slot(tmp_path: Any) -> Iterator[RequestDatabase]:
    """A worker of two threads: one may work on the database (SQLite here)."""
    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    yield RequestDatabase(engine, threads=2, timeout=5.0)
    engine.dispose()


def _hold(database: RequestDatabase, entered: threading.Event, seconds: float) -> None:
    with database.work("the first request"):
        entered.set()
        time.sleep(seconds)


def test_a_request_beyond_the_slots_waits_for_one_while_the_database_answers(
    one_slot: RequestDatabase,
) -> None:
    """A database that answers frees a slot within milliseconds: refusing the request
    meanwhile would be a 503 on a healthy database."""
    entered = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(_hold, one_slot, entered, 0.1)
        assert entered.wait(5)
        with one_slot.work("the second request"):
            pass
        first.result()


def test_a_request_beyond_the_slots_is_503_at_once_while_a_slot_waits_long(
    one_slot: RequestDatabase,
) -> None:
    """The slot's work has waited longer than the database takes when it answers: a
    second request waiting too would hold a thread the cap keeps for /predict."""
    entered = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(_hold, one_slot, entered, SLOT_PATIENCE + 0.5)
        assert entered.wait(5)
        time.sleep(SLOT_PATIENCE)
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="already wait for the database"):
            with one_slot.work("the second request"):
                pass
        refused_in = time.monotonic() - started
        first.result()

    assert refused_in < 0.1


def test_feedback_waiting_for_a_sqlite_write_lock_is_503_by_the_deadline(tmp_path: Any) -> None:
    """SQLite's work shared the worker's engine and its 30 s busy timeout: with another
    process holding the write lock (a long prune, a monitor transaction) a /feedback
    held its request thread for 30 s, past ``WATCHKEEPER_REQUEST_DATABASE_TIMEOUT``."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    shared = create_engine(url)
    upgrade(shared)
    database = RequestDatabase(shared, threads=2, timeout=TIMEOUT_SECONDS)
    holder = create_engine(url)
    try:
        with holder.connect() as locked:
            locked.exec_driver_sql("BEGIN IMMEDIATE")
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable):
                with database.work("storing feedback") as engine, engine.begin() as connection:
                    connection.execute(
                        feedback.insert(),
                        {"prediction_id": "p", "actual": 1.0, "received_at": datetime.now(UTC)},
                    )
            waited = time.monotonic() - started
            locked.exec_driver_sql("ROLLBACK")
    finally:
        database.dispose()
        holder.dispose()
        shared.dispose()

    assert waited < TIMEOUT_SECONDS + MARGIN_SECONDS
