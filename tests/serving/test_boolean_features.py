"""A feature trained from a boolean column: its categories are "True" and "False", and
a client's JSON booleans are those values, answered and logged as their text."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.serving.conftest import LogReader, classification_frame
from watchkeeper.dataset import Dataset
from watchkeeper.registry import ModelRegistry
from watchkeeper.training import TrainingParams, train


@pytest.fixture(scope="module")
def flag_registry_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = classification_frame(seed=1)
    frame["sunny"] = frame["x2"] > 5  # a boolean column, as a CSV's True/False is read
    frame["level"] = frame["x1"] + 3 * frame["sunny"]
    dataset = Dataset(name="flags", frame=frame, target="level", exclude=("grade", "outcome"))
    trained = train(dataset, params=TrainingParams(max_iter=30, reference_rows=300))
    assert trained.model.schema["sunny"].categories == ("False", "True")
    root = tmp_path_factory.mktemp("flag-registry")
    ModelRegistry(root).register(trained)
    return root


@pytest.fixture
def flag_app(make_app: Callable[..., Flask], tmp_path: Path, flag_registry_template: Path) -> Flask:
    registry = tmp_path / "flag-registry"
    shutil.copytree(flag_registry_template, registry)
    return make_app(registry_path=registry)


ROWS = [
    {"x1": 0.5, "x2": 7.0, "colour": "red", "sunny": True},
    {"x1": -1.0, "x2": 2.0, "colour": "blue", "sunny": False},
    {"x1": 0.0, "x2": 4.0, "colour": "green", "sunny": None},
]


def _as_text(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "sunny": None if row["sunny"] is None else str(row["sunny"])}


def _values(body: dict[str, Any]) -> list[float]:
    predictions = body.get("predictions", [body])
    return [p["prediction"] for p in predictions]


@pytest.mark.parametrize("form", ["features", "instances", "columns"])
def test_json_booleans_are_answered_and_logged_as_their_category(
    flag_app: Flask, read_log: Callable[[Flask], LogReader], form: str
) -> None:
    client = flag_app.test_client()
    rows = ROWS[:1] if form == "features" else ROWS

    def body(records: list[dict[str, Any]]) -> dict[str, Any]:
        if form == "features":
            return {"features": records[0]}
        if form == "instances":
            return {"instances": records}
        return {"columns": {name: [r[name] for r in records] for name in records[0]}}

    sent = client.post("/predict", json=body(rows))
    as_text = client.post("/predict", json=body([_as_text(r) for r in rows]))

    assert sent.status_code == 200, sent.json
    assert _values(sent.json) == _values(as_text.json)
    # the log holds what the model saw, for the monitor and retraining alike
    logged = [
        p for p in read_log(flag_app).predictions() if p["request_id"] == sent.json["request_id"]
    ]
    assert [p["features"]["sunny"] for p in logged] == [_as_text(r)["sunny"] for r in rows]


def test_a_boolean_for_a_text_feature_is_still_refused(flag_app: Flask) -> None:
    response = flag_app.test_client().post(
        "/predict", json={"features": {**ROWS[0], "colour": True}}
    )
    assert response.status_code == 422
    assert response.json["error"]["details"] == [
        {"field": "features.colour", "problem": "must be a string, got boolean"}
    ]


@pytest.mark.parametrize("spelling", [str.lower, str.upper])
@pytest.mark.parametrize("form", ["instances", "columns"])
def test_a_boolean_spelled_as_a_csv_spells_it_is_its_category(
    flag_app: Flask, read_log: Callable[[Flask], LogReader], form: str, spelling: Any
) -> None:
    """pandas reads a CSV's true/false as booleans, so the model learnt the categories
    "True" and "False"; a client sending the file's own text "true" got the answer for
    an unseen (missing) value with a 200: 10.5 where "True" gave 95.1."""
    client = flag_app.test_client()
    spelled = [
        {**r, "sunny": None if r["sunny"] is None else spelling(str(r["sunny"]))} for r in ROWS
    ]
    many = 200  # past the size from which a batch's categories are coded
    records = {"instances": spelled * many, "columns": spelled}[form]
    body = (
        {"instances": records}
        if form == "instances"
        else {"columns": {name: [r[name] for r in records] for name in records[0]}}
    )

    sent = client.post("/predict", json=body)
    as_text = client.post("/predict", json={"instances": [_as_text(r) for r in records]})

    assert sent.status_code == 200, sent.json
    assert _values(sent.json) == _values(as_text.json)
    logged = [
        p for p in read_log(flag_app).predictions() if p["request_id"] == sent.json["request_id"]
    ]
    assert [p["features"]["sunny"] for p in logged[:3]] == [_as_text(r)["sunny"] for r in ROWS]
