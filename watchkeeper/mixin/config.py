"""The one configuration the alert rules, recording rules, Alertmanager routing and
dashboards are generated from, like a monitoring mixin's ``_config``.

The figures the monitor acts on come from the same settings the monitor reads
(``WATCHKEEPER_TRIGGER_*``, ``WATCHKEEPER_DRIFT_P_VALUE``), so the PromQL and the Python
retrain trigger cannot disagree: change a setting, regenerate (``watchkeeper mixin
build``), and rules, dashboards and trigger move together. Figures no code acts on
(latency, error ratios, log backlog) are documented constants here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from watchkeeper.settings import Settings


class Component(StrEnum):
    """The three processes Prometheus scrapes, each under its own job."""

    SERVING = "serving"
    MONITOR = "monitor"
    RETRAIN = "retrain"


@dataclass(frozen=True)
class Jobs:
    """Job names: the scrape jobs of ``prometheus/prometheus.yml`` and the Services'
    ``watchkeeper.io/job`` label the chart's ServiceMonitor turns into ``job``."""

    serving: str = "watchkeeper-serving"
    monitor: str = "watchkeeper-monitor"
    retrain: str = "watchkeeper-retrain"

    def of(self, component: Component) -> str:
        return str(getattr(self, component.value))


@dataclass(frozen=True)
class Thresholds:
    drift_windows: int
    """Consecutive drifted windows that request a retrain."""
    drift_p_value: float
    """Significance level of the drift tests: the p-value panels' threshold line."""
    ood_fraction: float
    """Share of a window out of distribution that requests a retrain."""
    mae_degradation: float
    """Fraction by which the MAE's lower bound may exceed the validation MAE."""
    coverage_min: float = 0.8
    """The live interval coverage band: the band a retraining candidate must meet and
    train refuses to serve outside (WATCHKEEPER_RETRAIN_MIN_COVERAGE)..."""
    coverage_max: float = 0.98
    """...and WATCHKEEPER_RETRAIN_MAX_COVERAGE. A classifier's prediction sets are held
    to the same band: the set is built at the same level as the interval (training's
    interval level) and retraining gates its coverage on the same band."""
    accuracy_drop: float = 0.05
    """Absolute drop of a classifier's accuracy below its validation accuracy that
    requests a retrain once the accuracy's Wilson upper bound is under it
    (WATCHKEEPER_TRIGGER_ACCURACY_DROP); the label-free estimate is held to the same
    limit."""
    calibration_error: float = 0.1
    """A classifier's expected calibration error (ECE, 10 confidence bins) over the
    rolling labels above which the confidence clients read is wrong by more than this on
    average. A calibrated model's ECE over the default 1,000 labels is about 0.02–0.03
    from sampling alone; 0.1 is well clear of that noise."""
    missing_rate_excess: float = 0.10
    """A feature missing in this many points more of a window than in the reference."""
    out_of_range_excess: float = 0.04
    """Values outside the training range, beyond the reference's own rate. 2008–10
    sales' newest Year_Built values are 3.8 % above training's range: just under."""
    unseen_category_excess: float = 0.04
    """Categories training never had, beyond the reference's own rate."""
    rejected_ratio: float = 0.05
    """Share of /predict requests rejected with 4xx."""
    error_ratio: float = 0.05
    """Share of /predict requests failing with 5xx."""
    latency_p99_seconds: float = 0.5
    """p99 of /predict latency."""
    log_backlog_entries: int = 5000
    """Journaled log entries waiting for the database."""
    log_stall_seconds: float = 60.0
    """Time a serving worker's journaled entries may wait with none of them stored. A
    writer that keeps up stores what waits every WATCHKEEPER_LOG_WRITE_INTERVAL (0.5 s);
    its largest batch (WATCHKEEPER_LOG_BATCH_BYTES) takes seconds at most. Unlike the
    backlog's count, this trips at any traffic: one entry waiting is enough."""
    monitor_stale_seconds: float = 1800.0
    """Time without a successful monitor cycle."""
    labels_stale_seconds: float = 86400.0
    """Time without accuracy from new labels while predictions flow."""
    rejected_candidates_per_day: int = 3
    """Retrained candidates rejected in a day."""
    retention_overdue_margin_seconds: float = 86400.0
    """How much older than its retention a table's oldest row may get before pruning
    counts as stopped (a prune runs every hour by default; a day leaves room)."""
    retention_growth_horizon_seconds: float = 7 * 86400.0
    """How far ahead the prediction log's growth is projected..."""
    retention_growth_factor: float = 1.5
    """...and the projected size, relative to today's, that is too much..."""
    retention_full_share: float = 0.9
    """...once the log holds this share of a full retention period (a young log grows
    by design)."""
    retrain_stall_seconds: float = 3600.0
    """A retraining job without progress for this long counts as hung
    (WATCHKEEPER_RETRAIN_STALL_SECONDS): the worker acts on it and exports
    ``watchkeeper_retrain_job_stalled``; the dashboard draws it as the line its seconds
    since progress must stay under, and the alert's description names it."""

    @property
    def mae_factor(self) -> float:
        """The validation MAE is multiplied by this to get the accuracy limit."""
        return 1 + self.mae_degradation


