"""The OpenAPI document matches the server: every route is described, and real
responses validate against the documented schemas."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient


def _validator(spec: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Validator:
    return jsonschema.Draft202012Validator({**schema, "components": spec["components"]})


@pytest.fixture
def spec(client: FlaskClient) -> dict[str, Any]:
    return client.get("/openapi.json").json


def test_every_route_is_documented_and_nothing_else(app: Flask, spec: dict[str, Any]) -> None:
    routes = {
        (rule.rule, method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}

    assert routes == documented


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/predict", "single"),
        ("post", "/predict", "batch"),
        ("post", "/predict", "columns"),
        ("post", "/predict", "surrogate"),
        ("post", "/feedback", "unknown"),
        ("post", "/predict/nowhere", None),
        ("post", "/predict", "invalid"),
        ("post", "/predict", "malformed"),
        ("get", "/healthz", None),
        ("get", "/readyz", None),
        ("get", "/model", None),
    ],
)
def test_responses_match_their_documented_schema(
    client: FlaskClient,
    spec: dict[str, Any],
    record: dict[str, Any],
    method: str,
    path: str,
    body: str | None,
) -> None:
    payloads = {
        "single": {"json": {"features": record}},
        "batch": {"json": {"instances": [record, record]}},
        "columns": {"json": {"columns": {k: [v, v] for k, v in record.items()}}},
        "surrogate": {"data": b'{"features": {"\\ud800": 1}}', "content_type": "application/json"},
        "unknown": {"json": {"id": "nope", "actual": 1.0}},
        "invalid": {"json": {"features": {**record, "Lot_Area": "big"}}},
        "malformed": {"data": b"{", "content_type": "application/json"},
    }
    response = getattr(client, method)(path, **payloads.get(body or "", {}))

    if path not in spec["paths"]:  # not a route: the error shape every response shares
        assert response.status_code == 404
        _validator(spec, {"$ref": "#/components/schemas/Error"}).validate(response.json)
        return
    documented = spec["paths"][path][method]["responses"]
    assert str(response.status_code) in documented
    schema = documented[str(response.status_code)]["content"]["application/json"]["schema"]
    _validator(spec, schema).validate(response.json)


def test_documented_request_schema_accepts_what_the_server_accepts(
    spec: dict[str, Any], record: dict[str, Any]
) -> None:
    schema = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    validator = _validator(spec, schema)

    validator.validate({"features": record})
    validator.validate({"instances": [record]})
    validator.validate({"columns": {k: [v, v] for k, v in record.items()}})
    assert not validator.is_valid({"features": {**record, "Lot_Area": "big"}})
    assert not validator.is_valid({"instances": []})
    assert not validator.is_valid({"columns": {k: [] for k in record}})
    assert not validator.is_valid({"columns": {**{k: [v] for k, v in record.items()}, "X": [1]}})
    assert not validator.is_valid({"columns": {k: [v] for k, v in record.items()}, "features": {}})
