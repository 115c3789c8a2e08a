"""The alert rules, built from :class:`MixinConfig`: every threshold and duration the
monitor also acts on comes from the config, every expression selects its own job
(and namespace when set) and keeps ``namespace`` and ``job`` through aggregations.

Each alert names the dashboard panel that explains it; the rule file gets that
panel's absolute URL as ``dashboard_url`` (see :mod:`watchkeeper.mixin.files`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from watchkeeper.mixin import panels as p
from watchkeeper.mixin.config import Component, DashboardUid, MixinConfig, prom_duration

SERVING, MONITOR, RETRAIN = Component.SERVING, Component.MONITOR, Component.RETRAIN


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class PanelRef:
    """A dashboard panel, by dashboard uid and panel title."""

    dashboard: DashboardUid
    title: str


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_seconds: float
    severity: Severity
    summary: str
    description: str
    runbook_anchor: str
    """Section of docs/runbook.md (its heading, lower case, hyphenated)."""
    panel: PanelRef


@dataclass(frozen=True)
class AlertGroup:
    name: str
    alerts: tuple[Alert, ...]


def percent(ratio: float) -> str:
    return f"{ratio * 100:g} %"


def spoken(seconds: float) -> str:
    """A duration as people say it: ``30 minutes``, ``1 hour``, ``1 day``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return f"{seconds:g} seconds"


def model_alerts(c: MixinConfig) -> AlertGroup:
    t, d, by = c.thresholds, c.durations, c.by
    mon = c.selector(MONITOR)
    drift_span = spoken(d.drift)
    # windows still come: at steady traffic the newest one ended less than a window's
    # span (plus the settle and a cycle) ago. Without it the last window's verdict,
    # standing once traffic stops, fired on one or two drifted windows where the
    # trigger wants three.
    window_age = d.window_age
    return AlertGroup(
        "watchkeeper-model",
        (
            Alert(
                "WatchkeeperDatasetDriftSustained",
                f"max by ({by('model_version')}) (watchkeeper_monitor_dataset_drift{mon}) == 1\n"
                f"and on ({by('model_version')})\n"
                f"time() - max by ({by('model_version')}) "
                f"(watchkeeper_monitor_window_end_timestamp_seconds{mon}) < {window_age:g}",
                d.drift,
                Severity.WARNING,
                f"Dataset drift on model {{{{ $labels.model_version }}}} for {drift_span}",
                f"Every monitor window of the last {drift_span} differs from the training "
                "reference (KS/chi-squared with correction): the span of "
                f"{t.drift_windows} consecutive windows, the monitor's retrain rule. "
                "A retrain is requested.",
                "dataset-drift-sustained",
                PanelRef(DashboardUid.MODEL_HEALTH, p.DATASET_DRIFT),
            ),
            Alert(
                "WatchkeeperFeatureDrift",
                f"max by ({by('model_version')}) "
                f"(watchkeeper_monitor_drifted_features_ratio{mon}) > 0",
                d.feature_drift,
                Severity.INFO,
                "Some features of model {{ $labels.model_version }} drift",
                "Some features drifted in the last window, without a dataset-level verdict "
                "(see watchkeeper_monitor_feature_drift_p_value).",
                "feature-drift",
                PanelRef(DashboardUid.MODEL_HEALTH, p.DRIFTED_SHARE),
            ),
            Alert(
                "WatchkeeperHighOODFraction",
                f"max by ({by('model_version')}) (watchkeeper_monitor_ood_fraction{mon}) "
                f"> {t.ood_fraction:g}",
                d.ood,
                Severity.WARNING,
                "Many out-of-distribution requests for model {{ $labels.model_version }}",
                f"More than {percent(t.ood_fraction)} of the last window scored out of "
                f"distribution for {spoken(d.ood)}.",
                "high-ood-fraction",
                PanelRef(DashboardUid.MODEL_HEALTH, p.OOD_FRACTION),
            ),
            Alert(
                "WatchkeeperAccuracyDegraded",
                f"max by ({by('model_version')}) (watchkeeper_monitor_mae_lower_bound{mon})\n"
                f"> {t.mae_factor:g} * "
                f"max by ({by('model_version')}) (watchkeeper_monitor_validation_mae{mon})",
                d.accuracy,
                Severity.CRITICAL,
                "Model {{ $labels.model_version }} MAE is "
                f"{percent(t.mae_degradation)} worse than at validation",
                "The lower confidence bound of the rolling MAE from feedback has been above "
                f"{t.mae_factor:g} times the validation MAE for {spoken(d.accuracy)}: the "
                "degradation is not noise of a few labels. A retrain is requested.",
                "accuracy-degraded",
                PanelRef(DashboardUid.ACCURACY, p.MAE),
            ),
            Alert(
                "WatchkeeperIntervalCoverageOutOfBand",
                f"max by ({by('model_version')}) "
                f"(watchkeeper_monitor_interval_coverage{mon}) < {t.coverage_min:g}\nor\n"
                f"max by ({by('model_version')}) "
                f"(watchkeeper_monitor_interval_coverage{mon}) > {t.coverage_max:g}",
                d.coverage,
                Severity.WARNING,
                "Model {{ $labels.model_version }}'s prediction interval covers too few or "
                "too many actual values",
                "The rolling share of actual values inside the "
                f"prediction interval has been outside [{percent(t.coverage_min)}, "
                f"{percent(t.coverage_max)}] for {spoken(d.coverage)}: the uncertainty "
                "clients are given is wrong.",
                "interval-coverage-out-of-band",
                PanelRef(DashboardUid.ACCURACY, p.INTERVAL_COVERAGE),
            ),
            Alert(
                "WatchkeeperTooFewLabels",
                # predictions flow, unless labels came recently; no labels ever: fires
                f"sum by ({by()}) (rate(watchkeeper_predictions_total{c.selector(SERVING)}[1h]))"
                " > 0\nunless on (namespace)\n"
                f"(time() - max by (namespace) "
                f"(watchkeeper_monitor_last_labels_timestamp_seconds{mon}) "
                f"<= {t.labels_stale_seconds:g})",
                d.too_few_labels,
                Severity.WARNING,
                f"No new ground truth for {spoken(t.labels_stale_seconds)} while predictions flow",
                "Accuracy cannot be judged: no feedback batch large enough has arrived for "
                f"{spoken(t.labels_stale_seconds)}.",
                "too-few-labels",
                PanelRef(DashboardUid.ACCURACY, p.LABELS_AGE),
            ),
        ),
    )


