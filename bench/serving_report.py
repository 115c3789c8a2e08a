"""Tables of the serving benchmark, from its runs. Every figure is a median over
rounds, printed with the 1-minute load average of the runs behind it (``@`` median
load): on a shared machine a figure means little without it."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from bench.predict_reference import REFERENCE
from bench.serving_runs import Run
from bench.workloads import Scenario

T = TypeVar("T")

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
TARGET = {
    "single": 1.10,
    "batch-100": 1.30,
    "batch-1000": 1.30,
    "columnar-1000": 1.30,
    "arrow-1000": 1.30,
}
COLUMNAR_TARGET = 1.6  # columnar 1,000 rows, log off ÷ in-process predict
OOD_TARGET = 1.05  # issue 11: the OOD score in the response, single record, on ÷ off
# Coverage of the interval printed beside a median of per-round ratios; a target is
# called met or missed only when the whole interval is on one side of it.
CONFIDENCE = 0.90


def run_header(title: str, *extra: str) -> str:
    """A run's first line: what ran, when, on how many cores, at what load."""
    load = "/".join(f"{v:.2f}" for v in os.getloadavg())
    parts = [f"{title} {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", f"{os.cpu_count()} cores"]
    return ", ".join([*parts, f"load average {load}", *extra])


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


def _ratios(
    runs: Sequence[Run], top: str, bottom: str, scenario: str, bottom_scenario: str | None = None
) -> list[float]:
    above = {r.round: r for r in _runs(runs, top, scenario) if r.cpu_ms_per_request}
    below = {
        r.round: r for r in _runs(runs, bottom, bottom_scenario or scenario) if r.cpu_ms_per_request
    }
    return [
        above[n].cpu_ms_per_request / below[n].cpu_ms_per_request  # type: ignore[operator]
        for n in sorted(above.keys() & below.keys())
    ]


