"""The OpenAPI 3.1 document of the prediction server.

The ``Features`` schema is built from the served model's feature schema, so the
document describes exactly what validation accepts; tests validate real responses
against the response schemas here. The prediction and feedback shapes are the served
model's task's: a number with an interval (regression) or a class with its
probabilities and prediction set (classification, its classes named); with no model
loaded, a prediction is either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from serving.feedback import MAX_ID, MAX_LABEL
from watchkeeper.schema import Feature, FeatureSchema
from watchkeeper.task import Task, label_text

NO_NUL = "^[^\\u0000]*$"
"""Strings stored as text: PostgreSQL's text cannot hold U+0000."""
_LABEL_TYPES = ["string", "integer", "number", "boolean"]

_ERROR_RESPONSES = {
    "400": "Body is not UTF-8 JSON of Unicode text (a lone surrogate escape is named by its "
    "path), or not shaped like the envelope.",
    "401": "No bearer token.",
    "403": "Token refused, or admin endpoints disabled.",
    "409": "Feedback for a prediction already exists, or a rollback was refused.",
    "413": "Body larger than the configured limit (with a Content-Length or chunked), or "
    "more instances or rows than the batch limit.",
    "415": "Content-Type is not application/json.",
    "422": "One or more fields break the model's feature schema.",
    "503": "No model is loaded (model_unavailable), or the database is down "
    "(database_unavailable: nothing was stored, retry).",
}


# What the webhook reads of Alertmanager's payload; the rest is kept as evidence.
_ALERTMANAGER = {
    "type": "object",
    "properties": {
        "alerts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                },
                "required": ["labels"],
            },
        }
    },
    "required": ["alerts"],
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _admin_post(
    operation: str, summary: str, fields: dict[str, Any], responses: dict[str, Any]
) -> dict[str, Any]:
    """An admin operation: bearer auth and an optional JSON object body."""
    return {
        "post": {
            "operationId": operation,
            "summary": summary,
            "security": [{"bearer": []}],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {"schema": {"type": "object", "properties": fields}}
                },
            },
            "responses": responses,
        }
    }


def _feature_schema(feature: Feature) -> dict[str, Any]:
    kind = "number" if feature.is_numeric else "string"
    schema: dict[str, Any] = {"type": [kind, "null"] if feature.nullable else kind}
    if feature.is_numeric:
        if feature.minimum is not None:
            schema["minimum"] = feature.minimum
        if feature.maximum is not None:
            schema["maximum"] = feature.maximum
        if feature.observed_min is not None:
            schema["description"] = (
                f"Seen in training: {feature.observed_min:g} to {feature.observed_max:g}."
            )
    elif feature.allow_unknown:
        schema["examples"] = list(feature.categories[:10])
        schema["description"] = (
            f"Seen in training: {', '.join(feature.categories)}. Other values are accepted "
            "and treated as missing."
        )
    else:
        schema["enum"] = [*feature.categories, *([None] if feature.nullable else [])]
    return schema


def _features(schema: FeatureSchema | None) -> dict[str, Any]:
    if schema is None:
        return {"type": "object", "description": "No model is loaded."}
    return {
        "type": "object",
        "properties": {f.name: _feature_schema(f) for f in schema.features},
        "required": list(schema.names),
        "additionalProperties": False,
    }


def _columns(schema: FeatureSchema | None, max_batch_size: int) -> dict[str, Any]:
    """One array per feature; equal lengths are checked by the server (JSON Schema
    cannot say it)."""
    description = (
        "One array per feature, all of the same length: row i is the i-th value of "
        "every array. Predictions come back in row order; bad values are named "
        "columns.Feature[i]."
    )
    if schema is None:
        return {"type": "object", "description": description}
    return {
        "type": "object",
        "description": description,
        "properties": {
            f.name: {
                "type": "array",
                "items": _feature_schema(f),
                "minItems": 1,
                "maxItems": max_batch_size,
            }
            for f in schema.features
        },
        "required": list(schema.names),
        "additionalProperties": False,
    }


