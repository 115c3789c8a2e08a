"""What ``watchkeeper model list`` and ``model show`` say about registered versions.

A version's metrics are only comparable with figures measured on the same rows: the
first model is measured on its validation period, each retrained candidate on the
holdout of its run (the newest labelled predictions), where the champion of the day was
measured too. So every version carries the description of its evaluation data and,
for a candidate, the champion's figures on that same holdout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from watchkeeper import figures


@dataclass(frozen=True)
class Metrics:
    mae: float | None = None
    rmse: float | None = None
    mape: float | None = None
    coverage: float | None = None
    rows: int | None = None
    # classifiers
    accuracy: float | None = None
    log_loss: float | None = None
    brier: float | None = None
    set_size: float | None = None

    @classmethod
    def from_dict(cls, raw: object) -> Metrics | None:
        if not isinstance(raw, dict) or not raw:
            return None
        return cls(
            mae=_number(raw.get("mae")),
            rmse=_number(raw.get("rmse")),
            mape=_number(raw.get("mape")),
            # a classifier's prediction set coverage is its interval coverage's counterpart
            coverage=_number(raw.get("coverage", raw.get("set_coverage"))),
            rows=int(raw["rows"]) if isinstance(raw.get("rows"), int | float) else None,
            accuracy=_number(raw.get("accuracy")),
            log_loss=_number(raw.get("log_loss")),
            brier=_number(raw.get("brier")),
            set_size=_number(raw.get("set_size")),
        )


@dataclass(frozen=True)
class Evaluation:
    """Where a version's metrics come from, and what to compare them with."""

    metrics: Metrics | None
    data: str  # e.g. "validation: ames 2008-01 to 2008-12, 622 rows"
    champion: str | None = None  # the champion measured on the same rows (candidates)
    champion_metrics: Metrics | None = None


@dataclass(frozen=True)
class VersionSummary:
    """One registered version, as read from its ``metadata.json``."""

    version: str
    status: str
    created_at: str
    training_rows: int | None
    evaluation: Evaluation
    run_id: int | None
    reason: str | None
    metadata: dict[str, Any]

    @property
    def classifier(self) -> bool:
        return self.metadata.get("task") == "classification"

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> VersionSummary:
        notes = meta.get("notes") if isinstance(meta.get("notes"), dict) else {}
        window = meta.get("training_window") or {}
        run_id = notes.get("run_id")
        return cls(
            version=str(meta.get("version", "?")),
            status=str(meta.get("status", "registered")),
            created_at=str(meta.get("created_at", "")),
            training_rows=window.get("rows") if isinstance(window.get("rows"), int) else None,
            evaluation=_evaluation(meta, notes, run_id),
            run_id=run_id if isinstance(run_id, int) else None,
            reason=notes.get("reason"),
            metadata=meta,
        )


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _evaluation(meta: dict[str, Any], notes: dict[str, Any], run_id: object) -> Evaluation:
    metrics = Metrics.from_dict(meta.get("metrics"))
    validation = meta.get("validation_window")
    if isinstance(validation, dict):
        return Evaluation(metrics, f"validation: {_describe_window(validation)}")
    window = meta.get("training_window") or {}
    if run_id is not None and "holdout_rows" in window:
        return Evaluation(
            metrics,
            f"holdout of run {run_id}: {_describe_holdout(window)}",
            champion=notes.get("champion"),
            champion_metrics=Metrics.from_dict(notes.get("champion_metrics_on_holdout")),
        )
    if metrics is None:
        return Evaluation(None, "not measured")
    return Evaluation(metrics, "unrecorded data")


def _period(value: object) -> str:
    """A ``YYYYMM`` period as ``2008-01``, a fractional one (a decimal year, 2009.8333…)
    to six significant digits; any other value as it is."""
    if isinstance(value, int) and 100001 <= value <= 999912 and 1 <= value % 100 <= 12:
        return f"{value // 100}-{value % 100:02d}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _describe_window(window: dict[str, Any]) -> str:
    rows = f"{figures.count(window.get('rows'))} rows"
    name = window.get("dataset", "data")
    if "start" in window and "end" in window:
        return f"{name} {_period(window['start'])} to {_period(window['end'])}, {rows}"
    return f"{name}, {rows}"