@dataclass(frozen=True)
class Durations:
    """``for:`` of the alerts, in seconds."""

    drift: float
    """trigger_drift_windows × monitor_window_seconds: the longest time the monitor
    takes to see that many consecutive drifted windows (windows close after
    monitor_window_seconds at the latest; busier traffic closes them sooner, so the
    trigger may act before the alert, never much after)."""
    feature_drift: float
    """Same as dataset drift: a per-feature signal over the same span."""
    window_age: float = 1215.0
    """How old the newest window's end may be while windows still come: two window
    spans plus the monitor's settle and interval (it evaluates a window that long after
    its end at most). Past it the drift alerts hold no longer: traffic stopped, and the
    last window's verdict stands alone."""
    ood: float = 900.0
    """The trigger acts on one window; the alert waits 15 minutes so that one odd window
    pages nobody."""
    accuracy: float = 1800.0
    """The lower confidence bound is already robust to few labels; 30 minutes rules out
    a bound that crosses the limit for one round only."""
    coverage: float = 3600.0
    """The rolling coverage moves with every batch of labels; an hour outside the band is
    the interval being wrong, not a batch of unusual houses."""
    calibration: float = 3600.0
    """Like coverage: a rolling figure that moves with every batch of labels."""
    estimated_accuracy: float = 1800.0
    """The estimate is one window's; three windows of the default 10 minutes below the
    limit are a trend, one is an unusual batch."""
    data_quality: float = 900.0
    too_few_labels: float = 3600.0
    rejected: float = 900.0
    errors: float = 600.0
    latency: float = 600.0
    log_backlog: float = 300.0
    database_down: float = 120.0
    log_stall: float = 60.0
    """The gauge counts the wait already; a minute more rules out one slow batch."""
    journal_unwritable: float = 60.0
    """A worker whose journal's disk refuses appends is not ready, so a load balancer
    sends it nothing and no refusal is counted: the gauge is the only sign."""
    counter_step: float = 60.0
    """Alerts on a counter's increase: long enough to survive one scrape gap."""
    feedback_orphans: float = 0.0
    """Orphans are counted a day after they arrive already: tell at once."""
    model_fallback: float = 300.0
    monitor_stale: float = 600.0
    window_errors: float = 900.0
    rejected_candidates: float = 300.0
    retention_overdue: float = 1800.0
    retention_growth: float = 3600.0
    retrain_job_stalled: float = 120.0
    """``watchkeeper_retrain_job_stalled`` turns 1 only once a job has gone the whole
    stall deadline (an hour by default) without progress: the deadline has done the
    waiting, and 2 minutes (8 scrapes of 15 s) only spare a job that moves again moments
    after it, its lease still held. Short, because a failed scrape marks the worker's
    series stale and so restarts the ``for:``: a gap delays the alert by the gap plus 2
    minutes, no more. Under Kubernetes the failing /healthz restarts the worker 4 to 7
    minutes after the deadline (its heartbeat, last beaten at a lease renewal, goes stale
    after a lease and a poll; then three failed probes): the alert fires first on
    purpose, as the hang's cause (a mount, a lock, a fit longer than the deadline)
    outlives a restart and hangs the next job too."""
    partitions_failing: float = 6 * 3600.0
    """The day partitions ahead reach 7 days out, so a failing check has days before
    rows land in the default partition. A failed check (database unreachable, the
    monitor's role not allowed to create tables, a full disk) is retried at the
    monitor's next wake, a minute later: one failure is a blip. A database outage or
    maintenance of a few hours has alerts of its own; 6 hours outlasts it and still
    leaves more than 6 of the 7 days to fix a failure that stays. A day's creation
    refused its lock within 5 s (a long reader of the table) fails the check too, even
    for day +7, and is retried 10 minutes later (``partitions.RETRY_INTERVAL``, within
    the rule's 1-hour window, so a lock held for hours keeps it firing)."""


