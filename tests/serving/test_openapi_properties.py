"""The OpenAPI document and the server never disagree about request bodies.

Bodies are generated from the document's own request schemas (each value by
hypothesis-jsonschema, the objects and arrays holding them composed here) and sent
to a real app through Flask's test client:

- every body the document allows is accepted (``/feedback``: 200, or 409 when the id
  already has feedback, as documented);
- every body it forbids, made by breaking an allowed one in one place (a wrong type,
  a required field dropped, a field where ``additionalProperties`` is false, a number
  out of range, a string or an array too short or too long), is refused with one of
  the operation's documented statuses (413 for an array over the batch limit) and the
  documented error shape, naming the broken field: never a 500.

The four disagreements schemathesis once found are pinned as explicit examples, with
those this test found (a NUL character PostgreSQL's text cannot hold, an alert label
that is not a string, a number label too long as text).
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

MAX_BATCH = 4
TOKEN = "property-test-token"
# Bounded: a few seconds per endpoint on a busy machine. No example database: the
# checkout is shared, and a failure prints the body that broke it.
_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    # the app is shared by the examples on purpose; slow or large generation is the
    # price of 71-feature bodies, not a fault of the property
    suppress_health_check=list(HealthCheck),
)
_REFUSALS = {400, 413, 422}
# Values of every JSON type, to put where the schema wants another.
_ANY_TYPE: tuple[Any, ...] = (None, True, 7, 1.5, "text", [], {})
_EXTRA = "unexpected_field"
# /predict answers before its log row is written, so no database takes part in what
# these properties check: one suffices (the other endpoints store in the request).
_ONE_DATABASE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# The served documents, by app, filled in by the fixtures before the first example is
# drawn: the strategies are built when the module is imported, the apps per test.
_documents: dict[str, dict[str, Any]] = {}


@dataclass(frozen=True)
class Broken:
    """An allowed body broken in one place: ``path`` leads to it (keys and indexes)."""

    body: Any
    kind: str
    path: tuple[str | int, ...]

    @property
    def names(self) -> set[str]:
        """Words the refusal must name: the broken field or, for one that should not
        be there or is missing, the object holding it ("body" at the top)."""
        keys = {k for k in self.path if isinstance(k, str)}
        if self.kind in ("extra", "missing"):
            parents = [k for k in self.path[:-1] if isinstance(k, str)]
            keys |= {parents[-1] if parents else "body"}
        return keys or {"body"}


# --- the document's schemas ---------------------------------------------------------


def _inline(schema: Any, components: dict[str, Any]) -> Any:
    """``schema`` with every ``$ref`` replaced by what it names (the document has no
    recursive schemas)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            return _inline({**components[name], **rest}, components)
        return {k: _inline(v, components) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline(v, components) for v in schema]
    return schema


def request_schema(spec: dict[str, Any], path: str) -> dict[str, Any]:
    body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    return _inline(body["schema"], spec["components"]["schemas"])


def _response_schema(spec: dict[str, Any], path: str, status: int) -> dict[str, Any]:
    response = spec["paths"][path]["post"]["responses"][str(status)]
    return _inline(response["content"]["application/json"]["schema"], spec["components"]["schemas"])


def _valid(schema: dict[str, Any], value: Any) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(value)


# --- bodies the document allows -----------------------------------------------------


def _even_columns(body: Any) -> Any:
    """A columns body with every array cut to the shortest: the document says, in
    words, that they are equally long (JSON Schema cannot)."""
    if isinstance(body, dict) and isinstance(body.get("columns"), dict):
        columns = body["columns"]
        n = min((len(v) for v in columns.values() if isinstance(v, list)), default=0)
        body = {"columns": {k: v[:n] if isinstance(v, list) else v for k, v in columns.items()}}
    return body