def _label(classes: Sequence[Any]) -> dict[str, Any]:
    """A class label: one of the served classifier's, or any JSON scalar."""
    return {"enum": list(classes)} if classes else {"type": _LABEL_TYPES}


def _class_item(classes: Sequence[Any]) -> dict[str, Any]:
    probability = {"type": "number", "minimum": 0, "maximum": 1}
    probabilities: dict[str, Any] = {
        "type": "object",
        "description": "Each class's probability, keyed by the class label as text "
        '(1 and true become "1" and "True"); they sum to 1.',
        "additionalProperties": probability,
    }
    if classes:
        texts = [label_text(c) for c in classes]
        probabilities["properties"] = {text: probability for text in texts}
        probabilities["required"] = texts
        probabilities["additionalProperties"] = False
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "Prediction id, used for feedback."},
            "prediction": {
                **_label(classes),
                "description": "The predicted class: the most probable one.",
            },
            "probabilities": probabilities,
            "prediction_set": _ref("PredictionSet"),
            "ood": _ood_field(),
        },
        "required": ["id", "prediction", "probabilities", "prediction_set", "ood"],
    }


def _ood_field() -> dict[str, Any]:
    return {
        "oneOf": [_ref("Ood"), {"type": "null"}],
        "description": "How far the record is from the model's reference data; "
        "null when the served version has no OOD reference or "
        "WATCHKEEPER_OOD_IN_RESPONSE is off.",
    }


def _single_response(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "request_id": {"type": "string"},
            "model_version": {"type": "string"},
            **item["properties"],
        },
        "required": ["request_id", "model_version", *item["required"]],
    }


