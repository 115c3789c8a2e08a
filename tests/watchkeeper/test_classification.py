"""Classifiers in the core: task detection, prediction sets, metrics, registry."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from watchkeeper.classification import (
    Classifier,
    ClassPredictions,
    PredictionSetSpec,
    classification_metrics,
    expected_calibration_error,
)
from watchkeeper.dataset import Dataset
from watchkeeper.errors import ArtifactIntegrityError, UnfittableData
from watchkeeper.model import Model
from watchkeeper.registry import ModelRegistry
from watchkeeper.task import Task, detect_task, json_label, label_text
from watchkeeper.training import TrainingParams, train

FAST = TrainingParams(max_iter=30)


def _frame(n: int = 2400, seed: int = 0) -> pd.DataFrame:
    """Two noisy classes from a number and a category, over 8 periods."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    score = x + (colour == "red") + rng.normal(scale=0.8, size=n)
    return pd.DataFrame(
        {
            "x": x,
            "colour": colour,
            "period": np.arange(n) * 8 // n,
            "outcome": np.where(score > 0.5, "churn", "stay"),
        }
    )


def _dataset(frame: pd.DataFrame, target: str = "outcome") -> Dataset:
    return Dataset("synthetic", frame, target, period="period", exclude=("period",))


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (["a", "b", "a"], Task.CLASSIFICATION),
        ([True, False, True], Task.CLASSIFICATION),
        ([0, 1, 1, 0], Task.CLASSIFICATION),
        ([0.0, 1.0, np.nan], Task.CLASSIFICATION),
        ([1.5, 2.0, 7.25], Task.REGRESSION),
        ([1, 2, 3, 4], Task.REGRESSION),
    ],
)
def test_task_is_detected_from_the_target(values: list[object], task: Task) -> None:
    assert detect_task(pd.Series(values)) is task


def test_one_label_in_its_json_forms_matches_as_one_class() -> None:
    assert label_text(1) == label_text(1.0) == label_text("1") == label_text(np.int64(1)) == "1"
    assert label_text(True) == label_text("True") != label_text(1)
    assert json_label(np.float64(2.0)) == 2 and isinstance(json_label(np.float64(2.0)), int)
    assert json_label(np.bool_(False)) is False


def test_a_text_target_trains_a_classifier_with_sets_holding_the_predicted_class() -> None:
    data = _dataset(_frame())
    trained = train(data.between(None, 4), data.between(5, 5), params=FAST)

    model = trained.model
    assert isinstance(model, Classifier) and model.task is Task.CLASSIFICATION
    assert model.classes == ("churn", "stay")
    predicted = model.predict(data.between(6, 7).frame[["x", "colour"]])
    assert np.allclose(predicted.probabilities.sum(axis=1), 1.0)
    assert predicted.members[np.arange(len(predicted.index)), predicted.index].all()
    measured = trained.metrics.model_fields_set
    assert measured >= {"accuracy", "log_loss", "brier", "set_coverage", "ece"}
    assert 0.7 < trained.metrics.accuracy < 1.0


def test_the_prediction_set_covers_the_nominal_share_of_later_rows() -> None:
    """On rows like the training rows, the conformal set holds the true class at the
    nominal 90 % (sampling error of 2,000 rows: about ±1.3 %)."""
    data = _dataset(_frame(n=6000, seed=1))
    trained = train(data.between(None, 3), data.between(4, 7), params=FAST)

    assert trained.metrics.rows == 3000
    assert 0.87 <= trained.metrics.set_coverage <= 0.95
    assert 1.0 < trained.metrics.set_size < 2.0


def test_a_zero_one_target_is_a_binary_classifier_answering_numbers() -> None:
    frame = _frame()
    frame["outcome"] = (frame["outcome"] == "churn").astype(int)
    data = _dataset(frame)
    model = train(data.between(None, 5), params=FAST).model

    assert isinstance(model, Classifier) and model.classes == (0, 1)
    assert model.class_index("1") == model.class_index(1.0) == 1
    assert model.class_index("maybe") is None


