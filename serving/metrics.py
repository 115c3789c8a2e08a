"""Prometheus metrics of the prediction server.

Metrics are created against the registry handed in, never the global one. Under
gunicorn prometheus-client runs in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``
set before import) and ``/metrics`` aggregates every worker's files; gauges say how
to aggregate with ``multiprocess_mode``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from serving.metric_files import SizedFilesCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


class LogMetrics:
    """Health of the prediction log: the journal and its background writer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.queue_depth = Gauge(
            "watchkeeper_log_queue_depth",
            "Log entries journaled and not yet in the database (sum over workers).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.backlog_bytes = Gauge(
            "watchkeeper_log_backlog_bytes",
            "Bytes of journaled entries not yet in the database (sum over workers).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.stalled_seconds = Gauge(
            "watchkeeper_log_stalled_seconds",
            "Seconds a worker's journaled entries have waited with none of them stored "
            "(the longest over workers; 0 while its writer keeps up). Grows while the "
            "database is down, and while it hangs without failing (a frozen server, a "
            "lock held), when nothing else moves.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.journal_bytes = Gauge(
            "watchkeeper_log_journal_bytes",
            "Bytes of journal segment files on this host's disk, dead processes' included.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.dead_letter_bytes = Gauge(
            "watchkeeper_log_dead_letter_bytes",
            "Bytes of dead-letter files on this host's disk (every worker's). At "
            "WATCHKEEPER_LOG_DEAD_LETTER_MAX_BYTES, refused entries wait in the journals.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.journal_writable = Gauge(
            "watchkeeper_log_journal_writable",
            "1 when every worker's journal accepts entries; 0 while one has none or its "
            "disk refuses appends (its requests that must be logged get 503).",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.journal_writable.set(1)
        self.rows_written = Counter(
            "watchkeeper_log_rows_written",
            # Predictions are stored in their request's row (requests.outputs); the
            # "predictions" series keeps counting them, as it did their rows.
            'Committed to the prediction log: table="requests" counts request rows, '
            'table="predictions" the predictions they hold.',
            ["table"],
            registry=registry,
        )
        self.write_errors = Counter(
            "watchkeeper_log_write_errors",
            "Failed attempts to write a batch to the prediction log database.",
            registry=registry,
        )
        self.rows_replayed = Counter(
            "watchkeeper_log_rows_replayed",
            "Journaled entries of ended processes replayed into the database.",
            registry=registry,
        )
        self.rows_dead_lettered = Counter(
            "watchkeeper_log_rows_dead_lettered",
            "Log entries that could not be stored even alone, kept in a dead-letter file.",
            registry=registry,
        )
        self.entries_rejected = Counter(
            "watchkeeper_log_entries_rejected",
            "Requests refused (503) because the journal was at its size limit or could "
            "not be written.",
            registry=registry,
        )
        self.writer_restarts = Counter(
            "watchkeeper_log_writer_restarts",
            "Times a dead log writer thread was restarted.",
            registry=registry,
        )
        self.database_up = Gauge(
            "watchkeeper_log_database_up",
            "1 when the log writer's last database operation succeeded.",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.database_up.set(1)
        self.schema_pending = Gauge(
            "watchkeeper_log_schema_pending",
            "1 while a worker's log writer has not yet checked the database's schema "
            "revision (the database has not answered since the worker started): it "
            "stores nothing until it has, and its entries wait in the journal.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.schema_mismatch = Gauge(
            "watchkeeper_log_schema_mismatch",
            "1 while a worker's log writer found the database's schema at another "
            "revision than the code's (or could not check or migrate it there): it "
            "stores nothing, its entries wait in the journal.",
            registry=registry,
            multiprocess_mode="livemax",
        )


class ServingMetrics:
    """Request, prediction and model metrics of the prediction server."""

    def __init__(self, registry: CollectorRegistry, prediction_buckets: Sequence[float]) -> None:
        self.registry = registry
        self.requests = Counter(
            "watchkeeper_http_requests",
            "HTTP requests handled, by endpoint, method and status code.",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "watchkeeper_http_request_duration_seconds",
            "Time to handle an HTTP request, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.predictions = Counter(
            "watchkeeper_predictions",
            "Predictions made, by model version.",
            ["model_version"],
            registry=registry,
        )
        # Non-finite values stay out of watchkeeper_prediction_value (one NaN would spoil
        # its sum for good): they are counted here.
        self.non_finite_predictions = Counter(
            "watchkeeper_non_finite_predictions",
            "Predictions the model returned as NaN or an infinity (a regression model's "
            "value or interval bound, a classifier's class probability), by model version "
            "(answered as null, logged as returned; a classifier's class as NaN).",
            ["model_version"],
            registry=registry,
        )
        # Regression models only: a classifier's class index is no quantity, and its
        # confidence is on another scale than these buckets (fitted to the target).
        # Classifiers count their predicted classes instead (predicted_class).
        self.prediction_value = Histogram(
            "watchkeeper_prediction_value",
            "Distribution of predicted values of regression models (the target's unit); "
            "classifiers' predictions are counted by class in watchkeeper_predicted_class.",
            buckets=tuple(prediction_buckets),
            registry=registry,
        )
        # Bounded: a version's classes are fixed when it is trained.
        self.predicted_class = Counter(
            "watchkeeper_predicted_class",
            "Predictions of classifiers, by model version and predicted class (label text).",
            ["model_version", "label"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "watchkeeper_predict_batch_size",
            "Instances per accepted /predict request.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.model_info = Gauge(
            "watchkeeper_model_info",
            "1 for the model version a worker serves; task is regression or classification.",
            ["model_version", "task"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.model_reloads = Counter(
            "watchkeeper_model_reloads",
            "Hot swaps to a new model version by outcome (loaded, failed).",
            ["outcome"],
            registry=registry,
        )
        self.model_fallback = Gauge(
            "watchkeeper_model_fallback",
            "1 while a worker serves another version than CURRENT names, or none, because "
            "that one would not load (max over workers).",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.log = LogMetrics(registry)


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """``histogram.observe`` for every value, in one pass per bucket instead of one
    call per value (a 1,000-row batch would otherwise cost ~1,000 file writes under
    multiprocess mode). Uses the client's bucket attributes; a test checks the result
    against ``observe`` so a change in the client library fails loudly."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return
    bounds = histogram._upper_bounds  # noqa: SLF001 - see docstring
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=True):  # noqa: SLF001
        if count:
            bucket.inc(count)
    histogram._sum.inc(float(values.sum()))  # noqa: SLF001


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition: every worker's values under gunicorn, else ``registry``'s."""
    if multiprocess_enabled():
        collected = CollectorRegistry()
        SizedFilesCollector(collected)
        return generate_latest(collected), CONTENT_TYPE_LATEST
    return generate_latest(registry), CONTENT_TYPE_LATEST
