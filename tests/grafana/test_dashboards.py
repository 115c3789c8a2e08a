"""Dashboards as code: the committed JSON is what the builder makes, every panel has
a query on the provisioned data source, and provisioning through Grafana's API is
idempotent and fails clearly."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.grafana.fake_grafana import FakeGrafana
from tests.ports import free_port
from watchkeeper.grafana.dashboards import DATASOURCE_UID, build, panel_queries, render
from watchkeeper.grafana.provision import GrafanaError, provision
from watchkeeper.grafana.queries import served_task
from watchkeeper.mixin import panels as titles
from watchkeeper.mixin.config import MixinConfig
from watchkeeper.settings import Settings
from watchkeeper.task import Task

GRAFANA = Path(__file__).resolve().parents[2] / "grafana"
TOKEN = "glsa_test_token"


def _config() -> MixinConfig:
    # at test time: the environment is cleaned for each test, not at import
    return MixinConfig.from_settings(Settings())


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    server = FakeGrafana(TOKEN)
    yield server
    server.close()


def test_committed_dashboards_are_the_generated_ones() -> None:
    built = build(_config())
    committed = {p.name: p.read_text() for p in (GRAFANA / "dashboards").glob("*.json")}

    assert set(committed) == set(built)
    for name, dashboard in built.items():
        assert committed[name] == render(dashboard), f"run `make mixin` ({name})"


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_every_panel_queries_the_chosen_datasource_and_the_default_is_provisioned() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/watchkeeper.yml").read_text())
    assert provisioned["datasources"][0]["uid"] == DATASOURCE_UID == _config().datasource_uid
    for dashboard in build(_config()).values():
        assert "do not edit" in dashboard["description"]
        (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
        assert variable["current"]["value"] == DATASOURCE_UID
        for panel in _panels(dashboard):
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
        assert all(
            a["datasource"]["uid"] == "${datasource}" for a in dashboard["annotations"]["list"]
        )
        assert panel_queries(dashboard)
    titles = {d["title"] for d in build(_config()).values()}
    assert titles == {
        "Watchkeeper / Serving",
        "Watchkeeper / Model health",
        "Watchkeeper / Accuracy and lifecycle",
    }


def test_every_query_uses_the_job_namespace_and_model_version_variables() -> None:
    for dashboard in build(_config()).values():
        names = {v["name"] for v in dashboard["templating"]["list"]}
        assert names == {"datasource", "job", "namespace", "model_version"}
        for title, expr in panel_queries(dashboard):
            for selector in re.findall(r"\b(?:watchkeeper[_:][a-z0-9_:]+)(\{[^}]*\})?", expr):
                assert 'job=~"$job"' in selector and 'namespace=~"$namespace"' in selector, title
            if "model_version" in expr:  # series that carry the label are filtered by it
                assert 'model_version=~"$model_version"' in expr, title


def test_every_panel_has_a_unit_and_a_description_and_sits_under_a_row() -> None:
    for dashboard in build(_config()).values():
        panels = dashboard["panels"]
        assert panels[0]["type"] == "row", dashboard["title"]
        for panel in _panels(dashboard):
            assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
            assert len(panel["description"]) > 60, panel["title"]
    accuracy = {p["title"]: p for p in build(_config())["accuracy-lifecycle.json"]["panels"]}
    for title in ("MAE from feedback vs validation", "RMSE"):
        assert accuracy[title]["fieldConfig"]["defaults"]["unit"] == _config().target_unit


# the panels that fit one task only, by task
TASK_PANELS = {
    Task.REGRESSION: {
        titles.MAE,
        "RMSE",
        "MAPE",
        titles.INTERVAL_COVERAGE,
        titles.PREDICTED_VALUES,
    },
    Task.CLASSIFICATION: {
        titles.CLASSIFIER_ACCURACY,
        titles.LOG_LOSS,
        titles.BRIER,
        titles.SET_COVERAGE,
        titles.SET_SIZE,
        titles.CALIBRATION_ERROR,
        titles.CLASS_RECALL,
        titles.ESTIMATED_ACCURACY,
        titles.ESTIMATE_ERROR,
        titles.PREDICTED_CLASSES,
    },
}


def test_panels_of_one_task_are_joined_on_the_served_models_task() -> None:
    """The mechanism that shows a task's panels only while a model of that task is
    served: every query of such a panel is joined on watchkeeper_model_info's task (the
    live test shows the join empties them); every other panel fits both tasks."""
    found: dict[Task, set[str]] = {task: set() for task in Task}
    for dashboard in build(_config()).values():
        for panel in _panels(dashboard):
            exprs = [t["expr"] for t in panel["targets"]]
            tasks = {task for task in Task if any(served_task(task) in e for e in exprs)}
            assert len(tasks) <= 1, panel["title"]
            for task in tasks:
                assert all(e.endswith(f" and on (namespace) {served_task(task)}") for e in exprs)
                found[task].add(panel["title"])
    assert found == TASK_PANELS
    gate = served_task(Task.CLASSIFICATION)
    assert 'watchkeeper_model_info{job=~"$job",namespace=~"$namespace",task="classification"}' in (
        gate
    )


def test_each_tasks_accuracy_panels_sit_in_a_row_named_for_it() -> None:
    rows: dict[str, list[str]] = {}
    current = ""
    for panel in build(_config())["accuracy-lifecycle.json"]["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
            rows[current] = []
        else:
            rows[current].append(panel["title"])
    (regression,) = [r for r in rows if r.startswith("Accuracy from feedback: regression")]
    (classification,) = [r for r in rows if r.startswith("Accuracy from feedback: classifiers")]
    assert set(rows[regression]) == TASK_PANELS[Task.REGRESSION] - {titles.PREDICTED_VALUES}
    assert set(rows[classification]) == TASK_PANELS[Task.CLASSIFICATION] - {
        titles.PREDICTED_CLASSES
    }


def test_dashboards_link_to_each_other_and_keep_time_and_variables() -> None:
    dashboards = build(_config()).values()
    for dashboard in dashboards:
        (link,) = dashboard["links"]
        assert link["type"] == "dashboards" and link["includeVars"] and link["keepTime"]
        # a tag link lists every dashboard carrying the tag: all three
        assert all(set(link["tags"]) <= set(other["tags"]) for other in dashboards)


def test_panels_do_not_overlap() -> None:
    for dashboard in build(_config()).values():
        cells: set[tuple[int, int]] = set()
        for panel in dashboard["panels"]:
            g = panel["gridPos"]
            own = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not cells & own and g["x"] + g["w"] <= 24, panel["title"]
            cells |= own


def test_provisioning_creates_then_updates_in_place(grafana: FakeGrafana) -> None:
    first = provision(grafana.url, TOKEN, "http://prometheus:9090")
    second = provision(grafana.url, TOKEN, "http://prometheus:9091")

    assert (first.folder, first.datasource) == ("created", "created")
    assert (second.folder, second.datasource) == ("updated", "updated")
    state = grafana.state
    assert list(state["folders"]) == ["watchkeeper"]
    assert list(state["datasources"]) == [DATASOURCE_UID]
    assert state["datasources"][DATASOURCE_UID]["url"] == "http://prometheus:9091"
    assert sorted(state["dashboards"]) == sorted(d["uid"] for d in build().values())
    assert all(
        d["version"] == 2 and d["folderUid"] == "watchkeeper" for d in state["dashboards"].values()
    )
    stored = state["dashboards"]["watchkeeper-serving"]["dashboard"]
    assert json.loads(json.dumps(stored))["panels"] == build()["serving.json"]["panels"]


def test_refused_token_is_a_clear_error(grafana: FakeGrafana) -> None:
    with pytest.raises(GrafanaError, match="refused the token"):
        provision(grafana.url, "wrong", "http://prometheus:9090")
    assert grafana.state["folders"] == {}


def test_unreachable_grafana_is_a_clear_error() -> None:
    """The error said why in the HTTP client's words: its pool, the URL and an object's
    repr, cut off before the reason at 300 characters."""
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(GrafanaError) as raised:
        provision(url, TOKEN, "http://prometheus:9090", timeout=2)

    assert str(raised.value) == f"Grafana at {url} is unreachable: Connection refused"


@pytest.mark.parametrize(
    ("impostor", "answer"),
    [
        ("html", "200 text/html"),
        ("login_redirect", "a redirect (302) to /login"),
        ("not_json", "200 application/json 'not json'"),
        ("empty_json", "{} without 'uid'"),
    ],
)
def test_a_server_that_is_not_grafanas_api_is_a_clear_error(impostor: str, answer: str) -> None:
    """A server answering 200 HTML to everything, or an authenticating proxy sending
    each write to its HTML login page, was reported provisioned ("folder created, data
    source created", exit 0); a 200 that is not JSON was "unreachable: invalid literal"."""
    server = FakeGrafana(TOKEN, impostor)
    try:
        with pytest.raises(GrafanaError) as refused:
            provision(server.url, TOKEN, "http://prometheus:9090")
    finally:
        server.close()

    message = refused.value.message
    assert answer in message and "WATCHKEEPER_GRAFANA_URL" in message, message
    assert server.url in message and "\n" not in message
    # a redirect is not followed: no write is replayed at the login page
    assert ("GET", "/login") not in server.state["calls"]
