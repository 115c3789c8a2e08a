"""The OpenAPI 3.1 document of the prediction server.

The fixed shapes (errors, feedback's answer, admin, alerts, health, the model's
metadata, a regression prediction) are the pydantic models of :mod:`serving.api_models`,
which the routes answer with. What depends on the served model is built here from it:
the ``Features`` schema from its feature schema, so the document describes exactly what
validation accepts, and the prediction and feedback shapes of its task (a number with
an interval, or a class with its probabilities and prediction set, its classes named;
with no model loaded, a prediction is either). Each operation's summary and
description are its view function's docstring, next to the route.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

from pydantic import BaseModel

from serving import api_models
from serving.api_models import NO_NUL, STATIC_MODELS, Answer
from serving.arrow_ipc import ARROW_STREAM
from serving.feedback import MAX_ID, MAX_LABEL
from serving.routes import admin, feedback, health, metrics, model_info, predict
from serving.routes import openapi as openapi_route
from watchkeeper.prediction_ids import PREDICTION_ID_PATTERN
from watchkeeper.schema import Feature, FeatureSchema, IgnoredColumn
from watchkeeper.task import Task, label_text

OpenApiJson = dict[str, Any]
"""A piece of the OpenAPI document (a schema, an operation, a media type): free-form JSON,
served as is at /openapi.json and checked against the server by the property tests."""

__all__ = ["NO_NUL", "openapi_document"]

_REF = "#/components/schemas/{model}"
_LABEL_TYPES = ["string", "integer", "number", "boolean"]
_OOD_FIELD = api_models.RegressionPrediction.model_json_schema(ref_template=_REF)["properties"][
    "ood"
]

_ERROR_RESPONSES = {
    400: "Body is not UTF-8 JSON of Unicode text (a lone surrogate escape is named by its "
    "path), or not shaped like the envelope; or not an uncompressed Arrow IPC stream.",
    401: "No bearer token.",
    403: "Token refused, or admin endpoints disabled.",
    409: "Other feedback for a prediction already exists (the same label again is "
    "accepted), or a rollback was refused.",
    413: "Body larger than the configured limit (with a Content-Length or chunked), or "
    "more instances or rows than the batch limit.",
    415: "Content-Type is not application/json (nor, for /predict, an Arrow IPC stream), "
    "a JSON body's charset is not UTF-8, or the body has a Content-Encoding other than "
    "identity (answered with Accept-Encoding: identity).",
    422: "One or more fields break the model's feature schema, or a number is too large "
    "(one of more than 4,300 digits is not read at all).",
    503: "No model is loaded (model_unavailable), or the database is down, refuses "
    "writes or is busy (database_unavailable: nothing was stored, retry after "
    "Retry-After); one that did not answer in time may have stored it, as the message "
    "says, and a retry is safe.",
}
# What an error status also means for /feedback, after the shared text.
_FEEDBACK_ERRORS = {
    422: "For /feedback: a malformed id, an id twice, or a label the version that made "
    "its prediction cannot take (named, with that version and its task). With the "
    "database down, which version made a prediction is unknown: a label no registered "
    "version's task takes (a string when every version is a regression model; null "
    "whatever they are) is still 422 naming the field, as are malformed and repeated ids.",
    503: "For /feedback also a label for a prediction of a version whose metadata cannot "
    "be read (model_unavailable, its id named); and, with the database down "
    "(database_unavailable), a body whose labels some registered version's task could "
    "take (one holding a label none takes is 422).",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _model_schemas(models: Sequence[type[BaseModel]]) -> OpenApiJson:
    """The models' JSON Schemas (and those they use) by class name: responses as they
    are written, request bodies as they are read. Copies: the caller owns them."""
    schemas: OpenApiJson = {}
    for model in models:
        schemas.update(copy.deepcopy(_schemas_of(model)))
    return schemas


@functools.cache
def _schemas_of(model: type[BaseModel]) -> OpenApiJson:
    """``model``'s JSON Schema and those it uses, by class name, built once per class:
    pydantic rebuilt them for every document, 40 ms of a document's 42 (the document
    is built at every request, for the model served then)."""
    mode = "serialization" if issubclass(model, Answer) else "validation"
    schema = model.model_json_schema(ref_template=_REF, mode=mode)
    schemas: OpenApiJson = schema.pop("$defs", {})
    schemas[model.__name__] = schema
    return schemas


def _feature_schema(feature: Feature) -> OpenApiJson:
    kind = "number" if feature.is_numeric else "string"
    schema: OpenApiJson = {"type": [kind, "null"] if feature.nullable else kind}
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
    if not feature.is_numeric and (feature.integer_categories or feature.decimal_categories):
        # a column of numbers training read as text: a number is taken as its category
        described = schema.pop("description", "")
        # a set: 1 and 1.0 (for "1" and "1.0") are one value in JSON Schema's enum
        numbers = sorted({*feature.integer_categories, *map(float, feature.decimal_categories)})
        return {
            "anyOf": [schema, {"type": "number", "enum": numbers}],
            "description": f"{described} A number equal to one of the categories "
            '(1 or 1.0 for "1" or "1.0"; 1.5 for "1.5") is taken as that category, '
            'if written as Python writes the number (not "1.50"); where two are the '
            'same number, as sent picks ("1" for 1, "1.0" for 1.0).'.lstrip(),
        }
    return schema


def _ignored_schema(column: IgnoredColumn) -> OpenApiJson:
    """An ignored column: any value (no type), not passed to the model."""
    return {
        "description": f"Ignored ({column.reason}): accepted with any value, null "
        "included, and not passed to the model.",
    }


def _ignored(schema: FeatureSchema) -> OpenApiJson:
    return {c.name: _ignored_schema(c) for c in schema.ignored}


def _features(schema: FeatureSchema | None) -> OpenApiJson:
    if schema is None:
        return {"type": "object", "description": "No model is loaded."}
    return {
        "type": "object",
        "properties": {
            **{f.name: _feature_schema(f) for f in schema.features},
            **_ignored(schema),
        },
        "required": list(schema.names),
        "additionalProperties": False,
    }


def _columns(schema: FeatureSchema | None, max_batch_size: int) -> OpenApiJson:
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
        }
        | _ignored(schema),
        "required": list(schema.names),
        "additionalProperties": False,
    }


def _label(classes: Sequence[Any], *, nullable: bool = False) -> OpenApiJson:
    """A class label: one of the served classifier's, or any JSON scalar (or null)."""
    if classes:
        return {"enum": [*classes, None] if nullable else list(classes)}
    return {"type": [*_LABEL_TYPES, "null"] if nullable else _LABEL_TYPES}


