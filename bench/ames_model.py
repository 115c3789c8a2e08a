"""The model the serving benchmarks serve, and the rows they send it.

The default Ames model, trained on 2006–07 and validated on 2008, registered in a
registry of its own; and 1,000 of the 2009–10 sales as JSON records, the rows every
scenario takes its requests from (real drift, as the replay sends them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitoring.replay import json_records
from watchkeeper.dataset import load_ames
from watchkeeper.registry import ModelRegistry
from watchkeeper.training import TrainedModel, train

ROWS = 1000


@dataclass(frozen=True)
class AmesModel:
    trained: TrainedModel
    registry: Path
    records: list[dict[str, Any]]


def ames_model(workdir: Path) -> AmesModel:
    """Train and register the model under ``workdir/registry``."""
    ames = load_ames()
    trained = train(ames.between(None, 200712), ames.between(200801, 200812))
    records = json_records(
        ames.between(200901, None).frame[list(trained.model.schema.names)].head(ROWS)
    )
    registry = workdir / "registry"
    ModelRegistry(registry).register(trained)
    return AmesModel(trained, registry, records)
