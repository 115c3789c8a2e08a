"""``/predict`` end to end through the Flask app, on SQLite and on a real PostgreSQL:
every class of input gets the right status and a field-level message, and the log
holds one row per request, rejected ones included."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from flask.testing import FlaskClient

from serving.services import services
from tests.ports import free_port
from tests.processes import wait_for
from tests.serving.conftest import LogReader
from watchkeeper.dataset import Dataset
from watchkeeper.schema import FeatureSchema


def _problems(response: Any) -> dict[str, str]:
    return {d["field"]: d["problem"] for d in response.json["error"].get("details", [])}


def test_single_record_gets_prediction_interval_version_and_request_id(
    client: FlaskClient, record: dict[str, Any], log_reader: LogReader
) -> None:
    response = client.post("/predict", json={"features": record})

    assert response.status_code == 200
    body = response.json
    assert body["model_version"] == "v1"
    assert body["request_id"] == response.headers["X-Request-ID"] == body["id"]
    assert body["interval"]["lower"] < body["prediction"] < body["interval"]["upper"]
    assert body["interval"]["level"] == 0.9
    assert 20_000 < body["prediction"] < 1_000_000

    [row] = log_reader.requests()
    assert row["request_id"] == body["request_id"]
    assert (row["status_code"], row["n_items"], row["error"]) == (200, 1, None)
    assert row["model_version"] == "v1"
    assert row["latency_seconds"] > 0
    [logged] = log_reader.predictions()
    assert logged["prediction_id"] == body["id"]
    assert logged["features"] == record
    assert logged["prediction"] == pytest.approx(body["prediction"])
    assert logged["lower"] == pytest.approx(body["interval"]["lower"])


def test_batch_returns_one_prediction_per_instance_in_order(
    client: FlaskClient, replay_records: list[dict[str, Any]], log_reader: LogReader
) -> None:
    batch = replay_records[:25]
    single = [client.post("/predict", json={"features": r}).json["prediction"] for r in batch[:3]]

    response = client.post("/predict", json={"instances": batch})

    assert response.status_code == 200
    items = response.json["predictions"]
    assert len(items) == 25
    assert [i["prediction"] for i in items[:3]] == pytest.approx(single)
    request_id = response.json["request_id"]
    assert [i["id"] for i in items] == [f"{request_id}.{n}" for n in range(25)]
    logged = [p for p in log_reader.predictions() if p["request_id"] == request_id]
    assert [p["item_index"] for p in logged] == list(range(25))
    assert [p["features"] for p in logged] == batch


def test_a_long_batch_predicts_and_logs_each_record_as_it_would_alone(
    client: FlaskClient, replay_records: list[dict[str, Any]], log_reader: LogReader
) -> None:
    """A batch long enough to be transposed by position with its categories coded, its
    records' fields in two orders, nulls and an unseen category among them."""
    batch = [dict(r) for r in replay_records[:600]]
    batch[7]["Garage_Area"] = None
    batch[8]["Neighborhood"] = "Atlantis"
    batch[9]["Neighborhood"] = None
    batch[::2] = [dict(reversed(list(r.items()))) for r in batch[::2]]
    alone = [client.post("/predict", json={"features": r}).json for r in batch]

    response = client.post("/predict", json={"instances": batch})

    assert response.status_code == 200, response.json
    items = response.json["predictions"]
    assert [i["prediction"] for i in items] == [a["prediction"] for a in alone]
    assert [i["interval"] for i in items] == [a["interval"] for a in alone]
    # a batch's distances are one matrix product: equal to the last bit or two
    assert [i["ood"]["score"] for i in items] == pytest.approx([a["ood"]["score"] for a in alone])
    request_id = response.json["request_id"]
    logged = [p for p in log_reader.predictions() if p["request_id"] == request_id]
    assert [p["features"] for p in logged] == batch


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        (lambda r: r.pop("Gr_Liv_Area"), "features.Gr_Liv_Area", "missing"),
        (
            lambda r: r.update(Gr_Liv_Area="huge"),
            "features.Gr_Liv_Area",
            "must be a number, got string",
        ),
        (
            lambda r: r.update(Gr_Liv_Area=True),
            "features.Gr_Liv_Area",
            "must be a number, got boolean",
        ),
        (lambda r: r.update(Gr_Liv_Area=-5), "features.Gr_Liv_Area", "must be >= 0, got -5"),
        (
            lambda r: r.update(Neighborhood=7),
            "features.Neighborhood",
            "must be a string, got number",
        ),
        (
            lambda r: r.update(Colour="red"),
            "features.Colour",
            "unknown field (not in the model's schema)",
        ),
    ],
    ids=[
        "missing",
        "string-for-number",
        "boolean-for-number",
        "below-minimum",
        "number-for-category",
        "unknown-field",
    ],
)
def test_bad_field_is_rejected_with_422_naming_it(
    client: FlaskClient,
    record: dict[str, Any],
    log_reader: LogReader,
    change: Any,
    field: str,
    problem: str,
) -> None:
    change(record)

    response = client.post("/predict", json={"features": record})

    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_error"
    assert _problems(response) == {field: problem}
    [row] = log_reader.requests()
    assert row["status_code"] == 422
    assert row["error"]["details"] == [{"field": field, "problem": problem}]
    assert orjson.loads(row["body"])["features"] == record
    assert log_reader.predictions() == []


