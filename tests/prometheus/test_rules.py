"""Alert and recording rules: promtool checks them, and promtool unit tests fire every
alert and show it silent for a blip shorter than its ``for:``, and for the same
series scraped under another job.

The cases are data here. Input series get the ``job`` label of the process that
exports them. Every expected label and annotation of each alert (severity, summary,
description, runbook section, dashboard panel) is written here, apart from the rules
file and its generator, so a test fails when an alert's condition, duration, labels or
annotations change without the case changing too.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.observability import binary
from watchkeeper.settings import Settings

ROOT = Path(__file__).resolve().parents[2] / "prometheus"
RULES = [ROOT / "rules" / "recording.yml", ROOT / "rules" / "alerts.yml"]
# every rule file (retention's alerts have their promtool cases in test_retention_rules.py)
ALL_RULES = sorted((ROOT / "rules").glob("*.yml"))
METRIC = re.compile(r"\b(watchkeeper_[a-z0-9_]+|watchkeeper:[a-z0-9_:]+)")

V1 = {"model_version": "v1"}
GRLIV = 'model_version="v1",feature="Gr_Liv_Area"'
# alert -> (input series, minutes at which it must fire, series for a blip that must not)
CASES: dict[str, dict[str, Any]] = {
    "WatchkeeperDatasetDriftSustained": {
        # windows keep coming: the newest one ended within the minute
        "fire": [
            ('watchkeeper_monitor_dataset_drift{model_version="v1"}', "1x40"),
            ('watchkeeper_monitor_window_end_timestamp_seconds{model_version="v1"}', "0+60x40"),
        ],
        "quiet": [
            ('watchkeeper_monitor_dataset_drift{model_version="v1"}', "0x5 1x20 0x20"),
            ('watchkeeper_monitor_window_end_timestamp_seconds{model_version="v1"}', "0+60x40"),
        ],
        "at": 35,
        "labels": V1,
    },
    "WatchkeeperFeatureDrift": {
        "fire": [('watchkeeper_monitor_drifted_features_ratio{model_version="v1"}', "0.1x40")],
        "quiet": [
            ('watchkeeper_monitor_drifted_features_ratio{model_version="v1"}', "0x5 0.1x10 0x30")
        ],
        "at": 35,
        "labels": V1,
    },
    "WatchkeeperHighOODFraction": {
        "fire": [('watchkeeper_monitor_ood_fraction{model_version="v1"}', "0.3x30")],
        "quiet": [('watchkeeper_monitor_ood_fraction{model_version="v1"}', "0.01x5 0.5x5 0.01x20")],
        "at": 20,
        "labels": V1,
    },
    "WatchkeeperAccuracyDegraded": {
        "fire": [
            ('watchkeeper_monitor_mae_lower_bound{model_version="v1"}', "26000x40"),
            ('watchkeeper_monitor_validation_mae{model_version="v1"}', "15000x40"),
        ],
        # a blip, and a point MAE far over the limit whose bound (few labels) is not
        "quiet": [
            (
                'watchkeeper_monitor_mae_lower_bound{model_version="v1"}',
                "15000x5 30000x10 16000x30",
            ),
            ('watchkeeper_monitor_mae{model_version="v1"}', "30000x45"),
            ('watchkeeper_monitor_validation_mae{model_version="v1"}', "15000x45"),
        ],
        "at": 35,
        "labels": V1,
    },
    # a band, both ways: 51.5 % (a trend the interval never saw) and 100 % (too wide);
    # quiet for a dip of less than the hour
    "WatchkeeperIntervalCoverageOutOfBand": {
        "fire": [('watchkeeper_monitor_interval_coverage{model_version="v1"}', "0.9x10 0.515x80")],
        "quiet": [
            ('watchkeeper_monitor_interval_coverage{model_version="v1"}', "0.9x10 0.5x30 0.9x50")
        ],
        "at": 75,
        "labels": V1,
    },
    "WatchkeeperFeedbackOrphans": {
        "fire": [("watchkeeper_monitor_feedback_orphans_total", "0x10 2x30")],
        # an hour after orphans were last counted, by a process whose counter is still 0
        "quiet": [
            ("watchkeeper_monitor_feedback_orphans_total", "0x40"),
            ("watchkeeper_monitor_last_feedback_orphans_timestamp_seconds", "-2760x40"),
        ],
        "at": 15,
        "labels": {},
    },
    "WatchkeeperTooFewLabels": {
        "fire": [('watchkeeper_predictions_total{model_version="v1"}', "0+60x200")],
        "quiet": [
            ('watchkeeper_predictions_total{model_version="v1"}', "0+60x200"),
            ("watchkeeper_monitor_last_labels_timestamp_seconds", "0+60x200"),
        ],
        "at": 130,
        "labels": {},
    },
    # data quality, against the reference's own rates: quiet for a feature missing as
    # often as in training (Misc_Feature), for 2008–10 sales' newest Year_Built values
    # (at most 3.8 % above training's range) and for blips; firing for 5 % of rows out
    # of range (one client's Gr_Liv_Area × 10)
    "WatchkeeperFeatureMissing": {
        "fire": [
            (f"watchkeeper_monitor_missing_rate{{{GRLIV}}}", "0.25x30"),
            (f"watchkeeper_monitor_reference_missing_rate{{{GRLIV}}}", "0x30"),
        ],
        "quiet": [
            (f"watchkeeper_monitor_missing_rate{{{GRLIV}}}", "0.05x5 0.3x5 0.05x20"),
            (f"watchkeeper_monitor_reference_missing_rate{{{GRLIV}}}", "0x30"),
            (
                'watchkeeper_monitor_missing_rate{model_version="v1",feature="Misc_Feature"}',
                "0.97x30",
            ),
            (
                'watchkeeper_monitor_reference_missing_rate{model_version="v1",feature="Misc_Feature"}',
                "0.96x30",
            ),
        ],
        "at": 20,
        "labels": {"model_version": "v1", "feature": "Gr_Liv_Area"},
    },
    "WatchkeeperFeatureOutOfRange": {
        "fire": [
            (f"watchkeeper_monitor_out_of_range_rate{{{GRLIV}}}", "0.05x30"),
            (f"watchkeeper_monitor_reference_out_of_range_rate{{{GRLIV}}}", "0x30"),
        ],
        "quiet": [
            (
                'watchkeeper_monitor_out_of_range_rate{model_version="v1",feature="Year_Built"}',
                "0.038x30",
            ),
            (
                'watchkeeper_monitor_reference_out_of_range_rate{model_version="v1",feature="Year_Built"}',
                "0x30",
            ),
            (f"watchkeeper_monitor_out_of_range_rate{{{GRLIV}}}", "0x5 1x5 0x20"),
            (f"watchkeeper_monitor_reference_out_of_range_rate{{{GRLIV}}}", "0x30"),
        ],
        "at": 20,
        "labels": {"model_version": "v1", "feature": "Gr_Liv_Area"},
    },
    "WatchkeeperUnseenCategories": {
        "fire": [
            (
                'watchkeeper_monitor_unseen_category_rate{model_version="v1",feature="Neighborhood"}',
                "0.2x30",
            ),
            (
                'watchkeeper_monitor_reference_unseen_category_rate{model_version="v1",feature="Neighborhood"}',
                "0x30",
            ),
        ],
        "quiet": [
            (
                'watchkeeper_monitor_unseen_category_rate{model_version="v1",feature="Neighborhood"}',
                "0.004x30",
            ),
            (
                'watchkeeper_monitor_reference_unseen_category_rate{model_version="v1",feature="Neighborhood"}',
                "0x30",
            ),
        ],
        "at": 20,
        "labels": {"model_version": "v1", "feature": "Neighborhood"},
    },
    "WatchkeeperRejectedRequests": {
        "fire": [
            (
                'watchkeeper_http_requests_total{endpoint="/predict",method="POST",status="400"}',
                "0+10x40",
            ),
            (
                'watchkeeper_http_requests_total{endpoint="/predict",method="POST",status="200"}',
                "0+90x40",
            ),
        ],
        "quiet": [
            (
                'watchkeeper_http_requests_total{endpoint="/predict",method="POST",status="400"}',
                "0+1x40",
            ),
            (
                'watchkeeper_http_requests_total{endpoint="/predict",method="POST",status="200"}',
                "0+90x40",
            ),
        ],
        "at": 30,
        "labels": {},
    },
    "WatchkeeperHighErrorRate": {
        "fire": [
            (
                'watchkeeper_http_requests_total{endpoint="/predict",method="POST",status="500"}',
                "0+10x30",
            ),
            (
                'watchkeeper_http_requests_total{endpoint="/predict",method="POST",status="200"}',
                "0+90x30",
            ),
        ],
        "quiet": [
            (
                'watchkeeper_http_requests_total{endpoint="/predict",method="POST",status="500"}',
                "0x10 0+50x3 150x20",
            ),
            (
                'watchkeeper_http_requests_total{endpoint="/predict",method="POST",status="200"}',
                "0+90x35",
            ),
        ],
        "at": 25,
        "labels": {},
    },
    "WatchkeeperHighLatency": {
        "fire": [
            (
                'watchkeeper_http_request_duration_seconds_bucket{endpoint="/predict",le="0.5"}',
                "0+1x30",
            ),
            (
                'watchkeeper_http_request_duration_seconds_bucket{endpoint="/predict",le="1"}',
                "0+2x30",
            ),
            (
                'watchkeeper_http_request_duration_seconds_bucket{endpoint="/predict",le="+Inf"}',
                "0+10x30",
            ),
        ],
        "quiet": [
            (
                'watchkeeper_http_request_duration_seconds_bucket{endpoint="/predict",le="0.5"}',
                "0+10x40",
            ),
            (
                'watchkeeper_http_request_duration_seconds_bucket{endpoint="/predict",le="+Inf"}',
                "0+10x40",
            ),
        ],
        "at": 25,
        "labels": {},
    },
    "WatchkeeperLogBacklog": {
        "fire": [('watchkeeper_log_queue_depth{instance="a"}', "6000x20")],
        "quiet": [('watchkeeper_log_queue_depth{instance="a"}', "10x5 9000x3 10x20")],
        "at": 10,
        "labels": {},
    },
    "WatchkeeperLogDatabaseDown": {
        "fire": [('watchkeeper_log_database_up{instance="a"}', "1x5 0x10")],
        "quiet": [('watchkeeper_log_database_up{instance="a"}', "1x5 0x1 1x20")],
        "at": 12,
        "labels": {},
    },
    # a stall gauge that climbs past the threshold pages; one slow batch does not, nor
    # does a second worker that keeps up (the alert takes the longest wait)
    "WatchkeeperLogWriterStalled": {
        "fire": [
            ('watchkeeper_log_stalled_seconds{instance="a"}', "0x5 0+60x10"),
            ('watchkeeper_log_stalled_seconds{instance="b"}', "0x15"),
        ],
        "quiet": [('watchkeeper_log_stalled_seconds{instance="a"}', "0x5 0 90 0x20")],
        "at": 10,
        "labels": {},
    },
    "WatchkeeperLogJournalFull": {
        "fire": [('watchkeeper_log_entries_rejected_total{instance="a"}', "0x5 0+3x10")],
        "quiet": [('watchkeeper_log_entries_rejected_total{instance="a"}', "0x30")],
        "at": 10,
        "labels": {},
    },
    "WatchkeeperLogJournalUnwritable": {
        "fire": [('watchkeeper_log_journal_writable{instance="a"}', "1x5 0x10")],
        "quiet": [('watchkeeper_log_journal_writable{instance="a"}', "1x30")],
        "at": 10,
        "labels": {},
    },
    "WatchkeeperLogDeadLetters": {
        "fire": [('watchkeeper_log_rows_dead_lettered_total{instance="a"}', "0x5 1x10")],
        "quiet": [('watchkeeper_log_rows_dead_lettered_total{instance="a"}', "2x30")],
        "at": 10,
        "labels": {},
    },
    "WatchkeeperLogWriterRestarted": {
        "fire": [('watchkeeper_log_writer_restarts_total{instance="a"}', "0x5 1x10")],
        "quiet": [('watchkeeper_log_writer_restarts_total{instance="a"}', "0x30")],
        "at": 10,
        "labels": {},
    },
    # a version refused for one poll, then CURRENT put right, must not page
    "WatchkeeperModelFallback": {
        "fire": [
            ('watchkeeper_model_fallback{instance="a"}', "0x5 1x20"),
            ('watchkeeper_model_fallback{instance="b"}', "0x25"),
        ],
        "quiet": [('watchkeeper_model_fallback{instance="a"}', "0x5 1x2 0x20")],
        "at": 15,
        "labels": {},
    },
    "WatchkeeperMonitorStale": {
        "fire": [("watchkeeper_monitor_last_success_timestamp_seconds", "60x60")],
        "quiet": [("watchkeeper_monitor_last_success_timestamp_seconds", "0+60x60")],
        "at": 50,
        "labels": {},
    },
    # one failed window (the counter steps once) must not page; failures that go on must
    "WatchkeeperMonitorWindowErrors": {
        "fire": [('watchkeeper_monitor_window_errors_total{check="ood"}', "0+1x40")],
        "quiet": [
            ('watchkeeper_monitor_window_errors_total{check="ood"}', "0x5 1x40"),
            ('watchkeeper_monitor_window_errors_total{check="feature_drift"}', "0x45"),
        ],
        "at": 20,
        "labels": {"check": "ood"},
    },
    "WatchkeeperRetrainingFailed": {
        "fire": [('watchkeeper_retrain_runs_total{outcome="failed"}', "0x10 1x20")],
        "quiet": [
            ('watchkeeper_retrain_runs_total{outcome="failed"}', "0x30"),
            ('watchkeeper_retrain_runs_total{outcome="promoted"}', "0x10 1x20"),
        ],
        "at": 15,
        "labels": {"outcome": "failed"},
    },
    # a scrape that found the database down once must not page; an outage must
    "WatchkeeperRetrainDatabaseDown": {
        "fire": [("watchkeeper_retrain_database_up", "1x5 0x10")],
        "quiet": [("watchkeeper_retrain_database_up", "1x5 0x1 1x20")],
        "at": 12,
        "labels": {},
    },
    # a job stuck past its stall deadline pages for its own worker (instance): the one to
    # restart. A job that moved again within the for: (1 at two scrapes a minute apart)
    # and a worker with no stuck job must not
    "WatchkeeperRetrainJobStalled": {
        "fire": [
            ('watchkeeper_retrain_job_stalled{instance="a"}', "0x5 1x10"),
            ('watchkeeper_retrain_job_stalled{instance="b"}', "0x15"),
        ],
        "quiet": [
            ('watchkeeper_retrain_job_stalled{instance="a"}', "0x5 1x1 0x10"),
            ('watchkeeper_retrain_job_stalled{instance="b"}', "0x17"),
        ],
        "at": 8,
        "labels": {"instance": "a"},
    },
    "WatchkeeperModelRejectedRepeatedly": {
        "fire": [('watchkeeper_retrain_runs_total{outcome="rejected"}', "0x10 1x10 2x10 3x30")],
        "quiet": [('watchkeeper_retrain_runs_total{outcome="rejected"}', "0x10 1x10 2x40")],
        "at": 50,
        "labels": {"outcome": "rejected"},
    },
}


class Expected(NamedTuple):
    """What an alert must carry, written here apart from the rules file and its generator:
    its severity, what a person reads first and then, the runbook section and the
    dashboard panel (by title) it sends them to. Templated descriptions are written as
    they render for the case's labels."""

    severity: str
    summary: str
    description: str
    runbook: str
    dashboard: tuple[str, str]  # dashboard uid, panel title


