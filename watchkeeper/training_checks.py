"""Data a model cannot be fitted on, refused before fitting with a message that names
the target and what is wrong. Left to scikit-learn, each surfaced as its own internal
message naming nothing the user gave: ``n_splits=5 greater than the number of
samples``, ``Unknown label type: continuous``, ``could not convert string to float``,
``Input y contains infinity`` (a validation row's target)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from watchkeeper.errors import UnfittableData
from watchkeeper.task import Task

_LARGEST = 1e150


def check_training_data(
    training: pd.DataFrame,
    validation: pd.DataFrame | None,
    target: str,
    task: Task,
    *,
    folds: int,
) -> None:
    """Raise :class:`UnfittableData` naming the problem when ``task`` cannot be fitted on
    ``training`` (calibrated with ``folds`` held-out folds) and scored on
    ``validation``."""
    least = folds + 1  # forward folds hold out K slices after a first one
    if len(training) < least:
        raise UnfittableData(
            f"{len(training)} training rows: calibrating out of {folds} folds takes at "
            f"least {least}"
        )
    for name, frame in (("training", training), ("validation", validation)):
        if frame is not None and len(frame):
            _check_target(frame[target], target, task, name)


def _check_target(column: pd.Series, target: str, task: Task, rows: str) -> None:
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    values = column.dropna()
    if task is Task.REGRESSION and not numeric:
        example = next((v for v in values if not _is_number(v)), None)
        raise UnfittableData(
            f"target {target!r} is not numeric in the {rows} rows (e.g. {example!r}): a "
            "regression needs numbers; classes train a classifier"
        )
    if not numeric:
        return
    numbers = values.to_numpy(dtype=np.float64)
    if not np.isfinite(numbers).all():
        raise UnfittableData(f"target {target!r} has infinite values in the {rows} rows")
    if task is Task.REGRESSION and numbers.size and np.abs(numbers).max() > _LARGEST:
        # an error's square overflows near 1.3e154: RMSE, the monitor's error sums and
        # the retraining comparison would be infinite or NaN
        shown = numbers[np.argmax(np.abs(numbers))]
        raise UnfittableData(
            f"target {target!r} holds values as large as {shown:.3g} in the {rows} rows: "
            f"beyond {_LARGEST:.0e} their errors cannot be scored; rescale the target "
            "(e.g. to thousands)"
        )
    if task is Task.CLASSIFICATION:
        fractional = numbers[numbers != np.round(numbers)]
        if fractional.size:
            raise UnfittableData(
                f"target {target!r} holds continuous numbers (e.g. {fractional[0]!r}): a "
                "classifier needs classes (text, integers or booleans)"
            )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)