@pytest.mark.parametrize(
    ("literal", "shown"), [(b"NaN", "NaN"), (b"Infinity", "Infinity"), (b"-Infinity", "-Infinity")]
)
def test_non_finite_number_is_rejected_naming_the_field(
    client: FlaskClient, record: dict[str, Any], log_reader: LogReader, literal: bytes, shown: str
) -> None:
    record["Lot_Area"] = 123456789
    body = orjson.dumps({"features": record}).replace(b"123456789", literal)

    response = client.post("/predict", data=body, content_type="application/json")

    assert response.status_code == 422
    assert _problems(response) == {"features.Lot_Area": f"must be a finite number, got {shown}"}
    assert log_reader.requests()[0]["status_code"] == 422


def test_every_bad_instance_of_a_batch_is_reported(
    client: FlaskClient, replay_records: list[dict[str, Any]]
) -> None:
    batch = [dict(r) for r in replay_records[:5]]
    batch[1]["Year_Built"] = "1990"
    batch[3].pop("Lot_Area")
    batch[4] = "not a house"

    response = client.post("/predict", json={"instances": batch})

    assert response.status_code == 422
    assert _problems(response) == {
        "instances[1].Year_Built": "must be a number, got string",
        "instances[3].Lot_Area": "missing",
        "instances[4]": "must be an object, got string",
    }


def test_unseen_category_is_accepted_and_predicted_as_missing(
    client: FlaskClient, record: dict[str, Any]
) -> None:
    record["Neighborhood"] = "Atlantis"

    response = client.post("/predict", json={"features": record})

    assert response.status_code == 200


