"""The serving benchmark's verdicts: a target is met or missed only when the rounds
say so beyond their spread."""

from __future__ import annotations

import pytest

from bench.serving_report import (
    OFF,
    SQLITE,
    _verdict,
    cheapest_ratio,
    half_ratios,
    median_interval,
    print_peers,
)
from bench.serving_runs import Run
from bench.workloads import SCENARIOS


@pytest.mark.parametrize(
    ("n", "low_rank", "high_rank"),
    [
        (4, 1, 4),  # too few for 90 %: the whole range
        (6, 1, 6),  # P(B < 1) = 1/64 <= 5 %; P(B < 2) = 7/64 > 5 %
        (8, 2, 7),  # P(B < 2) = 9/256
        (12, 3, 10),  # P(B < 3) = 79/4096; P(B < 4) = 299/4096 > 5 %
    ],
)
def test_median_interval_takes_the_order_statistics_of_the_binomial_tail(
    n: int, low_rank: int, high_rank: int
) -> None:
    values = [float(v) for v in range(n, 0, -1)]  # unsorted on purpose
    assert median_interval(values) == (float(low_rank), float(high_rank))


def test_verdict_is_undecided_when_the_interval_straddles_the_target() -> None:
    assert _verdict((1.02, 1.08), 1.10) == "yes"
    assert _verdict((1.12, 1.30), 1.10) == "NO"
    assert _verdict((1.05, 1.20), 1.10) == "?"
    assert _verdict(None, 1.10) == ""


def _run(server: str, scenario: str, round_: int, cpu_ms: float) -> Run:
    return Run(
        server=server,
        scenario=scenario,
        round=round_,
        answered=100,
        not_ok=0,
        cpu_seconds=cpu_ms / 1e3 * 100,
        load_average=1.0,
        p50_ms=None,
    )


def test_a_columnar_request_is_set_against_a_peers_batch_of_the_same_rows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    scenarios = [s for s in SCENARIOS if s.rows == 1000]
    runs = [
        run
        for round_ in range(6)
        for run in (
            _run(SQLITE, "batch-1000", round_, 60.0),
            _run(SQLITE, "columnar-1000", round_, 30.0 + round_),
            _run("mlserver", "batch-1000", round_, 40.0),
        )
    ]
    print_peers(runs, [SQLITE, "mlserver"], scenarios)
    lines = capsys.readouterr().out.splitlines()
    assert next(line for line in lines if line.lstrip().startswith("batch-1000")).split()[1:3] == [
        "1.50x",
        "@1.0",
    ]
    columnar = next(line for line in lines if line.lstrip().startswith("columnar-1000*"))
    assert columnar.split()[1:] == ["0.81x", "@1.0"]  # median of 30..35 ÷ 40; all under 1
    assert any("the peer's batch-1000" in line for line in lines)
    assert any("MLServer's V2 tensors" in line for line in lines)  # records ÷ columns


def test_cheapest_ratio_divides_each_servers_least_cpu_whatever_its_round() -> None:
    """Contention only adds CPU time: the least of each server's rounds, even from
    different rounds, is the reading least inflated by it."""
    runs = [
        _run(OFF, "single", 0, 2.6),
        _run(OFF, "single", 1, 2.0),
        _run(SQLITE, "single", 0, 2.2),
        _run(SQLITE, "single", 1, 2.9),
    ]
    assert cheapest_ratio(runs, SQLITE, OFF, "single") == pytest.approx(1.1)
    assert cheapest_ratio(runs, SQLITE, OFF, "batch-100") is None


def test_half_ratios_take_each_half_of_the_rounds_in_the_order_they_ran() -> None:
    """A run whose second half came out dearer than its first: each half's median of
    per-round ratios, the rounds taken by number, not by the order they are listed."""
    ratios = [1.00, 1.02, 1.04, 1.14, 1.16, 1.18]
    runs = [_run(OFF, "single", n, 2.0) for n in range(6)]
    runs += [_run(SQLITE, "single", n, 2.0 * r) for n, r in reversed(list(enumerate(ratios)))]
    assert half_ratios(runs, SQLITE, OFF, "single") == pytest.approx((1.02, 1.16))
    assert half_ratios(runs[:1] + runs[-1:], SQLITE, OFF, "single") is None  # one round
