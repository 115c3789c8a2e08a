"""Dashboards and alerts against what really runs: with serving, the monitor and the
retraining worker scraped by a real Prometheus and real traffic replayed, every panel
query (its variables replaced by their "All" values, as Grafana sends it by default)
and every variable's series returns data, and every metric a query or alert names is
exported."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from monitoring.replay import Replayer
from tests.observability import Server
from tests.processes import Process, metric, wait_for
from watchkeeper.dataset import Dataset
from watchkeeper.grafana.dashboards import build, panel_queries, substitute_all

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
    recorded, expressions = set(), []
    for path in RULES.glob("*.yml"):
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
    # traffic on the promoted version, seen by the monitor, once the workers serve it
    assert wait_for(
        lambda: all(server.get("/model").json()["version"] == "v2" for _ in range(4)),
        timeout=60,
        interval=0.5,
    )
    Replayer(server.url, batch_size=50, feedback_delay=0.2).run(ames.between(201001, 201012))

    dashboards = build().values()
    queries = [
        (d["title"], title, substitute_all(q, d))
        for d in dashboards
        for title, q in panel_queries(d)
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
    assert wait_for(lambda: not empty(), timeout=300, interval=2), [q for _, _, q in empty()]

    exported = set()
    for process in (server, monitor, worker):
        exported |= _exported_names(process.get("/metrics").text)
    recorded, rule_expressions = _rule_expressions()
    named = {m for _, _, q in queries for m in METRIC.findall(q)}
    named |= {m for expr in rule_expressions for m in METRIC.findall(expr)}
    assert named - exported - recorded == set()
