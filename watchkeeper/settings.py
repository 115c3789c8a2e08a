"""The settings, one group per component, read from ``WATCHKEEPER_*`` environment variables.

Every process (serving, monitor, retraining, the CLI) builds one :class:`Settings` from
its environment. It holds a group per component (``settings.storage``,
``settings.serving``, ``settings.log``, ``settings.monitor``, ``settings.retrain``…),
each a pydantic-settings class of its own, so that code which needs one component's
settings takes that group alone. A setting's variable is ``WATCHKEEPER_`` followed by
its group's prefix and its name in the group (``settings.monitor.interval`` is
``WATCHKEEPER_MONITOR_INTERVAL``); a few settings that sit in a group of another prefix
name their variable themselves (``settings.drift.ood_percentile`` is
``WATCHKEEPER_OOD_PERCENTILE``).

In code, a setting is also known by its *flat name*: its variable without the prefix,
in lower case (``monitor_interval``). ``Settings(monitor_interval=0.5)`` and
``settings.replace(monitor_interval=0.5)`` take flat names, the Helm chart's
``settings:`` and ``watchkeeper settings`` use them.

The README's configuration table is generated from the field docstrings below
(``watchkeeper settings --markdown``) and a test keeps the two equal.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AliasGenerator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from watchkeeper.db.prediction_seq import ITEMS_PER_REQUEST

ENV_PREFIX = "WATCHKEEPER_"


def variable(flat_name: str) -> str:
    """The environment variable of the setting whose flat name is ``flat_name``."""
    return f"{ENV_PREFIX}{flat_name.upper()}"


def variables(prefix: str) -> AliasGenerator:
    """A group's variable names: ``WATCHKEEPER_`` + ``prefix`` + the field's name."""
    return AliasGenerator(validation_alias=lambda name: variable(prefix + name))


def _comma_separated(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


# Every number is finite and has a ceiling, by kind. `inf`, or 1e10 as a socket timeout,
# was accepted and broke a process far from its variable (every request a 500, a thread
# dying on each use, a loop's OverflowError naming no setting); refused here, the command
# that starts names the variable.
DAY_SECONDS = 86_400
MAX_WAIT_SECONDS = DAY_SECONDS
MAX_SPAN_SECONDS = 366 * DAY_SECONDS
MAX_DAYS = 36_525  # a hundred years
MAX_CONCURRENCY = 1024
MAX_BYTES = 2**40  # 1 TiB
MAX_COUNT = 100_000_000
MAX_RATIO = 1000

WaitSeconds = Annotated[float, Field(le=MAX_WAIT_SECONDS)]
"""A timeout, or the pause of a loop between its checks (a thread or socket waits on it)."""
WholeWaitSeconds = Annotated[int, Field(le=MAX_WAIT_SECONDS)]
SpanSeconds = Annotated[float, Field(le=MAX_SPAN_SECONDS)]
"""A span of time compared with clocks: a window, a lease, a cooldown, a prune's period."""
Days = Annotated[float, Field(le=MAX_DAYS)]
Concurrency = Annotated[int, Field(le=MAX_CONCURRENCY)]
"""Processes or threads of one kind."""
Bytes = Annotated[int, Field(le=MAX_BYTES)]
Count = Annotated[int, Field(le=MAX_COUNT)]
"""Rows, labels or windows."""
Ratio = Annotated[float, Field(le=MAX_RATIO)]
"""A multiple of a measured figure."""


def _bindable_host(value: str) -> str:
    # gunicorn binds ":PORT", every interface, for an empty host: never what "unset" meant
    if not value.strip():
        raise ValueError(
            "must name an address to listen on (127.0.0.1 for this host alone, "
            "0.0.0.0 for every interface), not be empty"
        )
    # an IPv6 literal as a URL writes it ("[::1]"): the address itself, which binding
    # and the URLs built from it (bracketed again) take
    if value.startswith("[") and value.endswith("]"):
        return value[1:-1]
    return value


Host = Annotated[str, AfterValidator(_bindable_host)]
"""An address a server listens on."""


def bounds_note() -> str:
    """The README's paragraph on the ceilings of the numeric settings."""
    return (
        "**Bounds.** Every number must be finite, and is at most: "
        f"{MAX_WAIT_SECONDS:,} (a day) for a timeout or the pause of a loop between its "
        f"checks in seconds; {MAX_SPAN_SECONDS:,} (366 days) for other spans in seconds "
        f"(windows, stalls, leases, cooldowns, the prunes' period); {MAX_DAYS:,} for days; "
        f"{MAX_CONCURRENCY:,} for processes or threads (`WATCHKEEPER_WORKERS`, "
        "`WATCHKEEPER_THREADS`, `WATCHKEEPER_NUMERIC_THREADS`); "
        f"{MAX_BYTES:,} (1 TiB) for bytes; {MAX_COUNT:,} for counts of rows, labels or "
        f"windows; {MAX_RATIO:,} for `WATCHKEEPER_TRIGGER_MAE_DEGRADATION`. Fractions, "
        "percentiles and ports have the range their meaning gives. A value out of range "
        "stops every command at start with one line naming its variable."
    )


