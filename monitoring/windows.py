"""Cutting the stream of predictions into evaluation windows.

Each model version's rows form a stream of windows of their own: each version is judged
against its own reference, and while two versions are served at once (the workers
reloading a promotion a poll apart, a worker fallen back to the old version) their rows
interleave in the log. A window closes after ``size`` of its version's predictions or
``seconds`` after its first one, whichever comes first; rows of another version between
its rows neither end it nor count in it (ending a window at any row of another version
cut interleaved rows into one-row windows: no drift verdict, a result row each, and
data-quality gauges of one row).

A version that stops being served would leave its last window open: it closes once a
row of another version is stored ``grace_seconds`` (arrival time) after the window's
newest row, or one past the window's time span, whichever first. The monitor derives
the grace from the serving workers' model poll (:data:`GRACE_POLLS` polls, at least
:data:`MIN_GRACE_SECONDS`): a reload's stagger is a poll plus the load, and a version
still served, at one request a minute, is not cut at every row of the other. A row of
that version after its window closed starts its next window.

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

GRACE_POLLS = 10
"""A version's window closes once another version's rows are this many model polls
(``WATCHKEEPER_MODEL_POLL_SECONDS``) past its newest row..."""
MIN_GRACE_SECONDS = 60.0
"""...and at least this long past it."""


def grace_seconds(model_poll_seconds: float) -> float:
    """How long after a window's newest row another version's rows close it."""
    return max(GRACE_POLLS * model_poll_seconds, MIN_GRACE_SECONDS)


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


def _window_end(times: np.ndarray, start: int, *, size: int, span_us: int, min_us: int) -> int:
    """Of one version's rows, the first after the window starting at ``start``
    (``len(times)``: none of them ends it yet): one past the time span, or, once the
    window holds ``size`` rows, one at least ``min_us`` after its first. Searched in
    slices with NumPy: a Python step a row cost more than the rest of cutting."""
    n = len(times)
    step = max(2 * size, 4096)
    at = start + 1  # a window holds its first row whatever follows
    while at < n:
        stop = min(at + step, n)
        elapsed = times[at:stop] - times[start]
        count = np.arange(at, stop) - start  # rows before this one in the window
        ends = elapsed >= span_us
        ends |= (count >= size) & ((elapsed >= min_us) if min_us else True)
        hit = np.flatnonzero(ends)
        if len(hit):
            return at + int(hit[0])
        at, step = stop, step * 2
    return n


def _closed_by_other(
    times: np.ndarray,
    others: np.ndarray,
    own: np.ndarray,
    window: slice,
    *,
    until: int,
    span_us: int,
    grace_us: int,
) -> int | None:
    """The position (in all rows) of the first row of another version that closes the
    window of ``own[window]`` (positions of its version's rows) before ``until``: one
    past its time span, or ``grace_us`` after the window's newest row before it. None:
    no such row. ``others``: the positions of the other versions' rows, sorted."""
    first = int(own[window.start])
    between = others[np.searchsorted(others, first) : np.searchsorted(others, until)]
    if not len(between):
        return None
    at = times[between]
    # the window's newest row before each of them (rows are stored out of arrival order)
    newest = np.maximum.accumulate(times[own[window]])
    before = np.searchsorted(own[window], between) - 1
    hit = np.flatnonzero((at - times[first] >= span_us) | (at - newest[before] >= grace_us))
    return int(between[hit[0]]) if len(hit) else None


def version_codes(rows: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Each row's version as a code, and the versions' names by code: a row logged
    without one (a buggy writer's) is version ``"None"``, as its windows' ids say."""
    codes, versions = pd.factorize(rows["model_version"], use_na_sentinel=False)
    return codes, ["None" if pd.isna(v) else str(v) for v in versions]


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
    grace_seconds: float = MIN_GRACE_SECONDS,
) -> list[Window]:
    """The complete windows of each version at the start of its rows in ``rows``
    (sorted by seq), in the order of their last rows; a version's rows after its last
    window wait for the next cycle. ``more``: the log holds rows past ``rows`` (a read
    cut short), so a window reaching the end of ``rows`` closes only when full, never
    by the clock: its next rows are in the log, not yet read. ``min_seconds``: a window
    of ``size`` rows goes on until a row of its version at least this long after its
    first (that row starts the next), or, at the end of the log, until the clock is
    this long after its first. ``grace_seconds``: see the module docstring."""
    n = len(rows)
    if not n:
        return []
    # as integer microseconds: a Timestamp a row cost 0.2 s a 20,000-row window (and
    # NumPy's datetime64 of a zoned column goes through one object a row)
    times = (
        (pd.to_datetime(rows["created_at"], utc=True) - _EPOCH) // pd.Timedelta(microseconds=1)
    ).to_numpy(dtype=np.int64)
    span_us = int(seconds * 1e6)
    min_us = int(min_seconds * 1e6)
    grace_us = int(grace_seconds * 1e6)
    now_us = int(pd.Timestamp(_utc(now)).value // 1000)
    # a row logged without a version (a buggy writer's) is a stream of its own too
    codes, versions = version_codes(rows)
    seqs = rows["seq"].to_numpy()
    windows: list[tuple[int, Window]] = []  # each with its last row's seq
    for code, version in enumerate(versions):
        own = np.flatnonzero(codes == code)
        others = np.flatnonzero(codes != code) if len(versions) > 1 else own[:0]
        own_times = times[own]
        start = 0
        while start < len(own):
            end = _window_end(own_times, start, size=size, span_us=span_us, min_us=min_us)
            until = int(own[end]) if end < len(own) else n
            closer = _closed_by_other(
                times,
                others,
                own,
                slice(start, end),
                until=until,
                span_us=span_us,
                grace_us=grace_us,
            )
            if closer is not None:
                end = int(np.searchsorted(own, closer))
            elif end == len(own):  # nothing read yet ends it: the clock may
                full = end - start >= size
                if more:  # its next rows may be in the log, not yet read
                    closed = full and min_us == 0
                else:
                    elapsed = now_us - own_times[start]
                    closed = (full and (min_us == 0 or elapsed >= min_us)) or elapsed >= span_us
                if not closed:
                    break
            first, last = int(own[start]), int(own[end - 1])
            # a slice when no other version's row is between: a fancy index copies slower
            held = slice(first, last + 1) if last - first == end - start - 1 else own[start:end]
            window = Window(version, rows.iloc[held].reset_index(drop=True))
            windows.append((int(seqs[last]), window))
            start = end
    return [window for _, window in sorted(windows, key=lambda held: held[0])]
