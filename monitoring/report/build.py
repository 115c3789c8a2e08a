"""Building a report file from the settings: gather, render, write."""

from __future__ import annotations

import os
from pathlib import Path

from monitoring.report.gather import STAGES, gather
from monitoring.report.page import render
from monitoring.report.records import Period, ReportData, Thresholds
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import require_current
from watchkeeper.progress import Stages
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings


def thresholds(settings: Settings) -> Thresholds:
    return Thresholds(
        p_value=settings.drift.p_value,
        ood_fraction=settings.trigger.ood_fraction,
        mae_degradation=settings.trigger.mae_degradation,
        drift_windows=settings.trigger.drift_windows,
        accuracy_drop=settings.trigger.accuracy_drop,
    )


def write_report(
    settings: Settings, period: Period, output: Path, *, stages: Stages | None = None
) -> ReportData:
    """Write the period's report to ``output`` (atomically: a reader never sees half a
    page) and return what it shows."""
    stages = stages or Stages.quiet()
    engine = create_engine(settings.storage.database_url)
    try:
        require_current(engine)  # an older schema would fail halfway, less clearly
        registry = ModelRegistry(
            settings.storage.registry_path, trusted_types=settings.storage.trusted_types
        )
        data = gather(engine, registry, period, thresholds(settings), stages=stages)
    finally:
        engine.dispose()
    with stages.stage(f"writing {output}"):
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
        tmp.write_text(render(data), encoding="utf-8")
        os.replace(tmp, output)
    return data


__all__ = ["STAGES", "thresholds", "write_report"]
