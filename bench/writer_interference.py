"""Would a log writer outside the serving workers cost less? An experiment, not a test.

A single record's log cost in a live server is more than what its writer thread does:
with the log on, the request threads themselves take more CPU (bench/README.md, "Where
a single record's log cost goes in a live server"). Either the writer's sharing of the
worker's interpreter lock causes that, which a writer in a process of its own would
avoid, or the writer's mere activity on the same cores does, which it would not. This
tells them apart, with single records at concurrency 8 on SQLite, in interleaved rounds:

- ``off``: Watchkeeper with the log off;
- ``off+side``: the same server loaded alike while a *side* process (this script,
  ``side``) journals and stores as many entries, of the same Ames rows, as the
  server answers, through :class:`serving.prediction_log.PredictionLog` (its own journal,
  its own SQLite file): the work of a writer outside the workers, on the same cores;
- ``on``: Watchkeeper with the log on SQLite.

It prints, per request, the CPU of each (the server's whole process tree; the side
process's own, which includes journaling each entry, done by the request threads in
the real server) and the medians of per-round ratios to ``off``. ``on`` well above
``off+side`` plus the side process: the interpreter lock is the cost, and a writer of
its own would save it.

    OMP_NUM_THREADS=1 .venv/bin/python bench/writer_interference.py [--rounds 12] [--seconds 4]
"""

from __future__ import annotations

import os

# Before NumPy and scikit-learn load: one OpenMP thread, here and in every child.
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ames_model import ames_model  # noqa: E402
from bench.servers import Server, start_watchkeeper  # noqa: E402
from bench.serving_report import CONFIDENCE, median_interval, run_header  # noqa: E402
from bench.serving_runs import Run, measure  # noqa: E402
from bench.workloads import SCENARIOS, ServerKind, body  # noqa: E402
from serving.log_entry import LogEntry  # noqa: E402

SINGLE = next(s for s in SCENARIOS if s.name == "single")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    side = sub.add_parser("side", help="(internal) journal and store entries at a rate")
    side.add_argument("--database-url", required=True)
    side.add_argument("--journal", type=Path, required=True)
    side.add_argument("--records", type=Path, required=True)
    side.add_argument("--rate", type=float, required=True)
    side.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=4.0)
    return parser.parse_args()


def side(args: argparse.Namespace) -> None:
    """Journal ``rate`` single-record entries a second for ``seconds``, store them all
    (the writer's drain included), and print this process's CPU."""
    from prometheus_client import CollectorRegistry

    from serving.metrics import LogMetrics
    from serving.prediction_log import PredictionLog
    from watchkeeper.db.engine import create_engine
    from watchkeeper.db.migrate import upgrade

    records = json.loads(args.records.read_text())
    engine = create_engine(args.database_url)
    upgrade(engine)
    log = PredictionLog(engine, args.journal, LogMetrics(CollectorRegistry())).start()
    print("ready", flush=True)  # imported and migrated: the load may start
    before = resource.getrusage(resource.RUSAGE_SELF)
    total = int(args.rate * args.seconds)
    start = time.monotonic()
    n = 0
    while n < total:
        # Entries due by now, every 50 ms: a wake-up per entry would cost more than
        # journaling one (request threads journal as they answer, awake anyway).
        due = min(total, int((time.monotonic() - start) * args.rate) + 1)
        for i in range(n, due):
            log.submit(_entry(records[i % len(records)]))
        n = due
        time.sleep(0.05)
    log.close(timeout=60)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"entries": total, "cpu_seconds": cpu}))


def _entry(record: dict[str, Any]) -> LogEntry:
    """A single-record entry of ``record``, as a request thread journals it."""
    return LogEntry(
        request_id=uuid.uuid4().hex,
        received_at=datetime.now(UTC),
        endpoint="/predict",
        method="POST",
        status_code=200,
        latency_seconds=0.002,
        model_version="v1",
        columns={name: [value] for name, value in record.items()},
        values=[180_000.0],
        lower=[150_000.0],
        upper=[210_000.0],
        ood=[2.5],
        finite=True,
    )


