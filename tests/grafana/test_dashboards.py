"""Dashboards as code: the committed JSON is what the builder makes, every panel has
a query on the provisioned data source, and provisioning through Grafana's API is
idempotent and fails clearly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.grafana.fake_grafana import FakeGrafana
from tests.ports import free_port
from watchkeeper.grafana.dashboards import DATASOURCE_UID, build, panel_queries, render
from watchkeeper.grafana.provision import GrafanaError, provision

GRAFANA = Path(__file__).resolve().parents[2] / "grafana"
TOKEN = "glsa_test_token"


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    server = FakeGrafana(TOKEN)
    yield server
    server.close()


def test_committed_dashboards_are_the_generated_ones() -> None:
    built = build()
    committed = {p.name: p.read_text() for p in (GRAFANA / "dashboards").glob("*.json")}

    assert set(committed) == set(built)
    for name, dashboard in built.items():
        assert committed[name] == render(dashboard), f"run `watchkeeper grafana build` ({name})"


def test_every_panel_queries_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/watchkeeper.yml").read_text())
    assert provisioned["datasources"][0]["uid"] == DATASOURCE_UID
    for dashboard in build().values():
        assert "do not edit" in dashboard["description"]
        for panel in dashboard["panels"]:
            assert panel["targets"], panel["title"]
            assert all(t["datasource"]["uid"] == DATASOURCE_UID for t in panel["targets"])
        assert panel_queries(dashboard)
    titles = {d["title"] for d in build().values()}
    assert titles == {
        "Watchkeeper / Serving",
        "Watchkeeper / Model health",
        "Watchkeeper / Accuracy and lifecycle",
    }


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
    with pytest.raises(GrafanaError, match="unreachable"):
        provision(f"http://127.0.0.1:{free_port()}", TOKEN, "http://prometheus:9090", timeout=2)
