"""``GET /model``: the version being served and its registry metadata."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from serving.responses import json_response

bp = Blueprint("model_info", __name__)


@bp.get("/model")
def model_info() -> Response:
    registered = current_app.extensions["watchkeeper.model_store"].get()
    return json_response({"version": registered.version, "metadata": registered.metadata})
