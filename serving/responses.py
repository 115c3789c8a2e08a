"""JSON responses serialised with orjson (several times faster than the stdlib)."""

from __future__ import annotations

import math
from itertools import compress
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from flask import Response
from flask.globals import request_ctx

from serving.log_entry import non_finite_name
from watchkeeper.task import label_text

if TYPE_CHECKING:
    from serving.ood_scoring import OodScores
    from serving.response_bodies import (
        ClassItem,
        ClassNonFinite,
        OodBody,
        RegressionItem,
        ResponseHead,
    )
    from watchkeeper.classification import ClassPredictions

_FEW = 32  # rows checked one by one: below this, a NumPy call costs more

# One item of a batch /predict response; the fields are filled in by position. A batch
# with a non-finite value takes the dict path, which names it in ``non_finite``.
_ITEM = (
    '{"id":%s,"prediction":%s,"interval":{"lower":%s,"upper":%s,"level":%s},"ood":%s,'
    '"non_finite":null}'
)
_ITEM_OOD = (
    '{"id":%s,"prediction":%s,"interval":{"lower":%s,"upper":%s,"level":%s},'
    '"ood":{"score":%s,"flag":%s},"non_finite":null}'
)


def json_response(body: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status=status,
        mimetype="application/json",
    )


def options_response() -> Response:
    """``OPTIONS`` on a route: 204 with ``Allow`` and no body (RFC 9110 section
    9.3.7), in place of Flask's 200 with an empty ``text/html`` body, which read as a
    successful request of the route. No ``Content-Type`` either: there is no content
    to have a type. Installed as the app's ``make_default_options_response``."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    response.allow.update(request_ctx.url_adapter.allowed_methods())
    return response


def non_finite_fields(prediction: float, lower: float, upper: float) -> dict[str, str] | None:
    """A regression item's ``non_finite``: which of its numbers the model returned as
    NaN or an infinity, by name (JSON has no such numbers: orjson writes them as
    ``null``); None when all are finite."""
    if math.isfinite(prediction) and math.isfinite(lower) and math.isfinite(upper):
        return None
    named = (("prediction", prediction), ("lower", lower), ("upper", upper))
    return {field: non_finite_name(v) for field, v in named if not math.isfinite(v)}


def non_finite_rows(value: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> int:
    """How many predictions have a number that is NaN or infinite (one by one for a
    few rows: NumPy calls cost more than that on a single record)."""
    if value.size <= _FEW:
        isfinite = math.isfinite
        rows = zip(value.tolist(), lower.tolist(), upper.tolist(), strict=True)
        return sum(not (isfinite(v) and isfinite(lo) and isfinite(up)) for v, lo, up in rows)
    finite = np.isfinite(value) & np.isfinite(lower) & np.isfinite(upper)
    return value.size - int(np.count_nonzero(finite))


def batch_predictions_response(
    head: ResponseHead,
    ids: list[str],
    value: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    level: float,
    ood: OodScores | None = None,
    non_finite: int | None = None,
) -> Response:
    """``{**head, "predictions": [{"id", "prediction", "interval": {"lower", "upper",
    "level"}, "ood": {"score", "flag"} or null, "non_finite"}, ...]}``, the same bytes
    orjson writes for those dicts, without building three dicts per item: for a large
    batch they cost more than the rest of the response, and their allocations set off
    garbage-collector passes over the request's parsed body. ``non_finite``: the
    caller's :func:`non_finite_rows` of the three arrays, counted here when not given."""
    n = len(ids)
    texts = [_json_items(ids), *(_json_items(a) for a in (value, lower, upper))]
    if ood is not None:
        texts += [_json_items(ood.scores), _json_items(ood.flags)]
    if (
        n == 0
        or any(len(t) != n for t in texts)  # an id whose JSON text holds a comma
        # items that need a non_finite marker
        or (non_finite_rows(value, lower, upper) if non_finite is None else non_finite)
    ):
        return json_response({**head, "predictions": _items(ids, value, lower, upper, level, ood)})
    # per item: id, prediction, lower, upper, level, then the OOD score and flag or null
    width = 7 if ood is not None else 6
    fields = [orjson.dumps(level).decode()] * (width * n)
    for position, text in enumerate(texts):
        fields[position + (position >= 4) :: width] = text  # level sits at position 4
    if ood is None:
        fields[5::width] = ["null"] * n
    template = _ITEM_OOD if ood is not None else _ITEM
    items = (",".join([template] * n) % tuple(fields)).encode()
    envelope = orjson.dumps({**head, "predictions": []})  # ends with b"[]}"
    return Response(envelope[:-2] + items + b"]}", mimetype="application/json")


def _json_items(values: Any) -> list[str]:
    """The JSON text of each element of ``values`` (strings quoted and escaped)."""
    return orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY).decode()[1:-1].split(",")


def _items(
    ids: list[str],
    value: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    level: float,
    ood: OodScores | None,
) -> list[RegressionItem]:
    n = len(ids)
    oods: list[OodBody | None] = (
        [None] * n
        if ood is None
        else [
            {"score": s, "flag": f}
            for s, f in zip(ood.scores.tolist(), ood.flags.tolist(), strict=True)
        ]
    )
    return [
        {
            "id": i,
            "prediction": v,
            "interval": {"lower": lo, "upper": up, "level": level},
            "ood": o,
            "non_finite": non_finite_fields(v, lo, up),
        }
        for i, v, lo, up, o in zip(
            ids, value.tolist(), lower.tolist(), upper.tolist(), oods, strict=True
        )
    ]


def class_non_finite(texts: list[str], probabilities: list[float]) -> ClassNonFinite | None:
    """A classifier item's ``non_finite``: ``{"probabilities": {<label text>: "NaN",
    ...}}`` naming each probability the model returned as NaN or an infinity (the item
    then has no class: its ``prediction`` and set labels are null); None when all are
    numbers."""
    if all(map(math.isfinite, probabilities)):
        return None
    named = zip(texts, probabilities, strict=True)
    return {"probabilities": {t: non_finite_name(p) for t, p in named if not math.isfinite(p)}}


def class_prediction_items(
    ids: list[str], predicted: ClassPredictions, level: float, ood: OodScores | None
) -> list[ClassItem]:
    """A classifier's predictions: ``{"id", "prediction": <label>, "probabilities":
    {<label text>: p, ...}, "prediction_set": {"labels": [...], "level"}, "ood",
    "non_finite"}`` each. Plain dicts for orjson: with a handful of classes they cost a
    fraction of ``predict_proba`` itself. A row with a probability that is NaN or
    infinite has no class: ``prediction`` and the set's ``labels`` are null, that
    probability is null (JSON has no such number) and ``non_finite`` names it."""
    classes = predicted.classes
    texts = [label_text(c) for c in classes]
    probabilities = predicted.probabilities.tolist()
    non_finite = [class_non_finite(texts, p) for p in probabilities]
    oods: list[OodBody | None] = (
        [None] * len(ids)
        if ood is None
        else [
            {"score": s, "flag": f}
            for s, f in zip(ood.scores.tolist(), ood.flags.tolist(), strict=True)
        ]
    )
    return [
        {
            "id": i,
            "prediction": None if n else classes[k],
            "probabilities": dict(zip(texts, p, strict=True)),  # NaN, inf: null
            "prediction_set": {"labels": None if n else list(compress(classes, m)), "level": level},
            "ood": o,
            "non_finite": n,
        }
        for i, k, p, m, o, n in zip(
            ids,
            predicted.index.tolist(),
            probabilities,
            predicted.members.tolist(),
            oods,
            non_finite,
            strict=True,
        )
    ]
