"""``POST /feedback``: actual values for predictions, accepted whether or not the
prediction has reached the log yet, with clear errors for duplicates and bad fields,
and a 503 while the database is down."""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from serving.app import create_app, shutdown
from serving.services import services
from tests.postgres import PostgresServer
from tests.serving.conftest import LogReader
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade
from watchkeeper.db.tables import feedback
from watchkeeper.registry import ModelRegistry
from watchkeeper.training import TrainedModel


def _predict(
    client: FlaskClient, log_reader: LogReader, records: list[dict[str, Any]]
) -> list[str]:
    body = client.post("/predict", json={"instances": records}).json
    log_reader.flush()  # feedback refers to predictions already in the log
    return [item["id"] for item in body["predictions"]]


def _stored(log_reader: LogReader) -> dict[str, float]:
    with log_reader.engine.connect() as connection:
        return dict(
            connection.execute(sa.select(feedback.c.prediction_id, feedback.c.actual)).all()
        )


def test_single_and_batch_feedback_are_stored(
    client: FlaskClient, log_reader: LogReader, replay_records: list[dict[str, Any]]
) -> None:
    ids = _predict(client, log_reader, replay_records[:3])

    one = client.post("/feedback", json={"id": ids[0], "actual": 180000})
    many = client.post(
        "/feedback", json={"items": [{"id": ids[1], "actual": 1.5}, {"id": ids[2], "actual": 2e5}]}
    )

    assert (one.status_code, one.json["accepted"]) == (200, 1)
    assert (many.status_code, many.json["accepted"]) == (200, 2)
    assert _stored(log_reader) == {ids[0]: 180000.0, ids[1]: 1.5, ids[2]: 2e5}


def test_feedback_for_an_id_not_yet_in_the_log_is_accepted_and_reported_unmatched(
    client: FlaskClient, log_reader: LogReader, replay_records: list[dict[str, Any]]
) -> None:
    ids = _predict(client, log_reader, replay_records[:1])

    response = client.post(
        "/feedback", json={"items": [{"id": ids[0], "actual": 1}, {"id": "later", "actual": 2}]}
    )

    assert response.status_code == 200, response.json
    assert (response.json["accepted"], response.json["unmatched"]) == (2, 1)
    assert _stored(log_reader) == {ids[0]: 1.0, "later": 2.0}


def test_unmatched_counts_the_ids_no_logged_request_holds(
    client: FlaskClient, log_reader: LogReader, replay_records: list[dict[str, Any]]
) -> None:
    """An id is matched when its request is logged and holds that item, in that form: a
    batch's item past its last, a single record's id with an index, a batch's request id
    alone match nothing (an index serving never writes, ``07``, is refused: below)."""
    batch = _predict(client, log_reader, replay_records[:2])
    single = client.post("/predict", json={"features": replay_records[2]}).json["id"]
    log_reader.flush()
    request_id = batch[0].split(".")[0]
    unknown = [f"{request_id}.2", f"{single}.0", request_id, "x.1"]

    response = client.post(
        "/feedback",
        json={"items": [{"id": i, "actual": 1.0} for i in [*batch, single, *unknown]]},
    )

    assert response.status_code == 200, response.json
    assert (response.json["accepted"], response.json["unmatched"]) == (7, len(unknown))


