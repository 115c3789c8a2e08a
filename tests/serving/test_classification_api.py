"""Serving a classifier: ``/predict`` answers a class with its probabilities and
prediction set (one record, records, columns), the log keeps each row's class index
and probabilities (SQLite and PostgreSQL, and through the journal), ``/feedback``
takes class labels, metrics carry the task and the predicted class mix, and a hot
swap between a regression model and a classifier changes the answers' shape."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from serving.log_entry import LogEntry
from serving.log_store import LogStore
from serving.services import services
from tests.processes import Process, metric, wait_for
from tests.serving.conftest import LogReader
from watchkeeper.classification import Classifier
from watchkeeper.db.engine import create_engine
from watchkeeper.db.tables import feedback, predictions
from watchkeeper.registry import ModelRegistry
from watchkeeper.task import label_text
from watchkeeper.training import TrainedModel

LEVEL = 0.9


def _classifier(app: Flask) -> Classifier:
    model = services(app).model_store.get().model
    assert isinstance(model, Classifier)
    return model


def _check_item(item: dict[str, Any], model: Classifier) -> None:
    """One prediction of ``model``: its label, probabilities keyed by label text in the
    classes' order and summing to 1, the most probable class predicted, and a set at
    the version's level that holds it."""
    texts = [label_text(c) for c in model.classes]
    probabilities = item["probabilities"]
    assert list(probabilities) == texts
    assert math.isclose(sum(probabilities.values()), 1.0, rel_tol=1e-9)
    assert item["prediction"] in model.classes
    assert probabilities[label_text(item["prediction"])] == max(probabilities.values())
    assert item["prediction"] in item["prediction_set"]["labels"]
    assert item["prediction_set"]["level"] == model.prediction_set.level == LEVEL
    assert set(map(label_text, item["prediction_set"]["labels"])) <= set(texts)
    assert item["ood"] is None or set(item["ood"]) == {"score", "flag"}


def test_a_single_record_is_answered_with_a_class_probabilities_and_a_set(
    classifier_app: Flask, classifier_records: list[dict[str, Any]]
) -> None:
    response = classifier_app.test_client().post(
        "/predict", json={"features": classifier_records[0]}
    )

    assert response.status_code == 200, response.json
    body = response.json
    assert set(body) == {
        "request_id",
        "model_version",
        "id",
        "prediction",
        "probabilities",
        "prediction_set",
        "ood",
        "non_finite",
    }
    assert body["non_finite"] is None
    assert body["id"] == body["request_id"] and body["model_version"] == "v1"
    assert isinstance(body["prediction"], str)
    _check_item(body, _classifier(classifier_app))
    # scored against the classifier's reference sample, as a regression model's are
    assert body["ood"] is not None and body["ood"]["score"] >= 0


def test_records_and_columns_batches_give_the_same_class_predictions(
    classifier_app: Flask, classifier_records: list[dict[str, Any]]
) -> None:
    client = classifier_app.test_client()
    records = classifier_records[:50]
    columns = {name: [r[name] for r in records] for name in records[0]}

    by_records = client.post("/predict", json={"instances": records})
    by_columns = client.post("/predict", json={"columns": columns})

    assert (by_records.status_code, by_columns.status_code) == (200, 200)
    model = _classifier(classifier_app)
    for body in (by_records.json, by_columns.json):
        items = body["predictions"]
        assert [item["id"] for item in items] == [
            f"{body['request_id']}.{i}" for i in range(len(records))
        ]
        for item in items:
            _check_item(item, model)
    strip = [
        {k: v for k, v in item.items() if k != "id"} for item in by_records.json["predictions"]
    ]
    assert strip == [
        {k: v for k, v in item.items() if k != "id"} for item in by_columns.json["predictions"]
    ]
    # a synthetic grade follows x1: a spread of records gets more than one class
    assert len({item["prediction"] for item in by_records.json["predictions"]}) > 1


def test_integer_classes_are_answered_as_integers_keyed_by_their_text(
    binary_app: Flask, classifier_records: list[dict[str, Any]]
) -> None:
    response = binary_app.test_client().post(
        "/predict", json={"instances": classifier_records[:20]}
    )

    assert response.status_code == 200
    items = response.json["predictions"]
    for item in items:
        assert type(item["prediction"]) is int and item["prediction"] in (0, 1)
        assert list(item["probabilities"]) == ["0", "1"]
        assert all(type(label) is int for label in item["prediction_set"]["labels"])
        _check_item(item, _classifier(binary_app))