def _timestamp(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


def _describe_holdout(window: dict[str, Any]) -> str:
    rows = f"the newest {figures.count(window.get('holdout_rows'))} labelled predictions"
    first, last = _timestamp(window.get("holdout_from")), _timestamp(window.get("holdout_to"))
    if first is None or last is None:
        return rows
    end = f"{last:%H:%M}" if first.date() == last.date() else f"{last:%Y-%m-%d %H:%M}"
    return f"{rows}, predicted {first:%Y-%m-%d %H:%M} to {end}"


# -- model list -------------------------------------------------------------------

LIST_FOOTNOTE = (
    "{figures} are measured on the data named last on each line; "
    "a retrained version's champion {score} is the champion's on that same holdout, "
    "the figure to compare it with (versions measured on different data are not comparable)."
)


def list_lines(summaries: list[VersionSummary], current: str | None) -> list[str]:
    """The ``model list`` table: one line per version, then what the figures mean. The
    columns are a regression model's (MAE, MAPE, interval coverage) or, when the
    versions are classifiers, a classifier's (log-loss, accuracy, set coverage)."""
    classifiers = bool(summaries) and all(s.classifier for s in summaries)
    score, second = ("log-loss", "acc") if classifiers else ("MAE", "MAPE")
    header = (
        f"{'':2}{'version':<9}{'status':<12}{'created':<18}{'train rows':>10}"
        f"{score:>10}{second:>7}{'coverage':>10}{'champion ' + score:>18}  measured on"
    )
    lines = [header]
    for summary in summaries:
        metrics = summary.evaluation.metrics or Metrics()
        if classifiers:
            first = figures.amount(metrics.log_loss)
            other = figures.percent(metrics.accuracy, ratio=True)
        else:
            first, other = figures.amount(metrics.mae), figures.percent(metrics.mape)
        lines.append(
            f"{'*' if summary.version == current else '':2}{summary.version:<9}"
            f"{summary.status:<12}{summary.created_at[:16].replace('T', ' '):<18}"
            f"{figures.count(summary.training_rows):>10}"
            f"{first:>10}{other:>7}"
            f"{figures.percent(metrics.coverage, ratio=True):>10}"
            f"{_champion_score(summary.evaluation, classifiers):>18}  {summary.evaluation.data}"
        )
    named = "Log-loss, accuracy and set coverage" if classifiers else "MAE, MAPE and coverage"
    footnote = LIST_FOOTNOTE.format(figures=named, score=score)
    return [*lines, "", "* current. " + footnote]


def _champion_score(evaluation: Evaluation, classifiers: bool) -> str:
    if evaluation.champion is None:
        return figures.MISSING
    old = evaluation.champion_metrics or Metrics()
    return f"{evaluation.champion} {figures.amount(old.log_loss if classifiers else old.mae)}"


# -- model show -------------------------------------------------------------------


def show_text(summary: VersionSummary, current: str | None) -> str:
    """A readable account of one version; ``model show --json`` prints everything."""
    meta = summary.metadata
    evaluation = summary.evaluation
    title = f"{summary.version}{' (current)' if summary.version == current else ''}"
    origin = f", by retraining run {summary.run_id}" if summary.run_id is not None else ""
    created = summary.created_at[:19].replace("T", " ")
    lines = [f"{title}: {summary.status}{origin}, created {created} UTC"]
    if summary.reason:
        lines.append(f"  decision: {summary.reason}")
    lines.append(f"trained on:  {_describe_training(meta.get('training_window') or {})}")
    lines.append(f"measured on: {evaluation.data}")
    lines += _metric_lines(evaluation, meta)
    lines += _model_lines(meta)
    lines.append(f"full metadata: watchkeeper model show {summary.version} --json")
    return "\n".join(lines)


def _describe_training(window: dict[str, Any]) -> str:
    if "base" not in window:
        return _describe_window(window)
    base = window["base"]
    labelled = window.get("labelled_in_training")
    days = window.get("window_days")
    within = f" of the last {days:g} days" if isinstance(days, int | float) else ""
    return (
        f"{figures.count(window.get('rows'))} rows: {_describe_window(base)}, "
        f"and {figures.count(labelled)} labelled predictions{within}"
    )


def _metric_lines(evaluation: Evaluation, meta: dict[str, Any]) -> list[str]:
    metrics = evaluation.metrics
    if metrics is None:
        return ["  no metrics recorded"]
    classifier = meta.get("task") == "classification"
    kind = "prediction set" if classifier else "interval"
    level = (meta.get("prediction_set" if classifier else "interval") or {}).get("level")
    interval = f"{level:.0%} {kind}" if isinstance(level, int | float) else kind
    old = evaluation.champion_metrics or Metrics()
    rows = _classifier_rows(metrics, old) if classifier else _regression_rows(metrics, old)
    lines = []
    for name, value, champion_value, compared in rows:
        line = f"  {name:<9}{value:>10}"
        if evaluation.champion is not None:
            line += f"   champion {evaluation.champion} on the same rows: {champion_value}"
            if compared is not None:
                line += f" (candidate {figures.change(*compared)})"
        lines.append(line)
    lines[-1] += f"   ({interval})"
    return lines


Row = tuple[str, str, str, tuple[float | None, float | None] | None]


def _classifier_rows(metrics: Metrics, old: Metrics) -> tuple[Row, ...]:
    def ratio(value: float | None) -> str:
        return figures.percent(value, ratio=True)

    return (
        ("accuracy", ratio(metrics.accuracy), ratio(old.accuracy), None),
        (
            "log-loss",
            figures.amount(metrics.log_loss),
            figures.amount(old.log_loss),
            (metrics.log_loss, old.log_loss),
        ),
        ("Brier", figures.amount(metrics.brier), figures.amount(old.brier), None),
        ("set size", figures.amount(metrics.set_size), figures.amount(old.set_size), None),
        ("coverage", ratio(metrics.coverage), ratio(old.coverage), None),
    )


def _regression_rows(metrics: Metrics, old: Metrics) -> tuple[Row, ...]:
    return (
        ("MAE", figures.amount(metrics.mae), figures.amount(old.mae), (metrics.mae, old.mae)),
        ("RMSE", figures.amount(metrics.rmse), figures.amount(old.rmse), (metrics.rmse, old.rmse)),
        ("MAPE", figures.percent(metrics.mape), figures.percent(old.mape), None),
        (
            "coverage",
            figures.percent(metrics.coverage, ratio=True),
            figures.percent(old.coverage, ratio=True),
            None,
        ),
    )


def _model_lines(meta: dict[str, Any]) -> list[str]:
    lines = []
    schema = meta.get("schema") or {}
    features = schema.get("features") or []
    if features:
        numeric = sum(1 for f in features if f.get("kind") == "numeric")
        lines.append(
            f"features:    {len(features)} ({numeric} numeric, {len(features) - numeric} "
            f"categorical), target {schema.get('target', '?')}"
        )
    interval = meta.get("interval") or {}
    if interval:
        lines.append(
            f"interval:    {interval.get('level', 0):.0%}, half-width "
            f"{figures.amount(_number(interval.get('half_width')))} on the "
            f"{interval.get('scale', '?')} scale"
        )
    prediction_set = meta.get("prediction_set") or {}
    if prediction_set:
        classes = meta.get("classes") or []
        shown = ", ".join(str(c) for c in classes[:10]) + (", …" if len(classes) > 10 else "")
        lines.append(f"classes:     {len(classes)} ({shown})")
        lines.append(
            f"set:         {prediction_set.get('level', 0):.0%}, a class is in when its "
            f"probability is at least {figures.amount(_number(prediction_set.get('threshold')))}"
        )
    params = meta.get("params") or {}
    if params:
        lines.append("parameters:  " + ", ".join(f"{k}={v}" for k, v in params.items()))
    artifacts = meta.get("artifacts") or {}
    for name, info in artifacts.items():
        lines.append(
            f"artifact:    {name}, {figures.count(info.get('bytes'))} bytes, "
            f"sha256 {str(info.get('sha256', ''))[:12]}…"
        )
    return lines
