"""The container image: multi-stage, nothing to build with in the final stage, a
non-root user, a health check, and every component reachable by its command. No
Docker engine runs here, so the file is checked against what it refers to."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO, Stage, exec_form, settings_fields
from watchkeeper.settings import Settings
from watchkeeper.threads import THREAD_VARIABLES
from watchkeeper_cli.commands.healthcheck import HEALTH_ENDPOINTS
from watchkeeper_cli.main import build_parser

BUILD_TOOLS = ("build-essential", "gcc", "g++", "make ", "python3-dev", "pip install")


def _runtime(stages: list[Stage]) -> Stage:
    return stages[-1]


def _env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for argument in stage.args("ENV"):
        for word in exec_form(argument):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def test_image_is_built_in_stages_from_the_same_base(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    assert len({stage.base for stage in stages}) == 1
    assert any("COPY --from=build" in f"COPY {arg}" for arg in _runtime(stages).args("COPY"))


def test_final_stage_has_no_build_tools_or_package_installs(stages: list[Stage]) -> None:
    commands = " ".join(_runtime(stages).args("RUN"))

    assert "apt-get install" not in commands
    for tool in BUILD_TOOLS:
        assert tool not in commands, tool


def test_final_stage_runs_as_a_non_root_user(stages: list[Stage]) -> None:
    users = _runtime(stages).args("USER")

    assert users, "no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so runAsNonRoot can verify it


def test_entrypoint_and_default_command_are_real_cli_commands(stages: list[Stage]) -> None:
    runtime = _runtime(stages)
    (entrypoint,) = runtime.args("ENTRYPOINT")
    (command,) = runtime.args("CMD")

    assert exec_form(entrypoint) == ["watchkeeper"]
    assert build_parser().parse_args(exec_form(command)).command == "serve"


def test_health_check_is_the_cli_healthcheck_of_serving(stages: list[Stage]) -> None:
    (healthcheck,) = _runtime(stages).args("HEALTHCHECK")
    _, _, command = healthcheck.partition("CMD ")
    argv = exec_form(command)

    assert argv[0] == "watchkeeper"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "healthcheck" and args.component == "serve"
    assert HEALTH_ENDPOINTS["serve"].path == "/readyz"


def test_environment_sets_only_settings_fields_and_listens_on_all_interfaces(
    stages: list[Stage],
) -> None:
    env = _env(_runtime(stages))
    watchkeeper_env = {k: v for k, v in env.items() if k.startswith("WATCHKEEPER_")}

    assert set(watchkeeper_env) <= settings_fields()
    settings = Settings(
        **{k.removeprefix("WATCHKEEPER_").lower(): v for k, v in watchkeeper_env.items()}
    )
    assert settings.serving.host == settings.monitor.host == settings.retrain.host == "0.0.0.0"
    assert env["HOME"] == str(settings.storage.data_dir)


def test_image_runs_one_numeric_thread_per_process(stages: list[Stage]) -> None:
    """The setting, and the libraries' own variables for Python not started by the CLI,
    agree."""
    env = _env(_runtime(stages))
    threads = env["WATCHKEEPER_NUMERIC_THREADS"]
    copies = {name: value for name, value in env.items() if name in THREAD_VARIABLES}

    assert threads == "1"
    assert {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"} <= set(copies)
    assert set(copies.values()) == {threads}


def test_exposed_ports_are_the_default_component_ports(stages: list[Stage]) -> None:
    exposed = {int(port) for arg in _runtime(stages).args("EXPOSE") for port in arg.split()}
    defaults = Settings()

    assert exposed == {defaults.serving.port, defaults.monitor.port, defaults.retrain.port}


def test_state_folders_exist_in_the_image_owned_by_the_user(stages: list[Stage]) -> None:
    """Named volumes and Kubernetes volumes take their ownership from the image."""
    runtime = _runtime(stages)
    commands = " ".join(runtime.args("RUN"))
    data_dir = _env(runtime)["WATCHKEEPER_DATA_DIR"]

    for folder in ("registry", "spill", "detectors", "alertmanager"):
        assert f"{data_dir}/{folder}" in commands, folder
    assert f"chown -R 10001:10001 {data_dir}" in commands


def test_copied_sources_exist_and_pass_the_dockerignore(stages: list[Stage]) -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    included = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied: list[str] = []
    for stage in stages:
        for argument in stage.args("COPY"):
            if argument.startswith("--from"):
                continue
            copied += argument.split()[:-1]

    assert copied
    for source in copied:
        assert (REPO / source).exists(), source
        assert source in included, f"{source} is excluded by .dockerignore"


@pytest.mark.integration
def test_package_built_for_the_image_holds_every_module_and_migration(tmp_path: Path) -> None:
    """The image installs the package non-editable: anything not packaged is missing."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("watchkeeper-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    expected = [
        path.relative_to(REPO).as_posix()
        for package in ("watchkeeper", "watchkeeper_cli", "serving", "monitoring", "retrain")
        for path in (REPO / package).rglob("*")
        if path.suffix in (".py", ".mako") and "__pycache__" not in path.parts
    ]
    assert any("migrations/versions/" in name for name in expected)
    assert sorted(set(expected) - names) == []
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "watchkeeper = watchkeeper_cli.main:main"
        in zipfile.ZipFile(wheel).read(entry_points).decode()
    )
