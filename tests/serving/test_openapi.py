"""The OpenAPI document matches the server: every route is described, and real
responses validate against the documented schemas."""

from __future__ import annotations

import inspect
from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st

from serving import api_models
from serving.openapi import openapi_document
from serving.validation import validate_predict_payload
from watchkeeper.errors import ValidationFailed
from watchkeeper.schema import Feature, FeatureSchema


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


def _response_schema(spec: dict[str, Any], path: str, status: int = 200) -> dict[str, Any]:
    responses = spec["paths"][path]["post"]["responses"]
    return responses[str(status)]["content"]["application/json"]["schema"]


def test_a_classifiers_responses_match_its_document(
    classifier_app: Flask, classifier_records: list[dict[str, Any]]
) -> None:
    client = classifier_app.test_client()
    spec = client.get("/openapi.json").json
    record = classifier_records[0]
    predict = _validator(spec, _response_schema(spec, "/predict"))
    feedback = _validator(spec, _response_schema(spec, "/feedback"))

    single = client.post("/predict", json={"features": record}).json
    batch = client.post("/predict", json={"instances": [record, classifier_records[1]]}).json
    columns = client.post("/predict", json={"columns": {k: [v] for k, v in record.items()}}).json
    labelled = client.post("/feedback", json={"id": single["id"], "actual": "none"}).json

    for body in (single, batch, columns):
        predict.validate(body)
    feedback.validate(labelled)
    assert labelled["known_class"] is False
    schemas = spec["components"]["schemas"]
    # null: no class, when a probability is NaN or infinite (tests/serving/
    # test_non_finite_predictions.py validates such an answer against the document)
    prediction = schemas["ClassPrediction"]["properties"]["prediction"]
    assert prediction["enum"] == ["high", "low", "mid", None]
    assert schemas["PredictionItem"] == schemas["ClassPrediction"]
    # a regression answer is not what this server gives
    assert not predict.is_valid({**single, "prediction": 1.5})
    item = {"type": ["string", "integer", "number", "boolean"]}
    assert {
        k: v for k, v in schemas["FeedbackItem"]["properties"]["actual"].items() if k == "type"
    } == item
    actual = _validator(spec, {"$ref": "#/components/schemas/FeedbackItem"})
    assert actual.is_valid({"id": "p", "actual": "low"}) and actual.is_valid(
        {"id": "p", "actual": 1}
    )
    assert not actual.is_valid({"id": "p", "actual": None})
    assert not actual.is_valid({"id": "p", "actual": ""})


def test_a_regression_models_document_keeps_its_shapes(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]

    assert schemas["PredictionItem"] == schemas["RegressionPrediction"]
    assert schemas["FeedbackItem"]["properties"]["actual"]["type"] == "number"
    assert "known_class" not in schemas["FeedbackAccepted"]["properties"]
    single = _validator(spec, {"$ref": "#/components/schemas/SingleResponse"})
    assert not single.is_valid(
        {
            "request_id": "r",
            "model_version": "v1",
            "id": "r",
            "prediction": "low",
            "probabilities": {"low": 1.0},
            "prediction_set": {"labels": ["low"], "level": 0.9},
            "ood": None,
        }
    )


def test_with_no_model_either_prediction_shape_is_documented() -> None:
    spec = openapi_document(None, max_batch_size=10)
    item = _validator(spec, {"$ref": "#/components/schemas/PredictionItem"})

    assert item.is_valid(
        {
            "id": "r",
            "prediction": 1.5,
            "interval": {"lower": 1, "upper": 2, "level": 0.9},
            "ood": None,
            "non_finite": None,
        }
    )
    assert item.is_valid(
        {
            "id": "r",
            "prediction": "low",
            "probabilities": {"low": 1.0},
            "prediction_set": {"labels": ["low"], "level": 0.9},
            "ood": None,
            "non_finite": None,
        }
    )
    assert item.is_valid(
        {
            "id": "r",
            "prediction": None,
            "probabilities": {"low": None, "high": 0.5},
            "prediction_set": {"labels": None, "level": 0.9},
            "ood": None,
            "non_finite": {"probabilities": {"low": "NaN"}},
        }
    )
    assert not item.is_valid(
        {
            "id": "r",
            "prediction": None,
            "probabilities": {"low": None},
            "prediction_set": {"labels": None, "level": 0.9},
            "ood": None,
            "non_finite": {"probabilities": {"low": "nan"}},
        }
    )


def test_every_operation_is_described_by_its_route(app: Flask, spec: dict[str, Any]) -> None:
    views = {
        (rule.rule, method.lower()): app.view_functions[rule.endpoint]
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }

    for (path, method), view in views.items():
        operation = spec["paths"][path][method]
        first = inspect.cleandoc(view.__doc__ or "").split("\n\n")[0]
        assert operation["summary"] and operation["summary"] == " ".join(first.split()), path
        assert operation["operationId"] == view.__name__


