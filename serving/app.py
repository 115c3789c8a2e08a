"""The prediction server's app factory.

Collaborators are built here from the settings unless handed in, so tests build
isolated apps (own registry, database, Prometheus registry) side by side.
Gunicorn loads ``serving.app:create_app()``; each worker builds its own app.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Flask
from prometheus_client import CollectorRegistry

from serving import heap, http_errors, request_log
from serving.database_status import DatabaseProbe
from serving.label_rules import RegistryTasks
from serving.metrics import ServingMetrics
from serving.model_store import ModelStore
from serving.ood_scoring import OodScoring
from serving.prediction_buckets import prediction_buckets
from serving.prediction_log import PredictionLog
from serving.request_database import RequestDatabase
from serving.responses import options_response
from serving.routes import admin, feedback, health, metrics, model_info, openapi, predict
from serving.services import EXTENSION, Services, services
from serving.sibling_versions import served_by_siblings
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import head_revision
from watchkeeper.registry import ModelRegistry, RegisteredModel
from watchkeeper.settings import Settings

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    model_store: ModelStore | None = None,
    engine: sa.Engine | None = None,
) -> Flask:
    settings = settings or Settings()
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.serving.max_request_bytes,
        WATCHKEEPER_MAX_BATCH_SIZE=settings.serving.max_batch_size,
        WATCHKEEPER_LOG_BODY_LIMIT=settings.log.body_limit,
    )

    model_registry = (
        ModelRegistry(settings.storage.registry_path, trusted_types=settings.storage.trusted_types)
        if model_store is None
        else model_store.registry
    )
    serving_metrics = ServingMetrics(
        registry or CollectorRegistry(),
        prediction_buckets(settings.serving.prediction_buckets, model_registry),
    )

    engine = engine or create_engine(settings.storage.database_url)

    ood_scoring = None
    loading = model_store is None
    if model_store is None:
        if settings.serving.ood_in_response:
            ood_scoring = OodScoring(model_registry, percentile=settings.drift.ood_percentile)
        model_store = ModelStore(
            model_registry,
            prepare=ood_scoring.prepare if ood_scoring is not None else None,
            served_elsewhere=served_by_siblings,
        )

    def on_swap(old: RegisteredModel | None, new: RegisteredModel) -> None:
        if old is not None:
            serving_metrics.model_info.labels(old.version, old.model.task).set(0)
        serving_metrics.model_info.labels(new.version, new.model.task).set(1)
        serving_metrics.model_reloads.labels("loaded").inc()

    model_store.observe(
        on_swap=on_swap,
        on_failure=lambda _version, _error: serving_metrics.model_reloads.labels("failed").inc(),
        on_fallback=lambda fallback: serving_metrics.model_fallback.set(fallback is not None),
        after_swap=heap.refreeze,
    )
    if loading:  # after observe: a version refused at start is counted, a fallback shown
        model_store.load_current()
    serving_metrics.model_fallback.set(model_store.fallback is not None)
    if model_store.loaded is not None:
        loaded = model_store.loaded
        serving_metrics.model_info.labels(loaded.version, loaded.model.task).set(1)
    model_store.watch(settings.serving.model_poll_seconds)

    database_probe = DatabaseProbe(engine, settings.log.probe_interval).start()
    prediction_log = None
    if settings.log.enabled:
        prediction_log = PredictionLog(
            engine,
            settings.storage.spill_dir,
            serving_metrics.log,
            batch_bytes=settings.log.batch_bytes,
            flush_interval=settings.log.flush_interval,
            write_interval=settings.log.write_interval,
            probe_interval=settings.log.probe_interval,
            segment_bytes=settings.log.segment_bytes,
            max_bytes=settings.log.journal_max_bytes,
            dead_letter_max_bytes=settings.log.dead_letter_max_bytes,
            workers=settings.serving.workers,
            # serve migrates before it starts, unless the database did not answer then
            migrate=settings.storage.auto_migrate,
        ).start()
    app.extensions[EXTENSION] = Services(
        settings=settings,
        metrics=serving_metrics,
        engine=engine,
        request_database=RequestDatabase(
            engine,
            threads=settings.serving.threads,
            timeout=settings.serving.request_database_timeout,
        ),
        schema_revision=head_revision(),
        model_store=model_store,
        ood_scoring=ood_scoring,
        database_probe=database_probe,
        prediction_log=prediction_log,
        registry_tasks=RegistryTasks(model_store.registry),
    )

    request_log.init_app(app)
    http_errors.init_app(app)
    app.make_default_options_response = options_response  # type: ignore[method-assign]
    blueprints = (
        predict.bp,
        feedback.bp,
        admin.bp,
        health.bp,
        model_info.bp,
        metrics.bp,
        openapi.bp,
    )
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    return app


def shutdown(app: Flask, timeout: float | None = None) -> None:
    """Drain the prediction log's journal; gunicorn calls this as each worker exits."""
    built = services(app)
    built.model_store.stop()
    built.database_probe.stop()
    built.request_database.dispose()
    if built.prediction_log is not None:
        built.prediction_log.close(timeout)
