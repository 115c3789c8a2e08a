"""Background threads a test leaves running.

An app or a prediction log a test does not shut down keeps its threads in the test
process: a database probe checking every few seconds, a sync thread scanning its
journal directory once a second. They then call what a later test patched (a module
function, a metric) and fail it, and hold database connections that the garbage
collector closes during yet another test (psycopg's ResourceWarning): one leak failed
four unrelated tests in CI. The guard fails the test that leaked instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection

# the threads Watchkeeper's components start in the process that builds them (a test
# proves the list complete: tests/test_thread_guard.py), and a service loop's cycle,
# named "<service> cycle"
COMPONENT_THREADS = frozenset(
    {
        "database-probe",
        "model-watcher",
        "prediction-log-sync",
        "prediction-log-writer",
        "retention",
        "retrain-lease",
        "status-server",
    }
)
CYCLE_SUFFIX = " cycle"


def is_component_thread(name: str) -> bool:
    return name in COMPONENT_THREADS or name.endswith(CYCLE_SUFFIX)


def outliving(before: Collection[threading.Thread], timeout: float) -> list[threading.Thread]:
    """Component threads started since ``before`` and still alive after ``timeout``
    seconds: a thread asked to stop may take a moment to end (a probe finishing its
    check, a writer its last batch), more on a busy machine."""
    deadline = time.monotonic() + timeout
    while True:
        left = [
            thread
            for thread in threading.enumerate()
            if is_component_thread(thread.name) and thread not in before and thread.is_alive()
        ]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)
