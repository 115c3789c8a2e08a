"""The suite's xdist grouping (``tests/xdist_groups.py``) as ``make test`` runs it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Eight server tests and eight unit tests, each recording the worker that ran it.
SUITE = """
import os
import pytest

def _record(kind, name):
    with open(os.environ["RECORD"], "a") as out:
        out.write(f"{kind} {name} {os.environ['PYTEST_XDIST_WORKER']}\\n")

@pytest.mark.integration
@pytest.mark.parametrize("n", range(8))
def test_server(n):
    _record("server", n)

@pytest.mark.parametrize("n", range(8))
def test_unit(n):
    _record("unit", n)
"""


def test_server_tests_run_on_one_worker_and_the_rest_spread(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = pytester.path / "record.txt"
    pytester.makepyfile(test_suite=SUITE)
    pytester.makeini("[pytest]\nmarkers =\n    integration: starts real servers\n")
    monkeypatch.setenv("RECORD", str(record))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *sys.path]))
    result = pytester.runpytest_subprocess(
        "-p", "tests.xdist_groups", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=16)
    ran = [line.split() for line in record.read_text().splitlines()]
    server_workers = {worker for kind, _, worker in ran if kind == "server"}
    assert len(server_workers) == 1, ran
    assert {worker for _, _, worker in ran} == {"gw0", "gw1"}, ran
