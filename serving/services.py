"""What a prediction server app is built from, as one typed record.

``create_app`` builds the collaborators and stores them here; routes, hooks and tests
read them through :func:`services` instead of string keys into ``app.extensions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import current_app

from serving.database_status import DatabaseProbe
from serving.label_rules import RegistryTasks
from serving.metrics import ServingMetrics
from serving.model_store import ModelStore
from serving.ood_scoring import OodScoring
from serving.prediction_log import PredictionLog
from serving.request_database import RequestDatabase
from watchkeeper.settings import Settings

EXTENSION = "watchkeeper"


@dataclass
class Services:
    settings: Settings
    metrics: ServingMetrics
    engine: sa.Engine
    # the database for request threads: bounded in threads and time
    request_database: RequestDatabase
    schema_revision: str
    model_store: ModelStore
    # None when a model store is handed in: it was not built to prepare OOD references
    ood_scoring: OodScoring | None
    database_probe: DatabaseProbe
    # None with WATCHKEEPER_LOG_ENABLED=false
    prediction_log: PredictionLog | None
    # the registered versions' tasks, for /feedback's labels with the database down
    registry_tasks: RegistryTasks


def services(app: Any = None) -> Services:
    """The services of ``app``, by default the app handling the current request."""
    return (app or current_app).extensions[EXTENSION]  # type: ignore[no-any-return]


def services_of(app: Any) -> Services | None:
    """The services of ``app`` if it is a Watchkeeper app whose build has finished: a
    gunicorn hook or an error reporter may see another WSGI app, or none yet."""
    extensions = getattr(app, "extensions", None)
    return None if extensions is None else extensions.get(EXTENSION)
