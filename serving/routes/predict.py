"""``POST /predict``: validate, predict, respond. Logging happens after the response
is built (serving.request_log), off the database."""

from __future__ import annotations

import numpy as np
from flask import Blueprint, Response, current_app, g

from serving.json_body import request_json
from serving.log_entry import prediction_id
from serving.metrics import ServingMetrics, observe_many
from serving.responses import json_response
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
    predicted = model.predict(validated.columns)
    g.prediction_outcome = (validated, predicted)
    _observe(current_app.extensions["watchkeeper.metrics"], model.version, predicted.value)

    level = model.interval.level
    values = predicted.value.tolist()
    lowers = predicted.lower.tolist()
    uppers = predicted.upper.tolist()
    request_id = g.request_id
    if validated.single:
        return json_response(
            {
                "request_id": request_id,
                "model_version": model.version,
                "id": prediction_id(request_id, 0, single=True),
                "prediction": values[0],
                "interval": {"lower": lowers[0], "upper": uppers[0], "level": level},
            }
        )
    return json_response(
        {
            "request_id": request_id,
            "model_version": model.version,
            "predictions": [
                {
                    "id": prediction_id(request_id, i, single=False),
                    "prediction": values[i],
                    "interval": {"lower": lowers[i], "upper": uppers[i], "level": level},
                }
                for i in range(len(values))
            ],
        }
    )


def _observe(metrics: ServingMetrics, version: str, values: np.ndarray) -> None:
    metrics.predictions.labels(version).inc(values.size)
    metrics.batch_size.observe(values.size)
    observe_many(metrics.prediction_value, values)
