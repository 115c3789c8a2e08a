"""``POST /feedback``: the actual value (or class) of earlier predictions.

What ``actual`` may be is decided by the model version that made each prediction, as
the log names it (:mod:`serving.label_rules`), so labels for an earlier version's
predictions are still read as that version's after a promotion to a model of the other
task; a prediction not in the log yet is taken as the served version's, and with no
model loaded a number is expected, as for a regression model. With the database down,
a label that no registered version's task takes is still a 422."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from serving.api_models import ClassFeedbackAccepted, FeedbackAccepted
from serving.feedback import NOTHING_READ, parse_feedback, read_log, store_feedback
from serving.json_body import request_json
from serving.label_rules import LabelRule, label_rules
from serving.responses import json_response
from serving.services import services
from watchkeeper.errors import DatabaseUnavailable
from watchkeeper.task import Task

bp = Blueprint("feedback", __name__)


@bp.post("/feedback")
def feedback() -> Response:
    """Record the actual value (or class) of predictions, logged yet or not (all or
    nothing).

    ``{"id", "actual"}`` or ``{"items": [{"id", "actual"}, ...]}``. A regression
    model's prediction takes a number; a classifier's a class label (a string, an
    integer or a boolean), and a class it does not know is stored too (``known_class``
    false). An id that already has other feedback is a 409, and nothing of the request
    is stored; the same label again is accepted, and stored once (a retry after a
    503).

    With the database down, a label no registered version's task takes is 422 naming
    the field (so are malformed and repeated ids): a retry cannot help it. Any other
    body is 503 database_unavailable."""
    store = services().model_store
    loaded = store.loaded
    served = LabelRule.of_model(loaded.model if loaded is not None else None)
    body = parse_feedback(
        request_json(), max_items=current_app.config["WATCHKEEPER_MAX_BATCH_SIZE"]
    )
    database = services().request_database
    read = NOTHING_READ
    if body.ids:
        try:
            with database.work("the feedback") as engine:
                read = read_log(engine, body.ids)
        except DatabaseUnavailable:
            # which version made each prediction is unknown: what no version would
            # take is still the client's to fix, and said so (a 503 hid it)
            body.refuse_without_log(services().registry_tasks.possible(served))
            raise
    rules = label_rules(read.requests, body.ids, served=served, registry=store.registry)
    items = body.labels(rules, served)
    with database.work("the feedback") as engine:
        stored = store_feedback(engine, items, read)
    accepted = FeedbackAccepted(
        accepted=stored.accepted,
        unmatched=stored.unmatched,
        received_at=stored.received_at.isoformat(),
    )
    classes = [item.known_class for item in items if item.known_class is not None]
    if served.task is Task.CLASSIFICATION or classes:
        accepted = ClassFeedbackAccepted(**accepted.model_dump(), known_class=all(classes))
    return json_response(accepted.model_dump())