def test_null_is_accepted_for_a_nullable_feature(
    client: FlaskClient, record: dict[str, Any]
) -> None:
    record["Garage_Area"] = None

    assert client.post("/predict", json={"features": record}).status_code == 200


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "bad_request"),
        (b"", "application/json", 400, "bad_request"),
        (b"[1, 2]", "application/json", 400, "bad_request"),
        (b'{"feature": {}}', "application/json", 400, "bad_request"),
        (b'{"features": {}, "instances": []}', "application/json", 400, "bad_request"),
        (b'{"instances": []}', "application/json", 422, "validation_error"),
        (b'{"instances": {}}', "application/json", 422, "validation_error"),
        (b'{"features": {}}', "text/plain", 415, "unsupported_media_type"),
    ],
    ids=[
        "malformed",
        "empty-body",
        "not-an-object",
        "wrong-envelope",
        "both-envelopes",
        "empty-batch",
        "instances-not-array",
        "not-json-content-type",
    ],
)
def test_malformed_request_gets_clear_4xx_and_is_logged(
    client: FlaskClient,
    log_reader: LogReader,
    body: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    response = client.post("/predict", data=body, content_type=content_type)

    assert response.status_code == status
    assert response.json["error"]["code"] == code
    assert response.json["error"]["message"]
    [row] = log_reader.requests()
    assert (row["status_code"], row["request_id"]) == (status, response.json["request_id"])


def test_body_over_the_limit_gets_413_and_is_logged_without_body(
    make_app: Any, record: dict[str, Any], read_log: Any
) -> None:
    app = make_app(max_request_bytes=4096)
    reader = read_log(app)

    response = app.test_client().post("/predict", json={"instances": [record] * 10})

    assert response.status_code == 413
    assert "4096" in response.json["error"]["message"]
    [row] = reader.requests()
    assert (row["status_code"], row["body"]) == (413, None)


def test_batch_over_the_instance_limit_gets_413(make_app: Any, record: dict[str, Any]) -> None:
    app = make_app(max_batch_size=3)

    response = app.test_client().post("/predict", json={"instances": [record] * 4})

    assert response.status_code == 413
    assert response.json["error"]["details"] == [
        {"field": "instances", "problem": "at most 3 instances"}
    ]


def test_no_registered_model_gives_503_on_predict_and_readyz(
    make_app: Any, tmp_path: Any, record: dict[str, Any]
) -> None:
    app = make_app(registry_path=tmp_path / "empty-registry")
    client = app.test_client()

    assert client.post("/predict", json={"features": record}).status_code == 503
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["model"]["ok"] is False
    assert client.get("/healthz").status_code == 200


def test_model_endpoint_describes_the_served_version(client: FlaskClient, ames: Dataset) -> None:
    body = client.get("/model").json

    assert body["version"] == "v1"
    meta = body["metadata"]
    # the served version is the session's model, trained on Ames up to 2007 (tests/conftest.py)
    training = ames.between(None, 200712)
    assert meta["training_window"]["rows"] == len(training.frame)
    assert {"mae", "rmse", "mape", "coverage"} <= set(meta["metrics"])
    schema = FeatureSchema.derive(training.frame, training.target, exclude=training.exclude)
    assert [f["name"] for f in meta["schema"]["features"]] == list(schema.names)


def _readyz_after_a_database_check(client: FlaskClient) -> Any:
    """``/readyz`` once the background database check has run (it never waits on it)."""

    def checked() -> bool:
        return client.get("/readyz").json["checks"]["database"]["checked_seconds_ago"] is not None

    assert wait_for(checked, timeout=30)
    return client.get("/readyz")


def test_readyz_reports_model_and_database(client: FlaskClient) -> None:
    response = _readyz_after_a_database_check(client)

    assert response.status_code == 200
    assert response.json["checks"]["model"] == {"ok": True, "version": "v1"}
    database = response.json["checks"]["database"]
    assert database["ok"] is True and database["reachable"] is True
    assert set(database) == {"ok", "reachable", "checked_seconds_ago"}  # no error: no key
    log = response.json["checks"]["prediction_log"]
    assert log["ok"] is True and log["writer_alive"] is True and log["writer_restarts"] == 0
    assert list(response.json) == ["status", "checks"] and response.json["status"] == "ready"


def test_readyz_fails_when_the_schema_is_not_migrated(make_app: Any, tmp_path: Any) -> None:
    app = make_app(database_url=f"sqlite:///{tmp_path / 'unmigrated.db'}")

    response = _readyz_after_a_database_check(app.test_client())

    assert response.status_code == 503
    assert "migrations" in response.json["checks"]["database"]["error"]


def test_readyz_stays_ready_while_the_database_is_unreachable_and_keeps_its_details_private(
    make_app: Any, record: dict[str, Any]
) -> None:
    port = free_port()
    app = make_app(database_url=f"postgresql+psycopg://nobody@127.0.0.1:{port}/none")
    client = app.test_client()

    response = _readyz_after_a_database_check(client)

    assert response.status_code == 200, response.json
    database = response.json["checks"]["database"]
    assert database["ok"] is True and database["reachable"] is False
    assert "127.0.0.1" not in response.get_data(as_text=True)  # unauthenticated endpoint
    assert str(port) not in response.get_data(as_text=True)
    assert client.post("/predict", json={"features": record}).status_code == 200


def test_metrics_count_requests_by_endpoint_and_status(
    client: FlaskClient, record: dict[str, Any]
) -> None:
    client.post("/predict", json={"features": record})
    client.post("/predict", json={"instances": [record, record, record]})
    client.post("/predict", data=b"nope", content_type="application/json")

    text = client.get("/metrics").get_data(as_text=True)

    assert (
        'watchkeeper_http_requests_total{endpoint="/predict",method="POST",status="200"} 2.0'
        in text
    )
    assert (
        'watchkeeper_http_requests_total{endpoint="/predict",method="POST",status="400"} 1.0'
        in text
    )
    assert 'watchkeeper_predictions_total{model_version="v1"} 4.0' in text
    assert "watchkeeper_predict_batch_size_count 2.0" in text
    assert 'watchkeeper_model_info{model_version="v1",task="regression"} 1.0' in text
    assert "watchkeeper_log_queue_depth" in text


def test_a_request_refused_before_its_oversized_body_is_read_keeps_its_status(
    client: FlaskClient, log_reader: LogReader
) -> None:
    limit = client.application.config["MAX_CONTENT_LENGTH"]
    response = client.post(
        "/predict",
        data=b"x" * (limit + 1),
        headers={"Content-Type": "text/plain"},
    )

    assert response.status_code == 415, response.get_data(as_text=True)
    assert response.headers["X-Request-ID"]
    (logged,) = log_reader.requests()
    assert (logged["status_code"], logged["body"]) == (415, None)


def test_a_full_log_journal_refuses_predictions_with_503_instead_of_answering_unlogged(
    app: Any, client: FlaskClient, record: dict[str, Any]
) -> None:
    log = services(app).prediction_log
    log._journal.max_bytes = 0  # noqa: SLF001 - as if the database had been away for long

    response = client.post("/predict", json={"features": record})

    assert response.status_code == 503
    assert response.json["error"]["code"] == "log_unavailable"
    assert response.json["request_id"] == response.headers["X-Request-ID"]
    samples = services(app).metrics.registry
    assert samples.get_sample_value("watchkeeper_log_entries_rejected_total") == 1


def test_records_shaped_like_the_training_data_are_accepted_with_a_column_it_had_empty(
    make_app: Any, tmp_path: Any, read_log: Any
) -> None:
    """A column with no value in training left the schema without a trace, and a
    client sending the training data's record shape (that column in it, null) got 422
    'unknown field'. It is an ignored column now: accepted with any value, not passed
    to the model, and described by /model and /openapi.json."""
    import jsonschema
    import numpy as np
    import pandas as pd

    from watchkeeper.registry import ModelRegistry
    from watchkeeper.training import TrainingParams, train

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200), "empty": np.nan})
    frame["y"] = frame["x"] * 2 + rng.normal(size=200)
    trained = train(Dataset("gaps", frame, "y"), params=TrainingParams(max_iter=5))
    ModelRegistry(tmp_path / "gaps").register(trained)
    app = make_app(registry_path=tmp_path / "gaps")
    client = app.test_client()

    single = client.post("/predict", json={"features": {"x": 0.5, "empty": None}})
    batch = client.post("/predict", json={"instances": [{"x": 0.5, "empty": "any"}] * 2})
    columns = client.post("/predict", json={"columns": {"x": [0.5], "empty": [None]}})
    unknown = client.post("/predict", json={"features": {"x": 0.5, "empty": None, "z": 1}})
    described = client.get("/model").json["metadata"]["schema"]
    spec = client.get("/openapi.json").json

    assert single.status_code == batch.status_code == columns.status_code == 200, single.json
    prediction = single.json["prediction"]
    assert [p["prediction"] for p in batch.json["predictions"]] == [prediction] * 2
    assert columns.json["predictions"][0]["prediction"] == prediction
    assert unknown.status_code == 422
    assert _problems(unknown) == {"features.z": "unknown field (not in the model's schema)"}
    assert described["ignored"] == [{"name": "empty", "reason": "no value in the training data"}]
    features = spec["components"]["schemas"]["Features"]
    assert (
        "Ignored (no value in the training data)" in features["properties"]["empty"]["description"]
    )
    assert features["required"] == ["x"]
    validator = jsonschema.Draft202012Validator({**features, "components": spec["components"]})
    validator.validate({"x": 0.5, "empty": None})
    validator.validate({"x": 0.5, "empty": [1]})
    assert not validator.is_valid({"x": 0.5, "z": 1})
    logged = [r["features"] for r in read_log(app).predictions()]
    assert logged == [{"x": 0.5}] * 4  # the ignored column is not logged


