"""docker-compose.yml: valid for docker-compose, and wired to what exists — commands
are real entry points, variables are settings, mounted files are in the repository,
health checks call endpoints the services serve, and Prometheus and Grafana get the
project's own rules and dashboards."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from sqlalchemy.engine import make_url

from tests.deploy.conftest import COMPOSE_SECRETS, REPO, compose_config, settings_fields
from tests.observability import binary
from tests.ports import free_port
from tests.postgres import PostgresServer
from tests.processes import Process, wait_for
from watchkeeper.settings import Settings
from watchkeeper_cli.commands.healthcheck import HEALTH_ENDPOINTS
from watchkeeper_cli.main import build_parser, main

WATCHKEEPER_IMAGE = "watchkeeper:0.1.0"
# Variables a service may set besides settings: libpq reads the database password from
# PGPASSWORD.
NON_SETTINGS_ENV = {"PGPASSWORD"}
LONG_RUNNING = {"serving": "serve", "monitor": "monitor", "retrain-worker": "worker"}
ONE_OFF = {"migrate", "train", "alertmanager-config"}


def _watchkeeper_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") == WATCHKEEPER_IMAGE
    }


def _volumes(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (named volume or absolute host path)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        mounts[target] = source
    return mounts


def _settings(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in service.get("environment", {}).items():
        monkeypatch.setenv(key, str(value))
    return Settings()


def test_compose_file_passes_docker_compose_config(compose: dict[str, Any]) -> None:
    expected = {"postgres", "prometheus", "alertmanager", "grafana", *LONG_RUNNING, *ONE_OFF}
    assert set(compose["services"]) == expected


@pytest.mark.parametrize("secret", sorted(COMPOSE_SECRETS))
def test_a_missing_secret_is_refused_naming_it(docker_compose: str, secret: str) -> None:
    env = {k: v for k, v in COMPOSE_SECRETS.items() if k != secret}

    result = compose_config(docker_compose, **env)

    assert result.returncode != 0
    assert f"set {secret} in .env" in result.stderr


def test_example_env_file_names_every_required_secret() -> None:
    names = {
        line.split("=", 1)[0]
        for line in (REPO / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert set(COMPOSE_SECRETS) <= names


def test_example_env_file_lists_every_variable_compose_reads_with_its_default() -> None:
    compose_text = (REPO / "docker-compose.yml").read_text()
    read = dict(re.findall(r"\$\{([A-Z_]+):[?-]([^}]*)\}", compose_text))
    example = dict(re.findall(r"^#? ?([A-Z_]+)=(.*)$", (REPO / ".env.example").read_text(), re.M))
    assert set(read) <= set(example), set(read) - set(example)
    for name, default in read.items():
        if not default.startswith("set "):  # a required secret has no default
            assert example[name] == default, name


def test_every_watchkeeper_command_is_a_real_cli_entry_point(compose: dict[str, Any]) -> None:
    services = _watchkeeper_services(compose)
    assert set(services) == set(LONG_RUNNING) | ONE_OFF

    parser = build_parser()
    commands = {name: parser.parse_args(s["command"]) for name, s in services.items()}
    assert commands["serving"].command == "serve"
    assert commands["monitor"].command == "monitor" and not commands["monitor"].once
    assert (commands["retrain-worker"].command, commands["retrain-worker"].mode) == (
        "retrain",
        "worker",
    )
    assert commands["migrate"].db_command == "upgrade" and commands["migrate"].wait > 0
    assert commands["train"].if_missing


def test_environment_variables_are_settings_the_services_accept(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    known = settings_fields() | NON_SETTINGS_ENV
    for name, service in _watchkeeper_services(compose).items():
        env = service.get("environment", {})
        assert set(env) <= known, (name, set(env) - known)
        with monkeypatch.context() as patch:
            settings = _settings(service, patch)
        assert settings.storage.database_url.startswith("postgresql+psycopg://watchkeeper@")
        assert env["PGPASSWORD"] == COMPOSE_SECRETS["POSTGRES_PASSWORD"]
        assert settings.serving.admin_token is not None
        assert settings.storage.auto_migrate is False, name


@pytest.mark.parametrize("password", ["p@ss:w/rd", "50%off?#x", "a b"])
def test_any_database_password_reaches_postgresql_as_written(
    docker_compose: str, password: str
) -> None:
    # Pasted into the URL, "p@ss:w/rd" made the host "ss" and the port "w".
    result = compose_config(docker_compose, **{**COMPOSE_SECRETS, "POSTGRES_PASSWORD": password})
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == password
    for name, service in _watchkeeper_services({"services": services}).items():
        env = service["environment"]
        url = make_url(env["WATCHKEEPER_DATABASE_URL"])
        assert (url.host, url.port, url.database) == ("postgres", 5432, "watchkeeper"), name
        assert url.password is None, name
        assert env["PGPASSWORD"] == password, name  # libpq's own variable: no escaping


def test_every_watchkeeper_service_sets_its_numeric_threads(
    compose: dict[str, Any], docker_compose: str
) -> None:
    for name, service in _watchkeeper_services(compose).items():
        assert service["environment"]["WATCHKEEPER_NUMERIC_THREADS"] == "1", name

    result = compose_config(docker_compose, **COMPOSE_SECRETS, WATCHKEEPER_NUMERIC_THREADS="2")
    assert result.returncode == 0, result.stderr
    for name, service in _watchkeeper_services(yaml.safe_load(result.stdout)).items():
        assert service["environment"]["WATCHKEEPER_NUMERIC_THREADS"] == "2", name


def test_long_running_services_wait_for_migration_and_a_model(compose: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        depends = compose["services"][name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["train"]["condition"] == "service_completed_successfully", name
    migrate = compose["services"]["migrate"]["depends_on"]
    assert migrate["postgres"]["condition"] == "service_healthy"


def test_services_waited_on_for_health_have_a_health_check(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            if rule["condition"] == "service_healthy":
                test = services[dependency].get("healthcheck", {}).get("test", ["NONE"])
                assert test[0] != "NONE", f"{name} waits on {dependency}, which has no check"


def test_health_checks_call_endpoints_the_components_serve(
    compose: dict[str, Any], served_paths: dict[str, set[str]]
) -> None:
    for name, component in LONG_RUNNING.items():
        test = compose["services"][name]["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == "watchkeeper", name
        args = build_parser().parse_args(test[2:])
        assert args.command == "healthcheck" and args.component == component, name
        path = HEALTH_ENDPOINTS[component].path
        assert path in served_paths[component], (name, path)
    for name in ONE_OFF:
        assert compose["services"][name]["healthcheck"]["test"] == ["NONE"], name


def test_published_ports_are_the_components_ports(compose: dict[str, Any]) -> None:
    defaults = Settings()
    expected = {"serving": defaults.serving.port, "monitor": defaults.monitor.port}
    expected["retrain-worker"] = defaults.retrain.port
    for name, port in expected.items():
        ports = compose["services"][name]["ports"]
        assert [(p["published"], p["target"]) for p in ports] == [(port, port)], name


def test_model_registry_is_one_volume_shared_by_every_component(compose: dict[str, Any]) -> None:
    settings = Settings(data_dir="/var/lib/watchkeeper")
    for name in ("train", *LONG_RUNNING):
        mounts = _volumes(compose["services"][name])
        assert mounts.get(str(settings.storage.registry_path)) == "registry", name
    serving = _volumes(compose["services"]["serving"])
    assert serving[str(settings.storage.spill_dir)] == "serving-spill"
    monitor = _volumes(compose["services"]["monitor"])
    assert monitor[str(settings.storage.detectors_dir)] == "detectors"


def test_mounted_host_paths_exist_in_the_repository(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for target, source in _volumes(service).items():
            if source.startswith("/"):
                path = Path(source)
                assert path.is_relative_to(REPO) and path.exists(), (name, source, target)


def test_prometheus_gets_the_project_rules_and_scrapes_every_component(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    prometheus = compose["services"]["prometheus"]
    mounts = _volumes(prometheus)
    config_path = Path(mounts["/etc/prometheus/prometheus.yml"])
    assert Path(mounts["/etc/prometheus/rules"]) == REPO / "prometheus" / "rules"

    local = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    config = yaml.safe_load(config_path.read_text())
    assert config["rule_files"] == local["rule_files"]
    assert config["global"] == local["global"]
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert set(targets) == {job["job_name"] for job in local["scrape_configs"]}
    services = compose["services"]
    expected = {f"{name}:{services[name]['ports'][0]['target']}" for name in LONG_RUNNING}
    assert {t for ts in targets.values() for t in ts} == expected
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"][0]["targets"] == [
        f"alertmanager:{services['alertmanager']['ports'][0]['target']}"
    ]


def test_prometheus_compose_config_passes_promtool(compose: dict[str, Any], tmp_path: Path) -> None:
    promtool = binary("promtool", "prometheus")
    mounts = _volumes(compose["services"]["prometheus"])
    shutil.copy(mounts["/etc/prometheus/prometheus.yml"], tmp_path / "prometheus.yml")
    shutil.copytree(mounts["/etc/prometheus/rules"], tmp_path / "rules")

    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for rules in sorted((tmp_path / "rules").glob("*.yml")):  # found and read, every one
        count = sum(len(g["rules"]) for g in yaml.safe_load(rules.read_text())["groups"])
        assert f"SUCCESS: {count} rules found" in result.stdout, rules.name


def test_grafana_is_provisioned_from_the_generated_dashboards(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = _volumes(grafana)
    provisioning = Path(mounts["/etc/grafana/provisioning"])
    assert provisioning == REPO / "grafana" / "provisioning"
    provider = yaml.safe_load((provisioning / "dashboards" / "watchkeeper.yml").read_text())
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert Path(mounts[dashboards_path]) == REPO / "grafana" / "dashboards"
    prometheus_port = compose["services"]["prometheus"]["ports"][0]["target"]
    assert grafana["environment"]["WATCHKEEPER_GRAFANA_PROMETHEUS_URL"] == (
        f"http://prometheus:{prometheus_port}"
    )


def test_alertmanager_reads_the_config_and_token_the_one_off_writes(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    services = compose["services"]
    writer = services["alertmanager-config"]
    reader = services["alertmanager"]
    args = build_parser().parse_args(writer["command"])
    # Map each path through the shared volume to where Alertmanager sees it.
    (writer_dir,) = [t for t, s in _volumes(writer).items() if s == "alertmanager-config"]
    (reader_dir,) = [t for t, s in _volumes(reader).items() if s == "alertmanager-config"]
    config_file = args.output.replace(writer_dir, reader_dir)
    token_file = args.token_output.replace(writer_dir, reader_dir)
    assert f"--config.file={config_file}" in reader["command"]
    assert writer["environment"]["WATCHKEEPER_ALERT_TOKEN_FILE"] == token_file
    serving_port = services["serving"]["ports"][0]["target"]
    assert writer["environment"]["WATCHKEEPER_ALERT_RETRAIN_URL"] == (
        f"http://serving:{serving_port}/alerts"
    )

    # Run the one-off's command for real, into a scratch copy of the volume.
    for key, value in writer["environment"].items():
        monkeypatch.setenv(key, str(value))
    argv = [a.replace(writer_dir, str(tmp_path)) for a in writer["command"]]
    assert main(argv) == 0
    written = yaml.safe_load((tmp_path / "alertmanager.yml").read_text())
    retrain = next(r for r in written["receivers"] if r["name"] == "retrain")
    authorization = retrain["webhook_configs"][0]["http_config"]["authorization"]
    assert authorization["credentials_file"] == token_file
    token = tmp_path / "admin-token"
    assert token.read_text() == COMPOSE_SECRETS["WATCHKEEPER_ADMIN_TOKEN"]
    assert token.stat().st_mode & 0o777 == 0o644
    amtool = binary("amtool", "prometheus-alertmanager")
    check = subprocess.run(
        [amtool, "check-config", str(tmp_path / "alertmanager.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(
    ("service", "program", "package"),
    [
        ("prometheus", "prometheus", "prometheus"),
        ("alertmanager", "prometheus-alertmanager", "prometheus-alertmanager"),
    ],
)
def test_monitoring_services_use_flags_their_programs_have(
    compose: dict[str, Any], service: str, program: str, package: str
) -> None:
    """The flags are checked against the Debian builds of the same programs."""
    result = subprocess.run([binary(program, package), "--help"], capture_output=True, text=True)
    help_text = result.stdout + result.stderr  # kingpin prints help on either
    flags = [arg.split("=", 1)[0] for arg in compose["services"][service]["command"]]

    assert flags
    for flag in flags:
        assert re.search(rf"^\s+{re.escape(flag)}[= ]", help_text, re.M), (service, flag)


@pytest.mark.integration
@pytest.mark.postgres
def test_watchkeeper_services_come_up_healthy_with_the_compose_commands_and_environment(
    compose: dict[str, Any], postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """`docker compose up` without Docker: each Watchkeeper service's command and
    environment from the resolved compose file, run in dependency order against a
    real PostgreSQL, until the compose health checks pass. Only what a container
    provides is replaced: the database host, the data folder and free ports."""
    services = compose["services"]
    database_url = postgres_server.create_database()
    base = {
        "WATCHKEEPER_DATA_DIR": str(tmp_path / "var"),  # the image's ENV, as a local folder
        "WATCHKEEPER_PORT": str(free_port()),
        "WATCHKEEPER_MONITOR_PORT": str(free_port()),
        "WATCHKEEPER_RETRAIN_PORT": str(free_port()),
        "WATCHKEEPER_MONITOR_INTERVAL": "1",
    }

    def environment(name: str) -> dict[str, str]:
        env = {k: str(v) for k, v in services[name].get("environment", {}).items()}
        assert env["WATCHKEEPER_DATABASE_URL"].startswith("postgresql+psycopg://")
        return {**env, **base, "WATCHKEEPER_DATABASE_URL": database_url}

    def run_one_off(name: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "watchkeeper_cli", *services[name]["command"]],
            env={**os.environ, **environment(name)},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, (name, result.stdout, result.stderr)
        return result.stdout

    def healthy(name: str) -> bool:
        test = services[name]["healthcheck"]["test"]
        check = subprocess.run(
            [sys.executable, "-m", "watchkeeper_cli", *test[2:]],
            env={**os.environ, **environment(name)},
            capture_output=True,
            timeout=30,
        )
        return check.returncode == 0

    assert "schema revision" in run_one_off("migrate")
    assert "registered v1 (current)" in run_one_off("train")
    assert "already current" in run_one_off("train")  # a restart of the stack retrains nothing

    processes = []
    try:
        for name in LONG_RUNNING:
            process = Process(
                services[name]["command"], environment(name), tmp_path / f"{name}.log", ""
            )
            processes.append(process)
        for name, process in zip(LONG_RUNNING, processes, strict=True):
            assert wait_for(lambda n=name: healthy(n), timeout=90, interval=0.5), (
                name,
                process.log_path.read_text()[-2000:],
            )
            port = environment(name)[HEALTH_ENDPOINTS[LONG_RUNNING[name]].port_variable]
            health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
            assert set(health["thread_pools"].values()) == {1}, (name, health)
    finally:
        for process in processes:
            process.kill()