def classification_alerts(c: MixinConfig) -> AlertGroup:
    """A classifier's accuracy, prediction sets, calibration and label-free estimate.
    They read only the gauges the monitor exports for classifier versions (and the
    regression alerts only a regression version's), so neither set can fire for a model
    of the other task; they do not join on serving's ``watchkeeper_model_info``, so an
    unreachable server does not silence them."""
    t, d, by = c.thresholds, c.durations, c.by
    mon = c.selector(MONITOR)

    def rolling(name: str) -> str:
        return f"max by ({by('model_version')}) (watchkeeper_monitor_{name}{mon})"

    drop = f"{t.accuracy_drop * 100:g} points"
    return AlertGroup(
        "watchkeeper-classification",
        (
            Alert(
                "WatchkeeperClassifierAccuracyDegraded",
                f"{rolling('accuracy_upper_bound_ratio')}\n"
                f"< {rolling('validation_accuracy_ratio')} - {t.accuracy_drop:g}",
                d.accuracy,
                Severity.CRITICAL,
                f"Classifier {{{{ $labels.model_version }}}}'s accuracy is more than {drop} "
                "under its validation accuracy",
                "The upper confidence bound (Wilson) of the rolling accuracy from feedback has "
                f"been more than {drop} under the validation accuracy for "
                f"{spoken(d.accuracy)}: the drop is not noise of a few labels. A retrain is "
                "requested.",
                "classifier-accuracy-degraded",
                PanelRef(DashboardUid.ACCURACY, p.CLASSIFIER_ACCURACY),
            ),
            Alert(
                "WatchkeeperPredictionSetCoverageOutOfBand",
                f"{rolling('prediction_set_coverage_ratio')} < {t.coverage_min:g}\nor\n"
                # a set always holds the predicted class, so it covers at least the
                # accuracy: a 99 %-accurate classifier's singleton sets are not too wide
                f"{rolling('prediction_set_coverage_ratio')} > {t.coverage_max:g}\n"
                f"  > {rolling('accuracy_ratio')}",
                d.coverage,
                Severity.WARNING,
                "Classifier {{ $labels.model_version }}'s prediction sets hold the true class "
                "too rarely or too often",
                "The rolling share of true classes inside the prediction set has been outside "
                f"[{percent(t.coverage_min)}, {percent(t.coverage_max)}] (above it by more "
                f"than the accuracy explains) for {spoken(d.coverage)}: the sets clients are "
                "given no longer mean their level.",
                "prediction-set-coverage-out-of-band",
                PanelRef(DashboardUid.ACCURACY, p.SET_COVERAGE),
            ),
            Alert(
                "WatchkeeperClassifierCalibrationDegraded",
                f"{rolling('calibration_error_ratio')} > {t.calibration_error:g}",
                d.calibration,
                Severity.WARNING,
                "Classifier {{ $labels.model_version }}'s confidence no longer matches its "
                "accuracy",
                "The expected calibration error of the rolling labels has been above "
                f"{t.calibration_error:g} for {spoken(d.calibration)}: the class probabilities "
                "clients read are off by more than that on average, and the label-free "
                "accuracy estimate, built on the same confidence, cannot be trusted.",
                "classifier-calibration-degraded",
                PanelRef(DashboardUid.ACCURACY, p.CALIBRATION_ERROR),
            ),
            Alert(
                "WatchkeeperEstimatedAccuracyDrop",
                f"{rolling('estimated_accuracy_ratio')}\n"
                f"< {rolling('validation_accuracy_ratio')} - {t.accuracy_drop:g}",
                d.estimated_accuracy,
                Severity.WARNING,
                f"Classifier {{{{ $labels.model_version }}}}'s estimated accuracy is more than "
                f"{drop} under its validation accuracy",
                "The accuracy the model's calibrated confidence expects for the last window, "
                f"before any label, has been more than {drop} under the validation accuracy "
                f"for {spoken(d.estimated_accuracy)}: accuracy is likely falling. No retrain "
                "is requested on an estimate; labels decide.",
                "estimated-accuracy-drop",
                PanelRef(DashboardUid.ACCURACY, p.ESTIMATED_ACCURACY),
            ),
        ),
    )


