"""Every PromQL query the dashboards show, by name, apart from the panels that use
them; tests run each against a real Prometheus (variables replaced by their "All"
values) and check the metrics exist.

Every query selects ``$job`` and ``$namespace``; ``$model_version`` filters every
series that carries a ``model_version`` label (a series without it would be emptied
by a chosen version, so the variable is not applied there).

A query that fits one task only (MAE for a regression model, accuracy for a
classifier) is joined on the served model's task, :func:`for_task`: while a model of
the other task is served it has no series. :mod:`watchkeeper.grafana.dashboards` says
why this and not a repeated row.
"""

from __future__ import annotations

from watchkeeper.mixin.config import MixinConfig
from watchkeeper.task import Task

SEL = 'job=~"$job",namespace=~"$namespace"'
MODEL = f'{SEL},model_version=~"$model_version"'
PREDICT = f'{SEL},endpoint="/predict"'
BY = "namespace, job"


def _q(metric: str, selector: str = SEL) -> str:
    return f"{metric}{{{selector}}}"


def _quantile(q: str, metric: str, window: str) -> str:
    return f"histogram_quantile({q}, sum by ({BY}, le) (rate({_q(metric, SEL)}[{window}])))"


def served_task(task: Task) -> str:
    """1 per namespace while serving serves a model of ``task``. ``last_over_time``
    over an hour: a scrape gap or a server down for minutes must not blank the accuracy
    panels just when someone looks at them (a replaced version's series is set to 0 at
    the swap, so a change of task shows at once)."""
    info = _q("watchkeeper_model_info", f'{SEL},task="{task.value}"')
    return f"(max by (namespace) (last_over_time({info}[1h])) == 1)"


def for_task(task: Task, expr: str) -> str:
    """``expr`` while a model of ``task`` is served, no series otherwise."""
    return f"({expr}) and on (namespace) {served_task(task)}"


