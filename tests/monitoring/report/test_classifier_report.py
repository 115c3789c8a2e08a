"""The report of a classifier version: accuracy, log-loss, Brier, set coverage and
size, ECE and per-class recall per window, the accuracy chart with its retrain limit and
the classifier's version table, in place of the MAE figures (a regression report is
unchanged: tests/monitoring/report/test_gather.py)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from monitoring.monitor import Monitor
from monitoring.report.build import thresholds
from monitoring.report.gather import gather
from monitoring.report.page import render
from monitoring.report.records import AccuracyKind, Period, ReportData
from tests.monitoring.classifier_log import (
    NOW,
    classifier_of,
    draw,
    outcomes,
    write_labels,
    write_rows,
)
from tests.monitoring.log_rows import positions
from watchkeeper.db.tables import retrain_runs
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings
from watchkeeper.training import TrainedModel


def _gather(monitor: Monitor, settings: Settings) -> ReportData:
    registry = ModelRegistry(settings.storage.registry_path)
    return gather(monitor.engine, registry, Period(), thresholds(settings))


def test_a_classifier_report_shows_classification_figures_per_window(
    class_monitor: Monitor, class_settings: Settings, classifier_trained: TrainedModel
) -> None:
    model = classifier_of(classifier_trained)
    frame, p = draw(1000, seed=21)
    ids = write_rows(class_monitor.engine, model, frame)
    truth = outcomes(p, seed=22)
    truth[0] = "unsubscribed"  # a class the model never saw
    class_monitor.run_once()
    write_labels(class_monitor.engine, ids[:800], truth[:800])
    class_monitor.run_once()

    data = _gather(class_monitor, class_settings)
    page = render(data)

    assert data.accuracy == ()  # no MAE point for a classifier
    realised = [p for p in data.class_accuracy if p.kind is AccuracyKind.REALISED]
    estimated = [p for p in data.class_accuracy if p.kind is AccuracyKind.ESTIMATED]
    at = positions(class_monitor.engine)
    assert [p.window_id for p in realised] == [f"v1:{at[0]}-{at[499]}", f"v1:{at[500]}-{at[999]}"]
    assert [p.labels for p in realised] == [500, 300]
    assert len(estimated) == 2 and all(p.figures is None for p in estimated)
    first = realised[0].figures
    assert first is not None and first.unknown_labels == 1
    assert {label for label, _ in first.recall} == {"churn", "stay"}
    (version,) = data.versions
    assert version.task == "classification" and version.labels == 800
    assert version.validation["accuracy"] == pytest.approx(classifier_trained.metrics.accuracy)
    weighted = (realised[0].accuracy * 500 + realised[1].accuracy * 300) / 800
    assert version.realised_accuracy == pytest.approx(weighted)

    # the most out-of-distribution rows name their predicted class, not its index
    assert data.ood_rows and {r.predicted_class for r in data.ood_rows} <= {"churn", "stay"}
    index = classifier_of(classifier_trained).classes.index(data.ood_rows[0].predicted_class)
    assert data.ood_rows[0].prediction == index

    assert 'id="classification"' in page
    section = page[page.index('id="classification"') : page.index('id="versions"')]
    for header in ("accuracy", "log-loss", "Brier", "set coverage", "set size", "ECE"):
        assert f">{header}</th>" in section
    assert f"{realised[0].accuracy:.1%}" in section
    assert f"{first.log_loss:.3f}" in section
    assert "1 of an unknown class" in section
    assert re.search(r"churn \d+%, stay \d+%", section)
    assert 'aria-label="accuracy"' in page
    limit = classifier_trained.metrics.accuracy - class_settings.trigger.accuracy_drop
    assert f"v1: retrain below {limit:.1%}" in page
    assert "latest realised accuracy" in page
    # the regression figures are not drawn for a classifier
    assert "realised MAE" not in page and "validation MAE" not in page  # cards, tables
    assert 'aria-label="MAE"' not in page
    # labels of a window still open are not in the figures yet: the table says whose are
    versions = page[page.index('id="versions"') :]
    assert ">labels scored</th>" in versions and ">labels</th>" not in versions
    assert "scored when it closes" in versions


def test_a_classifier_retraining_run_shows_the_gates_log_loss(
    class_monitor: Monitor, class_settings: Settings
) -> None:
    with class_monitor.engine.begin() as connection:
        connection.execute(
            retrain_runs.insert(),
            {
                "started_at": NOW,
                "finished_at": NOW + timedelta(minutes=1),
                "trigger": "monitor",
                "reason": "accuracy: 70.0% right over 1000 labels",
                "request_ids": [1],
                "champion_version": "v1",
                "candidate_version": "v2",
                "data": {},
                "champion_metrics": {"accuracy": 0.8, "log_loss": 0.4321},
                "candidate_metrics": {"accuracy": 0.82, "log_loss": 0.4012},
                "outcome": "promoted",
            },
        )

    data = _gather(class_monitor, class_settings)
    page = render(data)

    (run,) = data.runs
    assert (run.champion_log_loss, run.candidate_log_loss) == (0.4321, 0.4012)
    assert (run.champion_accuracy, run.candidate_accuracy) == (0.8, 0.82)
    assert run.champion_mae is None
    section = page[page.index('id="retraining"') :]
    assert ">champion log-loss</th>" in section and ">0.4012</td>" in section
    assert ">candidate accuracy</th>" in section and ">82.0%</td>" in section
    assert "MAE" not in section  # no empty regression columns beside the classifier's
    assert "candidate log-loss 0.4012, champion 0.4321" in page  # the run's mark
