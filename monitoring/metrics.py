"""The monitor's Prometheus metrics: a custom collector that yields the latest
results at scrape time (nothing mutates gauges from the monitor's thread).

Accuracy gauges follow the version's task, told by its stored results (a classifier's
carry ``details.task``): a regression version exports MAE, RMSE, MAPE, interval
coverage and the estimated MAE; a classifier version exports accuracy with its Wilson
bounds, log-loss, Brier score, prediction-set coverage and size, calibration error,
per-class recall and the estimated accuracy. Neither exports the other's: a dashboard
or alert on a series that means nothing for the served model would mislead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from monitoring.check_details import AccuracyDetails, ClassAccuracyDetails
from monitoring.log_reader import Unreadable
from monitoring.monitor import MonitorStatus
from monitoring.window_result import Check, WindowResult

PREFIX = "watchkeeper_monitor_"


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))


class MonitorCollector(Collector):
    def __init__(
        self, status: MonitorStatus, served: Callable[[], str | None] | None = None
    ) -> None:
        """``served`` names the model version in service: the latest window's figures
        (drift, OOD, data quality, estimate) are exported only for it, or a drifted v1
        window would keep its gauge at 1 after v2's promotion, until v2's first window
        with a verdict, and page (and retrain v2) for a model no longer served.
        Accuracy from labels stays per version: labels of v1's predictions come late
        (the monitor drops a replaced version's once its labels stop, see
        ``Monitor._retire_replaced``)."""
        self.status = status
        self.served = served

    def collect(self) -> Iterator[Any]:
        status = self.status
        yield from self._health(status)
        version = self.served() if self.served is not None else None
        latest = {
            detector: result
            for detector, result in status.latest.items()
            if version is None or result.model_version == version
        }
        if Check.DATA_QUALITY in latest:
            yield from self._quality(latest[Check.DATA_QUALITY])
        if Check.OOD in latest:
            ood = latest[Check.OOD]
            g = _gauge(
                "ood_fraction",
                "Share of the last window's predictions scored out of distribution.",
                ("model_version",),
            )
            g.add_metric([ood.model_version], ood.score)
            yield g
        if Check.FEATURE_DRIFT in latest:
            yield from self._feature_drift(latest[Check.FEATURE_DRIFT])
        for detector, doc in (
            (Check.OUTPUT_DRIFT, "prediction (output) drift"),
            (Check.MULTIVARIATE_DRIFT, "multivariate (classifier) drift"),
        ):
            # a window with no verdict (too few finite predictions) exports none: a 0
            # would say "no drift", which nothing showed
            if detector in latest and latest[detector].is_drift is not None:
                result = latest[detector]
                verdict = _gauge(
                    detector, f"1 when the last window showed {doc}.", ("model_version",)
                )
                verdict.add_metric([result.model_version], float(bool(result.is_drift)))
                p = _gauge(
                    f"{detector}_p_value", f"p-value of the last {doc} test.", ("model_version",)
                )
                p.add_metric([result.model_version], result.score)
                yield verdict
                yield p
        estimate = latest.get(Check.ESTIMATED_ACCURACY)
        if estimate is not None and estimate.is_classifier:
            if estimate.score is not None:
                g = _gauge(
                    "estimated_accuracy_ratio",
                    "Accuracy of the last window as the classifier's confidence calibration "
                    "expects it, before its labels arrive.",
                    ("model_version",),
                )
                g.add_metric([estimate.model_version], estimate.score)
                yield g
        elif estimate is not None and estimate.score is not None:  # None: no estimator
            g = _gauge(
                "estimated_mae",
                "MAE of the last window as the model's loss estimator expects it, before "
                "its labels arrive.",
                ("model_version",),
            )
            g.add_metric([estimate.model_version], estimate.score)
            yield g
        if status.estimate_errors:
            g = _gauge(
                "estimated_mae_error_ratio",
                "How far the label-free MAE estimate of the last window with enough labels was "
                "from the MAE its labels gave: |estimated - realised| / realised.",
                ("model_version",),
            )
            for version, error in status.estimate_errors.items():
                g.add_metric([version], error)
            yield g
        if status.accuracy_estimate_errors:
            g = _gauge(
                "estimated_accuracy_error_ratio",
                "The label-free accuracy estimate of the last window with enough labels minus "
                "the accuracy its labels gave (positive: the model expected to do better).",
                ("model_version",),
            )
            for version, error in status.accuracy_estimate_errors.items():
                g.add_metric([version], error)
            yield g
        if status.rolling:
            rolling = list(status.rolling.values())
            yield from self._accuracy([r for r in rolling if not r.is_classifier])
            yield from self._class_accuracy([r for r in rolling if r.is_classifier])
            yield from self._labels(rolling)
        # kept when a replaced version's series go: it says when labels last came
        last_labels = [r.evaluated_at.timestamp() for r in status.rolling.values()]
        if status.last_labels is not None:
            last_labels.append(status.last_labels)
        if last_labels:
            g = _gauge(
                "last_labels_timestamp_seconds",
                "Unix time accuracy was last computed from new labels.",
            )
            g.add_metric([], max(last_labels))
            yield g

    def _health(self, status: MonitorStatus) -> Iterator[Any]:
        evaluated = CounterMetricFamily(PREFIX + "windows_evaluated", "Windows evaluated.")
        evaluated.add_metric([], status.windows_evaluated)
        errors = CounterMetricFamily(PREFIX + "errors", "Monitor cycles that failed.")
        errors.add_metric([], status.errors)
        window_errors = CounterMetricFamily(
            PREFIX + "window_errors",
            "Checks that raised on a window: stored as errors, the window passed.",
            labels=["check"],
        )
        for check in Check:  # every label from the start, so increase() sees the first error
            window_errors.add_metric([check.value], status.window_errors.get(check, 0))
        rows = CounterMetricFamily(PREFIX + "rows_read", "Prediction rows read from the log.")
        rows.add_metric([], status.rows_read)
        unreadable = CounterMetricFamily(
            PREFIX + "unreadable_rows",
            "Rows left out of windows' figures for a value no server writes, by reason: "
            "time (none pandas holds: in no window), number (a prediction or bound that "
            "is no number, of the windows' samples: left out with the non-finite ones).",
            labels=["reason"],
        )
        for reason in Unreadable:  # every label from the start, as window_errors
            unreadable.add_metric([reason.value], status.unreadable_rows.get(reason.value, 0))
        yield unreadable
        orphans = CounterMetricFamily(
            PREFIX + "feedback_orphans",
            "Labels whose prediction id was still not in the log feedback_orphan_seconds "
            "after they arrived.",
        )
        orphans.add_metric([], status.feedback_orphans)
        yield orphans
        found = _gauge(
            "last_feedback_orphans_timestamp_seconds",
            "Unix time orphan labels were last counted, by this monitor process or an "
            "earlier one (0: never): the counter restarts at 0, and a restart's first cycle "
            "may count them before any scrape.",
        )
        # 0 rather than no series: the alert reads it, and a series that is there tells
        # a monitor that never counted one from a monitor not scraped
        found.add_metric([], status.last_orphans or 0.0)
        yield found
        requests = CounterMetricFamily(
            PREFIX + "retrain_requests", "Retrain requests recorded, by reason.", labels=["reason"]
        )
        for reason in ("drift", "ood", "accuracy"):
            requests.add_metric([reason], status.retrain_requests.get(reason, 0))
        yield requests
        duration = _gauge("evaluation_duration_seconds", "Duration of the last monitor cycle.")
        duration.add_metric([], status.last_duration)
        yield from (evaluated, errors, window_errors, rows, duration)
        if status.last_success is not None:
            last = _gauge(
                "last_success_timestamp_seconds", "Unix time of the last successful cycle."
            )
            last.add_metric([], status.last_success)
            yield last

    def _quality(self, result: WindowResult) -> Iterator[Any]:
        version = result.model_version
        size = _gauge(
            "window_size", "Predictions in the last evaluated window.", ("model_version",)
        )
        size.add_metric([version], result.n_rows)
        ended = _gauge(
            "window_end_timestamp_seconds",
            "Unix time of the last prediction in the last evaluated window: whether windows "
            "still come, or its figures stand since traffic stopped.",
            ("model_version",),
        )
        ended.add_metric([version], result.ended_at.timestamp())
        rejected = _gauge(
            "rejected_request_rate",
            "Share of /predict requests rejected with 4xx during the last window.",
            ("model_version",),
        )
        rejected.add_metric([version], result.rejected_rate)
        families = {
            rate: _gauge(
                rate,
                f"Per-feature {rate.replace('_', ' ')} in the last window.",
                ("model_version", "feature"),
            )
            for rate in ("missing_rate", "unseen_category_rate", "out_of_range_rate")
        }
        for feature, rates in result.feature_rates.items():
            for rate, value in rates.items():
                families[rate].add_metric([version, feature], value)
        # the reference's own rates, for alert rules to compare against (older stored
        # results lack them)
        references = {
            rate: _gauge(
                f"reference_{rate}",
                f"Per-feature {rate.replace('_', ' ')} of the model's reference sample.",
                ("model_version", "feature"),
            )
            for rate in families
        }
        for feature, rates in result.reference_rates.items():
            for rate, value in rates.items():
                references[rate].add_metric([version, feature], value)
        yield size
        yield ended
        yield rejected
        yield from families.values()
        yield from references.values()

    def _feature_drift(self, result: WindowResult) -> Iterator[Any]:
        version = result.model_version
        verdict = _gauge(
            "dataset_drift", "1 when the last window showed dataset drift.", ("model_version",)
        )
        verdict.add_metric([version], float(bool(result.is_drift)))
        share = _gauge(
            "drifted_features_ratio",
            "Share of features drifted in the last window.",
            ("model_version",),
        )
        share.add_metric([version], result.score)
        p = _gauge(
            "feature_drift_p_value", "Per-feature drift test p-value.", ("model_version", "feature")
        )
        d = _gauge(
            "feature_drift_distance",
            "Per-feature drift distance (KS statistic or chi-squared).",
            ("model_version", "feature"),
        )
        distances = result.distances
        for feature, value in result.p_values.items():
            p.add_metric([version, feature], value)
            d.add_metric([version, feature], distances[feature])
        yield from (verdict, share, p, d)

    def _accuracy(self, rolling: list[WindowResult]) -> Iterator[Any]:
        """The rolling figures, one series per model version: each version's most
        recently predicted labelled predictions (``monitor_accuracy_labels`` of them).
        Every version keeps its series while labels come for another (after a
        promotion, for both), or the alerts' ``for:`` would restart at each flip; a
        replaced one until ``monitor_replaced_accuracy_seconds`` after its last labels. Each
        window's own accuracy is in the stored results and the report."""
        figures = [
            (result.model_version, details)
            for result in rolling
            if (details := result.details_as(AccuracyDetails)) is not None
        ]
        gauges: tuple[tuple[Callable[[AccuracyDetails], float | None], str, str], ...] = (
            (
                lambda d: d.mae,
                "mae",
                "Mean absolute error of the most recent labelled predictions.",
            ),
            (
                lambda d: d.mae_lower_bound,
                "mae_lower_bound",
                "One-sided lower confidence bound of that MAE (the retrain trigger's figure).",
            ),
            (
                lambda d: d.rmse,
                "rmse",
                "Root mean squared error of the most recent labelled predictions.",
            ),
            (
                # MAPE is stored in percent (the report and CLI print it so); Prometheus
                # takes ratios in base units
                lambda d: None if d.mape is None else d.mape / 100,
                "mape_ratio",
                "Mean absolute percentage error of the most recent labelled predictions, as "
                "a ratio (0.1 = 10 %).",
            ),
            (
                lambda d: d.coverage,
                "interval_coverage",
                "Share of actual values inside the prediction interval.",
            ),
            (
                lambda d: d.validation_mae,
                "validation_mae",
                "MAE the model had on its validation data.",
            ),
        )
        for figure, name, doc in gauges:
            g = _gauge(name, doc, ("model_version",))
            for version, details in figures:
                value = figure(details)
                if value is None:  # no MAPE for this target; older stored results
                    continue
                g.add_metric([version], value)
            if g.samples:
                yield g

    def _class_accuracy(self, rolling: list[WindowResult]) -> Iterator[Any]:
        """A classifier version's rolling figures (see :meth:`_accuracy`)."""
        figures = [
            (result.model_version, details)
            for result in rolling
            if (details := result.details_as(ClassAccuracyDetails)) is not None
        ]
        for figure, name, doc in CLASS_GAUGES:
            g = _gauge(name, doc, ("model_version",))
            for version, details in figures:
                value = figure(details)
                if value is not None:  # no validation figure for this version
                    g.add_metric([version], value)
            if g.samples:
                yield g
        recall = _gauge(
            "class_recall_ratio",
            "Share of the most recent labelled predictions of each true class that the "
            "classifier got right (classes seen among the labels).",
            ("model_version", "class"),
        )
        for result in rolling:
            for label, value in result.recall.items():
                recall.add_metric([result.model_version, label], value)
        if recall.samples:
            yield recall

    def _labels(self, rolling: list[WindowResult]) -> Iterator[Any]:
        """How many labels, how late, and when: the same for either task."""
        figures = [
            (result.model_version, details)
            for result in rolling
            if isinstance(details := result.details, AccuracyDetails | ClassAccuracyDetails)
        ]
        gauges: tuple[
            tuple[Callable[[AccuracyDetails | ClassAccuracyDetails], float | None], str, str], ...
        ] = (
            (
                lambda d: d.labels,
                "labels",
                "Labelled predictions behind the rolling accuracy figures.",
            ),
            (
                lambda d: d.label_delay_seconds_median,
                "label_delay_seconds",
                "Median time from prediction to label.",
            ),
        )
        for figure, name, doc in gauges:
            g = _gauge(name, doc, ("model_version",))
            for version, details in figures:
                value = figure(details)
                if value is not None:  # a stored figure of no finite prediction
                    g.add_metric([version], value)
            if g.samples:
                yield g


