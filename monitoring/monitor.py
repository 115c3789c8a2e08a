"""One monitor cycle: read new predictions, cut windows, run every check, store and
publish the results, then advance the watermark.

Results are inserted before the watermark moves and ignore duplicates, so a monitor
that dies between the two re-evaluates the window and stores it once. Each version's
rows are cut into windows of their own (:mod:`monitoring.windows`), evaluated in the
order of their last rows; the watermark stays before the first row not yet in an
evaluated window, and each version's position past it is kept beside it, in the same
transaction (:meth:`~monitoring.log_reader.LogReader.window_evaluated`), so that a
restart evaluates no row twice.

A stop request (``run_once(stop=...)``, SIGTERM in the service) is honoured between
windows: the window in hand is stored and the watermark moved past it, then the cycle
returns; the next start resumes at the next window. A monitor far behind would
otherwise catch its whole backlog up before exiting.

One window never stops the monitor: a check that raises on a window is stored as that
window's result with the error as its reason (``details.error``, no score), counted in
``watchkeeper_monitor_window_errors_total{check}``, and the watermark moves on. Were
it to stay, every later cycle would meet the same window and fail on it forever. A
cycle still fails, and is retried, when the database itself fails.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from monitoring.accuracy import (
    AccuracyMetrics,
    WindowSpan,
    read_new_labels,
    read_recent_labels,
    read_window_estimates,
    read_window_labels,
    settled_now,
    unmatched_labels,
    windows_holding,
)
from monitoring.check_details import (
    AccuracyDetails,
    AnyDetails,
    CheckError,
    ClassAccuracyDetails,
    DataQualityDetails,
    FeatureDriftDetails,
    MultivariateDriftDetails,
    OodDetails,
    OutputDriftDetails,
    SampledDetails,
)
from monitoring.class_accuracy import ClassificationAccuracy, ClassVersion, finite_class_rows
from monitoring.detectors import DetectorSuite
from monitoring.estimated_accuracy import AccuracyEstimator
from monitoring.log_reader import LogReader, Unreadable, features_of, version_position
from monitoring.ood_scores import store_ood_scores
from monitoring.quality import rejected_rate
from monitoring.sampling import WindowSample, sample_window
from monitoring.trigger import RetrainTrigger, TriggerPolicy
from monitoring.verdict import window_verdict
from monitoring.window_result import Check, WindowResult
from monitoring.windows import Window, cut_windows, grace_seconds, version_codes
from watchkeeper.classification import ClassPredictions
from watchkeeper.current_pointer import UnreadableCurrent
from watchkeeper.db.positions import from_micros, read_position, to_micros, write_position
from watchkeeper.db.prediction_seq import request_seq_of
from watchkeeper.db.reachability import unreachable
from watchkeeper.db.tables import window_results
from watchkeeper.errors import WatchkeeperError
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings
from watchkeeper.task import Task
from watchkeeper.version_metadata import VersionMetadata

log = logging.getLogger(__name__)

FEEDBACK_WATERMARK = "feedback"
ORPHAN_WATERMARK = "feedback_orphans"
ORPHANS_FOUND = "feedback_orphans.found"
"""When the monitor last counted orphan labels (microseconds): kept in the database, as
the process counter restarts at 0 and a restart's first cycle counts the whole backlog
before Prometheus sees a 0, so ``increase()`` never sees those."""
READ_WINDOWS = 10
"""A read holds at least this many windows' count of rows..."""
READ_ROWS = 100_000
"""...and at least this many rows: only their index (~10 MB), so that windows of a
minimum span (many times their count at high traffic) take few reads."""
MAX_REASON_CHARS = 500
"""An error's reason is stored and logged cut to this: it may quote a hostile value."""
WINDOW_CHECKS = frozenset(
    (
        Check.DATA_QUALITY,
        Check.OOD,
        Check.FEATURE_DRIFT,
        Check.OUTPUT_DRIFT,
        Check.MULTIVARIATE_DRIFT,
        Check.ESTIMATED_ACCURACY,
    )
)
"""The checks :meth:`Monitor.evaluate` runs on a window: what ``status.latest`` holds
is the newest window's, all of them from that one window."""


@dataclass(frozen=True)
class CheckOutcome:
    """What one check found in a window, before the sample's size is added."""

    is_drift: bool | None
    """The verdict; None for a check that gives none."""
    score: float | None
    """The check's figure; None when it has none."""
    details: SampledDetails


@dataclass
class MonitorStatus:
    """What the metrics collector publishes: the latest result per check and
    counters of the monitor's own health."""

    latest: dict[str, WindowResult] = field(default_factory=dict)
    """The newest evaluated window's result of each check it got (a check it did not
    run, as drift on a window under ``min_samples`` rows, or that failed on it, has
    none: an older window's verdict beside the newest window's size would be read as
    the newest window's)."""
    retrain_requests: Counter[str] = field(default_factory=Counter)
    windows_evaluated: int = 0
    window_errors: Counter[str] = field(default_factory=Counter)
    """Checks that raised on a window, by check; the window was stored and passed."""
    errors: int = 0
    rows_read: int = 0
    unreadable_rows: Counter[str] = field(default_factory=Counter)
    """Rows left out of windows' figures for a value no server writes, by
    :class:`~monitoring.log_reader.Unreadable` reason; each counted once."""
    feedback_orphans: int = 0
    last_orphans: float | None = None
    """Unix time the monitor (this process or an earlier one) last counted orphans."""
    rolling: dict[str, WindowResult] = field(default_factory=dict)
    """The newest rolling accuracy result of each model version."""
    estimate_errors: dict[str, float] = field(default_factory=dict)
    """By model version: how far the label-free MAE estimate of the last window with
    enough labels was from its realised MAE (a ratio)."""
    accuracy_estimate_errors: dict[str, float] = field(default_factory=dict)
    """By classifier version: the label-free accuracy estimate of the last window with
    enough labels minus its realised accuracy."""
    last_labels: float | None = None
    """Unix time accuracy was last computed from new labels, for any version."""
    last_success: float | None = None
    last_duration: float = 0.0


