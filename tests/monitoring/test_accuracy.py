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
