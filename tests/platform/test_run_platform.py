"""``make run`` for real: Prometheus scrapes the three components and loaded the
project's rules, a real rule's alert goes through Alertmanager to the notification
sink, every URL of the summary answers, the generated admin token works, the output is
what a user wants to read, and Ctrl-C leaves no process behind.

The tests run in file order against one platform; the last one stops it. The alert
test comes late: its rule's `for:` runs while the tests before it do their work. The
platform runs its alerts 15 times faster than production (``WATCHKEEPER_RUN_ALERT_SPEEDUP``,
scrapes every second): the rule's `for: 1m` is 4 s, Alertmanager's group wait 2 s.
"""

from __future__ import annotations

import shutil
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import json_record
from tests.platform.conftest import (
    READY_LINE,
    REPO,
    Platform,
    alive,
    error_lines,
    platform_env,
    refused_start,
    require_services,
    start_platform,
)
from tests.processes import wait_for
from watchkeeper.dataset import Dataset
from watchkeeper.local_run.summary import GRAFANA_MISSING
from watchkeeper.registry import ModelRegistry
from watchkeeper.training import TrainedModel

# Starting the platform alone can take minutes on a busy machine: it counts towards the
# first test's time.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

JOBS = {"watchkeeper-serving", "watchkeeper-monitor", "watchkeeper-retrain"}
# A real rule of prometheus/rules/alerts.yml (`for: 1m`, 4 s here), fired by a real failed run.
ALERT = "WatchkeeperRetrainingFailed"


def _prometheus(platform: Platform, path: str, **params: str) -> Any:
    url = platform.url("WATCHKEEPER_RUN_PROMETHEUS_PORT", path)
    response = requests.get(url, params=params, timeout=10)
    response.raise_for_status()
    return response.json()["data"]


def project_rule_groups() -> set[str]:
    """The rule groups of every rule file the committed Prometheus config names."""
    prometheus = REPO / "prometheus"
    config = yaml.safe_load((prometheus / "prometheus.yml").read_text())
    return {
        group["name"]
        for path in config["rule_files"]
        for group in yaml.safe_load((prometheus / path).read_text())["groups"]
    }


def _token(platform: Platform) -> str:
    return (platform.data_dir / "admin-token").read_text().strip()


def test_prometheus_scrapes_all_three_components_and_loaded_the_rules(
    platform: Platform,
) -> None:
    def all_up() -> bool:
        targets = _prometheus(platform, "/api/v1/targets")["activeTargets"]
        return {t["labels"]["job"] for t in targets if t["health"] == "up"} >= JOBS

    assert wait_for(all_up, timeout=60, interval=0.5), _prometheus(platform, "/api/v1/targets")
    groups = {g["name"]: g for g in _prometheus(platform, "/api/v1/rules")["groups"]}
    assert set(groups) == project_rule_groups()
    alerts = {r["name"]: r for g in groups.values() for r in g["rules"] if r["type"] == "alerting"}
    assert ALERT in alerts and "WatchkeeperDatasetDriftSustained" in alerts
    assert alerts[ALERT]["duration"] == 60 / 15  # the run's alert speedup


def test_every_url_of_the_summary_answers(platform: Platform) -> None:
    urls = platform.summary_urls()
    expected = {"API", "OpenAPI", "metrics", "monitor", "worker", "Prometheus", "Alertmanager"}
    assert expected <= set(urls), platform.summary
    for label, url in urls.items():
        assert requests.get(url, timeout=10).status_code == 200, (label, url)
    assert "watchkeeper report" in platform.summary
    assert "watchkeeper replay" in platform.output()  # the next command to try


def test_grafana_is_started_where_installed_and_skipped_in_one_line_where_not(
    platform: Platform,
) -> None:
    if shutil.which("grafana-server") is None:
        assert platform.output().count(GRAFANA_MISSING) == 1
        assert "Grafana" not in platform.summary_urls()
    else:
        url = platform.summary_urls()["Grafana"]
        assert requests.get(url, timeout=10).status_code == 200


