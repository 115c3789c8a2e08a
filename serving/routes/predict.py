"""``POST /predict``: validate, predict, score OOD, respond. Logging happens after the
response is built (serving.request_log), off the database.

One record (``features``) is answered with one prediction; a batch, sent as records
(``instances``) or as columns (``columns``), with a list in row order. Each prediction
carries its OOD score and flag (serving.ood_scoring), or ``"ood": null``."""

from __future__ import annotations

import numpy as np
from flask import Blueprint, Response, current_app, g

from serving.json_body import request_json
from serving.log_entry import prediction_id
from serving.metrics import ServingMetrics, observe_many
from serving.ood_scoring import OodScores, OodScoring
from serving.responses import batch_predictions_response, json_response
from serving.validation import ValidatedRequest, validate_predict_payload

bp = Blueprint("predict", __name__)


@bp.post("/predict")
def predict() -> Response:
    registered = current_app.extensions["watchkeeper.model_store"].get()
    model = registered.model
    g.model_version = model.version
    payload = request_json()
    validated = validate_predict_payload(
        payload, model.schema, max_batch_size=current_app.config["WATCHKEEPER_MAX_BATCH_SIZE"]
    )
    predicted = model.predict(validated.model_input)
    ood = _ood(current_app.extensions["watchkeeper.ood_scoring"], model.version, validated)
    g.prediction_outcome = (validated, predicted)
    g.ood_scores = None if ood is None else ood.scores
    _observe(current_app.extensions["watchkeeper.metrics"], model.version, predicted.value)

    level = model.interval.level
    request_id = g.request_id
    if validated.single:
        return json_response(
            {
                "request_id": request_id,
                "model_version": model.version,
                "id": prediction_id(request_id, 0, single=True),
                "prediction": float(predicted.value[0]),
                "interval": {
                    "lower": float(predicted.lower[0]),
                    "upper": float(predicted.upper[0]),
                    "level": level,
                },
                "ood": None
                if ood is None
                else {"score": float(ood.scores[0]), "flag": bool(ood.flags[0])},
            }
        )
    ids = [prediction_id(request_id, i, single=False) for i in range(validated.n_rows)]
    return batch_predictions_response(
        {"request_id": request_id, "model_version": model.version},
        ids,
        predicted.value,
        predicted.lower,
        predicted.upper,
        level,
        ood,
    )


def _ood(scoring: OodScoring | None, version: str, validated: ValidatedRequest) -> OodScores | None:
    return None if scoring is None else scoring.score(version, validated.numbers)


def _observe(metrics: ServingMetrics, version: str, values: np.ndarray) -> None:
    metrics.predictions.labels(version).inc(values.size)
    metrics.batch_size.observe(values.size)
    observe_many(metrics.prediction_value, values)
