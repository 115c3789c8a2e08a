"""Everything a report shows, read from the prediction log, the monitor's stored
results and the model registry into one :class:`ReportData`.

The work is bounded whatever the log's size: results are read a page at a time,
predictions are counted and ranked by the database, and only the rows of the few
windows drawn are read whole. Progress goes to standard error through
:mod:`watchkeeper.progress` (shown only at a terminal).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from monitoring.report import drifted, log_rows, ood_rows, retraining, stored_results, versions
from monitoring.report.records import Period, ReportData, Thresholds
from monitoring.report.references import References
from watchkeeper.progress import Stages, progress_bar
from watchkeeper.registry import ModelRegistry

OOD_ROWS = 20
STAGES = 4
"""Stages of a report at a terminal: three here, and writing the file."""


def gather(
    engine: sa.Engine,
    registry: ModelRegistry,
    period: Period,
    thresholds: Thresholds,
    *,
    stages: Stages | None = None,
    max_features: int = drifted.MAX_FEATURES,
    ood_limit: int = OOD_ROWS,
) -> ReportData:
    stages = stages or Stages.quiet()
    # a bar, not a stage: the one step whose length grows with the log
    total = stored_results.count(engine, period)
    with progress_bar(total, "monitor results", unit="row", enabled=stages.shown) as bar:
        stored = stored_results.read(engine, period, advance=bar.advance)
    with stages.stage("reading retraining and model versions"):
        requests = retraining.read_requests(engine, period)
        runs = retraining.read_runs(engine, period)
        predicted = versions.predictions_by_version(engine, period)
        seen = {w.model_version for w in stored.windows}
        seen |= {p.model_version for p in stored.accuracy}
        seen |= {p.model_version for p in stored.class_accuracy}
        seen |= {v for r in runs for v in (r.champion_version, r.candidate_version) if v}
        version_summaries = versions.summarise(
            registry,
            period,
            seen=seen,
            predicted=predicted,
            accuracy=stored.accuracy,
            class_accuracy=stored.class_accuracy,
        )
    references = References(registry)
    with stages.stage("comparing drifted features with their reference"):
        shown, not_shown = drifted.compare(
            drifted.rank(stored.feature_tests),
            references,
            lambda w: log_rows.window_features(engine, w.model_version, w.first_seq, w.last_seq),
            limit=max_features,
        )
    with stages.stage("finding the most out-of-distribution rows"):
        worst = ood_rows.build(
            log_rows.most_out_of_distribution(engine, period, ood_limit),
            stored.windows,
            references,
        )
    return ReportData(
        period=period,
        generated_at=datetime.now(UTC),
        thresholds=thresholds,
        predictions=sum(predicted.values()),
        windows=stored.windows,
        accuracy=stored.accuracy,
        class_accuracy=stored.class_accuracy,
        requests=requests,
        runs=runs,
        versions=version_summaries,
        drifted_features=shown,
        drifted_not_shown=not_shown,
        ood_rows=worst,
        notes=tuple(references.problems),
    )