CLASS_GAUGES: tuple[tuple[Callable[[ClassAccuracyDetails], float | None], str, str], ...] = (
    (
        lambda d: d.accuracy,
        "accuracy_ratio",
        "Share of the most recent labelled predictions that were right.",
    ),
    (
        lambda d: d.accuracy_lower_bound,
        "accuracy_lower_bound_ratio",
        "One-sided Wilson lower bound of that accuracy at trigger_accuracy_confidence.",
    ),
    (
        lambda d: d.accuracy_upper_bound,
        "accuracy_upper_bound_ratio",
        "One-sided Wilson upper bound of that accuracy at trigger_accuracy_confidence (the "
        "retrain trigger's figure).",
    ),
    (lambda d: d.log_loss, "log_loss", "Log-loss of the most recent labelled predictions (nats)."),
    (
        lambda d: d.brier,
        "brier_score",
        "Brier score (summed over classes) of the most recent labels.",
    ),
    (
        lambda d: d.set_coverage,
        "prediction_set_coverage_ratio",
        "Share of true classes inside the prediction set.",
    ),
    (lambda d: d.set_size, "prediction_set_size", "Mean number of classes in the prediction set."),
    (
        lambda d: d.ece,
        "calibration_error_ratio",
        "Expected calibration error of the confidence (10 equal-width bins).",
    ),
    (
        lambda d: d.validation_accuracy,
        "validation_accuracy_ratio",
        "Accuracy the classifier had on its validation data.",
    ),
    (
        lambda d: d.validation_log_loss,
        "validation_log_loss",
        "Log-loss the classifier had on validation.",
    ),
)
"""A classifier's rolling gauges: (its figure, name after the prefix, help)."""