def test_logged_rows_hold_the_class_index_and_the_probabilities(
    classifier_app: Flask,
    read_log: Callable[[Flask], LogReader],
    classifier_records: list[dict[str, Any]],
) -> None:
    client = classifier_app.test_client()
    single = client.post("/predict", json={"features": classifier_records[0]}).json
    batch = client.post("/predict", json={"instances": classifier_records[1:30]}).json
    model = _classifier(classifier_app)

    rows = {row["prediction_id"]: row for row in read_log(classifier_app).predictions()}

    served = [single, *batch["predictions"]]
    assert set(rows) == {item["id"] for item in served}
    texts = [label_text(c) for c in model.classes]
    for item in served:
        row = rows[item["id"]]
        index = model.classes.index(item["prediction"])
        assert row["prediction"] == row["lower"] == row["upper"] == float(index)
        assert row["probabilities"] == [item["probabilities"][t] for t in texts]
        assert row["model_version"] == "v1"
        assert row["ood_score"] == pytest.approx(item["ood"]["score"])


def _entry(**fields: Any) -> LogEntry:
    return LogEntry(
        request_id=fields.pop("request_id", "r1"),
        received_at=datetime(2026, 11, 29, 12, 0, 0, 123456, tzinfo=UTC),
        endpoint="/predict",
        method="POST",
        status_code=200,
        latency_seconds=0.01,
        model_version="v1",
        single=False,
        columns={"x1": [0.5, -1.0]},
        **fields,
    )


def test_a_classifier_entry_round_trips_through_a_journal_line() -> None:
    entry = _entry(
        values=[2.0, 0.0],
        lower=[2.0, 0.0],
        upper=[2.0, 0.0],
        probabilities=[[0.1, 0.2, 0.7], [0.8, 0.15, 0.05]],
    )

    parsed = LogEntry.from_line(entry.to_line().rstrip(b"\n"))

    assert parsed.probabilities == [[0.1, 0.2, 0.7], [0.8, 0.15, 0.05]]
    assert parsed.values == [2.0, 0.0] and parsed.received_at == entry.received_at
    assert (
        LogEntry.from_line(
            _entry(values=[1.0], lower=[0.5], upper=[2.0]).to_line().rstrip(b"\n")
        ).probabilities
        is None
    )


# A journal line as a server wrote it before classifiers: no "probabilities" key.
OLD_LINE = (
    b'{"request_id":"old1","received_us":1795000000000000,"endpoint":"/predict",'
    b'"method":"POST","status_code":200,"latency_seconds":0.002,"model_version":"v1",'
    b'"error":null,"body":null,"client_request_id":null,"single":false,'
    b'"values":[150000.0,210000.5],"lower":[120000.0,180000.0],"upper":[180000.0,240000.0],'
    b'"ood":[1.5,2.5]}\t{"x1":[0.5,-1.0]}'
)


def test_entries_of_either_task_and_an_old_journal_line_are_stored(database_url: str) -> None:
    engine = create_engine(database_url)
    classifier = _entry(
        request_id="new1",
        values=[2.0, 0.0],
        lower=[2.0, 0.0],
        upper=[2.0, 0.0],
        probabilities=[[0.1, 0.2, 0.7], [0.8, 0.15, 0.05]],
    )
    regression = _entry(request_id="new2", values=[1.0, 2.0], lower=[0.5, 1.5], upper=[2, 3])
    lines = [e.to_line().rstrip(b"\n") for e in (classifier, regression)] + [OLD_LINE]
    try:
        written = LogStore(engine).insert([LogEntry.from_line(line) for line in lines])
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(
                    predictions.c.prediction_id,
                    predictions.c.prediction,
                    predictions.c.upper,
                    predictions.c.probabilities,
                ).order_by(predictions.c.prediction_id)
            ).all()
    finally:
        engine.dispose()

    assert (written.requests, written.predictions) == (3, 6)
    assert [tuple(row) for row in rows] == [
        ("new1.0", 2.0, 2.0, [0.1, 0.2, 0.7]),
        ("new1.1", 0.0, 0.0, [0.8, 0.15, 0.05]),
        ("new2.0", 1.0, 2.0, None),
        ("new2.1", 2.0, 3.0, None),
        ("old1.0", 150000.0, 180000.0, None),
        ("old1.1", 210000.5, 240000.0, None),
    ]


