"""One error root that carries its HTTP status and a machine-readable code.

Third-party failures are wrapped where they enter our code (``raise ... from exc``),
so the HTTP layer maps every expected failure through a single handler.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # imported where a database is used: the CLI's help and settings need none
    import sqlalchemy as sa

ErrorBody = dict[str, Any]
"""The JSON error an answer carries (``code``, ``message``, optional ``details``), as
sent and as logged; its documented shape is ``serving.api_models.Error``."""


# An error is answered and logged whole (``as_dict``), so its size is bounded whatever
# text a client put in it (a key of 500,000 characters, named in the field, in the
# message and by each problem, made a 17 MB answer and log row for a 14.5 MB body):
# ~250,000 characters at most, with a hundred problems.
MAX_FIELD_CHARS = 256
MAX_PROBLEM_CHARS = 2048  # a schema's allowed categories are listed in one
MAX_MESSAGE_CHARS = 1024
MAX_DETAILS = 100


def clipped(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[{len(text) - limit:,} more characters]"


@dataclass(frozen=True)
class FieldProblem:
    """One bad field in a request: where it is and what is wrong with it (each
    clipped: a field's name may be a client's key of any length)."""

    field: str
    problem: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "field", clipped(self.field, MAX_FIELD_CHARS))
        object.__setattr__(self, "problem", clipped(self.problem, MAX_PROBLEM_CHARS))

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


class WatchkeeperError(Exception):
    """Base of every error Watchkeeper raises on purpose."""

    status_code: int = 500
    code: str = "internal_error"
    headers: ClassVar[Mapping[str, str]] = MappingProxyType({})
    """Response headers the status calls for (``WWW-Authenticate`` with a 401)."""

    def __init__(self, message: str, *, details: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def as_dict(self) -> ErrorBody:
        """The error as answered and logged: its message and problems bounded (a
        command line prints ``message`` whole)."""
        body: ErrorBody = {"code": self.code, "message": clipped(self.message, MAX_MESSAGE_CHARS)}
        if self.details:
            body["details"] = [d.as_dict() for d in self.details[:MAX_DETAILS]]
        return body

    def as_answer(self) -> ErrorBody:
        """The API's error shape (``serving.api_models.Error``) without a request id:
        the answer of a service that gives none (status servers, notification sink)."""
        return {"error": self.as_dict()}


class BadRequest(WatchkeeperError):
    """The body is not JSON, or not shaped like the endpoint's envelope."""

    status_code = 400
    code = "bad_request"


class Unauthorized(WatchkeeperError):
    status_code = 401
    code = "unauthorized"
    headers = MappingProxyType({"WWW-Authenticate": 'Bearer realm="watchkeeper"'})


class Forbidden(WatchkeeperError):
    status_code = 403
    code = "forbidden"


class NotFound(WatchkeeperError):
    status_code = 404
    code = "not_found"


class MethodNotAllowed(WatchkeeperError):
    """The path does not take the method; the answer's ``Allow`` names those it takes."""

    status_code = 405
    code = "method_not_allowed"


class RollbackRefused(WatchkeeperError):
    status_code = 409
    code = "rollback_refused"


class DuplicateFeedback(WatchkeeperError):
    status_code = 409
    code = "duplicate_feedback"


class PayloadTooLarge(WatchkeeperError):
    status_code = 413
    code = "payload_too_large"

    @classmethod
    def body_over(cls, limit: int) -> PayloadTooLarge:
        """The request body is longer than ``limit`` bytes."""
        return cls(f"request body exceeds the limit of {limit} bytes")


class UnsupportedMediaType(WatchkeeperError):
    status_code = 415
    code = "unsupported_media_type"


class UnsupportedContentEncoding(UnsupportedMediaType):
    """A body under a content coding (gzip, br): only the body as it is, ``identity``,
    is read, and the answer says so (RFC 9110 section 15.5.16)."""

    headers = MappingProxyType({"Accept-Encoding": "identity"})


class ValidationFailed(WatchkeeperError):
    """Well-formed JSON whose fields break the model's feature schema."""

    status_code = 422
    code = "validation_error"


class ServiceUnavailable(WatchkeeperError):
    status_code = 503
    code = "unavailable"


class ModelNotAvailable(ServiceUnavailable):
    code = "model_unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    """The database cannot be reached or used right now; the client may retry."""

    code = "database_unavailable"
    headers = MappingProxyType({"Retry-After": "1"})


# SQLSTATE classes that blame what was written (22 data exception, 23 integrity
# constraint violation): every other refusal is the database's state, not the request's.
_DATA_CLASSES = ("22", "23")


def about_the_data(exc: sa.exc.DBAPIError) -> bool:
    """Whether the database refused ``exc``'s statement for the values it was given,
    not for its own state (down, read-only, a role without rights, not migrated).
    PostgreSQL says so by SQLSTATE; SQLite by the error's kind."""
    import sqlalchemy as sa

    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate:
        return str(sqlstate)[:2] in _DATA_CLASSES
    return isinstance(exc, sa.exc.IntegrityError | sa.exc.DataError)


@contextmanager
def database_errors(action: str) -> Iterator[None]:
    """Turn "the database cannot do this now" into a 503 for ``action``: down, stalled,
    out of connections, and also read-only (a standby after a failover) or refusing
    the role's rights, which the request cannot change either. A refusal of the values
    themselves (:func:`about_the_data`) is left to the caller. The driver's text names
    hosts and ports; it stays in the server log (chained), out of the response."""
    import sqlalchemy as sa

    try:
        yield
    # TimeoutError: no pooled connection came free in time
    except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:
        if isinstance(exc, sa.exc.DBAPIError) and about_the_data(exc):
            raise
        raise DatabaseUnavailable(
            f"the database is unavailable, {action} was not done; retry later"
        ) from exc


class LogUnavailable(ServiceUnavailable):
    """The prediction log cannot take the request's entry (its journal is full or
    shut down): the request is refused rather than answered unlogged."""

    code = "log_unavailable"


class UnfittableData(WatchkeeperError, ValueError):
    """Training data no model can be fitted on or scored with: too few rows, a target of
    the wrong kind or out of range (:mod:`watchkeeper.training_checks`)."""

    status_code = 422
    code = "unfittable_data"


class RegistryError(WatchkeeperError):
    """The model registry is missing, inconsistent or refused an artifact."""

    code = "registry_error"


class ArtifactIntegrityError(RegistryError):
    """An artifact's bytes do not match the SHA-256 recorded when it was registered,
    or it holds types outside the trusted list."""

    code = "artifact_integrity_error"
