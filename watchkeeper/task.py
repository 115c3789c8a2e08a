"""What a model predicts: a number (regression) or a class (classification).

The task decides the training pipeline, the response's shape (an interval or a
prediction set), what ``/feedback`` accepts, and which accuracy figures the monitor,
the retraining gate and the dashboards use. ``train`` detects it from the target
unless told: text, booleans and numbers with two distinct values are classes; any
other number is a quantity. A numeric target with a few integer values (a rating, a
count) is ambiguous: ``--task classification`` makes it one.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd


class Task(StrEnum):
    REGRESSION = "regression"
    CLASSIFICATION = "classification"


def detect_task(target: pd.Series) -> Task:
    values = target.dropna()
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return Task.CLASSIFICATION
    return Task.CLASSIFICATION if values.nunique() <= 2 else Task.REGRESSION


MAX_LABEL = 256
"""Characters of a class label's text: the width of ``feedback.label``, so the longest
label ``/feedback`` takes and the longest class ``train`` accepts."""


def label_text(value: Any) -> str:
    """A class label as the text it is matched by: ``1``, ``1.0`` and ``"1"`` are one
    class (a CSV's 0/1 column, a JSON client sending numbers or strings), ``True`` and
    ``"True"`` another."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isfinite(number) and number.is_integer():
            return str(int(number))
        return repr(number)
    return str(value)


def json_label(value: Any) -> str | int | float | bool:
    """A class label as JSON holds it: NumPy scalars become Python ones, integral floats
    integers (a CSV's 0/1 column read as floats answers ``1``, not ``1.0``)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return int(number) if math.isfinite(number) and number.is_integer() else number
    return str(value)
