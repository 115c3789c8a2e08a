"""``GET /model``: the version being served and its registry metadata."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from serving.api_models import ModelInfo
from serving.responses import json_response

bp = Blueprint("model_info", __name__)


@bp.get("/model")
def model_info() -> Response:
    """The served model version and its registry metadata."""
    registered = current_app.extensions["watchkeeper.model_store"].get()
    info = ModelInfo(version=registered.version, metadata=registered.metadata)
    return json_response(info.model_dump())