def test_records_shaped_like_the_training_data_are_accepted_with_its_period_and_excluded_columns(
    make_app: Any, tmp_path: Any, read_log: Any
) -> None:
    """The period column (``--period``) and the columns left out by ``--exclude`` are
    columns of the training data that are no features: a client sending the training
    data's record shape got 422 'unknown field' for each. They are ignored columns
    now, each with why, in every body form; the target stays unknown."""
    import jsonschema
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.ipc as ipc

    from serving.arrow_ipc import ARROW_STREAM
    from watchkeeper.dataset import tabular
    from watchkeeper.registry import ModelRegistry
    from watchkeeper.training import TrainingParams, train

    rng = np.random.default_rng(0)
    months = pd.date_range("2020-01-01", periods=20, freq="MS").strftime("%Y-%m-%d")
    frame = pd.DataFrame(
        {"month": np.repeat(months, 10), "site_id": np.arange(200), "x": rng.normal(size=200)}
    )
    frame["y"] = frame["x"] * 2 + rng.normal(size=200)
    dataset = tabular(frame, "sites", "y", period="month", exclude=("site_id",))
    trained = train(dataset, params=TrainingParams(max_iter=5))
    ModelRegistry(tmp_path / "sites").register(trained)
    app = make_app(registry_path=tmp_path / "sites")
    client = app.test_client()
    record = {"month": "2021-09-01", "site_id": 7, "x": 0.5}  # a row of the CSV, no target
    sink = pa.BufferOutputStream()
    table = pa.table({k: [v] for k, v in record.items()})
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)

    single = client.post("/predict", json={"features": record})
    batch = client.post("/predict", json={"instances": [record, {**record, "month": None}]})
    columns = client.post("/predict", json={"columns": {k: [v] for k, v in record.items()}})
    arrow = client.post("/predict", data=sink.getvalue().to_pybytes(), content_type=ARROW_STREAM)
    target = client.post("/predict", json={"features": {**record, "y": 1.0}})
    described = client.get("/model").json["metadata"]["schema"]
    spec = client.get("/openapi.json").json

    assert [r.status_code for r in (single, batch, columns, arrow)] == [200] * 4, single.json
    prediction = single.json["prediction"]
    assert [p["prediction"] for p in batch.json["predictions"]] == [prediction] * 2
    assert columns.json["predictions"][0]["prediction"] == prediction
    assert arrow.json["predictions"][0]["prediction"] == prediction
    assert target.status_code == 422
    assert _problems(target) == {"features.y": "unknown field (not in the model's schema)"}
    assert described["ignored"] == [
        {"name": "month", "reason": "the period column: orders rows in time"},
        {"name": "site_id", "reason": "excluded when training"},
    ]
    features = spec["components"]["schemas"]["Features"]
    assert "Ignored (excluded when training)" in features["properties"]["site_id"]["description"]
    assert "Ignored (the period column" in features["properties"]["month"]["description"]
    assert features["required"] == ["x"]
    validator = jsonschema.Draft202012Validator({**features, "components": spec["components"]})
    validator.validate(record)
    assert not validator.is_valid({**record, "y": 1.0})
    logged = [r["features"] for r in read_log(app).predictions()]
    assert logged == [{"x": 0.5}] * 5  # the ignored columns are not logged