def _by_class(texts: list[str], value: OpenApiJson, description: str) -> OpenApiJson:
    """An object with one ``value`` per class, keyed by label text: every class when
    ``texts`` are known, any keys otherwise."""
    keyed: OpenApiJson = {
        "type": "object",
        "description": description,
        "additionalProperties": value,
    }
    if texts:
        keyed["properties"] = {text: value for text in texts}
        keyed["required"] = texts
        keyed["additionalProperties"] = False
    return keyed


def _class_non_finite(texts: list[str]) -> OpenApiJson:
    """A classifier item's ``non_finite``: null, or the probabilities the model returned
    as NaN or an infinity, by class."""
    name = {"enum": list(get_args(api_models.NonFiniteName))}
    named = _by_class(texts, name, "What each such probability was.")
    named.pop("required", None)  # only the classes whose probability was not a number
    named["minProperties"] = 1
    return {
        "anyOf": [
            {
                "type": "object",
                "properties": {"probabilities": named},
                "required": ["probabilities"],
                "additionalProperties": False,
            },
            {"type": "null"},
        ],
        "description": "null when every class probability is a number. Otherwise the "
        "probabilities the model returned as NaN or an infinity (JSON has no such "
        'numbers, so they are null), each with what it was, e.g. {"probabilities": '
        '{"yes": "NaN", "no": "NaN"}}; the item then has no class (prediction and '
        "prediction_set.labels are null). The prediction log stores the class as NaN.",
    }


def _class_item(classes: Sequence[Any]) -> OpenApiJson:
    probability = {"anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "null"}]}
    texts = [label_text(c) for c in classes]
    probabilities = _by_class(
        texts,
        probability,
        "Each class's probability, keyed by the class label as text "
        '(1 and true become "1" and "True"); they sum to 1. null when the model returned '
        "NaN or an infinity (named in non_finite).",
    )
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "Prediction id, used for feedback."},
            "prediction": {
                **_label(classes, nullable=True),
                "description": "The predicted class: the most probable one; null when a "
                "class probability is not a number (named in non_finite).",
            },
            "probabilities": probabilities,
            "prediction_set": _ref("PredictionSet"),
            "ood": _OOD_FIELD,
            "non_finite": _class_non_finite(texts),
        },
        "required": ["id", "prediction", "probabilities", "prediction_set", "ood", "non_finite"],
    }