class Monitor:
    def __init__(self, settings: Settings, engine: sa.Engine, registry: ModelRegistry) -> None:
        self.settings = settings
        self.engine = engine
        self.registry = registry
        self.reader = LogReader(engine, settle_seconds=settings.monitor.settle_seconds)
        self.read_windows = READ_WINDOWS
        self.read_rows = READ_ROWS
        rolling = self._stored_rolling()
        self.status = MonitorStatus(
            latest=self._stored_latest(),
            rolling=rolling,
            last_labels=max((r.evaluated_at.timestamp() for r in rolling.values()), default=None),
            last_orphans=self._stored_last_orphans(),
        )
        self._suites: dict[str, DetectorSuite] = {}
        self._timeless: set[int] = set()
        """The rows counted as having no time (windows' and labels' reads meet them, and
        read them again): each is counted once. Only a foreign writer's rows are here."""
        self.estimator = AccuracyEstimator(registry)
        self._validation_mae: dict[str, float | None] = {}
        self._positive_target: dict[str, bool] = {}
        self._estimate_checked_at: dict[str, int] = {}
        self.trigger = RetrainTrigger(
            engine,
            TriggerPolicy(
                drift_windows=settings.trigger.drift_windows,
                ood_fraction=settings.trigger.ood_fraction,
                mae_degradation=settings.trigger.mae_degradation,
                accuracy_drop=settings.trigger.accuracy_drop,
                cooldown_seconds=settings.trigger.cooldown_seconds,
            ),
            self.status.retrain_requests,
        )
        self._reload_estimate_errors()
        self._retire_replaced()
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        self._insert_results = dialect.insert(window_results).on_conflict_do_nothing()
        upsert = dialect.insert(window_results)
        # a window's accuracy is replaced as its late labels arrive
        self._replace_results = upsert.on_conflict_do_update(
            index_elements=[window_results.c.window_id, window_results.c.detector],
            set_={
                name: upsert.excluded[name]
                for name in ("n_rows", "score", "details", "evaluated_at")
            },
        )

    def _stored_latest(self) -> dict[str, WindowResult]:
        """The newest evaluated window's stored results, so that a restarted monitor
        exports what it last knew instead of nothing (and no older window's)."""
        detectors = [check.value for check in WINDOW_CHECKS]
        newest = (
            sa.select(window_results.c.window_id)
            .where(window_results.c.detector.in_(detectors))
            .order_by(window_results.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(window_results).where(
                    window_results.c.window_id == newest,
                    window_results.c.detector.in_(detectors),
                )
            ).all()
        stored = [WindowResult.from_row(row._mapping) for row in rows]
        return {result.check: result for result in stored if not result.failed}

    def _reload_estimate_errors(self) -> None:
        """Each version's estimate error as last exported: that of its newest window
        with ``min_labels`` labels (an accuracy result counts its labels in ``n_rows``)
        and an estimate, so that a restart does not drop the gauge until that window's
        labels change. Newest by the window's place in the log: late labels insert an
        older window's accuracy after a newer one's."""
        query = (
            sa.select(window_results)
            .where(
                window_results.c.detector == Check.ACCURACY.value,
                window_results.c.score.is_not(None),
                window_results.c.n_rows >= self.settings.monitor.min_labels,
            )
            .order_by(window_results.c.model_version, window_results.c.last_seq.desc())
        )
        with self.engine.connect() as connection:
            rows = connection.execution_options(stream_results=True).execute(query)
            for row in rows:
                result = WindowResult.from_row(row._mapping)
                details, version = result.details, result.model_version
                if version in self._estimate_checked_at:
                    continue  # its newest window with an estimate is in
                if not isinstance(details, AccuracyDetails | ClassAccuracyDetails):
                    continue
                if details.estimate_error is None:
                    continue  # the running monitor kept the previous window's: so here
                self._estimate_checked_at[version] = result.last_seq
                if isinstance(details, ClassAccuracyDetails):
                    self.status.accuracy_estimate_errors[version] = details.estimate_error
                else:
                    self.status.estimate_errors[version] = abs(details.estimate_error)

    def _stored_last_orphans(self) -> float | None:
        with self.engine.connect() as connection:
            found = read_position(connection, ORPHANS_FOUND)
        return None if found is None else found / 1_000_000

    def _stored_rolling(self) -> dict[str, WindowResult]:
        """The newest stored rolling accuracy of each model version."""
        newest = (
            sa.select(sa.func.max(window_results.c.id))
            .where(
                window_results.c.detector == Check.ROLLING_ACCURACY.value,
                window_results.c.score.is_not(None),
            )
            .group_by(window_results.c.model_version)
            .scalar_subquery()
        )
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(window_results).where(window_results.c.id.in_(newest))
            ).all()
        stored = [WindowResult.from_row(row._mapping) for row in rows]
        return {result.model_version: result for result in stored}

    # -- detectors per model version --------------------------------------------------

    def suite(self, version: str) -> DetectorSuite:
        """The version's detectors: loaded from disk, or fitted once and saved."""
        if version not in self._suites:
            directory = self.settings.storage.detectors_dir / version
            if DetectorSuite.is_saved(directory):
                self._suites[version] = DetectorSuite.load(directory)
            else:
                log.info("fitting detectors for model %s", version)
                model = self.registry.load(version).model
                reference = self.registry.reference(version)
                predicted = model.predict(reference)
                # a classifier's output is its class probabilities (one column a class)
                outputs = (
                    predicted.probabilities
                    if isinstance(predicted, ClassPredictions)
                    else predicted.value
                )
                suite = DetectorSuite.fit(
                    model.schema,
                    reference,
                    outputs,
                    p_value=self.settings.drift.p_value,
                    correction=self.settings.drift.correction,
                    ood_percentile=self.settings.drift.ood_percentile,
                )
                suite.save(_fresh_dir(directory))
                self._suites[version] = suite
        return self._suites[version]

    # -- one cycle ----------------------------------------------------------------------

    def run_once(
        self, stop: threading.Event | None = None, on_progress: Callable[[], None] | None = None
    ) -> int:
        """Evaluate every complete window and any new labels; return windows done.
        Once ``stop`` is set the cycle returns after the window in hand, leaving the
        rest (and the new labels) to the next start. ``on_progress`` is called after
        each window stored: a cycle catching up a long backlog is progress, not a
        stall (the service's heartbeat)."""
        started = time.perf_counter()
        try:
            up_to = self.reader.settled_high_mark()
            labelled: set[str] = set()  # versions whose rolling accuracy may change
            done = 0
            # a monitor far behind (a backlog, a stop) reads a bounded chunk at a time:
            # one read of the whole backlog held every row's features in memory
            # (only the index of each row is held; a window's features are read when
            # it is evaluated, and the rows of a window still open carry to the next read)
            limit = max(self.read_windows * self.settings.monitor.window_size, self.read_rows)
            after = self.reader.watermark()
            # each version's rows are windows of their own (monitoring.windows): past the
            # global watermark, a version's rows up to its own position are evaluated
            evaluated = self.reader.version_watermarks()
            # rejected requests are counted up to the newest evaluated window's last row
            # (the windows evaluated in the order of their last rows): each once
            counted_to = max([after, *evaluated.values()])
            pending = pd.DataFrame()
            # the rows read, from the one before the lowest left for later (base) on: the
            # global watermark stays a row's position, the row before the first not done
            base, seen = after, np.empty(0, dtype=np.int64)
            while True:
                chunk = self.reader.read_index(after, up_to, limit=limit)
                more = len(chunk) == limit
                if len(chunk):
                    after = int(chunk["seq"].iloc[-1])
                seen = np.concatenate([seen, chunk["seq"].to_numpy(dtype=np.int64)])
                chunk = _unevaluated(self._timed(chunk), evaluated)
                rows = chunk if pending.empty else pd.concat([pending, chunk], ignore_index=True)
                windows = cut_windows(
                    rows,
                    size=self.settings.monitor.window_size,
                    seconds=self.settings.monitor.window_seconds,
                    min_seconds=self.settings.monitor.window_min_seconds,
                    grace_seconds=grace_seconds(self.settings.serving.model_poll_seconds),
                    now=datetime.now(UTC),
                    more=more,
                )
                in_windows = np.isin(
                    rows["seq"].to_numpy(),
                    np.concatenate([w.rows["seq"].to_numpy() for w in windows] or [[]]),
                )
                pending = rows[~in_windows].reset_index(drop=True)
                read_to = _read_to(windows, pending, seen, base)
                for window, global_to in zip(windows, read_to, strict=True):
                    if stop is not None and stop.is_set():
                        break
                    results = self.evaluate(window, after=counted_to)
                    self._store(results)
                    log.info("%s", window_verdict(results, self.settings.monitor.min_samples))
                    labelled |= self._evaluate_window_accuracy([_span(window)])
                    self.reader.window_evaluated(window.model_version, window.last_seq, global_to)
                    evaluated[version_position(window.model_version)] = window.last_seq
                    counted_to = max(counted_to, window.last_seq)
                    self.status.windows_evaluated += 1
                    done += 1
                    if on_progress is not None:
                        on_progress()
                if stop is not None and stop.is_set():
                    # The labels wait too (their watermark stays): the rolling figures
                    # depend on labels alone, not on the windows evaluated.
                    log.info("stop requested: %d window(s) evaluated, the rest next start", done)
                    return done
                lowest = int(pending["seq"].min()) if len(pending) else None
                base = _before(seen, lowest, base)
                seen = seen[seen > base]
                if not more:
                    break
            self._evaluate_accuracy(labelled)
            self._retire_replaced()
            self._count_orphans()
        except Exception as exc:
            self.status.errors += 1
            if not unreachable(exc):  # a database away: said once by the service
                log.exception("monitor cycle failed")
            raise
        finally:
            self.status.last_duration = time.perf_counter() - started
            self.status.rows_read = self.reader.rows_read
        self.status.last_success = time.time()
        return done

    def _timed(self, rows: pd.DataFrame, what: str = "row") -> pd.DataFrame:
        """``rows`` less those whose time could not be read (none pandas holds, a
        foreign writer's): no window can hold them, and they passed into none, so the
        watermark moves past them with the rows around them; a label's accuracy leaves
        them out (no delay to measure, no span to place them in). Counted once each,
        whichever read meets them first. A labelled row whose label's own arrival is
        no time pandas holds (year 9999: a foreign writer's, a wrong clock's) is left
        out of accuracy likewise: its delay raised there."""
        timeless = rows["created_at"].isna().to_numpy()
        if "received_at" in rows:
            timeless |= rows["received_at"].isna().to_numpy()
        if not timeless.any():
            return rows
        seqs = {int(s) for s in rows["seq"].to_numpy()[timeless]} - self._timeless
        if seqs:
            self._timeless |= seqs
            self._unreadable(Unreadable.TIME, len(seqs), f"from {what} {min(seqs)}")
        return rows[~timeless].reset_index(drop=True)

    def _unreadable(self, reason: Unreadable, n: int, where: str) -> None:
        counts = self.status.unreadable_rows
        self.status.unreadable_rows = counts + Counter({reason.value: n})  # a scrape's copy
        log.warning(
            "%d row(s) %s left out of the figures: %s (no server writes one)",
            n,
            where,
            _UNREADABLE_WHAT[reason],
        )

    def evaluate(self, window: Window, *, after: int) -> list[WindowResult]:
        """Every check of the window, each a result row; a check that raises becomes
        an error row (see the module docstring). Data quality covers every row (counted
        request by request, :mod:`monitoring.window_features`); the drift tests, OOD
        scoring of unscored rows and the estimate a seeded sample
        (:mod:`monitoring.sampling`), whose size each result's details record; only the
        sample's features and predictions are read. ``after``: rejected requests are
        counted after this position's request, up to that of the window's last row: the
        last row of the newest window evaluated, of any version, so that each is counted
        once (none, when another version's window has counted past this one's end)."""
        sample = sample_window(
            window.window_id, len(window.rows), self.settings.monitor.sample_rows
        )
        checks = [Check.DATA_QUALITY, Check.OOD, Check.ESTIMATED_ACCURACY]
        if sample.evaluated >= self.settings.monitor.min_samples:
            checks += [Check.FEATURE_DRIFT, Check.OUTPUT_DRIFT]
            if self.settings.drift.multivariate:
                checks.append(Check.MULTIVARIATE_DRIFT)
        try:
            suite = self.suite(window.model_version)
            read = self.reader.window_features(window.rows, suite.encoder.schema, sample.positions)
            rows = read.rows
            if read.unreadable:  # NaN: left out with the non-finite predictions
                self._unreadable(
                    Unreadable.NUMBER, read.unreadable, f"of window {window.window_id}'s sample"
                )
            sampled = features_of(rows, suite.encoder.schema.names)
            encoded = suite.encode(sampled)
        except sa.exc.SQLAlchemyError:
            raise  # the database, not the window: fail the cycle, retry the window
        except Exception as exc:  # nothing can be checked: every check errs with the reason
            return [self._error(window, check, exc) for check in checks]

        def data_quality() -> CheckOutcome:
            quality = read.counts.rates()
            rejected = rejected_rate(
                self.engine, request_seq_of(after), request_seq_of(window.last_seq)
            )
            return CheckOutcome(
                None,
                rejected.rate,
                DataQualityDetails(
                    features=quality, reference=suite.reference_quality, requests=rejected
                ),
            )

        def ood() -> CheckOutcome:
            fraction, details = self._ood_fraction(window, suite, sampled, sample)
            return CheckOutcome(None, fraction, details)

        def feature_drift() -> CheckOutcome:
            drift = suite.feature_drift(encoded)
            return CheckOutcome(
                drift.is_drift,
                len(drift.drifted) / max(len(drift.p_values), 1),
                FeatureDriftDetails(
                    threshold=drift.threshold,
                    drifted=drift.drifted,
                    p_values=drift.p_values,
                    distances=drift.distances,
                ),
            )

        def too_few(finite: int, non_finite: int) -> CheckOutcome | None:
            """No verdict on fewer than ``min_samples`` finite predictions, as on too few
            rows: an empty test reads p = 1, "no drift", which nothing showed."""
            needed = self.settings.monitor.min_samples
            if finite >= needed:
                return None
            reason = (
                f"{finite} finite predictions of {finite + non_finite}, fewer than "
                f"{needed} (WATCHKEEPER_MONITOR_MIN_SAMPLES): no verdict"
            )
            return CheckOutcome(
                None,
                None,
                OutputDriftDetails(distance=None, non_finite_predictions=non_finite, reason=reason),
            )

        def output_drift() -> CheckOutcome:
            if suite.is_classifier:
                # rows with a NaN or infinite probability have no class: left out, counted;
                # so have rows of another number of probabilities (they stopped the KS
                # test on the positive class's for the whole window, silently)
                finite = finite_class_rows(rows, classes=suite.n_classes)
                non_finite = int(finite.size - np.count_nonzero(finite))
                if (none := too_few(int(np.count_nonzero(finite)), non_finite)) is not None:
                    return none
                judged = rows[finite] if non_finite else rows
                classes = suite.class_output_drift(
                    judged["prediction"].to_numpy(dtype=np.float64).round(),
                    _stored_probabilities(judged),
                )
                details = classes.details().model_copy(
                    update={"non_finite_predictions": non_finite}
                )
                return CheckOutcome(classes.is_drift, classes.p_value, details)
            predicted = rows["prediction"].to_numpy(dtype=np.float64)
            # NaN or an infinity the model returned: left out of the test and counted
            finite = np.isfinite(predicted)
            non_finite = int(predicted.size - np.count_nonzero(finite))
            if (none := too_few(int(np.count_nonzero(finite)), non_finite)) is not None:
                return none
            output = suite.output_drift(predicted[finite] if non_finite else predicted)
            return CheckOutcome(
                output.is_drift,
                output.p_value,
                OutputDriftDetails(distance=output.distance, non_finite_predictions=non_finite),
            )

        def multivariate_drift() -> CheckOutcome:
            # seeded by the window: evaluating it again gives the same verdict
            drift = suite.multivariate_drift(encoded, seed=window.first_seq)
            return CheckOutcome(
                drift.is_drift, drift.p_value, MultivariateDriftDetails(distance=drift.distance)
            )

        def estimated_accuracy() -> CheckOutcome:
            # no estimate (a version without an estimator) is a result, not an error
            estimate = self.estimator.estimate(window, sampled, rows=rows)
            return CheckOutcome(None, estimate.score, estimate.details())

        compute: dict[Check, Callable[[], CheckOutcome]] = {
            Check.DATA_QUALITY: data_quality,
            Check.OOD: ood,
            Check.FEATURE_DRIFT: feature_drift,
            Check.OUTPUT_DRIFT: output_drift,
            Check.MULTIVARIATE_DRIFT: multivariate_drift,
            Check.ESTIMATED_ACCURACY: estimated_accuracy,
        }
        results = []
        for check in checks:
            try:
                outcome = compute[check]()
            except sa.exc.SQLAlchemyError:
                raise  # the database, not the window: fail the cycle, retry the window
            except Exception as exc:
                results.append(self._error(window, check, exc))
            else:
                # data quality counts every row; OOD's own details say what it scored
                evaluated = sample.held if check is Check.DATA_QUALITY else sample.evaluated
                counted = {"rows_evaluated": evaluated, "rows_held": sample.held}
                own = outcome.details.model_fields_set & counted.keys()
                details = outcome.details.model_copy(
                    update={k: v for k, v in counted.items() if k not in own}
                )
                results.append(
                    self._result(window, check, outcome.is_drift, outcome.score, details)
                )
        return results

    def _result(
        self,
        window: Window,
        check: Check,
        is_drift: bool | None,
        score: float | None,
        details: AnyDetails,
    ) -> WindowResult:
        return _span_result(
            _span(window), check, len(window.rows), score, details, is_drift=is_drift
        )

    def _error(self, window: Window, check: Check, exc: Exception) -> WindowResult:
        reason = f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]
        log.error("%s of window %s failed: %s", check, window.window_id, reason, exc_info=exc)
        self.status.window_errors[check] += 1
        return self._result(window, check, None, None, CheckError(error=reason))

    # -- storage ------------------------------------------------------------------------

    def _store(self, results: list[WindowResult], *, replace: bool = False) -> None:
        if not results:
            return
        with self.engine.begin() as connection:
            connection.execute(
                self._replace_results if replace else self._insert_results,
                [result.to_row() for result in results],
            )
        # errors are stored, but neither exported as the latest figure nor acted upon
        done = [r for r in results if not r.failed]
        latest = dict(self.status.latest)
        if any(r.check in WINDOW_CHECKS for r in results):  # a newly evaluated window
            for check in WINDOW_CHECKS:
                latest.pop(check, None)
        latest.update((result.check, result) for result in done)
        # one assignment: a scrape iterating the figures never sees them change size
        self.status.latest = latest
        rolling = [r for r in done if r.check is Check.ROLLING_ACCURACY]
        if rolling:
            self.status.rolling = self.status.rolling | {r.model_version: r for r in rolling}
            self.status.last_labels = rolling[-1].evaluated_at.timestamp()
        try:
            served = self.registry.current_version()
        except UnreadableCurrent as exc:  # serving falls back; nothing is known to act on
            log.warning("no retraining considered: %s", exc)
            return
        for version in dict.fromkeys(r.model_version for r in done):
            if served is not None and version != served:
                continue  # a replaced version's late windows and labels retrain nothing
            mine = [r for r in done if r.model_version == version]
            self.trigger.consider(
                mine,
                validation_mae=self._validation_mae_of(version),
                validation_accuracy=self._validation_metric(version, "accuracy"),
            )

    def _record(self, version: str) -> VersionMetadata:
        """The version's metadata, read once (shared with the estimator)."""
        return self.estimator.record(version)

    def _class_version(self, version: str) -> ClassVersion | None:
        """What the accuracy of a classifier version needs; None for a regression one."""
        record = self._record(version)
        if record.task is not Task.CLASSIFICATION:
            return None
        assert record.classes is not None and record.prediction_set is not None
        return ClassVersion(tuple(record.classes), record.prediction_set.spec())

    def _validation_metric(self, version: str, name: str) -> float | None:
        """A validation figure of the version (None if it has none, or its metadata
        cannot be read: the figure is then left out, the labels still counted)."""
        try:
            value = getattr(self._record(version).metrics, name)
        except WatchkeeperError:
            return None
        return None if value is None else float(value)

    def _validation_mae_of(self, version: str) -> float | None:
        """The version's validation MAE; None when it has none or its metadata cannot be
        read (not remembered: it is read again next time). Raised, it failed the cycle
        after a window was stored and before the watermark moved past it: every cycle
        met that window again."""
        if version not in self._validation_mae:
            try:
                self._validation_mae[version] = self._record(version).metrics.mae
            except WatchkeeperError as exc:
                log.error("no validation MAE for %s: %s", version, exc)
                return None
        return self._validation_mae[version]

    def _positive_target_of(self, version: str) -> bool:
        """Whether the version's target was positive throughout training (its interval
        is then on the log scale): only then is a MAPE reported."""
        if version not in self._positive_target:
            interval = self._record(version).interval
            self._positive_target[version] = interval is not None and interval.scale == "log"
        return self._positive_target[version]

    def _ood_fraction(
        self, window: Window, suite: DetectorSuite, sampled: pd.DataFrame, sample: WindowSample
    ) -> tuple[float, OodDetails]:
        """The window's share of out-of-distribution rows, and its details.

        Scores the serving worker stored as it answered (the same function on the same
        reference: ``watchkeeper.ood``) count for every row. Rows logged without one
        (before scores were served, by a server with ``WATCHKEEPER_OOD_IN_RESPONSE``
        off, or a version whose reference the server could not read) are scored here,
        and stored, only where the window's sample holds them (``sampled``: the
        sample's features, in its order); their share of outliers stands for all the
        window's unscored rows (a stratified estimate)."""
        stored = window.rows.get("ood_score")
        scores = (
            np.full(len(window.rows), np.nan)
            if stored is None
            else pd.to_numeric(stored, errors="coerce").to_numpy(dtype=np.float64, copy=True)
        )
        unscored = np.isnan(scores)
        pick = unscored[sample.positions]  # of the sample, the rows to score
        to_score = sample.positions[pick]
        if len(to_score):
            scores[to_score] = suite.ood_scores(sampled[pick].reset_index(drop=True))
            with self.engine.begin() as connection:  # into the rows' requests' outputs
                store_ood_scores(
                    connection, window.rows["seq"].to_numpy()[to_score].tolist(), scores[to_score]
                )
        threshold = suite.ood_threshold
        scored_before = ~unscored
        outliers = float((scores[scored_before] > threshold).sum())
        n_unscored, n_scored_now = int(unscored.sum()), len(to_score)
        if n_scored_now:
            outliers += (scores[to_score] > threshold).sum() * n_unscored / n_scored_now
        known = scores[~np.isnan(scores)]
        return outliers / max(len(scores), 1), OodDetails(
            threshold=threshold,
            outliers=round(outliers),
            mean_score=float(known.mean()) if len(known) else None,
            rows_evaluated=len(known),
            rows_scored_by_serving=int(scored_before.sum()),
            rows_scored_here=n_scored_now,
        )

    def _evaluate_accuracy(self, labelled: set[str]) -> None:
        """Accuracy of every stored window that got new labels, and the rolling figure
        of each model version they label or in ``labelled`` (see
        :mod:`monitoring.accuracy`)."""
        after = from_micros(self.reader.watermark(FEEDBACK_WATERMARK))
        up_to = settled_now(self.settings.monitor.settle_seconds)
        with self.engine.connect() as connection:
            new = read_new_labels(connection, after, up_to)
            spans = windows_holding(connection, new.matched, detector=Check.DATA_QUALITY)
        self._evaluate_window_accuracy(spans)
        # a prediction logged without a version (a buggy writer's) measures none: None
        # beside a version's name failed the sort below on every cycle
        versions = labelled | {v for v in new.matched["model_version"] if isinstance(v, str)}
        self._evaluate_rolling_accuracy(sorted(versions), up_to)
        if new.latest_received is not None:
            self.reader.set_watermark(to_micros(new.latest_received), FEEDBACK_WATERMARK)

    def _evaluate_window_accuracy(self, spans: list[WindowSpan]) -> set[str]:
        """Store (or replace) the accuracy of each window that has labels; return the
        model versions of those windows."""
        with self.engine.connect() as connection:
            labelled = [
                (span, self._timed(read_window_labels(connection, span), "labelled row"))
                for span in spans
            ]
            estimates = read_window_estimates(connection, [span.window_id for span in spans])
        results = []
        for span, labels in labelled:
            if labels.empty:
                continue
            try:
                classes = self._class_version(span.model_version)
            except WatchkeeperError as exc:  # its metadata unreadable: the labels move on
                results.append(self._accuracy_error(span, labels, exc))
                continue
            if classes is not None:
                results.append(
                    self._class_window_accuracy(
                        span, classes, labels, estimates.get(span.window_id)
                    )
                )
                continue
            try:
                metrics = AccuracyMetrics.of(
                    labels,
                    confidence=self.settings.trigger.accuracy_confidence,
                    positive_target=self._positive_target_of(span.model_version),
                )
            except Exception as exc:  # stored as the window's error; the labels move on
                reason = f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]
                log.error("accuracy of %s failed: %s", span.window_id, reason, exc_info=exc)
                self.status.window_errors[Check.ACCURACY] += 1
                score: float | None = None
                details: AccuracyDetails | CheckError = CheckError(labels=len(labels), error=reason)
            else:
                score = metrics.mae
                details = metrics.as_details(
                    labelled_share=metrics.labels / max(span.n_rows, 1),
                    validation_mae=self._validation_mae_of(span.model_version),
                    **self._check_estimate(span, metrics, estimates.get(span.window_id)),
                )
            results.append(_span_result(span, Check.ACCURACY, len(labels), score, details))
        self._store(results, replace=True)
        return {r.model_version for r in results}

    def _accuracy_error(
        self, span: WindowSpan, labels: pd.DataFrame, exc: Exception
    ) -> WindowResult:
        """The window's accuracy stored as an error: its labels move on."""
        reason = f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]
        log.error("accuracy of %s failed: %s", span.window_id, reason, exc_info=exc)
        self.status.window_errors[Check.ACCURACY] += 1
        details = CheckError(labels=len(labels), error=reason)
        return _span_result(span, Check.ACCURACY, len(labels), None, details)

    def _class_window_accuracy(
        self,
        span: WindowSpan,
        version: ClassVersion,
        labels: pd.DataFrame,
        estimate: float | None,
    ) -> WindowResult:
        """A classifier window's accuracy result: the classification figures in its
        details, the accuracy as its score."""
        try:
            metrics = ClassificationAccuracy.of(
                labels, version, confidence=self.settings.trigger.accuracy_confidence
            )
        except Exception as exc:  # stored as the window's error; the labels move on
            return self._accuracy_error(span, labels, exc)
        details = metrics.as_details(
            labelled_share=metrics.labels / max(span.n_rows, 1),
            validation_accuracy=self._validation_metric(span.model_version, "accuracy"),
            **self._check_accuracy_estimate(span, metrics, estimate),
        )
        return _span_result(span, Check.ACCURACY, len(labels), metrics.accuracy, details)

    def _check_accuracy_estimate(
        self, span: WindowSpan, metrics: ClassificationAccuracy, estimate: float | None
    ) -> dict[str, float]:
        """A classifier window's label-free accuracy estimate against its realised
        accuracy (estimate minus realised: positive when the model thought it did
        better than it did)."""
        if estimate is None:
            return {}
        error = estimate - metrics.accuracy
        newest = self._estimate_checked_at.get(span.model_version, -1)
        if metrics.labels >= self.settings.monitor.min_labels and span.last_seq >= newest:
            # an older window's late labels must not replace the newest window's check
            self._estimate_checked_at[span.model_version] = span.last_seq
            status = self.status  # a new dict at once: a scrape may iterate the old one
            status.accuracy_estimate_errors = status.accuracy_estimate_errors | {
                span.model_version: error
            }
        return {"estimated_accuracy": estimate, "estimate_error": error}

    def _check_estimate(
        self, span: WindowSpan, metrics: AccuracyMetrics, estimate: float | None
    ) -> dict[str, float]:
        """The window's label-free estimate against its realised MAE; once enough of
        its labels are in, the estimate's error is what the monitor exports."""
        if estimate is None or metrics.mae == 0:
            return {}
        error = (estimate - metrics.mae) / metrics.mae
        newest = self._estimate_checked_at.get(span.model_version, -1)
        if metrics.labels >= self.settings.monitor.min_labels and span.last_seq >= newest:
            # an older window's late labels must not replace the newest window's check
            self._estimate_checked_at[span.model_version] = span.last_seq
            status = self.status  # a new dict at once: a scrape may iterate the old one
            status.estimate_errors = status.estimate_errors | {span.model_version: abs(error)}
        return {"estimated_mae": estimate, "estimate_error": error}

    def _evaluate_rolling_accuracy(self, versions: list[str], as_of: datetime) -> None:
        results = []
        for version in versions:
            with self.engine.connect() as connection:
                labels = read_recent_labels(
                    connection, version, self.settings.monitor.accuracy_labels
                )
            labels = self._timed(labels, "labelled row")
            if len(labels) < self.settings.monitor.min_labels:
                continue
            span = WindowSpan(
                f"{version}:rolling-{to_micros(as_of)}",
                version,
                int(labels["seq"].min()),
                int(labels["seq"].max()),
                len(labels),
                pd.to_datetime(labels["created_at"], utc=True).min().to_pydatetime(),
                pd.to_datetime(labels["created_at"], utc=True).max().to_pydatetime(),
            )
            try:
                classes = self._class_version(version)
            except WatchkeeperError as exc:
                log.error("no rolling accuracy for %s: %s", version, exc)
                continue
            try:
                results.append(self._rolling_result(span, labels, classes))
            except sa.exc.SQLAlchemyError:
                raise  # the database, not the labels: fail the cycle, read them again
            except Exception as exc:
                # stored as the version's error and counted, and the labels' watermark
                # moves on: raised, it failed every cycle that read them, for ever
                reason = f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]
                log.error("rolling accuracy of %s failed: %s", version, reason, exc_info=exc)
                self.status.window_errors[Check.ROLLING_ACCURACY] += 1
                error = CheckError(labels=len(labels), error=reason)
                results.append(_span_result(span, Check.ROLLING_ACCURACY, len(labels), None, error))
        self._store(results)

    def _rolling_result(
        self, span: WindowSpan, labels: pd.DataFrame, classes: ClassVersion | None
    ) -> WindowResult:
        """A version's rolling accuracy over its most recent ``labels``."""
        version, confidence = span.model_version, self.settings.trigger.accuracy_confidence
        details: AccuracyDetails | ClassAccuracyDetails
        if classes is not None:
            figures = ClassificationAccuracy.of(labels, classes, confidence=confidence)
            details = figures.as_details(
                confidence=confidence,
                validation_accuracy=self._validation_metric(version, "accuracy"),
                validation_log_loss=self._validation_metric(version, "log_loss"),
            )
            score, n = figures.accuracy, figures.labels
        else:
            metrics = AccuracyMetrics.of(
                labels,
                confidence=confidence,
                positive_target=self._positive_target_of(version),
            )
            details = metrics.as_details(
                confidence=confidence, validation_mae=self._validation_mae_of(version)
            )
            score, n = metrics.mae, metrics.labels
        return _span_result(span, Check.ROLLING_ACCURACY, n, score, details)

    def _retire_replaced(self) -> None:
        """Stop exporting the accuracy of each version neither served nor labelled in
        the last ``replaced_accuracy_seconds``: its rolling figure is recomputed only
        when labels for it come, so a replaced version's last figure would stay (and
        ``WatchkeeperAccuracyDegraded`` page) for ever, one more series each version.
        Nothing is retired while ``CURRENT`` cannot be read: what is served is unknown."""
        try:
            served = self.registry.current_version()
        except UnreadableCurrent:
            return
        since = datetime.now(UTC) - timedelta(
            seconds=self.settings.monitor.replaced_accuracy_seconds
        )
        status = self.status
        kept = {v for v, r in status.rolling.items() if r.evaluated_at >= since} | {served}
        # new dicts, each assigned at once: a scrape may be iterating the old ones
        status.rolling = {v: r for v, r in status.rolling.items() if v in kept}
        status.estimate_errors = {v: e for v, e in status.estimate_errors.items() if v in kept}
        status.accuracy_estimate_errors = {
            v: e for v, e in status.accuracy_estimate_errors.items() if v in kept
        }

    def served_version(self) -> str | None:
        """The version ``CURRENT`` names, for the exported figures; None when none is or
        when ``CURRENT`` cannot be read (every version's figures are exported then)."""
        try:
            return self.registry.current_version()
        except UnreadableCurrent:
            return None

    def _count_orphans(self) -> None:
        """Count, once, each label still matching no prediction long after it came."""
        after = from_micros(self.reader.watermark(ORPHAN_WATERMARK))
        up_to = min(
            datetime.now(UTC) - timedelta(seconds=self.settings.monitor.feedback_orphan_seconds),
            settled_now(self.settings.monitor.settle_seconds),
        )
        if up_to <= after:
            return
        with self.engine.connect() as connection:
            orphans = unmatched_labels(connection, after, up_to)
        found = datetime.now(UTC)
        with self.engine.begin() as connection:  # counted once: with the watermark
            if orphans:
                write_position(connection, ORPHANS_FOUND, to_micros(found))
            write_position(connection, ORPHAN_WATERMARK, to_micros(up_to))
        if orphans:
            self.status.feedback_orphans += len(orphans)
            self.status.last_orphans = found.timestamp()
            log.warning(
                "%d label(s) match no logged prediction %.0f s after they arrived, e.g. %s",
                len(orphans),
                self.settings.monitor.feedback_orphan_seconds,
                ", ".join(repr(pid[:48]) for pid in orphans[:3]),
            )


