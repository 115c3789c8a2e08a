"""The log-retention alerts: promtool checks them, fires each, and shows it silent when
pruning works (or when the log is simply still young)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability import binary

RULES = Path(__file__).resolve().parents[2] / "prometheus" / "rules" / "retention.yml"
JOB = 'job="watchkeeper-monitor",instance="m:8001"'
DAY = 86400


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{JOB}{extra}}}", "values": values}


def oldest(age_days: float, *, advancing: bool, table: str = "predictions") -> dict[str, str]:
    """The oldest row's timestamp, ``age_days`` old at t=0; it keeps that age while the
    prune advances it, and ages with time when the prune has stopped."""
    step = 60 if advancing else 0
    return series(
        "watchkeeper_retention_oldest_row_timestamp_seconds",
        f"{-age_days * DAY:.0f}+{step}x600",
        table=table,
    )


def limit(days: float, table: str = "predictions") -> dict[str, str]:
    return series("watchkeeper_retention_limit_seconds", f"{days * DAY:.0f}x600", table=table)


def rows(per_minute: int) -> dict[str, str]:
    return series("watchkeeper_retention_rows", f"1000000+{per_minute}x600", table="predictions")


def _rule(alert: str) -> dict[str, Any]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return next(r for g in groups for r in g["rules"] if r["alert"] == alert)


def case(alert: str, inputs: list[dict[str, str]], at_minutes: int, fires: bool) -> dict[str, Any]:
    rule = _rule(alert)
    expected = []
    if fires:
        labels = {"severity": rule["labels"]["severity"], "table": "predictions"}
        labels.update(job="watchkeeper-monitor", instance="m:8001")
        annotations = {
            key: text.replace("{{ $labels.table }}", "predictions")
            for key, text in rule["annotations"].items()
        }
        expected = [{"exp_labels": labels, "exp_annotations": annotations}]
    return {
        "interval": "1m",
        "input_series": inputs,
        "alert_rule_test": [
            {"eval_time": f"{at_minutes}m", "alertname": alert, "exp_alerts": expected}
        ],
    }


CASES = [
    # the prune stopped: the oldest row ages past 30 days + 1 day of margin
    case("WatchkeeperLogRetentionOverdue", [oldest(31.5, advancing=False), limit(30)], 100, True),
    # the prune keeps the oldest row at the retention age
    case("WatchkeeperLogRetentionOverdue", [oldest(30, advancing=True), limit(30)], 100, False),
    # a full retention period held and still growing by 10,000 rows a minute
    case(
        "WatchkeeperLogGrowingPastRetention",
        [rows(10_000), oldest(30, advancing=True), limit(30)],
        480,
        True,
    ),
    # steady: the prune deletes what arrives
    case(
        "WatchkeeperLogGrowingPastRetention",
        [rows(0), oldest(30, advancing=True), limit(30)],
        480,
        False,
    ),
    # a young log grows until it holds a retention period: not an alert
    case(
        "WatchkeeperLogGrowingPastRetention",
        [rows(10_000), oldest(3, advancing=True), limit(30)],
        480,
        False,
    ),
]


@pytest.fixture(scope="module")
def promtool() -> str:
    return binary("promtool", "prometheus")


def test_retention_rules_pass_promtool_check(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_retention_alerts_fire_when_they_should_and_only_then(
    promtool: str, tmp_path: Path
) -> None:
    tests = tmp_path / "retention-test.yml"
    tests.write_text(
        yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": CASES})
    )
    result = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_retention_alert_has_a_runbook_section() -> None:
    runbook = (RULES.parents[2] / "docs" / "runbook.md").read_text()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
            assert f"\n## {anchor.replace('-', ' ')}" in runbook.lower(), anchor
            assert rule["labels"]["severity"] and rule["annotations"]["description"]
