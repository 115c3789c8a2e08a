"""``GET /openapi.json``: the API description for the model being served."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from serving.responses import json_response
from serving.services import services
from watchkeeper.classification import Classifier

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def openapi() -> Response:
    """This document.

    Generated from the served model: its features, its task's prediction and feedback
    shapes and, for a classifier, its classes; it follows a model swap."""
    # imported here: the document reads every view's docstring, this one's too
    from serving.openapi import openapi_document

    loaded = services().model_store.loaded
    model = loaded.model if loaded is not None else None
    return json_response(
        openapi_document(
            model.schema if model is not None else None,
            max_batch_size=current_app.config["WATCHKEEPER_MAX_BATCH_SIZE"],
            task=model.task if model is not None else None,
            classes=model.classes if isinstance(model, Classifier) else (),
        )
    )