def queries(c: MixinConfig) -> dict[str, str]:
    m = "watchkeeper_monitor_"
    classes = _q("watchkeeper_predicted_class_total", MODEL)

    def reg(expr: str) -> str:
        return for_task(Task.REGRESSION, expr)

    def cls(expr: str) -> str:
        return for_task(Task.CLASSIFICATION, expr)

    def by_version(name: str, how: str = "max") -> str:
        return f"{how} by ({BY}, model_version) ({_q(m + name, MODEL)})"

    def by_feature(name: str, how: str = "max") -> str:
        return f"{how} by ({BY}, feature) ({_q(m + name, MODEL)})"

    def excess(rate: str) -> str:
        return (
            f"max by ({BY}, feature) ({_q(m + rate, MODEL)} - {_q(m + 'reference_' + rate, MODEL)})"
        )

    return {
        # serving
        "request_rate": _q("watchkeeper:predict_requests:rate5m"),
        "error_ratio": _q("watchkeeper:predict_errors:ratio5m"),
        "rejected_ratio": _q("watchkeeper:predict_rejected:ratio5m"),
        "latency_p50": _q("watchkeeper:predict_latency_seconds:p50_5m"),
        "latency_p95": _q("watchkeeper:predict_latency_seconds:p95_5m"),
        "latency_p99": _q("watchkeeper:predict_latency_seconds:p99_5m"),
        "batch_size_p50": _quantile("0.5", "watchkeeper_predict_batch_size_bucket", "5m"),
        "batch_size_p99": _quantile("0.99", "watchkeeper_predict_batch_size_bucket", "5m"),
        "model_version": f"max by ({BY}, model_version, task) "
        f"({_q('watchkeeper_model_info', MODEL)})"
        " > 0",
        "model_fallback": f"max by ({BY}) ({_q('watchkeeper_model_fallback')})",
        "prediction_rate": _q("watchkeeper:predictions:rate5m", MODEL),
        "log_queue_depth": f"sum by ({BY}) ({_q('watchkeeper_log_queue_depth')})",
        "log_stalled": f"max by ({BY}) ({_q('watchkeeper_log_stalled_seconds')})",
        "log_rows_written": (
            f"sum by ({BY}, table) (rate({_q('watchkeeper_log_rows_written_total')}[5m]))"
        ),
        "log_backlog_bytes": f"sum by ({BY}) ({_q('watchkeeper_log_backlog_bytes')})",
        "log_journal_bytes": f"max by ({BY}) ({_q('watchkeeper_log_journal_bytes')})",
        "log_journal_writable": f"min by ({BY}) ({_q('watchkeeper_log_journal_writable')})",
        "log_dead_lettered": (
            f"sum by ({BY}) (increase({_q('watchkeeper_log_rows_dead_lettered_total')}[1h]))"
        ),
        "log_rejected": (
            f"sum by ({BY}) (increase({_q('watchkeeper_log_entries_rejected_total')}[1h]))"
        ),
        "log_replayed": (
            f"sum by ({BY}) (increase({_q('watchkeeper_log_rows_replayed_total')}[1h]))"
        ),
        "log_writer_restarts": (
            f"sum by ({BY}) (increase({_q('watchkeeper_log_writer_restarts_total')}[15m]))"
        ),
        "retention_age": (
            f"time() - max by ({BY}, table) "
            f"({_q('watchkeeper_retention_oldest_row_timestamp_seconds')})"
        ),
        "retention_limit": (f"max by ({BY}, table) ({_q('watchkeeper_retention_limit_seconds')})"),
        "log_rows": f"max by ({BY}, table) ({_q('watchkeeper_retention_rows')})",
        "retention_errors": (
            f"sum by ({BY}, task) (increase({_q('watchkeeper_retention_errors_total')}[1h]))"
        ),
        "log_database_up": f"min by ({BY}) ({_q('watchkeeper_log_database_up')})",
        # model health
        "dataset_drift": by_version("dataset_drift"),
        "drifted_share": by_version("drifted_features_ratio"),
        "feature_p_values": by_feature("feature_drift_p_value", "min"),
        "feature_distances": by_feature("feature_drift_distance"),
        "output_drift_p": by_version("output_drift_p_value"),
        "multivariate_drift_p": by_version("multivariate_drift_p_value"),
        "ood_fraction": by_version("ood_fraction"),
        "missing_excess": excess("missing_rate"),
        "unseen_excess": excess("unseen_category_rate"),
        "out_of_range_excess": excess("out_of_range_rate"),
        "monitor_rejected_rate": by_version("rejected_request_rate"),
        "prediction_p10": reg(_quantile("0.1", "watchkeeper_prediction_value_bucket", "1h")),
        "prediction_p50": reg(_quantile("0.5", "watchkeeper_prediction_value_bucket", "1h")),
        "prediction_p90": reg(_quantile("0.9", "watchkeeper_prediction_value_bucket", "1h")),
        # each class's share of the last hour's predictions
        "predicted_classes": cls(
            f"sum by ({BY}, label) (rate({classes}[1h])) / ignoring (label) group_left "
            f"sum by ({BY}) (rate({classes}[1h]))"
        ),
        "window_size": by_version("window_size"),
        "monitor_age": (f"time() - max by ({BY}) ({_q(m + 'last_success_timestamp_seconds')})"),
        "window_errors": (f"sum by ({BY}, check) (increase({_q(m + 'window_errors_total')}[10m]))"),
        # accuracy of a regression model
        "mae": reg(by_version("mae")),
        "mae_lower_bound": reg(by_version("mae_lower_bound")),
        # direct loss estimation: a window's MAE before its labels arrive
        "estimated_mae": reg(by_version("estimated_mae")),
        "validation_mae": reg(by_version("validation_mae")),
        # the accuracy alert's limit, drawn as a line: the same factor as the rule
        "mae_limit": reg(f"{c.thresholds.mae_factor:g} * {by_version('validation_mae')}"),
        "rmse": reg(by_version("rmse")),
        "mape": reg(by_version("mape_ratio")),
        "coverage": reg(by_version("interval_coverage")),
        # accuracy of a classifier
        "accuracy": cls(by_version("accuracy_ratio")),
        "accuracy_lower_bound": cls(by_version("accuracy_lower_bound_ratio")),
        "accuracy_upper_bound": cls(by_version("accuracy_upper_bound_ratio")),
        "validation_accuracy": cls(by_version("validation_accuracy_ratio")),
        # the classifier accuracy alert's limit: the same drop as the rule
        "accuracy_limit": cls(
            f"{by_version('validation_accuracy_ratio')} - {c.thresholds.accuracy_drop:g}"
        ),
        "log_loss": cls(by_version("log_loss")),
        "validation_log_loss": cls(by_version("validation_log_loss")),
        "brier": cls(by_version("brier_score")),
        "set_coverage": cls(by_version("prediction_set_coverage_ratio")),
        "set_size": cls(by_version("prediction_set_size")),
        "calibration_error": cls(by_version("calibration_error_ratio")),
        "class_recall": cls(
            f"max by ({BY}, model_version, class) ({_q(m + 'class_recall_ratio', MODEL)})"
        ),
        # the calibration map's mean over the last window: accuracy before any label
        "estimated_accuracy": cls(by_version("estimated_accuracy_ratio")),
        "estimated_accuracy_error": cls(by_version("estimated_accuracy_error_ratio")),
        # labels and lifecycle
        "label_delay": by_version("label_delay_seconds"),
        "labels": by_version("labels"),
        "labels_age": f"time() - max by ({BY}) ({_q(m + 'last_labels_timestamp_seconds')})",
        "feedback_orphans": (f"sum by ({BY}) (increase({_q(m + 'feedback_orphans_total')}[1h]))"),
        "retrain_runs": (
            f"sum by ({BY}, outcome) (increase({_q('watchkeeper_retrain_runs_total')}[1h]))"
        ),
        "retrain_pending": f"max by ({BY}) ({_q('watchkeeper_retrain_requests_pending')})",
        "retrain_in_progress": f"max by ({BY}) ({_q('watchkeeper_retrain_runs_in_progress')})",
        "retrain_database_up": f"min by ({BY}) ({_q('watchkeeper_retrain_database_up')})",
        "retrain_requests": (
            f"sum by ({BY}, reason) (increase({_q(m + 'retrain_requests_total')}[1h]))"
        ),
        "retrain_duration": (
            f"max by ({BY}) ({_q('watchkeeper_retrain_last_run_duration_seconds')})"
        ),
        # per worker process (instance): a stuck one is the one to restart. The age is
        # exported only while a job runs; an idle worker draws 0 (its stalled gauge,
        # always exported, times 0) rather than no line at all
        "retrain_seconds_since_progress": (
            f"max by ({BY}, instance) "
            f"({_q('watchkeeper_retrain_job_seconds_since_progress')}) "
            f"or 0 * max by ({BY}, instance) ({_q('watchkeeper_retrain_job_stalled')})"
        ),
        "retrain_job_stalled": (
            f"max by ({BY}, instance) ({_q('watchkeeper_retrain_job_stalled')})"
        ),
        # a day: the stall deadline is an hour by default, so a job hanging again after
        # each restart shows as a count, not a single blip (increase spans the restarts)
        "retrain_job_stalls": (
            f"sum by ({BY}, instance) (increase({_q('watchkeeper_retrain_job_stalls_total')}[1d]))"
        ),
        # an annotation at each promotion: the value is the time (Grafana's useValueForTime)
        "promotions": (
            f"max by ({BY}) ({_q('watchkeeper_retrain_last_promotion_timestamp_seconds')}) * 1000"
        ),
    }
