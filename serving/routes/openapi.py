"""``GET /openapi.json``: the API description for the model being served."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from serving.openapi import openapi_document
from serving.responses import json_response

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def openapi() -> Response:
    loaded = current_app.extensions["watchkeeper.model_store"].loaded
    return json_response(
        openapi_document(
            loaded.model.schema if loaded is not None else None,
            max_batch_size=current_app.config["WATCHKEEPER_MAX_BATCH_SIZE"],
        )
    )
