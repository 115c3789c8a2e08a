"""``watchkeeper serve`` for real: gunicorn with two workers on a loopback port.

Metrics aggregate across workers (multiprocess mode), and SIGTERM drains every
worker's queued log entries before the processes exit.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.processes import Process, metric

pytestmark = pytest.mark.integration


def test_request_count_is_exact_across_two_workers(
    start_watchkeeper: Callable[..., Process], replay_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    server = start_watchkeeper("serve", WATCHKEEPER_WORKERS="2")
    n = 240

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(
                lambda r: server.post("/predict", json={"features": r}).status_code,
                replay_records[:n],
            )
        )

    assert statuses == [200] * n
    text = server.get("/metrics").text
    assert (
        metric(
            text,
            "watchkeeper_http_requests_total",
            endpoint="/predict",
            method="POST",
            status="200",
        )
        == n
    )
    assert metric(text, "watchkeeper_predictions_total", model_version="v1") == n
    assert metric(text, "watchkeeper_http_request_duration_seconds_count", endpoint="/predict") == n
    worker_files = {
        p.name.rsplit("_", 1)[-1] for p in (tmp_path / "var" / "prometheus-multiproc").glob("*.db")
    }
    assert len(worker_files) >= 2, "both workers should have served requests"


def test_sigterm_drains_every_accepted_request_into_the_log(
    start_watchkeeper: Callable[..., Process], replay_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    # A long flush interval keeps entries queued in the workers when SIGTERM lands.
    server = start_watchkeeper(
        "serve",
        WATCHKEEPER_WORKERS="2",
        WATCHKEEPER_LOG_FLUSH_INTERVAL="5",
        WATCHKEEPER_LOG_BATCH_SIZE="100000",
    )
    n = 150

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(
            pool.map(lambda r: server.post("/predict", json={"features": r}), replay_records[:n])
        )
    accepted = {r.headers["X-Request-ID"] for r in responses if r.status_code == 200}
    assert len(accepted) == n
    assert server.stop() == 0

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'var' / 'watchkeeper.db'}")
    with engine.connect() as connection:
        logged = {row[0] for row in connection.execute(sa.text("SELECT request_id FROM requests"))}
        n_predictions = connection.execute(sa.text("SELECT count(*) FROM predictions")).scalar()
    engine.dispose()
    assert logged == accepted
    assert n_predictions == n
