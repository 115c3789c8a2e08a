"""A classifier's alerts (prometheus/rules/classification.yml): promtool checks them,
fires each, shows it silent for a blip shorter than its ``for:``, for healthy figures
and for the same series of another job, and shows that a classifier's series never
fire the regression accuracy alerts, nor a regression model's series the classifier
ones. The labels and annotations a firing alert must carry are written here, apart
from the rules file and its generator."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from tests.observability import binary
from watchkeeper.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "prometheus" / "rules"
CLASSIFICATION = RULES / "classification.yml"
# the regression alerts run beside them: a model's series must fire only its own task's
RULE_FILES = [RULES / "recording.yml", RULES / "alerts.yml", CLASSIFICATION]
MONITOR = 'job="watchkeeper-monitor"'
V3 = {"job": "watchkeeper-monitor", "model_version": "v3"}

CLASSIFIER_ALERTS = (
    "WatchkeeperClassifierAccuracyDegraded",
    "WatchkeeperPredictionSetCoverageOutOfBand",
    "WatchkeeperClassifierCalibrationDegraded",
    "WatchkeeperEstimatedAccuracyDrop",
)
REGRESSION_ACCURACY_ALERTS = ("WatchkeeperAccuracyDegraded", "WatchkeeperIntervalCoverageOutOfBand")


def gauge(name: str, values: str, job: str = MONITOR, **labels: str) -> dict[str, str]:
    extra = "".join(f',{k}="{v}"' for k, v in {"model_version": "v3", **labels}.items())
    return {"series": f"watchkeeper_monitor_{name}{{{job}{extra}}}", "values": values}


class Expected(NamedTuple):
    severity: str
    summary: str
    description: str
    runbook: str
    panel: str  # title of the accuracy dashboard's panel


EXPECTED: dict[str, Expected] = {
    "WatchkeeperClassifierAccuracyDegraded": Expected(
        "critical",
        "Classifier v3's accuracy is more than 5 points under its validation accuracy",
        "The upper confidence bound (Wilson) of the rolling accuracy from feedback has been more"
        " than 5 points under the validation accuracy for 30 minutes: the drop is not noise of a"
        " few labels. A retrain is requested.",
        "classifier-accuracy-degraded",
        "Accuracy from feedback vs validation",
    ),
    "WatchkeeperPredictionSetCoverageOutOfBand": Expected(
        "warning",
        "Classifier v3's prediction sets hold the true class too rarely or too often",
        "The rolling share of true classes inside the prediction set has been outside [80 %, 98 %]"
        " (above it by more than the accuracy explains) for 1 hour: the sets clients are given no"
        " longer mean their level.",
        "prediction-set-coverage-out-of-band",
        "Prediction set coverage",
    ),
    "WatchkeeperClassifierCalibrationDegraded": Expected(
        "warning",
        "Classifier v3's confidence no longer matches its accuracy",
        "The expected calibration error of the rolling labels has been above 0.1 for 1 hour: the"
        " class probabilities clients read are off by more than that on average, and the"
        " label-free accuracy estimate, built on the same confidence, cannot be trusted.",
        "classifier-calibration-degraded",
        "Calibration error (ECE)",
    ),
    "WatchkeeperEstimatedAccuracyDrop": Expected(
        "warning",
        "Classifier v3's estimated accuracy is more than 5 points under its validation accuracy",
        "The accuracy the model's calibrated confidence expects for the last window, before any"
        " label, has been more than 5 points under the validation accuracy for 30 minutes:"
        " accuracy is likely falling. No retrain is requested on an estimate; labels decide.",
        "estimated-accuracy-drop",
        "Estimated vs realised accuracy",
    ),
}


def classifier(job: str = MONITOR, *, bad: bool) -> list[dict[str, str]]:
    """Every gauge the monitor exports for a classifier version over 90 minutes: a
    healthy one, or one whose accuracy, sets, calibration and estimate all went wrong."""
    figures = {
        "accuracy_ratio": (0.91, 0.70),
        "accuracy_lower_bound_ratio": (0.89, 0.67),
        "accuracy_upper_bound_ratio": (0.93, 0.73),
        "validation_accuracy_ratio": (0.92, 0.92),
        "log_loss": (0.25, 0.9),
        "validation_log_loss": (0.24, 0.24),
        "brier_score": (0.13, 0.4),
        "prediction_set_coverage_ratio": (0.9, 0.6),
        "prediction_set_size": (1.2, 1.0),
        "calibration_error_ratio": (0.03, 0.25),
        "estimated_accuracy_ratio": (0.9, 0.75),
        "estimated_accuracy_error_ratio": (0.01, 0.05),
        "labels": (1000, 1000),
    }
    series = [gauge(name, f"{pair[bad]:g}x90", job) for name, pair in figures.items()]
    series += [
        gauge("class_recall_ratio", f"{0.3 if bad else 0.9:g}x90", job, **{"class": "yes"}),
        gauge("class_recall_ratio", "0.95x90", job, **{"class": "no"}),
    ]
    return series


def regression(*, bad: bool) -> list[dict[str, str]]:
    """Every accuracy gauge the monitor exports for a regression version."""
    figures = {
        "mae": (15000, 30000),
        "mae_lower_bound": (14000, 28000),
        "validation_mae": (15000, 15000),
        "estimated_mae": (15500, 29000),
        "rmse": (21000, 40000),
        "mape_ratio": (0.09, 0.2),
        "interval_coverage": (0.9, 0.5),
        "labels": (1000, 1000),
    }
    return [gauge(name, f"{pair[bad]:g}x90") for name, pair in figures.items()]


def _panel_url(title: str) -> str:
    """The link to the accuracy dashboard's panel titled ``title``, as committed."""
    uid = "watchkeeper-accuracy"
    texts = (ROOT / "grafana" / "dashboards").glob("*.json")
    (dashboard,) = [d for d in map(json.loads, map(Path.read_text, texts)) if d["uid"] == uid]
    (panel,) = [p for p in dashboard["panels"] if p["title"] == title]
    return f"{Settings().grafana.url}/d/{uid}?viewPanel={panel['id']}"