def _drawable(schema: Any) -> Any:
    """``schema`` without the ignored columns (a property described, of no type): only
    what bodies are drawn from, never what they are checked against. Drawing any JSON
    for each of them, in every record and column, took the generation of forbidden
    bodies past the test's timeout in two runs of three, even drawn from scalars; the
    server takes and drops them whatever they hold (tests/serving/test_validation.py)."""
    if isinstance(schema, list):
        return [_drawable(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    drawn = {k: _drawable(v) for k, v in schema.items()}
    if isinstance(schema.get("properties"), dict):
        drawn["properties"] = {
            name: _drawable(sub)
            for name, sub in schema["properties"].items()
            if not (isinstance(sub, dict) and sub.keys() == {"description"})
        }
    return drawn


# Words of a schema that say nothing about which values it allows.
_ANNOTATIONS = frozenset({"description", "examples", "title", "default"})
_OBJECT = frozenset({"type", "properties", "required", "additionalProperties"})
_ARRAY = frozenset({"type", "items", "minItems", "maxItems"})


def _bodies(schema: Any) -> st.SearchStrategy[Any]:
    """Values ``schema`` allows: its objects, arrays and ``oneOf`` composed here,
    every other schema (each feature's, in the end) drawn by hypothesis-jsonschema from
    its own schema, so that each value is as hostile as the library makes it. Drawing
    a 71-feature body with the library's object strategy took three times as long
    (60 bodies: 6.7 s of CPU against 2.4 s) for values of the same kinds."""
    words = set(schema) - _ANNOTATIONS if isinstance(schema, dict) else set()
    if words == {"oneOf"}:
        branches = schema["oneOf"]
        return st.one_of([_bodies(b) for b in branches]).filter(
            lambda body: sum(_valid(b, body) for b in branches) == 1
        )
    if words <= _OBJECT and schema.get("type") == "object":
        required = set(schema.get("required", ()))
        # sorted, as the library orders them: not the model's order of its features
        properties = dict(sorted(schema.get("properties", {}).items()))
        named = st.fixed_dictionaries(
            {k: _bodies(v) for k, v in properties.items() if k in required},
            optional={k: _bodies(v) for k, v in properties.items() if k not in required},
        )
        others = schema.get("additionalProperties", True)
        if others is False:
            return named
        # more names, as the library draws them (any string; a handful on average)
        # with the values it allows (any JSON unless a schema says otherwise)
        more = st.dictionaries(
            _library_values('{"type": "string"}').filter(lambda name: name not in properties),
            _bodies(others) if isinstance(others, dict) else _library_values("{}"),
            max_size=10,
        )
        return st.tuples(named, more).map(lambda both: {**both[0], **both[1]})
    if words <= _ARRAY and schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        items = _bodies(schema["items"])
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=schema.get("maxItems"))
    return _library_values(json.dumps(schema, sort_keys=True))


@functools.cache
def _library_values(schema: str) -> st.SearchStrategy[Any]:
    """hypothesis-jsonschema's strategy for a schema (as JSON text, to be a key): built
    once, as most features share one of a few schemas."""
    return from_schema(json.loads(schema))


def allowed(app: str, path: str) -> st.SearchStrategy[Any]:
    return st.deferred(
        lambda: _bodies(_drawable(request_schema(_documents[app], path))).map(_even_columns)
    )


# --- bodies it forbids ----------------------------------------------------------------


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    if kind is None:
        return {"object"} if "properties" in schema else set()
    return {kind} if isinstance(kind, str) else set(kind)


def _branch(schema: dict[str, Any], value: Any) -> dict[str, Any]:
    """The ``oneOf`` branch ``value`` is valid under (the schema itself otherwise)."""
    for choice in schema.get("oneOf", ()):
        if _valid(choice, value):
            return _branch(choice, value)
    return schema


def _sites(
    schema: dict[str, Any], value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], dict[str, Any], Any]]:
    """Every value of the body with the schema it must meet."""
    schema = _branch(schema, value)
    yield path, schema, value
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        others = schema.get("additionalProperties")
        for key, child in value.items():
            sub = properties.get(key, others if isinstance(others, dict) else None)
            if sub is not None:
                yield from _sites(sub, child, (*path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, child in enumerate(value):
            yield from _sites(schema["items"], child, (*path, i))


def _replace(body: Any, path: tuple[str | int, ...], new: Any) -> Any:
    if not path:
        return new
    body = copy.deepcopy(body)
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = new
    return body


def _over_limit(body: Any, path: tuple[str | int, ...], value: list[Any], most: int) -> Any:
    longer = value + [value[0]] * (most + 1 - len(value))
    if len(path) == 2 and path[0] == "columns":  # keep the columns equally long
        columns = body[path[0]].items()
        return {
            "columns": {
                k: v + [v[0]] * (most + 1 - len(v)) if isinstance(v, list) and v else v
                for k, v in columns
            }
        }
    return _replace(body, path, longer)


def _breakages(
    sub: dict[str, Any], value: Any, body: Any, path: tuple[str | int, ...]
) -> list[Broken]:
    """Every way to break ``body`` at ``path``, where ``value`` must meet ``sub``."""
    found = [
        Broken(_replace(body, path, other), "type", path)
        for other in _ANY_TYPE
        if _types(sub) and not _valid(sub, other)
    ]
    if isinstance(value, dict):
        found += [
            Broken(_replace(body, path, _without(value, key)), "missing", (*path, key))
            for key in sub.get("required", ())
            if key in value
        ]
        if sub.get("additionalProperties") is False:
            found.append(
                Broken(_replace(body, path, {**value, _EXTRA: 1}), "extra", (*path, _EXTRA))
            )
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in sub:
            found.append(Broken(_replace(body, path, sub["minimum"] - 1), "range", path))
        if "maximum" in sub:
            found.append(Broken(_replace(body, path, sub["maximum"] + 1), "range", path))
    if isinstance(value, str):
        if sub.get("minLength", 0) > 0:
            found.append(Broken(_replace(body, path, ""), "length", path))
        if "maxLength" in sub:
            too_long = "x" * (sub["maxLength"] + 1)
            found.append(Broken(_replace(body, path, too_long), "length", path))
        if "pattern" in sub and not re.search(sub["pattern"], value + "\x00"):
            found.append(Broken(_replace(body, path, value + "\x00"), "pattern", path))
    if isinstance(value, list):
        if sub.get("minItems", 0) > 0:
            found.append(Broken(_replace(body, path, []), "length", path))
        if "maxItems" in sub and value:
            longer = _over_limit(body, path, value, sub["maxItems"])
            found.append(Broken(longer, "over_limit", path))
    return found


def _without(value: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k != key}


def forbidden(app: str, path: str) -> st.SearchStrategy[Broken]:
    """An allowed body broken at one place drawn at random; a break that another
    branch of a ``oneOf`` accepts is no break, and is drawn again."""

    def strategy() -> st.SearchStrategy[Broken]:
        schema = request_schema(_documents[app], path)

        def broken(body: Any) -> st.SearchStrategy[Broken]:
            sites = list(_sites(schema, body))
            return st.sampled_from(sites).flatmap(
                lambda site: st.sampled_from(_breakages(site[1], site[2], body, site[0]) or [None])
            )

        return (
            _bodies(_drawable(schema))
            .map(_even_columns)
            .flatmap(broken)
            .filter(lambda b: b is not None and not _valid(schema, b.body))
        )

    return st.deferred(strategy)


# --- the apps -------------------------------------------------------------------------


def _serve(make_app: Callable[..., Flask], name: str, **overrides: Any) -> FlaskClient:
    app = make_app(max_batch_size=MAX_BATCH, admin_token=TOKEN, **overrides)
    client = app.test_client()
    _documents[name] = client.get("/openapi.json").json
    return client


@pytest.fixture
def regression(make_app: Callable[..., Flask]) -> FlaskClient:
    return _serve(make_app, "regression")


@pytest.fixture
def classifier(
    make_app: Callable[..., Flask], tmp_path: Path, classifier_registry_template: Path
) -> FlaskClient:
    registry = tmp_path / "classifier-registry"
    shutil.copytree(classifier_registry_template, registry)
    return _serve(make_app, "classifier", registry_path=registry)


_AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _post(client: FlaskClient, path: str, body: Any) -> Any:
    # data, not json=: a JSON null is a body too
    return client.post(path, data=json.dumps(body), content_type="application/json", headers=_AUTH)


def _check_refused(client: FlaskClient, path: str, broken: Broken, app: str) -> None:
    spec = _documents[app]
    assert not _valid(request_schema(spec, path), broken.body), "the document allows it"
    response = _post(client, path, broken.body)
    documented = {int(s) for s in spec["paths"][path]["post"]["responses"]}

    assert response.status_code in _REFUSALS & documented, (response.status_code, response.json)
    if broken.kind == "over_limit":
        assert response.status_code == 413, response.json
    error = response.json
    schema = _inline({"$ref": "#/components/schemas/Error"}, spec["components"]["schemas"])
    jsonschema.Draft202012Validator(schema).validate(error)
    said = " ".join(
        [error["error"]["message"], *(d["field"] for d in error["error"].get("details", []))]
    )
    assert any(name in said for name in broken.names), (broken.names, error)


# --- /predict -------------------------------------------------------------------------


@_ONE_DATABASE
@_SETTINGS
@given(body=allowed("regression", "/predict"))
def test_predict_accepts_what_the_document_allows(regression: FlaskClient, body: Any) -> None:
    response = _post(regression, "/predict", body)

    assert response.status_code == 200, response.json
    schema = _response_schema(_documents["regression"], "/predict", 200)
    jsonschema.Draft202012Validator(schema).validate(response.json)


@_ONE_DATABASE
@_SETTINGS
@given(broken=forbidden("regression", "/predict"))
@example(broken=Broken({"instances": [{}] * (MAX_BATCH + 1)}, "over_limit", ("instances",)))
def test_predict_refuses_what_the_document_forbids(regression: FlaskClient, broken: Broken) -> None:
    _check_refused(regression, "/predict", broken, "regression")


@_ONE_DATABASE
@_SETTINGS
@given(body=allowed("classifier", "/predict"))
def test_a_classifier_accepts_what_its_document_allows(classifier: FlaskClient, body: Any) -> None:
    response = _post(classifier, "/predict", body)

    assert response.status_code == 200, response.json
    schema = _response_schema(_documents["classifier"], "/predict", 200)
    jsonschema.Draft202012Validator(schema).validate(response.json)


@_ONE_DATABASE
@_SETTINGS
@given(broken=forbidden("classifier", "/predict"))
def test_a_classifier_refuses_what_its_document_forbids(
    classifier: FlaskClient, broken: Broken
) -> None:
    _check_refused(classifier, "/predict", broken, "classifier")


# --- /feedback ------------------------------------------------------------------------


def _feedback_ids(body: Any) -> list[str]:
    return [item["id"] for item in body["items"]] if "items" in body else [body["id"]]


def _check_feedback_accepted(client: FlaskClient, app: str, body: Any) -> None:
    response = _post(client, "/feedback", body)
    ids = _feedback_ids(body)

    if len(set(ids)) < len(ids):  # the document says so in words: ids are distinct
        assert response.status_code == 422, response.json
        assert "twice" in str(response.json["error"]["details"])
        return
    assert response.status_code in (200, 409), response.json
    schema = _response_schema(_documents[app], "/feedback", response.status_code)
    jsonschema.Draft202012Validator(schema).validate(response.json)


@_SETTINGS
@given(body=allowed("regression", "/feedback"))
def test_feedback_accepts_what_the_document_allows(regression: FlaskClient, body: Any) -> None:
    _check_feedback_accepted(regression, "regression", body)


@_SETTINGS
@given(body=allowed("classifier", "/feedback"))
def test_a_classifiers_feedback_accepts_what_its_document_allows(
    classifier: FlaskClient, body: Any
) -> None:
    _check_feedback_accepted(classifier, "classifier", body)


@_SETTINGS
@given(broken=forbidden("regression", "/feedback"))
@example(broken=Broken({"id": "", "actual": 1.0}, "length", ("id",)))
@example(broken=Broken({"id": "p\x00", "actual": 1.0}, "pattern", ("id",)))  # PostgreSQL: 500
@example(
    broken=Broken(
        {"items": [{"id": f"p{i}", "actual": 1.0} for i in range(MAX_BATCH + 1)]},
        "over_limit",
        ("items",),
    )
)
def test_feedback_refuses_what_the_document_forbids(
    regression: FlaskClient, broken: Broken
) -> None:
    _check_refused(regression, "/feedback", broken, "regression")


@_SETTINGS
@given(broken=forbidden("classifier", "/feedback"))
@example(broken=Broken({"id": "", "actual": "low"}, "length", ("id",)))
@example(broken=Broken({"id": "p", "actual": "lo\x00w"}, "pattern", ("actual",)))
# a number whose text is longer than a label may be
@example(broken=Broken({"id": "p", "actual": 1e256}, "range", ("actual",)))
def test_a_classifiers_feedback_refuses_what_its_document_forbids(
    classifier: FlaskClient, broken: Broken
) -> None:
    _check_refused(classifier, "/feedback", broken, "classifier")


# --- /alerts and /admin/retrain --------------------------------------------------------


@_SETTINGS
@given(body=allowed("regression", "/alerts"))
def test_alerts_accepts_what_the_document_allows(regression: FlaskClient, body: Any) -> None:
    response = _post(regression, "/alerts", body)

    assert response.status_code in (200, 202), response.json
    schema = _response_schema(_documents["regression"], "/alerts", response.status_code)
    jsonschema.Draft202012Validator(schema).validate(response.json)


@_SETTINGS
@given(broken=forbidden("regression", "/alerts"))
@example(broken=Broken({}, "missing", ("alerts",)))
@example(
    broken=Broken(
        {
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "WatchkeeperAccuracyDegraded", "model_version": {}},
                }
            ]
        },
        "type",
        ("alerts", 0, "labels", "model_version"),
    )
)
def test_alerts_refuses_what_the_document_forbids(regression: FlaskClient, broken: Broken) -> None:
    _check_refused(regression, "/alerts", broken, "regression")