def ratio(
    runs: Sequence[Run], top: str, bottom: str, scenario: str, bottom_scenario: str | None = None
) -> tuple[float, float] | None:
    """Median over rounds of the per-round ratio, and the median load average of both
    servers' runs: each round's pair ran back to back, so each ratio shares conditions.
    ``bottom_scenario``: the bottom server's runs of another scenario of the round."""
    ratios = _ratios(runs, top, bottom, scenario, bottom_scenario)
    if not ratios:
        return None
    both = [*_runs(runs, top, scenario), *_runs(runs, bottom, bottom_scenario or scenario)]
    return statistics.median(ratios), _load(both)


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A distribution-free interval holding the median with at least ``confidence``:
    sorted values ``j`` places in from each end, ``j`` the largest for which the
    binomial tail P(B < j) with B ~ Bin(n, 1/2) stays within (1 - confidence) / 2. With
    too few values for that (under 5 at 90 %), the whole range."""
    ordered = sorted(values)
    n = len(ordered)
    tail, j = 0.0, 0
    while j < n // 2:
        tail += math.comb(n, j) / 2**n  # P(B = j), so tail = P(B <= j) = P(B < j + 1)
        if tail > (1 - confidence) / 2:
            break
        j += 1
    j = max(j, 1)
    return ordered[j - 1], ordered[n - j]


def ratio_interval(
    runs: Sequence[Run], top: str, bottom: str, scenario: str, bottom_scenario: str | None = None
) -> tuple[float, float] | None:
    """:func:`median_interval` of the per-round ratios behind :func:`ratio`."""
    ratios = _ratios(runs, top, bottom, scenario, bottom_scenario)
    return median_interval(ratios) if ratios else None


def _cell(value: tuple[float, float] | None, fmt: Callable[[float], str]) -> str:
    return "—" if value is None else f"{fmt(value[0])} @{value[1]:.1f}"


def _interval(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f" [{interval[0]:.2f}–{interval[1]:.2f}]"


def _verdict(interval: tuple[float, float] | None, limit: float) -> str:
    """ "yes" when the whole interval of the median is within ``limit``, "NO" when all of
    it is past it, "?" when it straddles ``limit``: these rounds cannot tell."""
    if interval is None:
        return ""
    if interval[1] <= limit:
        return "yes"
    return "NO" if interval[0] > limit else "?"


def print_reference(runs: Sequence[Run], scenarios: Sequence[Scenario]) -> None:
    """The in-process reference of each round, and the server with the log off ÷ it in
    the same round: what serving adds to the model's own work."""
    print(
        "\nin-process Model.predict on a dict of columns (as /predict calls it), CPU per call,"
        " and Watchkeeper with the log off ÷ it (median of per-round ratios):"
    )
    for scenario in scenarios:
        own = cpu_ms(runs, REFERENCE, scenario.name)
        share = ratio(runs, OFF, REFERENCE, scenario.name)
        print(
            f"  {scenario.name:<14}{_cell(own, lambda v: f'{v:.2f} ms'):>16}"
            f"{_cell(share, lambda v: f'{v:.2f}x'):>16}"
        )


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
    names = [name for name in LOG_ON if name in servers]
    print(
        "\nlog on / off, CPU per request (median of per-round ratios [its "
        f"{CONFIDENCE:.0%} interval]) @ load average; met: yes / NO / ? (the interval"
        " straddles the target):"
    )
    header = "".join(f"{name + ' / off':>30}" for name in names)
    print(f"  {'scenario':<14}{header}{'target':>8}   met   issue 10 before (off → on)")
    for scenario in scenarios:
        limit = TARGET[scenario.name]
        cells, verdicts = "", []
        for name in names:
            interval = ratio_interval(runs, name, OFF, scenario.name)
            text = _cell(ratio(runs, name, OFF, scenario.name), lambda x: f"{x:.2f}x")
            cells += f"{text + _interval(interval):>30}"
            verdicts.append(_verdict(interval, limit) or "?")
        met = " / ".join(verdicts)
        before = BEFORE.get(scenario.name)
        told = f"   {before[0]:.2f} → {before[1]:.2f} ms, {before[2]:.2f}x" if before else ""
        print(f"  {scenario.name:<14}{cells}{limit:>7.2f}x   {met:<9}{told}")
    _print_reading(
        "cheapest round ÷ cheapest round (contention only adds CPU time; a second reading,"
        " not the verdict's)",
        scenarios,
        names,
        lambda name, scenario: cheapest_ratio(runs, name, OFF, scenario),
        lambda c: f"{c:.2f}x",
    )
    _print_reading(
        "the first and the second half of the rounds, each its own median (the interval"
        " sees the spread of rounds, not what moves a whole stretch of the run)",
        scenarios,
        names,
        lambda name, scenario: half_ratios(runs, name, OFF, scenario),
        lambda h: f"{h[0]:.2f}x / {h[1]:.2f}x",
    )


def _print_reading(
    title: str,
    scenarios: Sequence[Scenario],
    names: Sequence[str],
    reading: Callable[[str, str], T | None],
    fmt: Callable[[T], str],
) -> None:
    """A line per scenario of one more reading of each log-on server against the log
    off, under the log table."""
    print(f"  {title}:")
    for scenario in scenarios:
        values = [reading(name, scenario.name) for name in names]
        cells = "".join(f"{'—' if v is None else fmt(v):>30}" for v in values)
        print(f"  {scenario.name:<14}{cells}")


def half_ratios(
    runs: Sequence[Run], top: str, bottom: str, scenario: str
) -> tuple[float, float] | None:
    """The median of per-round ratios over the rounds' first half, and over their
    second, in the order they ran. Two halves further apart than the interval is wide
    show a run whose conditions moved under it: a verdict one half would not give is
    not one the run shows. None with fewer than two rounds."""
    ratios = _ratios(runs, top, bottom, scenario)
    if len(ratios) < 2:
        return None
    half = len(ratios) // 2
    return statistics.median(ratios[:half]), statistics.median(ratios[half:])


