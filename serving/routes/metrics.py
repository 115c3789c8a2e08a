"""``GET /metrics``: Prometheus text exposition (all gunicorn workers aggregated)."""

from __future__ import annotations

from flask import Blueprint, Response

from serving.metrics import exposition
from serving.services import services

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics."""
    body, content_type = exposition(services().metrics.registry)
    return Response(body, content_type=content_type)
