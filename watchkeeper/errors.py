"""One error root that carries its HTTP status and a machine-readable code.

Third-party failures are wrapped where they enter our code (``raise ... from exc``),
so the HTTP layer maps every expected failure through a single handler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldProblem:
    """One bad field in a request: where it is and what is wrong with it."""

    field: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


class WatchkeeperError(Exception):
    """Base of every error Watchkeeper raises on purpose."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, details: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = [d.as_dict() for d in self.details]
        return body


class BadRequest(WatchkeeperError):
    """The body is not JSON, or not shaped like the endpoint's envelope."""

    status_code = 400
    code = "bad_request"


class Unauthorized(WatchkeeperError):
    status_code = 401
    code = "unauthorized"


class Forbidden(WatchkeeperError):
    status_code = 403
    code = "forbidden"


class RollbackRefused(WatchkeeperError):
    status_code = 409
    code = "rollback_refused"


class UnknownPrediction(WatchkeeperError):
    """Feedback names a prediction id the log does not hold."""

    status_code = 404
    code = "unknown_prediction"


class DuplicateFeedback(WatchkeeperError):
    status_code = 409
    code = "duplicate_feedback"


class PayloadTooLarge(WatchkeeperError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(WatchkeeperError):
    status_code = 415
    code = "unsupported_media_type"


class ValidationFailed(WatchkeeperError):
    """Well-formed JSON whose fields break the model's feature schema."""

    status_code = 422
    code = "validation_error"


class ServiceUnavailable(WatchkeeperError):
    status_code = 503
    code = "unavailable"


class ModelNotAvailable(ServiceUnavailable):
    code = "model_unavailable"


class RegistryError(WatchkeeperError):
    """The model registry is missing, inconsistent or refused an artifact."""

    code = "registry_error"


class ArtifactIntegrityError(RegistryError):
    """An artifact's bytes do not match the SHA-256 recorded when it was registered,
    or it holds types outside the trusted list."""

    code = "artifact_integrity_error"