EXPECTED: dict[str, Expected] = {
    "WatchkeeperDatasetDriftSustained": Expected(
        "warning",
        "Dataset drift on model v1 for 30 minutes",
        (
            "Every monitor window of the last 30 minutes differs from the training reference "
            "(KS/chi-squared with correction): the span of 3 consecutive windows, the monitor's "
            "retrain rule. A retrain is requested."
        ),
        "dataset-drift-sustained",
        ("watchkeeper-model-health", "Dataset drift (1 = drift)"),
    ),
    "WatchkeeperFeatureDrift": Expected(
        "info",
        "Some features of model v1 drift",
        (
            "Some features drifted in the last window, without a dataset-level verdict (see "
            "watchkeeper_monitor_feature_drift_p_value)."
        ),
        "feature-drift",
        ("watchkeeper-model-health", "Share of features drifted"),
    ),
    "WatchkeeperHighOODFraction": Expected(
        "warning",
        "Many out-of-distribution requests for model v1",
        "More than 10 % of the last window scored out of distribution for 15 minutes.",
        "high-ood-fraction",
        ("watchkeeper-model-health", "Out-of-distribution fraction"),
    ),
    "WatchkeeperAccuracyDegraded": Expected(
        "critical",
        "Model v1 MAE is 25 % worse than at validation",
        (
            "The lower confidence bound of the rolling MAE from feedback has been above 1.25 "
            "times the validation MAE for 30 minutes: the degradation is not noise of a few "
            "labels. A retrain is requested."
        ),
        "accuracy-degraded",
        ("watchkeeper-accuracy", "MAE from feedback vs validation"),
    ),
    "WatchkeeperIntervalCoverageOutOfBand": Expected(
        "warning",
        "Model v1's prediction interval covers too few or too many actual values",
        (
            "The rolling share of actual values inside the prediction interval has been outside "
            "[80 %, 98 %] for 1 hour: the uncertainty clients are given is wrong."
        ),
        "interval-coverage-out-of-band",
        ("watchkeeper-accuracy", "Interval coverage"),
    ),
    "WatchkeeperFeedbackOrphans": Expected(
        "warning",
        "Labels arrive for predictions that were never logged",
        (
            "Labels counted in the last hour still matched no logged prediction long after they "
            "arrived: a client sends ids the server never issued, or predictions were lost."
        ),
        "feedback-orphans",
        ("watchkeeper-accuracy", "Feedback orphans (1h)"),
    ),
    "WatchkeeperTooFewLabels": Expected(
        "warning",
        "No new ground truth for 1 day while predictions flow",
        "Accuracy cannot be judged: no feedback batch large enough has arrived for 1 day.",
        "too-few-labels",
        ("watchkeeper-accuracy", "Time since accuracy from new labels"),
    ),
    "WatchkeeperFeatureMissing": Expected(
        "warning",
        "Gr_Liv_Area is missing far more often than in training (model v1)",
        (
            "The share of predictions without Gr_Liv_Area has exceeded its rate in the model's "
            "reference sample by more than 10 points for 15 minutes."
        ),
        "feature-missing",
        ("watchkeeper-model-health", "Missing-value rate above the reference, by feature"),
    ),
    "WatchkeeperFeatureOutOfRange": Expected(
        "warning",
        "Gr_Liv_Area outside the training range in many predictions (model v1)",
        (
            "More than 4 % of the last windows' values of Gr_Liv_Area lie outside the range seen "
            "in training (above the reference's own rate), for 15 minutes."
        ),
        "feature-out-of-range",
        ("watchkeeper-model-health", "Out-of-range rate above the reference, by feature"),
    ),
    "WatchkeeperUnseenCategories": Expected(
        "warning",
        "Neighborhood gets categories never seen in training (model v1)",
        (
            "More than 4 % of the last windows' values of Neighborhood are categories the "
            "training data did not have, for 15 minutes."
        ),
        "unseen-categories",
        ("watchkeeper-model-health", "Unseen-category rate above the reference, by feature"),
    ),
    "WatchkeeperRejectedRequests": Expected(
        "warning",
        "More than 5 % of /predict requests are rejected as invalid",
        (
            "4xx responses (validation failures, bodies too large or malformed) above 5 % of "
            "POST /predict requests for 15 minutes: a client is sending data the model cannot "
            "take."
        ),
        "rejected-requests",
        ("watchkeeper-serving", "Errors (5xx) and rejections (4xx)"),
    ),
    "WatchkeeperHighErrorRate": Expected(
        "critical",
        "More than 5 % of /predict requests fail with 5xx",
        "5xx responses above 5 % of POST /predict requests for 10 minutes.",
        "high-error-rate",
        ("watchkeeper-serving", "Errors (5xx) and rejections (4xx)"),
    ),
    "WatchkeeperHighLatency": Expected(
        "warning",
        "/predict p99 latency above 500 ms",
        "p99 of /predict latency above 500 ms for 10 minutes.",
        "high-latency",
        ("watchkeeper-serving", "Latency of /predict"),
    ),
    "WatchkeeperLogBacklog": Expected(
        "warning",
        "Prediction log writer is falling behind",
        "More than 5,000 journaled log entries have waited for the database for 5 minutes.",
        "log-backlog-or-database-down",
        ("watchkeeper-serving", "Log queue depth"),
    ),
    "WatchkeeperLogDatabaseDown": Expected(
        "critical",
        "Prediction log database is unreachable",
        (
            "The log writers cannot reach the database; entries wait in the journal on local disk"
            " until it answers."
        ),
        "log-backlog-or-database-down",
        ("watchkeeper-serving", "Log database up"),
    ),
    "WatchkeeperLogWriterStalled": Expected(
        "critical",
        "Prediction log entries are not reaching the database",
        (
            "A serving worker's journaled entries have waited more than 1 minute with none of"
            " them stored, and its writer reports no error: the database hangs (a frozen server,"
            " a lock held). Entries wait in the journal on local disk meanwhile."
        ),
        "log-writer-stalled",
        ("watchkeeper-serving", "Log entries waiting with no write"),
    ),
    "WatchkeeperLogJournalFull": Expected(
        "critical",
        "Prediction requests are refused: the log journal is full",
        (
            "A serving worker's journal reached WATCHKEEPER_LOG_JOURNAL_MAX_BYTES; /predict and "
            "/feedback answer 503 until the database catches up."
        ),
        "log-journal-full",
        ("watchkeeper-serving", "Log entries replayed / dead-lettered / refused (1h)"),
    ),
    "WatchkeeperLogJournalUnwritable": Expected(
        "critical",
        "A serving worker cannot write its log journal",
        (
            "A serving worker has no journal or its journal's disk refuses appends: it answers"
            " 503 to what it would log and is not ready until the disk has room."
        ),
        "log-journal-unwritable",
        ("watchkeeper-serving", "Log journal writable"),
    ),
    "WatchkeeperLogDeadLetters": Expected(
        "warning",
        "Log entries were set aside in dead-letter files",
        (
            "Entries that could not be stored even alone were kept in deadletter-*.jsonl files of"
            " the journal directory."
        ),
        "log-dead-letters",
        ("watchkeeper-serving", "Log entries replayed / dead-lettered / refused (1h)"),
    ),
    "WatchkeeperLogWriterRestarted": Expected(
        "warning",
        "A prediction log writer thread died and was restarted",
        (
            "The writer thread of a serving worker died (a bug); it was restarted and nothing was"
            " lost, but the server log says why."
        ),
        "log-writer-restarted",
        ("watchkeeper-serving", "Log writer restarts (15m)"),
    ),
    "WatchkeeperModelFallback": Expected(
        "critical",
        "Serving does not serve the version CURRENT names",
        (
            "The version the registry's CURRENT names would not load (bad hash, untrusted types, "
            "malformed metadata, missing); workers serve the version before it, or their "
            "siblings', and /readyz says degraded."
        ),
        "model-fallback",
        ("watchkeeper-serving", "Serving a fallback version (1 = yes)"),
    ),
    "WatchkeeperMonitorStale": Expected(
        "critical",
        "The monitor has not completed a cycle for 30 minutes",
        "No drift, OOD or accuracy results are being produced.",
        "monitor-stale",
        ("watchkeeper-model-health", "Seconds since last monitor cycle"),
    ),
    "WatchkeeperMonitorWindowErrors": Expected(
        "critical",
        "Monitor check ood keeps failing on windows",
        (
            "The ood check raised on monitor windows throughout the last 15 minutes. Each failed "
            "window is stored with its error and passed, so no result of this check is being "
            "produced."
        ),
        "monitor-window-errors",
        ("watchkeeper-model-health", "Monitor window errors (10m)"),
    ),
    "WatchkeeperRetrainingFailed": Expected(
        "warning",
        "A retraining run failed",
        "See retrain_runs.decision_reason for the cause.",
        "retraining-failed",
        ("watchkeeper-accuracy", "Retraining runs by outcome (1h)"),
    ),
    "WatchkeeperRetrainDatabaseDown": Expected(
        "warning",
        "The retraining worker cannot reach its database",
        (
            "No retraining job can run and the worker's run counts are not exported; requests "
            "queued before the outage wait. Serving is not affected by this alert alone."
        ),
        "retraining-database-down",
        ("watchkeeper-accuracy", "Retraining database up"),
    ),
    "WatchkeeperRetrainJobStalled": Expected(
        "warning",
        "The retraining job on a is stuck",
        (
            "The retraining job of worker a has reported no progress for over 1 hour "
            "(WATCHKEEPER_RETRAIN_STALL_SECONDS). It no longer renews its lease, so that another "
            "worker, or this one once restarted, recovers its run; until the restart this worker "
            "runs no job and its /healthz fails. Its log names the step it hung in."
        ),
        "retraining-job-stalled",
        ("watchkeeper-accuracy", "Retraining jobs stalled, by worker"),
    ),
    "WatchkeeperModelRejectedRepeatedly": Expected(
        "warning",
        "3 or more retrained candidates rejected in a day",
        (
            "Retraining keeps producing models that do not beat the champion; the data or the "
            "gate needs a look."
        ),
        "model-rejected-repeatedly",
        ("watchkeeper-accuracy", "Retraining runs by outcome (1h)"),
    ),
}