_UNREADABLE_WHAT = {
    Unreadable.TIME: "a prediction's or label's time that cannot be read or that pandas "
    "cannot hold (before 1677 or after 2262)",
    Unreadable.NUMBER: "a prediction or bound that is no number (or outputs that are no JSON list)",
}


def _unevaluated(rows: pd.DataFrame, evaluated: dict[str, int]) -> pd.DataFrame:
    """``rows`` less those of a version at or before its position in ``evaluated`` (by
    :func:`~monitoring.log_reader.version_position`): already in an evaluated window."""
    if rows.empty or not evaluated:
        return rows
    codes, versions = version_codes(rows)
    up_to = np.array([evaluated.get(version_position(v), -1) for v in versions])
    keep = rows["seq"].to_numpy() > up_to[codes]
    return rows if keep.all() else rows[keep].reset_index(drop=True)


def _read_to(
    windows: list[Window], pending: pd.DataFrame, seen: np.ndarray, base: int
) -> list[int]:
    """For each of ``windows`` (in the order of their last rows): the global watermark
    once it and those before it are evaluated, the row read before the lowest row in
    neither them nor ``pending`` (rows left for later), else the last row read.
    ``seen``: the rows read (sorted), from the row after ``base`` on."""
    lowest = int(pending["seq"].min()) if len(pending) else None
    out = []
    for window in reversed(windows):  # the windows after each one are not evaluated
        out.append(_before(seen, lowest, base))
        lowest = window.first_seq if lowest is None else min(lowest, window.first_seq)
    return out[::-1]


