"""Fixtures for the deployment files: the Dockerfile's instructions, the compose file
as docker-compose resolves it, and the settings fields they may set."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.app import create_app, shutdown
from tests.observability import binary
from watchkeeper.settings import SETTINGS
from watchkeeper.status_server import HEALTH_PATH, METRICS_PATH

REPO = Path(__file__).resolve().parents[2]

# The secrets the compose file requires, set to dummies so that it resolves.
COMPOSE_SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "WATCHKEEPER_ADMIN_TOKEN": "admin-secret",
    "GRAFANA_ADMIN_PASSWORD": "grafana-secret",
}


@dataclass
class Stage:
    """One ``FROM`` stage of the Dockerfile: its name and (instruction, argument) pairs."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [arg for name, arg in self.instructions if name == instruction]


def parse_dockerfile(text: str) -> list[Stage]:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    stages: list[Stage] = []
    for line in lines:
        instruction, _, argument = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = argument.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append((instruction, argument.strip()))
    return stages


def exec_form(argument: str) -> list[str]:
    """An instruction's exec-form (JSON array) argument, or its shell words."""
    if argument.startswith("["):
        return json.loads(argument)
    return shlex.split(argument)


@pytest.fixture(scope="session")
def stages() -> list[Stage]:
    return parse_dockerfile((REPO / "Dockerfile").read_text())


@pytest.fixture(scope="session")
def docker_compose() -> str:
    return binary("docker-compose", "docker-compose")


def compose_config(docker_compose: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose config``: parses, interpolates and validates without an engine."""
    clean = {k: v for k, v in os.environ.items() if k not in COMPOSE_SECRETS}
    return subprocess.run(
        [docker_compose, "--project-directory", str(REPO), "config"],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="session")
def compose(docker_compose: str) -> dict[str, Any]:
    result = compose_config(docker_compose, **COMPOSE_SECRETS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def settings_fields() -> set[str]:
    return {setting.variable for setting in SETTINGS.values()}


@pytest.fixture
def served_paths(make_settings: Any, tmp_path: Path) -> dict[str, set[str]]:
    """The paths each component answers, by its CLI command: serving's Flask routes,
    and the status server of the monitor and the retraining worker."""
    app = create_app(make_settings(database_url=f"sqlite:///{tmp_path / 'paths.db'}"))
    try:
        serving = {rule.rule for rule in app.url_map.iter_rules()}
    finally:
        shutdown(app, timeout=5)
    status = {HEALTH_PATH, METRICS_PATH}
    return {"serve": serving, "monitor": status, "worker": status}