# fires on absent(): series of another job are no series of its own
FIRES_WHEN_ABSENT = {"WatchkeeperMonitorStale"}
JOBS = {
    "watchkeeper_monitor_": "watchkeeper-monitor",
    "watchkeeper_retrain_": "watchkeeper-retrain",
    "watchkeeper_": "watchkeeper-serving",
}


def _alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load((ROOT / "rules" / "alerts.yml").read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def _all_alerts() -> dict[str, dict[str, Any]]:
    return {
        rule["alert"]: rule
        for path in ALL_RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def _panel_url(uid: str, title: str) -> str:
    """The link to the panel titled ``title`` of the committed dashboard ``uid``."""
    dashboards = {d["uid"]: d for d in map(json.loads, _dashboard_texts())}
    (panel,) = [p for p in dashboards[uid]["panels"] if p["title"] == title]
    return f"{Settings().grafana.url}/d/{uid}?viewPanel={panel['id']}"


def _job_of(series: str) -> str:
    return next(job for prefix, job in JOBS.items() if series.startswith(prefix))


def _with_job(series: str, job: str | None = None) -> str:
    """``series`` with the job label of the process exporting it (or ``job``)."""
    label = f'job="{job or _job_of(series)}"'
    if "{" in series:
        return series.replace("{", "{" + label + ",", 1)
    return f"{series}{{{label}}}"


def _series(pairs: list[tuple[str, str]], job: str | None = None) -> list[dict[str, str]]:
    return [{"series": _with_job(name, job), "values": values} for name, values in pairs]


def _quiet(series: list[dict[str, str]], name: str, at: int) -> dict[str, Any]:
    return {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [{"eval_time": f"{at}m", "alertname": name, "exp_alerts": []}],
    }


def _test_file(tmp_path: Path) -> Path:
    tests = []
    annotated: dict[str, dict[str, str]] = {}
    for name, case in CASES.items():
        expected = EXPECTED[name]
        labels = {
            "job": _job_of(case["fire"][0][0]),
            **case["labels"],
            "severity": expected.severity,
        }
        annotations = {
            "summary": expected.summary,
            "description": expected.description,
            "runbook_url": f"{Settings().alerting.runbook_url}#{expected.runbook}",
            "dashboard_url": _panel_url(*expected.dashboard),
        }
        annotated[name] = annotations
        tests.append(
            {
                "interval": "1m",
                "input_series": _series(case["fire"]),
                "alert_rule_test": [
                    {
                        "eval_time": f"{case['at']}m",
                        "alertname": name,
                        "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}],
                    },
                ],
            }
        )
        tests.append(_quiet(_series(case["quiet"]), name, case["at"]))
        if name not in FIRES_WHEN_ABSENT:
            # the firing series, scraped by someone else's job: not ours to alert on
            tests.append(_quiet(_series(case["fire"], job="someone-else"), name, case["at"]))
    # two releases in two namespaces of one Prometheus: drift in one alerts for that one
    drift = 'watchkeeper_monitor_dataset_drift{job="watchkeeper-monitor",model_version="v1",'
    tests.append(
        {
            "interval": "1m",
            "input_series": [
                {
                    "series": f'{drift}namespace="a"}}',
                    "values": "1x40",
                },
                {
                    "series": f'{drift}namespace="b"}}',
                    "values": "0x40",
                },
                *(
                    {
                        "series": "watchkeeper_monitor_window_end_timestamp_seconds"
                        f'{{job="watchkeeper-monitor",model_version="v1",namespace="{ns}"}}',
                        "values": "0+60x40",
                    }
                    for ns in "ab"
                ),
            ],
            "alert_rule_test": [
                {
                    "eval_time": "35m",
                    "alertname": "WatchkeeperDatasetDriftSustained",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "job": "watchkeeper-monitor",
                                "namespace": "a",
                                "model_version": "v1",
                                "severity": "warning",
                            },
                            "exp_annotations": annotated["WatchkeeperDatasetDriftSustained"],
                        }
                    ],
                }
            ],
        }
    )
    tests.append(_stall_timing(annotated["WatchkeeperRetrainJobStalled"]))
    tests.append(_orphans_after_a_restart(annotated["WatchkeeperFeedbackOrphans"]))
    tests.extend(_drift_after_traffic_stops(annotated["WatchkeeperDatasetDriftSustained"]))
    path = tmp_path / "alerts_test.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(p) for p in RULES],
                "evaluation_interval": "1m",
                "tests": tests,
            },
            sort_keys=False,
        )
    )
    return path


