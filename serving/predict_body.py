"""The ``/predict`` body, validated, in whichever form it came: JSON (one record,
records or columns; :mod:`serving.validation`) or an Arrow IPC stream
(:mod:`serving.arrow_ipc`, :mod:`serving.arrow_validation`), by its ``Content-Type``."""

from __future__ import annotations

from flask import current_app, request

from serving.arrow_ipc import ARROW_STREAM, read_arrow_stream
from serving.arrow_validation import validate_arrow_table
from serving.json_body import json_request_body, parse_json, request_body
from serving.validation import ValidatedRequest, validate_predict_payload
from watchkeeper.errors import UnsupportedMediaType
from watchkeeper.schema import FeatureSchema


def validated_predict_body(schema: FeatureSchema, *, max_batch_size: int) -> ValidatedRequest:
    """The current request's body as columns; 415 for a type that is neither."""
    if request.mimetype == ARROW_STREAM:
        # A JSON body of the same rows could hold no more text than the size limit.
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        table = read_arrow_stream(
            request_body(), max_rows=max_batch_size, max_dictionary_bytes=limit
        )
        return validate_arrow_table(
            table, schema, max_batch_size=max_batch_size, max_text_bytes=limit
        )
    if not request.is_json:
        raise UnsupportedMediaType(
            f"Content-Type must be application/json or {ARROW_STREAM}, "
            f"got {request.mimetype or 'none'!r}"
        )
    payload = parse_json(json_request_body())
    return validate_predict_payload(payload, schema, max_batch_size=max_batch_size)
