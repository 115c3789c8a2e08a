"""The one settings object, read from ``WATCHKEEPER_*`` environment variables.

Every process (serving, monitor, retraining) builds a :class:`Settings` from its
environment. The README's configuration table is generated from the field
docstrings below (``watchkeeper settings --markdown``) and a test keeps the two equal.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "WATCHKEEPER_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        use_attribute_docstrings=True,
        extra="ignore",
        frozen=True,
    )

    data_dir: Path = Path("var")
    """Directory for embedded state: the SQLite database, model registry, log journal
    and Prometheus multiprocess files, unless each is set on its own."""

    database_url: str = ""
    """SQLAlchemy URL of the prediction log. Empty means SQLite at
    `<data_dir>/watchkeeper.db`; use `postgresql+psycopg://user:pass@host/db` in production."""

    registry_path: Path | None = None
    """Directory of the model registry. Empty means `<data_dir>/registry`."""

    spill_dir: Path | None = None
    """Directory of the prediction log's journal: every logged request is appended here
    before it is answered, and moved to the database in the background; entries that
    cannot be stored are kept in `deadletter-*.jsonl` files. Empty means
    `<data_dir>/spill`. Must be durable storage on a local filesystem of the server."""

    prometheus_multiproc_dir: Path | None = None
    """Directory for prometheus-client's multiprocess files under gunicorn; wiped at
    server start. Empty means `<data_dir>/prometheus-multiproc`."""

    auto_migrate: bool = True
    """Apply pending database migrations when `watchkeeper serve` starts. Turn off where
    a deployment step runs `watchkeeper db upgrade` (the Helm hook does)."""

    host: str = "127.0.0.1"
    """Address the prediction server binds to."""

    port: int = Field(default=8000, ge=0, le=65535)
    """Port the prediction server binds to."""

    workers: int = Field(default=2, ge=1)
    """Gunicorn worker processes."""

    threads: int = Field(default=4, ge=1)
    """Threads per gunicorn worker (gthread worker class)."""

    numeric_threads: int = Field(default=1, ge=1)
    """Threads each process's numeric libraries may use (OpenMP, BLAS): every command
    sets `OMP_NUM_THREADS`, `OPENBLAS_NUM_THREADS`, `MKL_NUM_THREADS` and the like from
    this, overriding them. One per process keeps several processes (serving workers,
    monitor, retraining) from oversubscribing the cores; raise it only for a process alone
    on its cores."""

    worker_timeout: int = Field(default=30, ge=1)
    """Seconds a gunicorn worker may be silent before it is restarted."""

    graceful_timeout: int = Field(default=30, ge=1)
    """Seconds a worker has on SIGTERM to finish requests and drain the log queue."""

    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    """Largest accepted request body in bytes; larger bodies get 413."""

    request_read_timeout: float = Field(default=30.0, gt=0)
    """Seconds a client has, from its first byte, to send a whole request (headers and
    body); then it gets 408 and the connection is closed. Requests are read by each
    worker's event loop, so a slow or stalled client holds no request thread meanwhile.
    Also bounds each socket read or write of a request thread."""

    request_buffer_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    """Most bytes of requests a worker holds in memory, from their first byte until
    their response is sent. Past it, requests over 64 KiB wait unread until memory
    frees (or time out with 408); smaller ones are always read. Raised to fit at least
    one request of `WATCHKEEPER_MAX_REQUEST_BYTES`."""

    max_batch_size: int = Field(default=10_000, ge=1)
    """Most instances accepted in one `/predict` batch; more get 413."""

    log_enabled: bool = True
    """Record requests and predictions in the prediction log. Off only for benchmarks."""

    ood_in_response: bool = True
    """Score every prediction's out-of-distribution distance in the serving worker (the
    monitor's score, on the version's reference), return it as `"ood": {"score",
    "flag"}` and store it in the log. Off: `"ood": null`, and the monitor scores the
    rows later. Scoring takes ~20 µs of CPU for one record, ~0.14 ms for 1,000: 1–3 %
    of a request's CPU (bench/README.md)."""

    log_batch_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Most journaled bytes the background writer stores in one transaction. Bounds the
    writer's memory whatever the request size."""

    log_flush_interval: float = Field(default=0.2, gt=0)
    """Seconds the writer waits for new journal entries when it has caught up. Also how
    often it flushes the journal to disk: what a power loss can lose at most."""

    log_journal_max_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024 * 1024)
    """Most bytes of entries each serving worker may hold in its journal while they wait
    for the database. Past it, `/predict` and `/feedback` answer 503 (`log_unavailable`)
    until the writer catches up: the server never answers what it cannot log. Size the
    disk of `WATCHKEEPER_SPILL_DIR` for workers × this."""

    log_segment_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Size at which a worker starts a new journal segment file; consumed segments are
    deleted."""

    log_probe_interval: float = Field(default=2.0, gt=0)
    """Longest pause between the writer's retries while the database is unavailable
    (retries start at 50 ms and double), and between readiness checks of the database
    schema."""

    log_body_limit: int = Field(default=65_536, ge=0)
    """Bytes of a rejected request's body kept in the log for diagnosis."""

    retention_days: float = Field(default=30.0, ge=0)
    """Days the log keeps requests and unlabelled predictions (0: for ever). Make it
    longer than labels take to arrive: a label for a deleted prediction is an orphan.
    Predictions the monitor has not read yet are never deleted."""

    retention_labelled_days: float = Field(default=0.0, ge=0)
    """Days a labelled prediction (one with feedback), its request and its label are
    kept, counted from the label's arrival. Never less than
    `WATCHKEEPER_RETRAIN_WINDOW_DAYS` (retraining reads them) nor
    `WATCHKEEPER_RETENTION_DAYS`; 0 means exactly that."""

    retention_history_days: float = Field(default=730.0, ge=0)
    """Days window results and finished retraining requests and runs are kept (0: for
    ever). Model versions live in the registry and are never pruned."""

    retention_batch_rows: int = Field(default=5000, ge=1)
    """Rows a prune deletes per transaction. It then pauses as long as the batch took,
    so the log's writers wait at most one batch."""

    retention_archive: str = ""
    """Before a prune deletes predictions, write them (with label and features as typed
    columns) to a Parquet dataset here, by day: a local directory or an fsspec URL
    (`s3://bucket/prefix`, with its filesystem package installed). Empty: no archive."""

    retention_prune_interval: float = Field(default=3600.0, ge=0)
    """Seconds between the monitor's prunes of the log (`watchkeeper db prune`); 0
    turns them off (prune from a scheduled job instead)."""

    trusted_types: Annotated[tuple[str, ...], NoDecode] = ()
    """Extra fully qualified type names a model artifact may contain (comma separated),
    beyond scikit-learn's defaults and Watchkeeper's own encoder."""

    admin_token: SecretStr | None = None
    """Bearer token required by `/admin/*` and `/alerts`. Unset disables them (403)."""

    model_poll_seconds: float = Field(default=2.0, gt=0)
    """How often each serving worker checks the registry's current pointer and hot-swaps
    to a new version."""

    alert_people_url: str = "http://127.0.0.1:9095/notify"
    """Webhook that notifies people (chat bridge, paging service) in the generated
    Alertmanager config."""

    alert_retrain_url: str = "http://127.0.0.1:8000/alerts"
    """The prediction server's `/alerts` endpoint as Alertmanager reaches it."""

    alert_token_file: str = "/etc/watchkeeper/admin-token"
    """File holding `WATCHKEEPER_ADMIN_TOKEN`, read by Alertmanager to call `/alerts`."""

    alert_runbook_url: str = "https://watchkeeper.example/docs/runbook.md"
    """Absolute URL where people read `docs/runbook.md`; every alert's `runbook_url`
    links to a section of it. The default is a placeholder: set it to where your copy is
    served (your repository's web view of the file, an internal wiki)."""

    metrics_namespace: str = ""
    """Namespace every generated rule and dashboard query selects (`namespace` label).
    Empty: no namespace selector (one host); aggregations keep `namespace` either way,
    so releases in different namespaces of one Prometheus never mix."""

    dashboard_target_unit: str = "currencyUSD"
    """Grafana unit of the model's target, for MAE, RMSE and predicted-value panels."""

    grafana_url: str = "http://127.0.0.1:3000"
    """Grafana that `watchkeeper grafana provision` configures."""

    grafana_token: SecretStr | None = None
    """Grafana service-account token with Editor rights (folders, dashboards) and data
    source permissions."""

    grafana_prometheus_url: str = "http://127.0.0.1:9090"
    """Prometheus as Grafana reaches it, for the provisioned data source."""

    run_prometheus_port: int = Field(default=9090, ge=0, le=65535)
    """Port of the Prometheus that `make run` starts (UI and API)."""

    run_alertmanager_port: int = Field(default=9093, ge=0, le=65535)
    """Port of the Alertmanager that `make run` starts. `make run` also receives the
    people's notifications itself at `WATCHKEEPER_ALERT_PEOPLE_URL` when that is on this
    host, writing one line per alert state change to `<data_dir>/notifications.log`, and
    starts Grafana (`grafana-server`) at `WATCHKEEPER_GRAFANA_URL` where it is installed."""

    run_scrape_interval: float = Field(default=15.0, gt=0)
    """Seconds between the scrapes and rule evaluations of the Prometheus `make run` starts."""

    retrain_alert_names: Annotated[tuple[str, ...], NoDecode] = (
        "WatchkeeperDatasetDriftSustained",
        "WatchkeeperAccuracyDegraded",
        "WatchkeeperClassifierAccuracyDegraded",
    )
    """Alert names (comma separated) whose firing notifications on `/alerts` request a
    retrain; other alerts are acknowledged and ignored."""

    prediction_buckets: Annotated[tuple[float, ...], NoDecode] = ()
    """Bucket bounds of `watchkeeper_prediction_value` (comma-separated). Empty: the
    quantiles of the training target recorded with the registry's oldest version, so
    that any model's predictions spread over the buckets."""

    detectors_dir: Path | None = None
    """Directory of the monitor's fitted detectors, one folder per model version. Empty
    means `<data_dir>/detectors`."""

    monitor_host: str = "127.0.0.1"
    """Address the monitor's `/metrics` and `/healthz` endpoint binds to."""

    monitor_port: int = Field(default=8001, ge=0, le=65535)
    """Port of the monitor's `/metrics` and `/healthz`."""

    monitor_interval: float = Field(default=10.0, gt=0)
    """Seconds between monitor cycles."""

    monitor_stall_seconds: float = Field(default=1800.0, gt=0)
    """A monitor cycle still running after this long counts as stuck: the monitor's
    `/healthz` fails so that the container or pod is restarted."""

    monitor_window_size: int = Field(default=500, ge=1)
    """A window closes after this many accepted predictions..."""

    monitor_window_seconds: float = Field(default=600.0, gt=0)
    """...or this many seconds after its first prediction, whichever comes first."""

    monitor_window_min_seconds: float = Field(default=0.0, ge=0)
    """A window that has reached `WATCHKEEPER_MONITOR_WINDOW_SIZE` predictions goes on
    until it spans this many seconds (at most `WATCHKEEPER_MONITOR_WINDOW_SECONDS`):
    windows of at least that many rows and seconds, whichever holds more. 0: windows by
    count alone. Set it at high traffic, where every window's fixed cost (drift tests on
    its sample, storing its results) would otherwise come many times a second: at
    20,000 predictions/s, 500-row windows are 40 a second; with 5 s, one every 5 s."""

    monitor_min_samples: int = Field(default=200, ge=1)
    """Windows with fewer predictions than this get data-quality figures but no drift
    verdict."""

    monitor_sample_rows: int = Field(default=500, ge=1)
    """The drift tests, the OOD scoring of rows logged without a score and the label-free
    estimate evaluate a uniform random sample of at most this many rows of each window
    (seeded by the window's id); counts and data-quality rates cover every row. 500 is
    the size at which the drift tests' level (5 %) and power were measured; larger
    samples make KS flag differences too small to matter. Keep it at least
    `WATCHKEEPER_MONITOR_MIN_SAMPLES`, or sampled windows get no drift verdict."""

    monitor_settle_seconds: float = Field(default=5.0, ge=0)
    """Rows are read only up to the log's high mark seen this long ago, so that a
    transaction still committing (several writers on PostgreSQL) is never skipped."""

    monitor_min_labels: int = Field(default=50, ge=1)
    """Labels needed before the monitor reports a model version's rolling accuracy (a
    window's accuracy is stored from its first label, with the count beside it)."""

    monitor_accuracy_labels: int = Field(default=1000, ge=2)
    """The rolling accuracy figure covers this many of the most recently predicted
    labelled predictions of a model version."""

    feedback_orphan_seconds: float = Field(default=86400.0, ge=0)
    """A label whose prediction is still not in the log this long after it arrived is
    counted as an orphan (``watchkeeper_monitor_feedback_orphans_total``)."""

    trigger_drift_windows: int = Field(default=3, ge=1)
    """Retrain when this many consecutive windows show dataset drift..."""

    trigger_ood_fraction: float = Field(default=0.1, gt=0, le=1)
    """...or a window's out-of-distribution fraction exceeds this..."""

    trigger_mae_degradation: float = Field(default=0.25, ge=0)
    """...or MAE from feedback exceeds the model's validation MAE by this fraction, with
    confidence ``trigger_accuracy_confidence``..."""

    trigger_accuracy_confidence: float = Field(default=0.99, gt=0.5, lt=1)
    """...that is, the one-sided lower confidence bound of the rolling MAE at this level
    (Student t over the labels' absolute errors) exceeds the limit: a point MAE over a
    few dozen labels is not evidence enough to retrain."""

    trigger_accuracy_drop: float = Field(default=0.05, ge=0, lt=1)
    """...or, for a classifier, the rolling accuracy from feedback is below the model's
    validation accuracy minus this (absolute: 0.05 is five points) with confidence
    ``trigger_accuracy_confidence``: the one-sided Wilson upper bound of the accuracy
    must fall below the limit, not just the point figure..."""

    trigger_cooldown_seconds: float = Field(default=3600.0, ge=0)
    """After a retrain request, no other for the same model version for this long."""

    retrain_window_days: float = Field(default=365.0, gt=0)
    """Labelled predictions whose feedback arrived within this many days join the
    original training data in a retraining job."""

    retrain_archive_days: float = Field(default=0.0, ge=0)
    """Labelled predictions in the log's archive (`WATCHKEEPER_RETENTION_ARCHIVE`) whose
    label arrived within this many days join a retraining job's training data (never its
    holdout, the database's newest labelled predictions), so training reaches past the
    log's retention. 0: off. Set without an archive, or with one that cannot be read,
    the job fails and says so."""

    retrain_holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    """Share of the newest labelled predictions held out to judge candidate and champion."""

    retrain_min_holdout: int = Field(default=50, ge=1)
    """A job fails with a clear reason when the holdout would be smaller than this."""

    retrain_margin: float = Field(default=0.02, ge=0, lt=1)
    """Promote only when the candidate's holdout MAE is below the champion's by this fraction."""

    retrain_min_coverage: float = Field(default=0.8, ge=0, le=1)
    """A candidate's interval coverage on the holdout should be at least this..."""

    retrain_max_coverage: float = Field(default=0.98, ge=0, le=1)
    """...and at most this (a too-wide interval is no use either). Outside this band a
    candidate is still promoted when its coverage is no further from the band than the
    champion's on the same holdout (under drift neither may reach it)."""

    retrain_lease_seconds: float = Field(default=3600.0, gt=0)
    """How long a job's single-flight lease lasts unrenewed: a running job renews it every
    third of this, so no second job joins it; a crashed job's lease is taken over after it."""

    retrain_poll_seconds: float = Field(default=10.0, gt=0)
    """Seconds between the retraining worker's checks for pending requests."""

    retrain_host: str = "127.0.0.1"
    """Address the retraining worker's `/metrics` and `/healthz` endpoint binds to."""

    retrain_port: int = Field(default=8002, ge=0, le=65535)
    """Port of the retraining worker's `/metrics` and `/healthz`."""

    drift_p_value: float = Field(default=0.05, gt=0, lt=1)
    """Significance level of the drift tests."""

    drift_correction: str = Field(default="bonferroni", pattern="^(bonferroni|fdr)$")
    """Multiple-testing correction of the per-feature drift tests: `bonferroni` or `fdr`."""

    drift_multivariate: bool = True
    """Run the multivariate (classifier) drift test: one small classifier on at most 1,000
    reference and 1,000 window rows, ~0.1 s of CPU per window."""

    ood_percentile: float = Field(default=99.0, gt=0, lt=100)
    """Percentile of reference OOD scores used as the out-of-distribution threshold."""

    @field_validator("prediction_buckets", mode="before")
    @classmethod
    def _parse_buckets(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return tuple(sorted(float(part) for part in value.split(",") if part.strip()))
            except ValueError as exc:
                raise ValueError(f"must be comma-separated numbers: {value!r}") from exc
        return value

    @field_validator("trusted_types", "retrain_alert_names", mode="before")
    @classmethod
    def _parse_names(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("alert_runbook_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        # a notification is read far from the repository: a relative link opens nothing
        if not re.match(r"^[a-z][a-z0-9+.-]*://[^/]", value):
            raise ValueError(f"must be an absolute URL: {value!r}")
        return value

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        derived = {
            "registry_path": self.data_dir / "registry",
            "spill_dir": self.data_dir / "spill",
            "prometheus_multiproc_dir": self.data_dir / "prometheus-multiproc",
            "detectors_dir": self.data_dir / "detectors",
        }
        for name, default in derived.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        if not self.database_url:
            object.__setattr__(
                self, "database_url", f"sqlite:///{self.data_dir / 'watchkeeper.db'}"
            )
        return self

    @property
    def registry_dir(self) -> Path:
        assert self.registry_path is not None
        return self.registry_path

    @property
    def spill_path(self) -> Path:
        assert self.spill_dir is not None
        return self.spill_dir

    @property
    def detectors_path(self) -> Path:
        assert self.detectors_dir is not None
        return self.detectors_dir

    @property
    def multiproc_dir(self) -> Path:
        assert self.prometheus_multiproc_dir is not None
        return self.prometheus_multiproc_dir


_URL_PASSWORD = re.compile(r"^([^:/?#]+://[^:/@?#]*:)[^@]*(@)")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with its password, in the user part or a ``password=`` query
    parameter, replaced by ``***`` (for printing settings and error messages)."""
    return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***\2", url))


def settings_table() -> str:
    """The README's configuration table, in Markdown, from the field docstrings."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, tuple):
            default = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
        elif default is None or default == "":
            default = "(derived)" if name.endswith(("_dir", "_path", "_url")) else "(unset)"
        description = " ".join((field.description or "").split())
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | `{default}` | {description} |")
    return "\n".join(rows)