def data_quality_alerts(c: MixinConfig) -> AlertGroup:
    """Data incidents: broken inputs, routed to people and never to the retraining
    webhook (retraining on broken data teaches the model the breakage)."""
    t, d, by = c.thresholds, c.durations, c.by
    mon = c.selector(MONITOR)

    def excess(rate: str) -> str:
        return (
            f"max by ({by('model_version', 'feature')}) "
            f"(watchkeeper_monitor_{rate}{mon} - watchkeeper_monitor_reference_{rate}{mon})"
        )

    return AlertGroup(
        "watchkeeper-data-quality",
        (
            Alert(
                "WatchkeeperFeedbackOrphans",
                # or by the time they were counted: a restart's first cycle counts the
                # backlog before the counter's first scrape, and increase() sees none
                f"sum by ({by()}) (increase(watchkeeper_monitor_feedback_orphans_total{mon}[1h]))"
                " > 0\nor\n"
                f"time() - max by ({by()}) "
                f"(watchkeeper_monitor_last_feedback_orphans_timestamp_seconds{mon}) < 3600",
                d.feedback_orphans,
                Severity.WARNING,
                "Labels arrive for predictions that were never logged",
                "Labels counted in the last hour still matched no logged prediction long "
                "after they arrived: a client sends ids the server never issued, or "
                "predictions were lost.",
                "feedback-orphans",
                PanelRef(DashboardUid.ACCURACY, p.FEEDBACK_ORPHANS),
            ),
            Alert(
                "WatchkeeperFeatureMissing",
                f"{excess('missing_rate')} > {t.missing_rate_excess:g}",
                d.data_quality,
                Severity.WARNING,
                "{{ $labels.feature }} is missing far more often than in training "
                "(model {{ $labels.model_version }})",
                "The share of predictions without {{ $labels.feature }} has exceeded its "
                f"rate in the model's reference sample by more than "
                f"{t.missing_rate_excess * 100:g} points for {spoken(d.data_quality)}.",
                "feature-missing",
                PanelRef(DashboardUid.MODEL_HEALTH, p.MISSING),
            ),
            Alert(
                "WatchkeeperFeatureOutOfRange",
                f"{excess('out_of_range_rate')} > {t.out_of_range_excess:g}",
                d.data_quality,
                Severity.WARNING,
                "{{ $labels.feature }} outside the training range in many predictions "
                "(model {{ $labels.model_version }})",
                f"More than {percent(t.out_of_range_excess)} of the last windows' values of "
                "{{ $labels.feature }} lie outside the range seen in training (above the "
                f"reference's own rate), for {spoken(d.data_quality)}.",
                "feature-out-of-range",
                PanelRef(DashboardUid.MODEL_HEALTH, p.OUT_OF_RANGE),
            ),
            Alert(
                "WatchkeeperUnseenCategories",
                f"{excess('unseen_category_rate')} > {t.unseen_category_excess:g}",
                d.data_quality,
                Severity.WARNING,
                "{{ $labels.feature }} gets categories never seen in training "
                "(model {{ $labels.model_version }})",
                f"More than {percent(t.unseen_category_excess)} of the last windows' values "
                "of {{ $labels.feature }} are categories the training data did not have, "
                f"for {spoken(d.data_quality)}.",
                "unseen-categories",
                PanelRef(DashboardUid.MODEL_HEALTH, p.UNSEEN),
            ),
            Alert(
                "WatchkeeperRejectedRequests",
                f"watchkeeper:predict_rejected:ratio5m{c.selector(SERVING)} > {t.rejected_ratio:g}",
                d.rejected,
                Severity.WARNING,
                f"More than {percent(t.rejected_ratio)} of /predict requests are rejected "
                "as invalid",
                f"4xx responses (validation failures, bodies too large or malformed) above "
                f"{percent(t.rejected_ratio)} of POST /predict requests for "
                f"{spoken(d.rejected)}: a client is sending data the model cannot take.",
                "rejected-requests",
                PanelRef(DashboardUid.SERVING, p.ERRORS),
            ),
        ),
    )


