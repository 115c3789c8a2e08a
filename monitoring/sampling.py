"""Which rows of a window the statistical checks evaluate.

At fleet traffic a window can hold far more rows than the drift tests need: their level
and power were measured at 200 and 500 rows (``tests/monitoring/test_detectors.py``),
and at 100,000 rows a KS test flags differences too small to matter. So the drift
tests, the OOD scoring of rows logged without a score and the label-free estimate take
a uniform random sample of at most ``WATCHKEEPER_MONITOR_SAMPLE_ROWS`` rows of each
window; counts and data-quality rates stay exact over every row.

The sample is drawn from a generator seeded by the window's id, so that evaluating a
window again (a monitor that died before moving its watermark) draws the same rows and
stores the same verdict.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowSample:
    """The positions (sorted, 0-based) of the evaluated rows among the ``held`` rows of
    a window."""

    positions: np.ndarray
    held: int

    @property
    def evaluated(self) -> int:
        return len(self.positions)

    @property
    def is_all(self) -> bool:
        return self.evaluated == self.held


def seed_of(window_id: str) -> int:
    """A stable seed from a window's id (``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(window_id.encode()).digest()[:8], "big")


def sample_window(window_id: str, held: int, max_rows: int) -> WindowSample:
    """A uniform random sample, without replacement, of at most ``max_rows`` of a
    window's ``held`` rows; every row when the window holds no more."""
    if held <= max_rows:
        return WindowSample(np.arange(held), held)
    rng = np.random.default_rng(seed_of(window_id))
    positions = np.sort(rng.choice(held, size=max_rows, replace=False))
    return WindowSample(positions, held)