def _fired(alert: str) -> dict[str, Any]:
    expected = EXPECTED[alert]
    return {
        "exp_labels": {**V3, "severity": expected.severity},
        "exp_annotations": {
            "summary": expected.summary,
            "description": expected.description,
            "runbook_url": f"{Settings().alerting.runbook_url}#{expected.runbook}",
            "dashboard_url": _panel_url(expected.panel),
        },
    }


def case(
    inputs: list[dict[str, str]], at_minutes: int, fires: tuple[str, ...], quiet: tuple[str, ...]
) -> dict[str, Any]:
    """One promtool test: at ``at_minutes`` the alerts ``fires`` fire for v3 and the
    alerts ``quiet`` do not."""
    checks = [
        {"eval_time": f"{at_minutes}m", "alertname": alert, "exp_alerts": [_fired(alert)]}
        for alert in fires
    ]
    checks += [
        {"eval_time": f"{at_minutes}m", "alertname": alert, "exp_alerts": []} for alert in quiet
    ]
    return {"interval": "1m", "input_series": inputs, "alert_rule_test": checks}


def _accuracy(upper: str, validation: str = "0.92x90") -> list[dict[str, str]]:
    return [
        gauge("accuracy_upper_bound_ratio", upper),
        gauge("validation_accuracy_ratio", validation),
    ]


def _estimate(estimate: str) -> list[dict[str, str]]:
    return [
        gauge("estimated_accuracy_ratio", estimate),
        gauge("validation_accuracy_ratio", "0.92x90"),
    ]


ACCURACY, SETS, CALIBRATION, ESTIMATE = CLASSIFIER_ALERTS


