"""Dashboards and alerts against what really runs: with serving, the monitor and the
retraining worker scraped by a real Prometheus and real traffic replayed, every panel
query (its variables replaced by their "All" values, as Grafana sends it by default)
and every variable's series returns data, and every metric a query or alert names is
exported."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from monitoring.metrics import MonitorCollector
from monitoring.monitor import MonitorStatus
from monitoring.replay import Replayer
from serving.metrics import ServingMetrics
from tests.monitoring import classifier_log
from tests.monitoring.results import window_result
from tests.observability import Server
from tests.processes import Process, metric, wait_for
from watchkeeper.dataset import Dataset
from watchkeeper.grafana.dashboards import build, panel_queries, substitute_all
from watchkeeper.grafana.queries import served_task
from watchkeeper.registry import ModelRegistry
from watchkeeper.task import Task
from watchkeeper.training import TrainingParams, train

pytestmark = pytest.mark.integration

TOKEN = "dashboards-token"
RULES = Path(__file__).resolve().parents[2] / "prometheus" / "rules"
LABEL_VALUES = re.compile(r"^label_values\((.*), \w+\)$")
METRIC = re.compile(r"\b(watchkeeper_[a-z0-9_]+|watchkeeper:[a-z0-9_:]+)")


def _exported_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            if kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
    return names


def _rule_expressions() -> tuple[set[str], list[str]]:
    """Recorded names and alert expressions, but a classifier's alerts: a regression
    model's run exports none of their metrics (the classifier test checks them)."""
    recorded, expressions = set(), []
    for path in RULES.glob("*.yml"):
        if path.name == "classification.yml":
            continue
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                expressions.append(rule["expr"])
                if "record" in rule:
                    recorded.add(rule["record"])
    return recorded, expressions