class SettingsGroup(BaseSettings):
    """One component's settings. Each field is read from the variable its validation
    alias names (set by the group's ``variables(prefix)``, or on the field); in code it
    is passed by its name in the group."""

    model_config = SettingsConfigDict(
        allow_inf_nan=False,
        use_attribute_docstrings=True,
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
    )


# A path left unset, or set empty, lies under the data directory.
_UNDER_DATA_DIR = {
    "registry_path": "registry",
    "spill_dir": "spill",
    "prometheus_multiproc_dir": "prometheus-multiproc",
    "detectors_dir": "detectors",
}


def _under_data_dir(name: str) -> Callable[[dict[str, Any]], Path]:
    def derive(data: dict[str, Any]) -> Path:
        return Path(data["data_dir"]) / _UNDER_DATA_DIR[name]

    return derive


class StorageSettings(SettingsGroup):
    """Where every process keeps its state: the database, the model registry, the
    log's journal, the monitor's detectors; and which types a model artifact may hold."""

    model_config = SettingsConfigDict(alias_generator=variables(""))

    data_dir: Path = Path("var")
    """Directory for embedded state: the SQLite database, model registry, log journal
    and Prometheus multiprocess files, unless each is set on its own."""

    database_url: str = Field(default="", validate_default=True)
    """SQLAlchemy URL of the prediction log. Empty means SQLite at
    `<data_dir>/watchkeeper.db`; use `postgresql+psycopg://user:pass@host/db` in production."""

    registry_path: Path = Field(default_factory=_under_data_dir("registry_path"))
    """Directory of the model registry. Empty means `<data_dir>/registry`."""

    spill_dir: Path = Field(default_factory=_under_data_dir("spill_dir"))
    """Directory of the prediction log's journal: every logged request is appended here
    before it is answered, and moved to the database in the background; entries that
    cannot be stored are kept in `deadletter-*.jsonl` files. Empty means
    `<data_dir>/spill`. Must be durable storage on a local filesystem of the server."""

    prometheus_multiproc_dir: Path = Field(
        default_factory=_under_data_dir("prometheus_multiproc_dir")
    )
    """Directory for prometheus-client's multiprocess files under gunicorn; wiped at
    server start, so one server at a time: a second `serve` on it is refused. Empty
    means `<data_dir>/prometheus-multiproc`."""

    detectors_dir: Path = Field(default_factory=_under_data_dir("detectors_dir"))
    """Directory of the monitor's fitted detectors, one folder per model version. Empty
    means `<data_dir>/detectors`."""

    auto_migrate: bool = True
    """Apply pending database migrations when `watchkeeper serve` starts, or, if
    PostgreSQL does not answer then, in each worker's log writer once it does. Turn off
    where a deployment step runs `watchkeeper db upgrade` (the Helm hook does)."""

    trusted_types: Annotated[tuple[str, ...], NoDecode] = ()
    """Extra fully qualified type names a model artifact may contain (comma separated),
    beyond scikit-learn's defaults and Watchkeeper's own encoder."""

    @field_validator(*_UNDER_DATA_DIR, mode="before")
    @classmethod
    def _empty_path_under_data_dir(cls, value: object, info: ValidationInfo) -> object:
        if value == "" and "data_dir" in info.data:
            return _under_data_dir(str(info.field_name))(info.data)
        return value

    @field_validator("database_url")
    @classmethod
    def _empty_url_is_sqlite(cls, value: str, info: ValidationInfo) -> str:
        if not value and "data_dir" in info.data:
            return f"sqlite:///{Path(info.data['data_dir']) / 'watchkeeper.db'}"
        return value

    _parse_names = field_validator("trusted_types", mode="before")(_comma_separated)


class ProcessSettings(SettingsGroup):
    """How each process, whatever its command, uses the machine's cores."""

    model_config = SettingsConfigDict(alias_generator=variables(""))

    numeric_threads: Concurrency = Field(default=1, ge=1)
    """Threads each process's numeric libraries may use (OpenMP, BLAS): every command
    sets `OMP_NUM_THREADS`, `OPENBLAS_NUM_THREADS`, `MKL_NUM_THREADS` and the like from
    this, overriding them. One per process keeps several processes (serving workers,
    monitor, retraining) from oversubscribing the cores; raise it only for a process alone
    on its cores."""


