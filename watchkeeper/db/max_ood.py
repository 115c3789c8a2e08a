"""A request's highest OOD score, as ``requests.max_ood_score`` holds it (0011).

Both writers of scores set it: the log's writer from the scores it stores, the monitor
from the outputs it rewrites. NaN and missing scores are left out, as the
``predictions`` view's SQLite form reads a NaN score as NULL: a score that is no number
ranks nowhere.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

_FEW = 32  # looked at one by one rather than by NumPy calls


def highest_score(scores: Iterable[float | str | None] | np.ndarray) -> float | None:
    """The highest of ``scores`` (floats, or the names outputs spell non-finite numbers
    with: ``Infinity``, ``-Infinity``, ``NaN``), or None when no score is a number."""
    if isinstance(scores, np.ndarray):
        if scores.size > _FEW:
            kept = scores[~np.isnan(scores)]
            return float(kept.max()) if kept.size else None
        scores = scores.tolist()
    best: float | None = None
    for score in scores:
        if score is None:
            continue
        value = float(score)
        if value == value and (best is None or value > best):
            best = value
    return best
