"""The background services' HTTP endpoint: metrics, and a health check that notices a
stuck loop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter

from tests.ports import free_port
from watchkeeper.status_server import Heartbeat, start_status_server


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def heartbeat(clock: FakeClock) -> Heartbeat:
    return Heartbeat(stall_seconds=60, clock=clock)


@pytest.fixture
def url(heartbeat: Heartbeat) -> Iterator[str]:
    registry = CollectorRegistry()
    Counter("demo_cycles", "Cycles run.", registry=registry).inc(3)
    port = free_port()
    server = start_status_server("127.0.0.1", port, registry, heartbeat)
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


def test_metrics_path_serves_the_registry(url: str) -> None:
    response = requests.get(f"{url}/metrics", timeout=5)

    assert response.status_code == 200
    assert "demo_cycles_total 3.0" in response.text


def test_healthz_is_ok_while_the_loop_beats(
    url: str, heartbeat: Heartbeat, clock: FakeClock
) -> None:
    clock.now += 59
    response = requests.get(f"{url}/healthz", timeout=5)

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "seconds_since_progress": 59.0,
        "stall_seconds": 60,
        "thread_pools": {"openmp": 1, "blas": 1},  # the test runner's, one thread each
    }


def test_healthz_fails_once_a_cycle_runs_past_the_stall_limit(
    url: str, heartbeat: Heartbeat, clock: FakeClock
) -> None:
    clock.now += 61
    stalled = requests.get(f"{url}/healthz", timeout=5)
    heartbeat.beat()
    recovered = requests.get(f"{url}/healthz", timeout=5)

    assert stalled.status_code == 503 and stalled.json()["status"] == "stalled"
    assert recovered.status_code == 200


def test_other_paths_are_not_found(url: str) -> None:
    response = requests.get(f"{url}/", timeout=5)

    assert response.status_code == 404
    assert response.json() == {"error": "no such path: /"}