class ServingSettings(SettingsGroup):
    """The prediction server (`watchkeeper serve`): listening, gunicorn processes,
    request limits, the model it serves and its admin endpoints."""

    model_config = SettingsConfigDict(alias_generator=variables(""))

    host: Host = "127.0.0.1"
    """Address the prediction server binds to."""

    port: int = Field(default=8000, ge=0, le=65535)
    """Port the prediction server binds to."""

    workers: Concurrency = Field(default=2, ge=1)
    """Gunicorn worker processes."""

    threads: Concurrency = Field(default=4, ge=1)
    """Threads per gunicorn worker (gthread worker class)."""

    worker_timeout: WholeWaitSeconds = Field(default=30, ge=1)
    """Seconds a gunicorn worker may be silent before it is restarted."""

    graceful_timeout: WholeWaitSeconds = Field(default=30, ge=1)
    """Seconds a worker has on SIGTERM to finish requests and drain the log queue."""

    request_database_timeout: WaitSeconds = Field(default=5.0, gt=0)
    """Seconds `/feedback`, `/admin/retrain` and `/alerts` may wait for PostgreSQL
    (through psycopg) before their connection is cut and they answer 503
    `database_unavailable`: a frozen server held them as long as it stayed frozen. At
    most half of a worker's `WATCHKEEPER_THREADS` (at least one) wait for the database at
    once; a request beyond them is answered 503 at once, so `/predict` and the probes
    always find a thread. Work cut off while it committed may have been stored; a retry
    is safe. On SQLite it is how long they wait for another process's write lock (its
    busy timeout) before the same 503."""

    max_request_bytes: Bytes = Field(default=16 * 1024 * 1024, ge=1024)
    """Largest accepted request body in bytes; larger bodies get 413."""

    request_read_timeout: WaitSeconds = Field(default=30.0, gt=0)
    """Seconds a client has, from its first byte, to send a whole request (headers and
    body); then it gets 408 and the connection is closed. Requests are read by each
    worker's event loop, so a slow or stalled client holds no request thread meanwhile.
    Also bounds each socket read or write of a request thread."""

    request_buffer_bytes: Bytes = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    """Most bytes of requests a worker holds in memory, from their first byte until
    their response is sent. Past it, requests over 64 KiB wait unread until memory
    frees (or time out with 408); smaller ones are always read. Raised to fit at least
    one request of `WATCHKEEPER_MAX_REQUEST_BYTES`."""

    max_batch_size: int = Field(default=10_000, ge=1, lt=ITEMS_PER_REQUEST)
    """Most instances accepted in one `/predict` batch; more get 413. Below 1,048,576:
    the log numbers a request's predictions within that range."""

    ood_in_response: bool = True
    """Score every prediction's out-of-distribution distance in the serving worker (the
    monitor's score, on the version's reference), return it as `"ood": {"score",
    "flag"}` and store it in the log. Off: `"ood": null`, and the monitor scores the
    rows later. Scoring takes ~20 µs of CPU for one record, ~0.14 ms for 1,000: 1–3 %
    of a request's CPU (bench/README.md)."""

    model_poll_seconds: WaitSeconds = Field(default=2.0, gt=0)
    """How often each serving worker checks the registry's current pointer and hot-swaps
    to a new version."""

    admin_token: SecretStr | None = None
    """Bearer token required by `/admin/*` and `/alerts`. Unset disables them (403)."""

    prediction_buckets: Annotated[tuple[float, ...], NoDecode] = ()
    """Bucket bounds of `watchkeeper_prediction_value` (comma-separated). Empty: the
    quantiles of the training target recorded with the registry's oldest version, so
    that any model's predictions spread over the buckets."""

    @field_validator("prediction_buckets", mode="before")
    @classmethod
    def _parse_buckets(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return tuple(sorted(float(part) for part in value.split(",") if part.strip()))
            except ValueError as exc:
                raise ValueError(f"must be comma-separated numbers: {value!r}") from exc
        return value


class LogSettings(SettingsGroup):
    """The prediction log's journal and its background writer in each serving worker."""

    model_config = SettingsConfigDict(alias_generator=variables("log_"))

    enabled: bool = True
    """Record requests and predictions in the prediction log. Off only for benchmarks."""

    batch_bytes: Bytes = Field(default=4 * 1024 * 1024, ge=1024)
    """Most journaled bytes the background writer stores in one transaction. Bounds the
    writer's memory whatever the request size."""

    flush_interval: WaitSeconds = Field(default=0.2, gt=0)
    """Seconds between flushes of each worker's journal to disk (`fdatasync`, when
    something was appended): what a power loss can lose at most."""

    write_interval: WaitSeconds = Field(default=0.5, gt=0)
    """Seconds the writer waits for new journal entries when it has caught up, before
    its next transaction (a shutdown wakes it at once): how long an entry waits for
    the database at most, a transaction aside. A transaction costs about as much
    whatever it holds: at single-record rates 0.5 s instead of 0.2 s took the writer
    from ~57 to ~45 µs of CPU a request."""

    journal_max_bytes: Bytes = Field(default=1024 * 1024 * 1024, ge=1024 * 1024)
    """Most bytes each serving worker's journal may take on disk while its entries wait
    for the database, less what journals of ended processes (a killed or reloaded
    worker's, a predecessor's) and the other workers' take beyond the others' share:
    the journals never take more than workers × this in all, however often workers
    restart. Past it, `/predict` and `/feedback`
    answer 503 (`log_unavailable`) until the writer catches up: the server never answers
    what it cannot log. Size the disk of `WATCHKEEPER_SPILL_DIR` for workers × this,
    plus `WATCHKEEPER_LOG_DEAD_LETTER_MAX_BYTES`."""

    dead_letter_max_bytes: Bytes = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    """Most bytes the dead-letter files (entries the database refuses even alone) may
    take in `WATCHKEEPER_SPILL_DIR`, all workers' together; the last one written may
    pass it by one batch's refused entries. At the limit, a writer keeps the entries
    it cannot store in its journal and retries them, so a database that refuses every
    entry fills the journals (and `/predict` answers 503) rather than the disk. Move
    the files away once inspected to make room."""

    segment_bytes: Bytes = Field(default=64 * 1024 * 1024, ge=1024)
    """Size at which a worker starts a new journal segment file (at most a quarter of
    `WATCHKEEPER_LOG_JOURNAL_MAX_BYTES`); consumed segments are deleted, and the one
    being appended to as well once consumed when its disk is short of room."""

    probe_interval: WaitSeconds = Field(default=2.0, gt=0)
    """Longest pause between the writer's retries while the database is unavailable
    (retries start at 50 ms and double), between its retries of an entry that waits for
    dead-letter room, and between readiness checks of the database schema."""

    body_limit: Bytes = Field(default=65_536, ge=0)
    """Bytes of a rejected request's body kept in the log for diagnosis."""


class RetentionSettings(SettingsGroup):
    """How long the prediction log keeps what (`watchkeeper db prune`, and the
    monitor's periodic prunes)."""

    model_config = SettingsConfigDict(alias_generator=variables("retention_"))

    days: Days = Field(default=30.0, ge=0)
    """Days the log keeps requests and unlabelled predictions (0: for ever). Make it
    longer than labels take to arrive: a label for a deleted prediction is an orphan.
    Predictions the monitor has not read yet are never deleted."""

    labelled_days: Days = Field(default=0.0, ge=0)
    """Days a labelled prediction (one with feedback), its request and its label are
    kept, counted from the label's arrival. Never less than
    `WATCHKEEPER_RETRAIN_WINDOW_DAYS` (retraining reads them) nor
    `WATCHKEEPER_RETENTION_DAYS`; 0 means exactly that."""

    history_days: Days = Field(default=730.0, ge=0)
    """Days window results and finished retraining requests and runs are kept (0: for
    ever). Model versions live in the registry and are never pruned."""

    batch_rows: Count = Field(default=5000, ge=1)
    """Rows a prune deletes per transaction. It then pauses as long as the batch took,
    so the log's writers wait at most one batch."""

    archive: str = ""
    """Before a prune deletes predictions, write them (with label and features as typed
    columns) to a Parquet dataset here, by day: a local directory or an fsspec URL
    (`s3://bucket/prefix`, with its filesystem package installed). Empty: no archive.
    `memory://`, which the process would take with it, and unknown protocols are refused."""

    @field_validator("archive")
    @classmethod
    def _lasting_filesystem(cls, value: str) -> str:
        # Known before a prune deletes rows it archived: an archive in the process's
        # memory goes with the process, and a misspelt protocol fails only then.
        if value:
            from fsspec.registry import known_implementations, registry

            for part in value.split("::"):
                protocol, _, rest = part.partition("://")
                if not rest and "://" not in part:
                    continue  # a local path
                if protocol == "memory":
                    raise ValueError(
                        "memory:// keeps the archive in the process's memory, lost when"
                        " it exits with the rows it took: give a directory or a lasting store"
                    )
                if protocol not in known_implementations and protocol not in registry:
                    raise ValueError(f"unknown filesystem {protocol!r} in {value!r}")
        return value

    prune_interval: SpanSeconds = Field(default=3600.0, ge=0)
    """Seconds between the monitor's prunes of the log (`watchkeeper db prune`); 0
    turns them off (prune from a scheduled job instead)."""


class MonitorSettings(SettingsGroup):
    """The monitor (`watchkeeper monitor`): its endpoint, cycles and windows."""

    model_config = SettingsConfigDict(alias_generator=variables("monitor_"))

    host: Host = "127.0.0.1"
    """Address the monitor's `/metrics` and `/healthz` endpoint binds to."""

    port: int = Field(default=8001, ge=0, le=65535)
    """Port of the monitor's `/metrics` and `/healthz`."""

    interval: WaitSeconds = Field(default=10.0, gt=0)
    """Seconds between monitor cycles."""

    stall_seconds: SpanSeconds = Field(default=1800.0, gt=0)
    """A monitor cycle that has stored no window for this long counts as stuck (a long
    catch-up that stores window after window is progress): the monitor's
    `/healthz` fails so that the container or pod is restarted."""

    window_size: Count = Field(default=500, ge=1)
    """A window closes after this many accepted predictions..."""

    window_seconds: SpanSeconds = Field(default=600.0, gt=0)
    """...or this many seconds after its first prediction, whichever comes first."""

    window_min_seconds: SpanSeconds = Field(default=0.0, ge=0)
    """A window that has reached `WATCHKEEPER_MONITOR_WINDOW_SIZE` predictions goes on
    until it spans this many seconds (at most `WATCHKEEPER_MONITOR_WINDOW_SECONDS`):
    windows of at least that many rows and seconds, whichever holds more. 0: windows by
    count alone. Set it at high traffic, where every window's fixed cost (drift tests on
    its sample, storing its results) would otherwise come many times a second: at
    20,000 predictions/s, 500-row windows are 40 a second; with 5 s, one every 5 s."""

    min_samples: Count = Field(default=200, ge=1)
    """Windows with fewer predictions than this get data-quality figures but no drift
    verdict."""

    sample_rows: Count = Field(default=500, ge=1)
    """The drift tests, the OOD scoring of rows logged without a score and the label-free
    estimate evaluate a uniform random sample of at most this many rows of each window
    (seeded by the window's id); counts and data-quality rates cover every row. 500 is
    the size at which the drift tests' level (5 %) and power were measured; larger
    samples make KS flag differences too small to matter. Keep it at least
    `WATCHKEEPER_MONITOR_MIN_SAMPLES`, or sampled windows get no drift verdict."""

    settle_seconds: WaitSeconds = Field(default=5.0, ge=0)
    """Rows are read only up to the log's high mark seen this long ago, so that a
    transaction still committing (several writers on PostgreSQL) is never skipped."""

    min_labels: Count = Field(default=50, ge=1)
    """Labels needed before the monitor reports a model version's rolling accuracy (a
    window's accuracy is stored from its first label, with the count beside it)."""

    accuracy_labels: Count = Field(default=1000, ge=2)
    """The rolling accuracy figure covers this many of the most recently predicted
    labelled predictions of a model version."""

    feedback_orphan_seconds: SpanSeconds = Field(
        default=86400.0, ge=0, validation_alias=variable("feedback_orphan_seconds")
    )
    """A label whose prediction is still not in the log this long after it arrived is
    counted as an orphan (``watchkeeper_monitor_feedback_orphans_total``)."""

    replaced_accuracy_seconds: SpanSeconds = Field(default=86400.0, ge=0)
    """A model version no longer served keeps its rolling accuracy exported (`_mae`,
    `_interval_coverage`, `_labels`, … and its estimate's error) until this long after
    its last new labels: labels of its predictions come late and still tell how it did,
    but no alert should page for ever about a model no longer served. 0: the served
    version's only."""


class DriftSettings(SettingsGroup):
    """The monitor's detectors: drift tests and the out-of-distribution threshold
    (serving scores OOD with the same threshold)."""

    model_config = SettingsConfigDict(alias_generator=variables("drift_"))

    p_value: float = Field(default=0.05, gt=0, lt=1)
    """Significance level of the drift tests."""

    correction: str = Field(default="bonferroni", pattern="^(bonferroni|fdr)$")
    """Multiple-testing correction of the per-feature drift tests: `bonferroni` or `fdr`."""

    multivariate: bool = True
    """Run the multivariate (classifier) drift test: one small classifier on at most 1,000
    reference and 1,000 window rows, ~0.1 s of CPU per window."""

    ood_percentile: float = Field(
        default=99.0, gt=0, lt=100, validation_alias=variable("ood_percentile")
    )
    """Percentile of reference OOD scores used as the out-of-distribution threshold."""


class TriggerSettings(SettingsGroup):
    """When the monitor requests a retrain; the alert rules and dashboards take
    the same thresholds."""

    model_config = SettingsConfigDict(alias_generator=variables("trigger_"))

    drift_windows: Count = Field(default=3, ge=1)
    """Retrain when this many consecutive windows show dataset drift..."""

    ood_fraction: float = Field(default=0.1, gt=0, le=1)
    """...or a window's out-of-distribution fraction exceeds this..."""

    mae_degradation: Ratio = Field(default=0.25, ge=0)
    """...or MAE from feedback exceeds the model's validation MAE by this fraction, with
    confidence ``trigger_accuracy_confidence``..."""

    accuracy_confidence: float = Field(default=0.99, gt=0.5, lt=1)
    """...that is, the one-sided lower confidence bound of the rolling MAE at this level
    (Student t over the labels' absolute errors) exceeds the limit: a point MAE over a
    few dozen labels is not evidence enough to retrain."""

    accuracy_drop: float = Field(default=0.05, ge=0, lt=1)
    """...or, for a classifier, the rolling accuracy from feedback is below the model's
    validation accuracy minus this (absolute: 0.05 is five points) with confidence
    ``trigger_accuracy_confidence``: the one-sided Wilson upper bound of the accuracy
    must fall below the limit, not just the point figure..."""

    cooldown_seconds: SpanSeconds = Field(default=3600.0, ge=0)
    """After a retrain request, no other for the same model version for this long."""


class RetrainSettings(SettingsGroup):
    """Retraining jobs and the retraining worker (`watchkeeper retrain`): training
    data, the promotion gate, the worker's endpoint."""

    model_config = SettingsConfigDict(alias_generator=variables("retrain_"))

    window_days: Days = Field(default=365.0, gt=0)
    """Labelled predictions whose feedback arrived within this many days join the
    original training data in a retraining job."""

    archive_days: Days = Field(default=0.0, ge=0)
    """Labelled predictions in the log's archive (`WATCHKEEPER_RETENTION_ARCHIVE`) whose
    label arrived within this many days join a retraining job's training data (never its
    holdout, the database's newest labelled predictions), so training reaches past the
    log's retention. 0: off. Set without an archive, or with one that cannot be read,
    the job fails and says so."""

    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    """Share of the newest labelled predictions held out to judge candidate and champion."""

    min_holdout: Count = Field(default=50, ge=1)
    """A job fails with a clear reason when the holdout would be smaller than this."""

    margin: float = Field(default=0.02, ge=0, lt=1)
    """Promote only when the candidate's holdout MAE is below the champion's by this fraction."""

    min_coverage: float = Field(default=0.8, ge=0, le=1)
    """A candidate's interval coverage on the holdout should be at least this..."""

    max_coverage: float = Field(default=0.98, ge=0, le=1)
    """...and at most this (a too-wide interval is no use either). Outside this band a
    candidate is still promoted when its coverage is no further from the band than the
    champion's on the same holdout (under drift neither may reach it)."""

    lease_seconds: SpanSeconds = Field(default=300.0, gt=0)
    """How long a job's single-flight lease lasts unrenewed: a running job renews it every
    third of this, so no second job joins it; a crashed job's lease is taken over after it,
    and the next job fails the run it left and takes its requests."""

    stall_seconds: SpanSeconds = Field(default=3600.0, gt=0)
    """A job that reports no progress for this long counts as hung: it stops renewing its
    lease (the next job recovers its run once the lease expires), its worker logs it,
    sets `watchkeeper_retrain_job_stalled` and fails `/healthz`. A job reports progress
    between its steps, not within one: set this above the longest step seen, usually
    the fit (a few seconds on the Ames data)."""

    poll_seconds: WaitSeconds = Field(default=10.0, gt=0)
    """Seconds between the retraining worker's checks for pending requests."""

    host: Host = "127.0.0.1"
    """Address the retraining worker's `/metrics` and `/healthz` endpoint binds to."""

    port: int = Field(default=8002, ge=0, le=65535)
    """Port of the retraining worker's `/metrics` and `/healthz`."""


# A Kubernetes namespace name is an RFC 1123 DNS label.
_DNS_LABEL = re.compile(r"(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class AlertingSettings(SettingsGroup):
    """The generated alert rules and Alertmanager configuration, and which alerts
    request a retrain."""

    model_config = SettingsConfigDict(alias_generator=variables("alert_"))

    people_url: str = "http://127.0.0.1:9095/notify"
    """Webhook that notifies people (chat bridge, paging service) in the generated
    Alertmanager config."""

    retrain_url: str = "http://127.0.0.1:8000/alerts"
    """The prediction server's `/alerts` endpoint as Alertmanager reaches it."""

    token_file: str = "/etc/watchkeeper/admin-token"
    """File holding `WATCHKEEPER_ADMIN_TOKEN`, read by Alertmanager to call `/alerts`."""

    runbook_url: str = "https://watchkeeper.example/docs/runbook.md"
    """Absolute URL where people read `docs/runbook.md`; every alert's `runbook_url`
    links to a section of it. The default is a placeholder: set it to where your copy is
    served (your repository's web view of the file, an internal wiki)."""

    retrain_alert_names: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(
            "WatchkeeperDatasetDriftSustained",
            "WatchkeeperAccuracyDegraded",
            "WatchkeeperClassifierAccuracyDegraded",
        ),
        validation_alias=variable("retrain_alert_names"),
    )
    """Alert names (comma separated) whose firing notifications on `/alerts` request a
    retrain; other alerts are acknowledged and ignored."""

    metrics_namespace: str = Field(default="", validation_alias=variable("metrics_namespace"))
    """Namespace every generated rule and dashboard query selects (`namespace` label): a
    Kubernetes namespace name (lower-case letters, digits, `-`; at most 63).
    Empty: no namespace selector (one host); aggregations keep `namespace` either way,
    so releases in different namespaces of one Prometheus never mix."""

    _parse_names = field_validator("retrain_alert_names", mode="before")(_comma_separated)

    @field_validator("metrics_namespace")
    @classmethod
    def _kubernetes_namespace(cls, value: str) -> str:
        # written as is into every rule's `namespace="…"` matcher: `team"a` made rules
        # promtool refuses, and Prometheus did not start on them
        if value and not _DNS_LABEL.fullmatch(value):
            raise ValueError(
                "must be empty or a Kubernetes namespace: at most 63 lower-case letters, "
                f"digits and '-', starting and ending with a letter or digit; not {value!r}"
            )
        return value

    @field_validator("runbook_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        # a notification is read far from the repository: a relative link opens nothing
        if not re.match(r"^[a-z][a-z0-9+.-]*://[^/]", value):
            raise ValueError(f"must be an absolute URL: {value!r}")
        return value


class GrafanaSettings(SettingsGroup):
    """The generated dashboards and `watchkeeper grafana provision`."""

    model_config = SettingsConfigDict(alias_generator=variables("grafana_"))

    url: str = "http://127.0.0.1:3000"
    """Grafana that `watchkeeper grafana provision` configures (an http or https URL)."""

    @field_validator("url")
    @classmethod
    def _web_address(cls, value: str) -> str:
        # `127.0.0.1:3000` (no scheme) was taken, and provisioning then failed with
        # "Invalid URL '://None/api/folders/…'"; alerts link to dashboards under it
        problem = "must be an absolute http or https URL, e.g. http://127.0.0.1:3000"
        try:
            parsed = urlsplit(value)
            parsed.port  # noqa: B018 - a port that is not a number raises here
        except ValueError as exc:
            raise ValueError(f"{problem}: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"{problem}; not {redact_url(value)!r}")
        return value

    token: SecretStr | None = None
    """Grafana service-account token with Editor rights (folders, dashboards) and data
    source permissions."""

    prometheus_url: str = "http://127.0.0.1:9090"
    """Prometheus as Grafana reaches it, for the provisioned data source."""

    dashboard_target_unit: str = Field(
        default="currencyUSD", validation_alias=variable("dashboard_target_unit")
    )
    """Grafana unit of the model's target, for MAE, RMSE and predicted-value panels."""


class RunSettings(SettingsGroup):
    """The local platform that `make run` starts (Prometheus, Alertmanager)."""

    model_config = SettingsConfigDict(alias_generator=variables("run_"))

    prometheus_port: int = Field(default=9090, ge=0, le=65535)
    """Port of the Prometheus that `make run` starts (UI and API)."""

    alertmanager_port: int = Field(default=9093, ge=0, le=65535)
    """Port of the Alertmanager that `make run` starts. `make run` also receives the
    people's notifications itself at `WATCHKEEPER_ALERT_PEOPLE_URL` when that is a
    plain-HTTP URL on this host (IPv4), writing one line per alert state change to
    `<data_dir>/notifications.log`, and starts Grafana (`grafana-server`) at
    `WATCHKEEPER_GRAFANA_URL` where it is installed and that URL is plain HTTP on this
    host (a Grafana elsewhere is used as it is)."""

    scrape_interval: WaitSeconds = Field(default=15.0, gt=0)
    """Seconds between the scrapes and rule evaluations of the Prometheus `make run` starts."""

    alert_speedup: float = Field(default=1.0, ge=1, le=3600)
    """Divides every alert rule's `for:`, and Alertmanager's group wait and group
    interval, in the Prometheus and Alertmanager `make run` starts: to see an alert's
    whole path in seconds (with the scrape interval divided alike, each waits as many
    scrapes as in production). 1 keeps production's durations."""


class Settings(BaseModel):
    """Every setting, by component. ``Settings()`` reads them all from the environment.

    Keyword arguments override the environment: a whole group by its name
    (``monitor=MonitorSettings(...)``), or single settings by their flat names, the
    names of the environment variables without ``WATCHKEEPER_`` in lower case
    (``Settings(data_dir=tmp, monitor_interval=0.5)``). An unknown name is refused.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The validator below builds every group; the factories say each may be left out.
    storage: StorageSettings = Field(default_factory=StorageSettings)
    process: ProcessSettings = Field(default_factory=ProcessSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    trigger: TriggerSettings = Field(default_factory=TriggerSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)
    alerting: AlertingSettings = Field(default_factory=AlertingSettings)
    grafana: GrafanaSettings = Field(default_factory=GrafanaSettings)
    run: RunSettings = Field(default_factory=RunSettings)

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)

    @model_validator(mode="before")
    @classmethod
    def _group_flat_names(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        grouped: dict[str, Any] = {}
        for name, value in data.items():
            if name in cls.model_fields:
                if name in grouped:
                    raise ValueError(f"{name!r} given both as a group and as single settings")
                grouped[name] = value
                continue
            if name not in SETTINGS:
                raise ValueError(
                    f"unknown setting {name!r}: settings are named as their environment "
                    f"variables without {ENV_PREFIX!r}, in lower case"
                )
            setting = SETTINGS[name]
            fields = grouped.setdefault(setting.group, {})
            if not isinstance(fields, dict):
                raise ValueError(f"{setting.group!r} given both as a group and as single settings")
            fields[setting.field] = value
        # Every group not given whole is validated here, from the fields given and the
        # environment (a group's __init__ reads it), so that pydantic reports the
        # problems of all groups at once.
        for group in cls.model_fields:
            grouped.setdefault(group, {})
        return grouped

    def replace(self, **values: Any) -> Settings:
        """A copy with the settings named changed: single settings by their flat names
        (as for the constructor), validated, or whole groups by name
        (``alerting=AlertingSettings(...)``), taken as they are. The others keep their
        values, paths derived from ``data_dir`` included."""
        groups: dict[str, SettingsGroup] = {}
        changed: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            if name in GROUPS:
                if not isinstance(value, GROUPS[name]):
                    raise TypeError(f"{name} must be a {GROUPS[name].__name__}")
                groups[name] = value
            elif name in SETTINGS:
                setting = SETTINGS[name]
                changed.setdefault(setting.group, {})[setting.field] = value
            else:
                raise ValueError(f"unknown setting {name!r}")
        for group, fields in changed.items():
            if group in groups:
                raise ValueError(f"{group!r} given both as a group and as single settings")
            current: SettingsGroup = getattr(self, group)
            groups[group] = type(current)(**{**dict(current), **fields})
        return self.model_copy(update=groups)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        # pydantic's update= neither validates nor knows flat names: a stray
        # `model_copy(update={"monitor_interval": ...})` would be silently ignored.
        unknown = set(update or ()) - set(type(self).model_fields)
        if unknown:
            raise TypeError(f"use Settings.replace() to change settings: {sorted(unknown)}")
        return super().model_copy(update=update, deep=deep)

    def flat_dump(self, mode: Literal["json", "python"] = "python") -> dict[str, Any]:
        """Every setting by its flat name, as ``model_dump`` gives it (secrets masked
        in ``json`` mode)."""
        dumped = {group: getattr(self, group).model_dump(mode=mode) for group in GROUPS}
        return {name: dumped[s.group][s.field] for name, s in SETTINGS.items()}


GROUPS: dict[str, type[SettingsGroup]] = {
    name: field.annotation
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, SettingsGroup)
}


@dataclass(frozen=True)
class Setting:
    """One setting: its flat name, its environment variable and where it lives."""

    name: str
    variable: str
    group: str
    field: str
    info: FieldInfo


def _settings() -> Iterator[Setting]:
    for group, cls in GROUPS.items():
        for field, info in cls.model_fields.items():
            if not isinstance(info.validation_alias, str):
                raise TypeError(f"settings.{group}.{field} names no environment variable")
            name = info.validation_alias.removeprefix(ENV_PREFIX).lower()
            yield Setting(name, info.validation_alias, group, field, info)


SETTINGS: dict[str, Setting] = {setting.name: setting for setting in _settings()}
"""Every setting by its flat name, group by group in the README's order."""


_URL_PASSWORD = re.compile(r"^([^:/?#]+://[^:/@?#]*:)[^@]*(@)")
# A web URL's user part alone is a token (`https://<token>@host`), unlike a database
# URL's user name.
_WEB_USER = re.compile(r"^((?:https?|wss?)://)[^:/@?#]+(@)", re.IGNORECASE)
# A query parameter whose name says it carries a secret (`?token=`, `api_key=`,
# `X-Amz-Signature=`, `sig=`…): masking a harmless one costs less than printing a secret.
_SECRET_PARAMETER = re.compile(
    r"([?&][^=&#]*(?:token|passw|pwd|secret|key|sig|auth|credential|session)[^=&#]*=)[^&#]*",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """``url`` with its password (in the user part) and the values of its query
    parameters named as secrets replaced by ``***``, for printing settings and error
    messages. Any text may be given: what is not a URL comes back unchanged."""
    url = _WEB_USER.sub(r"\1***\2", _URL_PASSWORD.sub(r"\1***\2", url))
    return _SECRET_PARAMETER.sub(r"\1***", url)


def _default(setting: Setting) -> str:
    info = setting.info
    if info.default_factory is not None:
        return "(derived)"
    default = info.default
    if isinstance(default, tuple):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
    if default is None or default == "":
        return "(derived)" if setting.name.endswith(("_dir", "_path", "_url")) else "(unset)"
    return str(default)


def settings_table() -> str:
    """The README's configuration table, in Markdown, from the field docstrings: one
    table per group, under the group's description."""
    sections = []
    for group, cls in GROUPS.items():
        summary = " ".join((cls.__doc__ or "").split())
        rows = [
            f"**{group.capitalize()}** (`settings.{group}`): {summary}",
            "",
            "| Variable | Default | Meaning |",
            "| --- | --- | --- |",
        ]
        for setting in SETTINGS.values():
            if setting.group == group:
                description = " ".join((setting.info.description or "").split())
                rows.append(f"| `{setting.variable}` | `{_default(setting)}` | {description} |")
        sections.append("\n".join(rows))
    sections.append(bounds_note())
    return "\n\n".join(sections)


def config_problems(exc: ValidationError) -> str:
    """Pydantic's multi-line report as one line naming the variables, without values."""
    problems = []
    for error in exc.errors():
        if error["type"] == "default_factory_not_called":
            continue  # a path derived from a setting that is itself reported
        problems.append(f"{variable_at(error['loc'])}: {error['msg']}")
    return "; ".join(problems) + "; fix the variables named"


def variable_at(loc: tuple[int | str, ...]) -> str:
    """The environment variable a validation error's location points at: a group's
    errors name it (read from the environment) or the field (passed by name), followed
    by the position of an item in a list of values."""
    for part in loc:
        if isinstance(part, str) and part.startswith(ENV_PREFIX):
            return part
    if len(loc) >= 2 and loc[0] in GROUPS:
        info = GROUPS[str(loc[0])].model_fields.get(str(loc[1]))
        if info is not None and isinstance(info.validation_alias, str):
            return info.validation_alias
    return ENV_PREFIX + "_".join(str(part) for part in loc).upper()
