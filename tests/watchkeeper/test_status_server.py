"""The background services' HTTP endpoint: metrics, and a health check that notices a
stuck loop."""

from __future__ import annotations

import socket
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
    assert response.json() == {"error": {"code": "not_found", "message": "no such path: /"}}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
def test_a_method_other_than_get_or_head_is_a_405_naming_them(
    url: str, method: str, path: str
) -> None:
    """Any method on /healthz answered 200 with the health body (a DELETE a probe could
    mistake for success); /metrics answered prometheus_client's plain-text 405."""
    response = requests.request(method, f"{url}{path}", timeout=5)

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert method in response.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
def test_head_answers_as_get_does_without_a_body(url: str, path: str) -> None:
    """HEAD /metrics answered 405 (prometheus_client serves GET only)."""
    head = _raw(url, f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n")
    get = requests.get(f"{url}{path}", headers={"Accept-Encoding": "identity"}, timeout=5)

    status, headers, body = head
    assert status == get.status_code == 200
    assert body == b""
    assert headers["content-type"] == get.headers["Content-Type"]


def _raw(url: str, request: str) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and every byte after them the server sends for ``request``
    (requests reads no body after a HEAD, so it could not tell one was sent)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(request.encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    return int(status_line.split()[1]), headers, body