@_SETTINGS
@given(body=allowed("regression", "/admin/retrain"))
def test_retrain_accepts_what_the_document_allows(regression: FlaskClient, body: Any) -> None:
    response = _post(regression, "/admin/retrain", body)

    assert response.status_code == 202, response.json
    schema = _response_schema(_documents["regression"], "/admin/retrain", 202)
    jsonschema.Draft202012Validator(schema).validate(response.json)


@_SETTINGS
@given(broken=forbidden("regression", "/admin/retrain"))
@example(broken=Broken({"reason": {}}, "type", ("reason",)))
@example(broken=Broken({"reason": 0}, "type", ("reason",)))
@example(broken=Broken({"reason": "a\x00b"}, "pattern", ("reason",)))
def test_retrain_refuses_what_the_document_forbids(regression: FlaskClient, broken: Broken) -> None:
    _check_refused(regression, "/admin/retrain", broken, "regression")


@_SETTINGS
@given(body=allowed("regression", "/admin/rollback"))
def test_rollback_accepts_what_the_document_allows(regression: FlaskClient, body: Any) -> None:
    response = _post(regression, "/admin/rollback", body)

    # one version registered: there is nothing to roll back to, which is a 409
    assert response.status_code in (200, 409), response.json
    schema = _response_schema(_documents["regression"], "/admin/rollback", response.status_code)
    jsonschema.Draft202012Validator(schema).validate(response.json)


@_SETTINGS
@given(broken=forbidden("regression", "/admin/rollback"))
def test_rollback_refuses_what_the_document_forbids(
    regression: FlaskClient, broken: Broken
) -> None:
    _check_refused(regression, "/admin/rollback", broken, "regression")
