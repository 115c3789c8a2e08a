"""CPU of a 1,000-record ``/predict`` batch with and without the ignored columns a
record shaped like the training data holds (Ames: ``Year_Sold``, ``Mo_Sold``,
``Sale_Period``), side by side: validation alone, and the whole request in the
request thread (log off: its writer is another thread).

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv/bin/python -m bench.ignored_columns_bench
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from bench.ames_model import ames_model
from monitoring.replay import json_records
from serving.app import create_app
from serving.validation import validate_predict_payload
from watchkeeper.dataset import load_ames
from watchkeeper.settings import Settings

ROUNDS = 21


def cheapest_cpu(calls: dict[str, Callable[[], Any]], per_round: int = 5) -> dict[str, float]:
    """This thread's CPU per call of each, the cheapest of ``ROUNDS`` rounds, taken in
    turn so that a busy spell of the machine weighs on all alike."""
    for call in calls.values():
        call()
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(ROUNDS):
        for name, call in calls.items():
            start = time.thread_time()
            for _ in range(per_round):
                call()
            best[name] = min(best[name], (time.thread_time() - start) / per_round)
    return best


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ignored-bench-"))
    model = ames_model(workdir)
    schema = model.trained.model.schema
    print("ignored columns:", ", ".join(sorted(schema.ignored_names)))
    ames = load_ames()
    shaped = json_records(
        ames.between(200901, None).frame[[*schema.names, *sorted(schema.ignored_names)]].head(1000)
    )
    bodies = {
        "features only": orjson.dumps({"instances": model.records}),
        "with ignored columns": orjson.dumps({"instances": shaped}),
    }
    app = create_app(
        Settings(data_dir=workdir / "var", registry_path=model.registry, log_enabled=False),
        registry=CollectorRegistry(),
    )
    client = app.test_client()
    calls: dict[str, Callable[[], Any]] = {}
    for name, body in bodies.items():
        payload = orjson.loads(body)
        response = client.post("/predict", data=body, content_type="application/json")
        assert response.status_code == 200, response.json

        def validate(payload: Any = payload) -> None:
            validate_predict_payload(payload, schema, max_batch_size=1000)

        def request(body: bytes = body) -> None:
            client.post("/predict", data=body, content_type="application/json")

        calls[f"{name}: validation"] = validate
        calls[f"{name}: request"] = request
    figures = cheapest_cpu(calls)
    for name in bodies:
        validation = figures[f"{name}: validation"]
        request_cpu = figures[f"{name}: request"]
        print(
            f"{name:>22}: validation {validation * 1e3:6.2f} ms "
            f"({validation / figures['features only: validation']:.2f}x), "
            f"request {request_cpu * 1e3:6.2f} ms "
            f"({request_cpu / figures['features only: request']:.2f}x)"
        )


if __name__ == "__main__":
    main()
