"""Building a report file from the settings: gather, render, write."""

from __future__ import annotations

import os
from pathlib import Path

from monitoring.report.gather import STAGES, gather
from monitoring.report.page import render
from monitoring.report.records import Period, ReportData, Thresholds
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import require_current
from watchkeeper.errors import WatchkeeperError
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
        _replace_file(output, render(data))
    return data


class ReportNotWritten(WatchkeeperError):
    """The report could not be written where it was asked to go."""


def _replace_file(output: Path, text: str) -> None:
    """``output`` replaced by ``text`` at once, or left as it was: a temporary file
    beside it, renamed over it, removed whatever fails (an existing directory named
    ``output`` left ``.NAME.PID.tmp`` behind, and the error named that file)."""
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        reason = exc.strerror or str(exc)
        if output.is_dir():
            reason = "it is a directory"
        raise ReportNotWritten(f"cannot write the report to {output}: {reason}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = ["STAGES", "ReportNotWritten", "thresholds", "write_report"]
