"""Fitted pipelines parsed from skops artifacts, kept by SHA-256 within a process.

Parsing the Ames model costs 0.26–0.30 s of CPU (skops audits the tree, then reads
~600 arrays, each with its own header); a load of bytes parsed before costs 3–4 ms.
The same artifact is parsed again and again in one process: a rollback checks that
the version loads and the server then swaps to it, the monitor and the accuracy
estimate each load the versions in a window, every retraining job loads its
champion. The registry still reads every artifact and checks its SHA-256 on each
load; only the parse of bytes proven identical to ones parsed before is skipped.

What skops reports as untrusted is a property of the bytes, kept with them; whether
those types may be loaded is the registry's to decide on every load, before the
pipeline is built. Callers share the pipeline, as a server's request threads already
do: nothing in Watchkeeper changes a fitted pipeline after loading it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

# The versions one process works with at a time: the one served, the one it replaces or
# rolls back to, a candidate, a monitor window's older version. The Ames pipeline holds
# 1.2 MB (tracemalloc).
CAPACITY = 4


@dataclass
class _Parsed:
    untrusted: tuple[str, ...]
    pipeline: Any = None
    built: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class ParsedModels:
    """The last :data:`CAPACITY` artifacts parsed, by SHA-256 (least recently used
    first out)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, _Parsed] = OrderedDict()
        self._lock = threading.Lock()

    def untrusted_types(self, sha256: str, blob: bytes) -> tuple[str, ...]:
        """The types in ``blob`` that skops loads only if told to trust them."""
        return self._entry(sha256, blob).untrusted

    def pipeline(self, sha256: str, blob: bytes) -> Any:
        """``blob``'s fitted pipeline, built once; its untrusted types must have been
        accepted by the caller (:meth:`untrusted_types`)."""
        import skops.io as sio  # importing skops costs ~0.6 s (its estimator list)

        entry = self._entry(sha256, blob)
        with entry.lock:  # two threads loading one version parse it once
            if not entry.built:
                entry.pipeline = sio.loads(blob, trusted=list(entry.untrusted))
                entry.built = True
            return entry.pipeline

    def _entry(self, sha256: str, blob: bytes) -> _Parsed:
        with self._lock:
            entry = self._entries.get(sha256)
            if entry is not None:
                self._entries.move_to_end(sha256)
                return entry
        import skops.io as sio

        entry = _Parsed(untrusted=tuple(sio.get_untrusted_types(data=blob)))
        with self._lock:
            entry = self._entries.setdefault(sha256, entry)
            self._entries.move_to_end(sha256)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
            return entry


# One per process: every registry object of a process reads the same files.
parsed_models = ParsedModels()