@pytest.mark.timeout(900)  # replays, a retrain and a promotion: long on a busy machine
def test_every_dashboard_query_returns_data_and_names_only_exported_metrics(
    start_watchkeeper: Callable[..., Process],
    start_prometheus: Callable[..., Server],
    ames: Dataset,
) -> None:
    auth = {"WATCHKEEPER_ADMIN_TOKEN": TOKEN}
    server = start_watchkeeper("serve", WATCHKEEPER_MODEL_POLL_SECONDS="0.5", **auth)
    monitor = start_watchkeeper(
        "monitor",
        WATCHKEEPER_MONITOR_INTERVAL="0.5",
        WATCHKEEPER_MONITOR_SETTLE_SECONDS="0.2",
        # windows of 100: the 241 sales of 2010 close windows of the promoted version,
        # whose drift gauges are the only ones the monitor exports once it is served,
        # even when a worker still answers its first batch with the replaced one
        WATCHKEEPER_MONITOR_WINDOW_SIZE="100",
        WATCHKEEPER_MONITOR_MIN_SAMPLES="100",
        WATCHKEEPER_DRIFT_MULTIVARIATE="true",
    )
    worker = start_watchkeeper("retrain worker", WATCHKEEPER_RETRAIN_POLL_SECONDS="0.5", **auth)
    prometheus = start_prometheus(
        {
            "watchkeeper-serving": server.url.removeprefix("http://"),
            "watchkeeper-monitor": monitor.url.removeprefix("http://"),
            "watchkeeper-retrain": worker.url.removeprefix("http://"),
        }
    )

    Replayer(server.url, feedback_delay=0.2).run(ames.between(200801, 201012), limit=300)
    Replayer(server.url, batch_size=50, feedback_delay=0.2).run(
        ames.between(200901, 201012), limit=600
    )
    server.post("/predict", json={"features": {}})  # a rejected request for the 4xx ratio
    # every accepted prediction stored first: the job's labelled rows, and so the gate's
    # verdict, are the same in every run (a writer behind on a busy machine left the
    # newest out of the holdout, and the candidate was once rejected)
    assert wait_for(
        lambda: metric(server.get("/metrics").text, "watchkeeper_log_queue_depth") == 0,
        timeout=120,
        interval=0.5,
    )
    assert server.post("/admin/retrain", headers={"Authorization": f"Bearer {TOKEN}"}).ok
    assert wait_for(
        lambda: (
            metric(
                worker.get("/metrics").text, "watchkeeper_retrain_runs_total", outcome="promoted"
            )
            == 1
        ),
        timeout=120,
        interval=0.5,
    ), worker.log_path.read_text()[-2000:]

    # traffic on the promoted version, seen by the monitor, once every worker serves it:
    # by the workers' own gauges (asking /model a few times may reach one worker only,
    # and the other's v1 answers then leave v2 short of a window)
    def every_worker_serves_v2() -> bool:
        text = server.get("/metrics").text
        served = {
            version: metric(
                text, "watchkeeper_model_info", model_version=version, task="regression"
            )
            for version in ("v1", "v2")
        }
        return served["v2"] == 1 and not served["v1"]

    assert wait_for(every_worker_serves_v2, timeout=60, interval=0.5)
    Replayer(server.url, batch_size=50, feedback_delay=0.2).run(ames.between(201001, 201012))

    dashboards = build().values()
    # a regression model is served: the classifier's panels are the other task's, with
    # no series (test_the_served_models_task_shows_its_panels_and_empties_the_others)
    classifier = served_task(Task.CLASSIFICATION)
    queries = [
        (d["title"], title, substitute_all(q, d))
        for d in dashboards
        for title, q in panel_queries(d)
        if classifier not in q
    ]
    hidden = [
        (d["title"], title, substitute_all(q, d))
        for d in dashboards
        for title, q in panel_queries(d)
        if classifier in q
    ]
    # a variable's values come from the series inside its label_values(…)
    queries += [
        (
            d["title"],
            f"variable {v['name']}",
            substitute_all(LABEL_VALUES.sub(r"\1", v["definition"]), d),
        )
        for d in dashboards
        for v in d["templating"]["list"]
        if v["type"] == "query"
    ]
    assert all("$" not in q for _, _, q in queries), [q for _, _, q in queries if "$" in q]

    def empty() -> list[tuple[str, str, str]]:
        return [
            item
            for item in queries
            if not prometheus.get("/api/v1/query", query=item[2]).json()["data"]["result"]
        ]

    # the monitor fits the promoted version's detectors before its first window's
    # verdict: minutes with both cores busy
    assert wait_for(lambda: not empty(), timeout=300, interval=2), (
        [title for _, title, _ in empty()],
        [line for line in server.get("/metrics").text.splitlines() if "model_info" in line],
        empty()[:1],
    )
    assert all(
        not prometheus.get("/api/v1/query", query=q).json()["data"]["result"] for _, _, q in hidden
    )

    exported = set()
    for process in (server, monitor, worker):
        exported |= _exported_names(process.get("/metrics").text)
    recorded, rule_expressions = _rule_expressions()
    named = {m for _, _, q in queries for m in METRIC.findall(q)}
    named |= {m for expr in rule_expressions for m in METRIC.findall(expr)}
    assert named - exported - recorded == set()


# --- the panels of the served model's task, and only those -------------------------


class Exposition:
    """A scrape target answering ``/metrics`` with ``text(seconds since start)``: the
    series a process of one task exports, counters growing with time, for a real
    Prometheus to scrape."""

    def __init__(self, text: Callable[[float], str]) -> None:
        started = time.monotonic()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                body = text(time.monotonic() - started).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def expositions() -> Iterator[Callable[[Callable[[float], str]], Exposition]]:
    started: list[Exposition] = []

    def start(text: Callable[[float], str]) -> Exposition:
        started.append(Exposition(text))
        return started[-1]

    yield start
    for exposition in started:
        exposition.close()


# Each task's rolling figures as the monitor stores them for a version of that task,
# at plausible values; the monitor's own collector turns them into its gauges.
ROLLING = {
    Task.CLASSIFICATION: {
        "task": "classification",
        "accuracy": 0.88,
        "accuracy_lower_bound": 0.85,
        "accuracy_upper_bound": 0.9,
        "log_loss": 0.31,
        "brier": 0.17,
        "set_coverage": 0.91,
        "set_size": 1.3,
        "ece": 0.03,
        "recall": {"yes": 0.8, "no": 0.93},
        "validation_accuracy": 0.9,
        "validation_log_loss": 0.29,
        "labels": 1000,
        "label_delay_seconds_median": 60.0,
    },
    Task.REGRESSION: {
        "mae": 16000.0,
        "mae_lower_bound": 15000.0,
        "rmse": 23000.0,
        "mape": 10.0,
        "coverage": 0.9,
        "validation_mae": 15000.0,
        "labels": 1000,
        "label_delay_seconds_median": 60.0,
    },
}
# the metrics only a model of one task has (the other task's must be scraped too, and
# still give its panels no series)
TASK_METRICS = {
    Task.CLASSIFICATION: [
        "watchkeeper_monitor_accuracy_ratio",
        "watchkeeper_monitor_class_recall_ratio",
        "watchkeeper_predicted_class_total",
    ],
    Task.REGRESSION: [
        "watchkeeper_monitor_mae",
        "watchkeeper_monitor_interval_coverage",
        "watchkeeper_prediction_value_bucket",
    ],
}