def test_the_generated_admin_token_is_private_printed_once_and_works(platform: Platform) -> None:
    token_file = platform.data_dir / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = _token(platform)
    assert platform.output().count(token) == 1, "printed once, at its creation"
    retrain = platform.url("WATCHKEEPER_PORT", "/admin/retrain")
    refused = requests.post(retrain, json={}, headers={"Authorization": "Bearer wrong"}, timeout=30)
    assert refused.status_code == 403
    answer = requests.post(
        retrain,
        json={"reason": "platform test"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text


def test_the_output_says_what_happened_in_one_line_each(
    platform: Platform, ames: Dataset, trained: TrainedModel
) -> None:
    """A monitor window's verdict, a hot swap in each serving worker, a retraining run's
    outcome: one line each; no start-up noise a user cannot act on. Every problem is
    listed at once."""
    names = list(trained.model.schema.names)
    frame = ames.between(200901, None).frame[names].head(120)
    body = {"instances": [json_record(row) for _, row in frame.iterrows()]}
    predict = platform.url("WATCHKEEPER_PORT", "/predict")
    assert requests.post(predict, json=body, timeout=60).status_code == 200
    problems = []

    def verdicts() -> list[str]:
        return [line for line in platform.output().splitlines() if "window v1:" in line]

    if not wait_for(lambda: bool(verdicts()), timeout=120, interval=0.5):
        problems.append("no verdict line for the monitor's window")
    elif not (len(verdicts()) == 1 and " INFO monitoring.monitor: window v1:" in verdicts()[0]):
        problems.append(f"not one INFO verdict line: {verdicts()}")

    version = ModelRegistry(Path(platform.env["WATCHKEEPER_REGISTRY_PATH"])).register(trained)

    def swapped() -> bool:
        return platform.output().count(f"now serving model {version} (was v1)") == 2

    if not wait_for(swapped, timeout=60, interval=0.5):
        problems.append("no line per serving worker for the hot swap")
    # the failed run of the admin-token test: its reason, without a traceback
    if not wait_for(lambda: "retraining run 1: failed (" in platform.output(), timeout=120):
        problems.append("no one-line outcome of the failed retraining run")
    output = platform.output()
    for noise in ("Traceback", "Context impl", "Will assume", "None of PyTorch"):
        if noise in output:
            problems.append(f"noise in the output: {noise}")
    print(output[-4000:])  # shown with the failure
    assert not problems, "\n".join(problems)


def test_a_second_run_on_the_same_data_dir_is_refused_and_leaves_the_first_alone(
    platform: Platform, tmp_path: Path
) -> None:
    """It rewrote the first run's configs and started a second Prometheus on its TSDB
    and a second Alertmanager on its storage; only its server refused, 25-40 s later."""
    run_dir = platform.data_dir / "run"
    configs = {
        name: (run_dir / name).read_bytes() for name in ("prometheus.yml", "alertmanager.yml")
    }
    [supervisor] = [
        pid
        for pid in alive(platform.started)
        if b"watchkeeper.local_run" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    code, output = refused_start(platform_env(platform.data_dir), tmp_path / "out")
    assert code != 0
    assert error_lines(output) == [
        f"error: {platform.data_dir} (WATCHKEEPER_DATA_DIR) is in use by another `make run` "
        f"(pid {supervisor}): stop it first, or set WATCHKEEPER_DATA_DIR to another directory"
    ], output
    assert {name: (run_dir / name).read_bytes() for name in configs} == configs
    assert (platform.data_dir / "prometheus" / "lock").exists(), "Prometheus locks its TSDB"
    assert "Traceback" not in output


def test_a_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    require_services()
    env = platform_env(tmp_path / "var")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", int(env["WATCHKEEPER_RUN_PROMETHEUS_PORT"])))
        holder.listen()
        output = tmp_path / "out"
        process = start_platform(env, output)
        try:
            code = process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    text = output.read_text()
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert code != 0
    assert errors == [
        f"error: port {env['WATCHKEEPER_RUN_PROMETHEUS_PORT']} (Prometheus) is already in use: "
        "stop what holds it, or set WATCHKEEPER_RUN_PROMETHEUS_PORT to another port"
    ], text
    assert READY_LINE not in text and "Traceback" not in text
    assert not (tmp_path / "var" / "registry").exists(), "nothing done before the check"


def test_two_settings_on_one_port_are_one_clear_line(tmp_path: Path) -> None:
    """The loser exited, yet the run printed "Watchkeeper is up" and its summary."""
    require_services()
    env = platform_env(tmp_path / "var")
    env["WATCHKEEPER_RETRAIN_PORT"] = env["WATCHKEEPER_MONITOR_PORT"]
    code, output = refused_start(env, tmp_path / "out")
    assert code != 0
    assert error_lines(output) == [
        f"error: WATCHKEEPER_MONITOR_PORT and WATCHKEEPER_RETRAIN_PORT are both "
        f"{env['WATCHKEEPER_MONITOR_PORT']}: the monitor and the retraining worker cannot "
        "share a port; set one of them to another port"
    ], output
    assert "Watchkeeper is up" not in output and "Traceback" not in output


@pytest.mark.parametrize("held", [None, "another-token"])
def test_an_alert_token_file_without_the_admin_token_is_one_clear_line(
    tmp_path: Path, held: str | None
) -> None:
    """The run came up, and every alert routed to retraining failed in Alertmanager's
    log only."""
    require_services()
    token_file = tmp_path / "alert-token"
    if held is not None:
        token_file.write_text(held + "\n")
    env = platform_env(
        tmp_path / "var",
        WATCHKEEPER_ADMIN_TOKEN="secret-abc",
        WATCHKEEPER_ALERT_TOKEN_FILE=str(token_file),
    )
    code, output = refused_start(env, tmp_path / "out")
    problem = (
        "cannot read it (No such file or directory); Alertmanager sends the admin token from "
        "it: point it at a file holding WATCHKEEPER_ADMIN_TOKEN, or unset it"
        if held is None
        else "does not hold WATCHKEEPER_ADMIN_TOKEN"
    )
    assert code != 0
    [line] = error_lines(output) or [output]
    assert line.startswith(f"error: WATCHKEEPER_ALERT_TOKEN_FILE {token_file}"), output
    assert problem in line
    assert "Watchkeeper is up" not in output and "Traceback" not in output
    assert not (tmp_path / "var" / "registry").exists(), "refused before training"


def test_an_unwritable_run_directory_is_one_clear_line(
    tmp_path: Path, unwritable_dir: Path
) -> None:
    """A PermissionError's traceback came out of writing the configs."""
    require_services()
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    (data_dir / "run").symlink_to(unwritable_dir)
    code, output = refused_start(platform_env(data_dir), tmp_path / "out")
    assert code != 0
    [line] = error_lines(output) or [output]
    assert line.startswith(f"error: cannot write {data_dir / 'run'}/"), output
    assert line.endswith(
        f"; WATCHKEEPER_DATA_DIR ({data_dir}) must be a directory this user can write"
    )
    assert "Traceback" not in output


def test_a_rule_fires_and_reaches_alertmanager_and_the_notification_log(
    platform: Platform,
) -> None:
    """The retrain requested by the admin-token test fails (no labels yet): the worker's
    counter rises, WatchkeeperRetrainingFailed goes pending then firing after its
    `for:`, Alertmanager routes it to people (the sink) after its group wait."""
    alertmanager = platform.url("WATCHKEEPER_RUN_ALERTMANAGER_PORT", "/api/v2/alerts")

    def at_alertmanager() -> bool:
        alerts = requests.get(alertmanager, timeout=10).json()
        return any(a["labels"]["alertname"] == ALERT for a in alerts)

    assert wait_for(at_alertmanager, timeout=240, interval=1), (
        _prometheus(platform, "/api/v1/alerts"),
        platform.output()[-3000:],
    )
    log = platform.data_dir / "notifications.log"

    def notified() -> bool:
        return log.exists() and ALERT in log.read_text()

    assert wait_for(notified, timeout=180, interval=1), platform.output()[-3000:]
    [line] = [line for line in log.read_text().splitlines() if ALERT in line]
    assert " FIRING " in line and "severity=warning" in line
    assert "A retraining run failed" in line  # the rule's summary
    runbook = (REPO / "docs" / "runbook.md").as_uri()
    assert f"| runbook: {runbook}#retraining-failed" in line  # opens this checkout's runbook
    assert f"notification: {line}" in platform.output()  # echoed to the terminal


def test_ctrl_c_stops_every_process(platform: Platform) -> None:
    started = set(platform.started)
    # make, the launcher, the sink, Alertmanager, Prometheus, gunicorn and its two
    # workers, the monitor, the retraining worker
    assert len(started) >= 10, started
    platform.interrupt()
    assert wait_for(lambda: not alive(started), timeout=90), alive(started)
    assert "\nstopping Watchkeeper...\n" in platform.output()
    assert "\nstopped\n" in platform.output()