def test_an_old_journal_line_left_by_a_dead_process_is_replayed(
    make_app: Callable[..., Flask],
    read_log: Callable[[Flask], LogReader],
    tmp_path: Path,
) -> None:
    journal_dir = tmp_path / "var" / "spill"
    journal_dir.mkdir(parents=True)
    # the files a process killed before the upgrade left: a checkpoint nobody locks
    (journal_dir / "j-1-0123456789ab.ckpt").write_text(f"{0:020d} {0:020d}\n")
    (journal_dir / "j-1-0123456789ab.00000000.seg").write_bytes(OLD_LINE + b"\n")
    app = make_app(spill_dir=journal_dir)
    reader = read_log(app)

    def replayed() -> list[dict[str, Any]]:
        with reader.engine.connect() as connection:
            return [
                dict(row._mapping)
                for row in connection.execute(
                    sa.select(predictions.c.prediction_id, predictions.c.probabilities)
                )
            ]

    assert wait_for(lambda: len(replayed()) == 2, timeout=60)
    assert replayed() == [
        {"prediction_id": "old1.0", "probabilities": None},
        {"prediction_id": "old1.1", "probabilities": None},
    ]


def test_metrics_count_predicted_classes_and_name_the_task(
    classifier_app: Flask, classifier_records: list[dict[str, Any]]
) -> None:
    client = classifier_app.test_client()
    served = client.post("/predict", json={"instances": classifier_records[:40]}).json
    single = client.post("/predict", json={"features": classifier_records[40]}).json

    text = client.get("/metrics").text

    labels = [item["prediction"] for item in served["predictions"]] + [single["prediction"]]
    for label in ("low", "mid", "high"):
        expected = labels.count(label)
        counted = metric(text, "watchkeeper_predicted_class_total", model_version="v1", label=label)
        assert counted == (expected or None), label
    assert metric(text, "watchkeeper_predictions_total", model_version="v1") == 41
    assert metric(text, "watchkeeper_model_info", model_version="v1", task="classification") == 1
    # the value histogram is a regression model's: a class index is no quantity
    assert metric(text, "watchkeeper_prediction_value_count") == 0


def test_a_regression_model_counts_no_classes(client: FlaskClient, record: dict[str, Any]) -> None:
    client.post("/predict", json={"features": record})

    text = client.get("/metrics").text

    assert metric(text, "watchkeeper_model_info", model_version="v1", task="regression") == 1
    assert "watchkeeper_predicted_class_total{" not in text
    assert metric(text, "watchkeeper_prediction_value_count") == 1


def _predict_ids(app: Flask, records: list[dict[str, Any]], read_log: Any) -> list[str]:
    body = app.test_client().post("/predict", json={"instances": records}).json
    read_log(app).flush()
    return [item["id"] for item in body["predictions"]]


def _labels(app: Flask) -> dict[str, tuple[float | None, str | None]]:
    engine = services(app).engine
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(feedback.c.prediction_id, feedback.c.actual, feedback.c.label)
        ).all()
    return {pid: (actual, label) for pid, actual, label in rows}


def test_class_labels_are_stored_as_text_and_unknown_classes_are_said(
    classifier_app: Flask,
    read_log: Callable[[Flask], LogReader],
    classifier_records: list[dict[str, Any]],
) -> None:
    ids = _predict_ids(classifier_app, classifier_records[:4], read_log)
    client = classifier_app.test_client()

    known = client.post("/feedback", json={"id": ids[0], "actual": "low"})
    unknown = client.post("/feedback", json={"id": ids[1], "actual": "very high"})
    batch = client.post(
        "/feedback",
        json={"items": [{"id": ids[2], "actual": "mid"}, {"id": ids[3], "actual": 7}]},
    )
    again = client.post("/feedback", json={"id": ids[0], "actual": "mid"})

    assert (known.status_code, known.json["known_class"], known.json["accepted"]) == (
        200,
        True,
        1,
    )
    assert (unknown.status_code, unknown.json["known_class"]) == (200, False)
    assert (batch.status_code, batch.json["known_class"], batch.json["unmatched"]) == (
        200,
        False,
        0,
    )
    assert again.status_code == 409
    assert _labels(classifier_app) == {
        ids[0]: (None, "low"),
        ids[1]: (None, "very high"),
        ids[2]: (None, "mid"),
        ids[3]: (7.0, "7"),
    }