def test_a_number_for_a_category_of_numbers_as_text_is_answered_and_logged_as_its_text(
    make_app: Any, tmp_path: Any, read_log: Any
) -> None:
    """A column of numbers training read as text ("1", "2", "3") refused a client's
    JSON number 1 with 422 'must be a string, got number'."""
    import numpy as np
    import pandas as pd

    from watchkeeper.registry import ModelRegistry
    from watchkeeper.training import TrainingParams, train

    rng = np.random.default_rng(0)
    rating = rng.choice(["1", "2", "3"], size=200)
    frame = pd.DataFrame({"x": rng.normal(size=200), "rating": rating})
    frame["y"] = frame["x"] + rating.astype(float) + rng.normal(size=200)
    trained = train(Dataset("ratings", frame, "y"), params=TrainingParams(max_iter=5))
    assert trained.model.schema["rating"].categories == ("1", "2", "3")
    ModelRegistry(tmp_path / "ratings").register(trained)
    app = make_app(registry_path=tmp_path / "ratings")
    client = app.test_client()

    as_text = client.post("/predict", json={"features": {"x": 0.5, "rating": "2"}})
    as_number = client.post("/predict", json={"features": {"x": 0.5, "rating": 2}})
    columns = client.post("/predict", json={"columns": {"x": [0.5], "rating": [2]}})
    unseen = client.post("/predict", json={"features": {"x": 0.5, "rating": 4}})

    assert as_number.status_code == columns.status_code == 200, as_number.json
    assert as_number.json["prediction"] == as_text.json["prediction"]
    assert columns.json["predictions"][0]["prediction"] == as_text.json["prediction"]
    assert unseen.status_code == 422
    assert _problems(unseen) == {"features.rating": "must be a string, got number"}
    logged = [r["features"] for r in read_log(app).predictions()]
    assert logged == [{"x": 0.5, "rating": "2"}] * 3


