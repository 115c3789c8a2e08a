"""The report's charts, as inline SVG drawn from its records.

Every timeline chart shares one time axis (:class:`TimeAxis`) and one width, so that
a drift verdict, an OOD spike, an accuracy drop and the retraining they caused sit one
above the other. Each data mark carries a ``<title>``: hovering it names the window,
the figure and the reason.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitoring.report.records import (
    AccuracyKind,
    AccuracyPoint,
    Check,
    ClassAccuracyPoint,
    FeatureComparison,
    Histogram,
    Quality,
    RateOfWorst,
    ReportData,
    Verdict,
    WindowSummary,
    version_key,
)
from monitoring.report.svg import LEFT, RIGHT, WIDTH, Drawing, Scale, nice_ticks, number, time_ticks
from monitoring.report.wording import count as count_of
from watchkeeper.db.prediction_seq import window_label
from watchkeeper.figures import amount

VERDICT_CSS = {
    Verdict.DRIFT: "drift",
    Verdict.NO_DRIFT: "ok",
    Verdict.NO_VERDICT: "none",
    Verdict.ERROR: "error",
}
LANE, LANE_GAP, AXIS = 22, 8, 30
LINE_STYLES = {
    AccuracyKind.REALISED: "",
    AccuracyKind.ROLLING: "dotted",
    AccuracyKind.ESTIMATED: "dashed",
}


@dataclass(frozen=True)
class TimeAxis:
    low: datetime
    high: datetime

    @classmethod
    def of(cls, data: ReportData) -> TimeAxis | None:
        """The span of everything the report draws on a timeline; None if nothing."""
        moments: list[datetime] = []
        for window in data.windows:
            moments += [window.started_at, window.ended_at]
        moments += [p.ended_at for p in data.accuracy]
        moments += [p.ended_at for p in data.class_accuracy]
        moments += [r.requested_at for r in data.requests]
        for run in data.runs:
            moments += [run.started_at] + ([run.finished_at] if run.finished_at else [])
        if not moments:
            return None
        low, high = min(moments), max(moments)
        pad = max((high - low) * 0.02, timedelta(seconds=1))
        return cls(low - pad, high + pad)

    @property
    def scale(self) -> Scale:
        return Scale(self.low.timestamp(), self.high.timestamp(), LEFT, WIDTH - RIGHT)

    def x(self, moment: datetime) -> float:
        return self.scale(moment.timestamp())

    def draw(self, drawing: Drawing, top: float, bottom: float) -> None:
        """Vertical grid lines from ``top`` and time labels under ``bottom``."""
        for moment, label in time_ticks(self.low, self.high):
            x = self.x(moment)
            drawing.line(x, top, x, bottom, css="grid")
            drawing.text(x, bottom + 14, label, css="tick", anchor="middle")
        drawing.line(LEFT, bottom, WIDTH - RIGHT, bottom, css="axis")


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _window_title(window: WindowSummary, what: str, check: Check) -> str:
    figure = "" if check.score is None else f" (score {check.score:.3g})"
    reason = f": {check.error}" if check.error else ""
    drifted = ""
    if what == "dataset drift" and window.drifted_features:
        names = ", ".join(window.drifted_features[:8])
        more = len(window.drifted_features) - 8
        drifted = f"\ndrifted: {names}" + (f" and {more} more" if more > 0 else "")
    return (
        f"{what}: {check.verdict}{figure}{reason}\nwindow {window_label(window.window_id)}, "
        f"{count_of(window.n_rows, 'row')}\n"
        f"{_when(window.started_at)} → {_when(window.ended_at)}{drifted}"
    )


def verdict_lanes(data: ReportData, axis: TimeAxis) -> str:
    """One lane per drift check (a bar per window, coloured by verdict) and one lane of
    retraining: requests, runs (from start to finish) and promotions."""
    lanes: list[tuple[str, str]] = [
        ("dataset drift", "dataset_drift"),
        ("output drift", "output_drift"),
        ("multivariate drift", "multivariate_drift"),
    ]
    height = (len(lanes) + 1) * (LANE + LANE_GAP) + AXIS
    drawing = Drawing(height, label="drift verdicts per window, and retraining")
    bottom = (len(lanes) + 1) * (LANE + LANE_GAP)
    axis.draw(drawing, 0, bottom)
    for i, (label, field) in enumerate(lanes):
        y = i * (LANE + LANE_GAP) + LANE_GAP / 2
        drawing.text(LEFT - 8, y + LANE * 0.7, label, anchor="end")
        for window in data.windows:
            check: Check = getattr(window, field)
            x0, x1 = axis.x(window.started_at), axis.x(window.ended_at)
            drawing.rect(
                x0,
                y,
                max(x1 - x0, 3),
                LANE,
                css=f"verdict {VERDICT_CSS[check.verdict]}",
                title=_window_title(window, label, check),
            )
    y = len(lanes) * (LANE + LANE_GAP) + LANE_GAP / 2
    middle = y + LANE / 2
    drawing.text(LEFT - 8, y + LANE * 0.7, "retraining", anchor="end")
    for run in data.runs:
        x0 = axis.x(run.started_at)
        x1 = axis.x(run.finished_at) if run.finished_at else x0
        maes = ""
        if run.candidate_mae is not None and run.champion_mae is not None:
            maes = (
                f"\ncandidate MAE {amount(run.candidate_mae)}, champion {amount(run.champion_mae)}"
            )
        elif run.candidate_log_loss is not None and run.champion_log_loss is not None:
            maes = (
                f"\ncandidate log-loss {run.candidate_log_loss:.4f}, "
                f"champion {run.champion_log_loss:.4f}"
            )
        title = (
            f"run {run.id}: {run.outcome} {run.candidate_version or ''} "
            f"(champion {run.champion_version or '—'}){maes}\n{run.decision_reason or ''}"
        )
        drawing.rect(x0, y + 4, max(x1 - x0, 4), LANE - 8, css=f"run {run.outcome}", title=title)
        if run.promoted:
            drawing.marker(
                x1, middle, css="promotion", shape="diamond", size=6, title=f"promoted {title}"
            )
    for request in data.requests:
        drawing.marker(
            axis.x(request.requested_at),
            middle,
            css="request",
            shape="triangle",
            size=5,
            title=(
                f"retrain request {request.id} ({request.trigger}, {request.status}) for "
                f"{request.model_version or 'any version'}\n{request.reason}\n"
                f"{_when(request.requested_at)}"
            ),
        )
    return drawing.render()


@dataclass(frozen=True)
class Point:
    moment: datetime
    value: float
    title: str


@dataclass(frozen=True)
class Series:
    name: str
    points: tuple[Point, ...]
    style: str = ""
    """An extra CSS class of the line: ``dashed`` or ``dotted``."""
    colour: int | None = None
    """Index into the palette; by default the series' position."""


