"""``POST /feedback``: the actual value (or class) of earlier predictions.

The served model's task decides what ``actual`` may be; with no model loaded, a
number is expected, as for a regression model."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from serving.api_models import ClassFeedbackAccepted, FeedbackAccepted
from serving.feedback import known_class, parse_feedback, store_feedback, with_boolean_classes
from serving.json_body import request_json
from serving.responses import json_response
from serving.services import services
from watchkeeper.classification import Classifier
from watchkeeper.task import Task

bp = Blueprint("feedback", __name__)


@bp.post("/feedback")
def feedback() -> Response:
    """Record the actual value (or class) of predictions, logged yet or not (all or
    nothing).

    ``{"id", "actual"}`` or ``{"items": [{"id", "actual"}, ...]}``. A regression model
    takes a number; a classifier a class label (a string, an integer or a boolean),
    and a class it does not know is stored too (``known_class`` false). An id that
    already has other feedback is a 409, and nothing of the request is stored; the same
    label again is accepted, and stored once (a retry after a 503)."""
    loaded = services().model_store.loaded
    model = loaded.model if loaded is not None else None
    items = parse_feedback(
        request_json(),
        max_items=current_app.config["WATCHKEEPER_MAX_BATCH_SIZE"],
        task=model.task if model is not None else Task.REGRESSION,
    )
    if isinstance(model, Classifier):
        items = with_boolean_classes(model, items)
    with services().request_database.work("the feedback") as engine:
        stored = store_feedback(engine, items)
    accepted = FeedbackAccepted(
        accepted=stored.accepted,
        unmatched=stored.unmatched,
        received_at=stored.received_at.isoformat(),
    )
    if isinstance(model, Classifier):
        accepted = ClassFeedbackAccepted(
            **accepted.model_dump(), known_class=known_class(model, items)
        )
    return json_response(accepted.model_dump())
