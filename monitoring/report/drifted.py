"""The features that drifted in a period, each with its reference and current
distributions.

A feature is shown in the window where its test was most certain (lowest p-value),
with the current sample being exactly that window's rows: the histogram, the statistic
and the p-value all describe the same comparison. Features are ranked by how many
windows they drifted in, then by that lowest p-value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from monitoring.report.distributions import categorical_histogram, numeric_histogram
from monitoring.report.records import FeatureComparison
from monitoring.report.references import References
from monitoring.report.stored_results import FeatureTests

MAX_FEATURES = 8
"""Drawn in full; the others that drifted are listed by name."""

WindowRows = Callable[[FeatureTests], pd.DataFrame]


@dataclass(frozen=True)
class DriftedFeature:
    feature: str
    model_version: str
    drifted_windows: int
    windows: int
    strongest: FeatureTests


def rank(tests: Sequence[FeatureTests]) -> list[DriftedFeature]:
    """Every (feature, version) that drifted in at least one window, most drifted first."""
    windows: dict[str, int] = {}
    drifted: dict[tuple[str, str], list[FeatureTests]] = {}
    for window in tests:
        windows[window.model_version] = windows.get(window.model_version, 0) + 1
        for feature in window.drifted:
            drifted.setdefault((feature, window.model_version), []).append(window)
    found = [
        DriftedFeature(
            feature,
            version,
            len(hits),
            windows[version],
            # lowest p-value; the later window on a tie (the newer picture)
            min(hits, key=lambda w: (w.p_values.get(feature, 1.0), -w.last_seq)),
        )
        for (feature, version), hits in drifted.items()
    ]
    found.sort(
        key=lambda d: (-d.drifted_windows, d.strongest.p_values.get(d.feature, 1.0), d.feature)
    )
    return found


def compare(
    ranked: Sequence[DriftedFeature],
    references: References,
    rows_of: WindowRows,
    *,
    limit: int = MAX_FEATURES,
) -> tuple[tuple[FeatureComparison, ...], tuple[str, ...]]:
    """Comparisons of the first ``limit`` features that can be drawn, and the names
    of the drifted features not drawn."""
    shown: list[FeatureComparison] = []
    not_shown: list[str] = []
    window_rows: dict[str, pd.DataFrame] = {}
    for drifted in ranked:
        reference = references.get(drifted.model_version)
        if len(shown) >= limit or reference is None or drifted.feature not in reference.schema:
            not_shown.append(drifted.feature)
            continue
        window = drifted.strongest
        if window.window_id not in window_rows:
            window_rows[window.window_id] = rows_of(window)
        current = window_rows[window.window_id]
        column = current[drifted.feature] if drifted.feature in current else pd.Series([])
        numeric = reference.schema[drifted.feature].is_numeric
        histogram = (numeric_histogram if numeric else categorical_histogram)(
            reference.sample[drifted.feature], column
        )
        shown.append(
            FeatureComparison(
                feature=drifted.feature,
                numeric=numeric,
                test="Kolmogorov–Smirnov" if numeric else "chi-squared",
                statistic=window.statistics.get(drifted.feature, float("nan")),
                p_value=window.p_values.get(drifted.feature, float("nan")),
                threshold=window.threshold,
                window_id=window.window_id,
                model_version=drifted.model_version,
                drifted_windows=drifted.drifted_windows,
                windows=drifted.windows,
                histogram=histogram,
            )
        )
    return tuple(shown), tuple(dict.fromkeys(not_shown))
