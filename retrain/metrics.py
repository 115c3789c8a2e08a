"""The retraining worker's Prometheus metrics, read from ``retrain_runs`` at scrape
time, so they survive restarts and count jobs started by any process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from watchkeeper.db.tables import retrain_requests, retrain_runs
from watchkeeper.registry import ModelRegistry

OUTCOMES = ("promoted", "rejected", "failed")


class RetrainCollector(Collector):
    def __init__(self, engine: sa.Engine, registry: ModelRegistry) -> None:
        self.engine = engine
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        with self.engine.connect() as connection:
            counts = dict(
                connection.execute(
                    sa.select(retrain_runs.c.outcome, sa.func.count()).group_by(
                        retrain_runs.c.outcome
                    )
                ).all()
            )
            last = connection.execute(
                sa.select(retrain_runs.c.started_at, retrain_runs.c.finished_at)
                .where(retrain_runs.c.finished_at.is_not(None))
                .order_by(retrain_runs.c.id.desc())
                .limit(1)
            ).first()
            promoted_at = connection.execute(
                sa.select(sa.func.max(retrain_runs.c.finished_at)).where(
                    retrain_runs.c.outcome == "promoted"
                )
            ).scalar()
            pending = connection.execute(
                sa.select(sa.func.count())
                .select_from(retrain_requests)
                .where(retrain_requests.c.status == "pending")
            ).scalar()
        runs = CounterMetricFamily(
            "watchkeeper_retrain_runs", "Retraining runs by outcome.", labels=["outcome"]
        )
        for outcome in (*OUTCOMES, "running"):
            runs.add_metric([outcome], counts.get(outcome, 0))
        yield runs
        queued = GaugeMetricFamily(
            "watchkeeper_retrain_requests_pending", "Retrain requests waiting for a job."
        )
        queued.add_metric([], int(pending or 0))
        yield queued
        if last is not None:
            duration = GaugeMetricFamily(
                "watchkeeper_retrain_last_run_duration_seconds",
                "Duration of the last finished retraining run.",
            )
            duration.add_metric([], (last.finished_at - last.started_at).total_seconds())
            yield duration
        if promoted_at is not None:
            promoted = GaugeMetricFamily(
                "watchkeeper_retrain_last_promotion_timestamp_seconds",
                "Unix time of the last promotion.",
            )
            promoted.add_metric([], promoted_at.timestamp())
            yield promoted
        current = self.registry.current_version()
        if current is not None:
            info = GaugeMetricFamily(
                "watchkeeper_current_model_info",
                "1 for the version the registry's current pointer names.",
                labels=["model_version"],
            )
            info.add_metric([current], 1)
            yield info
