"""The detector suite on real Ames data: few false alarms on the training period,
known shifts detected and named, saved and loaded without refitting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from monitoring.detectors import DetectorSuite
from watchkeeper.training import TrainedModel

P_VALUE = 0.05
TOLERANCE = 0.10


def _windows(frame: pd.DataFrame, n: int, size: int) -> list[pd.DataFrame]:
    return [frame.sample(size, random_state=seed) for seed in range(n)]


def test_feature_drift_false_alarm_rate_on_the_training_period_is_within_tolerance(
    suite: DetectorSuite, training_split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    _, fresh = training_split
    alarms = [suite.feature_drift(w).is_drift for w in _windows(fresh, 40, 200)]

    assert np.mean(alarms) <= P_VALUE + TOLERANCE


def test_multivariate_drift_false_alarm_rate_on_the_training_period_is_within_tolerance(
    suite: DetectorSuite, training_split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    _, fresh = training_split
    alarms = [suite.multivariate_drift(w).is_drift for w in _windows(fresh, 10, 200)]

    assert np.mean(alarms) <= P_VALUE + 2 * TOLERANCE


def test_shift_in_one_numeric_and_one_categorical_feature_is_detected_and_named(
    suite: DetectorSuite, training_split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    _, fresh = training_split
    window = fresh.sample(200, random_state=3).copy()
    window["Gr_Liv_Area"] = window["Gr_Liv_Area"] * 1.4
    window["Neighborhood"] = "Old_Town"

    result = suite.feature_drift(window)

    assert result.is_drift
    assert {"Gr_Liv_Area", "Neighborhood"} <= set(result.drifted)
    assert result.p_values["Gr_Liv_Area"] < result.threshold
    assert result.distances["Gr_Liv_Area"] > 0.2


def test_output_drift_sees_shifted_predictions(
    suite: DetectorSuite, trained: TrainedModel, training_split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    _, fresh = training_split
    predictions = trained.model.predict(fresh).value

    assert not suite.output_drift(predictions).is_drift
    assert suite.output_drift(predictions * 1.5).is_drift


def test_saved_suite_loads_and_gives_the_same_answers(
    suite: DetectorSuite, training_split: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    _, fresh = training_split
    window = fresh.head(200)
    suite.save(tmp_path / "detectors")

    loaded = DetectorSuite.load(tmp_path / "detectors")

    assert loaded.feature_drift(window) == suite.feature_drift(window)
    np.testing.assert_allclose(loaded.ood_scores(window), suite.ood_scores(window))
    assert loaded.ood_threshold == suite.ood_threshold


def test_records_far_outside_training_get_high_ood_scores(
    suite: DetectorSuite, training_split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    reference, fresh = training_split
    normal = fresh.sample(200, random_state=4)
    extreme = normal.copy()
    extreme["Gr_Liv_Area"] = reference["Gr_Liv_Area"].max() * 10

    normal_scores, extreme_scores = suite.ood_scores(normal), suite.ood_scores(extreme)

    assert np.mean(normal_scores > suite.ood_threshold) <= 0.05
    assert np.all(extreme_scores > suite.ood_threshold)
    assert np.all(extreme_scores > normal_scores)