def test_a_target_with_one_class_is_refused_by_name() -> None:
    frame = _frame()
    frame["outcome"] = "stay"
    with pytest.raises(ValueError, match="target 'outcome' holds a single class"):
        train(_dataset(frame).between(None, 5), params=FAST)


@pytest.mark.parametrize(
    ("label", "problem"),
    [
        ("x" * 257, "of 257 characters: labels /feedback takes have at most 256"),
        ("a\x00b", "with a NUL"),
    ],
)
def test_a_class_feedback_could_never_name_is_refused_by_name(label: str, problem: str) -> None:
    """A class of 300 characters was trained and served as `prediction`, and /feedback
    refused its label with 422: its outcomes could never be counted."""
    frame = _frame()
    frame.loc[frame["outcome"] == "churn", "outcome"] = label
    with pytest.raises(UnfittableData, match=f"target 'outcome' has a class {problem}"):
        train(_dataset(frame).between(None, 5), params=FAST)


def test_a_class_of_the_longest_label_feedback_takes_is_trained() -> None:
    frame = _frame()
    frame.loc[frame["outcome"] == "churn", "outcome"] = "x" * 256
    model = train(_dataset(frame).between(None, 5), params=FAST).model
    assert isinstance(model, Classifier) and "x" * 256 in model.classes


def test_classification_metrics_match_hand_computed_values() -> None:
    predicted = ClassPredictions(
        classes=("a", "b", "c"),
        probabilities=np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1]]),
        members=PredictionSetSpec(0.9, 0.35).members(
            np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1]])
        ),
    )
    metrics = classification_metrics(["a", "c", "b"], predicted)

    assert metrics.accuracy == pytest.approx(1 / 3)
    assert metrics.log_loss == pytest.approx(-(np.log(0.7) + np.log(0.3) + np.log(0.4)) / 3)
    brier = (
        (0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.6**2 + 0.7**2) + (0.5**2 + 0.6**2 + 0.1**2)
    ) / 3
    assert metrics.brier == pytest.approx(brier)
    # sets: {a}, {b}, {a, b}: the second row's true class c is outside
    assert metrics.set_coverage == pytest.approx(2 / 3)
    assert metrics.set_size == pytest.approx(4 / 3)
    assert metrics.recall == {"a": 1.0, "b": 0.0, "c": 0.0}
    # the record the version's metadata stores: exactly the figures computed
    assert set(metrics.stored()) == {
        "accuracy",
        "log_loss",
        "brier",
        "set_coverage",
        "set_size",
        "ece",
        "recall",
        "rows",
    }


def test_a_label_the_model_never_saw_counts_wrong_outside_every_set() -> None:
    probabilities = np.array([[0.9, 0.1]])
    predicted = ClassPredictions(("a", "b"), probabilities, np.array([[True, True]]))
    metrics = classification_metrics(["z"], predicted)

    assert metrics.accuracy == 0.0 and metrics.set_coverage == 0.0
    assert metrics.log_loss == pytest.approx(-np.log(1e-15))


def test_expected_calibration_error_is_zero_when_confidence_matches_accuracy() -> None:
    confidence = np.array([0.75] * 4 + [0.95] * 20)
    correct = np.array([1, 1, 1, 0] + [1] * 19 + [0])
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([0.9, 0.9]), np.array([0, 0])) == pytest.approx(0.9)


def test_the_confidence_map_lowers_an_overconfident_model() -> None:
    data = _dataset(_frame(n=4000, seed=2))
    model = train(data.between(None, 5), params=FAST).model
    assert isinstance(model, Classifier)

    mapped = model.calibration.expected_accuracy(np.array([0.5, 0.99]))
    assert 0.4 <= mapped[0] <= mapped[1] <= 1.0


