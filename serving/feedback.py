"""Ground truth for earlier predictions: validation and storage of ``/feedback``.

Feedback is written synchronously (it is not on the prediction path) and all or
nothing: a batch with a duplicate id stores none of its items.

A label is accepted whether or not its prediction has reached the log: labels often
arrive in bulk right after their predictions (backfills), while the prediction still
waits in a worker's journal. The monitor joins labels to predictions by id when it
computes accuracy, and counts a label whose prediction is still missing
``feedback_orphan_seconds`` after it arrived as an orphan (a client sending ids that
were never issued). The response says how many ids are not in the log yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from watchkeeper.db.tables import feedback, predictions
from watchkeeper.errors import (
    BadRequest,
    DuplicateFeedback,
    FieldProblem,
    PayloadTooLarge,
    ValidationFailed,
    database_errors,
)

_MAX_ID = 48


@dataclass(frozen=True)
class FeedbackItem:
    prediction_id: str
    actual: float


@dataclass(frozen=True)
class StoredFeedback:
    received_at: datetime
    accepted: int
    unmatched: int
    """Ids whose prediction is not in the log (yet)."""


def parse_feedback(payload: Any, *, max_items: int) -> list[FeedbackItem]:
    """``{"id", "actual"}`` or ``{"items": [{"id", "actual"}, ...]}``."""
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object with 'id' and 'actual', or 'items'")
    if set(payload) == {"items"}:
        raw, prefix = payload["items"], "items"
        if not isinstance(raw, list) or not raw:
            raise ValidationFailed(
                "items must be a non-empty array",
                details=[FieldProblem("items", "must be a non-empty array")],
            )
        if len(raw) > max_items:
            raise PayloadTooLarge(
                f"{len(raw)} feedback items exceed the limit of {max_items}",
                details=[FieldProblem("items", f"at most {max_items} items")],
            )
        where = [f"{prefix}[{i}]" for i in range(len(raw))]
    elif set(payload) == {"id", "actual"}:
        raw, where = [payload], [""]
    else:
        raise BadRequest("body must have 'id' and 'actual', or an 'items' array of them")

    problems: list[FieldProblem] = []
    items: list[FeedbackItem] = []
    seen: set[str] = set()
    for place, item in zip(where, raw, strict=True):
        dot = f"{place}." if place else ""
        if not isinstance(item, dict) or set(item) != {"id", "actual"}:
            problems.append(
                FieldProblem(place or "body", "must be an object with 'id' and 'actual'")
            )
            continue
        pid, actual = item["id"], item["actual"]
        if not isinstance(pid, str) or not 0 < len(pid) <= _MAX_ID:
            problems.append(
                FieldProblem(f"{dot}id", f"must be a prediction id (string of 1–{_MAX_ID})")
            )
            continue
        if isinstance(actual, bool) or not isinstance(actual, int | float):
            problems.append(FieldProblem(f"{dot}actual", "must be a number"))
            continue
        if not math.isfinite(float(actual)):
            problems.append(FieldProblem(f"{dot}actual", "must be a finite number"))
            continue
        if pid in seen:
            problems.append(FieldProblem(f"{dot}id", f"{pid!r} appears twice in this request"))
            continue
        seen.add(pid)
        items.append(FeedbackItem(pid, float(actual)))
    if problems:
        raise ValidationFailed("invalid feedback", details=problems)
    return items


def store_feedback(engine: sa.Engine, items: list[FeedbackItem]) -> StoredFeedback:
    """Insert ``items``; raise if any id already has feedback, and
    :class:`DatabaseUnavailable` (503) if the database cannot be used now."""
    with database_errors("the feedback"):
        return _store(engine, items)


def _store(engine: sa.Engine, items: list[FeedbackItem]) -> StoredFeedback:
    ids = [item.prediction_id for item in items]
    now = datetime.now(UTC)
    with engine.begin() as connection:
        already = set(
            connection.execute(
                sa.select(feedback.c.prediction_id).where(feedback.c.prediction_id.in_(ids))
            ).scalars()
        )
        if already:
            raise DuplicateFeedback(
                f"{len(already)} prediction(s) already have feedback",
                details=[
                    FieldProblem("id", f"feedback for {pid!r} exists")
                    for pid in sorted(already)[:100]
                ],
            )
        known = connection.execute(
            sa.select(sa.func.count())
            .select_from(predictions)
            .where(predictions.c.prediction_id.in_(ids))
        ).scalar_one()
        try:
            connection.execute(
                feedback.insert(),
                [
                    {"prediction_id": i.prediction_id, "actual": i.actual, "received_at": now}
                    for i in items
                ],
            )
        except sa.exc.IntegrityError as exc:  # a concurrent request stored the same id
            raise DuplicateFeedback(
                "feedback for these predictions was stored concurrently"
            ) from exc
    return StoredFeedback(now, len(items), len(items) - known)
