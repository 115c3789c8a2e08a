"""A monitor window's verdict as one log line, for the person watching the monitor.

Built from the window's result rows (one per check, as stored in ``window_results``)::

    window v1:1-500 (500 rows): DRIFT: 7 of 31 features drifted, output drift, no
    multivariate drift; OOD 3.4 %, rejected 0.0 %, estimated MAE 16,210

The window runs from request 1's prediction to request 500's; an item after a batch's
first is named as prediction ids name it (``37.12``).
"""

from __future__ import annotations

from collections.abc import Sequence

from monitoring.window_result import Check, WindowResult
from watchkeeper.db.prediction_seq import position_text
from watchkeeper.figures import amount


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}".replace("%", " %")


def window_verdict(results: Sequence[WindowResult], min_samples: int) -> str:
    """One line: the window, whether it drifted and why, its OOD and rejected shares,
    and which checks failed."""
    by_check = {r.check: r for r in results}
    first = results[0]
    # Positions as requests and items, not as stored (request seq × 2**20 + item).
    span = f"{position_text(first.first_seq)}-{position_text(first.last_seq)}"
    head = f"window {first.model_version}:{span} ({first.n_rows} rows)"
    parts: list[str] = []
    features = by_check.get(Check.FEATURE_DRIFT)
    if features is None:
        verdict = f"no drift verdict (fewer than {min_samples} rows)"
    elif features.failed:
        verdict = "no drift verdict (the feature drift check failed)"
    else:
        drifted = len(features.drifted)
        tested = len(features.p_values)
        verdict = "DRIFT" if features.is_drift else "no drift"
        parts.append(f"{drifted} of {tested} features drifted")
    for check, name in (
        (Check.OUTPUT_DRIFT, "output"),
        (Check.MULTIVARIATE_DRIFT, "multivariate"),
    ):
        result = by_check.get(check)
        if result is None or result.failed:
            continue
        if result.is_drift is None:  # too few finite predictions to test
            parts.append(f"no {name} drift verdict")
        else:
            parts.append(f"{name} drift" if result.is_drift else f"no {name} drift")
    figures = []
    for check, name in ((Check.OOD, "OOD"), (Check.DATA_QUALITY, "rejected")):
        result = by_check.get(check)
        if result is not None and not result.failed:
            figures.append(f"{name} {_percent(result.score)}")
    estimate = by_check.get(Check.ESTIMATED_ACCURACY)
    if estimate is not None and not estimate.failed and estimate.score is not None:
        if estimate.is_classifier:
            figures.append(f"estimated accuracy {_percent(estimate.score)}")
        else:
            figures.append(f"estimated MAE {amount(estimate.score)}")
    failed = sorted(r.check.value for r in results if r.failed)
    line = f"{head}: {verdict}"
    if parts:
        line += ": " + ", ".join(parts)
    if figures:
        line += "; " + ", ".join(figures)
    if failed:
        line += "; failed: " + ", ".join(failed)
    return line