def test_the_fixed_shapes_are_the_models_the_routes_answer_with(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    ref = "#/components/schemas/{model}"

    for model in (api_models.Error, api_models.Queued, api_models.Health, api_models.ModelInfo):
        assert schemas[model.__name__] == {
            k: v
            for k, v in model.model_json_schema(ref_template=ref, mode="serialization").items()
            if k != "$defs"
        }
    assert schemas["RetrainRequest"] == api_models.RetrainRequest.model_json_schema(
        ref_template=ref
    )


def test_a_text_feature_of_numbers_documents_the_numbers_it_takes() -> None:
    schema = FeatureSchema(
        (Feature("rating", "categorical", categories=("1", "2", "n/a")),), target="y"
    )
    spec = openapi_document(schema, max_batch_size=10)
    features = _validator(spec, {"$ref": "#/components/schemas/Features"})

    for allowed in ("1", "n/a", "unseen", None, 1, 2.0):
        features.validate({"rating": allowed})
    for refused in (3, 1.5, True):
        assert not features.is_valid({"rating": refused}), refused
    described = spec["components"]["schemas"]["Features"]["properties"]["rating"]
    assert (
        '(1 or 1.0 for "1" or "1.0"; 1.5 for "1.5") is taken as that category'
        in (described["description"])
    )


@pytest.mark.parametrize(
    "number",
    [1, 1.0, 2, 2.5, 0, 0.0, -0.0, 10**20, 1e20, 10**20 + 1, 1.5, 1e-300, 3],
)
def test_the_document_allows_exactly_the_numbers_the_server_takes(number: Any) -> None:
    """JSON Schema's enum takes 1 for 1.0 (and 0 for -0.0): the document allowed the
    integer 1 for the category "1.0", which the server refused with 422."""
    schema = FeatureSchema(
        (
            Feature("size", "categorical", categories=("1.0", "-0.0", "1e+20", "2.50")),
            Feature("grade", "categorical", categories=("1", "1.0", "0.0")),
        ),
        target="y",
    )
    spec = openapi_document(schema, max_batch_size=10)
    features = _validator(spec, {"$ref": "#/components/schemas/Features"})
    for name in ("size", "grade"):
        record = {"size": "1.0", "grade": "1", name: number}
        try:
            validate_predict_payload({"features": record}, schema, max_batch_size=1)
            taken = True
        except ValidationFailed:
            taken = False
        assert features.is_valid(record) == taken, (name, number, taken)


_NUMBER_TEXTS = st.one_of(
    st.integers(-3, 3).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=16).map(repr),
    st.sampled_from(["1.0", "-0.0", "0.0", "0", "2.50", "1e+20", "100000000000000000000"]),
)


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.data())
def test_the_document_and_the_server_agree_on_every_number_for_any_categories(
    data: st.DataObject,
) -> None:
    """Any categories of number texts, and a number equal to one of them (as an
    integer or as a float) or none: the document allows it exactly when the server
    takes it."""
    categories = data.draw(st.lists(_NUMBER_TEXTS, min_size=1, max_size=6, unique=True))
    numbers = [float(c) for c in categories]
    near = [n for x in numbers for n in (x, -x, x + 0.5, *([int(x)] if x.is_integer() else []))]
    number = data.draw(
        st.one_of(
            st.sampled_from(near),
            st.integers(-(10**21), 10**21),
            st.floats(allow_nan=False, allow_infinity=False),
        )
    )
    schema = FeatureSchema((Feature("c", "categorical", categories=tuple(categories)),), "y")
    features = _validator(
        openapi_document(schema, max_batch_size=1), {"$ref": "#/components/schemas/Features"}
    )
    try:
        validate_predict_payload({"features": {"c": number}}, schema, max_batch_size=1)
        taken = True
    except ValidationFailed:
        taken = False
    assert features.is_valid({"c": number}) == taken, (categories, number)


def test_a_text_feature_of_decimal_numbers_documents_the_numbers_it_takes() -> None:
    """A category "1.5" refused the JSON number 1.5; the document did not list it."""
    schema = FeatureSchema(
        (Feature("size", "categorical", categories=("0.5", "1.5", "2", "2.50")),), target="y"
    )
    spec = openapi_document(schema, max_batch_size=10)
    features = _validator(spec, {"$ref": "#/components/schemas/Features"})

    for allowed in ("2.50", 0.5, 1.5, 2):
        features.validate({"size": allowed})
    for refused in (2.5, 3, 1.25):
        assert not features.is_valid({"size": refused}), refused


def test_feedback_s_responses_describe_its_refusals_with_the_database_down() -> None:
    """With the database down, a label no registered version's task takes is 422
    naming the field, the rest 503: the document's /feedback said neither (its 422 was
    only the feature schema's, and its 503 only 'the database is down')."""
    operation = openapi_document(None, max_batch_size=10)["paths"]["/feedback"]["post"]
    refused = operation["responses"]["422"]["description"]
    waiting = operation["responses"]["503"]["description"]

    assert "a label no registered version's task takes" in refused
    assert "with the database down" in refused.lower()
    assert "database_unavailable" in waiting and "422" in waiting
    assert (
        "With the database down, a label no registered version's task takes is 422"
        in (operation["description"])
    )
    # the other operations' texts say nothing of /feedback's cases
    predict = openapi_document(None, max_batch_size=10)["paths"]["/predict"]["post"]
    assert all("feedback" not in r["description"] for r in predict["responses"].values())


def test_a_document_changed_by_its_caller_leaves_the_next_one_as_built() -> None:
    """The models' schemas are built once per class and each document gets copies."""
    schema = FeatureSchema((Feature("size", "numeric"),), target="y")
    first = openapi_document(schema, max_batch_size=2)
    expected = openapi_document(schema, max_batch_size=2)
    for component in first["components"]["schemas"].values():
        component.clear()
        component["type"] = "null"

    assert openapi_document(schema, max_batch_size=2) == expected