def prom_duration(seconds: float) -> str:
    """``seconds`` as a Prometheus duration (``1h30m``, ``45s``); whole seconds."""
    total = math.ceil(seconds)
    if total == 0:
        return "0m"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


class DashboardUid(StrEnum):
    SERVING = "watchkeeper-serving"
    MODEL_HEALTH = "watchkeeper-model-health"
    ACCURACY = "watchkeeper-accuracy"


SETTINGS_READ = frozenset(
    {
        "trigger_drift_windows",
        "monitor_window_seconds",
        "monitor_settle_seconds",
        "monitor_interval",
        "drift_p_value",
        "trigger_ood_fraction",
        "trigger_mae_degradation",
        "trigger_accuracy_drop",
        "retrain_min_coverage",
        "retrain_max_coverage",
        "retrain_stall_seconds",
        "alert_runbook_url",
        "grafana_url",
        "dashboard_target_unit",
        "retrain_alert_names",
        "metrics_namespace",
    }
)
"""Flat names of the settings :meth:`MixinConfig.from_settings` reads: the generated
files are built with them, so a deployment that ships those files (the Helm chart)
must run with the same values."""


@dataclass(frozen=True)
class MixinConfig:
    thresholds: Thresholds
    durations: Durations
    runbook_url: str
    """Absolute URL of docs/runbook.md; alerts link to its sections."""
    grafana_url: str
    """Grafana's base URL; alerts link to the panel explaining them."""
    target_unit: str
    """Grafana unit of the model's target (MAE, RMSE, predicted values)."""
    retrain_alert_names: tuple[str, ...]
    """Alerts routed to the retraining webhook as well as to people."""
    namespace: str = ""
    """Namespace every selector names; empty: none (one host, or a Prometheus per
    namespace). Aggregations keep ``namespace`` either way."""
    jobs: Jobs = field(default_factory=Jobs)
    datasource_uid: str = "watchkeeper-prometheus"
    """The provisioned data source: the dashboards' data-source variable default."""

    @classmethod
    def from_settings(cls, settings: Settings) -> MixinConfig:
        drift = settings.trigger.drift_windows * settings.monitor.window_seconds
        return cls(
            thresholds=Thresholds(
                drift_windows=settings.trigger.drift_windows,
                drift_p_value=settings.drift.p_value,
                ood_fraction=settings.trigger.ood_fraction,
                mae_degradation=settings.trigger.mae_degradation,
                coverage_min=settings.retrain.min_coverage,
                coverage_max=settings.retrain.max_coverage,
                accuracy_drop=settings.trigger.accuracy_drop,
                retrain_stall_seconds=settings.retrain.stall_seconds,
            ),
            durations=Durations(
                drift=drift,
                feature_drift=drift,
                window_age=2 * settings.monitor.window_seconds
                + settings.monitor.settle_seconds
                + settings.monitor.interval,
            ),
            runbook_url=settings.alerting.runbook_url,
            grafana_url=settings.grafana.url.rstrip("/"),
            target_unit=settings.grafana.dashboard_target_unit,
            retrain_alert_names=settings.alerting.retrain_alert_names,
            namespace=settings.alerting.metrics_namespace,
        )

    def selector(self, component: Component, *matchers: str) -> str:
        """``{job="…"[,namespace="…"],matchers…}`` for a metric of ``component``."""
        own = [f'job="{self.jobs.of(component)}"']
        if self.namespace:
            own.append(f'namespace="{self.namespace}"')
        return "{" + ",".join([*own, *matchers]) + "}"

    @staticmethod
    def by(*labels: str) -> str:
        """Labels an aggregation keeps: always namespace and job, so two releases in
        one Prometheus never mix."""
        return ", ".join(("namespace", "job", *labels))

    def runbook(self, anchor: str) -> str:
        return f"{self.runbook_url}#{anchor}"

    def dashboard_url(self, uid: str, panel_id: int) -> str:
        return f"{self.grafana_url}/d/{uid}?viewPanel={panel_id}"
