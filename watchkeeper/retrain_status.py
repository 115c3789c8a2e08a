"""The states a retrain request and a retraining run go through, as stored (the
database columns stay strings: a ``StrEnum`` member is its string).

A request is ``pending`` until a job claims it (``running``), then ``done`` or
``failed`` with the job. A run is ``running`` from its start until it ends
``promoted``, ``rejected`` or ``failed``.
"""

from __future__ import annotations

from enum import StrEnum


class RequestStatus(StrEnum):
    """``retrain_requests.status``."""

    PENDING = "pending"
    RUNNING = "running"
    """Claimed by the run named in ``run_id``."""
    DONE = "done"
    FAILED = "failed"


class RunOutcome(StrEnum):
    """``retrain_runs.outcome``."""

    RUNNING = "running"
    PROMOTED = "promoted"
    REJECTED = "rejected"
    FAILED = "failed"


FINISHED_OUTCOMES = (RunOutcome.PROMOTED, RunOutcome.REJECTED, RunOutcome.FAILED)
"""Outcomes a run ends with (``running`` is not one)."""

UNCLAIMED_TRIGGER = "unclaimed"
"""``retrain_runs.trigger`` between the run's insert and its claim of the requests
(the claim needs the run's id); the claim replaces it with the requests' triggers, so
a row keeps it only if its job died in between."""