def _before(seen: np.ndarray, seq: int | None, base: int) -> int:
    """The row read before ``seq`` (None: the last read), ``base`` when none is."""
    at = len(seen) if seq is None else int(np.searchsorted(seen, seq))
    return int(seen[at - 1]) if at else base


def _stored_probabilities(rows: pd.DataFrame) -> np.ndarray | None:
    """The class probabilities of the rows logged with them, one row each (a row logged
    without them is left out)."""
    if "probabilities" not in rows:
        return None
    stored = [p for p in rows["probabilities"].tolist() if isinstance(p, list | tuple)]
    if not stored or len({len(p) for p in stored}) != 1:
        return None
    return np.asarray(stored, dtype=np.float64)


def _span(window: Window) -> WindowSpan:
    return WindowSpan(
        window.window_id,
        window.model_version,
        window.first_seq,
        window.last_seq,
        len(window.rows),
        window.started_at,
        window.ended_at,
    )


def _span_result(
    span: WindowSpan,
    check: Check,
    n_rows: int,
    score: float | None,
    details: AnyDetails,
    *,
    is_drift: bool | None = None,
) -> WindowResult:
    return WindowResult(
        window_id=span.window_id,
        model_version=span.model_version,
        check=check,
        first_seq=span.first_seq,
        last_seq=span.last_seq,
        n_rows=n_rows,
        started_at=span.started_at,
        ended_at=span.ended_at,
        evaluated_at=datetime.now(UTC),
        is_drift=is_drift,
        score=score,
        details=details,
    )


def _fresh_dir(directory: Path) -> Path:
    """Fit into a new folder: a half-written one from a crash is replaced."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.parent.mkdir(parents=True, exist_ok=True)
    return directory
