"""Tables of the serving benchmark, from its runs. Every figure is a median over
rounds, printed with the 1-minute load average of the runs behind it (``@`` median
load): on a shared machine a figure means little without it."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from bench.serving_runs import Run
from bench.workloads import Scenario

OFF, SQLITE, POSTGRES = "wk-off", "wk-sqlite", "wk-pg"
PEERS = ("bentoml", "mlserver")
LOG_ON = (SQLITE, POSTGRES)

# Issue 10's measurement before the log writer's rewrite: CPU ms per request off, on
# (SQLite), and the ratio as the issue states it (from unrounded figures).
BEFORE = {
    "single": (1.72, 1.96, 1.14),
    "batch-100": (4.2, 8.2, 1.93),
    "batch-1000": (26.0, 58.0, 2.2),
}
# Issue 10's targets for log on / off.
TARGET = {"single": 1.10, "batch-100": 1.30, "batch-1000": 1.30, "columnar-1000": 1.30}
COLUMNAR_TARGET = 1.6  # columnar 1,000 rows, log off ÷ in-process predict
OOD_TARGET = 1.05  # issue 11: the OOD score in the response, single record, on ÷ off


def baseline(name: str) -> str:
    """The name of the same server running the ``--baseline`` tree's code."""
    return f"{name}@base"


def without_ood(name: str) -> str:
    """The name of the same server with ``WATCHKEEPER_OOD_IN_RESPONSE=false``."""
    return f"{name}-no-ood"


def _runs(runs: Sequence[Run], server: str, scenario: str) -> list[Run]:
    return [r for r in runs if r.server == server and r.scenario == scenario]


def _load(runs: Sequence[Run]) -> float:
    return statistics.median(r.load_average for r in runs)


def cpu_ms(runs: Sequence[Run], server: str, scenario: str) -> tuple[float, float] | None:
    """Median CPU ms per request and median load average."""
    mine = [r for r in _runs(runs, server, scenario) if r.cpu_ms_per_request is not None]
    if not mine:
        return None
    return statistics.median(r.cpu_ms_per_request for r in mine), _load(mine)  # type: ignore[misc]


def ratio(runs: Sequence[Run], top: str, bottom: str, scenario: str) -> tuple[float, float] | None:
    """Median over rounds of the per-round ratio, and the median load average of both
    servers' runs: each round's pair ran back to back, so each ratio shares conditions."""
    above = {r.round: r for r in _runs(runs, top, scenario) if r.cpu_ms_per_request}
    below = {r.round: r for r in _runs(runs, bottom, scenario) if r.cpu_ms_per_request}
    rounds = sorted(above.keys() & below.keys())
    if not rounds:
        return None
    ratios = [above[n].cpu_ms_per_request / below[n].cpu_ms_per_request for n in rounds]  # type: ignore[operator]
    return statistics.median(ratios), _load([*above.values(), *below.values()])


def _cell(value: tuple[float, float] | None, fmt: Callable[[float], str]) -> str:
    return "—" if value is None else f"{fmt(value[0])} @{value[1]:.1f}"


def _verdict(value: tuple[float, float] | None, limit: float) -> str:
    if value is None:
        return ""
    return "yes" if value[0] <= limit else "NO"


def print_reference(reference: dict[int, float]) -> None:
    print("in-process Model.predict on a dict of columns (as /predict calls it), CPU per call:")
    for rows, ms in reference.items():
        print(f"  {rows:>5} row(s)  {ms:7.2f} ms")


def print_cpu_table(
    runs: Sequence[Run], servers: Sequence[str], scenarios: Sequence[Scenario]
) -> None:
    print("\nCPU per request, whole process tree, ms (median over rounds) @ load average:")
    print(f"  {'scenario':<14}" + "".join(f"{name:>16}" for name in servers))
    for scenario in scenarios:
        cells = [_cell(cpu_ms(runs, s, scenario.name), lambda v: f"{v:.2f}") for s in servers]
        print(f"  {scenario.name:<14}" + "".join(f"{c:>16}" for c in cells))


def print_log_cost(
    runs: Sequence[Run], servers: Sequence[str], scenarios: Sequence[Scenario]
) -> None:
    print("\nlog on / off, CPU per request (median of per-round ratios) @ load average:")
    header = "".join(f"{name + ' / off':>18}" for name in LOG_ON if name in servers)
    print(f"  {'scenario':<14}{header}{'target':>8}{'met':>5}   issue 10 before (off → on)")
    for scenario in scenarios:
        values = [ratio(runs, name, OFF, scenario.name) for name in LOG_ON if name in servers]
        cells = "".join(f"{_cell(v, lambda x: f'{x:.2f}x'):>18}" for v in values)
        limit = TARGET[scenario.name]
        met = all(_verdict(v, limit) == "yes" for v in values) if values else False
        before = BEFORE.get(scenario.name)
        told = f"   {before[0]:.2f} → {before[1]:.2f} ms, {before[2]:.2f}x" if before else ""
        print(f"  {scenario.name:<14}{cells}{limit:>7.2f}x{'yes' if met else 'NO':>5}{told}")


