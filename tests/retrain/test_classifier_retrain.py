"""Retraining a classifier: class labels from the log join its training data, and the
gate judges log-loss and prediction-set coverage against the champion's."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from retrain.data import labelled_predictions
from retrain.job import GatePolicy, RetrainJob, decide
from serving.log_store import LogStore
from tests.log_entries import log_entry
from watchkeeper import retrain_queue
from watchkeeper.classification import Classifier
from watchkeeper.data_source import describe_csv
from watchkeeper.dataset import Dataset, load_csv
from watchkeeper.db.tables import feedback, retrain_runs
from watchkeeper.registry import ModelRegistry
from watchkeeper.retrain_options import RetrainOptions
from watchkeeper.schema import FeatureSchema
from watchkeeper.task import Task
from watchkeeper.training import TrainingParams, train
from watchkeeper.version_metadata import ModelMetrics

POLICY = GatePolicy(margin=0.02, min_coverage=0.8, max_coverage=0.98)
SCHEMA = FeatureSchema.derive(
    pd.DataFrame({"x": [0.0], "colour": ["red"], "outcome": ["stay"]}), "outcome"
)


def _frame(n: int, *, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Churn from a number and a colour; ``shift`` moves the boundary (concept drift)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    score = x + (colour == "red") - shift * (colour == "blue") + rng.normal(scale=0.5, size=n)
    return pd.DataFrame(
        {
            "x": x,
            "colour": colour,
            "period": np.arange(n) * 6 // n,
            "outcome": np.where(score > 0.5, "churn", "stay"),
        }
    )


def _decide(candidate: dict, champion: dict) -> tuple[bool, str]:
    decision = decide(
        POLICY,
        ModelMetrics(**candidate),
        ModelMetrics(**champion),
        candidate_predictions=np.array([[0.2, 0.8]]),
        candidate_schema=SCHEMA,
        champion_schema=SCHEMA,
        task=Task.CLASSIFICATION,
    )
    return decision.promote, decision.reason


@pytest.mark.parametrize(
    ("candidate", "champion", "promote", "why"),
    [
        (
            {"log_loss": 0.30, "accuracy": 0.86, "set_coverage": 0.9},
            {"log_loss": 0.45, "accuracy": 0.80, "set_coverage": 0.85},
            True,
            "log-loss 0.3000 vs champion 0.4500 (-33.3%), accuracy 86.0% vs 80.0%, set coverage",
        ),
        (  # as accurate, but not better calibrated by the margin
            {"log_loss": 0.445, "accuracy": 0.86, "set_coverage": 0.9},
            {"log_loss": 0.45, "accuracy": 0.80, "set_coverage": 0.9},
            False,
            "log-loss 0.4450 does not beat the champion's 0.4500 by 2%",
        ),
        (  # sets that miss more often than the champion's
            {"log_loss": 0.2, "accuracy": 0.9, "set_coverage": 0.6},
            {"log_loss": 0.45, "accuracy": 0.8, "set_coverage": 0.75},
            False,
            "prediction set coverage 60.0% outside [80%, 98%] and worse than the champion's",
        ),
    ],
)
def test_the_gate_judges_a_classifier_by_log_loss_and_set_coverage(
    candidate: dict, champion: dict, promote: bool, why: str
) -> None:
    promoted, reason = _decide(candidate, champion)
    assert promoted is promote
    assert why in reason


def test_a_candidate_more_accurate_than_the_coverage_band_is_not_refused_for_coverage() -> None:
    """A classifier's set always holds its predicted class, so its coverage is at least
    its accuracy: a candidate right on all of the holdout (coverage 100 %) was refused as
    "outside [80%, 98%] and worse than the champion's 98.5%", the better model kept out
    for being better (breast-cancer data, log-loss 0.0012 vs 0.0049)."""
    promoted, reason = _decide(
        {"log_loss": 0.0012, "accuracy": 1.0, "set_coverage": 1.0},
        {"log_loss": 0.0049, "accuracy": 0.985, "set_coverage": 0.985},
    )

    assert promoted, reason
    assert "set coverage 100.0% (above 98%" in reason


def test_a_classifier_set_wider_than_its_accuracy_explains_is_still_over_the_band() -> None:
    promoted, reason = _decide(
        {"log_loss": 0.1, "accuracy": 0.9, "set_coverage": 1.0},
        {"log_loss": 0.2, "accuracy": 0.9, "set_coverage": 0.95},
    )

    assert not promoted
    assert "prediction set coverage 100.0% outside [80%, 98%]" in reason


def _log_labelled(engine: sa.Engine, model: Classifier, frame: pd.DataFrame) -> None:
    """Log ``frame``'s rows as the model's predictions (one request, through the log's
    writer) with their outcomes as class labels."""
    now = datetime.now(UTC)
    predicted = model.predict(frame[["x", "colour"]])
    classes = [float(index) for index in predicted.index.tolist()]
    LogStore(engine).insert(
        [
            log_entry(
                1,
                len(frame),
                when=now,
                request_id="r1",
                model_version=model.version,
                columns={"x": frame["x"].astype(float).tolist(), "colour": list(frame["colour"])},
                values=classes,
                lower=classes,
                upper=classes,
                probabilities=predicted.probabilities.tolist(),
            )
        ]
    )
    with engine.begin() as connection:
        connection.execute(
            feedback.insert(),
            [
                {"prediction_id": f"r1.{i}", "label": outcome, "actual": None, "received_at": now}
                for i, outcome in enumerate(frame["outcome"])
            ],
        )


@pytest.fixture
def classifier_registry(tmp_path: Path, registry_dir: Path) -> tuple[Dataset, ModelRegistry]:
    """A classifier trained on a CSV of churn outcomes, current in the registry."""
    csv = tmp_path / "churn.csv"
    _frame(2400).to_csv(csv, index=False)
    data = load_csv(csv, "outcome", period="period")
    registry = ModelRegistry(tmp_path / "classifiers")
    trained = train(data.between(None, 3), data.between(4, 5), params=TrainingParams(max_iter=30))
    registry.register(trained, data_source=describe_csv(csv, "outcome", "period"))
    return data, registry


def test_labelled_predictions_carry_class_labels_as_the_model_knows_them(
    engine: sa.Engine, classifier_registry: tuple[Dataset, ModelRegistry]
) -> None:
    _, registry = classifier_registry
    model = registry.load().model
    assert isinstance(model, Classifier)
    frame = _frame(20, seed=3)
    _log_labelled(engine, model, frame)

    labelled = labelled_predictions(
        engine, model.schema, since=datetime.now(UTC) - timedelta(days=1), classes=model.classes
    ).frame
    assert labelled["outcome"].tolist() == frame["outcome"].tolist()
    assert labelled[["x", "colour"]].to_dict("list") == frame[["x", "colour"]].to_dict("list")


def test_a_drifted_classifier_is_retrained_on_its_labels_and_promoted(
    engine: sa.Engine,
    classifier_registry: tuple[Dataset, ModelRegistry],
    make_job: Callable[..., RetrainJob],
    tmp_path: Path,
) -> None:
    """Blue customers start churning: the champion, trained before, keeps calling them
    loyal; a candidate trained with the labelled predictions learns it, and beats the
    champion's log-loss on the newest labels."""
    _, registry = classifier_registry
    champion = registry.load().model
    assert isinstance(champion, Classifier)
    _log_labelled(engine, champion, _frame(1500, shift=-2.5, seed=4))
    retrain_queue.enqueue(
        engine, trigger="manual", reason="test", options=RetrainOptions(max_iter=30)
    )

    job = make_job(
        settings={"registry_path": tmp_path / "classifiers", "retrain_min_holdout": 100},
    )
    job.registry = registry
    result = job.run()

    assert result is not None and result.outcome == "promoted", result
    assert "log-loss" in result.reason and "accuracy" in result.reason
    assert registry.current_version() == "v2"
    promoted = registry.load("v2")
    assert promoted.record.task is Task.CLASSIFICATION
    with engine.connect() as connection:
        run = connection.execute(sa.select(retrain_runs)).one()
    assert run.candidate_metrics["log_loss"] < run.champion_metrics["log_loss"]
    assert set(run.champion_metrics) >= {"accuracy", "set_coverage", "brier", "ece"}


