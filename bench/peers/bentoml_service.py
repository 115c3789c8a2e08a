"""BentoML service for the serving benchmark: the current Watchkeeper model, no log.

It loads the model with Watchkeeper's own registry code (the checkout is on
``PYTHONPATH``) from ``WK_BENCH_REGISTRY`` and calls ``Model.predict`` on a dict of
columns, as ``/predict`` does, so the comparison is of the serving stacks, not of
how the pipeline is fed. Access logging is off: the peer logs nothing.

    bentoml serve bentoml_service:WatchkeeperPeer --host 127.0.0.1 --port PORT
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bentoml

from watchkeeper.registry import ModelRegistry


@bentoml.service(
    workers=int(os.environ.get("WK_BENCH_WORKERS", "2")),
    traffic={"timeout": 120},
    logging={"access": {"enabled": False}},
)
class WatchkeeperPeer:
    def __init__(self) -> None:
        self.model = ModelRegistry(Path(os.environ["WK_BENCH_REGISTRY"])).load().model
        self.names = list(self.model.schema.names)

    @bentoml.api
    def predict(self, instances: list[dict[str, Any]]) -> list[dict[str, float]]:
        columns = {name: [record.get(name) for record in instances] for name in self.names}
        predicted = self.model.predict(columns)
        return [
            {"prediction": value, "lower": lower, "upper": upper}
            for value, lower, upper in zip(
                predicted.value.tolist(),
                predicted.lower.tolist(),
                predicted.upper.tolist(),
                strict=True,
            )
        ]
