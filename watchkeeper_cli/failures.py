"""How a failed command ends: one line on standard error saying what failed and what to
do, never a traceback (``--debug`` shows it).

Commands raise :class:`CommandFailed` for failures they foresee; everything else is
turned into one line here, by kind of error, with secrets taken out: a database URL's
password appears in SQLAlchemy's messages.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from watchkeeper.errors import (
    ArtifactIntegrityError,
    RegistryError,
    ServiceUnavailable,
    UnfittableData,
    WatchkeeperError,
)
from watchkeeper.listen_address import CannotListen
from watchkeeper.settings import Settings, redact_url

DEBUG_HINT = "run again with --debug for the traceback"


class CommandFailed(Exception):
    """A failure a command foresaw: ``what`` failed, ``todo`` says how to go on."""

    def __init__(self, what: str, todo: str) -> None:
        super().__init__(what)
        self.what = what
        self.todo = todo


@dataclass(frozen=True)
class Failure:
    """The line a failed command prints, and its exit status."""

    what: str
    todo: str
    exit_code: int = 1

    def line(self) -> str:
        return f"error: {self.what}; {self.todo}" if self.todo else f"error: {self.what}"


def _first_line(text: object, limit: int = 300) -> str:
    lines = str(text).strip().splitlines()
    line = lines[0].strip() if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _url_problem(url: str) -> str | None:
    """What makes ``url`` unusable before any connection is tried: it does not parse (a
    port that is not a number), names no dialect SQLAlchemy has, or a driver that is
    not installed. Never the URL itself: unparsed, its password cannot be told apart."""
    import sqlalchemy.exc as sa_exc
    from sqlalchemy.engine import make_url

    try:
        make_url(url).get_dialect().import_dbapi()
    except ModuleNotFoundError as exc:
        return f"its driver {exc.name} is not installed (postgresql+psycopg uses psycopg, which is)"
    except (ValueError, sa_exc.ArgumentError) as exc:
        return _first_line(exc)
    return None


# SQLSTATEs that say what to do instead of "check that it is up": the server answered.
_DATABASE_TODO = {
    "42501": "the role in WATCHKEEPER_DATABASE_URL lacks the rights this needs: grant them "
    "(`db upgrade` creates tables in the schema) or use a role that has them",
    "25006": "the database takes no writes (read-only, as a standby is): point "
    "WATCHKEEPER_DATABASE_URL at the primary",
}


def _database_failure(exc: Exception, settings: Settings) -> Failure | None:
    import sqlalchemy.exc as sa_exc

    if isinstance(exc, ValueError | ImportError | sa_exc.ArgumentError):
        problem = _url_problem(settings.storage.database_url)
        if problem is not None:
            return Failure(
                f"WATCHKEEPER_DATABASE_URL is not a database URL Watchkeeper can use: {problem}",
                "set it to e.g. postgresql+psycopg://user:password@host/db, or leave it "
                "unset for SQLite under WATCHKEEPER_DATA_DIR",
            )
    url = redact_url(settings.storage.database_url)
    if isinstance(exc, sa_exc.DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None)
        return Failure(
            f"the database at {url} failed: {_first_line(exc.orig or exc)}",
            _DATABASE_TODO.get(
                str(sqlstate),
                "check that it is up and reachable and that WATCHKEEPER_DATABASE_URL is right",
            ),
        )
    if isinstance(exc, sa_exc.SQLAlchemyError):
        return Failure(f"the database at {url} failed: {_first_line(exc)}", DEBUG_HINT)
    return None


def _http_failure(exc: Exception) -> Failure | None:
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        response = exc.response
        return Failure(
            f"{response.request.method} {response.url} answered HTTP {response.status_code}: "
            f"{_first_line(response.text, 200)}",
            "check the server's log and that the URL points at a Watchkeeper server",
        )
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        url = exc.request.url if exc.request is not None else "the server"
        reason = "timed out" if isinstance(exc, requests.Timeout) else "connection refused"
        return Failure(
            f"cannot reach {url} ({reason})",
            "check that the server is up (`watchkeeper serve` or `make run`) and the URL",
        )
    return None


def describe(exc: BaseException, settings: Settings | None, command: str) -> Failure:
    """The one line for ``exc``, raised by ``watchkeeper <command>``."""
    return _without_secrets(_classify(exc, settings, command), settings)


def _todo_for(exc: WatchkeeperError) -> str:
    """What to do after one of our own errors, unless its message already says."""
    if "run `" in exc.message:
        return ""
    if isinstance(exc, CannotListen):
        return exc.todo
    if isinstance(exc, ArtifactIntegrityError):
        return "restore the registry's files, roll back (`watchkeeper model rollback`) or retrain"
    if isinstance(exc, RegistryError):
        return "`watchkeeper model list` shows the versions; `watchkeeper train` registers one"
    if isinstance(exc, UnfittableData):
        return "check --target, --task and the rows the period bounds select"
    if isinstance(exc, ServiceUnavailable):
        return "check that the database is up and WATCHKEEPER_DATABASE_URL is right"
    return DEBUG_HINT


def _classify(exc: BaseException, settings: Settings | None, command: str) -> Failure:
    if isinstance(exc, KeyboardInterrupt):
        return Failure(f"{command} interrupted", "run it again to finish", exit_code=130)
    if isinstance(exc, CommandFailed):
        return Failure(exc.what, exc.todo)
    if isinstance(exc, WatchkeeperError):
        return Failure(_first_line(exc.message), _todo_for(exc))
    if not isinstance(exc, Exception):  # SystemExit and the like are not failures to word
        raise exc
    failure = _database_failure(exc, settings) if settings is not None else None
    failure = failure or _http_failure(exc)
    if failure is not None:
        return failure
    if isinstance(exc, OSError) and _is_network_error(exc):
        return Failure(
            f"{command} failed: {exc.strerror or _first_line(exc)}",
            "check the host and port settings (WATCHKEEPER_*HOST, WATCHKEEPER_*PORT) and "
            f"the network; {DEBUG_HINT}",
        )
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return Failure(
            f"{exc.strerror or _first_line(exc)}{where}",
            "check the path and its permissions (WATCHKEEPER_DATA_DIR and the *_DIR settings)",
        )
    return Failure(f"{command} failed: {type(exc).__name__}: {_first_line(exc)}", DEBUG_HINT)


# Errors of sockets, not of files: the path hint would send the user the wrong way.
_NETWORK_ERRNOS = {
    errno.EADDRINUSE,
    errno.EADDRNOTAVAIL,
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ETIMEDOUT,
}


def _is_network_error(exc: OSError) -> bool:
    return isinstance(exc, socket.gaierror | socket.herror) or exc.errno in _NETWORK_ERRNOS


def _without_secrets(failure: Failure, settings: Settings | None) -> Failure:
    """Messages of third-party errors can quote a URL with its password."""
    if settings is None:
        return failure
    from sqlalchemy.engine import make_url

    url = settings.storage.database_url
    try:
        password = make_url(url).password
        shown = redact_url(url)
    except Exception:  # unparseable: the password cannot be found in it, so hide it all
        password, shown = None, "WATCHKEEPER_DATABASE_URL"
    what = failure.what.replace(url, shown)
    if password:
        what = what.replace(str(password), "***")
    return Failure(what, failure.todo, failure.exit_code)
