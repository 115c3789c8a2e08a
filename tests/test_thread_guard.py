"""The guard that fails a test leaving a component's thread running
(``tests/thread_guard.py``)."""

from __future__ import annotations

import ast
import threading

from tests.test_layering import CLI, COMPONENTS, CORE, REPO
from tests.thread_guard import COMPONENT_THREADS, CYCLE_SUFFIX, outliving


def _probe_like(stop: threading.Event, name: str = "database-probe") -> threading.Thread:
    thread = threading.Thread(target=stop.wait, name=name, daemon=True)
    thread.start()
    return thread


def test_a_component_thread_still_running_after_the_wait_is_reported() -> None:
    before = set(threading.enumerate())
    stop = threading.Event()
    thread = _probe_like(stop)
    try:
        assert outliving(before, timeout=0.2) == [thread]
    finally:
        stop.set()
        thread.join(5)


def test_a_thread_that_ends_within_the_wait_is_not_reported() -> None:
    before = set(threading.enumerate())
    stop = threading.Event()
    thread = _probe_like(stop)
    threading.Timer(0.2, stop.set).start()
    assert outliving(before, timeout=10) == []
    assert not thread.is_alive()


def test_threads_running_before_the_test_or_not_a_components_are_not_reported() -> None:
    stop = threading.Event()
    earlier = _probe_like(stop)
    before = set(threading.enumerate())
    other = _probe_like(stop, name="a-library-thread")
    try:
        assert outliving(before, timeout=0.1) == []
    finally:
        stop.set()
        earlier.join(5)
        other.join(5)


def _thread_names() -> list[ast.expr]:
    """The ``name=`` of every ``threading.Thread(...)`` in the packages."""
    names = []
    for package in (CORE, *COMPONENTS, CLI):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "Thread"
                ):
                    names += [k.value for k in node.keywords if k.arg == "name"]
    return names


def test_every_thread_a_component_starts_is_one_the_guard_knows() -> None:
    """A thread renamed or added without the guard's list would leak unnoticed."""
    names = _thread_names()
    constants = {n.value for n in names if isinstance(n, ast.Constant)}
    formatted = [n for n in names if isinstance(n, ast.JoinedStr)]
    assert constants == COMPONENT_THREADS
    for name in formatted:  # a service loop's cycle: "<service> cycle"
        tail = name.values[-1]
        assert isinstance(tail, ast.Constant) and tail.value.endswith(CYCLE_SUFFIX)
    assert len(constants) + len(formatted) == len(names)
