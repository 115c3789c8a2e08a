"""Bearer-token check for the admin endpoints and the Alertmanager webhook."""

from __future__ import annotations

import hmac

from flask import request

from serving.services import services
from watchkeeper.errors import Forbidden, Unauthorized


def require_admin() -> None:
    """401 without a bearer token, 403 with a wrong one or when no token is set."""
    expected = services().settings.serving.admin_token
    if expected is None:
        raise Forbidden("admin endpoints are disabled: set WATCHKEEPER_ADMIN_TOKEN")
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        raise Forbidden("token refused")