def test_a_classifier_round_trips_through_the_registry(tmp_path: Path) -> None:
    data = _dataset(_frame())
    trained = train(data.between(None, 4), data.between(5, 5), params=FAST)
    registry = ModelRegistry(tmp_path)
    version = registry.register(trained)

    loaded = registry.load(version)
    assert isinstance(loaded.model, Classifier)
    assert loaded.record.task is Task.CLASSIFICATION and loaded.record.level == 0.9
    rows = data.between(6, 7).frame[["x", "colour"]]
    expected, actual = trained.model.predict(rows), loaded.model.predict(rows)
    assert np.array_equal(expected.probabilities, actual.probabilities)
    assert np.array_equal(expected.members, actual.members)
    meta = registry.metadata(version)
    assert meta["task"] == "classification" and "interval" not in meta


def test_a_classifier_without_its_prediction_set_is_one_integrity_error(tmp_path: Path) -> None:
    data = _dataset(_frame())
    registry = ModelRegistry(tmp_path)
    version = registry.register(train(data.between(None, 5), params=FAST))
    path = tmp_path / "versions" / version / "metadata.json"
    meta = json.loads(path.read_text())
    del meta["prediction_set"]
    path.write_text(json.dumps(meta))

    with pytest.raises(ArtifactIntegrityError, match="prediction_set required for a classifier"):
        registry.load(version)


def test_metadata_written_before_tasks_loads_as_a_regression_model(
    registry_dir: Path,
) -> None:
    registry = ModelRegistry(registry_dir)
    path = registry_dir / "versions" / "v1" / "metadata.json"
    meta = json.loads(path.read_text())
    meta.pop("task")
    path.write_text(json.dumps(meta))

    record = registry.record("v1")
    assert record.task is Task.REGRESSION
    assert isinstance(registry.load("v1").model, Model)


def test_train_command_trains_a_classifier_and_model_show_speaks_its_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from watchkeeper_cli.main import main

    csv = tmp_path / "churn.csv"
    _frame().to_csv(csv, index=False)
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(tmp_path / "registry"))
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path))

    argv = ["train", "--csv", str(csv), "--target", "outcome", "--period", "period"]
    assert main([*argv, "--max-iter", "30"]) == 0
    trained = capsys.readouterr().out
    assert re.search(
        r"accuracy \d+\.\d%, log-loss 0\.\d{3}, Brier 0\.\d{3}, 90% prediction set", trained
    )

    assert main(["model", "show"]) == 0
    shown = capsys.readouterr().out
    assert "(90% prediction set)" in shown and "classes:     2 (churn, stay)" in shown
    assert "MAE" not in shown
    assert main(["model", "list"]) == 0
    assert "log-loss" in capsys.readouterr().out.splitlines()[0]


def test_train_command_takes_the_task_for_a_numeric_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ratings 1–5 are numbers: a regression model unless --task classification."""
    from watchkeeper_cli.main import main

    frame = _frame()
    frame["outcome"] = np.digitize(frame["x"], [-1.0, -0.3, 0.3, 1.0]) + 1
    csv = tmp_path / "ratings.csv"
    frame.to_csv(csv, index=False)
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(tmp_path / "registry"))
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path))
    argv = ["train", "--csv", str(csv), "--target", "outcome", "--period", "period"]

    assert main([*argv, "--max-iter", "30", "--task", "classification", "--force"]) == 0
    registry = ModelRegistry(tmp_path / "registry")
    assert registry.record("v1").task is Task.CLASSIFICATION
    assert registry.record("v1").classes == (1, 2, 3, 4, 5)


def test_model_list_writes_a_decimal_year_period_briefly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Texas housing's periods are decimal years: 2009.8333333333333 was printed whole."""
    from watchkeeper_cli.main import main

    frame = _frame()
    frame["period"] = 2000 + frame["period"] / 12
    csv = tmp_path / "months.csv"
    frame.to_csv(csv, index=False)
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(tmp_path / "registry"))
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path))
    argv = ["train", "--csv", str(csv), "--target", "outcome", "--period", "period"]
    assert main([*argv, "--max-iter", "20", "--force"]) == 0
    capsys.readouterr()

    assert main(["model", "list"]) == 0
    listed = capsys.readouterr().out
    assert "months 2000.42 to 2000.5" in listed and "2000.4166" not in listed
