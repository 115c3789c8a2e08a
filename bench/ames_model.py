"""The model the serving benchmarks serve, and the rows they send it.

The default Ames model, trained on 2006–07 and validated on 2008, registered in a
registry of its own; and 1,000 of the 2009–10 sales as JSON records, the rows every
scenario takes its requests from (real drift, as the replay sends them).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.workloads import SCENARIOS, ServerKind, body
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


@dataclass(frozen=True)
class SingleRecordBench:
    """A work directory of its own, the model registered in it, and one single-record
    ``/predict`` body of Watchkeeper's in a file for the load client."""

    workdir: Path
    model: AmesModel
    body_file: Path


def single_record_bench(prefix: str) -> SingleRecordBench:
    """Set up a benchmark that loads Watchkeeper with single records."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    model = ames_model(workdir)
    single = next(s for s in SCENARIOS if s.name == "single")
    body_file = workdir / "single.json"
    body_file.write_bytes(
        body(ServerKind.WATCHKEEPER, single, model.records, model.trained.model.schema)
    )
    return SingleRecordBench(workdir, model, body_file)
