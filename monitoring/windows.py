"""Cutting the stream of predictions into evaluation windows.

A window closes after ``size`` predictions or ``seconds`` after its first one,
whichever comes first, and never spans two model versions: each version is judged
against its own reference.

At fleet traffic ``min_seconds`` (``WATCHKEEPER_MONITOR_WINDOW_MIN_SECONDS``) makes a
window that has reached ``size`` rows go on until it spans that long: windows of at least
``size`` rows and ``min_seconds``, whichever holds more, and still at most ``seconds``.
Every window costs a fixed amount (drift tests on its sample, the multivariate
classifier, storing its results): at 20,000 rows/s, 500-row windows would be 40 a
second, more than a core can evaluate and more results than anyone reads, while the
tests on a window's sample have the same power whatever the window holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Window:
    model_version: str
    rows: pd.DataFrame

    @property
    def first_seq(self) -> int:
        return int(self.rows["seq"].iloc[0])

    @property
    def last_seq(self) -> int:
        return int(self.rows["seq"].iloc[-1])

    @property
    def window_id(self) -> str:
        return f"{self.model_version}:{self.first_seq}-{self.last_seq}"

    # Rows are cut in storage order, which workers' writers make differ from arrival
    # order: the first row stored need not be the earliest.
    @property
    def started_at(self) -> datetime:
        return _utc(self.rows["created_at"].min())

    @property
    def ended_at(self) -> datetime:
        return _utc(self.rows["created_at"].max())


_EPOCH = pd.Timestamp(0, tz="UTC")


def _window_end(
    times: np.ndarray, versions: np.ndarray, start: int, *, size: int, span_us: int, min_us: int
) -> int:
    """The first row after the window starting at ``start`` (``len(times)``: none ends
    it yet): a row of another version, one past the time span, or, once the window holds
    ``size`` rows, one at least ``min_us`` after its first. Searched in slices with
    NumPy: a Python step a row cost more than the rest of cutting."""
    n = len(times)
    step = max(2 * size, 4096)
    at = start + 1  # a window holds its first row whatever follows
    while at < n:
        stop = min(at + step, n)
        elapsed = times[at:stop] - times[start]
        count = np.arange(at, stop) - start  # rows before this one in the window
        ends = (versions[at:stop] != versions[start]) | (elapsed >= span_us)
        ends |= (count >= size) & ((elapsed >= min_us) if min_us else True)
        hit = np.flatnonzero(ends)
        if len(hit):
            return at + int(hit[0])
        at, step = stop, step * 2
    return n


def _utc(value: object) -> datetime:
    stamp = pd.Timestamp(value)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp).to_pydatetime()


def cut_windows(
    rows: pd.DataFrame,
    *,
    size: int,
    seconds: float,
    now: datetime,
    more: bool = False,
    min_seconds: float = 0.0,
) -> list[Window]:
    """The complete windows at the start of ``rows`` (sorted by seq); rows after the
    last one wait for the next cycle. ``more``: the log holds rows past ``rows`` (a
    read cut short), so a window reaching the end of ``rows`` closes only when full,
    never by the clock: its next rows are in the log, not yet read. ``min_seconds``:
    a window of ``size`` rows goes on until a row at least this long after its first
    (that row starts the next), or, at the end of the log, until the clock is this long
    after its first."""
    windows: list[Window] = []
    start = 0
    n = len(rows)
    versions = rows["model_version"].to_numpy() if n else []
    # as integer microseconds: a Timestamp a row cost 0.2 s a 20,000-row window (and
    # NumPy's datetime64 of a zoned column goes through one object a row)
    times = (
        (
            (pd.to_datetime(rows["created_at"], utc=True) - _EPOCH) // pd.Timedelta(microseconds=1)
        ).to_numpy(dtype=np.int64)
        if n
        else np.array([], dtype=np.int64)
    )
    span_us = int(seconds * 1e6)
    min_us = int(min_seconds * 1e6)
    now_us = int(pd.Timestamp(_utc(now)).value // 1000)
    versions = np.asarray(versions, dtype=object)
    while start < n:
        end = _window_end(times, versions, start, size=size, span_us=span_us, min_us=min_us)
        full = end - start >= size
        # a row follows that ends it: a new version, past the time span, or past the
        # minimum span of a full window
        closed_by_row = end < n
        if more:  # its next rows may be in the log, not yet read
            closed_at_end = full and min_us == 0
        else:
            elapsed = now_us - times[start]
            closed_at_end = (full and (min_us == 0 or elapsed >= min_us)) or elapsed >= span_us
        if not (closed_by_row or closed_at_end):
            break
        windows.append(Window(str(versions[start]), rows.iloc[start:end].reset_index(drop=True)))
        start = end
    return windows
