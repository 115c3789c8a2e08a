"""Accuracy figures of a set of labelled predictions: the MAE's lower confidence bound
the retrain trigger relies on, and a MAPE only where a percentage means something."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from monitoring.accuracy import AccuracyMetrics, mae_lower_bound


def _labelled(actual: list[float], predicted: list[float], half_width: float) -> pd.DataFrame:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return pd.DataFrame(
        {
            "actual": actual,
            "prediction": predicted,
            "lower": [p - half_width for p in predicted],
            "upper": [p + half_width for p in predicted],
            "created_at": [now] * len(actual),
            "received_at": [now + timedelta(hours=1)] * len(actual),
        }
    )


def test_the_lower_bound_tightens_toward_the_mae_as_labels_accumulate() -> None:
    rng = np.random.default_rng(0)
    errors = np.abs(rng.normal(0, 100, 2000))

    few, many = mae_lower_bound(errors[:50], 0.99), mae_lower_bound(errors, 0.99)

    assert few < many < errors.mean()
    assert errors.mean() - many < (errors[:50].mean() - few) / 4  # ~1/sqrt(40) as wide
    assert mae_lower_bound(errors[:1], 0.99) == 0.0  # one label says nothing


def test_metrics_of_a_positive_target_include_a_mape_and_the_interval_coverage() -> None:
    metrics = AccuracyMetrics.of(
        _labelled([100.0, 200.0, 400.0], [110.0, 180.0, 400.0], half_width=15.0),
        confidence=0.99,
    )

    assert metrics.mae == pytest.approx(10.0)
    assert metrics.mape == pytest.approx((10 + 10 + 0) / 3)
    assert metrics.coverage == pytest.approx(2 / 3)
    assert metrics.label_delay_seconds_median == 3600.0


def test_no_mape_for_a_target_near_zero_or_of_either_sign() -> None:
    """A percentage of an actual near zero read 239 % and was exported."""
    labelled = _labelled([0.01, -0.5, 1.0, 0.0], [0.3, 0.2, 0.8, 0.1], half_width=0.5)

    metrics = AccuracyMetrics.of(labelled, confidence=0.99, positive_target=False)

    assert metrics.mape is None
    assert metrics.mae == pytest.approx((0.29 + 0.7 + 0.2 + 0.1) / 4)


def test_extreme_labels_are_left_out_and_counted_and_every_figure_stays_finite() -> None:
    """Two labels of ±1e308 made the MAE, RMSE and lower bound inf or NaN (the sum, the
    square and inf - inf overflowed), and blinded the rolling figure for 1,000 labels."""
    predicted = [100.0 + i for i in range(100)]
    actual = [p * 1.1 for p in predicted]
    actual[10], actual[20], actual[30] = 1e308, -1e308, 2.0**70

    metrics = AccuracyMetrics.of(_labelled(actual, predicted, half_width=15.0), confidence=0.99)

    assert metrics.implausible_labels == 3
    assert metrics.labels == 97
    kept = [0.1 * p for i, p in enumerate(predicted) if i not in (10, 20, 30)]
    assert metrics.mae == pytest.approx(np.mean(kept))
    assert metrics.rmse == pytest.approx(np.sqrt(np.mean(np.square(kept))))
    assert 0 < metrics.mae_lower_bound < metrics.mae
    assert metrics.mape == pytest.approx(100 / 11)


def test_a_label_far_below_the_models_scale_counts_in_the_mae_but_not_the_mape() -> None:
    """A house price of 5e-324 made the MAPE infinite (1e5 / 5e-324 overflows)."""
    metrics = AccuracyMetrics.of(
        _labelled([100.0, 200.0, 5e-324], [110.0, 180.0, 150.0], half_width=15.0),
        confidence=0.99,
    )

    assert metrics.implausible_labels == 0
    assert metrics.mae == pytest.approx((10 + 20 + 150) / 3)
    assert metrics.mape == pytest.approx((10 + 10) / 2)


def test_figures_of_errors_near_the_largest_float_are_finite() -> None:
    """A model that predicts near 1e308 has errors of that size: no figure overflows."""
    predicted = [1e308, -1e308, 9e307, -9e307]
    actual = [5e307, -5e307, 4e307, -4e307]

    metrics = AccuracyMetrics.of(
        _labelled(actual, predicted, half_width=0.0), confidence=0.99, positive_target=False
    )

    assert metrics.implausible_labels == 0
    figures = (metrics.mae, metrics.rmse, metrics.abs_error_std, metrics.mae_lower_bound)
    assert all(np.isfinite(figures))
    assert metrics.mae == pytest.approx(5e307)
    assert metrics.rmse == pytest.approx(5e307)


def test_the_lower_bound_of_an_mae_is_never_negative() -> None:
    assert mae_lower_bound(np.array([0.0, 1e308]), 0.99) == 0.0
    assert mae_lower_bound(np.array([1.0, 100.0, 3.0]), 0.99) == 0.0


def test_labels_implausible_in_bulk_are_measured_not_left_out() -> None:
    """A few absurd labels are a broken client; most of a window's labels far from the
    predictions are what happened (a unit changed upstream, a level shift): left out,
    they would blind accuracy monitoring exactly when it matters."""
    predicted = [100.0 + i for i in range(100)]
    actual = [p * 1e6 for p in predicted]  # grams to milligrams, say

    metrics = AccuracyMetrics.of(_labelled(actual, predicted, half_width=15.0), confidence=0.99)

    assert metrics.implausible_labels == 0
    assert metrics.labels == 100
    assert metrics.mae == pytest.approx(np.mean(np.abs(np.subtract(actual, predicted))))
    assert np.isfinite(metrics.mae_lower_bound) and metrics.mae_lower_bound > 1e6
