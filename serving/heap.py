"""Keeps the cyclic garbage collector off the heap a serving worker loads at start.

A worker holds ~220,000 objects that Python's collector tracks once its imports, app
and model are loaded, and a full collection walks all of them while it holds the
interpreter lock: a median 163 ms (up to 278 ms) in which no request thread of the
worker runs, about once a minute under load (bench/README.md, "Full collections in a
serving worker"). None of those objects is garbage while the worker serves, so the
worker moves them out of the collector's generations once they are loaded
(``gc.freeze``); a full collection then walks only what requests and the log's threads
made since, in a few milliseconds.

A frozen object is never collected as part of a reference cycle, only freed by its
reference count. What replaces a frozen object (a model swapped out, whose estimator
may hold cycles) is therefore given back to the collector after each swap: unfreeze,
collect, freeze again, one full collection per swap. Whatever else of the start-up
heap ends in a cycle is kept at most once: memory stays bounded by that heap.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def freeze_loaded() -> int:
    """Collect what start-up left as garbage, then freeze every object still alive;
    returns how many are frozen."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info(
        "froze %d objects loaded at start: full collections skip them (%.0f ms)",
        frozen,
        (time.perf_counter() - started) * 1e3,
    )
    return frozen


def refreeze() -> None:
    """After a model swap in a process that froze its heap: give the frozen objects back
    to the collector, collect (the old model's cycles), freeze what is left. Nothing in
    a process that never froze (the app run by tests or another WSGI server)."""
    if gc.get_freeze_count() == 0:
        return
    gc.unfreeze()
    gc.collect()
    gc.freeze()