def _drift_after_traffic_stops(annotations: dict[str, str]) -> list[dict[str, Any]]:
    """Windows of 10 minutes (3 of them in the alert's 30): two drifted windows, ending
    at minutes 10 and 20, then no traffic, so the second's verdict stands. It fired
    30 minutes later on two windows, where the monitor's trigger wants three; three
    drifted windows (the last ending at minute 30) fire it."""
    labels = 'job="watchkeeper-monitor",model_version="v1"'
    drift = {"job": "watchkeeper-monitor", "model_version": "v1", "severity": "warning"}

    def case(ends: str, fires: dict[int, bool]) -> dict[str, Any]:
        return {
            "interval": "1m",
            "input_series": [
                {"series": f"watchkeeper_monitor_dataset_drift{{{labels}}}", "values": "_x10 1x90"},
                {
                    "series": f"watchkeeper_monitor_window_end_timestamp_seconds{{{labels}}}",
                    "values": ends,
                },
            ],
            "alert_rule_test": [
                {
                    "eval_time": f"{minute}m",
                    "alertname": "WatchkeeperDatasetDriftSustained",
                    "exp_alerts": [
                        {
                            "exp_labels": drift,
                            "exp_annotations": annotations,
                        }
                    ]
                    if fire
                    else [],
                }
                for minute, fire in fires.items()
            ],
        }

    two = case("_x10 600x10 1200x80", {39: False, 41: False, 60: False})
    three = case("_x10 600x10 1200x10 1800x70", {39: False, 41: True, 50: True, 51: False})
    return [two, three]


