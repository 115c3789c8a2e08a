"""The rows the monitor scored furthest out of distribution, each with the numeric
values that put it there: those furthest outside the reference's 1st–99th
percentile, in units of that range."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from monitoring.report.log_rows import FeatureValues, ScoredRow
from monitoring.report.records import OodRow, UnusualValue, WindowSummary
from monitoring.report.references import Reference, References
from monitoring.report.text import label
from watchkeeper.task import label_text

UNUSUAL_SHOWN = 3


def build(
    found: Sequence[ScoredRow],
    windows: Sequence[WindowSummary],
    references: References,
) -> tuple[OodRow, ...]:
    ranges: dict[str, dict[str, tuple[float, float]]] = {}
    classes: dict[str, tuple[Any, ...] | None] = {}
    rows = []
    for row in found:
        version = row.model_version
        if version not in ranges:
            reference = references.get(version)
            ranges[version] = {} if reference is None else _ranges(reference)
            classes[version] = None if reference is None else reference.classes
        rows.append(
            OodRow(
                seq=row.seq,
                prediction_id=row.prediction_id,
                created_at=row.created_at,
                model_version=version,
                score=row.ood_score,
                threshold=_threshold(row.seq, version, windows),
                prediction=row.prediction,
                unusual=_unusual(row.features, ranges[version]),
                features=tuple((str(k), _shown(v)) for k, v in row.features.items()),
                predicted_class=_class(row.prediction, classes[version]),
            )
        )
    return tuple(rows)


def _ranges(reference: Reference) -> dict[str, tuple[float, float]]:
    out = {}
    for feature in reference.schema.numeric:
        values = pd.to_numeric(reference.sample[feature.name], errors="coerce").dropna()
        if len(values):
            low, high = np.percentile(values.to_numpy(dtype=np.float64), [1, 99])
            out[feature.name] = (float(low), float(high))
    return out


def _unusual(
    features: FeatureValues, ranges: dict[str, tuple[float, float]]
) -> tuple[UnusualValue, ...]:
    scored = []
    for name, (low, high) in ranges.items():
        value = features.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value):
            continue
        outside = max(low - value, value - high, 0.0) / max(high - low, 1e-9)
        if outside > 0:
            scored.append((outside, UnusualValue(name, float(value), low, high)))
    scored.sort(key=lambda item: (-item[0], item[1].feature))
    return tuple(value for _, value in scored[:UNUSUAL_SHOWN])


def _threshold(seq: int, version: str, windows: Sequence[WindowSummary]) -> float | None:
    for window in windows:
        if window.model_version == version and window.first_seq <= seq <= window.last_seq:
            return window.ood_threshold
    return None


def _class(index: float, classes: tuple[Any, ...] | None) -> str | None:
    """A classifier's logged class index as its label."""
    if classes is None or not index.is_integer() or not 0 <= index < len(classes):
        return None
    return label_text(classes[int(index)])


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.6g}"
    return label(str(value))