@dataclass(frozen=True)
class Guide:
    """A horizontal threshold line."""

    value: float
    label: str


def line_chart(
    label: str,
    series: Sequence[Series],
    axis: TimeAxis,
    *,
    percent: bool = False,
    guides: Sequence[Guide] = (),
    height: float = 190,
) -> str:
    drawing = Drawing(height, label=label)
    top, bottom = 26, height - AXIS
    values = [p.value for s in series for p in s.points] + [g.value for g in guides]
    high = max(values, default=1.0)
    # room above the highest point, short of infinity (a label of 1.7e308 is valid)
    high = min(high * 1.1, sys.float_info.max) if high > 0 else 1.0
    ticks = nice_ticks(0.0, high, 4)
    high = max(ticks[-1] if ticks else high, high)
    y = Scale(0.0, high, bottom, top)
    for tick in ticks:
        drawing.line(LEFT, y(tick), WIDTH - RIGHT, y(tick), css="grid")
        drawing.text(LEFT - 8, y(tick) + 4, number(tick, percent=percent), css="tick", anchor="end")
    axis.draw(drawing, top, bottom)
    drawing.text(LEFT - 8, 14, label, css="label strong", anchor="end")
    legend_x = LEFT
    for i, s in enumerate(series):
        colour = (i if s.colour is None else s.colour) % 6
        css = f"series s{colour} {s.style}".strip()
        drawing.line(legend_x, 10, legend_x + 18, 10, css=css)
        drawing.text(legend_x + 22, 14, s.name, css="legend")
        legend_x += 34 + 6.5 * len(s.name)
        points = sorted(s.points, key=lambda p: p.moment)
        coordinates = [(axis.x(p.moment), y(p.value)) for p in points]
        if len(coordinates) > 1:
            drawing.polyline(coordinates, css=css)
        for (px, py), point in zip(coordinates, points, strict=True):
            drawing.marker(px, py, css=f"dot s{colour}", size=3, title=point.title)
    label_y = -math.inf
    for guide in sorted(guides, key=lambda g: -g.value):  # top first
        drawing.line(LEFT, y(guide.value), WIDTH - RIGHT, y(guide.value), css="guide")
        # close thresholds (two versions' MAE limits) get their labels stacked, not inked over
        label_y = max(y(guide.value) - 4, label_y + 13)
        drawing.text(WIDTH - RIGHT - 4, label_y, guide.label, css="guide-label", anchor="end")
    return drawing.render()


