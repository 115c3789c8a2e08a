"""The command line: model list and rollback as an operator uses them."""

from __future__ import annotations

from pathlib import Path

import pytest

from watchkeeper.cli import main
from watchkeeper.registry import ModelRegistry
from watchkeeper.training import TrainedModel


def test_model_list_shows_status_metrics_and_current(
    registry_dir: Path,
    trained: TrainedModel,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ModelRegistry(registry_dir).register(trained, make_current=False, status="rejected")
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(registry_dir))

    assert main(["model", "list"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("* v1") and "registered" in lines[1] and "15,031" in lines[1]
    assert lines[2].startswith("  v2") and "rejected" in lines[2]


def test_rollback_skips_rejected_versions(
    registry_dir: Path,
    trained: TrainedModel,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry = ModelRegistry(registry_dir)
    registry.register(trained, make_current=False, status="rejected")  # v2
    registry.register(trained, status="promoted")  # v3, current
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(registry_dir))

    assert main(["model", "rollback"]) == 0

    assert registry.current_version() == "v1"
    assert "current model: v1 (was v3)" in capsys.readouterr().out
    assert main(["model", "rollback", "v3"]) == 0
    assert registry.current_version() == "v3"


def test_rollback_with_nothing_earlier_is_a_clear_error(
    registry_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATCHKEEPER_REGISTRY_PATH", str(registry_dir))

    assert main(["model", "rollback"]) == 1

    assert "no earlier usable version" in capsys.readouterr().err
