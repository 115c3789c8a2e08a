"""``GET /model``: the version being served and its registry metadata."""

from __future__ import annotations

from flask import Blueprint, Response

from serving.api_models import ModelInfo
from serving.responses import json_response
from serving.services import services

bp = Blueprint("model_info", __name__)


@bp.get("/model")
def model_info() -> Response:
    """The served model version and its registry metadata."""
    registered = services().model_store.get()
    info = ModelInfo(version=registered.version, metadata=registered.metadata)
    return json_response(info.model_dump())
