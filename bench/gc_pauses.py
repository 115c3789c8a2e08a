"""Full garbage collections in a serving worker, with its start-up heap frozen and not.

A worker holds ~220,000 objects that Python's collector tracks once its imports, app and
model are loaded; a full (generation 2) collection walks every tracked object with the
interpreter lock held, so while it runs no request thread of the worker does.
:mod:`serving.heap` freezes that heap after the worker has loaded it. This measures what
that changes, on two servers of this checkout with the log on SQLite, loaded in turn with
single records at concurrency 8, the order alternating:

- ``frozen``: as served;
- ``unfrozen``: the same, with ``gc.freeze`` made a no-op in its processes.

A ``sitecustomize`` hook (written into the work directory and put on both servers'
``PYTHONPATH``) times every full collection in every process of both servers. It prints,
per server, the full collections of the serving workers during the load: how many per
worker-minute, their duration (wall time: the pause of the worker's request threads;
median and longest), their pause per 1,000 requests; and the CPU per request (the whole
process tree, the log's drain included) with the median of per-round ratios.

    OMP_NUM_THREADS=1 .venv/bin/python bench/gc_pauses.py [--rounds 8] [--seconds 30]
"""

from __future__ import annotations

import os

# Before NumPy and scikit-learn load: one OpenMP thread, here and in every child.
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ames_model import single_record_bench  # noqa: E402
from bench.servers import ROOT, Server, start_watchkeeper  # noqa: E402
from bench.serving_report import median_interval, run_header  # noqa: E402
from bench.serving_runs import Run, measure  # noqa: E402
from bench.workloads import SCENARIOS  # noqa: E402

SINGLE = next(s for s in SCENARIOS if s.name == "single")

# Appends "<time> <wall ms>" for each full collection of its process
# to <WK_GC_LOG_DIR>/<pid>; with WK_GC_NO_FREEZE set, gc.freeze does nothing.
_HOOK = """
import gc, os, time

_directory = os.environ.get("WK_GC_LOG_DIR")
if os.environ.get("WK_GC_NO_FREEZE"):
    gc.freeze = lambda: None
if _directory:
    _started = [0.0]

    def _timed(phase, info):
        if info["generation"] != 2:
            return
        if phase == "start":
            _started[0] = time.perf_counter()
            return
        took = (time.perf_counter() - _started[0]) * 1e3
        with open(os.path.join(_directory, str(os.getpid())), "a") as out:
            out.write(f"{time.time():.6f} {took:.3f}\\n")

    gc.callbacks.append(_timed)
"""


_FROZE = re.compile(r"\[(\d+)\] \[INFO\] froze (\d+) objects")


@dataclass(frozen=True)
class Collection:
    pid: int
    at: float  # epoch seconds, when it ended
    ms: float


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    return parser.parse_args()


def _collections(directory: Path) -> list[Collection]:
    found = []
    for path in directory.iterdir():
        for line in path.read_text().splitlines():
            at, ms = line.split()
            found.append(Collection(int(path.name), float(at), float(ms)))
    return found


def _hooked(workdir: Path, name: str, registry: Path, *, freeze: bool) -> tuple[Server, Path]:
    """A server of this checkout with the hook on its path; the directory it times into."""
    hook_dir = workdir / "hook"
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(_HOOK)
    log_dir = workdir / f"gc-{name}"
    log_dir.mkdir()
    settings = {
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(hook_dir)]),
        "WK_GC_LOG_DIR": str(log_dir),
    }
    if not freeze:
        settings["WK_GC_NO_FREEZE"] = "1"
    server = start_watchkeeper(name, workdir, registry, log_enabled=True, settings=settings)
    return server, log_dir


def _workers(server: Server) -> dict[int, int]:
    """The server's workers (pid → objects each froze), from the lines they log."""
    text = server.output.read_text(errors="replace")
    return {int(pid): int(n) for pid, n in _FROZE.findall(text)}


def _report(
    server: Server, runs: list[Run], windows: list[tuple[float, float]], log_dir: Path
) -> None:
    workers = _workers(server)
    during = [
        c
        for c in _collections(log_dir)
        if c.pid in workers and any(a <= c.at <= b for a, b in windows)
    ]
    minutes = sum(b - a for a, b in windows) / 60 * len(workers)
    answered = sum(r.answered for r in runs)
    pauses = [c.ms for c in during]
    cpu = statistics.median(r.cpu_seconds / r.answered * 1e3 for r in runs)
    if pauses:
        durations = f"median {statistics.median(pauses):.1f} ms, longest {max(pauses):.1f} ms"
    else:
        durations = "none"
    print(
        f"| {server.name} | {max(workers.values(), default=0):,} | {len(pauses) / minutes:.2f}"
        f" | {durations} | {sum(pauses) / answered * 1e3:.1f} ms | {cpu:.3f} ms | {answered:,} |"
    )


def main() -> None:
    args = _arguments()
    print(run_header("full collections in a serving worker"), flush=True)
    bench = single_record_bench("wk-gc-pauses-")
    workdir, model, body_file = bench.workdir, bench.model, bench.body_file
    servers: dict[str, tuple[Server, Path]] = {}
    try:
        for name, freeze in (("frozen", True), ("unfrozen", False)):
            servers[name] = _hooked(workdir, name, model.registry, freeze=freeze)
        deadline = time.monotonic() + 300
        for server, _ in servers.values():
            server.wait_ready(deadline)
        runs: dict[str, list[Run]] = {name: [] for name in servers}
        windows: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
        for server, _ in servers.values():  # warm-up, not counted
            measure(server, SINGLE, body_file, seconds=3, round_=-1, drain_timeout=60)
        for round_ in range(args.rounds):
            order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
            for name in order:
                server = servers[name][0]
                started = time.time()
                run = measure(
                    server, SINGLE, body_file, seconds=args.seconds, round_=round_, drain_timeout=60
                )
                windows[name].append((started, time.time()))
                runs[name].append(run)
                print(
                    f"round {round_} {name}: {run.answered} answered,"
                    f" {run.cpu_ms_per_request:.3f} ms CPU a request, load {run.load_average:.1f}",
                    flush=True,
                )
        print()
        print(
            "| server | objects frozen | full collections per worker-minute | their pause"
            " | pause per 1,000 requests | CPU a request (median) | requests |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, (server, log_dir) in servers.items():
            _report(server, runs[name], windows[name], log_dir)
        ratios = [
            f.cpu_seconds / f.answered / (u.cpu_seconds / u.answered)
            for f, u in zip(runs["frozen"], runs["unfrozen"], strict=True)
        ]
        low, high = median_interval(ratios)
        print(
            f"\nCPU a request, frozen ÷ unfrozen: {statistics.median(ratios):.3f}x"
            f" [{low:.3f}–{high:.3f}] (median of per-round ratios, 90 % interval)"
        )
    finally:
        for server, _ in servers.values():
            server.stop()


if __name__ == "__main__":
    main()