def test_a_feedback_request_reads_the_logged_requests_once(
    client: FlaskClient, log_reader: LogReader, replay_records: list[dict[str, Any]]
) -> None:
    """Each label's rule and the count of ids not logged yet come from one read of the
    logged requests, on the connection that reads the labels stored: the requests were
    read twice, on two connections besides the insert's (three checkouts)."""
    ids = _predict(client, log_reader, replay_records[:3])
    engine = services(client.application).request_database.engine
    statements: list[str] = []
    checkouts: list[object] = []

    def statement(_conn: Any, _cursor: Any, text: str, *_: Any) -> None:
        statements.append(text)

    def checkout(*_: Any) -> None:
        checkouts.append(None)

    sa.event.listen(engine, "before_cursor_execute", statement)
    sa.event.listen(engine.pool, "checkout", checkout)
    try:
        items = [{"id": i, "actual": 1.0} for i in [*ids, "later"]]
        response = client.post("/feedback", json={"items": items})
    finally:
        sa.event.remove(engine, "before_cursor_execute", statement)
        sa.event.remove(engine.pool, "checkout", checkout)

    assert response.status_code == 200, response.json
    assert (response.json["accepted"], response.json["unmatched"]) == (4, 1)
    assert len([s for s in statements if "FROM requests" in s]) == 1, statements
    assert len(checkouts) == 2  # the read, then the insert's transaction


def test_feedback_posted_before_the_log_is_flushed_is_accepted(
    make_app: Callable[..., Flask],
    read_log: Callable[[Flask], LogReader],
    replay_records: list[dict[str, Any]],
) -> None:
    """Labels often arrive in bulk right after their predictions (backfills)."""
    app = make_app(log_write_interval=30.0)  # the log holds the rows until flushed below
    client, log_reader = app.test_client(), read_log(app)
    body = client.post("/predict", json={"instances": replay_records[:20]}).json
    items = [{"id": p["id"], "actual": 1.0} for p in body["predictions"]]

    response = client.post("/feedback", json={"items": items})
    log_reader.flush()

    assert response.status_code == 200, response.json
    assert response.json["accepted"] == 20
    assert set(_stored(log_reader)) == {item["id"] for item in items}


def test_second_feedback_for_a_prediction_is_409_naming_where_the_id_was(
    client: FlaskClient, log_reader: LogReader, replay_records: list[dict[str, Any]]
) -> None:
    ids = _predict(client, log_reader, replay_records[:1])
    assert client.post("/feedback", json={"id": ids[0], "actual": 1}).status_code == 200

    again = client.post("/feedback", json={"id": ids[0], "actual": 2})
    in_a_batch = client.post(
        "/feedback", json={"items": [{"id": "new", "actual": 3}, {"id": ids[0], "actual": 4}]}
    )

    assert again.status_code == 409
    assert again.json["error"]["details"] == [
        {"field": "id", "problem": f"feedback for {ids[0]!r} exists"}
    ]
    assert in_a_batch.status_code == 409
    assert in_a_batch.json["error"]["details"] == [
        {"field": "items[1].id", "problem": f"feedback for {ids[0]!r} exists"}
    ]
    assert _stored(log_reader) == {ids[0]: 1.0}


