"""The prediction histogram's bounds come from the registry's oldest version that
records target quantiles; nothing read there stops a worker from starting."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask

from serving.prediction_buckets import FALLBACK, prediction_buckets
from tests.bad_versions import rewrite_metadata
from watchkeeper.registry import ModelRegistry


def _with_quantiles(quantiles: list[float]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(meta: dict[str, Any]) -> dict[str, Any]:
        meta["training_window"]["target_quantiles"] = quantiles
        return meta

    return change


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_infinite_target_quantile_does_not_stop_a_worker_starting(
    make_app: Callable[..., Flask], registry_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``[Infinity]`` (which Python's JSON reader takes) once raised "Must have at least
    two buckets" in every worker: gunicorn exited."""
    rewrite_metadata(registry_dir, "v1", _with_quantiles([float("inf")]))

    with caplog.at_level(logging.WARNING, logger="serving.prediction_buckets"):
        client = make_app().test_client()

    assert client.get("/healthz").status_code == 200
    assert "target_quantiles.0: Input should be a finite number" in caplog.text
    assert prediction_buckets((), ModelRegistry(registry_dir)) == FALLBACK


class _Registry:
    """Versions whose records say what ``records`` holds, or raise it."""

    def __init__(self, records: dict[str, object]) -> None:
        self.records = records

    def versions(self) -> list[str]:
        return list(self.records)

    def record(self, version: str) -> object:
        found = self.records[version]
        if isinstance(found, Exception):
            raise found
        return SimpleNamespace(training_window=SimpleNamespace(target_quantiles=found))


def test_quantiles_a_histogram_cannot_take_give_the_fallback_bounds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = _Registry({"v1": ValueError("not ours"), "v2": (float("inf"), float("nan"))})

    with caplog.at_level(logging.WARNING, logger="serving.prediction_buckets"):
        assert prediction_buckets((), registry) == FALLBACK  # type: ignore[arg-type]

    assert "skipping v1: not ours" in caplog.text
    assert "v2 records no finite target quantile" in caplog.text


def test_the_finite_quantiles_of_the_oldest_version_are_the_bounds() -> None:
    registry = _Registry({"v1": None, "v2": (3.0, float("inf"), 1.0, 3.0), "v3": (9.0,)})

    assert prediction_buckets((), registry) == (1.0, 3.0)  # type: ignore[arg-type]
