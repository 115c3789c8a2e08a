"""The log-retention alerts: promtool checks them, fires each, and shows it silent when
pruning works (or when the log is simply still young). The labels and annotations a
firing alert must carry are written here, apart from the rules file and its generator."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability import binary
from watchkeeper.settings import Settings

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


# alert -> severity, summary, description (as they render for table="predictions"),
# runbook section, and the title of the serving dashboard's panel it links to
EXPECTED: dict[str, tuple[str, str, str, str, str]] = {
    "WatchkeeperLogRetentionOverdue": (
        "warning",
        "Rows of predictions outlive their retention: pruning has stopped",
        "The oldest predictions row the prune has not passed is more than 1 day older than its"
        " retention. Old rows are not being deleted, and the database will fill.",
        "log-retention-overdue",
        "Oldest row age and its retention, by table",
    ),
    "WatchkeeperLogGrowingPastRetention": (
        "warning",
        "The prediction log keeps growing although retention is in effect",
        "The log already holds a full retention period, yet at the growth of the last 6 hours"
        " its predictions would grow by 50 % within 7 days: traffic outgrows the database size"
        " planned for it.",
        "log-growing-past-retention",
        "Log rows by table",
    ),
}


def _panel_url(title: str) -> str:
    """The link to the panel titled ``title`` of the committed serving dashboard."""
    uid = "watchkeeper-serving"
    texts = (RULES.parents[2] / "grafana" / "dashboards").glob("*.json")
    (dashboard,) = [d for d in map(json.loads, map(Path.read_text, texts)) if d["uid"] == uid]
    (panel,) = [p for p in dashboard["panels"] if p["title"] == title]
    return f"{Settings().grafana.url}/d/{uid}?viewPanel={panel['id']}"


def case(alert: str, inputs: list[dict[str, str]], at_minutes: int, fires: bool) -> dict[str, Any]:
    expected = []
    if fires:
        severity, summary, description, runbook, panel = EXPECTED[alert]
        labels = {"severity": severity, "table": "predictions"}
        labels.update(job="watchkeeper-monitor", instance="m:8001")
        annotations = {
            "summary": summary,
            "description": description,
            "runbook_url": f"{Settings().alerting.runbook_url}#{runbook}",
            "dashboard_url": _panel_url(panel),
        }
        expected = [{"exp_labels": labels, "exp_annotations": annotations}]
    return {
        "interval": "1m",
        "input_series": inputs,
        "alert_rule_test": [
            {"eval_time": f"{at_minutes}m", "alertname": alert, "exp_alerts": expected}
        ],
    }


def cases() -> list[dict[str, Any]]:
    """The promtool cases, built when a test runs (under the test's own settings)."""
    return [
        # the prune stopped: the oldest row ages past 30 days + 1 day of margin
        case(
            "WatchkeeperLogRetentionOverdue", [oldest(31.5, advancing=False), limit(30)], 100, True
        ),
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
        yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": cases()})
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
