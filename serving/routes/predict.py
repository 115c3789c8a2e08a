"""``POST /predict``: validate, predict, score OOD, respond. Logging happens after the
response is built (serving.request_log), off the database.

One record (``features``) is answered with one prediction; a batch, sent as records
(``instances``), as columns (``columns``) or as an Arrow IPC stream, with a list in
row order. A regression
model's prediction is a number with its interval; a classifier's a class label with
the class probabilities and its prediction set. Each prediction carries its OOD
score and flag (serving.ood_scoring), or ``"ood": null``."""

from __future__ import annotations

import numpy as np
from flask import Blueprint, Response, current_app, g

from serving.log_entry import prediction_id
from serving.metrics import ServingMetrics, observe_many
from serving.ood_scoring import OodScores, OodScoring
from serving.predict_body import validated_predict_body
from serving.response_bodies import ClassBatch, ResponseHead, SingleClass, SingleRegression
from serving.responses import (
    batch_predictions_response,
    class_prediction_items,
    json_response,
    non_finite_fields,
    non_finite_rows,
)
from serving.services import services
from serving.validation import ValidatedRequest
from watchkeeper.classification import Classifier, ClassPredictions
from watchkeeper.model import Model, Predictions
from watchkeeper.task import label_text

bp = Blueprint("predict", __name__)


@bp.post("/predict")
def predict() -> Response:
    """Predict for one record, or a batch sent as records or as columns.

    ``{"features": {...}}`` is answered with one prediction; ``{"instances": [...]}``
    and ``{"columns": {"Feature": [...], ...}}`` with ``predictions`` in row order. A
    regression model's prediction is a number with its interval, a classifier's a class
    with the class probabilities and its prediction set; each carries its OOD score
    and flag, or ``"ood": null``. Bad fields are named in the 422's details."""
    registered = services().model_store.get()
    model = registered.model
    g.model_version = model.version
    validated = validated_predict_body(
        model.schema, max_batch_size=current_app.config["WATCHKEEPER_MAX_BATCH_SIZE"]
    )
    predicted = model.predict(validated.model_input)
    ood = _ood(services().ood_scoring, model.version, validated)
    g.prediction_outcome = (validated, predicted)
    g.ood_scores = None if ood is None else ood.scores
    metrics = services().metrics
    head: ResponseHead = {"request_id": g.request_id, "model_version": model.version}
    if isinstance(model, Classifier):
        assert isinstance(predicted, ClassPredictions)
        _observe_classes(metrics, model.version, predicted)
        return _class_response(head, model, predicted, validated, ood)
    assert isinstance(model, Model) and not isinstance(predicted, ClassPredictions)
    # Checked once here for the metric, the response and the journal line.
    non_finite = non_finite_rows(predicted.value, predicted.lower, predicted.upper)
    g.predictions_finite = non_finite == 0
    _observe(metrics, model.version, predicted, non_finite)

    level = model.interval.level
    request_id = g.request_id
    if validated.single:
        value, lower, upper = (
            float(predicted.value[0]),
            float(predicted.lower[0]),
            float(predicted.upper[0]),
        )
        single: SingleRegression = {
            **head,
            "id": prediction_id(request_id, 0, single=True),
            "prediction": value,  # NaN and infinities: null, named in non_finite
            "interval": {"lower": lower, "upper": upper, "level": level},
            "ood": None
            if ood is None
            else {"score": float(ood.scores[0]), "flag": bool(ood.flags[0])},
            "non_finite": non_finite_fields(value, lower, upper) if non_finite else None,
        }
        return json_response(single)
    ids = [prediction_id(request_id, i, single=False) for i in range(validated.n_rows)]
    return batch_predictions_response(
        head, ids, predicted.value, predicted.lower, predicted.upper, level, ood, non_finite
    )


def _class_response(
    head: ResponseHead,
    model: Classifier,
    predicted: ClassPredictions,
    validated: ValidatedRequest,
    ood: OodScores | None,
) -> Response:
    request_id = head["request_id"]
    ids = [prediction_id(request_id, i, validated.single) for i in range(validated.n_rows)]
    items = class_prediction_items(ids, predicted, model.prediction_set.level, ood)
    if validated.single:
        single: SingleClass = {**head, **items[0]}
        return json_response(single)
    batch: ClassBatch = {**head, "predictions": items}
    return json_response(batch)


def _ood(scoring: OodScoring | None, version: str, validated: ValidatedRequest) -> OodScores | None:
    return None if scoring is None else scoring.score(version, validated.numbers)


def _observe(
    metrics: ServingMetrics, version: str, predicted: Predictions, non_finite: int
) -> None:
    values = predicted.value
    metrics.predictions.labels(version).inc(values.size)
    metrics.batch_size.observe(values.size)
    observe_many(metrics.prediction_value, values)  # finite values only
    if non_finite:
        metrics.non_finite_predictions.labels(version).inc(non_finite)


def _observe_classes(metrics: ServingMetrics, version: str, predicted: ClassPredictions) -> None:
    """Counts by predicted class; the value histogram is left alone (its buckets are
    a regression target's, and a class index is no quantity). A row whose
    probabilities are not all numbers has no class: counted as non-finite instead."""
    n = len(predicted.probabilities)
    metrics.predictions.labels(version).inc(n)
    metrics.batch_size.observe(n)
    index = predicted.index
    finite = predicted.finite
    non_finite = n - int(np.count_nonzero(finite))
    if non_finite:
        metrics.non_finite_predictions.labels(version).inc(non_finite)
        index = index[finite]
    counts = np.bincount(index, minlength=len(predicted.classes))
    for label, count in zip(predicted.classes, counts.tolist(), strict=True):
        if count:
            metrics.predicted_class.labels(version, label_text(label)).inc(count)
