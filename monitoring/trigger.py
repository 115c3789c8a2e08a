"""The retrain trigger policy: when the monitor asks for a new model.

Any one of these trips it, per model version:

- dataset drift in ``drift_windows`` consecutive windows;
- an out-of-distribution fraction above ``ood_fraction`` in a window with a verdict;
- the rolling MAE from feedback worse than the version's validation MAE by
  ``mae_degradation``, with confidence: the MAE's one-sided lower confidence bound
  (computed by the monitor at ``trigger_accuracy_confidence``, see
  :mod:`monitoring.accuracy`) must exceed the limit, not just the point figure. Over 63
  labels a point MAE 13 % above the limit is noise; over 600 labels it is not;
- for a classifier, the rolling accuracy from feedback below the version's validation
  accuracy minus ``accuracy_drop`` (absolute), with confidence: the accuracy's
  one-sided Wilson *upper* bound (:mod:`monitoring.class_accuracy`) must be below the
  limit.

A trip records a ``retrain_requests`` row (reason and evidence) for the retraining
job; the monitor never trains. After a request, the version gets no other one for
``cooldown_seconds``, so one episode raises one request. Both the consecutive count
and the cooldown are read from the database, so a restart changes neither.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from monitoring.check_details import AccuracyDetails, ClassAccuracyDetails
from monitoring.window_result import Check, WindowResult
from watchkeeper import retrain_queue
from watchkeeper.db.tables import window_results
from watchkeeper.figures import amount
from watchkeeper.retrain_queue import Evidence

log = logging.getLogger(__name__)

TRIGGER = "monitor"


@dataclass(frozen=True)
class TriggerPolicy:
    drift_windows: int = 3
    ood_fraction: float = 0.1
    mae_degradation: float = 0.25
    accuracy_drop: float = 0.05
    cooldown_seconds: float = 3600.0


@dataclass(frozen=True)
class Trip:
    """Why the policy tripped: the request's reason and its evidence."""

    reason: str
    evidence: Evidence = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The reason's first word (``drift``, ``ood``, ``accuracy``): the counter's label."""
        return self.reason.split(":", 1)[0]


@dataclass(frozen=True)
class RetrainRequested:
    """A retrain request the trigger queued."""

    id: int
    model_version: str
    reason: str
    evidence: Evidence


class RetrainTrigger:
    def __init__(
        self, engine: sa.Engine, policy: TriggerPolicy, requested: Counter[str] | None = None
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.requested: Counter[str] = Counter() if requested is None else requested

    def consider(
        self,
        results: list[WindowResult],
        *,
        validation_mae: float | None,
        validation_accuracy: float | None = None,
    ) -> RetrainRequested | None:
        """Check one window's (or one accuracy round's) results; record a request if
        the policy trips and the version is not cooling down. ``validation_accuracy``
        is a classifier version's (its rolling result says it is one)."""
        by_check = {r.check: r for r in results}
        version = results[0].model_version
        trip = self._reason(version, by_check, validation_mae) or self._accuracy_reason(
            by_check, validation_accuracy
        )
        if trip is None:
            return None
        request_id = retrain_queue.enqueue(
            self.engine,
            trigger=TRIGGER,
            reason=trip.reason,
            evidence=trip.evidence,
            model_version=version,
            cooldown=timedelta(seconds=self.policy.cooldown_seconds),
        )
        if request_id is None:
            log.info("retrain trigger (%s) for %s suppressed: cooling down", trip.reason, version)
            return None
        self.requested[trip.kind] += 1
        log.warning("retrain requested for %s: %s", version, trip.reason)
        return RetrainRequested(request_id, version, trip.reason, trip.evidence)

    def _reason(
        self, version: str, results: dict[Check, WindowResult], validation_mae: float | None
    ) -> Trip | None:
        policy = self.policy
        drift = results.get(Check.FEATURE_DRIFT)
        if drift is not None and drift.is_drift:
            recent = self._recent_drift_verdicts(version, policy.drift_windows)
            if len(recent) == policy.drift_windows and all(recent):
                return Trip(
                    f"drift: dataset drift in {policy.drift_windows} consecutive windows",
                    {"window_id": drift.window_id, "drifted": drift.drifted},
                )
        ood = results.get(Check.OOD)
        if (
            drift is not None
            and ood is not None
            and ood.score is not None
            and ood.score > policy.ood_fraction
        ):
            return Trip(
                f"ood: {ood.score:.1%} of a window out of distribution "
                f"(limit {policy.ood_fraction:.1%})",
                {"window_id": ood.window_id, "ood_fraction": ood.score},
            )
        accuracy = results.get(Check.ROLLING_ACCURACY)
        figures = None if accuracy is None else accuracy.details_as(AccuracyDetails)
        bound = None if figures is None else figures.mae_lower_bound
        if accuracy is not None and figures is not None and bound is not None and validation_mae:
            limit = validation_mae * (1 + policy.mae_degradation)
            if bound > limit:
                return Trip(
                    f"accuracy: MAE {amount(accuracy.score)} over "
                    f"{accuracy.n_rows} labels, at least {amount(bound)} with "
                    f"{figures.confidence or 0:.0%} confidence, above "
                    f"{amount(limit)} (validation {amount(validation_mae)} "
                    f"+ {policy.mae_degradation:.0%})",
                    {
                        "window_id": accuracy.window_id,
                        "mae": accuracy.score,
                        "mae_lower_bound": bound,
                        "validation_mae": validation_mae,
                        "labels": accuracy.n_rows,
                    },
                )
        return None

    def _accuracy_reason(
        self, results: dict[Check, WindowResult], validation_accuracy: float | None
    ) -> Trip | None:
        """A classifier's rolling accuracy, surely below its validation accuracy less
        the allowed drop."""
        rolling = results.get(Check.ROLLING_ACCURACY)
        if rolling is None or validation_accuracy is None:
            return None
        figures = rolling.details_as(ClassAccuracyDetails)
        if figures is None:  # a regression version's figures
            return None
        bound = figures.accuracy_upper_bound
        drop = self.policy.accuracy_drop
        limit = validation_accuracy - drop
        if bound >= limit:
            return None
        return Trip(
            f"accuracy: {rolling.score:.1%} right over {rolling.n_rows} labels, at most "
            f"{bound:.1%} with {figures.confidence or 0:.0%} confidence, below {limit:.1%} "
            f"(validation {validation_accuracy:.1%} - {drop:.1%})",
            {
                "window_id": rolling.window_id,
                "accuracy": rolling.score,
                "accuracy_upper_bound": bound,
                "validation_accuracy": validation_accuracy,
                "labels": rolling.n_rows,
            },
        )

    def _recent_drift_verdicts(self, version: str, n: int) -> list[bool]:
        query = (
            sa.select(window_results.c.is_drift)
            .where(
                window_results.c.model_version == version,
                window_results.c.detector == Check.FEATURE_DRIFT,
            )
            .order_by(window_results.c.last_seq.desc())
            .limit(n)
        )
        with self.engine.connect() as connection:
            return [bool(v) for v in connection.execute(query).scalars()]