def ood_chart(data: ReportData, axis: TimeAxis) -> str:
    by_version: dict[str, list[Point]] = {}
    for w in data.windows:
        if w.ood_fraction is not None:
            by_version.setdefault(w.model_version, []).append(
                Point(
                    w.ended_at,
                    w.ood_fraction,
                    f"{w.model_version}: {w.ood_fraction:.1%} of {count_of(w.n_rows, 'row')} "
                    f"out of distribution\nwindow {window_label(w.window_id)}\n{_when(w.ended_at)}",
                )
            )
    series = [Series(f"OOD fraction {v}", tuple(p)) for v, p in by_version.items()]
    guide = Guide(data.thresholds.ood_fraction, f"retrain above {data.thresholds.ood_fraction:.0%}")
    return line_chart("OOD fraction", series, axis, percent=True, guides=[guide])


def quality_chart(data: ReportData, axis: TimeAxis) -> str:
    """Rejected requests, and per kind of problem the feature whose rate rose furthest
    above the reference's."""
    worst: dict[str, Callable[[Quality], RateOfWorst]] = {
        "missing": lambda q: q.missing,
        "out of range": lambda q: q.out_of_range,
        "unseen category": lambda q: q.unseen_category,
    }
    rejected = [
        Point(
            w.ended_at,
            w.quality.rejected_rate,
            f"rejected requests: {w.quality.rejected_rate:.2%}\nwindow {window_label(w.window_id)}",
        )
        for w in data.windows
        if w.quality is not None
    ]
    series = [Series("rejected requests", tuple(rejected))]
    for name, pick in worst.items():
        points = []
        for w in data.windows:
            if w.quality is None:
                continue
            rate = pick(w.quality)
            where = f" ({rate.feature}: {rate.rate:.2%}, reference {rate.reference:.2%})"
            points.append(
                Point(
                    w.ended_at,
                    rate.excess,
                    f"{name} above the reference: {rate.excess:.2%}"
                    f"{where if rate.feature else ''}\nwindow {window_label(w.window_id)}",
                )
            )
        series.append(Series(f"{name} above reference", tuple(points)))
    return line_chart("data quality", series, axis, percent=True)


@dataclass(frozen=True)
class _Figure:
    """One point of a version's accuracy line, and the version's validation figure
    when the point's result recorded it."""

    kind: AccuracyKind
    version: str
    point: Point
    validation: float | None


def _version_lines(
    data: ReportData, figures: Iterable[_Figure], *, key: str, name: str
) -> tuple[list[Series], dict[str, float]]:
    """A line per kind (realised, rolling, estimated) and version, coloured by version,
    and each version's validation ``key`` (from its results, else its metadata), from
    which the retrain limit is drawn."""
    groups: dict[tuple[AccuracyKind, str], list[Point]] = {}
    limits: dict[str, float] = {}
    for figure in figures:
        groups.setdefault((figure.kind, figure.version), []).append(figure.point)
        if figure.validation is not None:
            limits[figure.version] = figure.validation
    for version in data.versions:
        if version.version in {v for _, v in groups} and key in version.validation:
            limits.setdefault(version.version, version.validation[key])
    colours = {v: i for i, v in enumerate(sorted({v for _, v in groups}, key=version_key))}
    series = [
        Series(
            f"{kind} {name} {version}",
            tuple(points),
            style=LINE_STYLES[kind],
            colour=colours[version],
        )
        for (kind, version), points in sorted(
            groups.items(), key=lambda item: (version_key(item[0][1]), item[0][0])
        )
    ]
    return series, limits