def test_a_float_for_a_category_of_decimals_as_text_is_answered_and_logged_as_its_text(
    make_app: Any, tmp_path: Any, read_log: Any
) -> None:
    """A column of decimal numbers training read as text ("0.5", "1.5") refused a
    client's JSON number 1.5, and an Arrow float column, with 422 'must be a string',
    where the number 1 for "1" was taken."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.ipc as ipc

    from serving.arrow_ipc import ARROW_STREAM
    from watchkeeper.registry import ModelRegistry
    from watchkeeper.training import TrainingParams, train

    rng = np.random.default_rng(0)
    size = rng.choice(["0.5", "1.5", "2.50"], size=200)
    frame = pd.DataFrame({"x": rng.normal(size=200), "size": size})
    frame["y"] = frame["x"] + size.astype(float) + rng.normal(size=200)
    trained = train(Dataset("sizes", frame, "y"), params=TrainingParams(max_iter=5))
    assert trained.model.schema["size"].categories == ("0.5", "1.5", "2.50")
    ModelRegistry(tmp_path / "sizes").register(trained)
    app = make_app(registry_path=tmp_path / "sizes")
    client = app.test_client()
    sink = pa.BufferOutputStream()
    table = pa.table({"x": [0.5], "size": [1.5]})
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)

    as_text = client.post("/predict", json={"features": {"x": 0.5, "size": "1.5"}})
    as_number = client.post("/predict", json={"features": {"x": 0.5, "size": 1.5}})
    batch = client.post("/predict", json={"instances": [{"x": 0.5, "size": 1.5}]})
    columns = client.post("/predict", json={"columns": {"x": [0.5], "size": [1.5]}})
    arrow = client.post("/predict", data=sink.getvalue().to_pybytes(), content_type=ARROW_STREAM)
    other = client.post("/predict", json={"features": {"x": 0.5, "size": 2.5}})

    assert [r.status_code for r in (as_number, batch, columns, arrow)] == [200] * 4, arrow.json
    prediction = as_text.json["prediction"]
    assert as_number.json["prediction"] == prediction
    for response in (batch, columns, arrow):
        assert response.json["predictions"][0]["prediction"] == prediction
    assert other.status_code == 422  # "2.50" is not how 2.5 is written
    assert _problems(other) == {"features.size": "must be a string, got number"}
    logged = [r["features"] for r in read_log(app).predictions()]
    assert logged == [{"x": 0.5, "size": "1.5"}] * 5
