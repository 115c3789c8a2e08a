"""The command line: model list, rollback and the container health check as an operator
and a container runtime use them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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


def test_alertmanager_token_output_without_a_token_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["alertmanager-config", "--token-output", str(tmp_path / "token")]) == 1

    assert "needs WATCHKEEPER_ADMIN_TOKEN" in capsys.readouterr().err
    assert not (tmp_path / "token").exists()


# -- rollback to a version retraining judged unfit --------------------------------


def test_rollback_to_a_rejected_version_is_refused_without_force(
    registry_dir: Path,
    trained: TrainedModel,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry = ModelRegistry(registry_dir)
    registry.register(
        trained,
        make_current=False,
        status="rejected",
        notes={"reason": "candidate MAE 21,280 is not below champion MAE 18,789 by 2%"},
    )  # v2
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(registry_dir))

    assert main(["model", "rollback", "v2"]) == 1

    assert registry.current_version() == "v1"
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: refusing to put v2 into production: retraining rejected it")
    assert "candidate MAE 21,280" in line and "--force" in line

    assert main(["model", "rollback", "v2", "--force"]) == 0
    assert registry.current_version() == "v2"


# -- failures end in one line, and a traceback only with --debug ------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``watchkeeper ARGS`` in its own process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "watchkeeper.cli", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and "; " in line  # what failed; what to do
    return line


def test_replay_to_a_server_that_is_not_up_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    line = _one_line(_cli("replay", "--url", url, "--limit", "3"))

    assert f"cannot reach the prediction server at {url}" in line
    assert "watchkeeper serve" in line


def test_debug_shows_the_traceback() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = _cli("replay", "--url", url, "--limit", "3", "--debug")

    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ConnectionError" in result.stderr


@pytest.mark.parametrize("command", [["model", "show", "v9"], ["model", "rollback", "v9"]])
def test_an_unknown_model_version_is_one_line(registry_dir: Path, command: list[str]) -> None:
    result = _cli(*command, env={"WATCHKEEPER_REGISTRY_PATH": str(registry_dir)})

    line = _one_line(result)
    assert "model version 'v9' is not registered" in line and "model list" in line


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg://wk:hunter2@127.0.0.1:{port}/wk", "the database at"),
        ("not a url :hunter2", "is not a database URL"),
        ("nosuchdb://wk:hunter2@127.0.0.1/wk", "is not a database URL"),
    ],
)
def test_a_bad_database_url_is_one_line_without_its_password(url: str, expected: str) -> None:
    result = _cli("db", "current", env={"WATCHKEEPER_DATABASE_URL": url.format(port=free_port())})

    line = _one_line(result)
    assert expected in line and "WATCHKEEPER_DATABASE_URL" in line
    assert "hunter2" not in result.stderr + result.stdout


def test_invalid_configuration_is_one_line_naming_the_variable() -> None:
    result = _cli("settings", env={"WATCHKEEPER_PORT": "eighty"})

    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: invalid configuration: WATCHKEEPER_PORT: ")


# -- settings -----------------------------------------------------------------------


def test_settings_mask_the_database_password_as_the_admin_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "WATCHKEEPER_DATABASE_URL", "postgresql+psycopg://wk:hunter2@db:5432/wk?password=pw2"
    )
    monkeypatch.setenv("WATCHKEEPER_ADMIN_TOKEN", "admin-secret")
    monkeypatch.setenv("WATCHKEEPER_ALERT_PEOPLE_URL", "https://bot:chat-secret@chat/notify")

    assert main(["settings"]) == 0

    out = capsys.readouterr().out
    shown = json.loads(out)
    assert shown["database_url"] == "postgresql+psycopg://wk:***@db:5432/wk?password=***"
    assert shown["admin_token"] == "**********"
    assert shown["alert_people_url"] == "https://bot:***@chat/notify"
    for secret in ("hunter2", "pw2", "admin-secret", "chat-secret"):
        assert secret not in out


@pytest.mark.parametrize("args", [["settings"], ["settings", "--markdown"]])
def test_settings_into_a_pipe_closed_early_ends_quietly(args: list[str]) -> None:
    """`watchkeeper settings | head`: the reader is gone before we write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "watchkeeper.cli", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)

    assert result.stderr == ""
    assert result.returncode == 128 + signal.SIGPIPE