def _single_response(item: OpenApiJson) -> OpenApiJson:
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
    regression: OpenApiJson,
    classification: OpenApiJson,
    either: list[OpenApiJson] | None = None,
) -> OpenApiJson:
    """The served task's schema; with no model loaded, ``either`` (default: both)."""
    if task is Task.REGRESSION:
        return regression
    if task is Task.CLASSIFICATION:
        return classification
    return {"oneOf": either or [regression, classification]}


_BY_VERSION = (
    "Shown for the served model; a label for a prediction of an earlier version of the "
    "other task (as the log names it) takes that version's form: a number for a "
    "regression model, a class label for a classifier."
)


def _feedback_actual(task: Task | None) -> OpenApiJson:
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
            f"stored too, and the response says known_class false. {_BY_VERSION}",
        }
    return {"type": "number", "description": f"The true value. {_BY_VERSION}"}


def _feedback_accepted(task: Task | None) -> OpenApiJson:
    model = (
        api_models.ClassFeedbackAccepted
        if task is Task.CLASSIFICATION
        else api_models.FeedbackAccepted
    )
    return _model_schemas([model])[model.__name__]


def _components(
    schema: FeatureSchema | None,
    max_batch_size: int,
    task: Task | None,
    classes: Sequence[Any],
) -> OpenApiJson:
    """The fixed models' schemas, and the served model's shapes."""
    regression = _model_schemas(STATIC_MODELS)["RegressionPrediction"]
    class_item = _class_item(classes)
    return {
        **_model_schemas(STATIC_MODELS),
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
        "PredictionSet": {
            "type": "object",
            "description": "The classes a conformal prediction set holds: it contains the "
            "true class with probability level (nominal), and always the predicted class. "
            "labels is null when the item has no class (a probability is not a number).",
            "properties": {
                "labels": {
                    "anyOf": [
                        {"type": "array", "items": _label(classes), "minItems": 1},
                        {"type": "null"},
                    ]
                },
                "level": {"type": "number", "description": "Nominal coverage, e.g. 0.9."},
            },
            "required": ["labels", "level"],
        },
        "ClassPrediction": class_item,
        "PredictionItem": _for_task(
            task,
            regression,
            class_item,
            either=[_ref("RegressionPrediction"), _ref("ClassPrediction")],
        ),
        "SingleResponse": _for_task(
            task, _single_response(regression), _single_response(class_item)
        ),
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
                    "pattern": PREDICTION_ID_PATTERN,
                    "description": "A prediction id from /predict (its request id, then "
                    "'.' and the item's index for a batch); the ids of a batch are "
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
        "FeedbackAccepted": _feedback_accepted(task),
    }


# --- paths --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Operation:
    """One route: its view (whose docstring describes it), body and answers. ``answers``
    maps a status to a schema (a component's name) and what the status means; error
    statuses take their text from ``_ERROR_RESPONSES``, then ``error_notes``."""

    path: str
    method: str
    view: Callable[..., Any]
    answers: dict[int, tuple[str | OpenApiJson, str]]
    errors: tuple[int, ...] = ()
    body: str | OpenApiJson | None = None
    body_required: bool = True
    admin: bool = False
    content_type: str = "application/json"
    extra: OpenApiJson = field(default_factory=dict)
    # bodies of other media types the operation also takes, by type
    other_bodies: dict[str, OpenApiJson] = field(default_factory=dict)
    # what an error status also means for this operation, after the shared text
    error_notes: dict[int, str] = field(default_factory=dict)


def _schema(spec: str | OpenApiJson) -> OpenApiJson:
    return _ref(spec) if isinstance(spec, str) else spec


def _media(schema: str | OpenApiJson, content_type: str = "application/json") -> dict:
    return {"content": {content_type: {"schema": _schema(schema)}}}


