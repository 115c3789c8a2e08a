"""One configuration: the committed rules, Alertmanager config and dashboards are what
the generator makes from the default settings, and a changed setting moves the alert,
the dashboard's threshold line and the monitor's own retrain trigger together."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.monitor import Monitor
from tests.observability import binary
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade
from watchkeeper.grafana.dashboards import build
from watchkeeper.mixin.config import SETTINGS_READ, MixinConfig, prom_duration
from watchkeeper.mixin.files import generated
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import SETTINGS, Settings

REPO = Path(__file__).resolve().parents[2]


def test_committed_files_are_the_generated_ones() -> None:
    for relative, text in generated(Settings()).items():
        assert (REPO / relative).read_text() == text, f"run `make mixin` ({relative})"


class _ReadSettings:
    """Settings that note the flat name of each setting read through them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.read: set[str] = set()

    def __getattr__(self, group: str) -> Any:
        outer = self

        class Group:
            def __getattr__(self, field: str) -> Any:
                (name,) = [
                    s.name for s in SETTINGS.values() if (s.group, s.field) == (group, field)
                ]
                outer.read.add(name)
                return getattr(getattr(outer._settings, group), field)

        return Group()


def test_the_settings_the_files_are_built_from_are_declared() -> None:
    # The Helm chart ships files built with these and passes them to its pods; one read
    # but not declared would let the chart's rules and its pods disagree.
    settings = _ReadSettings(Settings())
    MixinConfig.from_settings(settings)  # type: ignore[arg-type]
    assert settings.read == SETTINGS_READ


def test_generated_rule_files_say_how_to_change_them() -> None:
    for relative, text in generated(Settings()).items():
        if relative.endswith(".yml"):
            assert "do not edit" in text.splitlines()[0], relative


def _rules(settings: Settings, file: str = "alerts.yml") -> dict[str, dict[str, Any]]:
    text = generated(settings)[f"prometheus/rules/{file}"]
    groups = yaml.safe_load(text)["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"]}


def _panel(settings: Settings, dashboard: str, title: str) -> dict[str, Any]:
    panels = build(MixinConfig.from_settings(settings))[dashboard]["panels"]
    (panel,) = [p for p in panels if p["title"] == title]
    return panel


def _limit(panel: dict[str, Any]) -> str:
    """The query of a panel's "retrain limit" line."""
    (expr,) = [t["expr"] for t in panel["targets"] if t["legendFormat"].startswith("retrain limit")]
    return expr


def _threshold(panel: dict[str, Any]) -> float:
    return panel["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"]


@pytest.mark.parametrize("ood_fraction", [0.1, 0.2])
def test_a_setting_moves_the_rule_the_dashboard_and_the_retrain_trigger(
    tmp_path: Path, ood_fraction: float
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        trigger_ood_fraction=ood_fraction,
        trigger_drift_windows=5,
        trigger_mae_degradation=0.4,
        trigger_accuracy_drop=0.08,
        drift_p_value=0.01,
    )
    rules = _rules(settings)

    assert rules["WatchkeeperHighOODFraction"]["expr"].endswith(f"> {ood_fraction:g}")
    assert _threshold(_panel(settings, "model-health.json", "Out-of-distribution fraction")) == (
        ood_fraction
    )
    # drift: five windows of monitor_window_seconds (600 s) is the alert's for:
    assert rules["WatchkeeperDatasetDriftSustained"]["for"] == "50m"
    assert "> 1.4 * max by" in rules["WatchkeeperAccuracyDegraded"]["expr"]
    mae = _panel(settings, "accuracy-lifecycle.json", "MAE from feedback vs validation")
    assert _limit(mae).startswith("(1.4 * ")
    # a classifier's accuracy: the same drop in its alert, its estimate's and the line
    classification = _rules(settings, "classification.yml")
    for name in ("WatchkeeperClassifierAccuracyDegraded", "WatchkeeperEstimatedAccuracyDrop"):
        assert classification[name]["expr"].endswith(
            '(watchkeeper_monitor_validation_accuracy_ratio{job="watchkeeper-monitor"}) - 0.08'
        )
    accuracy = _panel(settings, "accuracy-lifecycle.json", "Accuracy from feedback vs validation")
    assert ") - 0.08) and on (namespace) " in _limit(accuracy)
    p_values = _panel(settings, "model-health.json", "Output and multivariate drift p-values")
    assert _threshold(p_values) == 0.01

    # the monitor built from the same settings acts on the same figures
    engine = create_engine(settings.storage.database_url)
    upgrade(engine)
    try:
        policy = Monitor(
            settings, engine, ModelRegistry(settings.storage.registry_path)
        ).trigger.policy
    finally:
        engine.dispose()
    config = MixinConfig.from_settings(settings)
    assert policy.ood_fraction == config.thresholds.ood_fraction == ood_fraction
    assert policy.drift_windows == config.thresholds.drift_windows == 5
    assert policy.mae_degradation == config.thresholds.mae_degradation == 0.4
    assert policy.accuracy_drop == config.thresholds.accuracy_drop == 0.08