def test_integer_classes_take_numbers_strings_and_booleans(
    binary_app: Flask,
    read_log: Callable[[Flask], LogReader],
    classifier_records: list[dict[str, Any]],
) -> None:
    ids = _predict_ids(binary_app, classifier_records[:5], read_log)
    client = binary_app.test_client()
    sent = [0, 1, "1", 1.0, True]

    known = [
        client.post("/feedback", json={"id": pid, "actual": actual}).json["known_class"]
        for pid, actual in zip(ids, sent, strict=True)
    ]

    # 1, 1.0 and "1" are one class; True is another (matched by its text, "True")
    assert known == [True, True, True, True, False]
    assert _labels(binary_app) == {
        ids[0]: (0.0, "0"),
        ids[1]: (1.0, "1"),
        ids[2]: (None, "1"),
        ids[3]: (1.0, "1"),
        ids[4]: (None, "True"),
    }


@pytest.mark.parametrize(
    ("actual", "problem"),
    [
        (None, "must be a class label (a string, an integer or a boolean), got null"),
        (
            {"class": "low"},
            "must be a class label (a string, an integer or a boolean), got an object",
        ),
        (["low"], "must be a class label (a string, an integer or a boolean), got an array"),
        ("", "must be a class label (a string, an integer or a boolean), got an empty string"),
        ("x" * 257, "must be at most 256 characters long, got 257"),
        ("NaN", "must be a class label (a string, an integer or a boolean), got NaN"),
    ],
)
def test_what_is_no_class_label_is_refused_naming_actual(
    classifier_app: Flask, actual: Any, problem: str
) -> None:
    client = classifier_app.test_client()
    if actual == "NaN":  # not JSON, but clients send it
        single = client.post(
            "/feedback", data=b'{"id": "p1", "actual": NaN}', content_type="application/json"
        )
        batch = client.post(
            "/feedback",
            data=b'{"items": [{"id": "p0", "actual": "low"}, {"id": "p1", "actual": NaN}]}',
            content_type="application/json",
        )
    else:
        single = client.post("/feedback", json={"id": "p1", "actual": actual})
        batch = client.post(
            "/feedback",
            json={"items": [{"id": "p0", "actual": "low"}, {"id": "p1", "actual": actual}]},
        )

    assert single.status_code == batch.status_code == 422
    assert single.json["error"]["details"] == [{"field": "actual", "problem": problem}]
    assert batch.json["error"]["details"] == [{"field": "items[1].actual", "problem": problem}]
    assert _labels(classifier_app) == {}


def test_a_regression_model_still_takes_numbers_only(client: FlaskClient, app: Flask) -> None:
    response = client.post("/feedback", json={"id": "p1", "actual": "high"})

    assert response.status_code == 422
    assert response.json["error"]["details"] == [{"field": "actual", "problem": "must be a number"}]
    accepted = client.post("/feedback", json={"id": "p1", "actual": 2.5})
    assert accepted.status_code == 200 and "known_class" not in accepted.json
    assert _labels(app) == {"p1": (2.5, None)}


def test_a_swap_between_a_regression_model_and_a_classifier_changes_the_answers(
    app: Flask,
    registry_dir: Path,
    classifier_trained: TrainedModel,
    read_log: Callable[[Flask], LogReader],
    record: dict[str, Any],
    classifier_records: list[dict[str, Any]],
) -> None:
    client = app.test_client()
    store = services(app).model_store
    registry = ModelRegistry(registry_dir)
    before = client.post("/predict", json={"instances": [record, record]}).json

    assert registry.register(classifier_trained) == "v2"
    assert store.refresh() is True
    classified = client.post("/predict", json={"instances": classifier_records[:3]}).json
    described = client.get("/model").json
    spec = client.get("/openapi.json").json
    labelled = client.post("/feedback", json={"id": "later", "actual": "low"})
    text = client.get("/metrics").text

    registry.set_current("v1")
    assert store.refresh() is True
    after = client.post("/predict", json={"features": record}).json

    assert "interval" in before["predictions"][0] and "interval" in after
    assert (after["model_version"], classified["model_version"]) == ("v1", "v2")
    for item in classified["predictions"]:
        _check_item(item, _classifier_of(classifier_trained))
    assert (described["version"], described["metadata"]["task"]) == ("v2", "classification")
    assert "probabilities" in spec["components"]["schemas"]["PredictionItem"]["required"]
    assert (labelled.status_code, labelled.json["known_class"]) == (200, True)
    assert metric(text, "watchkeeper_model_info", model_version="v1", task="regression") == 0
    assert metric(text, "watchkeeper_model_info", model_version="v2", task="classification") == 1
    rows = read_log(app).predictions()
    assert [(r["model_version"], r["probabilities"] is None) for r in rows] == [
        ("v1", True),
        ("v1", True),
        ("v2", False),
        ("v2", False),
        ("v2", False),
        ("v1", True),
    ]
    assert [r["prediction"] for r in rows[2:5]] == [
        float(classifier_trained.model.classes.index(item["prediction"]))
        for item in classified["predictions"]
    ]