def serving_alerts(c: MixinConfig) -> AlertGroup:
    t, d, by = c.thresholds, c.durations, c.by
    srv = c.selector(SERVING)
    return AlertGroup(
        "watchkeeper-serving",
        (
            Alert(
                "WatchkeeperHighErrorRate",
                f"watchkeeper:predict_errors:ratio5m{srv} > {t.error_ratio:g}",
                d.errors,
                Severity.CRITICAL,
                f"More than {percent(t.error_ratio)} of /predict requests fail with 5xx",
                f"5xx responses above {percent(t.error_ratio)} of POST /predict requests "
                f"for {spoken(d.errors)}.",
                "high-error-rate",
                PanelRef(DashboardUid.SERVING, p.ERRORS),
            ),
            Alert(
                "WatchkeeperHighLatency",
                f"watchkeeper:predict_latency_seconds:p99_5m{srv} > {t.latency_p99_seconds:g}",
                d.latency,
                Severity.WARNING,
                f"/predict p99 latency above {t.latency_p99_seconds * 1000:g} ms",
                f"p99 of /predict latency above {t.latency_p99_seconds * 1000:g} ms for "
                f"{spoken(d.latency)}.",
                "high-latency",
                PanelRef(DashboardUid.SERVING, p.LATENCY),
            ),
            Alert(
                "WatchkeeperLogBacklog",
                f"sum by ({by()}) (watchkeeper_log_queue_depth{srv}) > {t.log_backlog_entries}",
                d.log_backlog,
                Severity.WARNING,
                "Prediction log writer is falling behind",
                f"More than {t.log_backlog_entries:,} journaled log entries have waited for "
                f"the database for {spoken(d.log_backlog)}.",
                "log-backlog-or-database-down",
                PanelRef(DashboardUid.SERVING, p.LOG_QUEUE),
            ),
            Alert(
                "WatchkeeperLogDatabaseDown",
                f"min by ({by()}) (watchkeeper_log_database_up{srv}) == 0",
                d.database_down,
                Severity.CRITICAL,
                "Prediction log database is unreachable",
                "The log writers cannot reach the database; entries wait in the journal on "
                "local disk until it answers.",
                "log-backlog-or-database-down",
                PanelRef(DashboardUid.SERVING, p.LOG_DATABASE_UP),
            ),
            Alert(
                "WatchkeeperLogWriterStalled",
                f"max by ({by()}) (watchkeeper_log_stalled_seconds{srv}) > {t.log_stall_seconds:g}",
                d.log_stall,
                Severity.CRITICAL,
                "Prediction log entries are not reaching the database",
                "A serving worker's journaled entries have waited more than "
                f"{spoken(t.log_stall_seconds)} with none of them stored, and its writer "
                "reports no error: the database hangs (a frozen server, a lock held). "
                "Entries wait in the journal on local disk meanwhile.",
                "log-writer-stalled",
                PanelRef(DashboardUid.SERVING, p.LOG_STALLED),
            ),
            Alert(
                "WatchkeeperLogJournalFull",
                f"sum by ({by()}) (increase(watchkeeper_log_entries_rejected_total{srv}[5m])) > 0",
                d.counter_step,
                Severity.CRITICAL,
                "Prediction requests are refused: the log journal is full",
                "A serving worker's journal reached WATCHKEEPER_LOG_JOURNAL_MAX_BYTES; "
                "/predict and /feedback answer 503 until the database catches up.",
                "log-journal-full",
                PanelRef(DashboardUid.SERVING, p.LOG_ENTRIES),
            ),
            Alert(
                "WatchkeeperLogJournalUnwritable",
                f"min by ({by()}) (watchkeeper_log_journal_writable{srv}) == 0",
                d.journal_unwritable,
                Severity.CRITICAL,
                "A serving worker cannot write its log journal",
                "A serving worker has no journal or its journal's disk refuses appends: it "
                "answers 503 to what it would log and is not ready until the disk has room.",
                "log-journal-unwritable",
                PanelRef(DashboardUid.SERVING, p.LOG_JOURNAL_WRITABLE),
            ),
            Alert(
                "WatchkeeperLogDeadLetters",
                f"sum by ({by()}) (increase(watchkeeper_log_rows_dead_lettered_total{srv}[1h]))"
                " > 0",
                d.counter_step,
                Severity.WARNING,
                "Log entries were set aside in dead-letter files",
                "Entries that could not be stored even alone were kept in deadletter-*.jsonl "
                "files of the journal directory.",
                "log-dead-letters",
                PanelRef(DashboardUid.SERVING, p.LOG_ENTRIES),
            ),
            Alert(
                "WatchkeeperLogWriterRestarted",
                f"sum by ({by()}) (increase(watchkeeper_log_writer_restarts_total{srv}[15m])) > 0",
                d.counter_step,
                Severity.WARNING,
                "A prediction log writer thread died and was restarted",
                "The writer thread of a serving worker died (a bug); it was restarted and "
                "nothing was lost, but the server log says why.",
                "log-writer-restarted",
                PanelRef(DashboardUid.SERVING, p.LOG_WRITER_RESTARTS),
            ),
            Alert(
                "WatchkeeperModelFallback",
                f"max by ({by()}) (watchkeeper_model_fallback{srv}) == 1",
                d.model_fallback,
                Severity.CRITICAL,
                "Serving does not serve the version CURRENT names",
                "The version the registry's CURRENT names would not load (bad hash, "
                "untrusted types, malformed metadata, missing); workers serve the version "
                "before it, or their siblings', and /readyz says degraded.",
                "model-fallback",
                PanelRef(DashboardUid.SERVING, p.MODEL_FALLBACK),
            ),
        ),
    )


