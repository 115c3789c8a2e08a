"""The libraries a serving worker needs, imported by gunicorn's master before it forks
the workers.

A worker used to import them itself: ~3 s of CPU each (most of it skops, which imports
every scikit-learn estimator to list them), paid again by every worker gunicorn starts,
at start and after a crash. Imported once in the master, they are in every forked
worker already, and their pages are shared until written.

Only third-party libraries: Watchkeeper's own modules are still imported by each worker,
so that a ``HUP`` (new workers, the master kept) runs the code on disk. None of these
starts a thread on import (a thread would not survive the fork), and the numeric pools
are set to one thread before the master starts (``watchkeeper serve``)."""

from __future__ import annotations

import importlib

LIBRARIES = (
    "numpy",
    "pandas",
    "scipy.stats",
    "sklearn.pipeline",
    "sklearn.ensemble",
    "skops.io",
    "sqlalchemy",
    "flask",
    "orjson",
    "pydantic",
    "prometheus_client",
)


def preload_libraries() -> None:
    for name in LIBRARIES:
        importlib.import_module(name)