def _classifier_of(trained: TrainedModel) -> Classifier:
    assert isinstance(trained.model, Classifier)
    return trained.model


@pytest.mark.integration
def test_gunicorn_workers_serve_a_classifier_and_log_its_rows(
    start_watchkeeper: Callable[..., Process],
    registry_dir: Path,
    tmp_path: Path,
    classifier_trained: TrainedModel,
    classifier_records: list[dict[str, Any]],
) -> None:
    ModelRegistry(registry_dir).register(classifier_trained)  # v2, a classifier, is current
    server = start_watchkeeper("serve", WATCHKEEPER_WORKERS="2")

    answers = [
        server.post("/predict", json={"instances": classifier_records[i : i + 10]}).json()
        for i in range(0, 60, 10)
    ]
    labelled = server.post(
        "/feedback", json={"id": answers[0]["predictions"][0]["id"], "actual": "mid"}
    )

    items = [item for answer in answers for item in answer["predictions"]]
    assert {answer["model_version"] for answer in answers} == {"v2"}
    for item in items:
        _check_item(item, _classifier_of(classifier_trained))
    assert labelled.status_code == 200 and labelled.json()["known_class"] is True
    text = server.get("/metrics").text
    assert metric(text, "watchkeeper_model_info", model_version="v2", task="classification") == 1
    counted = {
        label: metric(text, "watchkeeper_predicted_class_total", model_version="v2", label=label)
        for label in ("low", "mid", "high")
    }
    labels = [item["prediction"] for item in items]
    assert counted == {label: float(labels.count(label)) or None for label in counted}
    engine = create_engine(f"sqlite:///{tmp_path / 'var' / 'watchkeeper.db'}")
    try:

        def logged() -> dict[str, Any]:
            with engine.connect() as connection:
                rows = connection.execute(
                    sa.select(
                        predictions.c.prediction_id,
                        predictions.c.prediction,
                        predictions.c.probabilities,
                    )
                ).all()
            return {pid: (prediction, probabilities) for pid, prediction, probabilities in rows}

        assert wait_for(lambda: len(logged()) == len(items), timeout=60)
        rows = logged()
    finally:
        engine.dispose()
    classes = classifier_trained.model.classes
    for item in items:
        prediction, probabilities = rows[item["id"]]
        assert prediction == float(classes.index(item["prediction"]))
        assert probabilities == [item["probabilities"][label_text(c)] for c in classes]


@pytest.fixture(scope="module")
def boolean_registry_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier of a boolean target, as pandas reads a CSV's true/false."""
    from tests.serving.conftest import classification_frame
    from watchkeeper.dataset import Dataset
    from watchkeeper.training import TrainingParams, train

    frame = classification_frame(seed=1)
    frame["outcome"] = frame["outcome"].astype(bool)
    dataset = Dataset(name="booleans", frame=frame, target="outcome", exclude=("grade",))
    trained = train(dataset, params=TrainingParams(max_iter=30, reference_rows=300))
    root = tmp_path_factory.mktemp("boolean-registry")
    ModelRegistry(root).register(trained)
    return root


def test_a_boolean_class_spelled_as_a_csv_spells_it_is_that_class(
    make_app: Callable[..., Flask],
    tmp_path: Path,
    boolean_registry_template: Path,
    read_log: Callable[[Flask], LogReader],
    classifier_records: list[dict[str, Any]],
) -> None:
    """pandas reads a CSV's true/false target as booleans, so the classes are True and
    False; the file's own text "true" as a label was stored as a class the model did not
    know (known_class false), counted wrong by the monitor and left out of retraining."""
    registry = tmp_path / "boolean-registry"
    shutil.copytree(boolean_registry_template, registry)
    app = make_app(registry_path=registry)
    ids = _predict_ids(app, classifier_records[:3], read_log)
    client = app.test_client()

    spelled = client.post(
        "/feedback",
        json={"items": [{"id": ids[0], "actual": "true"}, {"id": ids[1], "actual": "FALSE"}]},
    )
    other = client.post("/feedback", json={"id": ids[2], "actual": "maybe"})

    assert (spelled.status_code, spelled.json["known_class"]) == (200, True), spelled.json
    assert other.json["known_class"] is False
    assert _labels(app) == {
        ids[0]: (None, "True"),
        ids[1]: (None, "False"),
        ids[2]: (None, "maybe"),
    }