def _orphans_after_a_restart(annotations: dict[str, str]) -> dict[str, Any]:
    """A restarted monitor's first cycle counted 5 orphans before its first scrape: the
    counter is first seen at 5 and ``increase()`` sees nothing. When they were counted
    (kept in the database) fires the alert, for an hour."""
    monitor = {"job": "watchkeeper-monitor", "instance": "m"}
    labels = ",".join(f'{k}="{v}"' for k, v in monitor.items())
    orphans = {"exp_labels": {"job": "watchkeeper-monitor", "severity": "warning"}}
    return {
        "interval": "1m",
        "input_series": [
            {
                "series": f"watchkeeper_monitor_feedback_orphans_total{{{labels}}}",
                "values": "_ 5x80",
            },
            {
                "series": "watchkeeper_monitor_last_feedback_orphans_timestamp_seconds"
                f"{{{labels}}}",
                "values": "_ 60x80",
            },
        ],
        "alert_rule_test": [
            {
                "eval_time": f"{minute}m",
                "alertname": "WatchkeeperFeedbackOrphans",
                "exp_alerts": [{**orphans, "exp_annotations": annotations}] if fires else [],
            }
            for minute, fires in {2: True, 60: True, 62: False}.items()
        ],
    }


def _stall_timing(annotations: dict[str, str]) -> dict[str, Any]:
    """A stuck job's alert waits its 2 minutes, and a failed scrape (Prometheus marks
    the target's series stale) starts them again: it fires again 2 minutes after the
    gap, not at once, and not never."""
    stalled = {
        "exp_labels": {
            "job": "watchkeeper-retrain",
            "instance": "a",
            "severity": "warning",
        },
        "exp_annotations": annotations,
    }
    # stuck from minute 6 on; minute 10's scrape failed
    series = 'watchkeeper_retrain_job_stalled{job="watchkeeper-retrain",instance="a"}'
    expected = {7: False, 8: True, 9: True, 10: False, 12: False, 13: True}
    return {
        "interval": "1m",
        "input_series": [{"series": series, "values": "0x5 1x3 stale 1x10"}],
        "alert_rule_test": [
            {
                "eval_time": f"{minute}m",
                "alertname": "WatchkeeperRetrainJobStalled",
                "exp_alerts": [stalled] if fires else [],
            }
            for minute, fires in expected.items()
        ],
    }


