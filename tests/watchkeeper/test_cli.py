"""The command line: model list, rollback and the container health check as an operator
and a container runtime use them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.ports import free_port
from tests.processes import Process
from watchkeeper.cli import main
from watchkeeper.registry import ModelRegistry
from watchkeeper.status_server import Heartbeat, start_status_server
from watchkeeper.training import TrainedModel


def test_model_list_shows_status_metrics_and_current(
    registry_dir: Path,
    trained: TrainedModel,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ModelRegistry(registry_dir).register(trained, make_current=False, status="rejected")
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(registry_dir))

    assert main(["model", "list"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("* v1") and "registered" in lines[1] and "15,031" in lines[1]
    assert lines[2].startswith("  v2") and "rejected" in lines[2]


def test_rollback_skips_rejected_versions(
    registry_dir: Path,
    trained: TrainedModel,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry = ModelRegistry(registry_dir)
    registry.register(trained, make_current=False, status="rejected")  # v2
    registry.register(trained, status="promoted")  # v3, current
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(registry_dir))

    assert main(["model", "rollback"]) == 0

    assert registry.current_version() == "v1"
    assert "current model: v1 (was v3)" in capsys.readouterr().out
    assert main(["model", "rollback", "v3"]) == 0
    assert registry.current_version() == "v3"


def test_rollback_with_nothing_earlier_is_a_clear_error(
    registry_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(registry_dir))

    assert main(["model", "rollback"]) == 1

    assert "no earlier usable version" in capsys.readouterr().err


def test_healthcheck_passes_for_a_live_worker_and_fails_for_a_stuck_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = [0.0]
    heartbeat = Heartbeat(stall_seconds=30, clock=lambda: now[0])
    port = free_port()
    server = start_status_server("127.0.0.1", port, CollectorRegistry(), heartbeat)
    monkeypatch.setenv("WATCHKEEPER_RETRAIN_PORT", str(port))
    try:
        assert main(["healthcheck", "worker"]) == 0
        assert f"healthy: http://127.0.0.1:{port}/healthz" in capsys.readouterr().out
        now[0] = 31.0
        assert main(["healthcheck", "worker"]) == 1
        assert '503 {"status": "stalled"' in capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_fails_when_nothing_listens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    monkeypatch.setenv("WATCHKEEPER_MONITOR_PORT", str(port))
    monkeypatch.setenv("WATCHKEEPER_MONITOR_HOST", "0.0.0.0")

    assert main(["healthcheck", "monitor"]) == 1
    assert f"unhealthy: http://127.0.0.1:{port}/healthz" in capsys.readouterr().err


@pytest.mark.integration
def test_healthcheck_of_a_serving_process_reads_its_readiness(
    start_watchkeeper: Callable[..., Process], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_watchkeeper("serve")
    monkeypatch.setenv("WATCHKEEPER_PORT", server.url.rsplit(":", 1)[1])

    assert main(["healthcheck"]) == 0


def test_alertmanager_token_output_without_a_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="needs WATCHKEEPER_ADMIN_TOKEN"):
        main(["alertmanager-config", "--token-output", str(tmp_path / "token")])

    assert not (tmp_path / "token").exists()
