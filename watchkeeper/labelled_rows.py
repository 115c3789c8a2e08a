"""Labelled predictions as retraining reads them, from the log or its archive.

A feature may have any name a training CSV's column had (``_prediction_id``, ``seq``,
``label``): the frame holds the features and the target only, and each row's
bookkeeping (its prediction's id and time) is kept beside it, never among them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class LabelledRows:
    """Labelled predictions, oldest prediction first."""

    frame: pd.DataFrame
    """The features and the target (as the caller names them), one row per prediction."""
    prediction_ids: tuple[str, ...]
    """Each row's prediction id."""
    predicted_at: tuple[datetime, ...]
    """Each row's prediction time."""

    def __post_init__(self) -> None:
        if not len(self.frame) == len(self.prediction_ids) == len(self.predicted_at):
            raise ValueError(
                f"{len(self.frame)} rows with {len(self.prediction_ids)} prediction ids "
                f"and {len(self.predicted_at)} prediction times"
            )

    @classmethod
    def empty(cls, columns: Sequence[str]) -> LabelledRows:
        return cls(pd.DataFrame(columns=list(columns)), (), ())

    def __len__(self) -> int:
        return len(self.frame)

    def take(self, rows: slice | Sequence[bool] | np.ndarray) -> LabelledRows:
        """The rows a slice of positions or a boolean mask selects, numbered from 0."""
        if isinstance(rows, slice):
            positions = list(range(len(self))[rows])
        else:
            if len(rows) != len(self):
                raise ValueError(f"a mask of {len(rows)} for {len(self)} rows")
            positions = [i for i, keep in enumerate(rows) if keep]
        return LabelledRows(
            self.frame.iloc[positions].reset_index(drop=True),
            tuple(self.prediction_ids[i] for i in positions),
            tuple(self.predicted_at[i] for i in positions),
        )

    def with_frame(self, frame: pd.DataFrame) -> LabelledRows:
        """The same rows with their features or target recast (``frame`` row for row)."""
        return LabelledRows(frame, self.prediction_ids, self.predicted_at)
