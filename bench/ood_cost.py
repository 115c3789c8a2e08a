"""What the OOD score in the response costs, in process: CPU per ``/predict`` request of
the same app with ``WATCHKEEPER_OOD_IN_RESPONSE`` on and off.

Under gunicorn (``serving_bench.py --ood-ab``) the difference is a few percent of a
figure that moves by tens of percent with the machine's load. Here both apps run on
this thread through Flask's test client (parse, validate, predict, score, respond,
journal; the log writer thread's share is not counted), request by request in turn
(on, off, off, on, …) so that both meet the same moments of the machine's load, in
``--rounds`` rounds of ``--requests`` pairs; the ratio is the median over rounds of
each round's on ÷ off. It also times the scoring step alone (``OodScoring.score``) for
1 and 1,000 rows. Prints figures; asserts nothing.

    .venv/bin/python bench/ood_cost.py [--rounds 15] [--requests 300] [--log | --no-log]
        [--control]
"""

from __future__ import annotations

import os

# Before NumPy and scikit-learn load: one OpenMP thread, as every serving worker.
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import functools  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import orjson  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry  # noqa: E402

from monitoring.replay import json_records  # noqa: E402
from serving.app import create_app, shutdown  # noqa: E402
from serving.services import services  # noqa: E402
from watchkeeper.dataset import load_ames  # noqa: E402
from watchkeeper.db.engine import create_engine  # noqa: E402
from watchkeeper.db.migrate import upgrade  # noqa: E402
from watchkeeper.registry import ModelRegistry  # noqa: E402
from watchkeeper.settings import Settings  # noqa: E402
from watchkeeper.training import train  # noqa: E402


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=300, help="single-record requests")
    parser.add_argument("--log", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--control",
        action="store_true",
        help="A/A: the 'on' app has the score off too, to show the method's own bias",
    )
    return parser.parse_args()


def _cpu_ms(call: Callable[[], Any], n: int) -> float:
    start = time.thread_time()
    for _ in range(n):
        call()
    return (time.thread_time() - start) / n * 1e3


def main() -> None:
    args = _arguments()
    print(
        f"OOD in the response, in process: {args.rounds} rounds, log "
        f"{'on (SQLite)' if args.log else 'off'}{', A/A control' if args.control else ''}, "
        "load average "
        f"{'/'.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores",
        flush=True,
    )
    ames = load_ames()
    trained = train(ames.between(None, 200712), ames.between(200801, 200812))
    records = json_records(ames.between(200901, None).frame[list(trained.model.schema.names)])
    workdir = Path(tempfile.mkdtemp(prefix="wk-ood-cost-"))
    ModelRegistry(workdir / "registry").register(trained)

    apps = {}
    for ood in (True, False):
        data = workdir / ("on" if ood else "off")
        url = f"sqlite:///{data / 'log.db'}"
        data.mkdir()
        engine = create_engine(url)
        upgrade(engine)
        engine.dispose()
        settings = Settings(
            data_dir=data,
            registry_path=workdir / "registry",
            database_url=url,
            log_enabled=args.log,
            ood_in_response=ood and not args.control,
        )
        apps[ood] = create_app(settings, registry=CollectorRegistry())
    bodies = {
        "single": [orjson.dumps({"features": r}) for r in records[:200]],
        "columnar-1000": [
            orjson.dumps({"columns": {k: [r[k] for r in records[:1000]] for k in records[0]}})
        ],
    }
    counts = {"single": args.requests, "columnar-1000": max(args.requests // 30, 5)}

    clients = {ood: app.test_client() for ood, app in apps.items()}

    def post(ood: bool, body: bytes) -> float:
        """CPU of one request on this thread, in ms."""
        start = time.thread_time()
        response = clients[ood].post("/predict", data=body, content_type="application/json")
        elapsed = time.thread_time() - start
        assert response.status_code == 200
        return elapsed * 1e3

    def run(scenario: str) -> tuple[float, float]:
        """One round: requests alternate on, off, off, on, … so that both apps meet
        the same moments of the machine's load; mean CPU ms of each."""
        payloads, n = bodies[scenario], counts[scenario]
        spent = {True: 0.0, False: 0.0}
        for i in range(n):
            body = payloads[i % len(payloads)]
            first = i % 2 == 0
            spent[first] += post(first, body)
            spent[not first] += post(not first, body)
        return spent[True] / n, spent[False] / n

    try:
        for scenario in bodies:
            run(scenario)  # warm-up, not counted
            rounds = [run(scenario) for _ in range(args.rounds)]
            ratios = [on / off for on, off in rounds]
            print(
                f"  {scenario:<14} CPU per request on {statistics.median(r[0] for r in rounds):.3f}"
                f" ms, off {statistics.median(r[1] for r in rounds):.3f} ms (medians); "
                f"on/off median {statistics.median(ratios):.3f}x (rounds "
                f"{min(ratios):.3f}–{max(ratios):.3f}x); load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        scoring = services(apps[True]).ood_scoring
        if scoring is None:  # the A/A control
            return
        version = services(apps[True]).model_store.get().version
        for rows in (1, 1000):
            numbers = {
                f.name: np.array([r[f.name] for r in records[:rows]], dtype=np.float64)
                for f in trained.model.schema.numeric
            }
            repeat = 2000 // rows + 20
            call = functools.partial(scoring.score, version, numbers)
            ms = min(_cpu_ms(call, repeat) for _ in range(5))
            print(f"  OodScoring.score alone, {rows:>4} row(s): {ms * 1e3:8.1f} µs")
    finally:
        for app in apps.values():
            shutdown(app, timeout=30)


if __name__ == "__main__":
    main()
