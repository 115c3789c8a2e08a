"""Cutting the prediction stream into windows: by count, by time, per model version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from monitoring.windows import cut_windows

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _rows(seconds: list[float], versions: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "seq": range(1, len(seconds) + 1),
            "created_at": [T0 + timedelta(seconds=s) for s in seconds],
            "model_version": versions or ["v1"] * len(seconds),
        }
    )


def test_full_windows_close_by_count_and_the_rest_waits() -> None:
    windows = cut_windows(_rows([0.0] * 7), size=3, seconds=600, now=T0)

    assert [(w.first_seq, w.last_seq) for w in windows] == [(1, 3), (4, 6)]


def test_a_window_closes_when_its_time_span_is_over() -> None:
    rows = _rows([0, 10, 20, 700, 710])

    by_gap = cut_windows(rows, size=100, seconds=600, now=T0 + timedelta(seconds=720))
    by_clock = cut_windows(rows, size=100, seconds=600, now=T0 + timedelta(seconds=1400))

    assert [(w.first_seq, w.last_seq) for w in by_gap] == [(1, 3)]
    assert [(w.first_seq, w.last_seq) for w in by_clock] == [(1, 3), (4, 5)]


def test_windows_never_span_two_model_versions() -> None:
    rows = _rows([0, 1, 2, 3, 4], ["v1", "v1", "v2", "v2", "v2"])

    windows = cut_windows(rows, size=3, seconds=600, now=T0)

    assert [(w.model_version, w.first_seq, w.last_seq) for w in windows] == [("v2", 3, 5)]
    assert windows[0].window_id == "v2:3-5"


def test_interleaved_versions_cut_full_windows_of_each() -> None:
    """Two versions served at once (a reload's stagger, a worker fallen back): their
    rows alternate one by one. Each version's rows are a stream of their own; a window
    ended at any row of the other version, 999 one-row windows of 1,000 rows."""
    rows = _rows([i * 0.01 for i in range(1000)], ["v1", "v2"] * 500)

    windows = cut_windows(rows, size=100, seconds=600, now=T0)

    assert [len(w.rows) for w in windows] == [100] * 10
    assert [w.model_version for w in windows] == ["v1", "v2"] * 5
    assert [w.window_id for w in windows[:2]] == ["v1:1-199", "v2:2-200"]
    assert all(set(w.rows["model_version"]) == {w.model_version} for w in windows)
    assert sorted(s for w in windows for s in w.rows["seq"]) == list(range(1, 1001))


def test_a_version_no_longer_served_closes_its_window_once_the_others_rows_pass_the_grace() -> None:
    """A promotion: v1's last, partial window closes at the first row of v2 stored the
    grace after v1's newest row, not at v2's first row, nor only by its time span."""
    times = [0.0, 1.0, 2.0, 1.5, 2.5] + [3.0 + i for i in range(40)]
    versions = ["v1", "v2", "v1", "v2", "v1"] + ["v2"] * 40
    rows = _rows(times, versions)

    early = cut_windows(rows.iloc[:20], size=100, seconds=600, now=T0, grace_seconds=20)
    late = cut_windows(rows, size=100, seconds=600, now=T0, grace_seconds=20)

    assert early == []  # v2's rows within 20 s of v1's newest (2.5 s): v1 may come back
    assert [(w.model_version, len(w.rows)) for w in late] == [("v1", 3)]
    assert late[0].window_id == "v1:1-5"
    # closed at v2's row at 22.5 s or later (seq 26: 23 s), so v2's own window is open


def test_a_versions_window_closes_by_its_span_at_another_versions_row() -> None:
    """Another version's row past the window's time span closes it, as its own would."""
    rows = _rows([0.0, 5.0, 10.0, 12.0], ["v1", "v2", "v1", "v2"])

    windows = cut_windows(rows, size=100, seconds=11, now=T0, grace_seconds=600)

    assert [w.window_id for w in windows] == ["v1:1-3"]


def test_a_versions_row_after_its_window_closed_starts_its_next_window() -> None:
    rows = _rows([0.0, 30.0, 31.0, 32.0], ["v1", "v2", "v1", "v1"])

    windows = cut_windows(rows, size=2, seconds=600, now=T0, grace_seconds=20)

    assert [w.window_id for w in windows] == ["v1:1-1", "v1:3-4"]


def test_no_rows_no_windows() -> None:
    assert cut_windows(_rows([]), size=3, seconds=600, now=T0) == []


def test_a_read_cut_short_closes_its_last_window_only_when_full() -> None:
    """Rows older than the time span, but more of them in the log than were read: the
    last window waits for them instead of closing short by the clock."""
    rows = _rows([0.0] * 5)
    late = T0 + timedelta(seconds=1400)

    cut = cut_windows(rows, size=3, seconds=600, now=late, more=True)
    whole = cut_windows(rows, size=3, seconds=600, now=late)

    assert [(w.first_seq, w.last_seq) for w in cut] == [(1, 3)]
    assert [(w.first_seq, w.last_seq) for w in whole] == [(1, 3), (4, 5)]


def test_a_minimum_span_lets_a_full_window_go_on_until_a_row_past_it() -> None:
    """Ten rows a second, windows of at least 3 rows and 2 s: each window holds the
    rows of two seconds, the row at 2 s after its first starting the next."""
    rows = _rows([i / 10 for i in range(50)])

    windows = cut_windows(rows, size=3, seconds=600, min_seconds=2, now=T0)

    assert [(w.first_seq, w.last_seq) for w in windows] == [(1, 20), (21, 40)]


def test_a_minimum_span_never_shrinks_a_window_below_its_size() -> None:
    """One row every 10 s: the count, not the span, is what closes the window."""
    rows = _rows([10.0 * i for i in range(7)])

    windows = cut_windows(rows, size=3, seconds=600, min_seconds=2, now=T0)

    assert [(w.first_seq, w.last_seq) for w in windows] == [(1, 3), (4, 6)]


def test_a_full_window_at_the_end_of_the_log_closes_once_the_clock_passes_its_span() -> None:
    rows = _rows([0.0, 0.5, 1.0, 1.5])

    early = cut_windows(rows, size=3, seconds=600, min_seconds=5, now=T0 + timedelta(seconds=4))
    late = cut_windows(rows, size=3, seconds=600, min_seconds=5, now=T0 + timedelta(seconds=5))
    cut_short = cut_windows(
        rows, size=3, seconds=600, min_seconds=5, now=T0 + timedelta(seconds=60), more=True
    )

    assert early == [] and cut_short == []  # more rows may belong to it
    assert [(w.first_seq, w.last_seq) for w in late] == [(1, 4)]


def test_the_time_span_still_bounds_a_window_with_a_minimum_span() -> None:
    rows = _rows([i / 10 for i in range(50)])

    windows = cut_windows(rows, size=3, seconds=1, min_seconds=2, now=T0)

    assert [(w.first_seq, w.last_seq) for w in windows] == [(1, 10), (11, 20), (21, 30), (31, 40)]


def test_rows_stamped_out_of_order_never_stretch_a_window_past_its_size() -> None:
    """Writers' clocks differ: a row logged after the first may carry an earlier time.
    Without a minimum span the count alone closes a window."""
    rows = _rows([5.0, 4.0, 3.0, 2.0, 1.0, 0.0, 6.0])

    windows = cut_windows(rows, size=2, seconds=600, now=T0)

    assert [(w.first_seq, w.last_seq) for w in windows] == [(1, 2), (3, 4), (5, 6)]


def test_a_window_spans_its_earliest_to_its_latest_row_whatever_their_storage_order() -> None:
    """Two workers store out of arrival order: a window's first row in storage order may
    come after its last, and windows were stored ending before they started."""
    rows = _rows([2.0, 0.5, 3.0, 1.0])

    (window,) = cut_windows(rows, size=4, seconds=600, now=T0)

    assert (window.started_at, window.ended_at) == (
        T0 + timedelta(seconds=0.5),
        T0 + timedelta(seconds=3.0),
    )


def test_windows_cut_in_slices_equal_a_row_by_row_cut() -> None:
    """Long logs of mixed versions, gaps and shuffled stamps: the same windows as the
    rule applied one row at a time."""
    rng = np.random.default_rng(5)
    n = 20_000
    seconds = np.cumsum(rng.exponential(0.01, n)) + rng.normal(0, 0.02, n)
    seconds[rng.random(n) < 0.001] += 700  # a few rows past the time span
    # v1 alone, then both interleaved (a worker on each), then v2 alone after a gap
    versions = np.where(np.arange(n) < 8_000, "v1", "v2")
    both = np.arange(n)[(np.arange(n) >= 8_000) & (np.arange(n) < 14_000)]
    versions[both[rng.random(len(both)) < 0.5]] = "v1"
    seconds[14_000:] += 30
    rows = _rows(seconds.tolist(), versions.tolist())
    for size, minimum in ((500, 0.0), (300, 2.0), (7, 0.0)):
        windows = cut_windows(
            rows, size=size, seconds=600, min_seconds=minimum, now=T0, grace_seconds=20
        )

        assert [(w.first_seq, w.last_seq) for w in windows] == _by_row(
            seconds, versions.tolist(), size, minimum, grace=20
        )


def _by_row(
    seconds: np.ndarray, versions: list[str], size: int, minimum: float, *, grace: float
) -> list[tuple]:
    """The rule, a row at a time, each version's rows a stream of their own (every
    window closed by a following row), in the order of the windows' last rows."""
    us = (seconds * 1e6).astype(np.int64)
    n, out = len(us), []
    for version in dict.fromkeys(versions):
        own = [i for i in range(n) if versions[i] == version]
        k = 0
        while k < len(own):
            start, newest, count, closed_at = own[k], us[own[k]], 1, None
            for r in range(start + 1, n):
                elapsed = us[r] - us[start]
                if versions[r] == version:
                    if elapsed >= 600_000_000 or (
                        count >= size and (minimum == 0 or elapsed >= minimum * 1e6)
                    ):
                        closed_at = r
                        break
                    count += 1
                    newest = max(newest, us[r])
                elif elapsed >= 600_000_000 or us[r] - newest >= grace * 1e6:
                    closed_at = r
                    break
            if closed_at is None:
                break
            held = own[k : k + count]
            out.append((held[0] + 1, held[-1] + 1))
            k += count
    return sorted(out, key=lambda w: w[1])


def test_rows_logged_without_a_version_are_a_stream_of_their_own_named_none() -> None:
    rows = _rows([0.0, 0.1, 0.2, 0.3], ["v1", None, "v1", None])  # type: ignore[list-item]

    windows = cut_windows(rows, size=2, seconds=600, now=T0)

    assert [w.window_id for w in windows] == ["v1:1-3", "None:2-4"]
