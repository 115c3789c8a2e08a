"""A monitor window's verdict as one log line, for the person watching the monitor.

Built from the window's result rows (one per check, as stored in ``window_results``)::

    window v1:1-500 (500 rows): DRIFT: 7 of 31 features drifted, output drift, no
    multivariate drift; OOD 3.4 %, rejected 0.0 %, estimated MAE 16,210
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _failed(result: dict[str, Any]) -> bool:
    return "error" in result["details"]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}".replace("%", " %")


def window_verdict(results: Sequence[dict[str, Any]], min_samples: int) -> str:
    """One line: the window, whether it drifted and why, its OOD and rejected shares,
    and which checks failed."""
    by_check = {r["detector"]: r for r in results}
    first = results[0]
    head = f"window {first['window_id']} ({first['n_rows']} rows)"
    parts: list[str] = []
    features = by_check.get("feature_drift")
    if features is None:
        verdict = f"no drift verdict (fewer than {min_samples} rows)"
    elif _failed(features):
        verdict = "no drift verdict (the feature drift check failed)"
    else:
        drifted = len(features["details"].get("drifted", []))
        tested = len(features["details"].get("p_values", {}))
        verdict = "DRIFT" if features["is_drift"] else "no drift"
        parts.append(f"{drifted} of {tested} features drifted")
    for check, name in (("output_drift", "output"), ("multivariate_drift", "multivariate")):
        result = by_check.get(check)
        if result is not None and not _failed(result):
            parts.append(f"{name} drift" if result["is_drift"] else f"no {name} drift")
    figures = []
    for check, name in (("ood", "OOD"), ("data_quality", "rejected")):
        result = by_check.get(check)
        if result is not None and not _failed(result):
            figures.append(f"{name} {_percent(result['score'])}")
    estimate = by_check.get("estimated_accuracy")
    if estimate is not None and not _failed(estimate) and estimate["score"] is not None:
        if estimate["details"].get("task") == "classification":
            figures.append(f"estimated accuracy {_percent(estimate['score'])}")
        else:
            figures.append(f"estimated MAE {estimate['score']:,.0f}")
    failed = sorted(r["detector"] for r in results if _failed(r))
    line = f"{head}: {verdict}"
    if parts:
        line += ": " + ", ".join(parts)
    if figures:
        line += "; " + ", ".join(figures)
    if failed:
        line += "; failed: " + ", ".join(failed)
    return line
