"""Which model versions the other workers of this server serve, as they report it.

Under gunicorn every worker sets ``watchkeeper_model_info{model_version}`` to 1 for
the version it serves, in prometheus-client's multiprocess files (``livemax``: the
files of a dead worker are removed as it exits). A worker starting while ``CURRENT``
names a version that will not load reads them to fall back to the version its
siblings serve, so that every worker answers with the same model.
"""

from __future__ import annotations

import logging
import os

from serving.metric_files import SizedFilesCollector

log = logging.getLogger(__name__)

MODEL_INFO = "watchkeeper_model_info"


def served_by_siblings() -> list[str]:
    """Versions some live worker serves; empty outside gunicorn or when the files
    cannot be read (the caller then falls back by the registry alone)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return []
    try:
        families = SizedFilesCollector(None, path=directory).collect()
        return sorted(
            {
                sample.labels["model_version"]
                for family in families
                if family.name == MODEL_INFO
                for sample in family.samples
                if sample.value == 1 and "model_version" in sample.labels
            },
            key=_number,
            reverse=True,
        )
    except (OSError, ValueError) as exc:
        log.warning("cannot read the versions sibling workers serve: %s", exc)
        return []


def _number(version: str) -> int:
    digits = version.removeprefix("v")
    return int(digits) if digits.isdigit() else -1