def print_peers(runs: Sequence[Run], servers: Sequence[str], scenarios: Sequence[Scenario]) -> None:
    peers = [p for p in PEERS if p in servers]
    if not peers:
        return
    print("\nWatchkeeper with the log on ÷ a peer that logs nothing (bar: ≤ 1.00x) @ load average:")
    pairs = [(w, p) for w in LOG_ON if w in servers for p in peers]
    print(f"  {'scenario':<14}" + "".join(f"{f'{w} / {p}':>22}" for w, p in pairs))
    for scenario in scenarios:
        if scenario.columnar:
            continue
        cells = [ratio(runs, w, p, scenario.name) for w, p in pairs]
        text = [
            _cell(v, lambda x: f"{x:.2f}x") + (" NO" if _verdict(v, 1.0) == "NO" else "")
            for v in cells
        ]
        print(f"  {scenario.name:<14}" + "".join(f"{t:>22}" for t in text))


def print_columnar(
    runs: Sequence[Run], reference: dict[int, float], scenario: Scenario | None
) -> None:
    if scenario is None:
        return
    off = cpu_ms(runs, OFF, scenario.name)
    if off is None or scenario.rows not in reference:
        return
    share = off[0] / reference[scenario.rows]
    print(
        f"\ncolumnar {scenario.rows:,} rows, log off: {off[0]:.2f} ms @{off[1]:.1f} = "
        f"{share:.2f}x in-process predict ({reference[scenario.rows]:.2f} ms); target ≤ "
        f"{COLUMNAR_TARGET:.1f}x: {'yes' if share <= COLUMNAR_TARGET else 'NO'}"
    )


def print_baseline(
    runs: Sequence[Run], servers: Sequence[str], scenarios: Sequence[Scenario]
) -> None:
    """Log on / off with this code and with the baseline's, and this code's CPU per
    request ÷ the baseline's: every pair ran in the same rounds, back to back."""
    names = [name for name in LOG_ON if baseline(name) in servers]
    if not names:
        return
    print("\nthis code against the --baseline tree's (median of per-round ratios) @ load average:")
    header = "".join(
        f"{f'{n}@base / off':>22}{f'{n} / off':>17}{f'{n} / @base':>19}" for n in names
    )
    print(f"  {'scenario':<14}{header}")
    for scenario in scenarios:
        cells = []
        for name in names:
            for top, bottom, width in (
                (baseline(name), OFF, 22),
                (name, OFF, 17),
                (name, baseline(name), 19),
            ):
                value = ratio(runs, top, bottom, scenario.name)
                cells.append(f"{_cell(value, lambda x: f'{x:.2f}x'):>{width}}")
        print(f"  {scenario.name:<14}" + "".join(cells))


def print_log_integrity(
    runs: Sequence[Run], scenarios: Sequence[Scenario], servers: Sequence[str] = LOG_ON
) -> None:
    print("\nprediction log after each run (rows in `requests` vs requests answered):")
    for name in servers:
        for scenario in scenarios:
            mine = [r for r in _runs(runs, name, scenario.name) if r.logged is not None]
            if not mine:
                continue
            answered = sum(r.answered for r in mine)
            logged = sum(r.logged for r in mine)  # type: ignore[misc]
            drains = [r.drain_seconds for r in mine]
            slowest = (
                "not drained within the timeout in some runs"
                if None in drains
                else f"drained ≤ {max(drains):.2f} s after the load stopped"  # type: ignore[type-var]
            )
            print(
                f"  {name:<15}{scenario.name:<14} {logged:>7} of {answered:>7} logged, "
                f"{answered - logged} lost; {slowest} @{_load(mine):.1f}"
            )


def print_ood_cost(
    runs: Sequence[Run], servers: Sequence[str], scenarios: Sequence[Scenario]
) -> None:
    """CPU per request with the OOD score in the response ÷ without, per server pair."""
    pairs = [(name, without_ood(name)) for name in (OFF, SQLITE) if without_ood(name) in servers]
    if not pairs:
        return
    print(
        "\nOOD score in the response, CPU per request on ÷ off (median of per-round ratios;"
        f" on / off ms) @ load average, target ≤ {OOD_TARGET:.2f}x for a single record:"
    )
    print(f"  {'scenario':<14}" + "".join(f"{f'{on} on/off':>34}" for on, _ in pairs))
    for scenario in scenarios:
        cells = []
        for on, off in pairs:
            value, on_ms, off_ms = (
                ratio(runs, on, off, scenario.name),
                cpu_ms(runs, on, scenario.name),
                cpu_ms(runs, off, scenario.name),
            )
            ms = "" if on_ms is None or off_ms is None else f" ({on_ms[0]:.2f}/{off_ms[0]:.2f})"
            cells.append(_cell(value, lambda x: f"{x:.3f}x") + ms)
        print(f"  {scenario.name:<14}" + "".join(f"{c:>34}" for c in cells))