@pytest.mark.parametrize(("stall_seconds", "spoken"), [(3600, "1 hour"), (3 * 3600, "3 hours")])
def test_the_stall_deadline_moves_the_alert_text_and_the_dashboard_line(
    stall_seconds: float, spoken: str
) -> None:
    """The worker turns watchkeeper_retrain_job_stalled to 1 at its stall deadline
    (settings.retrain.stall_seconds); the alert names that deadline and the progress
    panel draws it, from the same setting."""
    settings = Settings(retrain_stall_seconds=stall_seconds)
    stalled = _rules(settings)["WatchkeeperRetrainJobStalled"]
    assert (
        f"no progress for over {spoken} (WATCHKEEPER_RETRAIN_STALL_SECONDS)"
        in stalled["annotations"]["description"]
    )
    panel = _panel(
        settings, "accuracy-lifecycle.json", "Retraining job: seconds since progress, by worker"
    )
    assert _threshold(panel) == stall_seconds


def test_a_changed_configuration_still_passes_promtool(tmp_path: Path) -> None:
    settings = Settings(
        trigger_ood_fraction=0.25,
        trigger_drift_windows=4,
        monitor_window_seconds=450,
        metrics_namespace="ml",
    )
    paths = []
    for relative, text in generated(settings).items():
        if relative.startswith("prometheus/rules/"):
            path = tmp_path / Path(relative).name
            path.write_text(text)
            paths.append(str(path))
    for name in ("alerts.yml", "classification.yml"):
        groups = yaml.safe_load(generated(settings)[f"prometheus/rules/{name}"])["groups"]
        assert all('namespace="ml"' in r["expr"] for g in groups for r in g["rules"]), name
    promtool = binary("promtool", "prometheus")
    result = subprocess.run([promtool, "check", "rules", *paths], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _rules(settings)["WatchkeeperDatasetDriftSustained"]["for"] == "30m"


@pytest.mark.parametrize(
    ("seconds", "text"), [(1800, "30m"), (3600, "1h"), (5400, "1h30m"), (45, "45s"), (0, "0m")]
)
def test_durations_read_as_prometheus_writes_them(seconds: float, text: str) -> None:
    assert prom_duration(seconds) == text


def test_runbook_url_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="absolute URL"):
        Settings(alert_runbook_url="docs/runbook.md")
    runbook = Settings(alert_runbook_url="https://git.example.org/wk/blob/main/docs/runbook.md")
    rules = _rules(runbook)
    assert rules["WatchkeeperHighLatency"]["annotations"]["runbook_url"] == (
        "https://git.example.org/wk/blob/main/docs/runbook.md#high-latency"
    )


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_every_generated_rule_file_is_loaded_by_prometheus(config: str) -> None:
    loaded = yaml.safe_load((REPO / "prometheus" / config).read_text())["rule_files"]
    rule_files = {
        relative.removeprefix("prometheus/")
        for relative in generated(Settings())
        if relative.startswith("prometheus/rules/")
    }
    assert rule_files <= set(loaded)
