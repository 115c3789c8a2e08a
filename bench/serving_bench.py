"""Serving benchmark: /predict with the prediction log on vs off, and raw predict.

Runs on 127.0.0.1 only, bounded in time: for each logging mode it starts
``watchkeeper serve`` (gunicorn, WATCHKEEPER_WORKERS workers, SQLite log), drives
single-record requests and batches of 100 and 1,000 for a fixed duration from
client threads, then stops the server with SIGTERM and counts the rows that reached
the log. Raw in-process ``pipeline.predict`` is timed on the same rows. Prints a
table; it is not a test and asserts nothing.

    .venv/bin/python bench/serving_bench.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitoring.replay import json_records  # noqa: E402
from watchkeeper.dataset import load_ames  # noqa: E402
from watchkeeper.registry import ModelRegistry  # noqa: E402
from watchkeeper.training import train  # noqa: E402

SCENARIOS = [("single", 1, 8), ("batch-100", 100, 4), ("batch-1000", 1000, 2)]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _load(port: int, body: bytes, concurrency: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        nonlocal errors
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, bad = [], 0
        headers = {"Content-Type": "application/json"}
        while time.monotonic() < deadline:
            start = time.perf_counter()
            connection.request("POST", "/predict", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - start)
            bad += response.status != 200
        connection.close()
        with lock:
            latencies.extend(mine)
            errors += bad

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1e3,
    }


def _serve(data_dir: Path, registry: Path, log_enabled: bool, workers: int) -> tuple[Any, int]:
    port = _free_port()
    env = {
        **os.environ,
        "WATCHKEEPER_DATA_DIR": str(data_dir),
        "WATCHKEEPER_REGISTRY_PATH": str(registry),
        "WATCHKEEPER_PORT": str(port),
        "WATCHKEEPER_WORKERS": str(workers),
        "WATCHKEEPER_LOG_ENABLED": "true" if log_enabled else "false",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "watchkeeper.cli", "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0, help="per scenario and mode")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    ames = load_ames()
    trained = train(ames.between(None, 200712), ames.between(200801, 200812))
    rows = ames.between(200901, None).frame[list(trained.model.schema.names)]
    workdir = Path(tempfile.mkdtemp(prefix="wk-bench-"))
    registry = workdir / "registry"
    ModelRegistry(registry).register(trained)

    print(f"raw in-process pipeline.predict ({os.cpu_count()} cores, OMP_NUM_THREADS=1):")
    raw: dict[str, float] = {}
    for name, size, _ in SCENARIOS:
        frame = rows.head(size)
        timings = []
        for _ in range(50 if size < 1000 else 20):
            start = time.perf_counter()
            trained.model.pipeline.predict(frame)
            timings.append(time.perf_counter() - start)
        raw[name] = statistics.median(timings) * 1e3
        print(f"  {name:<11} {raw[name]:8.2f} ms per call")

    results: dict[tuple[str, bool], dict[str, float]] = {}
    lost: dict[bool, tuple[int, int]] = {}
    for log_enabled in (False, True):
        data_dir = workdir / f"var-{'on' if log_enabled else 'off'}"
        process, port = _serve(data_dir, registry, log_enabled, args.workers)
        answered = 0
        try:
            for name, size, concurrency in SCENARIOS:
                records = json_records(rows.head(size))
                body = orjson.dumps(
                    {"features": records[0]} if size == 1 else {"instances": records}
                )
                warm = _load(port, body, concurrency, 1.0)
                result = _load(port, body, concurrency, args.seconds)
                results[(name, log_enabled)] = result
                answered += int(warm["requests"] - warm["errors"])
                answered += int(result["requests"] - result["errors"])
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
        if log_enabled:
            engine = sa.create_engine(f"sqlite:///{data_dir / 'watchkeeper.db'}")
            with engine.connect() as connection:
                logged = connection.execute(
                    sa.text("SELECT count(*) FROM requests WHERE status_code = 200")
                ).scalar()
            engine.dispose()
            lost[True] = (answered, int(logged))

    print(f"\n/predict over HTTP, gunicorn {args.workers} workers, {args.seconds:.0f} s per run:")
    columns = ("req/s", 9), ("rows/s", 10), ("p50 ms", 9), ("p99 ms", 9), ("errors", 8)
    print(f"  {'scenario':<11}{'log':>5}" + "".join(f"{name:>{width}}" for name, width in columns))
    for name, size, _ in SCENARIOS:
        for log_enabled in (False, True):
            r = results[(name, log_enabled)]
            print(
                f"  {name:<11}{'on' if log_enabled else 'off':>5}{r['rps']:>9.1f}"
                f"{r['rps'] * size:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                f"{int(r['errors']):>8}"
            )
    print("\nlogging cost and batch overhead:")
    for name, _, _ in SCENARIOS:
        off, on = results[(name, False)], results[(name, True)]
        print(
            f"  {name:<11} p50 {100 * (on['p50_ms'] / off['p50_ms'] - 1):+6.1f} %   "
            f"throughput {100 * (on['rps'] / off['rps'] - 1):+6.1f} %   "
            f"p50 (log on) / raw predict {on['p50_ms'] / raw[name]:5.2f}x"
        )
    answered, logged = lost[True]
    print(
        f"\nlog on: {answered} requests answered 200 (warm-ups included), {logged} in the log "
        f"after SIGTERM: {answered - logged} lost"
    )
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