def _for_task(
    task: Task | None,
    regression: dict[str, Any],
    classification: dict[str, Any],
    either: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The served task's schema; with no model loaded, ``either`` (default: both)."""
    if task is Task.REGRESSION:
        return regression
    if task is Task.CLASSIFICATION:
        return classification
    return {"oneOf": either or [regression, classification]}


def _feedback_actual(task: Task | None) -> dict[str, Any]:
    if task is Task.CLASSIFICATION:
        return {
            "type": _LABEL_TYPES,
            "minLength": 1,
            "maxLength": MAX_LABEL,
            "pattern": NO_NUL,
            # a number's text must fit a label too
            "exclusiveMinimum": -1e254,
            "exclusiveMaximum": 1e254,
            "description": "The true class (a string, an integer or a boolean; matched by "
            'its text, so 1 and "1" are one class). A class the model does not know is '
            "stored too, and the response says known_class false.",
        }
    return {"type": "number", "description": "The true value."}


def _components(
    schema: FeatureSchema | None,
    max_batch_size: int,
    task: Task | None = None,
    classes: Sequence[Any] = (),
) -> dict[str, Any]:
    interval = {
        "type": "object",
        "properties": {
            "lower": {"type": "number"},
            "upper": {"type": "number"},
            "level": {"type": "number", "description": "Nominal coverage, e.g. 0.9."},
        },
        "required": ["lower", "upper", "level"],
    }
    item = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "Prediction id, used for feedback."},
            "prediction": {"type": "number"},
            "interval": _ref("Interval"),
            "ood": _ood_field(),
        },
        "required": ["id", "prediction", "interval", "ood"],
    }
    class_item = _class_item(classes)
    prediction_set = {
        "type": "object",
        "description": "The classes a conformal prediction set holds: it contains the "
        "true class with probability level (nominal), and always the predicted class.",
        "properties": {
            "labels": {"type": "array", "items": _label(classes), "minItems": 1},
            "level": {"type": "number", "description": "Nominal coverage, e.g. 0.9."},
        },
        "required": ["labels", "level"],
    }
    accepted = {
        "accepted": {"type": "integer"},
        "unmatched": {
            "type": "integer",
            "description": "Ids whose prediction is not in the log yet: stored, joined "
            "when it arrives, counted as orphans if it never does.",
        },
        "received_at": {"type": "string"},
    }
    if task is Task.CLASSIFICATION:
        accepted["known_class"] = {
            "type": "boolean",
            "description": "Every label names one of the served model's classes.",
        }
    ood = {
        "type": "object",
        "properties": {
            "score": {
                "type": "number",
                "minimum": 0,
                "description": "Mahalanobis distance of the numeric features to the model "
                "version's reference sample (the monitor's score); 1e100 when the distance "
                "overflows.",
            },
            "flag": {
                "type": "boolean",
                "description": "score is above the reference's own WATCHKEEPER_OOD_PERCENTILE "
                "percentile: out of distribution.",
            },
        },
        "required": ["score", "flag"],
    }
    return {
        "Features": _features(schema),
        "SingleRequest": {
            "type": "object",
            "properties": {"features": _ref("Features")},
            "required": ["features"],
            "additionalProperties": False,
        },
        "BatchRequest": {
            "type": "object",
            "properties": {
                "instances": {
                    "type": "array",
                    "items": _ref("Features"),
                    "minItems": 1,
                    "maxItems": max_batch_size,
                }
            },
            "required": ["instances"],
            "additionalProperties": False,
        },
        "ColumnsRequest": {
            "type": "object",
            "description": "A batch as columns: the cheapest form for large batches "
            "(no per-record work in the server).",
            "properties": {"columns": _columns(schema, max_batch_size)},
            "required": ["columns"],
            "additionalProperties": False,
        },
        "Interval": interval,
        "PredictionSet": prediction_set,
        "Ood": ood,
        "RegressionPrediction": item,
        "ClassPrediction": class_item,
        "PredictionItem": _for_task(
            task, item, class_item, either=[_ref("RegressionPrediction"), _ref("ClassPrediction")]
        ),
        "SingleResponse": _for_task(task, _single_response(item), _single_response(class_item)),
        "BatchResponse": {
            "type": "object",
            "properties": {
                "request_id": {"type": "string"},
                "model_version": {"type": "string"},
                "predictions": {"type": "array", "items": _ref("PredictionItem")},
            },
            "required": ["request_id", "model_version", "predictions"],
        },
        "FeedbackItem": {
            "type": "object",
            "properties": {
                "id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_ID,
                    "pattern": NO_NUL,
                    "description": "A prediction id from /predict; the ids of a batch are "
                    "distinct.",
                },
                "actual": _feedback_actual(task),
            },
            "required": ["id", "actual"],
            "additionalProperties": False,
        },
        "FeedbackBatch": {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "items": _ref("FeedbackItem"),
                    "minItems": 1,
                    "maxItems": max_batch_size,
                }
            },
            "required": ["items"],
            "additionalProperties": False,
        },
        "FeedbackAccepted": {
            "type": "object",
            "properties": accepted,
            "required": list(accepted),
        },
        "Queued": {
            "type": "object",
            "properties": {"status": {"const": "queued"}, "request_id": {"type": "integer"}},
            "required": ["status", "request_id"],
        },
        "AlertOutcome": {
            "type": "object",
            "properties": {
                "status": {"enum": ["ignored", "duplicate"]},
                "reason": {"type": "string"},
            },
            "required": ["status"],
        },
        "RolledBack": {
            "type": "object",
            "properties": {"previous": {"type": ["string", "null"]}, "current": {"type": "string"}},
            "required": ["previous", "current"],
        },
        "Error": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "details": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "field": {"type": "string"},
                                    "problem": {"type": "string"},
                                },
                                "required": ["field", "problem"],
                            },
                        },
                    },
                    "required": ["code", "message"],
                },
                "request_id": {"type": ["string", "null"]},
            },
            "required": ["error", "request_id"],
        },
        "Health": {
            "type": "object",
            "properties": {"status": {"type": "string"}},
            "required": ["status"],
        },
        "Readiness": {
            "type": "object",
            "properties": {
                "status": {"enum": ["ready", "degraded", "not_ready"]},
                "checks": {"type": "object"},
            },
            "required": ["status", "checks"],
        },
        "ModelInfo": {
            "type": "object",
            "properties": {"version": {"type": "string"}, "metadata": {"type": "object"}},
            "required": ["version", "metadata"],
        },
    }