def _monitor_registry(versions: dict[str, Task]) -> CollectorRegistry:
    """The monitor's real collector, publishing both versions' rolling figures and the
    label-free estimate of each."""
    status = MonitorStatus()
    now = datetime.now(UTC)
    for version, task in versions.items():
        details = {"task": task.value, **ROLLING[task]}
        status.rolling[version] = window_result(
            "accuracy_rolling", model_version=version, details=details, evaluated_at=now
        )
        if task is Task.CLASSIFICATION:
            status.accuracy_estimate_errors[version] = 0.01
        else:
            status.estimate_errors[version] = 0.05
    served = list(versions)[-1]
    score = 0.89 if versions[served] is Task.CLASSIFICATION else 16500.0
    status.latest["estimated_accuracy"] = window_result(
        "estimated_accuracy",
        model_version=served,
        score=score,
        details={"task": versions[served].value},
    )
    registry = CollectorRegistry()
    registry.register(MonitorCollector(status))
    return registry


def _serving_metrics(versions: dict[str, Task]) -> ServingMetrics:
    """Serving's real metrics: model_info with the replaced version at 0 (as serving sets
    it at a swap) and the served one at 1."""
    metrics = ServingMetrics(CollectorRegistry(), prediction_buckets=[100000.0, 200000.0])
    served = list(versions)[-1]
    for version, task in versions.items():
        metrics.model_info.labels(version, task.value).set(int(version == served))
    return metrics


def _predict(metrics: ServingMetrics, versions: dict[str, Task]) -> None:
    """A scrape's worth of predictions by both versions (the replaced one's counts stay
    in a worker that answered with it): classes counted for the classifier, values
    observed for the regression model."""
    for version, task in versions.items():
        if task is Task.CLASSIFICATION:
            for label, count in (("yes", 3), ("no", 7)):
                metrics.predicted_class.labels(version, label).inc(count)
        else:
            for value in (90000.0, 150000.0, 250000.0):
                metrics.prediction_value.observe(value)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("served_task_", [Task.CLASSIFICATION, Task.REGRESSION])
def test_the_served_models_task_shows_its_panels_and_empties_the_others(
    start_prometheus: Callable[..., Server],
    expositions: Callable[[Callable[[float], str]], Exposition],
    served_task_: Task,
) -> None:
    """v3 of ``served_task_`` is served; v2, of the other task, was replaced and the
    monitor still exports its accuracy (its labels come late). Run against a real
    Prometheus, every query of a panel of the served task returns data, and every query
    of a panel of the other task returns none although its metrics are there: the
    join on watchkeeper_model_info's task is what empties them."""
    other = Task.REGRESSION if served_task_ is Task.CLASSIFICATION else Task.CLASSIFICATION
    versions = {"v2": other, "v3": served_task_}
    serving_metrics = _serving_metrics(versions)

    def serving_text(_: float) -> str:
        _predict(serving_metrics, versions)
        return generate_latest(serving_metrics.registry).decode()

    monitor_registry = _monitor_registry(versions)
    serving = expositions(serving_text)
    monitor = expositions(lambda _: generate_latest(monitor_registry).decode())
    prometheus = start_prometheus(
        {"watchkeeper-serving": serving.address, "watchkeeper-monitor": monitor.address}
    )

    by_task: dict[Task, list[tuple[str, str]]] = {task: [] for task in Task}
    for dashboard in build().values():
        for title, expr in panel_queries(dashboard):
            for task in Task:
                if served_task(task) in expr:
                    by_task[task].append((title, substitute_all(expr, dashboard)))
    assert by_task[Task.CLASSIFICATION] and by_task[Task.REGRESSION]

    def result(query: str) -> list[object]:
        return prometheus.get("/api/v1/query", query=query).json()["data"]["result"]

    def empty(task: Task) -> list[str]:
        return [title for title, query in by_task[task] if not result(query)]

    # rate() over the counters needs two scrapes
    assert wait_for(lambda: not empty(served_task_), timeout=120, interval=1), empty(served_task_)
    # the other task's metrics are scraped (v2's), yet its panels have no series
    assert all(result(name) for name in TASK_METRICS[other])
    assert sorted(empty(other)) == sorted(title for title, _ in by_task[other])
    if served_task_ is Task.CLASSIFICATION:
        # the classifier's alerts read metrics the monitor's collector really exports
        groups = yaml.safe_load((RULES / "classification.yml").read_text())["groups"]
        named = {m for g in groups for r in g["rules"] for m in METRIC.findall(r["expr"])}
        assert named <= _exported_names(generate_latest(monitor_registry).decode())


