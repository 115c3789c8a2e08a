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
from watchkeeper.db import partitions as parts
from watchkeeper.settings import Settings

RULES = Path(__file__).resolve().parents[2] / "prometheus" / "rules" / "retention.yml"
JOB = 'job="watchkeeper-monitor",instance="m:8001"'
DAY = 86400


def series(name: str, values: str, job: str = JOB, **labels: str) -> dict[str, str]:
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{job}{extra}}}", "values": values}


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


def errors(values: str, task: str = "partitions", job: str = JOB) -> dict[str, str]:
    """The monitor's failed retention tasks, a sample a minute: ``0+1x480`` fails at
    every wake for 8 hours."""
    return series("watchkeeper_retention_errors_total", values, job=job, task=task)


def counted_every(seconds: float, minutes: int = 480) -> str:
    """A failure counted every ``seconds`` (whole minutes), a sample a minute."""
    step = round(seconds / 60)
    return " ".join(f"{n}+0x{step - 1}" for n in range(minutes // step + 1))


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
    "WatchkeeperLogPartitionsFailing": (
        "warning",
        "The prediction log's day partitions ahead cannot be created",
        "The monitor's checks of the PostgreSQL day partitions ahead (today and the next 7 days)"
        " have kept failing for 6 hours. Once the days already created run out, new rows land in"
        " the default partition and retention falls back to deleting them row by row.",
        "log-partitions-failing",
        "Retention errors by task (1h)",
    ),
}


def _panel_url(title: str) -> str:
    """The link to the panel titled ``title`` of the committed serving dashboard."""
    uid = "watchkeeper-serving"
    texts = (RULES.parents[2] / "grafana" / "dashboards").glob("*.json")
    (dashboard,) = [d for d in map(json.loads, map(Path.read_text, texts)) if d["uid"] == uid]
    (panel,) = [p for p in dashboard["panels"] if p["title"] == title]
    return f"{Settings().grafana.url}/d/{uid}?viewPanel={panel['id']}"


def case(
    alert: str,
    inputs: list[dict[str, str]],
    at_minutes: int,
    fires: bool,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``labels``: the firing alert's own labels (``table="predictions"`` unless given)."""
    expected = []
    if fires:
        severity, summary, description, runbook, panel = EXPECTED[alert]
        labels = {"severity": severity, **(labels or {"table": "predictions"})}
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
        # the partitions check fails at every wake for 8 hours: fires after 6
        case(
            "WatchkeeperLogPartitionsFailing",
            [errors("0+1x480")],
            400,
            True,
            labels={"task": "partitions"},
        ),
        # ...and is still pending after 5 hours of it
        case("WatchkeeperLogPartitionsFailing", [errors("0+1x480")], 300, False),
        # a single failure, retried with success a minute later: a blip, looked at while
        # the last hour still counts it
        case("WatchkeeperLogPartitionsFailing", [errors("0x10 1x470")], 30, False),
        # failing for 3 hours (a database maintenance), then recovered: looked at while
        # the last hour still counts the failures
        case("WatchkeeperLogPartitionsFailing", [errors("0+1x180 180x300")], 235, False),
        # a day's creation refused its lock for hours: each retry, RETRY_INTERVAL apart,
        # counts a failed check, and the alert fires after 6 hours of them
        case(
            "WatchkeeperLogPartitionsFailing",
            [errors(counted_every(parts.RETRY_INTERVAL))],
            400,
            True,
            labels={"task": "partitions"},
        ),
        # ...whereas retried at the hourly check (a little more than an hour apart), the
        # hours without a failure would keep restarting its 6 hours
        case("WatchkeeperLogPartitionsFailing", [errors(counted_every(62 * 60))], 400, False),
        # failed prunes are not the partitions' (WatchkeeperLogRetentionOverdue's)
        case("WatchkeeperLogPartitionsFailing", [errors("0+1x480", task="prune")], 400, False),
        # the same failures, scraped by someone else's job: not ours to alert on
        case(
            "WatchkeeperLogPartitionsFailing",
            [errors("0+1x480", job='job="someone-else",instance="m:8001"')],
            400,
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
