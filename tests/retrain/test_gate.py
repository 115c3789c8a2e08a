"""The promotion gate judges interval coverage against the champion's on the same
holdout: under drift a candidate whose coverage is outside the band but better than
the champion's (and whose MAE is better) replaces it, and the reason says so."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import orjson
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from retrain.job import GatePolicy, RetrainJob, decide
from serving.app import create_app, shutdown
from serving.services import services
from watchkeeper import retrain_queue
from watchkeeper.dataset import Dataset
from watchkeeper.db.tables import retrain_runs
from watchkeeper.registry import ModelRegistry
from watchkeeper.schema import FeatureSchema
from watchkeeper.settings import Settings
from watchkeeper.training import TrainedModel
from watchkeeper.version_metadata import ModelMetrics

POLICY = GatePolicy(margin=0.02, min_coverage=0.8, max_coverage=0.98)


def _decide(trained: TrainedModel, candidate: dict, champion: dict) -> tuple[bool, str]:
    schema = trained.model.schema
    decision = decide(
        POLICY,
        ModelMetrics(**candidate),
        ModelMetrics(**champion),
        candidate_predictions=np.array([1.0, 2.0]),
        candidate_schema=schema,
        champion_schema=schema,
    )
    return decision.promote, decision.reason


@pytest.mark.parametrize(
    ("candidate", "champion", "promote", "why"),
    [
        # the case measured under real drift: MAE 1,252 vs 1,898, coverage 7.9 % vs 0 %
        (
            {"mae": 1252.0, "coverage": 0.079},
            {"mae": 1898.0, "coverage": 0.0},
            True,
            "coverage 7.9% outside [80%, 98%] but better than the champion's 0.0% on the same",
        ),
        (  # too wide on both sides: the one nearer the band is not worse
            {"mae": 90.0, "coverage": 0.99},
            {"mae": 100.0, "coverage": 1.0},
            True,
            "better than the champion's 100.0%",
        ),
        (  # further from the band than the champion: still refused
            {"mae": 50.0, "coverage": 0.5},
            {"mae": 100.0, "coverage": 0.7},
            False,
            "coverage 50.0% outside [80%, 98%] and worse than the champion's 70.0%",
        ),
        (  # within the band: the champion's coverage does not matter
            {"mae": 90.0, "coverage": 0.85},
            {"mae": 100.0, "coverage": 0.9},
            True,
            "coverage 85.0%",
        ),
        (  # better coverage does not excuse a worse MAE
            {"mae": 120.0, "coverage": 0.3},
            {"mae": 100.0, "coverage": 0.0},
            False,
            "does not beat the champion",
        ),
    ],
    ids=["drifted", "both-too-wide", "worse-coverage", "in-band", "worse-mae"],
)
def test_coverage_is_judged_against_the_champion_on_the_same_holdout(
    trained: TrainedModel, candidate: dict, champion: dict, promote: bool, why: str
) -> None:
    decided, reason = _decide(trained, candidate, champion)

    assert decided is promote, reason
    assert why in reason


@pytest.mark.parametrize(
    ("mae", "expected"),
    [
        (0.0157, "MAE 0.0157 vs champion 0.0236 (-33.5%)"),
        (0.0235, "MAE 0.0235 does not beat the champion's 0.0236 by 2% (needs < 0.0231)"),
    ],
)
def test_a_small_targets_errors_are_written_by_their_scale_not_as_zero(
    trained: TrainedModel, mae: float, expected: str
) -> None:
    """A 0/1-scale target's run read `MAE 0 vs champion 0 (-33.5%)`."""
    _, reason = _decide(trained, {"mae": mae, "coverage": 0.9}, {"mae": 0.0236, "coverage": 0.9})

    assert reason.startswith(expected)


PRICE_RAMP = (1.0, 4.0)
"""Labelled prices are the sales' prices times a factor rising from the first to the
last prediction: a drift of the target that goes on, so that the newest (the holdout)
are beyond the champion's interval and beyond the older labels the candidate learns."""


@pytest.fixture
def drifted_log(settings: Settings, ames: Dataset) -> int:
    """Every 2008–2010 sale predicted through the API, its price times the rising
    factor posted as feedback."""
    app = create_app(settings, registry=CollectorRegistry())
    client = app.test_client()
    frame = ames.between(200801, 201012).frame
    names = list(services(app).model_store.get().model.schema.names)
    records = orjson.loads(frame[names].to_json(orient="records"))
    ids: list[str] = []
    for start in range(0, len(records), 500):
        response = client.post("/predict", json={"instances": records[start : start + 500]})
        ids += [item["id"] for item in response.json["predictions"]]
    assert services(app).prediction_log.flush(timeout=120)
    prices = frame["Sale_Price"].to_numpy() * np.linspace(*PRICE_RAMP, len(frame))
    items = [{"id": i, "actual": float(p)} for i, p in zip(ids, prices, strict=True)]
    assert client.post("/feedback", json={"items": items}).status_code == 200
    shutdown(app)
    services(app).engine.dispose()
    return len(ids)


def test_under_drift_a_better_candidate_with_low_coverage_replaces_a_champion_with_none(
    make_job: Callable[..., RetrainJob], drifted_log: int, engine: sa.Engine, settings: Settings
) -> None:
    retrain_queue.enqueue(engine, trigger="monitor", reason="drift")

    result = make_job().run()

    with engine.connect() as connection:
        [run] = [dict(r._mapping) for r in connection.execute(sa.select(retrain_runs))]
    candidate, champion = run["candidate_metrics"], run["champion_metrics"]
    assert champion["coverage"] == 0.0
    assert 0 < candidate["coverage"] < settings.retrain.min_coverage, candidate
    assert candidate["mae"] < champion["mae"] * (1 - settings.retrain.margin)
    assert result.outcome == run["outcome"] == "promoted", run["decision_reason"]
    assert "better than the champion's 0.0% on the same holdout" in run["decision_reason"]
    assert ModelRegistry(settings.storage.registry_path).current_version() == "v2"


def test_a_candidate_whose_schema_differs_is_refused_naming_each_feature(
    trained: TrainedModel,
) -> None:
    schema = trained.model.schema
    changed = FeatureSchema(
        tuple(
            replace(f, kind="categorical") if f.name in ("Lot_Frontage", "Lot_Area") else f
            for f in schema.features
            if f.name != "Garage_Area"
        ),
        schema.target,
    )
    decision = decide(
        POLICY,
        ModelMetrics(mae=1.0, coverage=0.9),
        ModelMetrics(mae=100.0, coverage=0.9),
        candidate_predictions=np.array([1.0]),
        candidate_schema=changed,
        champion_schema=schema,
    )

    assert not decision.promote
    assert decision.reason == (
        "candidate's feature schema differs from the champion's: Lot_Frontage: categorical "
        "in the candidate, numeric in the champion; Lot_Area: categorical in the candidate, "
        "numeric in the champion; Garage_Area: only in the champion"
    )
