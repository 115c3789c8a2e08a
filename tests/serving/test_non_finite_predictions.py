"""A model may return NaN or an infinity for a valid record: a linear model on an extreme
but schema-valid value, or a target transform whose inverse is undefined there. Such a
prediction is still answered (200; JSON has no such numbers, so the value is ``null``
and ``non_finite`` names what it was), logged with its value on SQLite and PostgreSQL
(never set aside in the dead-letter file) and counted.

The model here is plain scikit-learn: a linear regression on a Box-Cox transformed
target (``TransformedTargetRegressor`` with ``PowerTransformer``). Its inverse transform
has no value for a far negative linear prediction (NaN), and an overflowing one is
infinite.

A classifier's counterpart is a multinomial logistic regression (plain scikit-learn too):
on a far out value two classes' decision values overflow to +inf and -inf, and the
softmax of that is NaN for every class. Its prediction is answered with no class
(``prediction`` and the set's labels ``null``), the probabilities ``null`` and named in
``non_finite``; logged with the class NaN (the probabilities JSON holds ``null``) and
counted alike."""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pytest
from flask import Flask
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PowerTransformer

from serving.responses import class_prediction_items
from serving.services import services
from tests.processes import metric
from tests.serving.conftest import CLASSIFIER_FEATURES, LogReader, classification_frame
from watchkeeper.classification import Classifier, ClassPredictions, PredictionSetSpec
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


# -- a classifier ----------------------------------------------------------------------

NAN_PROBABILITIES_ROW = {"x1": 1e308, "x2": 1.0, "colour": "red"}  # softmax(inf, -inf, ...)
CLASS_NAMES = {"high": "NaN", "low": "NaN", "mid": "NaN"}


def _logistic_classifier(trained: TrainedModel) -> TrainedModel:
    """The three-class classifier (low/mid/high) with a multinomial logistic regression
    in place of its trees; its prediction set and confidence map are kept."""
    assert isinstance(trained.model, Classifier)
    frame = classification_frame(seed=1)
    schema = trained.model.schema
    pipeline = Pipeline(
        [("encode", TabularEncoder.for_schema(schema)), ("model", LogisticRegression())]
    ).fit(frame[list(schema.names)], frame[schema.target])
    assert tuple(pipeline.classes_) == trained.model.classes
    return dataclasses.replace(trained, model=dataclasses.replace(trained.model, pipeline=pipeline))


@pytest.fixture(scope="session")
def logistic_registry_template(
    tmp_path_factory: pytest.TempPathFactory, classifier_trained: TrainedModel
) -> Path:
    root = tmp_path_factory.mktemp("logistic-registry")
    ModelRegistry(root).register(_logistic_classifier(classifier_trained))
    return root


@pytest.fixture
def logistic_app(
    make_app: Callable[..., Flask], tmp_path: Path, logistic_registry_template: Path
) -> Flask:
    registry = tmp_path / "logistic-registry"
    shutil.copytree(logistic_registry_template, registry)
    return make_app(registry_path=registry)


