"""A registry whose writer stops right after settling a promotion, as a job or a
recovery would in a GC pause, a SIGSTOP or on a slow disk: the point after which it
has decided and before it moves ``CURRENT``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from watchkeeper.registry import ModelRegistry, Promotion, PromotionSettlement

DEADLINE = 240.0


class PausedAfterSettling(ModelRegistry):
    """Once ``pause_if(settlement, by)`` holds for a settlement this writer made, it
    sets ``paused`` and waits for ``resume`` (the test's), then goes on."""

    def __init__(
        self,
        root: Path,
        resume: threading.Event,
        pause_if: Callable[[PromotionSettlement, str], bool] = lambda _settled, _by: True,
    ) -> None:
        super().__init__(root)
        self.resume = resume
        self.paused = threading.Event()
        self._pause_if = pause_if

    def settle_promotion(
        self, version: str, outcome: Promotion, *, by: str, reason: str
    ) -> PromotionSettlement:
        settled = super().settle_promotion(version, outcome, by=by, reason=reason)
        if self._pause_if(settled, by):
            self.paused.set()
            assert self.resume.wait(DEADLINE), "the test never resumed the paused writer"
        return settled


def won_served(settled: PromotionSettlement, by: str) -> bool:
    """The writer won the compare-and-set for its candidate, served."""
    return settled.by == by and settled.outcome is Promotion.SERVED