def openapi_document(
    schema: FeatureSchema | None,
    *,
    max_batch_size: int,
    task: Task | None = None,
    classes: Sequence[Any] = (),
) -> dict[str, Any]:
    """The document for a served model of ``task`` (with ``classes``, a classifier's),
    or for no model (``task`` None)."""
    description = {
        Task.REGRESSION: "Predictions with a prediction interval",
        Task.CLASSIFICATION: "Class predictions with class probabilities and a prediction set",
        None: "Predictions with a prediction interval (regression) or class probabilities "
        "and a prediction set (classification)",
    }[task]
    errors = {code: _json(_ref("Error"), text) for code, text in _ERROR_RESPONSES.items()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Watchkeeper prediction server",
            "version": "1",
            "description": f"{description}; every request is logged.",
        },
        "paths": {
            "/predict": {
                "post": {
                    "operationId": "predict",
                    "summary": "Predict for one record, or a batch sent as records or as columns.",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        _ref("SingleRequest"),
                                        _ref("BatchRequest"),
                                        _ref("ColumnsRequest"),
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            {"oneOf": [_ref("SingleResponse"), _ref("BatchResponse")]},
                            "Predictions; the X-Request-ID header repeats request_id.",
                        ),
                        **{k: v for k, v in errors.items() if k not in ("401", "403", "409")},
                    },
                }
            },
            "/feedback": {
                "post": {
                    "operationId": "feedback",
                    "summary": "Record the actual value (or class) of predictions, logged "
                    "yet or not (all or nothing).",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"oneOf": [_ref("FeedbackItem"), _ref("FeedbackBatch")]}
                            }
                        },
                    },
                    "responses": {
                        "200": _json(_ref("FeedbackAccepted"), "Stored."),
                        **{k: v for k, v in errors.items() if k not in ("401", "403")},
                    },
                }
            },
            "/admin/retrain": _admin_post(
                "adminRetrain",
                "Queue a retraining job (the worker runs it).",
                {"reason": {"type": ["string", "null"], "pattern": NO_NUL}},
                {
                    "202": _json(_ref("Queued"), "Queued."),
                    **{k: errors[k] for k in ("400", "401", "403", "413", "503")},
                },
            ),
            "/admin/rollback": _admin_post(
                "adminRollback",
                "Point current at a version (default: the previous usable one). A version"
                " retraining rejected, or that failed, is refused (409) unless force is true.",
                {"version": {"type": ["string", "null"]}, "force": {"type": "boolean"}},
                {
                    "200": _json(_ref("RolledBack"), "Current moved."),
                    **{k: errors[k] for k in ("400", "401", "403", "409", "413")},
                },
            ),
            "/alerts": {
                "post": {
                    "operationId": "alertmanagerWebhook",
                    "summary": "Alertmanager webhook: configured firing alerts queue one retrain "
                    "per episode; repeats are acknowledged as duplicates.",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ALERTMANAGER}},
                    },
                    "responses": {
                        "200": _json(_ref("AlertOutcome"), "Ignored or duplicate."),
                        "202": _json(_ref("Queued"), "Queued."),
                        **{k: errors[k] for k in ("400", "401", "403", "413", "503")},
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness: the process answers.",
                    "responses": {"200": _json(_ref("Health"), "Alive.")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness: a model is loaded and the database schema is current.",
                    "responses": {
                        "200": _json(
                            _ref("Readiness"),
                            "Ready; `degraded` while serving another version than CURRENT "
                            "names, because that one would not load.",
                        ),
                        "503": _json(_ref("Readiness"), "Not ready; checks say why."),
                    },
                }
            },
            "/model": {
                "get": {
                    "operationId": "model",
                    "summary": "The served model version and its registry metadata.",
                    "responses": {
                        "200": _json(_ref("ModelInfo"), "Current model."),
                        "503": errors["503"],
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics.",
                    "responses": {
                        "200": {
                            "description": "Text exposition format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document.",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document.")},
                }
            },
        },
        "components": {
            "schemas": _components(schema, max_batch_size, task, classes),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