def cheapest_ratio(runs: Sequence[Run], top: str, bottom: str, scenario: str) -> float | None:
    """``top``'s cheapest round ÷ ``bottom``'s. A round's CPU per request is raised by
    whatever shares the cores with it (caches, the load generator on the same core),
    never lowered, so each server's least is its figure least inflated; taken from
    different rounds, it is a reading beside the median of per-round ratios."""
    tops = [r.cpu_ms_per_request for r in _runs(runs, top, scenario) if r.cpu_ms_per_request]
    bottoms = [r.cpu_ms_per_request for r in _runs(runs, bottom, scenario) if r.cpu_ms_per_request]
    if not tops or not bottoms:
        return None
    return min(tops) / min(bottoms)


def print_peers(runs: Sequence[Run], servers: Sequence[str], scenarios: Sequence[Scenario]) -> None:
    peers = [p for p in PEERS if p in servers]
    if not peers:
        return
    print(
        "\nWatchkeeper with the log on ÷ a peer that logs nothing (bar: ≤ 1.00x; NO or ? as"
        " for the targets above) @ load average:"
    )
    pairs = [(w, p) for w in LOG_ON if w in servers for p in peers]
    print(f"  {'scenario':<14}" + "".join(f"{f'{w} / {p}':>22}" for w, p in pairs))
    footnote = ""
    for scenario in scenarios:
        # Peers take no `columns` body: a columnar request against the same rows as a
        # peer's batch (MLServer's V2 body is one tensor per feature, column-wise too).
        against = next(
            (
                s.name
                for s in scenarios
                if scenario.columnar and not s.columnar and s.rows == scenario.rows
            ),
            None,
        )
        if scenario.columnar and against is None:
            continue
        text = []
        for w, p in pairs:
            interval = ratio_interval(runs, w, p, scenario.name, against)
            verdict = _verdict(interval, 1.0)
            cell = _cell(ratio(runs, w, p, scenario.name, against), lambda x: f"{x:.2f}x")
            text.append(cell + ("" if verdict in ("yes", "") else f" {verdict}"))
        name = scenario.name
        if against is not None:
            name += "*"
            footnote = (
                f"  * Watchkeeper's {scenario.name} ÷ the peer's {against}: the same rows"
                " (MLServer's V2 body is one tensor per feature, column-wise too)"
            )
        print(f"  {name:<14}" + "".join(f"{t:>22}" for t in text))
    if footnote:
        print(footnote)
    if "mlserver" in peers:
        # Its V2 protocol takes tensors only: a records batch is set against columns.
        print(
            "  batch-N ÷ mlserver: Watchkeeper's JSON records ÷ MLServer's V2 tensors, one"
            " per feature (it takes no records): a shorter, column-wise body"
        )


def print_columnar(runs: Sequence[Run], scenarios: Sequence[Scenario]) -> None:
    for scenario in scenarios:
        if scenario.columnar:
            _print_columnar(runs, scenario)


def _print_columnar(runs: Sequence[Run], scenario: Scenario) -> None:
    off = cpu_ms(runs, OFF, scenario.name)
    own = cpu_ms(runs, REFERENCE, scenario.name)
    share = ratio(runs, OFF, REFERENCE, scenario.name)
    interval = ratio_interval(runs, OFF, REFERENCE, scenario.name)
    if off is None or own is None or share is None:
        return
    print(
        f"\n{scenario.name} ({scenario.content_type}), log off: {off[0]:.2f} ms "
        f"@{off[1]:.1f}, in-process predict {own[0]:.2f} ms @{own[1]:.1f}; off ÷ predict "
        f"{share[0]:.2f}x{_interval(interval)} @{share[1]:.1f} (median of per-round ratios); "
        f"target ≤ {COLUMNAR_TARGET:.1f}x: {_verdict(interval, COLUMNAR_TARGET)}"
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