@overflow_warns
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_classifiers_nan_probabilities_are_answered_with_no_class(logistic_app: Flask) -> None:
    client = logistic_app.test_client()

    single = client.post("/predict", json={"features": NAN_PROBABILITIES_ROW})
    batch = client.post("/predict", json={"instances": [NAN_PROBABILITIES_ROW, FINITE_ROW]})

    assert single.status_code == 200, single.json
    assert single.json["prediction"] is None
    assert single.json["probabilities"] == dict.fromkeys(CLASS_NAMES)
    assert single.json["prediction_set"] == {"labels": None, "level": 0.9}
    assert single.json["non_finite"] == {"probabilities": CLASS_NAMES}
    assert batch.status_code == 200, batch.json
    nan, finite = batch.json["predictions"]
    assert nan["prediction"] is None and nan["non_finite"] == {"probabilities": CLASS_NAMES}
    assert nan["prediction_set"]["labels"] is None
    assert finite["prediction"] in CLASS_NAMES and finite["non_finite"] is None
    assert finite["prediction"] in finite["prediction_set"]["labels"]
    assert sum(finite["probabilities"].values()) == pytest.approx(1)
    spec = client.get("/openapi.json").json
    for response, shape in ((single, "SingleResponse"), (batch, "BatchResponse")):
        schema = {"$ref": f"#/components/schemas/{shape}", "components": spec["components"]}
        jsonschema.Draft202012Validator(schema).validate(response.json)
    text = _metrics(logistic_app)
    assert metric(text, "watchkeeper_non_finite_predictions_total", model_version="v1") == 2
    assert metric(text, "watchkeeper_predictions_total", model_version="v1") == 3
    by_class = [
        metric(text, "watchkeeper_predicted_class_total", model_version="v1", label=label)
        for label in CLASS_NAMES
    ]
    assert sum(n or 0 for n in by_class) == 1  # no class counted for the NaN ones


@overflow_warns
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_a_classifiers_nan_probabilities_are_logged_with_the_class_nan(
    logistic_app: Flask, read_log: Callable[[Flask], LogReader]
) -> None:
    """On SQLite and PostgreSQL: the class (index) is stored as NaN, the probabilities
    as null, and nothing goes to the dead-letter file."""
    client = logistic_app.test_client()
    single = client.post("/predict", json={"features": NAN_PROBABILITIES_ROW})
    batch = client.post("/predict", json={"instances": [NAN_PROBABILITIES_ROW, FINITE_ROW]})
    assert single.status_code == batch.status_code == 200

    rows = {r["prediction_id"]: r for r in read_log(logistic_app).predictions()}

    assert len(rows) == 3
    for stored in (rows[single.json["id"]], rows[batch.json["predictions"][0]["id"]]):
        assert all(math.isnan(stored[c]) for c in ("prediction", "lower", "upper"))
        assert stored["probabilities"] == [None, None, None]
    finite = rows[batch.json["predictions"][1]["id"]]
    classes = list(CLASS_NAMES)
    assert finite["prediction"] == classes.index(batch.json["predictions"][1]["prediction"])
    assert all(isinstance(p, float) for p in finite["probabilities"])
    text = _metrics(logistic_app)
    assert metric(text, "watchkeeper_log_rows_dead_lettered_total") == 0
    assert not list(services(logistic_app).settings.storage.spill_dir.glob("deadletter-*"))


def test_one_non_finite_probability_leaves_its_row_without_a_class() -> None:
    """Not only an all-NaN row: one NaN or infinite probability is enough (an argmax
    over it would pick that class), and the other probabilities are answered as they
    are."""
    probabilities = np.array([[math.nan, 0.6, 0.4], [math.inf, 0.0, 0.0], [0.2, 0.7, 0.1]])
    spec = PredictionSetSpec(level=0.9, threshold=0.3)
    predicted = ClassPredictions(("a", "b", "c"), probabilities, spec.members(probabilities))

    items = orjson.loads(
        orjson.dumps(class_prediction_items(["p0", "p1", "p2"], predicted, 0.9, None))
    )

    assert predicted.finite.tolist() == [False, False, True]
    assert items[0]["prediction"] is None and items[1]["prediction"] is None
    assert items[0]["probabilities"] == {"a": None, "b": 0.6, "c": 0.4}
    assert items[0]["non_finite"] == {"probabilities": {"a": "NaN"}}
    assert items[1]["non_finite"] == {"probabilities": {"a": "Infinity"}}
    assert (
        items[0]["prediction_set"] == items[1]["prediction_set"] == {"labels": None, "level": 0.9}
    )
    assert items[2]["prediction"] == "b" and items[2]["non_finite"] is None
    assert items[2]["prediction_set"]["labels"] == ["b"]
