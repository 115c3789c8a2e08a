"""Validation of ``/predict`` bodies against a model's feature schema.

Checks run column by column so that a batch of thousands costs a few set and NumPy
operations per feature; only a column that fails the fast check is scanned value by
value to name each bad field. Every problem found is reported, up to
``MAX_PROBLEMS``, as ``instances[i].Feature`` (batch) or ``features.Feature``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from flask import request

from watchkeeper.errors import (
    BadRequest,
    FieldProblem,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from watchkeeper.schema import Feature, FeatureSchema

MAX_PROBLEMS = 100
_NUMBER = (int, float)
_NONE = type(None)


class _Absent:
    """Stands in a column for a key the record lacks (already reported as missing)."""


_ABSENT = _Absent()


@dataclass(frozen=True)
class ValidatedRequest:
    """Records as sent, and the same values as columns for the model."""

    records: list[dict[str, Any]]
    columns: dict[str, list[Any]]
    single: bool


def parse_json(body: bytes) -> Any:
    """Parse a request body. ``NaN``/``Infinity`` literals are not JSON, but clients
    send them; they parse here so that validation can name the field holding them."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc


def request_json() -> Any:
    """The current request's body as JSON; 415 unless it is declared JSON."""
    if not request.is_json:
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {request.mimetype or 'none'!r}"
        )
    return parse_json(request.get_data(cache=True))


def validate_predict_payload(
    payload: Any, schema: FeatureSchema, *, max_batch_size: int
) -> ValidatedRequest:
    records, single, prefix = _envelope(payload, max_batch_size)
    problems: list[FieldProblem] = []
    expected = set(schema.names)
    complete = True
    for i, record in enumerate(records):
        where = prefix(i)
        if not isinstance(record, dict):
            problems.append(FieldProblem(where, f"must be an object, got {_json_type(record)}"))
            records[i] = {}
            complete = False
            continue
        if record.keys() != expected:
            complete = False
            keys = record.keys()
            problems.extend(
                FieldProblem(f"{where}.{name}", "missing")
                for name in schema.names
                if name not in keys
            )
            problems.extend(
                FieldProblem(f"{where}.{name}", "unknown field (not in the model's schema)")
                for name in keys
                if name not in expected
            )
        if len(problems) >= MAX_PROBLEMS:
            raise _failed(problems)

    if complete:
        columns = {name: [record[name] for record in records] for name in schema.names}
    else:
        columns = {name: [r.get(name, _ABSENT) for r in records] for name in schema.names}
    for feature in schema.features:
        check = _check_numeric if feature.is_numeric else _check_categorical
        problems.extend(check(feature, columns[feature.name], prefix))
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise _failed(problems)
    return ValidatedRequest(records=records, columns=columns, single=single)


def _envelope(payload: Any, max_batch_size: int) -> tuple[list[Any], bool, Any]:
    if not isinstance(payload, dict):
        raise BadRequest(
            "body must be a JSON object with a 'features' object or an 'instances' array, "
            f"got {_json_type(payload)}"
        )
    keys = set(payload)
    if keys == {"features"}:
        return [payload["features"]], True, lambda _i: "features"
    if keys == {"instances"}:
        instances = payload["instances"]
        if not isinstance(instances, list):
            raise ValidationFailed(
                "instances must be an array",
                details=[
                    FieldProblem("instances", f"must be an array, got {_json_type(instances)}")
                ],
            )
        if not instances:
            raise ValidationFailed(
                "empty batch",
                details=[FieldProblem("instances", "must hold at least one instance")],
            )
        if len(instances) > max_batch_size:
            raise PayloadTooLarge(
                f"batch of {len(instances)} instances exceeds the limit of {max_batch_size}",
                details=[FieldProblem("instances", f"at most {max_batch_size} instances")],
            )
        return instances, False, lambda i: f"instances[{i}]"
    unknown = sorted(keys - {"features", "instances"})
    if {"features", "instances"} <= keys:
        message = "send either 'features' or 'instances', not both"
    elif unknown:
        message = f"unknown top-level field(s) {unknown}; expected 'features' or 'instances'"
    else:
        message = "body must have a 'features' object or an 'instances' array"
    raise BadRequest(message)


def _check_numeric(feature: Feature, column: list[Any], prefix: Any) -> list[FieldProblem]:
    types = set(map(type, column))
    allowed = {int, float, _NONE} if feature.nullable else {int, float}
    if types <= allowed:
        try:
            values = np.array(column, dtype=np.float64)
        except OverflowError:
            values = None
        if values is not None:
            present = (
                np.fromiter((v is not None for v in column), bool, len(column))
                if _NONE in types
                else True
            )
            ok = np.isfinite(values) | ~np.asarray(present)
            if feature.minimum is not None:
                ok &= ~(values < feature.minimum)
            if feature.maximum is not None:
                ok &= ~(values > feature.maximum)
            if ok.all():
                return []
    return [
        FieldProblem(f"{prefix(i)}.{feature.name}", problem)
        for i, value in enumerate(column)
        if (problem := _numeric_problem(feature, value)) is not None
    ][:MAX_PROBLEMS]


def _numeric_problem(feature: Feature, value: Any) -> str | None:
    if value is _ABSENT:
        return None
    if value is None:
        return None if feature.nullable else "must not be null"
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        return f"must be a number, got {_json_type(value)}"
    try:
        number = float(value)
    except OverflowError:
        return "number is too large"
    if number != number:
        return "must be a finite number, got NaN"
    if number in (float("inf"), float("-inf")):
        return f"must be a finite number, got {'-' if number < 0 else ''}Infinity"
    if feature.minimum is not None and number < feature.minimum:
        return f"must be >= {feature.minimum:g}, got {value}"
    if feature.maximum is not None and number > feature.maximum:
        return f"must be <= {feature.maximum:g}, got {value}"
    return None


def _check_categorical(feature: Feature, column: list[Any], prefix: Any) -> list[FieldProblem]:
    types = set(map(type, column))
    allowed = {str, _NONE} if feature.nullable else {str}
    if types <= allowed and (feature.allow_unknown or set(column) <= {*feature.categories, None}):
        return []
    known = set(feature.categories)
    problems = []
    for i, value in enumerate(column):
        if value is _ABSENT:
            problem = None
        elif value is None:
            problem = None if feature.nullable else "must not be null"
        elif not isinstance(value, str):
            problem = f"must be a string, got {_json_type(value)}"
        elif not feature.allow_unknown and value not in known:
            problem = f"unknown category {value!r}; allowed: {sorted(known)}"
        else:
            problem = None
        if problem is not None:
            problems.append(FieldProblem(f"{prefix(i)}.{feature.name}", problem))
            if len(problems) >= MAX_PROBLEMS:
                break
    return problems


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, _NUMBER):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _failed(problems: list[FieldProblem]) -> ValidationFailed:
    problems = problems[:MAX_PROBLEMS]
    fields = ", ".join(p.field for p in problems[:5])
    more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
    return ValidationFailed(f"invalid input: {fields}{more}", details=problems)
