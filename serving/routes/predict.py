"""``POST /predict``: validate, predict, respond. Logging happens after the response
is built (serving.request_log), off the database.

One record (``features``) is answered with one prediction; a batch, sent as records
(``instances``) or as columns (``columns``), with a list in row order."""

from __future__ import annotations

import numpy as np
from flask import Blueprint, Response, current_app, g

from serving.json_body import request_json
from serving.log_entry import prediction_id
from serving.metrics import ServingMetrics, observe_many
from serving.responses import batch_predictions_response, json_response
from serving.validation import validate_predict_payload

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
    g.prediction_outcome = (validated, predicted)
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
    )


def _observe(metrics: ServingMetrics, version: str, values: np.ndarray) -> None:
    metrics.predictions.labels(version).inc(values.size)
    metrics.batch_size.observe(values.size)
    observe_many(metrics.prediction_value, values)