def test_an_id_labelled_by_a_concurrent_request_is_the_same_409_naming_the_id(
    client: FlaskClient,
    log_reader: LogReader,
    replay_records: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Other requests store labels between this one's look-up and its insert, twice:
    the first stores the same label for items[0] (this request's retry then accepts
    it), the second another label for items[1]. The retry's insert lost the race too,
    and the 409 said "stored concurrently" with no details naming the id, where an id
    already labelled is named."""
    import serving.feedback

    ids = _predict(client, log_reader, replay_records[:2])
    racers = iter([(ids[0], 1.0), (ids[1], 9.0)])
    looked_up = serving.feedback._stored_labels

    def look_up_while_another_request_stores(connection: sa.Connection, wanted: Any) -> Any:
        found = looked_up(connection, wanted)
        racer = next(racers, None)  # the first two look-ups; then the 409's own
        if racer is not None:
            with log_reader.engine.begin() as other:
                other.execute(
                    feedback.insert().values(
                        prediction_id=racer[0], actual=racer[1], received_at=datetime.now(UTC)
                    )
                )
        return found

    monkeypatch.setattr(serving.feedback, "_stored_labels", look_up_while_another_request_stores)
    raced = client.post(
        "/feedback", json={"items": [{"id": ids[0], "actual": 1}, {"id": ids[1], "actual": 2}]}
    )

    assert raced.status_code == 409
    assert raced.json["error"] == {
        "code": "duplicate_feedback",
        "message": "1 prediction(s) already have feedback",
        "details": [{"field": "items[1].id", "problem": f"feedback for {ids[1]!r} exists"}],
    }
    assert _stored(log_reader) == {ids[0]: 1.0, ids[1]: 9.0}


def test_the_same_label_again_is_accepted_and_stored_once(
    client: FlaskClient, log_reader: LogReader, replay_records: list[dict[str, Any]]
) -> None:
    """A client answered 503 cannot know whether a write cut off in its commit was
    stored: its retry of the same labels must not be refused as a duplicate."""
    ids = _predict(client, log_reader, replay_records[:2])
    first = client.post("/feedback", json={"id": ids[0], "actual": 1.5})

    again = client.post("/feedback", json={"id": ids[0], "actual": 1.5})
    with_a_new_one = client.post(
        "/feedback", json={"items": [{"id": ids[0], "actual": 1.5}, {"id": ids[1], "actual": 2}]}
    )

    assert again.status_code == 200, again.json
    assert again.json["accepted"] == 1
    assert again.json["received_at"] == first.json["received_at"]  # when it was stored
    assert with_a_new_one.status_code == 200, with_a_new_one.json
    assert with_a_new_one.json["accepted"] == 2
    assert _stored(log_reader) == {ids[0]: 1.5, ids[1]: 2.0}


def test_bad_feedback_fields_are_422_naming_them(client: FlaskClient) -> None:
    response = client.post(
        "/feedback",
        json={
            "items": [
                {"id": "a", "actual": "high"},
                {"id": 5, "actual": 1},
                {"id": "a", "actual": 1},
                {"id": "b", "actual": 1},
                {"id": "b", "actual": 2},
            ]
        },
    )

    assert response.status_code == 422
    assert {(d["field"], d["problem"]) for d in response.json["error"]["details"]} == {
        ("items[0].actual", "must be a number"),
        ("items[1].id", "must be a prediction id (string of 1–48)"),
        ("items[4].id", "'b' appears twice in this request"),
    }


@pytest.mark.parametrize("suffix", [".01", ".+1", ". 1", ".1e3", ".", ".4294967296", ".٣"])
def test_an_id_no_prediction_can_have_is_422_naming_it(client: FlaskClient, suffix: str) -> None:
    """An item index serving never writes was accepted as ``unmatched``, stored, and
    counted an orphan a day later: the client's mistake was never told."""
    response = client.post("/feedback", json={"id": f"0123abc{suffix}", "actual": 1.0})

    assert response.status_code == 422, response.json
    [problem] = response.json["error"]["details"]
    assert problem["field"] == "id"
    assert problem["problem"].startswith("is no prediction id this server makes")


def test_a_number_too_large_for_a_float_is_refused_naming_actual(client: FlaskClient) -> None:
    response = client.post(
        "/feedback",
        data=b'{"id": "a", "actual": 1' + b"0" * 400 + b"}",
        content_type="application/json",
    )

    assert response.status_code == 422
    assert response.json["error"]["details"] == [
        {"field": "actual", "problem": "must be a finite number"}
    ]


TOKEN = "s3cret-token"
# The endpoints that write to the database in the request, and a body each takes.
SYNCHRONOUS_WRITES = [
    ("/feedback", {"id": "0123abcd", "actual": 180000}),
    ("/admin/retrain", {"reason": "test"}),
    (
        "/alerts",
        {
            "groupKey": "g",
            "alerts": [{"status": "firing", "labels": {"alertname": "WatchkeeperDrift"}}],
        },
    ),
]


@pytest.mark.integration
@pytest.mark.postgres
@pytest.mark.parametrize(("path", "body"), SYNCHRONOUS_WRITES)
def test_database_outage_is_503_in_the_error_shape_for_synchronous_writes(
    private_postgres: PostgresServer, make_settings: Any, path: str, body: dict[str, Any]
) -> None:
    postgres_server = private_postgres  # stopped below: the session's server stays up
    url = postgres_server.create_database()
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    app = create_app(
        make_settings(
            database_url=url,
            admin_token=TOKEN,
            retrain_alert_names="WatchkeeperDrift",
        ),
        registry=CollectorRegistry(),
    )
    client = app.test_client()
    try:
        postgres_server.stop(mode="immediate")
        try:
            response = client.post(path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        finally:
            postgres_server.start()
        after = client.post(path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    finally:
        shutdown(app, timeout=30)
        services(app).engine.dispose()

    assert response.status_code == 503, response.json
    assert response.json["error"]["code"] == "database_unavailable"
    assert response.json["request_id"] == response.headers["X-Request-ID"]
    assert str(postgres_server.port) not in response.json["error"]["message"]
    assert after.status_code in (200, 202), after.json  # the database is back


@pytest.mark.integration
@pytest.mark.postgres
@pytest.mark.parametrize("refusal", ["read-only", "no insert rights"])
def test_a_database_refusing_writes_is_503_for_synchronous_writes_not_a_500(
    postgres_server: PostgresServer, make_settings: Any, refusal: str
) -> None:
    """A hot standby after a failover takes reads and refuses writes, as does a role
    without INSERT rights: the database's state, which a retry may find changed, not
    the request's fault (they were 500 internal_error)."""
    url = postgres_server.create_database()
    engine = create_engine(url)
    upgrade(engine)
    database = sa.make_url(url).database
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if refusal == "read-only":  # for new connections: the app's are all new
            connection.exec_driver_sql(
                f"ALTER DATABASE {database} SET default_transaction_read_only = on"
            )
        else:
            role = f"{database}_reader"
            connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
            connection.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
            url = sa.make_url(url).set(username=role).render_as_string(hide_password=False)
    engine.dispose()
    app = create_app(
        make_settings(database_url=url, admin_token=TOKEN, retrain_alert_names="WatchkeeperDrift"),
        registry=CollectorRegistry(),
    )
    client = app.test_client()
    try:
        responses = {
            path: client.post(path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
            for path, body in SYNCHRONOUS_WRITES
        }
    finally:
        shutdown(app, timeout=30)
        services(app).engine.dispose()

    for path, response in responses.items():
        assert response.status_code == 503, (path, response.json)
        assert response.json["error"]["code"] == "database_unavailable", path


@pytest.mark.postgres
def test_overlapping_batches_stored_at_once_are_409_never_a_deadlock(
    postgres_engine: sa.Engine,
) -> None:
    """Batches sharing ids, with other labels for them, sent at once in opposite
    orders, each take their ids' locks in one order: one batch is stored, the others
    refused as duplicates. In the client's order two such inserts could each hold an id
    the other waits for, which PostgreSQL breaks as a deadlock (a 503 to the client, on
    a healthy database)."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from serving.feedback import DuplicateFeedback, FeedbackItem, store_feedback

    def batch(round_: int, sender: int) -> list[FeedbackItem]:
        ids = [f"{round_:04d}{i:028x}" for i in range(100)]
        return [FeedbackItem(pid, float(sender)) for pid in (ids[::-1] if sender % 2 else ids)]

    outcomes: list[str] = []
    for round_ in range(12):
        start = Barrier(4)

        def send(sender: int, round_: int = round_, start: Barrier = start) -> str:
            items = batch(round_, sender)
            start.wait()
            try:
                store_feedback(postgres_engine, items)
            except DuplicateFeedback:
                return "duplicate"
            except Exception as exc:  # what the client would get as a 5xx
                return type(exc).__name__
            return "stored"

        with ThreadPoolExecutor(4) as pool:
            round_outcomes = list(pool.map(send, range(4)))
        assert round_outcomes.count("stored") == 1, round_outcomes
        outcomes += round_outcomes

    assert set(outcomes) == {"stored", "duplicate"}, outcomes
    with postgres_engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(feedback)).scalar() == 1200


class _HeldWriters:
    """Feedback writers held up, as a long write holds them: SQLite's write lock taken
    by another connection; on PostgreSQL the feedback table locked against inserts, so
    that a label's write waits after its arrival time was taken."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        if engine.dialect.name == "sqlite":
            self._sqlite = sqlite3.connect(str(engine.url.database), isolation_level=None)
            self._sqlite.execute("BEGIN IMMEDIATE")
        else:
            self._postgres = engine.connect()
            self._postgres.begin()
            self._postgres.exec_driver_sql("LOCK TABLE feedback IN EXCLUSIVE MODE")

    def wait_for_waiters(self, n: int) -> None:
        """Until ``n`` writers wait (PostgreSQL says so; SQLite cannot: half a second)."""
        if self.engine.dialect.name == "sqlite":
            time.sleep(0.5)
            return
        waiting = sa.text(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        deadline = time.monotonic() + 60
        with self.engine.connect() as connection:
            while connection.execute(waiting).scalar_one() < n:
                # a transaction sees one snapshot of pg_stat_activity: a writer that
                # began to wait after the first look was never seen
                connection.rollback()
                assert time.monotonic() < deadline, f"{n} writers never waited"
                time.sleep(0.02)

    def release(self) -> datetime:
        released = datetime.now(UTC)
        if self.engine.dialect.name == "sqlite":
            self._sqlite.execute("COMMIT")
            self._sqlite.close()
        else:
            self._postgres.commit()
            self._postgres.close()
        return released


def test_a_label_arrives_after_the_feedback_writes_it_waited_for(engine: sa.Engine) -> None:
    """The monitor finds new labels by a watermark on ``received_at``: a label stamped
    before it waited could commit after labels stamped later, behind the watermark, and
    its window's accuracy was never computed. Each label must be stamped once the
    writes before it are done."""
    from serving.feedback import FeedbackItem, store_feedback

    held = _HeldWriters(engine)
    with ThreadPoolExecutor(2) as pool:
        try:
            first = pool.submit(store_feedback, engine, [FeedbackItem("first", 1.0)])
            held.wait_for_waiters(1)
            second = pool.submit(store_feedback, engine, [FeedbackItem("second", 2.0)])
            held.wait_for_waiters(2)
        finally:
            released = held.release()
        first.result(timeout=60)
        stored = second.result(timeout=60)

    # PostgreSQL: after the first label's commit, which waited for the table; SQLite:
    # after the write lock was free (the two race for it then).
    assert stored.received_at >= released


def _labels(log_reader: LogReader) -> dict[str, tuple[float | None, str | None]]:
    with log_reader.engine.connect() as connection:
        rows = connection.execute(
            sa.select(feedback.c.prediction_id, feedback.c.actual, feedback.c.label)
        ).all()
    return {pid: (actual, label) for pid, actual, label in rows}


def _ids(client: FlaskClient, log_reader: LogReader, records: list[dict[str, Any]]) -> list[str]:
    body = client.post("/predict", json={"instances": records}).json
    log_reader.flush()
    return [item["id"] for item in body["predictions"]]


def test_a_label_is_checked_by_the_task_of_the_version_that_made_its_prediction(
    app: Flask,
    log_reader: LogReader,
    registry_dir: Path,
    classifier_trained: TrainedModel,
    replay_records: list[dict[str, Any]],
    classifier_records: list[dict[str, Any]],
) -> None:
    """Labels were checked by the served model's task: after a promotion from a
    regression model to a classifier, a price for the old version's prediction was
    stored as the class "183000" (known_class false), and a class for it accepted."""
    client = app.test_client()
    old = _ids(client, log_reader, replay_records[:3])  # v1, a regression model
    assert ModelRegistry(registry_dir).register(classifier_trained) == "v2"
    assert services(app).model_store.refresh() is True
    new = _ids(client, log_reader, classifier_records[:2])  # v2, a classifier

    mixed = client.post(
        "/feedback",
        json={
            "items": [
                {"id": old[0], "actual": 183000.5},
                {"id": new[0], "actual": "low"},
                {"id": new[1], "actual": "very high"},
            ]
        },
    )
    a_class_for_a_price = client.post("/feedback", json={"id": old[1], "actual": "low"})
    not_logged_yet = client.post("/feedback", json={"id": "later", "actual": "mid"})

    assert mixed.status_code == 200, mixed.json
    assert (mixed.json["accepted"], mixed.json["known_class"]) == (3, False)
    assert a_class_for_a_price.status_code == 422
    assert a_class_for_a_price.json["error"]["details"] == [
        {
            "field": "actual",
            "problem": "must be a number (its prediction was made by v1, a regression model)",
        }
    ]
    assert not_logged_yet.status_code == 200  # taken as the served version's
    assert _labels(log_reader) == {
        old[0]: (183000.5, None),
        new[0]: (None, "low"),
        new[1]: (None, "very high"),
        "later": (None, "mid"),
    }


def test_a_class_label_for_a_classifier_s_prediction_is_taken_after_a_regression_model_is_served(
    make_app: Callable[..., Flask],
    read_log: Callable[[Flask], LogReader],
    tmp_path: Path,
    classifier_registry_template: Path,
    trained: TrainedModel,
    classifier_records: list[dict[str, Any]],
) -> None:
    registry = tmp_path / "classifier-registry"
    shutil.copytree(classifier_registry_template, registry)
    app = make_app(registry_path=registry)
    client, log_reader = app.test_client(), read_log(app)
    ids = _ids(client, log_reader, classifier_records[:3])  # v1, a classifier
    assert ModelRegistry(registry).register(trained) == "v2"  # a regression model
    assert services(app).model_store.refresh() is True

    response = client.post(
        "/feedback",
        json={"items": [{"id": ids[0], "actual": "mid"}, {"id": ids[1], "actual": 2}]},
    )
    price = client.post("/feedback", json={"id": "later", "actual": 150000})

    assert response.status_code == 200, response.json
    assert response.json["known_class"] is False  # 2 is no class of v1's
    assert price.status_code == 200 and "known_class" not in price.json
    assert _labels(log_reader) == {
        ids[0]: (None, "mid"),
        ids[1]: (2.0, "2"),
        "later": (150000.0, None),
    }


def test_a_label_for_a_version_whose_metadata_cannot_be_read_is_503_naming_it(
    caplog: pytest.LogCaptureFixture,
    app: Flask,
    log_reader: LogReader,
    registry_dir: Path,
    classifier_trained: TrainedModel,
    replay_records: list[dict[str, Any]],
) -> None:
    client = app.test_client()
    old = _ids(client, log_reader, replay_records[:2])
    assert ModelRegistry(registry_dir).register(classifier_trained) == "v2"
    assert services(app).model_store.refresh() is True
    (registry_dir / "versions" / "v1" / "metadata.json").write_text("{not json")

    response = client.post(
        "/feedback",
        json={"items": [{"id": old[0], "actual": 1.5}, {"id": "later", "actual": "low"}]},
    )

    assert response.status_code == 503
    assert response.json["error"]["code"] == "model_unavailable"
    [problem] = response.json["error"]["details"]
    assert problem["field"] == "items[0].id"
    assert problem["problem"] == (
        "was predicted by model version v1, whose metadata cannot be read (the server log "
        "says why): what its label must be is unknown"
    )
    assert str(registry_dir) not in response.get_data(as_text=True)
    assert "metadata of 'v1' is not valid JSON" in caplog.text  # said where it is read
    assert _labels(log_reader) == {}
