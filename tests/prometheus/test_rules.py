"""Alert and recording rules: promtool checks them, and promtool unit tests fire every
alert and show it silent for a blip shorter than its ``for:``.

The cases are data here; the expected annotations are read from the rules file
(rendering ``$labels``), so a test fails when an alert's condition, duration, labels
or annotations change without the case changing too.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability import binary

ROOT = Path(__file__).resolve().parents[2] / "prometheus"
RULES = [ROOT / "rules" / "recording.yml", ROOT / "rules" / "alerts.yml"]

V1 = {"model_version": "v1"}
GRLIV = 'model_version="v1",feature="Gr_Liv_Area"'
# alert -> (input series, minutes at which it must fire, series for a blip that must not)
CASES: dict[str, dict[str, Any]] = {
    "WatchkeeperDatasetDriftSustained": {
        "fire": [('watchkeeper_monitor_dataset_drift{model_version="v1"}', "1x40")],
        "quiet": [('watchkeeper_monitor_dataset_drift{model_version="v1"}', "0x5 1x20 0x20")],
        "at": 35,
        "labels": V1,
    },
    "WatchkeeperFeatureDrift": {
        "fire": [('watchkeeper_monitor_drifted_features_ratio{model_version="v1"}', "0.1x40")],
        "quiet": [
            ('watchkeeper_monitor_drifted_features_ratio{model_version="v1"}', "0x5 0.1x10 0x30")
        ],
        "at": 35,
        "labels": V1,
    },
    "WatchkeeperHighOODFraction": {
        "fire": [('watchkeeper_monitor_ood_fraction{model_version="v1"}', "0.3x30")],
        "quiet": [('watchkeeper_monitor_ood_fraction{model_version="v1"}', "0.01x5 0.5x5 0.01x20")],
        "at": 20,
        "labels": V1,
    },
    "WatchkeeperAccuracyDegraded": {
        "fire": [
            ('watchkeeper_monitor_mae_lower_bound{model_version="v1"}', "26000x40"),
            ('watchkeeper_monitor_validation_mae{model_version="v1"}', "15000x40"),
        ],
        # a blip, and a point MAE far over the limit whose bound (few labels) is not
        "quiet": [
            (
                'watchkeeper_monitor_mae_lower_bound{model_version="v1"}',
                "15000x5 30000x10 16000x30",
            ),
            ('watchkeeper_monitor_mae{model_version="v1"}', "30000x45"),
            ('watchkeeper_monitor_validation_mae{model_version="v1"}', "15000x45"),
        ],
        "at": 35,
        "labels": V1,
    },
    "WatchkeeperFeedbackOrphans": {
        "fire": [("watchkeeper_monitor_feedback_orphans_total", "0x10 2x30")],
        "quiet": [("watchkeeper_monitor_feedback_orphans_total", "0x40")],
        "at": 15,
        "labels": {},
    },
    "WatchkeeperTooFewLabels": {
        "fire": [('watchkeeper_predictions_total{model_version="v1"}', "0+60x200")],
        "quiet": [
            ('watchkeeper_predictions_total{model_version="v1"}', "0+60x200"),
            ("watchkeeper_monitor_last_labels_timestamp_seconds", "0+60x200"),
        ],
        "at": 130,
        "labels": {},
    },
    # data quality, against the reference's own rates: quiet for a feature missing as
    # often as in training (Misc_Feature), for 2008–10 sales' newest Year_Built values
    # (at most 3.8 % above training's range) and for blips; firing for 5 % of rows out
    # of range (one client's Gr_Liv_Area × 10)
    "WatchkeeperFeatureMissing": {
        "fire": [
            (f"watchkeeper_monitor_missing_rate{{{GRLIV}}}", "0.25x30"),
            (f"watchkeeper_monitor_reference_missing_rate{{{GRLIV}}}", "0x30"),
        ],
        "quiet": [
            (f"watchkeeper_monitor_missing_rate{{{GRLIV}}}", "0.05x5 0.3x5 0.05x20"),
            (f"watchkeeper_monitor_reference_missing_rate{{{GRLIV}}}", "0x30"),
            (
                'watchkeeper_monitor_missing_rate{model_version="v1",feature="Misc_Feature"}',
                "0.97x30",
            ),
            (
                'watchkeeper_monitor_reference_missing_rate{model_version="v1",feature="Misc_Feature"}',
                "0.96x30",
            ),
        ],
        "at": 20,
        "labels": {"model_version": "v1", "feature": "Gr_Liv_Area"},
    },
    "WatchkeeperFeatureOutOfRange": {
        "fire": [
            (f"watchkeeper_monitor_out_of_range_rate{{{GRLIV}}}", "0.05x30"),
            (f"watchkeeper_monitor_reference_out_of_range_rate{{{GRLIV}}}", "0x30"),
        ],
        "quiet": [
            (
                'watchkeeper_monitor_out_of_range_rate{model_version="v1",feature="Year_Built"}',
                "0.038x30",
            ),
            (
                'watchkeeper_monitor_reference_out_of_range_rate{model_version="v1",feature="Year_Built"}',
                "0x30",
            ),
            (f"watchkeeper_monitor_out_of_range_rate{{{GRLIV}}}", "0x5 1x5 0x20"),
            (f"watchkeeper_monitor_reference_out_of_range_rate{{{GRLIV}}}", "0x30"),
        ],
        "at": 20,
        "labels": {"model_version": "v1", "feature": "Gr_Liv_Area"},
    },
    "WatchkeeperUnseenCategories": {
        "fire": [
            (
                'watchkeeper_monitor_unseen_category_rate{model_version="v1",feature="Neighborhood"}',
                "0.2x30",
            ),
            (
                'watchkeeper_monitor_reference_unseen_category_rate{model_version="v1",feature="Neighborhood"}',
                "0x30",
            ),
        ],
        "quiet": [
            (
                'watchkeeper_monitor_unseen_category_rate{model_version="v1",feature="Neighborhood"}',
                "0.004x30",
            ),
            (
                'watchkeeper_monitor_reference_unseen_category_rate{model_version="v1",feature="Neighborhood"}',
                "0x30",
            ),
        ],
        "at": 20,
        "labels": {"model_version": "v1", "feature": "Neighborhood"},
    },
    "WatchkeeperRejectedRequests": {
        "fire": [
            ('watchkeeper_http_requests_total{endpoint="/predict",status="400"}', "0+10x40"),
            ('watchkeeper_http_requests_total{endpoint="/predict",status="200"}', "0+90x40"),
        ],
        "quiet": [
            ('watchkeeper_http_requests_total{endpoint="/predict",status="400"}', "0+1x40"),
            ('watchkeeper_http_requests_total{endpoint="/predict",status="200"}', "0+90x40"),
        ],
        "at": 30,
        "labels": {},
    },
    "WatchkeeperHighErrorRate": {
        "fire": [
            ('watchkeeper_http_requests_total{endpoint="/predict",status="500"}', "0+10x30"),
            ('watchkeeper_http_requests_total{endpoint="/predict",status="200"}', "0+90x30"),
        ],
        "quiet": [
            (
                'watchkeeper_http_requests_total{endpoint="/predict",status="500"}',
                "0x10 0+50x3 150x20",
            ),
            ('watchkeeper_http_requests_total{endpoint="/predict",status="200"}', "0+90x35"),
        ],
        "at": 25,
        "labels": {},
    },
    "WatchkeeperHighLatency": {
        "fire": [
            (
                'watchkeeper_http_request_duration_seconds_bucket{endpoint="/predict",le="0.5"}',
                "0+1x30",
            ),
            (
                'watchkeeper_http_request_duration_seconds_bucket{endpoint="/predict",le="1"}',
                "0+2x30",
            ),
            (
                'watchkeeper_http_request_duration_seconds_bucket{endpoint="/predict",le="+Inf"}',
                "0+10x30",
            ),
        ],
        "quiet": [
            (
                'watchkeeper_http_request_duration_seconds_bucket{endpoint="/predict",le="0.5"}',
                "0+10x40",
            ),
            (
                'watchkeeper_http_request_duration_seconds_bucket{endpoint="/predict",le="+Inf"}',
                "0+10x40",
            ),
        ],
        "at": 25,
        "labels": {},
    },
    "WatchkeeperLogBacklog": {
        "fire": [('watchkeeper_log_queue_depth{instance="a"}', "6000x20")],
        "quiet": [('watchkeeper_log_queue_depth{instance="a"}', "10x5 9000x3 10x20")],
        "at": 10,
        "labels": {},
    },
    "WatchkeeperLogDatabaseDown": {
        "fire": [('watchkeeper_log_database_up{instance="a"}', "1x5 0x10")],
        "quiet": [('watchkeeper_log_database_up{instance="a"}', "1x5 0x1 1x20")],
        "at": 12,
        "labels": {},
    },
    "WatchkeeperLogJournalFull": {
        "fire": [('watchkeeper_log_entries_rejected_total{instance="a"}', "0x5 0+3x10")],
        "quiet": [('watchkeeper_log_entries_rejected_total{instance="a"}', "0x30")],
        "at": 10,
        "labels": {},
    },
    "WatchkeeperLogDeadLetters": {
        "fire": [('watchkeeper_log_rows_dead_lettered_total{instance="a"}', "0x5 1x10")],
        "quiet": [('watchkeeper_log_rows_dead_lettered_total{instance="a"}', "2x30")],
        "at": 10,
        "labels": {},
    },
    "WatchkeeperLogWriterRestarted": {
        "fire": [('watchkeeper_log_writer_restarts_total{instance="a"}', "0x5 1x10")],
        "quiet": [('watchkeeper_log_writer_restarts_total{instance="a"}', "0x30")],
        "at": 10,
        "labels": {},
    },
    "WatchkeeperMonitorStale": {
        "fire": [("watchkeeper_monitor_last_success_timestamp_seconds", "60x60")],
        "quiet": [("watchkeeper_monitor_last_success_timestamp_seconds", "0+60x60")],
        "at": 50,
        "labels": {},
    },
    # one failed window (the counter steps once) must not page; failures that go on must
    "WatchkeeperMonitorWindowErrors": {
        "fire": [('watchkeeper_monitor_window_errors_total{check="ood"}', "0+1x40")],
        "quiet": [
            ('watchkeeper_monitor_window_errors_total{check="ood"}', "0x5 1x40"),
            ('watchkeeper_monitor_window_errors_total{check="feature_drift"}', "0x45"),
        ],
        "at": 20,
        "labels": {"check": "ood"},
    },
    "WatchkeeperRetrainingFailed": {
        "fire": [('watchkeeper_retrain_runs_total{outcome="failed"}', "0x10 1x20")],
        "quiet": [
            ('watchkeeper_retrain_runs_total{outcome="failed"}', "0x30"),
            ('watchkeeper_retrain_runs_total{outcome="promoted"}', "0x10 1x20"),
        ],
        "at": 15,
        "labels": {"outcome": "failed"},
    },
    "WatchkeeperModelRejectedRepeatedly": {
        "fire": [('watchkeeper_retrain_runs_total{outcome="rejected"}', "0x10 1x10 2x10 3x30")],
        "quiet": [('watchkeeper_retrain_runs_total{outcome="rejected"}', "0x10 1x10 2x40")],
        "at": 50,
        "labels": {"outcome": "rejected"},
    },
}


def _alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load((ROOT / "rules" / "alerts.yml").read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def _render(text: str, labels: dict[str, str]) -> str:
    for name, value in labels.items():
        text = text.replace(f"{{{{ $labels.{name} }}}}", value)
    return text


def _series(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"series": name, "values": values} for name, values in pairs]


def _test_file(tmp_path: Path) -> Path:
    alerts = _alerts()
    tests = []
    for name, case in CASES.items():
        rule = alerts[name]
        labels = {**case["labels"], "severity": rule["labels"]["severity"]}
        annotations = {k: _render(v, labels) for k, v in rule["annotations"].items()}
        tests.append(
            {
                "interval": "1m",
                "input_series": _series(case["fire"]),
                "alert_rule_test": [
                    {
                        "eval_time": f"{case['at']}m",
                        "alertname": name,
                        "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}],
                    },
                ],
            }
        )
        tests.append(
            {
                "interval": "1m",
                "input_series": _series(case["quiet"]),
                "alert_rule_test": [
                    {"eval_time": f"{case['at']}m", "alertname": name, "exp_alerts": []}
                ],
            }
        )
    path = tmp_path / "alerts_test.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(p) for p in RULES],
                "evaluation_interval": "1m",
                "tests": tests,
            },
            sort_keys=False,
        )
    )
    return path


@pytest.fixture(scope="module")
def promtool() -> str:
    return binary("promtool", "prometheus")


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    assert set(CASES) == set(_alerts())


def test_every_alert_carries_severity_summary_description_and_runbook() -> None:
    runbook = (ROOT.parent / "docs" / "runbook.md").read_text()
    for name, rule in _alerts().items():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert f"## {anchor.replace('-', ' ')}" in runbook.lower(), (name, anchor)
        assert rule.get("for"), f"{name} has no for: duration"


def test_rules_pass_promtool_check(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", *map(str, RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_fire_every_alert_and_ignore_blips(
    promtool: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [promtool, "test", "rules", str(_test_file(tmp_path))], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_passes_promtool_check(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "check", "config", str(ROOT / "prometheus.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
