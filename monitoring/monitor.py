"""One monitor cycle: read new predictions, cut windows, run every check, store and
publish the results, then advance the watermark.

Results are inserted before the watermark moves and ignore duplicates, so a monitor
that dies between the two re-evaluates the window and stores it once.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from monitoring.accuracy import (
    accuracy_windows,
    from_micros,
    read_labelled,
    settled_now,
    to_micros,
)
from monitoring.detectors import DetectorSuite
from monitoring.log_reader import LogReader
from monitoring.quality import feature_quality, rejected_rate
from monitoring.trigger import RetrainTrigger, TriggerPolicy
from monitoring.windows import Window, cut_windows
from watchkeeper.db.tables import predictions, window_results
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings

log = logging.getLogger(__name__)

FEEDBACK_WATERMARK = "feedback"


@dataclass
class MonitorStatus:
    """What the metrics collector publishes: the latest result per check and
    counters of the monitor's own health."""

    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    retrain_requests: Counter[str] = field(default_factory=Counter)
    windows_evaluated: int = 0
    errors: int = 0
    rows_read: int = 0
    last_success: float | None = None
    last_duration: float = 0.0


class Monitor:
    def __init__(self, settings: Settings, engine: sa.Engine, registry: ModelRegistry) -> None:
        self.settings = settings
        self.engine = engine
        self.registry = registry
        self.reader = LogReader(engine, settle_seconds=settings.monitor_settle_seconds)
        self.status = MonitorStatus(latest=self._stored_latest())
        self._suites: dict[str, DetectorSuite] = {}
        self._validation_mae: dict[str, float | None] = {}
        self.trigger = RetrainTrigger(
            engine,
            TriggerPolicy(
                drift_windows=settings.trigger_drift_windows,
                ood_fraction=settings.trigger_ood_fraction,
                mae_degradation=settings.trigger_mae_degradation,
                cooldown_seconds=settings.trigger_cooldown_seconds,
            ),
            self.status.retrain_requests,
        )
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        self._insert_results = dialect.insert(window_results).on_conflict_do_nothing()

    def _stored_latest(self) -> dict[str, dict[str, Any]]:
        """The newest stored result of each check, so that a restarted monitor exports
        what it last knew instead of nothing."""
        newest = (
            sa.select(sa.func.max(window_results.c.id))
            .group_by(window_results.c.detector)
            .scalar_subquery()
        )
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(window_results).where(window_results.c.id.in_(newest))
            ).all()
        return {row.detector: dict(row._mapping) for row in rows}

    # -- detectors per model version --------------------------------------------------

    def suite(self, version: str) -> DetectorSuite:
        """The version's detectors: loaded from disk, or fitted once and saved."""
        if version not in self._suites:
            directory = self.settings.detectors_path / version
            if (directory / "manifest.json").is_file():
                self._suites[version] = DetectorSuite.load(directory)
            else:
                log.info("fitting detectors for model %s", version)
                model = self.registry.load(version).model
                reference = self.registry.reference(version)
                suite = DetectorSuite.fit(
                    model.schema,
                    reference,
                    model.predict(reference).value,
                    p_value=self.settings.drift_p_value,
                    correction=self.settings.drift_correction,
                    ood_percentile=self.settings.ood_percentile,
                    multivariate=self.settings.drift_multivariate,
                )
                suite.save(_fresh_dir(directory))
                self._suites[version] = suite
        return self._suites[version]

    # -- one cycle ----------------------------------------------------------------------

    def run_once(self) -> int:
        """Evaluate every complete window and any new labels; return windows done."""
        started = time.perf_counter()
        try:
            up_to = self.reader.settled_high_mark()
            rows = self.reader.read(self.reader.watermark(), up_to)
            windows = cut_windows(
                rows,
                size=self.settings.monitor_window_size,
                seconds=self.settings.monitor_window_seconds,
                now=datetime.now(UTC),
            )
            for window in windows:
                self._store(self.evaluate(window))
                self.reader.set_watermark(window.last_seq)
                self.status.windows_evaluated += 1
            self._evaluate_accuracy()
        except Exception:
            self.status.errors += 1
            log.exception("monitor cycle failed")
            raise
        finally:
            self.status.last_duration = time.perf_counter() - started
            self.status.rows_read = self.reader.rows_read
        self.status.last_success = time.time()
        return len(windows)

    def evaluate(self, window: Window) -> list[dict[str, Any]]:
        suite = self.suite(window.model_version)
        schema = suite.encoder.schema
        features = pd.DataFrame.from_records(
            list(window.rows["features"]), columns=list(schema.names)
        )
        n = len(features)
        results: list[dict[str, Any]] = []

        def add(detector: str, is_drift: bool | None, score: float | None, details: dict) -> None:
            results.append(
                {
                    "window_id": window.window_id,
                    "model_version": window.model_version,
                    "detector": detector,
                    "first_seq": window.first_seq,
                    "last_seq": window.last_seq,
                    "n_rows": n,
                    "started_at": window.started_at,
                    "ended_at": window.ended_at,
                    "evaluated_at": datetime.now(UTC),
                    "is_drift": is_drift,
                    "score": score,
                    "details": details,
                }
            )

        quality = feature_quality(features, schema)
        rejected = rejected_rate(self.engine, window.started_at, window.ended_at)
        add("data_quality", None, rejected["rate"], {"features": quality, "requests": rejected})

        scores = suite.ood_scores(features)
        self._store_ood_scores(window, scores)
        outliers = scores > suite.ood_threshold
        add(
            "ood",
            None,
            float(outliers.mean()),
            {
                "threshold": suite.ood_threshold,
                "outliers": int(outliers.sum()),
                "mean_score": float(scores.mean()),
            },
        )

        if n < self.settings.monitor_min_samples:
            log.info(
                "window %s has %d rows (< %d): no drift verdict",
                window.window_id,
                n,
                self.settings.monitor_min_samples,
            )
            return results
        drift = suite.feature_drift(features)
        add(
            "feature_drift",
            drift.is_drift,
            len(drift.drifted) / max(len(drift.p_values), 1),
            {
                "threshold": drift.threshold,
                "drifted": drift.drifted,
                "p_values": drift.p_values,
                "distances": drift.distances,
            },
        )
        output = suite.output_drift(window.rows["prediction"].to_numpy(dtype=np.float64))
        add("output_drift", output.is_drift, output.p_value, {"distance": output.distance})
        multivariate = suite.multivariate_drift(features)
        if multivariate is not None:
            add(
                "multivariate_drift",
                multivariate.is_drift,
                multivariate.p_value,
                {"distance": multivariate.distance},
            )
        return results

    # -- storage ------------------------------------------------------------------------

    def _store(self, results: list[dict[str, Any]]) -> None:
        with self.engine.begin() as connection:
            connection.execute(self._insert_results, results)
        for result in results:
            self.status.latest[result["detector"]] = result
        for version in dict.fromkeys(r["model_version"] for r in results):
            mine = [r for r in results if r["model_version"] == version]
            self.trigger.consider(mine, validation_mae=self._validation_mae_of(version))

    def _validation_mae_of(self, version: str) -> float | None:
        if version not in self._validation_mae:
            metrics = self.registry.metadata(version).get("metrics", {})
            self._validation_mae[version] = metrics.get("mae")
        return self._validation_mae[version]

    def _store_ood_scores(self, window: Window, scores: np.ndarray) -> None:
        update = (
            predictions.update()
            .where(predictions.c.seq == sa.bindparam("b_seq"))
            .values(ood_score=sa.bindparam("b_score"))
        )
        params = [
            {"b_seq": int(seq), "b_score": float(score)}
            for seq, score in zip(window.rows["seq"], scores, strict=True)
        ]
        with self.engine.begin() as connection:
            connection.execute(update, params)

    def _evaluate_accuracy(self) -> None:
        after = from_micros(self.reader.watermark(FEEDBACK_WATERMARK))
        up_to = settled_now(self.settings.monitor_settle_seconds)
        labelled = read_labelled(self.engine, after, up_to)
        windows = accuracy_windows(
            labelled, min_labels=self.settings.monitor_min_labels, after=after, up_to=up_to
        )
        if not windows:
            return
        results = []
        for window in windows:
            metrics = window.metrics()
            first = int(to_micros(window.received_from))
            results.append(
                {
                    "window_id": f"{window.model_version}:labels-{first}-{to_micros(up_to)}",
                    "model_version": window.model_version,
                    "detector": "accuracy",
                    "first_seq": 0,
                    "last_seq": 0,
                    "n_rows": metrics["labels"],
                    "started_at": window.received_from,
                    "ended_at": window.received_to,
                    "evaluated_at": datetime.now(UTC),
                    "is_drift": None,
                    "score": metrics["mae"],
                    "details": {
                        **metrics,
                        "validation_mae": self._validation_mae_of(window.model_version),
                    },
                }
            )
        self._store(results)
        latest = pd.to_datetime(labelled["received_at"], utc=True).max().to_pydatetime()
        self.reader.set_watermark(to_micros(latest), FEEDBACK_WATERMARK)


def _fresh_dir(directory: Path) -> Path:
    """Fit into a new folder: a half-written one from a crash is replaced."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.parent.mkdir(parents=True, exist_ok=True)
    return directory
