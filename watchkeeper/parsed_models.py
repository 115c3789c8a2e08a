"""Fitted pipelines parsed from skops artifacts, kept by SHA-256 within a process.

Parsing the Ames model costs 0.15–0.21 s of CPU (skops audits the tree and reads ~600
arrays, each with its own header); a load of bytes parsed before costs 3 ms.
The same artifact is parsed again and again in one process: a rollback checks that
the version loads and the server then swaps to it, the monitor and the accuracy
estimate each load the versions in a window, every retraining job loads its
champion. The registry still reads every artifact and checks its SHA-256 on each
load; only the parse of bytes proven identical to ones parsed before is skipped.

A pipeline is built by one pass of skops, which refuses any type outside the trusted
ones as it goes; whether a pipeline built before may be handed out is decided on every
load, against the caller's trusted types: at once when they include those it was built
under (a process has one list), else from the types skops reports as untrusted in the
bytes, read once. Callers share the pipeline, as a server's request threads already
do: nothing in Watchkeeper changes a fitted pipeline after loading it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Set
from dataclasses import dataclass, field
from typing import Any

# The versions one process works with at a time: the one served, the one it replaces or
# rolls back to, a candidate, a monitor window's older version. The Ames pipeline holds
# 1.2 MB (tracemalloc).
CAPACITY = 4


class UntrustedTypes(Exception):
    """The artifact holds types outside the trusted ones: ``refused``, sorted."""

    def __init__(self, refused: list[str]) -> None:
        super().__init__(f"untrusted types {refused}")
        self.refused = refused


@dataclass
class _Parsed:
    pipeline: Any = None
    built_under: frozenset[str] | None = None  # the trusted types it was built under
    untrusted: frozenset[str] | None = None  # skops' report on the bytes, once read
    lock: threading.Lock = field(default_factory=threading.Lock)


class ParsedModels:
    """The last :data:`CAPACITY` artifacts parsed, by SHA-256 (least recently used
    first out)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, _Parsed] = OrderedDict()
        self._lock = threading.Lock()

    def pipeline(self, sha256: str, blob: bytes, trusted: Set[str]) -> Any:
        """``blob``'s fitted pipeline, built once; raises :class:`UntrustedTypes` when
        it holds a type outside ``trusted``, and skops' own errors when it cannot be
        read."""
        # imported here: importing skops lists (imports) every scikit-learn estimator
        import skops.io as sio
        from skops.io.exceptions import UntrustedTypesFoundException

        entry = self._entry(sha256)
        with entry.lock:  # two threads loading one version parse it once
            if entry.built_under is None:
                try:
                    entry.pipeline = sio.loads(blob, trusted=sorted(trusted))
                except UntrustedTypesFoundException:
                    entry.untrusted = frozenset(sio.get_untrusted_types(data=blob))
                    raise UntrustedTypes(sorted(entry.untrusted - trusted)) from None
                entry.built_under = frozenset(trusted)
            elif not entry.built_under <= trusted:  # another list than the builder's
                if entry.untrusted is None:
                    entry.untrusted = frozenset(sio.get_untrusted_types(data=blob))
                if refused := sorted(entry.untrusted - trusted):
                    raise UntrustedTypes(refused)
            return entry.pipeline

    def _entry(self, sha256: str) -> _Parsed:
        with self._lock:
            entry = self._entries.get(sha256)
            if entry is None:
                entry = self._entries[sha256] = _Parsed()
                while len(self._entries) > self._capacity:
                    self._entries.popitem(last=False)
            self._entries.move_to_end(sha256)
            return entry


# One per process: every registry object of a process reads the same files.
parsed_models = ParsedModels()