def cases() -> list[dict[str, Any]]:
    """The promtool cases, built when a test runs (under the test's own settings)."""
    return [
        # the accuracy's upper bound 0.80 under the limit 0.92 - 0.05 for 40 minutes
        case(_accuracy("0.8x90"), 35, (ACCURACY,), ()),
        # quiet: a bound a point over the limit; a bound under it for 10 minutes only
        case(_accuracy("0.88x90"), 35, (), (ACCURACY,)),
        case(_accuracy("0.93x5 0.8x10 0.93x75"), 35, (), (ACCURACY,)),
        # a point accuracy far under the limit whose bound (few labels) is not: quiet
        case([*_accuracy("0.9x90"), gauge("accuracy_ratio", "0.7x90")], 35, (), (ACCURACY,)),
        # coverage out of the band both ways, for more than the hour; a dip less long
        case([gauge("prediction_set_coverage_ratio", "0.9x10 0.6x80")], 75, (SETS,), ()),
        case(
            [
                gauge("prediction_set_coverage_ratio", "0.9x10 0.995x80"),
                gauge("accuracy_ratio", "0.88x90"),
            ],
            75,
            (SETS,),
            (),
        ),
        # quiet: coverage over the band that the accuracy explains (a set holds the
        # predicted class, so a 99.5 %-accurate model's singleton sets cover 99.5 %)
        case(
            [
                gauge("prediction_set_coverage_ratio", "0.9x10 0.995x80"),
                gauge("accuracy_ratio", "0.9x10 0.995x80"),
            ],
            75,
            (),
            (SETS,),
        ),
        case([gauge("prediction_set_coverage_ratio", "0.9x10 0.5x30 0.9x50")], 75, (), (SETS,)),
        case([gauge("prediction_set_coverage_ratio", "0.9x90")], 75, (), (SETS,)),
        # calibration error over 0.1 for more than the hour; 0.05 (a few labels' noise)
        case([gauge("calibration_error_ratio", "0.02x10 0.2x80")], 75, (CALIBRATION,), ()),
        case([gauge("calibration_error_ratio", "0.05x90")], 75, (), (CALIBRATION,)),
        case([gauge("calibration_error_ratio", "0.02x10 0.3x30 0.02x50")], 75, (), (CALIBRATION,)),
        # the label-free estimate under the limit for 40 minutes; a point over it; a blip
        case(_estimate("0.8x90"), 35, (ESTIMATE,), ()),
        case(_estimate("0.88x90"), 35, (), (ESTIMATE,)),
        case(_estimate("0.9x5 0.7x10 0.9x75"), 35, (), (ESTIMATE,)),
        # firing figures scraped by someone else's job: not ours to alert on
        case(classifier('job="someone-else"', bad=True), 75, (), CLASSIFIER_ALERTS),
        # a healthy classifier: nothing
        case(classifier(bad=False), 75, (), CLASSIFIER_ALERTS + REGRESSION_ACCURACY_ALERTS),
        # a failing classifier fires its own alerts, never the regression ones...
        case(classifier(bad=True), 75, CLASSIFIER_ALERTS, REGRESSION_ACCURACY_ALERTS),
        # ...and a failing regression model fires its own, never the classifier ones
        case(regression(bad=True), 75, (), CLASSIFIER_ALERTS),
    ]


def _regression_fires() -> dict[str, Any]:
    """The failing regression model does fire its own alerts (so its quiet case above
    is about the task, not about figures too mild to fire anything)."""
    checks = [
        {
            "eval_time": "75m",
            "alertname": alert,
            "exp_alerts": [
                {"exp_labels": {**V3, "severity": severity}, "exp_annotations": annotations}
            ],
        }
        for alert, severity, annotations in _regression_annotations()
    ]
    return {"interval": "1m", "input_series": regression(bad=True), "alert_rule_test": checks}


def _regression_annotations() -> list[tuple[str, str, dict[str, str]]]:
    """The regression alerts' annotations as the committed rules render them for v3:
    their wording is test_rules.py's to pin; here only that they fire."""
    rules = {
        rule["alert"]: rule
        for group in yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    found = []
    for alert in REGRESSION_ACCURACY_ALERTS:
        rule = rules[alert]
        annotations = {
            key: value.replace("{{ $labels.model_version }}", "v3")
            for key, value in rule["annotations"].items()
        }
        found.append((alert, rule["labels"]["severity"], annotations))
    return found


@pytest.fixture(scope="module")
def promtool() -> str:
    return binary("promtool", "prometheus")


def test_classification_rules_pass_promtool_check(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", str(CLASSIFICATION)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_classification_alert_has_cases() -> None:
    groups = yaml.safe_load(CLASSIFICATION.read_text())["groups"]
    assert {r["alert"] for g in groups for r in g["rules"]} == set(CLASSIFIER_ALERTS)
    assert set(EXPECTED) == set(CLASSIFIER_ALERTS)


def test_classifier_alerts_fire_for_a_classifier_only_and_ignore_blips_and_other_jobs(
    promtool: str, tmp_path: Path
) -> None:
    tests = tmp_path / "classification-test.yml"
    document = {
        "rule_files": [str(p) for p in RULE_FILES],
        "evaluation_interval": "1m",
        "tests": [*cases(), _regression_fires()],
    }
    tests.write_text(yaml.safe_dump(document, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_classification_alert_has_a_runbook_section() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    for group in yaml.safe_load(CLASSIFICATION.read_text())["groups"]:
        for rule in group["rules"]:
            anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
            assert f"\n## {anchor.replace('-', ' ')}" in runbook.lower(), anchor
