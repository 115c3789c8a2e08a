"""Which labelled predictions a retraining job can train and judge on.

Serving accepts any finite number as a regression label and any text as a class label
(they are real outcomes the monitor counts), but some of them cannot be learnt from:

- a regression label that is not finite, or lies further than
  :data:`EXTREME_SPANS` times the original training target's range beyond that range
  (``1e308``, ``2**70`` for a house price): one such label made every run fail with
  scikit-learn's "Input y contains infinity" for as long as it stayed in the retraining
  window, or was trained on silently and made the candidate's MAE 1e15;
- a class label outside the champion's classes: a candidate trained on it has classes
  the family never had, and a holdout holding it is one the champion can never get right.

They are left out of training and of the holdout alike, counted and named in the run's
record (:class:`LeftOut`), and everything else trains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from watchkeeper.figures import amount
from watchkeeper.model_metrics import JsonForm
from watchkeeper.task import label_text

EXTREME_SPANS = 10.0
"""How far beyond the original training target's range (in multiples of that range) a
regression label may lie and still be trained on: prices ten times beyond anything seen
are drift to learn; further out they are mistakes, and a few of them outweigh every
other row of a squared-error fit."""
NAMED = 10
"""Prediction ids (and class labels) a run names per reason; the count covers all."""
LABEL_CHARS = 40
"""A named class label's characters at most: a client's label may hold 256."""


class LeftOutReason(StrEnum):
    NOT_FINITE = "not_finite"
    EXTREME = "extreme"
    UNKNOWN_CLASS = "unknown_class"


@dataclass(frozen=True)
class LeftOut:
    """The labels of one reason left out of a run: how many, and the first few."""

    reason: LeftOutReason
    count: int
    prediction_ids: tuple[str, ...]
    """The first :data:`NAMED` of them."""
    detail: str
    """What was left out and why, for people (the allowed range, the unknown labels)."""

    def stored(self) -> JsonForm:
        return {
            "reason": str(self.reason),
            "count": self.count,
            "prediction_ids": list(self.prediction_ids),
            "detail": self.detail,
        }

    def describe(self) -> str:
        more = f" and {self.count - NAMED} more" if self.count > NAMED else ""
        return (
            f"{self.count} label{'s' if self.count != 1 else ''} {self.detail} "
            f"(predictions {', '.join(self.prediction_ids)}{more})"
        )


@dataclass(frozen=True)
class Screened:
    """Which rows keep their label (``usable``, one per row) and what was left out."""

    usable: np.ndarray
    left_out: tuple[LeftOut, ...]


def trainable_range(base_target: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """The regression labels a run trains on: within :data:`EXTREME_SPANS` times the
    original training target's range beyond it (its magnitude, or 1, if it has no range)."""
    values = np.asarray(base_target, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return -math.inf, math.inf
    low, high = float(values.min()), float(values.max())
    span = (high - low) or max(abs(low), abs(high)) or 1.0
    return low - EXTREME_SPANS * span, high + EXTREME_SPANS * span


def screen_values(
    actual: Sequence[Any], ids: Sequence[str], allowed: tuple[float, float]
) -> Screened:
    """Regression labels: usable when finite and within ``allowed``."""
    values = pd.to_numeric(pd.Series(list(actual), dtype=object), errors="coerce")
    numbers = values.to_numpy(dtype=np.float64)
    finite = np.isfinite(numbers)
    low, high = allowed
    inside = finite & (numbers >= low) & (numbers <= high)
    return Screened(
        inside,
        _left_out(
            ids,
            {
                LeftOutReason.NOT_FINITE: (~finite, "not a finite number"),
                LeftOutReason.EXTREME: (
                    finite & ~inside,
                    f"outside {_number(low)} to {_number(high)} (the original training "
                    f"target's range widened {EXTREME_SPANS:g} times its width each side)",
                ),
            },
        ),
    )


def screen_classes(labels: Sequence[Any], ids: Sequence[str], classes: Sequence[Any]) -> Screened:
    """Class labels: usable when they name one of the champion's ``classes``."""
    known = {label_text(c) for c in classes}
    texts = [label_text(label) for label in labels]
    usable = np.array([text in known for text in texts], dtype=bool)
    unknown = sorted({text for text in texts if text not in known})
    shown = ", ".join(_shown(text) for text in unknown[:NAMED])
    more = f" and {len(unknown) - NAMED} more" if len(unknown) > NAMED else ""
    detail = f"naming no class of the champion ({shown}{more})"
    return Screened(usable, _left_out(ids, {LeftOutReason.UNKNOWN_CLASS: (~usable, detail)}))


def _left_out(
    ids: Sequence[str], masks: dict[LeftOutReason, tuple[np.ndarray, str]]
) -> tuple[LeftOut, ...]:
    found = []
    for reason, (mask, detail) in masks.items():
        positions = np.flatnonzero(mask)
        if len(positions):
            named = tuple(str(ids[i]) for i in positions[:NAMED])
            found.append(LeftOut(reason, len(positions), named, detail))
    return tuple(found)


def _shown(text: str) -> str:
    """A label as named in the run: quoted, escaped (a newline stays on one log line)."""
    return repr(text if len(text) <= LABEL_CHARS else f"{text[:LABEL_CHARS]}…")


def _number(value: float) -> str:
    return amount(value)