@pytest.fixture(scope="module")
def classifier_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry whose current version is a binary classifier (``churn``/``stay``) on
    a known logistic truth (tests/monitoring/classifier_log.py)."""
    frame, p = classifier_log.draw(3000, seed=1)
    frame["outcome"] = classifier_log.outcomes(p, seed=2)
    frame["period"] = np.arange(len(frame)) * 6 // len(frame)
    training = Dataset("synthetic", frame[frame.period < 5], "outcome", "period", ("period",))
    validation = Dataset("synthetic", frame[frame.period == 5], "outcome", "period", ("period",))
    trained = train(training, validation, params=TrainingParams(max_iter=40))
    root = tmp_path_factory.mktemp("classifier-registry")
    ModelRegistry(root).register(trained)
    return root


@pytest.mark.timeout(900)
def test_a_served_classifiers_panels_return_data_from_the_real_processes(
    start_watchkeeper: Callable[..., Process],
    start_prometheus: Callable[..., Server],
    classifier_registry: Path,
    tmp_path: Path,
) -> None:
    """Real serving and monitor processes with a classifier served, traffic and late
    labels replayed: every query of the classifier's panels returns data from a real
    Prometheus, and every query of the regression panels none."""
    registry = tmp_path / "served-registry"
    shutil.copytree(classifier_registry, registry)
    own = {"WATCHKEEPER_REGISTRY_PATH": str(registry)}
    server = start_watchkeeper("serve", **own)
    monitor = start_watchkeeper(
        "monitor",
        WATCHKEEPER_MONITOR_INTERVAL="0.5",
        WATCHKEEPER_MONITOR_SETTLE_SECONDS="0.2",
        WATCHKEEPER_MONITOR_WINDOW_SIZE="100",
        WATCHKEEPER_MONITOR_MIN_SAMPLES="100",
        WATCHKEEPER_MONITOR_MIN_LABELS="50",
        **own,
    )
    prometheus = start_prometheus(
        {
            "watchkeeper-serving": server.url.removeprefix("http://"),
            "watchkeeper-monitor": monitor.url.removeprefix("http://"),
        }
    )
    frame, p = classifier_log.draw(600, seed=7)
    frame["outcome"] = classifier_log.outcomes(p, seed=8)
    report = Replayer(server.url, batch_size=50, feedback_delay=0.2).run(
        Dataset("replay", frame, "outcome")
    )
    assert report.feedback_failed == 0, report.summary()

    by_task: dict[Task, list[tuple[str, str]]] = {task: [] for task in Task}
    for dashboard in build().values():
        for title, expr in panel_queries(dashboard):
            for task in Task:
                if served_task(task) in expr:
                    by_task[task].append((title, substitute_all(expr, dashboard)))

    def empty(task: Task) -> list[str]:
        return [
            title
            for title, query in by_task[task]
            if not prometheus.get("/api/v1/query", query=query).json()["data"]["result"]
        ]

    # the monitor's windows, their labels and the rolling figures: minutes when busy
    assert wait_for(lambda: not empty(Task.CLASSIFICATION), timeout=300, interval=2), (
        empty(Task.CLASSIFICATION),
        monitor.log_path.read_text()[-2000:],
    )
    assert sorted(empty(Task.REGRESSION)) == sorted(t for t, _ in by_task[Task.REGRESSION])
