"""The guard that fails a test leaving a component's thread running
(``tests/thread_guard.py``)."""

from __future__ import annotations

import threading

from tests.thread_guard import outliving


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
