"""A model may return NaN or an infinity for a valid record: a linear model on an extreme
but schema-valid value, or a target transform whose inverse is undefined there. Such a
prediction is still answered (200; JSON has no such numbers, so the value is ``null``
and ``non_finite`` names what it was), logged with its value on SQLite and PostgreSQL
(never set aside in the dead-letter file) and counted.

The model here is plain scikit-learn: a linear regression on a Box-Cox transformed
target (``TransformedTargetRegressor`` with ``PowerTransformer``). Its inverse transform
has no value for a far negative linear prediction (NaN), and an overflowing one is
infinite."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from flask import Flask
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PowerTransformer

from serving.services import services
from tests.processes import metric
from tests.serving.conftest import CLASSIFIER_FEATURES, LogReader, classification_frame
from watchkeeper.dataset import Dataset
from watchkeeper.encoding import TabularEncoder
from watchkeeper.model import IntervalSpec, Model
from watchkeeper.registry import ModelRegistry
from watchkeeper.schema import FeatureSchema
from watchkeeper.training import TrainedModel
from watchkeeper.training_params import DEFAULT_PARAMS
from watchkeeper.version_metadata import DataWindow, ModelMetrics

NAN_ROW = {"x1": -1000.0, "x2": 1.0, "colour": "red"}  # inverse Box-Cox undefined: NaN
INF_ROW = {"x1": 1e308, "x2": 1.0, "colour": "red"}  # the linear part overflows: inf
FINITE_ROW = {"x1": 0.5, "x2": 2.0, "colour": "blue"}
# The overflow is what makes the prediction infinite; the server runs with warnings as
# warnings, the test suite turns them into errors.
overflow_warns = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")


def _box_cox_linear_model() -> TrainedModel:
    frame = classification_frame(seed=1)[list(CLASSIFIER_FEATURES)]
    rng = np.random.default_rng(0)
    frame["price"] = 100 + 10 * frame["x1"] - 5 * frame["x2"] + rng.normal(size=len(frame))
    schema = FeatureSchema.derive(frame, "price")
    names = list(schema.names)
    pipeline = TransformedTargetRegressor(
        regressor=Pipeline(
            [("encode", TabularEncoder.for_schema(schema)), ("model", LinearRegression())]
        ),
        transformer=PowerTransformer(method="box-cox"),
    ).fit(frame[names], frame["price"])
    dataset = Dataset(name="synthetic-price", frame=frame, target="price")
    return TrainedModel(
        model=Model(pipeline=pipeline, interval=IntervalSpec(0.9, "log", 0.1), schema=schema),
        params=DEFAULT_PARAMS,
        training_window=DataWindow.model_validate(dataset.window()),
        validation_window=None,
        metrics=ModelMetrics(),
        reference=frame[names],
    )


@pytest.fixture(scope="session")
def box_cox_registry_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("box-cox-registry")
    ModelRegistry(root).register(_box_cox_linear_model())
    return root


@pytest.fixture
def box_cox_app(
    make_app: Callable[..., Flask], tmp_path: Path, box_cox_registry_template: Path
) -> Flask:
    registry = tmp_path / "box-cox-registry"
    shutil.copytree(box_cox_registry_template, registry)
    return make_app(registry_path=registry)


def _metrics(app: Flask) -> str:
    return app.test_client().get("/metrics").get_data(as_text=True)


@overflow_warns
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_non_finite_prediction_is_answered_as_null_naming_what_it_was(
    box_cox_app: Flask,
) -> None:
    client = box_cox_app.test_client()

    single = client.post("/predict", json={"features": NAN_ROW})
    batch = client.post("/predict", json={"instances": [NAN_ROW, INF_ROW, FINITE_ROW]})

    assert single.status_code == 200, single.json
    assert single.json["prediction"] is None
    assert single.json["interval"]["lower"] is None and single.json["interval"]["upper"] is None
    assert single.json["non_finite"] == {"prediction": "NaN", "lower": "NaN", "upper": "NaN"}
    assert batch.status_code == 200, batch.json
    nan, inf, finite = batch.json["predictions"]
    assert nan["prediction"] is None and nan["non_finite"]["prediction"] == "NaN"
    assert inf["prediction"] is None and inf["interval"]["upper"] is None
    assert inf["non_finite"] == {"prediction": "Infinity", "lower": "Infinity", "upper": "Infinity"}
    assert isinstance(finite["prediction"], float) and finite["non_finite"] is None
    assert finite["interval"]["lower"] < finite["prediction"] < finite["interval"]["upper"]
    for item in (nan, inf, finite):
        assert item["ood"]["score"] >= 0  # the OOD score stays a number (capped)
    spec = client.get("/openapi.json").json
    for response, shape in ((single, "SingleResponse"), (batch, "BatchResponse")):
        schema = {"$ref": f"#/components/schemas/{shape}", "components": spec["components"]}
        jsonschema.Draft202012Validator(schema).validate(response.json)
    text = _metrics(box_cox_app)
    assert metric(text, "watchkeeper_non_finite_predictions_total", model_version="v1") == 3
    assert metric(text, "watchkeeper_predictions_total", model_version="v1") == 4


@overflow_warns
def test_non_finite_predictions_are_logged_with_their_values_not_dead_lettered(
    box_cox_app: Flask, read_log: Callable[[Flask], LogReader]
) -> None:
    """On SQLite and PostgreSQL: every row stored, NaN as NaN and infinity as infinity,
    and nothing in the dead-letter file."""
    client = box_cox_app.test_client()
    single = client.post("/predict", json={"features": INF_ROW})
    batch = client.post("/predict", json={"instances": [NAN_ROW, INF_ROW, FINITE_ROW]})
    assert single.status_code == batch.status_code == 200

    rows = {r["prediction_id"]: r for r in read_log(box_cox_app).predictions()}

    assert len(rows) == 4
    stored_single = rows[single.json["id"]]
    assert stored_single["prediction"] == stored_single["upper"] == math.inf
    nan, inf, finite = (rows[item["id"]] for item in batch.json["predictions"])
    assert all(math.isnan(nan[c]) for c in ("prediction", "lower", "upper"))
    assert inf["prediction"] == inf["lower"] == inf["upper"] == math.inf
    assert finite["prediction"] == pytest.approx(batch.json["predictions"][2]["prediction"])
    assert all(r["ood_score"] is not None and math.isfinite(r["ood_score"]) for r in rows.values())
    text = _metrics(box_cox_app)
    assert metric(text, "watchkeeper_log_rows_dead_lettered_total") == 0
    assert not list(services(box_cox_app).settings.storage.spill_dir.glob("deadletter-*"))