def test_the_gate_refuses_a_candidate_whose_classes_differ_naming_them() -> None:
    decision = decide(
        POLICY,
        ModelMetrics(log_loss=0.1, accuracy=0.9, set_coverage=0.9),
        ModelMetrics(log_loss=0.5, accuracy=0.7, set_coverage=0.9),
        candidate_predictions=np.array([[0.25, 0.25, 0.25, 0.25]]),
        candidate_schema=SCHEMA,
        champion_schema=SCHEMA,
        task=Task.CLASSIFICATION,
        candidate_classes=("False", "True", "churn", "stay"),
        champion_classes=("churn", "stay"),
    )

    assert not decision.promote
    assert decision.reason == (
        "candidate's classes differ from the champion's: only in the candidate: 'False', 'True'"
    )


def test_labels_outside_the_champions_classes_are_left_out_of_training_and_named(
    engine: sa.Engine,
    classifier_registry: tuple[Dataset, ModelRegistry],
    make_job: Callable[..., RetrainJob],
    tmp_path: Path,
) -> None:
    """One label in four sent as a JSON boolean to a churn/stay model: the candidate was
    trained on them and promoted with the classes False, True, churn, stay."""
    _, registry = classifier_registry
    champion = registry.load().model
    assert isinstance(champion, Classifier)
    frame = _frame(1500, shift=-2.5, seed=4)
    frame["outcome"] = frame["outcome"].astype(object)
    frame.loc[::4, "outcome"] = np.resize(["True", "False"], len(frame.loc[::4]))
    _log_labelled(engine, champion, frame)
    retrain_queue.enqueue(
        engine, trigger="manual", reason="test", options=RetrainOptions(max_iter=30)
    )

    job = make_job(
        settings={"registry_path": tmp_path / "classifiers", "retrain_min_holdout": 100},
    )
    job.registry = registry
    result = job.run()

    assert result is not None and result.outcome != "failed", result
    candidate = registry.load("v2").model
    assert isinstance(candidate, Classifier)
    assert candidate.classes == champion.classes
    with engine.connect() as connection:
        run = connection.execute(sa.select(retrain_runs)).one()
    [left] = run.data["left_out"]
    assert left["reason"] == "unknown_class" and left["count"] == len(frame.loc[::4])
    assert left["prediction_ids"][:2] == ["r1.0", "r1.4"]
    assert "naming no class of the champion ('False', 'True')" in run.decision_reason
    assert run.data["labelled_rows"] == len(frame) - len(frame.loc[::4])