@pytest.fixture(scope="module")
def promtool() -> str:
    return binary("promtool", "prometheus")


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    assert set(CASES) == set(_alerts()) == set(EXPECTED)


def test_every_alert_carries_severity_summary_description_and_links() -> None:
    runbook = (ROOT.parent / "docs" / "runbook.md").read_text()
    for name, rule in _all_alerts().items():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url", "dashboard_url"}
        assert annotations["runbook_url"].startswith(("https://", "http://")), name
        anchor = annotations["runbook_url"].split("#", 1)[1]
        assert f"## {anchor.replace('-', ' ')}" in runbook.lower(), (name, anchor)
        assert rule.get("for"), f"{name} has no for: duration"


def test_every_alert_links_to_a_panel_showing_its_metrics() -> None:
    """The dashboard_url opens a panel of the committed dashboards whose queries read
    a metric the alert's expression reads: the panel that explains the alert."""
    dashboards = {d["uid"]: d for d in map(json.loads, _dashboard_texts())}
    grafana = Settings().grafana.url
    for name, rule in _all_alerts().items():
        url = urlsplit(rule["annotations"]["dashboard_url"])
        assert f"{url.scheme}://{url.netloc}" == grafana, name
        uid = url.path.removeprefix("/d/")
        (panel_id,) = parse_qs(url.query)["viewPanel"]
        (panel,) = [p for p in dashboards[uid]["panels"] if p["id"] == int(panel_id)]
        read = {m for t in panel["targets"] for m in METRIC.findall(t["expr"])}
        assert read & set(METRIC.findall(rule["expr"])), (name, panel["title"])


