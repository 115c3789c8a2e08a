"""What of the prediction log a single record pays for. An experiment, not a test.

Four Watchkeeper servers of this checkout, differing only by environment, loaded in
turn with single records at concurrency 8 on SQLite, the order rotating:

- ``off``: the log off;
- ``journal``: the log on, its writer and sync thread held idle
  (``WATCHKEEPER_LOG_WRITE_INTERVAL`` and ``WATCHKEEPER_LOG_FLUSH_INTERVAL`` of an
  hour): each request builds, serialises and appends its entry, nothing else runs;
- ``journal+flush``: the same with the journal flushed to disk every 0.2 s;
- ``on``: the log as served.

Every server is started afresh every ``--restart-every`` rounds: two starts of one
server differ by several percent (bench/README.md, "Two starts of one server"). It
prints the CPU per request of each (whole process tree; the log-on server's drain
included, the held ones store nothing) and the median of per-round ratios to ``off``
with its interval. (An unflushed journal is written back, if ever, by the kernel's own
threads, outside the tree.)

    OMP_NUM_THREADS=1 .venv/bin/python bench/log_cost_split.py [--rounds 24] [--seconds 5]
"""

from __future__ import annotations

import os

# Before NumPy and scikit-learn load: one OpenMP thread, here and in every child.
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ames_model import single_record_bench  # noqa: E402
from bench.servers import Server, start_watchkeeper  # noqa: E402
from bench.serving_report import median_interval, run_header  # noqa: E402
from bench.serving_runs import measure  # noqa: E402
from bench.workloads import SCENARIOS  # noqa: E402

SINGLE = next(s for s in SCENARIOS if s.name == "single")
_HELD = "3600"
# name: (log on, more settings, the writer stores: wait for the rows)
VARIANTS: dict[str, tuple[bool, dict[str, str], bool]] = {
    "off": (False, {}, False),
    "journal": (
        True,
        {"WATCHKEEPER_LOG_WRITE_INTERVAL": _HELD, "WATCHKEEPER_LOG_FLUSH_INTERVAL": _HELD},
        False,
    ),
    "journal+flush": (True, {"WATCHKEEPER_LOG_WRITE_INTERVAL": _HELD}, False),
    "on": (True, {}, True),
}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--restart-every", type=int, default=2)
    return parser.parse_args()


def _start(workdir: Path, registry: Path, generation: int) -> dict[str, Server]:
    servers = {}
    for name, (log_on, settings, stores) in VARIANTS.items():
        server = start_watchkeeper(
            f"{name}-{generation}", workdir, registry, log_enabled=log_on, settings=settings
        )
        # A held writer stores nothing: the run must not wait for its rows.
        servers[name] = server if stores else dataclasses.replace(server, log=None)
    deadline = time.monotonic() + 300
    for server in servers.values():
        server.wait_ready(deadline)
    return servers


def main() -> None:
    args = _arguments()
    print(run_header("log cost split"), flush=True)
    bench = single_record_bench("wk-log-cost-split-")
    workdir, model, body_file = bench.workdir, bench.model, bench.body_file
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    loads: list[float] = []
    servers: dict[str, Server] = {}
    try:
        for round_ in range(args.rounds):
            if round_ % args.restart_every == 0:
                for server in servers.values():
                    server.stop()
                servers = _start(workdir, model.registry, round_)
                for server in servers.values():  # warm-up, not counted
                    measure(server, SINGLE, body_file, seconds=1, round_=-1, drain_timeout=60)
            names = list(VARIANTS)
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                run = measure(
                    servers[name], SINGLE, body_file, seconds=args.seconds, round_=round_,
                    drain_timeout=60,
                )  # fmt: skip
                cpu[name].append(run.cpu_seconds / run.answered * 1e6)
                loads.append(run.load_average)
                if run.lost:
                    print(f"  {name}: {run.lost} of {run.answered} not logged", flush=True)
            figures = ", ".join(f"{name} {values[-1]:.0f}" for name, values in cpu.items())
            print(f"round {round_}: {figures} µs a request, load {loads[-1]:.1f}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    print(f"\nCPU per request, median of {args.rounds} rounds (load {min(loads):.1f}–"
          f"{max(loads):.1f}), and ÷ off (median of per-round ratios [interval]):")  # fmt: skip
    for name, values in cpu.items():
        line = f"  {name:14} {statistics.median(values):7.0f} µs"
        if name != "off":
            ratios = [v / o for v, o in zip(values, cpu["off"], strict=True)]
            low, high = median_interval(ratios)
            line += f"   {statistics.median(ratios):.3f}x [{low:.3f}–{high:.3f}]"
        print(line)


if __name__ == "__main__":
    main()
