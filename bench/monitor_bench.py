"""Monitor benchmark: the time of one evaluation cycle by window size and log size.

Builds a SQLite prediction log of real Ames 2008–2010 records (inserted directly, not
through HTTP), fits the detectors once, then times ``Monitor.run_once`` on exactly one
pending window of 500, 2,000 and 10,000 rows in a 10k-row log, and on a 500-row
window at the end of a 10k-row and of a 1M-row log. Each cycle runs ``--repeats``
times; the best wall time and the CPU time of that run are printed beside the figures
measured before the monitor's detectors were rewritten (alibi-detect, per-row OOD), with
the load average, since the machine is shared. Asserts nothing.

    .venv/bin/python bench/monitor_bench.py [--big 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitoring.monitor import Monitor  # noqa: E402
from watchkeeper.dataset import load_ames  # noqa: E402
from watchkeeper.db.engine import create_engine  # noqa: E402
from watchkeeper.db.migrate import upgrade  # noqa: E402
from watchkeeper.db.prediction_seq import prediction_seq  # noqa: E402
from watchkeeper.registry import ModelRegistry  # noqa: E402
from watchkeeper.settings import Settings  # noqa: E402
from watchkeeper.training import train  # noqa: E402


def _fill(db: Path, upto: int, start: int, features: list[str], predictions: list[float]) -> None:
    """Append single-record requests ``start+1 .. upto`` to the log (each its features by
    column and its prediction in its ``requests`` row, numbered in order), cycling real
    records."""
    connection = sqlite3.connect(db)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    chunk = 50_000
    for first in range(start, upto, chunk):
        rows = [
            (
                f"{i:032x}",
                stamp,
                "v1",
                features[i % len(features)],
                f"[[{predictions[i % len(predictions)]!r},0.0,0.0]]",
                i + 1,
            )
            for i in range(first, min(first + chunk, upto))
        ]
        connection.executemany(
            "INSERT INTO requests (request_id, received_at, endpoint, method, status_code,"
            " latency_seconds, model_version, n_items, features, outputs, seq, single)"
            " VALUES (?, ?, '/predict', 'POST', 200, 0.01, ?, 1, ?, ?, ?, 1)",
            rows,
        )
        connection.commit()
    connection.close()


# One cycle with alibi-detect's detectors (online Mahalanobis copied per row, 3-fold
# ClassifierDrift), same machine and bench, 2026-11-29 (bench/README.md).
BEFORE = {
    "window 500 / log 10k": 1.44,
    "window 2,000 / log 10k": 2.55,
    "window 10,000 / log 10k": 7.58,
    "window 500 / log 1,000,000": 1.61,
}


def _cycle(monitor: Monitor, total: int, window: int, repeats: int) -> tuple[float, float]:
    """(best wall seconds, CPU seconds of that run) of one cycle on the last window."""
    runs = []
    for _ in range(repeats):
        # the position of the last prediction before the window (one per request)
        monitor.reader.set_watermark(prediction_seq(total - window, 0))
        started, cpu = time.perf_counter(), time.process_time()
        evaluated = monitor.run_once()
        runs.append((time.perf_counter() - started, time.process_time() - cpu))
        assert evaluated == 1, evaluated
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big", type=int, default=1_000_000, help="rows of the large log")
    parser.add_argument("--repeats", type=int, default=3, help="cycles per case (best kept)")
    args = parser.parse_args()
    load_before = os.getloadavg()

    workdir = Path(tempfile.mkdtemp(prefix="wk-monitor-bench-"))
    ames = load_ames()
    trained = train(ames.between(None, 200712), ames.between(200801, 200812))
    ModelRegistry(workdir / "registry").register(trained)
    names = list(trained.model.schema.names)
    held = ames.between(200801, None).frame
    features = [  # by column, as a request stores them
        orjson.dumps({k: [v] for k, v in r.items()}).decode()
        for r in orjson.loads(held[names].to_json(orient="records"))
    ]
    predictions = trained.model.predict(held[names]).value.tolist()

    db = workdir / "log.db"
    base = Settings(
        data_dir=workdir / "var",
        registry_path=workdir / "registry",
        database_url=f"sqlite:///{db}",
        monitor_settle_seconds=0,
        monitor_window_seconds=10**9,
    )
    upgrade(create_engine(base.storage.database_url))
    _fill(db, 10_000, 0, features, predictions)

    print("one monitor cycle (data quality, OOD, feature/output/multivariate drift, storage):")
    timings: dict[str, tuple[float, float]] = {}
    for window in (500, 2_000, 10_000):
        settings = base.replace(monitor_window_size=window, monitor_min_samples=200)
        monitor = Monitor(
            settings,
            create_engine(settings.storage.database_url),
            ModelRegistry(workdir / "registry"),
        )
        monitor.suite("v1")  # fitted once per version, outside the timed cycle
        timings[f"window {window:,} / log 10k"] = _cycle(monitor, 10_000, window, args.repeats)

    small = timings["window 500 / log 10k"][0]
    started = time.perf_counter()
    _fill(db, args.big, 10_000, features, predictions)
    fill_seconds = time.perf_counter() - started
    settings = base.replace(monitor_window_size=500, monitor_min_samples=200)
    monitor = Monitor(
        settings, create_engine(settings.storage.database_url), ModelRegistry(workdir / "registry")
    )
    monitor.suite("v1")
    timings[f"window 500 / log {args.big:,}"] = _cycle(monitor, args.big, 500, args.repeats)
    big = timings[f"window 500 / log {args.big:,}"][0]

    print(f"  {'case':<28} {'wall':>7} {'CPU':>7} {'before':>7}")
    for name, (seconds, cpu) in timings.items():
        before = f"{BEFORE[name]:6.2f} s" if name in BEFORE else ""
        print(f"  {name:<28} {seconds:5.2f} s {cpu:5.2f} s {before:>8}")
    load_after = os.getloadavg()
    print(
        f"\nload average (1, 5, 15 min) before {load_before[0]:.2f} {load_before[1]:.2f} "
        f"{load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} "
        f"on {os.cpu_count()} cores"
    )
    print(
        f"\nlog of {args.big:,} rows vs 10k, same 500-row window: {big / small:.2f}x "
        f"(filling the large log took {fill_seconds:.0f} s)"
    )
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