def _operation(op: _Operation) -> OpenApiJson:
    summary, _, description = inspect.cleandoc(op.view.__doc__ or "").partition("\n\n")
    document: OpenApiJson = {
        "operationId": op.view.__name__,
        "summary": " ".join(summary.split()),
    }
    if description:  # paragraphs unwrapped: a renderer wraps them itself
        document["description"] = "\n\n".join(
            " ".join(paragraph.split()) for paragraph in description.split("\n\n")
        )
    if op.admin:
        document["security"] = [{"bearer": []}]
    if op.body is not None:
        body = _media(op.body)
        body["content"] |= {media: {"schema": spec} for media, spec in op.other_bodies.items()}
        document["requestBody"] = {"required": op.body_required, **body}
    responses: OpenApiJson = {
        str(status): {"description": text, **_media(schema, op.content_type)}
        for status, (schema, text) in op.answers.items()
    }
    for status in op.errors:
        text = " ".join(filter(None, (_ERROR_RESPONSES[status], op.error_notes.get(status))))
        responses[str(status)] = {"description": text, **_media("Error")}
    document["responses"] = responses
    return document


_OPERATIONS = (
    _Operation(
        "/predict",
        "post",
        predict.predict,
        {
            200: (
                {"oneOf": [_ref("SingleResponse"), _ref("BatchResponse")]},
                "Predictions; the X-Request-ID header repeats request_id.",
            )
        },
        errors=(400, 413, 415, 422, 503),
        body={"oneOf": [_ref("SingleRequest"), _ref("BatchRequest"), _ref("ColumnsRequest")]},
        other_bodies={
            ARROW_STREAM: {
                "type": "string",
                "format": "binary",
                "description": "A batch as an Arrow IPC stream, uncompressed: one column "
                "per feature (integers, floats or decimals for numbers; strings, or "
                "dictionary-encoded strings, for categories; nulls where the schema allows "
                "them). The cheapest form for large batches: no JSON to parse, and each "
                "distinct category is looked up once.",
            }
        },
    ),
    _Operation(
        "/feedback",
        "post",
        feedback.feedback,
        {200: ("FeedbackAccepted", "Stored.")},
        errors=(400, 409, 413, 415, 422, 503),
        body={"oneOf": [_ref("FeedbackItem"), _ref("FeedbackBatch")]},
        error_notes=_FEEDBACK_ERRORS,
    ),
    _Operation(
        "/admin/retrain",
        "post",
        admin.retrain,
        {202: ("Queued", "Queued.")},
        errors=(400, 401, 403, 413, 415, 422, 503),
        body="RetrainRequest",
        body_required=False,
        admin=True,
    ),
    _Operation(
        "/admin/rollback",
        "post",
        admin.rollback,
        {200: ("RolledBack", "Current moved.")},
        errors=(400, 401, 403, 409, 413, 415, 422),
        body="RollbackRequest",
        body_required=False,
        admin=True,
    ),
    _Operation(
        "/alerts",
        "post",
        admin.alerts,
        {
            200: ("AlertOutcome", "Ignored or duplicate."),
            202: ("Queued", "Queued."),
        },
        errors=(400, 401, 403, 413, 415, 422, 503),
        body="AlertmanagerPayload",
        admin=True,
    ),
    _Operation("/healthz", "get", health.healthz, {200: ("Health", "Alive.")}),
    _Operation(
        "/readyz",
        "get",
        health.readyz,
        {
            200: (
                "Readiness",
                "Ready; `degraded` while serving another version than CURRENT names, "
                "because that one would not load.",
            ),
            503: ("Readiness", "Not ready; checks say why."),
        },
    ),
    _Operation(
        "/model", "get", model_info.model_info, {200: ("ModelInfo", "Current model.")}, (503,)
    ),
    _Operation(
        "/metrics",
        "get",
        metrics.metrics,
        {200: ({"type": "string"}, "Text exposition format.")},
        content_type="text/plain",
    ),
    _Operation(
        "/openapi.json",
        "get",
        openapi_route.openapi,
        {200: ({"type": "object"}, "OpenAPI 3.1 document.")},
    ),
)


def openapi_document(
    schema: FeatureSchema | None,
    *,
    max_batch_size: int,
    task: Task | None = None,
    classes: Sequence[Any] = (),
) -> OpenApiJson:
    """The document for a served model of ``task`` (with ``classes``, a classifier's),
    or for no model (``task`` None)."""
    description = {
        Task.REGRESSION: "Predictions with a prediction interval",
        Task.CLASSIFICATION: "Class predictions with class probabilities and a prediction set",
        None: "Predictions with a prediction interval (regression) or class probabilities "
        "and a prediction set (classification)",
    }[task]
    paths: dict[str, OpenApiJson] = {}
    for op in _OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Watchkeeper prediction server",
            "version": "1",
            "description": f"{description}; every request is logged.",
        },
        "paths": paths,
        "components": {
            "schemas": _components(schema, max_batch_size, task, classes),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