def test_every_rule_selects_its_job_and_keeps_namespace_and_job() -> None:
    for path in ALL_RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                expr = rule["expr"]
                selectors = re.findall(r"\b(?:watchkeeper[_:][a-z0-9_:]+)(\{[^}]*\})?", expr)
                assert all('job="watchkeeper-' in s for s in selectors), (rule, selectors)
                for grouping in re.findall(r"\b(?:by|on) \(([^)]*)\)", expr):
                    assert {"namespace"} <= {g.strip() for g in grouping.split(",")}, rule


def test_rules_pass_promtool_check(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", *map(str, ALL_RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_fire_every_alert_and_ignore_blips_and_other_jobs(
    promtool: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [promtool, "test", "rules", str(_test_file(tmp_path))], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _fired(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """The alert ``name`` as it fires for ``labels``, with every annotation."""
    expected = EXPECTED[name]
    return {
        "exp_labels": {**labels, "severity": expected.severity},
        "exp_annotations": {
            "summary": expected.summary,
            "description": expected.description,
            "runbook_url": f"{Settings().alerting.runbook_url}#{expected.runbook}",
            "dashboard_url": _panel_url(*expected.dashboard),
        },
    }


def test_predict_ratios_are_shares_of_post_requests_only(promtool: str, tmp_path: Path) -> None:
    """The rejected and error ratios count POST /predict, the requests that ask for a
    prediction. OPTIONS, answered 204, once diluted both (10 % rejected read as 5 %,
    silent), and 405s to other methods, counted under /predict, would raise them."""
    requests = 'watchkeeper_http_requests_total{{endpoint="/predict",method="{}",status="{}"}}'
    posted_with_options = [
        (requests.format("POST", "400"), "0+10x40"),
        (requests.format("POST", "500"), "0+10x40"),
        (requests.format("POST", "200"), "0+80x40"),
        (requests.format("OPTIONS", "204"), "0+100x40"),
    ]
    wrong_methods = [
        (requests.format("POST", "200"), "0+90x40"),
        (requests.format("GET", "405"), "0+90x40"),
        (requests.format("other", "405"), "0+90x40"),
    ]
    serving = {"job": "watchkeeper-serving"}

    def ratios(rejected: float, errors: float) -> list[dict[str, Any]]:
        return [
            {
                "expr": f"round({record}, 0.001)",
                "eval_time": "30m",
                "exp_samples": [{"labels": '{job="watchkeeper-serving"}', "value": value}],
            }
            for record, value in (
                ("watchkeeper:predict_rejected:ratio5m", rejected),
                ("watchkeeper:predict_errors:ratio5m", errors),
            )
        ]

    tests = [
        {
            "interval": "1m",
            "input_series": _series(posted_with_options),
            "promql_expr_test": ratios(0.1, 0.1),
            "alert_rule_test": [
                {
                    "eval_time": "30m",
                    "alertname": name,
                    "exp_alerts": [_fired(name, serving)],
                }
                for name in ("WatchkeeperRejectedRequests", "WatchkeeperHighErrorRate")
            ],
        },
        {
            "interval": "1m",
            "input_series": _series(wrong_methods),
            "promql_expr_test": ratios(0.0, 0.0),
            "alert_rule_test": [
                {"eval_time": "30m", "alertname": name, "exp_alerts": []}
                for name in ("WatchkeeperRejectedRequests", "WatchkeeperHighErrorRate")
            ],
        },
    ]
    path = tmp_path / "ratios_test.yml"
    path.write_text(
        yaml.safe_dump(
            {"rule_files": [str(p) for p in RULES], "evaluation_interval": "1m", "tests": tests},
            sort_keys=False,
        )
    )
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_passes_promtool_check(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "check", "config", str(ROOT / "prometheus.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _dashboard_texts() -> list[str]:
    return [p.read_text() for p in (ROOT.parent / "grafana" / "dashboards").glob("*.json")]
