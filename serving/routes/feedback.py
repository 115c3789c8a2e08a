"""``POST /feedback``: the actual value for earlier predictions."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from serving.feedback import parse_feedback, store_feedback
from serving.json_body import request_json
from serving.responses import json_response

bp = Blueprint("feedback", __name__)


@bp.post("/feedback")
def feedback() -> Response:
    items = parse_feedback(
        request_json(),
        max_items=current_app.config["WATCHKEEPER_MAX_BATCH_SIZE"],
    )
    stored = store_feedback(current_app.extensions["watchkeeper.engine"], items)
    return json_response(
        {
            "accepted": stored.accepted,
            "unmatched": stored.unmatched,
            "received_at": stored.received_at.isoformat(),
        }
    )
