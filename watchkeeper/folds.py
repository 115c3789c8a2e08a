"""Held-out folds for calibrating a model on rows it did not see.

Rows in time order are split *forward*: each fold is held out from a model fitted on
the rows before it, as the served model will predict rows after its training data.
Shuffled folds let every fold's model see its fold's future and its neighbours; on a
dataset with a trend the interval they calibrated covered half of the later rows
instead of 90 %.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from sklearn.model_selection import KFold, TimeSeriesSplit

Split = tuple[np.ndarray, np.ndarray]


def fold_splits(
    n_rows: int, folds: int, random_state: int, order: np.ndarray | None = None
) -> Iterator[Split]:
    """(fitted-on, held-out) row positions: shuffled K-fold, or given the rows' time
    ``order``, K forward folds (the first rows are never held out)."""
    if order is None:
        yield from KFold(folds, shuffle=True, random_state=random_state).split(np.arange(n_rows))
        return
    by_time = np.argsort(np.asarray(order), kind="stable")
    for before, fold in TimeSeriesSplit(folds).split(by_time):
        yield by_time[before], by_time[fold]