def _median_ratio(numerators: list[float], denominators: list[float]) -> str:
    """The median of per-round ratios and its interval, as the serving benchmark
    prints them (:func:`bench.serving_report.median_interval`)."""
    ratios = [n / d for n, d in zip(numerators, denominators, strict=True)]
    low, high = median_interval(ratios)
    return f"{statistics.median(ratios):.3f}x [{low:.3f}–{high:.3f}]"


def main() -> None:
    args = _arguments()
    if args.command == "side":
        side(args)
        return
    print(run_header("writer interference"), flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="wk-writer-interference-"))
    model = ames_model(workdir)
    registry, records, schema = model.registry, model.records, model.trained.model.schema
    records_file = workdir / "records.json"
    records_file.write_text(json.dumps(records))
    body_file = workdir / "single.json"
    body_file.write_bytes(body(ServerKind.WATCHKEEPER, SINGLE, records, schema))
    servers: list[Server] = []
    try:
        servers.append(start_watchkeeper("wk-off", workdir, registry, log_enabled=False))
        servers.append(start_watchkeeper("wk-sqlite", workdir, registry, log_enabled=True))
        deadline = time.monotonic() + 300
        for server in servers:
            server.wait_ready(deadline)
        off, on = servers

        def run(server: Server, round_: int) -> Run:
            return measure(
                server, SINGLE, body_file, seconds=args.seconds, round_=round_, drain_timeout=60
            )

        for server in servers:  # warm-up, not counted
            run(server, -1)
        rate = run(off, -1).answered / args.seconds
        figures: dict[str, list[float]] = {"off": [], "off+side": [], "side": [], "on": []}
        loads: list[float] = []
        for round_ in range(args.rounds):
            order = ["off", "off+side", "on"]
            shift = round_ % len(order)
            for name in order[shift:] + order[:shift]:
                if name == "off":
                    result = run(off, round_)
                    figures["off"].append(result.cpu_seconds / result.answered)
                    rate = result.answered / args.seconds
                elif name == "on":
                    result = run(on, round_)
                    figures["on"].append(result.cpu_seconds / result.answered)
                else:
                    journal = workdir / f"side-{round_}"
                    process = subprocess.Popen(
                        [
                            sys.executable,
                            __file__,
                            "side",
                            "--database-url",
                            f"sqlite:///{workdir / 'side.db'}",
                            "--journal",
                            str(journal),
                            "--records",
                            str(records_file),
                            "--rate",
                            f"{rate:.1f}",
                            "--seconds",
                            f"{args.seconds:g}",
                        ],
                        stdout=subprocess.PIPE,
                    )
                    assert process.stdout is not None
                    assert process.stdout.readline().strip() == b"ready"
                    result = run(off, round_)
                    out, _ = process.communicate(timeout=300)
                    side_run = json.loads(out)
                    figures["off+side"].append(result.cpu_seconds / result.answered)
                    figures["side"].append(side_run["cpu_seconds"] / side_run["entries"])
                loads.append(os.getloadavg()[0])
                print(
                    f"  round {round_ + 1} {name:9} {result.answered:6d} answered  "
                    f"{figures[name][-1] * 1e3:.3f} ms"
                    f" CPU/request  load {loads[-1]:.1f}",
                    flush=True,
                )
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    ms = {name: statistics.median(values) * 1e3 for name, values in figures.items()}
    together = [a + b for a, b in zip(figures["off+side"], figures["side"], strict=True)]
    print(f"\nCPU per request, medians (load {min(loads):.1f}–{max(loads):.1f}):")
    print(
        f"  off {ms['off']:.3f} ms; off+side {ms['off+side']:.3f} ms, the side process "
        f"{ms['side']:.3f} ms an entry; on {ms['on']:.3f} ms"
    )
    print(f"ratios, medians of per-round ratios [{CONFIDENCE:.0%} interval]:")
    print(f"  off+side, the server alone      {_median_ratio(figures['off+side'], figures['off'])}")
    print(f"  off+side with the side process  {_median_ratio(together, figures['off'])}")
    print(f"  on                              {_median_ratio(figures['on'], figures['off'])}")
    print(f"  on ÷ off+side, the server alone {_median_ratio(figures['on'], figures['off+side'])}")


if __name__ == "__main__":
    main()
