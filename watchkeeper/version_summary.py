"""What ``watchkeeper model list`` and ``model show`` say about registered versions.

A version's metrics are only comparable with figures measured on the same rows: the
first model is measured on its validation period, each retrained candidate on the
holdout of its run (the newest labelled predictions), where the champion of the day was
measured too. So every version carries the description of its evaluation data and,
for a candidate, the champion's figures on that same holdout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from watchkeeper import figures
from watchkeeper.task import Task
from watchkeeper.version_metadata import DataWindow, ModelMetrics, VersionMetadata, VersionStatus


@dataclass(frozen=True)
class Evaluation:
    """Where a version's metrics come from, and what to compare them with."""

    metrics: ModelMetrics | None
    data: str  # e.g. "validation: ames 2008-01 to 2008-12, 622 rows"
    champion: str | None = None  # the champion measured on the same rows (candidates)
    champion_metrics: ModelMetrics | None = None


@dataclass(frozen=True)
class VersionSummary:
    """One registered version, as read from its validated ``metadata.json``."""

    version: str
    status: VersionStatus
    created_at: str
    training_rows: int
    evaluation: Evaluation
    run_id: int | None
    reason: str | None
    record: VersionMetadata

    @property
    def classifier(self) -> bool:
        return self.record.task is Task.CLASSIFICATION

    @classmethod
    def from_record(cls, record: VersionMetadata) -> VersionSummary:
        notes = record.notes
        return cls(
            version=record.version,
            status=record.status,
            created_at=record.created_at,
            training_rows=record.training_window.rows,
            evaluation=_evaluation(record),
            run_id=notes.run_id,
            reason=notes.reason,
            record=record,
        )


def _measured(metrics: ModelMetrics | None) -> ModelMetrics | None:
    return metrics if metrics is not None and metrics.measured else None


def _evaluation(record: VersionMetadata) -> Evaluation:
    metrics = _measured(record.metrics)
    if record.validation_window is not None:
        return Evaluation(metrics, f"validation: {_describe_window(record.validation_window)}")
    window, notes = record.training_window, record.notes
    if notes.run_id is not None and window.holdout_rows is not None:
        return Evaluation(
            metrics,
            f"holdout of run {notes.run_id}: {_describe_holdout(window)}",
            champion=notes.champion,
            champion_metrics=_measured(notes.champion_metrics_on_holdout),
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


def _describe_window(window: DataWindow) -> str:
    rows = f"{figures.count(window.rows)} rows"
    if window.has_period:
        return f"{window.dataset} {_period(window.start)} to {_period(window.end)}, {rows}"
    return f"{window.dataset}, {rows}"


def _timestamp(text: str | None) -> datetime | None:
    try:
        return None if text is None else datetime.fromisoformat(text)
    except ValueError:
        return None


def _describe_holdout(window: DataWindow) -> str:
    rows = f"the newest {figures.count(window.holdout_rows)} labelled predictions"
    first, last = _timestamp(window.holdout_from), _timestamp(window.holdout_to)
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
        metrics = summary.evaluation.metrics or ModelMetrics()
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
            f"{figures.percent(metrics.any_coverage, ratio=True):>10}"
            f"{_champion_score(summary.evaluation, classifiers):>18}  {summary.evaluation.data}"
        )
    named = "Log-loss, accuracy and set coverage" if classifiers else "MAE, MAPE and coverage"
    footnote = LIST_FOOTNOTE.format(figures=named, score=score)
    return [*lines, "", "* current. " + footnote]


def _champion_score(evaluation: Evaluation, classifiers: bool) -> str:
    if evaluation.champion is None:
        return figures.MISSING
    old = evaluation.champion_metrics or ModelMetrics()
    return f"{evaluation.champion} {figures.amount(old.log_loss if classifiers else old.mae)}"


# -- model show -------------------------------------------------------------------


def show_text(summary: VersionSummary, current: str | None) -> str:
    """A readable account of one version; ``model show --json`` prints everything."""
    record = summary.record
    evaluation = summary.evaluation
    title = f"{summary.version}{' (current)' if summary.version == current else ''}"
    origin = f", by retraining run {summary.run_id}" if summary.run_id is not None else ""
    created = summary.created_at[:19].replace("T", " ")
    lines = [f"{title}: {summary.status}{origin}, created {created} UTC"]
    if summary.reason:
        lines.append(f"  decision: {summary.reason}")
    lines.append(f"trained on:  {_describe_training(record.training_window)}")
    lines.append(f"measured on: {evaluation.data}")
    lines += _metric_lines(evaluation, record)
    lines += _model_lines(record)
    lines.append(f"full metadata: watchkeeper model show {summary.version} --json")
    return "\n".join(lines)


def _describe_training(window: DataWindow) -> str:
    if window.base is None:
        return _describe_window(window)
    days = window.window_days
    within = f" of the last {days:g} days" if days is not None else ""
    return (
        f"{figures.count(window.rows)} rows: {_describe_window(window.base)}, "
        f"and {figures.count(window.labelled_in_training)} labelled predictions{within}"
    )


def _metric_lines(evaluation: Evaluation, record: VersionMetadata) -> list[str]:
    metrics = evaluation.metrics
    if metrics is None:
        return ["  no metrics recorded"]
    classifier = record.task is Task.CLASSIFICATION
    kind = "prediction set" if classifier else "interval"
    interval = f"{record.level:.0%} {kind}"
    old = evaluation.champion_metrics or ModelMetrics()
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


def _classifier_rows(metrics: ModelMetrics, old: ModelMetrics) -> tuple[Row, ...]:
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
        ("coverage", ratio(metrics.any_coverage), ratio(old.any_coverage), None),
    )


def _regression_rows(metrics: ModelMetrics, old: ModelMetrics) -> tuple[Row, ...]:
    return (
        ("MAE", figures.amount(metrics.mae), figures.amount(old.mae), (metrics.mae, old.mae)),
        ("RMSE", figures.amount(metrics.rmse), figures.amount(old.rmse), (metrics.rmse, old.rmse)),
        ("MAPE", figures.percent(metrics.mape), figures.percent(old.mape), None),
        (
            "coverage",
            figures.percent(metrics.any_coverage, ratio=True),
            figures.percent(old.any_coverage, ratio=True),
            None,
        ),
    )


def _model_lines(record: VersionMetadata) -> list[str]:
    lines = []
    schema = record.feature_schema
    if schema.features:
        numeric = len(schema.numeric)
        lines.append(
            f"features:    {len(schema.features)} ({numeric} numeric, "
            f"{len(schema.features) - numeric} categorical), target {schema.target}"
        )
    if record.interval is not None:
        interval = record.interval
        lines.append(
            f"interval:    {interval.level:.0%}, half-width "
            f"{figures.amount(interval.half_width)} on the {interval.scale} scale"
        )
    if record.prediction_set is not None:
        classes = record.classes or ()
        shown = ", ".join(str(c) for c in classes[:10]) + (", …" if len(classes) > 10 else "")
        lines.append(f"classes:     {len(classes)} ({shown})")
        lines.append(
            f"set:         {record.prediction_set.level:.0%}, a class is in when its "
            f"probability is at least {figures.amount(record.prediction_set.threshold)}"
        )
    params = asdict(record.params)
    lines.append("parameters:  " + ", ".join(f"{k}={v}" for k, v in params.items()))
    for name, artifact in record.artifacts.items():
        lines.append(
            f"artifact:    {name}, {figures.count(artifact.bytes)} bytes, "
            f"sha256 {artifact.sha256[:12]}…"
        )
    return lines
