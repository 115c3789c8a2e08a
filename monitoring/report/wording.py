"""Counts in words, as the report and ``watchkeeper report`` write them: one of a
thing is singular ("1 run", "1 retrain request"), any other count plural."""

from __future__ import annotations

from monitoring.report.records import ReportData, Verdict


def noun(n: int, singular: str, plural: str | None = None) -> str:
    """``singular`` for one, else ``plural`` (``singular`` + "s" unless given)."""
    return singular if n == 1 else plural or f"{singular}s"


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``n`` (thousands separated) and its noun: "1 row", "1,500 rows"."""
    return f"{n:,} {noun(n, singular, plural)}"


def summary_line(data: ReportData) -> str:
    """What a report shows, in one line: "1,500 predictions, 3 windows (…)"."""
    drifted = sum(w.dataset_drift.verdict is Verdict.DRIFT for w in data.windows)
    return (
        f"{count(data.predictions, 'prediction')}, {count(len(data.windows), 'window')} "
        f"({drifted:,} with dataset drift), {count(len(data.requests), 'retrain request')}, "
        f"{count(len(data.runs), 'run')}"
    )