def pipeline_alerts(c: MixinConfig) -> AlertGroup:
    t, d, by = c.thresholds, c.durations, c.by
    mon = c.selector(MONITOR)
    retrain = c.selector(RETRAIN)
    failed = c.selector(RETRAIN, 'outcome="failed"')
    rejected = c.selector(RETRAIN, 'outcome="rejected"')
    return AlertGroup(
        "watchkeeper-pipeline",
        (
            Alert(
                "WatchkeeperMonitorStale",
                f"(time() - max by ({by()}) "
                f"(watchkeeper_monitor_last_success_timestamp_seconds{mon}) "
                f"> {t.monitor_stale_seconds:g})\n"
                f"or absent(watchkeeper_monitor_last_success_timestamp_seconds{mon})",
                d.monitor_stale,
                Severity.CRITICAL,
                f"The monitor has not completed a cycle for {spoken(t.monitor_stale_seconds)}",
                "No drift, OOD or accuracy results are being produced.",
                "monitor-stale",
                PanelRef(DashboardUid.MODEL_HEALTH, p.MONITOR_AGE),
            ),
            Alert(
                "WatchkeeperMonitorWindowErrors",
                f"sum by ({by('check')}) "
                f"(increase(watchkeeper_monitor_window_errors_total{mon}[10m])) > 0",
                d.window_errors,
                Severity.CRITICAL,
                "Monitor check {{ $labels.check }} keeps failing on windows",
                "The {{ $labels.check }} check raised on monitor windows throughout the last "
                f"{spoken(d.window_errors)}. Each failed window is stored with its error and "
                "passed, so no result of this check is being produced.",
                "monitor-window-errors",
                PanelRef(DashboardUid.MODEL_HEALTH, p.WINDOW_ERRORS),
            ),
            Alert(
                "WatchkeeperRetrainingFailed",
                f"sum by ({by('outcome')}) (increase(watchkeeper_retrain_runs_total"
                f"{failed}[1h])) > 0",
                d.counter_step,
                Severity.WARNING,
                "A retraining run failed",
                "See retrain_runs.decision_reason for the cause.",
                "retraining-failed",
                PanelRef(DashboardUid.ACCURACY, p.RETRAIN_RUNS),
            ),
            Alert(
                "WatchkeeperModelRejectedRepeatedly",
                f"sum by ({by('outcome')}) (increase(watchkeeper_retrain_runs_total"
                f"{rejected}[1d])) "
                f">= {t.rejected_candidates_per_day}",
                d.rejected_candidates,
                Severity.WARNING,
                f"{t.rejected_candidates_per_day} or more retrained candidates rejected in a day",
                "Retraining keeps producing models that do not beat the champion; the data "
                "or the gate needs a look.",
                "model-rejected-repeatedly",
                PanelRef(DashboardUid.ACCURACY, p.RETRAIN_RUNS),
            ),
            Alert(
                "WatchkeeperRetrainDatabaseDown",
                f"min by ({by()}) (watchkeeper_retrain_database_up{retrain}) == 0",
                d.database_down,
                Severity.WARNING,
                "The retraining worker cannot reach its database",
                "No retraining job can run and the worker's run counts are not exported; "
                "requests queued before the outage wait. Serving is not affected by this "
                "alert alone.",
                "retraining-database-down",
                PanelRef(DashboardUid.ACCURACY, p.RETRAIN_DATABASE_UP),
            ),
            # Per worker (instance): the one whose job hung is the one to restart.
            # Warning, not critical: serving goes on with the current model, the lease
            # lets the next job recover the run, and staleness hurts over hours or days
            # (the drift and accuracy alerts page if it does); but a person is needed,
            # for the stuck process and for the cause that will hang the next job too.
            Alert(
                "WatchkeeperRetrainJobStalled",
                f"max by ({by('instance')}) (watchkeeper_retrain_job_stalled{retrain}) == 1",
                d.retrain_job_stalled,
                Severity.WARNING,
                "The retraining job on {{ $labels.instance }} is stuck",
                "The retraining job of worker {{ $labels.instance }} has reported no "
                f"progress for over {spoken(t.retrain_stall_seconds)} "
                "(WATCHKEEPER_RETRAIN_STALL_SECONDS). It no longer renews its lease, so "
                "that another worker, or this one once restarted, recovers its run; until "
                "the restart this worker runs no job and its /healthz fails. Its log names "
                "the step it hung in.",
                "retraining-job-stalled",
                PanelRef(DashboardUid.ACCURACY, p.RETRAIN_STALLS),
            ),
        ),
    )


