"""Hot reload: serving follows the registry's current pointer without restarts or
failed requests, and keeps the old model when the new one will not load."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from serving.services import services
from tests.processes import Process, metric, wait_for
from watchkeeper.registry import MODEL_FILE, ModelRegistry
from watchkeeper.training import TrainedModel


@pytest.mark.integration
def test_promotion_under_load_switches_every_worker_with_no_failed_request(
    start_watchkeeper: Callable[..., Process],
    registry_dir: Path,
    trained: TrainedModel,
    replay_records: list[dict[str, Any]],
) -> None:
    server = start_watchkeeper(
        "serve", WATCHKEEPER_WORKERS="2", WATCHKEEPER_MODEL_POLL_SECONDS="0.2"
    )
    registry = ModelRegistry(registry_dir)
    seen: list[tuple[float, int, str | None]] = []  # (sent at, status, version)
    stop = threading.Event()

    def load(offset: int) -> None:
        i = offset
        while not stop.is_set():
            sent_at = time.monotonic()
            response = server.post(
                "/predict", json={"features": replay_records[i % len(replay_records)]}
            )
            version = response.json().get("model_version") if response.status_code == 200 else None
            seen.append((sent_at, response.status_code, version))
            i += 4

    def reloaded() -> float | None:
        text = server.get("/metrics").text
        return metric(text, "watchkeeper_model_reloads_total", outcome="loaded")

    threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    try:
        assert wait_for(lambda: len(seen) > 100, timeout=30)
        registry.register(trained)  # v2 becomes current while requests flow
        # Both workers have swapped once each has counted its reload (the count follows
        # the swap); how long loading takes depends on the machine's load, so the test
        # waits for that instead of assuming a time.
        assert wait_for(lambda: reloaded() == 2, timeout=120)
        swapped_at = time.monotonic()
        assert wait_for(
            lambda: sum(1 for t, _, v in list(seen) if t > swapped_at and v == "v2") > 100,
            timeout=60,
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert [status for _, status, _ in seen if status != 200] == []
    versions = [v for _, _, v in seen]
    assert versions[0] == "v1" and set(versions) == {"v1", "v2"}
    late = [v for t, _, v in seen if t > swapped_at]
    assert set(late) == {"v2"}, "once both workers have reloaded, no request gets the old model"
    text = server.get("/metrics").text
    assert metric(text, "watchkeeper_model_reloads_total", outcome="loaded") == 2  # one per worker
    assert metric(text, "watchkeeper_model_info", model_version="v2", task="regression") == 1


def test_corrupt_new_version_is_not_served_and_is_reported(
    app: Flask, registry_dir: Path, trained: TrainedModel, record: dict[str, Any]
) -> None:
    registry = ModelRegistry(registry_dir)
    version = registry.register(trained, make_current=False)
    (registry_dir / "versions" / version / MODEL_FILE).write_bytes(b"not a model")
    registry.set_current(version)
    store = services(app).model_store

    assert store.refresh() is False
    client = app.test_client()
    assert client.post("/predict", json={"features": record}).json["model_version"] == "v1"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert "v2 not loaded, still serving v1" in ready.json["checks"]["model"]["reload_error"]
    text = client.get("/metrics").get_data(as_text=True)
    assert metric(text, "watchkeeper_model_reloads_total", outcome="failed") == 1
    assert store.refresh() is False  # the refused version is not retried until current moves
    assert (
        metric(
            client.get("/metrics").get_data(as_text=True),
            "watchkeeper_model_reloads_total",
            outcome="failed",
        )
        == 1
    )