def _figure(p: AccuracyPoint | ClassAccuracyPoint, value: float, shown: str, name: str) -> _Figure:
    """``p`` as a point of its version's line; ``shown``: its value as written."""
    labels = f" on {count_of(p.labels, 'label')}" if p.labels is not None else ""
    validation = p.validation_mae if isinstance(p, AccuracyPoint) else p.validation_accuracy
    text = (
        f"{p.kind} {name} of {p.model_version}: {shown}{labels}\n"
        f"{_when(p.started_at)} → {_when(p.ended_at)}"
    )
    return _Figure(p.kind, p.model_version, Point(p.ended_at, value, text), validation)


def accuracy_chart(data: ReportData, axis: TimeAxis) -> str:
    figures = (_figure(p, p.mae, amount(p.mae), "MAE") for p in data.accuracy)
    series, limits = _version_lines(data, figures, key="mae", name="MAE")
    degradation = data.thresholds.mae_degradation
    guides = [
        Guide(
            mae * (1 + degradation), f"{version}: retrain above {amount(mae * (1 + degradation))}"
        )
        for version, mae in sorted(limits.items())
    ]
    return line_chart("MAE", series, axis, guides=guides)


def class_accuracy_chart(data: ReportData, axis: TimeAxis) -> str:
    """A classifier's accuracy: realised per window, rolling, and estimated before the
    labels, with the retrain limit (validation accuracy minus the allowed drop)."""
    figures = (_figure(p, p.accuracy, f"{p.accuracy:.1%}", "accuracy") for p in data.class_accuracy)
    series, limits = _version_lines(data, figures, key="accuracy", name="accuracy")
    drop = data.thresholds.accuracy_drop
    guides = [
        Guide(accuracy - drop, f"{version}: retrain below {accuracy - drop:.1%}")
        for version, accuracy in sorted(limits.items())
        if accuracy - drop > 0
    ]
    return line_chart("accuracy", series, axis, percent=True, guides=guides)


def histogram(comparison: FeatureComparison, which: str) -> str:
    """The reference's (``which="reference"``) or the window's bars of one feature, on
    a share axis the two panels have in common."""
    hist: Histogram = comparison.histogram
    counts = hist.reference if which == "reference" else hist.current
    total = hist.reference_total if which == "reference" else hist.current_total
    shares = [n / total if total else 0.0 for n in counts]
    top_share = max(
        [n / hist.reference_total for n in hist.reference if hist.reference_total]
        + [n / hist.current_total for n in hist.current if hist.current_total]
        + [0.01]
    )
    height, top, bottom, left, right = 200, 10, 150, 44, 8
    width = WIDTH / 2  # the two panels sit side by side
    drawing = Drawing(
        height, label=f"{comparison.feature}: {which}", css_class="chart histogram", width=width
    )
    y = Scale(0.0, top_share, bottom, top)
    for tick in nice_ticks(0.0, top_share, 3):
        drawing.line(left, y(tick), width - right, y(tick), css="grid")
        drawing.text(left - 4, y(tick) + 4, number(tick, percent=True), css="tick", anchor="end")
    n = max(len(counts), 1)
    slot = (width - left - right) / n
    for i, (share, count) in enumerate(zip(shares, counts, strict=True)):
        drawing.rect(
            left + i * slot + 1,
            y(share),
            max(slot - 2, 1),
            bottom - y(share),
            css=f"bar {which}",
            title=f"{hist.labels[i]}: {count_of(count, 'row')} ({share:.1%})",
        )
    drawing.line(left, bottom, width - right, bottom, css="axis")
    if hist.edges:
        for i in range(0, len(hist.edges), max(len(hist.edges) // 4, 1)):
            x = left + i * slot
            drawing.text(x, bottom + 14, number(hist.edges[i]), css="tick", anchor="middle")
    else:
        for i, name in enumerate(hist.labels):
            x = left + (i + 0.5) * slot
            drawing.text(x, bottom + 14, name[:9], css="tick small", anchor="middle")
    missing = hist.reference_missing if which == "reference" else hist.current_missing
    caption = f"{which}: {count_of(total, 'row')}" + (f", {missing:,} missing" if missing else "")
    drawing.text(left, height - 12, caption, css="label")
    return drawing.render()
