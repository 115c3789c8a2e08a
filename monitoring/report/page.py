"""The report as one self-contained HTML page: styles inline, charts as inline SVG,
no script, and a Content-Security-Policy that forbids the page to load anything, so
that it opens the same from a laptop, a mail attachment or an air-gapped machine.

Every value from the log or the registry is escaped where it is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from monitoring.report import charts
from monitoring.report.records import (
    AccuracyKind,
    ClassAccuracyPoint,
    FeatureComparison,
    OodRow,
    ReportData,
    RetrainRequest,
    RetrainRun,
    Verdict,
    VersionSummary,
)
from monitoring.report.svg import exact, number
from monitoring.report.text import html_text
from monitoring.report.wording import noun
from watchkeeper.db.prediction_seq import window_label

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

STYLE = """
:root { --drift:#d64541; --ok:#3a9d5d; --none:#c8ccd2; --error:#8e44ad; --ink:#1f2933;
  --muted:#616e7c; --line:#e4e7eb; --ref:#7b8794; --cur:#2f6fde; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  margin: 0; background: #f5f7fa; }
header { background: #1f2933; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: #cbd2d9; }
main { padding: 16px 32px 48px; max-width: 1280px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 16px 20px;
  margin: 16px 0; }
h2 { font-size: 17px; margin: 0 0 10px; }
h3 { font-size: 15px; margin: 0 0 6px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { flex: 1 1 150px; border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.card .value { font-size: 20px; font-weight: 600; }
.card .name { color: var(--muted); font-size: 12px; }
.card.alarm .value { color: var(--drift); }
svg.chart { width: 100%; height: auto; display: block; margin: 6px 0 10px; }
.legend-row { display: flex; gap: 16px; flex-wrap: wrap; color: var(--muted); font-size: 12px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  vertical-align: -2px; margin-right: 4px; }
.verdict.drift, .swatch.drift { fill: var(--drift); background: var(--drift); }
.verdict.ok, .swatch.ok { fill: var(--ok); background: var(--ok); }
.verdict.none, .swatch.none { fill: var(--none); background: var(--none); }
.verdict.error, .swatch.error { fill: var(--error); background: var(--error); }
.run { fill: #9aa5b1; } .run.promoted { fill: var(--ok); } .run.failed { fill: var(--error); }
.run.rejected { fill: #cbd2d9; }
.request, .swatch.request { fill: #f0a202; background: #f0a202; }
.promotion, .swatch.promotion { fill: #0b7a3e; stroke: #fff; background: #0b7a3e; }
.grid { stroke: var(--line); } .axis { stroke: #9aa5b1; }
.tick { font-size: 11px; fill: var(--muted); } .tick.small { font-size: 9px; }
.label { font-size: 12px; fill: var(--ink); } .label.strong { font-weight: 600; }
.legend { font-size: 11px; fill: var(--ink); }
.guide { stroke: var(--drift); stroke-dasharray: 5 4; }
.guide-label { font-size: 11px; fill: var(--drift); }
.series { fill: none; stroke-width: 2; } .series.dashed { stroke-dasharray: 6 4; }
.series.dotted { stroke-dasharray: 2 3; }
.s0 { stroke: #2f6fde; fill: #2f6fde; } .s1 { stroke: #e8833a; fill: #e8833a; }
.s2 { stroke: #8e44ad; fill: #8e44ad; } .s3 { stroke: #16a085; fill: #16a085; }
.s4 { stroke: #c0392b; fill: #c0392b; } .s5 { stroke: #7f8c8d; fill: #7f8c8d; }
polyline.series { fill: none; }
.bar.reference { fill: var(--ref); } .bar.current { fill: var(--cur); }
.features { display: grid; grid-template-columns: 1fr; gap: 14px; }
.feature { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; }
.figures { color: var(--muted); margin: 0 0 4px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.pill { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px;
  background: var(--line); }
.pill.promoted, .pill.current { background: #d5f0de; color: #0b7a3e; }
.pill.rejected, .pill.failed { background: #fbe0df; color: #a12a26; }
.empty { color: var(--muted); font-style: italic; }
details summary { cursor: pointer; color: var(--muted); }
details dl { columns: 3; font-size: 12px; margin: 6px 0; }
details dt { font-weight: 600; } details dd { margin: 0 0 4px; }
.notes li { color: #a12a26; }
"""


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _e(value: object) -> str:
    return html_text(value)


def _empty(text: str) -> str:
    return f'<p class="empty">{_e(text)}</p>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    """A table of already-escaped cells; columns in ``numeric`` align right."""
    head = "".join(
        f'<th class="num">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pill(text: str) -> str:
    return f'<span class="pill {_e(text.split()[0] if text else "")}">{_e(text)}</span>'


def _period(data: ReportData) -> str:
    period = data.period
    since = _when(period.since) if period.since else "the first record"
    until = _when(period.until) if period.until else "the last record"
    version = f", model version {period.model_version}" if period.model_version else ""
    return f"From {since} to {until} (UTC){version}"


def summary(data: ReportData) -> str:
    drifted = sum(w.dataset_drift.verdict is Verdict.DRIFT for w in data.windows)
    ood = [w.ood_fraction for w in data.windows if w.ood_fraction is not None]
    realised = [p for p in data.accuracy if p.kind is AccuracyKind.REALISED]
    latest_mae = max(realised, key=lambda p: p.ended_at).mae if realised else None
    right = [p for p in data.class_accuracy if p.kind is AccuracyKind.REALISED]
    latest_accuracy = max(right, key=lambda p: p.ended_at).accuracy if right else None
    promoted = sum(run.promoted for run in data.runs)
    windows, requests, runs = len(data.windows), len(data.requests), len(data.runs)
    cards = [
        (noun(data.predictions, "prediction"), f"{data.predictions:,}", False),
        (f"{noun(windows, 'window')} evaluated", f"{windows:,}", False),
        (f"{noun(drifted, 'window')} with dataset drift", f"{drifted:,}", drifted > 0),
        (
            "highest OOD fraction",
            number(max(ood), percent=True) if ood else "—",
            bool(ood) and max(ood) > data.thresholds.ood_fraction,
        ),
        *(
            # a classifier's accuracy, in place of the MAE when only classifiers served
            [("latest realised MAE", number(latest_mae) if latest_mae is not None else "—", False)]
            if data.accuracy or not data.class_accuracy
            else []
        ),
        *(
            [("latest realised accuracy", f"{latest_accuracy:.1%}", False)]
            if latest_accuracy is not None
            else []
        ),
        (noun(requests, "retrain request"), f"{requests:,}", bool(data.requests)),
        (f"{noun(runs, 'retraining run')} (promoted)", f"{runs:,} ({promoted})", False),
    ]
    body = "".join(
        f'<div class="card{" alarm" if alarm else ""}"><div class="value">{_e(value)}</div>'
        f'<div class="name">{_e(name)}</div></div>'
        for name, value, alarm in cards
    )
    return f'<section id="summary"><h2>Summary</h2><div class="cards">{body}</div></section>'


def _verdict_legend() -> str:
    items = [
        ("drift", "drift"),
        ("ok", "no drift"),
        ("none", "no verdict (too few rows, or the check is off)"),
        ("error", "check failed"),
        ("request", "retrain request ▲"),
        ("promotion", "promotion ◆"),
    ]
    return (
        '<div class="legend-row">'
        + "".join(f'<span><span class="swatch {c}"></span>{_e(t)}</span>' for c, t in items)
        + "</div>"
    )


def timeline(data: ReportData) -> str:
    axis = charts.TimeAxis.of(data)
    if axis is None:
        body = _empty("No windows, accuracy results or retraining in this period.")
    else:
        body = (
            _verdict_legend()
            + charts.verdict_lanes(data, axis)
            + charts.ood_chart(data, axis)
            + charts.quality_chart(data, axis)
            # each task's accuracy chart when it has figures; the MAE one as before
            # unless only classifiers were served
            + (
                charts.accuracy_chart(data, axis)
                if data.accuracy or not data.class_accuracy
                else ""
            )
            + (charts.class_accuracy_chart(data, axis) if data.class_accuracy else "")
        )
    return (
        '<section id="timeline"><h2>Timeline of the windows</h2>'
        '<p class="figures">Each bar is one evaluation window; hover a mark for its figures. '
        f"Dashed red lines are the retrain thresholds (p-value {data.thresholds.p_value:g}, "
        f"{data.thresholds.drift_windows} consecutive drift windows, OOD fraction "
        f"{data.thresholds.ood_fraction:.0%}{_accuracy_thresholds(data)}).</p>{body}</section>"
    )


def _accuracy_thresholds(data: ReportData) -> str:
    """The retrain limits of the tasks the report shows: a MAE rise is relative to the
    validation MAE, a classifier's accuracy drop is absolute (points, not percent)."""
    regression = bool(data.accuracy) or not data.class_accuracy  # as the charts drawn
    mae = f"MAE {data.thresholds.mae_degradation:.0%} above validation"
    accuracy = f"accuracy {data.thresholds.accuracy_drop * 100:.1f} points below validation"
    if not data.class_accuracy:
        return f", {mae}"
    if not regression:
        return f", {accuracy}"
    return f", {mae}; a classifier's {accuracy}"


def _request_row(r: RetrainRequest) -> list[str]:
    return [
        _e(r.id),
        _e(_when(r.requested_at)),
        _e(r.trigger),
        _e(r.model_version or "—"),
        _pill(r.status),
        _e(r.reason),
        _e(r.run_id if r.run_id is not None else "—"),
    ]


def _run_cells(r: RetrainRun) -> list[str]:
    return [
        _e(r.id),
        _e(_when(r.started_at)),
        _e(_when(r.finished_at)),
        _e(r.champion_version or "—"),
        _e(r.candidate_version or "—"),
        _pill(r.outcome),
    ]


def _figure(value: float | None, form: str) -> str:
    return "—" if value is None else format(value, form)


def _mae(value: float | None) -> str:
    return "—" if value is None else number(value)


def _regression_run_row(r: RetrainRun) -> list[str]:
    figures = [_mae(r.champion_mae), _mae(r.candidate_mae)]
    return [*_run_cells(r), *map(_e, figures), _e(r.decision_reason or "")]


def _class_run_row(r: RetrainRun) -> list[str]:
    """A classifier's gate figures: log-loss (what it judges by) and accuracy."""
    figures = [
        _figure(r.champion_log_loss, ".4f"),
        _figure(r.candidate_log_loss, ".4f"),
        _figure(r.champion_accuracy, ".1%"),
        _figure(r.candidate_accuracy, ".1%"),
    ]
    return [*_run_cells(r), *map(_e, figures), _e(r.decision_reason or "")]


def _gate_figures(
    classifier: bool, mae: float | None, log_loss: float | None, accuracy: float | None
) -> str:
    """One model's figures in words, for a table of both tasks' runs."""
    if not classifier:
        return "—" if mae is None else f"MAE {number(mae)}"
    if log_loss is None and accuracy is None:
        return "—"
    return f"log-loss {_figure(log_loss, '.4f')}, accuracy {_figure(accuracy, '.1%')}"


def _mixed_run_row(r: RetrainRun) -> list[str]:
    classifier = r.is_classification
    figures = [
        _gate_figures(classifier, r.champion_mae, r.champion_log_loss, r.champion_accuracy),
        _gate_figures(classifier, r.candidate_mae, r.candidate_log_loss, r.candidate_accuracy),
    ]
    return [*_run_cells(r), *map(_e, figures), _e(r.decision_reason or "")]


def _runs(runs: Sequence[RetrainRun]) -> str:
    """The runs with their gate's figures on the holdout: the MAE for regression runs,
    log-loss and accuracy for a classifier's; each run its own when both tasks ran."""
    headers = ["#", "started", "finished", "champion", "candidate", "outcome"]
    classification = any(r.is_classification for r in runs)
    regression = any(r.is_regression for r in runs)
    if classification and regression:
        figures = ["champion on the holdout", "candidate on the holdout"]
        return _table([*headers, *figures, "decision"], map(_mixed_run_row, runs), {0})
    if classification:
        figures = [
            "champion log-loss",
            "candidate log-loss",
            "champion accuracy",
            "candidate accuracy",
        ]
        return _table([*headers, *figures, "decision"], map(_class_run_row, runs), {0, 6, 7, 8, 9})
    figures = ["champion MAE", "candidate MAE"]
    return _table([*headers, *figures, "decision"], map(_regression_run_row, runs), {0, 6, 7})


def retraining(data: ReportData) -> str:
    requests = (
        _table(
            ["#", "requested", "trigger", "version", "status", "reason", "run"],
            map(_request_row, data.requests),
            {0, 6},
        )
        if data.requests
        else _empty("No retrain requests in this period.")
    )
    runs = _runs(data.runs) if data.runs else _empty("No retraining runs in this period.")
    return (
        '<section id="retraining"><h2>Retraining</h2><h3>Requests</h3>'
        f"{requests}<h3>Runs</h3>{runs}</section>"
    )


def _feature(c: FeatureComparison) -> str:
    figures = (
        f"{c.test} statistic {c.statistic:.4g}, p-value {c.p_value:.3g} (drift below "
        f"{c.threshold:.3g}) in window {window_label(c.window_id)}"
        + (
            f"; drifted in {c.drifted_windows} of {c.windows} windows of {c.model_version}"
            if c.windows != 1
            else f", the only window of {c.model_version}"
        )
    )
    beyond = (
        " Values outside the 1st–99th percentile are counted in the outer bins."
        if c.numeric
        else ""
    )
    return (
        f'<div class="feature" data-feature="{_e(c.feature)}"><h3>{_e(c.feature)}</h3>'
        f'<p class="figures">{_e(figures)}.{_e(beyond)}</p><div class="pair">'
        f"{charts.histogram(c, 'reference')}{charts.histogram(c, 'current')}</div></div>"
    )


def drifted_features(data: ReportData) -> str:
    if not data.drifted_features:
        body = _empty("No feature drifted in this period.")
    else:
        body = '<div class="features">' + "".join(map(_feature, data.drifted_features)) + "</div>"
    if data.drifted_not_shown:
        body += f'<p class="figures">Also drifted: {_e(", ".join(data.drifted_not_shown))}.</p>'
    return (
        '<section id="drifted-features"><h2>Features that drifted</h2>'
        '<p class="figures">Reference sample (grey) and the window where the test was most '
        "certain (blue), on the same bins and the same share axis.</p>"
        f"{body}</section>"
    )


def _ood_row(r: OodRow) -> list[str]:
    unusual = "<br>".join(
        f"{_e(u.feature)} = {_e(exact(u.value))} "
        f'<span class="figures">(reference {_e(exact(u.reference_low))}–'
        f"{_e(exact(u.reference_high))})</span>"
        for u in r.unusual
    )
    features = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in r.features)
    return [
        _e(f"{r.score:.3g}"),
        _e("—" if r.threshold is None else f"{r.threshold:.3g}"),
        _e(_when(r.created_at)),
        _e(r.model_version),
        _e(r.predicted_class if r.predicted_class is not None else number(r.prediction)),
        unusual or '<span class="empty">within the reference range</span>',
        f"<details><summary>{_e(r.prediction_id)}</summary><dl>{features}</dl></details>",
    ]


def ood_rows(data: ReportData) -> str:
    body = (
        _table(
            [
                "OOD score",
                "threshold",
                "predicted at",
                "version",
                "prediction",
                "furthest outside the reference",
                "prediction id and features",
            ],
            map(_ood_row, data.ood_rows),
            {0, 1, 4},
        )
        if data.ood_rows
        else _empty("No scored predictions in this period.")
    )
    return (
        '<section id="ood-rows"><h2>Most out-of-distribution rows</h2>'
        '<p class="figures">Mahalanobis distance to the reference; above the threshold a '
        "row counts as out of distribution.</p>"
        f"{body}</section>"
    )


def _version_row(v: VersionSummary) -> list[str]:
    status = _pill("current") + " " if v.is_current else ""
    metrics = v.validation
    return [
        _e(v.version),
        status + _pill(v.status),
        _e(_when(v.created_at)),
        _e(f"{v.training_rows:,}" if v.training_rows is not None else "—"),
        _e(number(metrics["mae"]) if "mae" in metrics else "—"),
        _e(number(metrics["rmse"]) if "rmse" in metrics else "—"),
        _e(f"{metrics['mape']:.1f} %" if "mape" in metrics else "—"),
        _e(f"{metrics['coverage']:.1%}" if "coverage" in metrics else "—"),
        _e(f"{v.predictions:,}"),
        _e(f"{v.labels:,}"),
        _e(number(v.realised_mae) if v.realised_mae is not None else "—"),
    ]


def _class_version_row(v: VersionSummary) -> list[str]:
    status = _pill("current") + " " if v.is_current else ""
    metrics = v.validation
    return [
        _e(v.version),
        status + _pill(v.status),
        _e(_when(v.created_at)),
        _e(f"{v.training_rows:,}" if v.training_rows is not None else "—"),
        _e(f"{metrics['accuracy']:.1%}" if "accuracy" in metrics else "—"),
        _e(f"{metrics['log_loss']:.3f}" if "log_loss" in metrics else "—"),
        _e(f"{metrics['set_coverage']:.1%}" if "set_coverage" in metrics else "—"),
        _e(f"{metrics['ece']:.3f}" if "ece" in metrics else "—"),
        _e(f"{v.predictions:,}"),
        _e(f"{v.labels:,}"),
        _e(f"{v.realised_accuracy:.1%}" if v.realised_accuracy is not None else "—"),
    ]


def _class_versions(classifiers: list[VersionSummary]) -> str:
    return _table(
        [
            "version",
            "status",
            "registered",
            "training rows",
            "validation accuracy",
            "log-loss",
            "set coverage",
            "ECE",
            "predictions",
            "labels scored",
            "realised accuracy",
        ],
        map(_class_version_row, classifiers),
        {3, 4, 5, 6, 7, 8, 9, 10},
    )


# The monitor scores labels by window, so a window still open (not yet full, nor its
# span over) has labels the log holds and these figures do not yet.
_SCORED = (
    '<p class="figures">Labels scored and the realised figures count the labels of '
    "predictions in the windows the monitor has evaluated; a window still open is scored "
    "when it closes.</p>"
)


def versions(data: ReportData) -> str:
    classifiers = [v for v in data.versions if v.task == "classification"]
    if classifiers:
        # each task's own columns; a report of regression versions only is as before
        others = [v for v in data.versions if v.task != "classification"]
        body = _class_versions(classifiers)
        if others:
            body = _regression_versions(others) + body
        return f'<section id="versions"><h2>Model versions</h2>{body}{_SCORED}</section>'
    body = (
        _regression_versions(data.versions) + _SCORED
        if data.versions
        else _empty("No model version served or trained in this period.")
    )
    return f'<section id="versions"><h2>Model versions</h2>{body}</section>'


def _regression_versions(summaries: Sequence[VersionSummary]) -> str:
    return _table(
        [
            "version",
            "status",
            "registered",
            "training rows",
            "validation MAE",
            "RMSE",
            "MAPE",
            "coverage",
            "predictions",
            "labels scored",
            "realised MAE",
        ],
        map(_version_row, summaries),
        {3, 4, 5, 6, 7, 8, 9, 10},
    )


def _class_window_row(p: ClassAccuracyPoint) -> list[str]:
    figures = p.figures
    assert figures is not None  # only realised points with figures are listed
    recall = ", ".join(f"{label} {value:.0%}" for label, value in figures.recall)
    unknown = f" ({figures.unknown_labels} of an unknown class)" if figures.unknown_labels else ""
    return [
        _e(window_label(p.window_id)),
        _e(_when(p.ended_at)),
        _e(f"{p.labels:,}{unknown}" if p.labels is not None else "—"),
        _e(f"{p.accuracy:.1%}"),
        _e(f"{figures.log_loss:.3f}"),
        _e(f"{figures.brier:.3f}"),
        _e(f"{figures.set_coverage:.1%}"),
        _e(f"{figures.set_size:.2f}"),
        _e(f"{figures.ece:.3f}"),
        _e(recall or "—"),
    ]


def classification(data: ReportData) -> str:
    """A classifier's figures per window (by prediction time, from the labels in so
    far); nothing for a report without classifier windows."""
    windows = [
        p for p in data.class_accuracy if p.kind is AccuracyKind.REALISED and p.figures is not None
    ]
    if not windows:
        return ""
    table = _table(
        [
            "window",
            "last prediction",
            "labels",
            "accuracy",
            "log-loss",
            "Brier",
            "set coverage",
            "set size",
            "ECE",
            "recall per class",
        ],
        map(_class_window_row, windows),
        {2, 3, 4, 5, 6, 7, 8},
    )
    return (
        '<section id="classification"><h2>Classification by window</h2>'
        '<p class="figures">Each window\'s labelled predictions so far: accuracy, log-loss, '
        "Brier score, how often the prediction set held the true class and its mean size, "
        "expected calibration error and recall per true class. A label of a class the model "
        f"never saw counts as wrong.</p>{table}</section>"
    )


def notes(data: ReportData) -> str:
    if not data.notes:
        return ""
    items = "".join(f"<li>{_e(n)}</li>" for n in data.notes)
    return f'<section id="notes"><h2>Notes</h2><ul class="notes">{items}</ul></section>'


def render(data: ReportData) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Watchkeeper monitoring report</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<header><h1>Watchkeeper monitoring report</h1><p>{_e(_period(data))}; generated "
        f"{_e(_when(data.generated_at))} UTC</p></header><main>"
        + summary(data)
        + timeline(data)
        + drifted_features(data)
        + ood_rows(data)
        + classification(data)
        + versions(data)
        + retraining(data)
        + notes(data)
        + "</main></body></html>\n"
    )