def retention_alerts(c: MixinConfig) -> AlertGroup:
    """The prediction log's retention, from the monitor's watchkeeper_retention_*
    metrics. The retention limits themselves are exported by the monitor from the
    WATCHKEEPER_RETENTION_* settings, so the rules compare against the metric, not a
    copy of the setting."""
    t, d = c.thresholds, c.durations
    oldest = "watchkeeper_retention_oldest_row_timestamp_seconds"
    limit = "watchkeeper_retention_limit_seconds"
    rows = "watchkeeper_retention_rows"
    mon = c.selector(MONITOR)
    predictions = c.selector(MONITOR, 'table="predictions"')
    partitions = c.selector(MONITOR, 'task="partitions"')
    horizon = t.retention_growth_horizon_seconds
    return AlertGroup(
        "watchkeeper-retention",
        (
            Alert(
                "WatchkeeperLogRetentionOverdue",
                f"time() - {oldest}{mon}\n"
                f"  > {limit}{mon} + {t.retention_overdue_margin_seconds:g}",
                d.retention_overdue,
                Severity.WARNING,
                "Rows of {{ $labels.table }} outlive their retention: pruning has stopped",
                "The oldest {{ $labels.table }} row the prune has not passed is more than "
                f"{spoken(t.retention_overdue_margin_seconds)} older than its retention. Old "
                "rows are not being deleted, and the database will fill.",
                "log-retention-overdue",
                PanelRef(DashboardUid.SERVING, p.RETENTION_AGE),
            ),
            Alert(
                "WatchkeeperLogGrowingPastRetention",
                f"predict_linear({rows}{predictions}[6h], {horizon:g})\n"
                f"  > {t.retention_growth_factor:g} * {rows}{predictions}\n"
                "and on (namespace, job, instance)\n"
                f"time() - {oldest}{predictions}\n"
                f"  > {t.retention_full_share:g} * {limit}{predictions}",
                d.retention_growth,
                Severity.WARNING,
                "The prediction log keeps growing although retention is in effect",
                "The log already holds a full retention period, yet at the growth of the "
                "last 6 hours its predictions would grow by "
                f"{percent(t.retention_growth_factor - 1)} within {spoken(horizon)}: traffic "
                "outgrows the database size planned for it.",
                "log-growing-past-retention",
                PanelRef(DashboardUid.SERVING, p.LOG_ROWS),
            ),
            Alert(
                "WatchkeeperLogPartitionsFailing",
                f"increase(watchkeeper_retention_errors_total{partitions}[1h]) > 0",
                d.partitions_failing,
                Severity.WARNING,
                "The prediction log's day partitions ahead cannot be created",
                "The monitor's checks of the PostgreSQL day partitions ahead (today and the "
                f"next 7 days) have kept failing for {spoken(d.partitions_failing)}. Once the "
                "days already created run out, new rows land in the default partition and "
                "retention falls back to deleting them row by row.",
                "log-partitions-failing",
                PanelRef(DashboardUid.SERVING, p.RETENTION_ERRORS),
            ),
        ),
    )


def alert_groups(c: MixinConfig) -> list[AlertGroup]:
    return [
        model_alerts(c),
        classification_alerts(c),
        data_quality_alerts(c),
        serving_alerts(c),
        pipeline_alerts(c),
        retention_alerts(c),
    ]


RULE_FILES = {
    "watchkeeper-retention": "retention.yml",
    "watchkeeper-classification": "classification.yml",
}


def rule_file(group: AlertGroup) -> str:
    """The rules file a group is written to: retention and classification have their
    own (each with its own promtool cases)."""
    return RULE_FILES.get(group.name, "alerts.yml")


def alert_names(c: MixinConfig) -> list[str]:
    return [a.name for g in alert_groups(c) for a in g.alerts]


def rule(alert: Alert, c: MixinConfig, dashboard_url: str) -> dict[str, object]:
    return {
        "alert": alert.name,
        "expr": alert.expr,
        "for": prom_duration(alert.for_seconds),
        "labels": {"severity": alert.severity.value},
        "annotations": {
            "summary": alert.summary,
            "description": alert.description,
            "runbook_url": c.runbook(alert.runbook_anchor),
            "dashboard_url": dashboard_url,
        },
    }
