"""Create or update the Watchkeeper folder, Prometheus datasource and dashboards in a
running Grafana through its HTTP API (grafana-client). Safe to run again: existing
objects are updated in place, keyed by their fixed uids.

Every answer must be what Grafana's API gives: JSON, never a redirect, each object with
the fields the call returns. Another application at the address answers 200 to
anything, and an authenticating proxy sends each write on to its login page, whose 200
would otherwise read as done."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from watchkeeper.errors import WatchkeeperError
from watchkeeper.grafana.dashboards import (
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
    build,
)
from watchkeeper.grafana.panels import GrafanaJson
from watchkeeper.settings import redact_url

if TYPE_CHECKING:
    import niquests

log = logging.getLogger(__name__)
URL_SETTING = "WATCHKEEPER_GRAFANA_URL"
_SHOWN_BYTES = 80  # of an answer that is not Grafana's, in the one-line error


class GrafanaError(WatchkeeperError):
    code = "grafana_error"


class _Answers:
    """Checks Grafana's answers, naming the server in each error (password masked)."""

    def __init__(self, url: str) -> None:
        self.where = redact_url(url)

    def not_grafana(self, call: str, answer: str) -> GrafanaError:
        return GrafanaError(
            f"Grafana at {self.where} answered {call} with {answer}: not Grafana's HTTP API; "
            f"check that {URL_SETTING} is Grafana's own address"
        )

    def check_response(self, response: niquests.Response, **_: Any) -> None:
        """A response hook: raises before grafana-client follows a redirect or reads an
        answer that is not JSON (it returns a ``text/*`` body as a string)."""
        request = response.request
        call = f"{request.method} {urlsplit(request.url or '').path}"
        status = response.status_code or 0
        if 300 <= status < 400:
            location = response.headers.get("Location") or "nowhere"
            response.close()  # its connection: no one reads this answer further
            raise self.not_grafana(call, f"a redirect ({status}) to {location}")
        if status == 204:
            return
        content = response.content or b""
        try:
            json.loads(content)
        except ValueError:
            kind = response.headers.get("Content-Type") or "no Content-Type"
            shown = content[:_SHOWN_BYTES].decode("utf-8", "replace")
            response.close()
            raise self.not_grafana(call, f"{status} {kind} {shown!r}") from None

    def expect(self, answer: Any, call: str, *fields: str) -> dict[str, Any]:
        """``answer`` if it is a JSON object holding ``fields``."""
        missing = [f for f in fields if not isinstance(answer, dict) or f not in answer]
        if missing:
            shown = json.dumps(answer)[:_SHOWN_BYTES]
            raise self.not_grafana(call, f"{shown} without {', '.join(map(repr, missing))}")
        return answer  # type: ignore[no-any-return]


def _token_auth(token: str, answers: _Answers) -> niquests.auth.AuthBase:
    import niquests

    class TokenAndAnswers(niquests.auth.AuthBase):
        """grafana-client's bearer token, and the check of each answer."""

        def __call__(self, request: niquests.PreparedRequest) -> niquests.PreparedRequest:
            request.headers["Authorization"] = f"Bearer {token}"
            request.register_hook("response", answers.check_response)
            return request

    return TokenAndAnswers()


@dataclass(frozen=True)
class ProvisionReport:
    folder: str
    datasource: str
    dashboards: list[str]


def datasource(prometheus_url: str) -> GrafanaJson:
    return {
        "uid": DATASOURCE_UID,
        "name": "Watchkeeper Prometheus",
        "type": "prometheus",
        "access": "proxy",
        "url": prometheus_url,
        "isDefault": False,
        "jsonData": {"httpMethod": "POST", "timeInterval": "15s"},
    }


def provision(
    url: str, token: str, prometheus_url: str, *, timeout: float = 10.0
) -> ProvisionReport:
    from grafana_client import GrafanaApi
    from grafana_client.client import (
        GrafanaClientError,
        GrafanaException,
        GrafanaUnauthorizedError,
    )

    answers = _Answers(url)
    where = answers.where
    api = GrafanaApi.from_url(url, credential=_token_auth(token, answers), timeout=timeout)
    try:
        folder = _upsert_folder(api, answers, GrafanaClientError)
        source = _upsert_datasource(api, answers, datasource(prometheus_url), GrafanaClientError)
        names = []
        for dashboard in build().values():
            saved = api.dashboard.update_dashboard(
                {
                    "dashboard": {**dashboard, "id": None},
                    "folderUid": FOLDER_UID,
                    "overwrite": True,
                    "message": "provisioned by watchkeeper",
                }
            )
            answers.expect(saved, "POST /api/dashboards/db", "uid", "version")
            names.append(dashboard["uid"])
    except GrafanaUnauthorizedError as exc:
        raise GrafanaError(
            f"Grafana at {where} refused the token (401): check WATCHKEEPER_GRAFANA_TOKEN"
        ) from exc
    except GrafanaClientError as exc:
        raise GrafanaError(f"Grafana at {where} refused a request: {exc}") from exc
    except GrafanaException as exc:
        raise GrafanaError(f"Grafana at {where} failed: {exc}") from exc
    except OSError as exc:
        raise GrafanaError(f"Grafana at {where} is unreachable: {_reason(exc)}") from exc
    except Exception as exc:  # niquests raises its own connection errors
        if type(exc).__module__.startswith(("niquests", "urllib3")):
            raise GrafanaError(f"Grafana at {where} is unreachable: {_reason(exc)}") from exc
        raise
    return ProvisionReport(folder=folder, datasource=source, dashboards=names)


def _reason(exc: BaseException) -> str:
    """Why a connection failed, as the system said it ("Connection refused", "Name or
    service not known"), found down the chain of errors an HTTP client wraps it in: the
    client's own text repeats its pool, the URL and an object's repr over 300
    characters; failing that, its first line, cut."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop(0)
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, OSError) and (error.strerror or _from_the_system(error)):
            return error.strerror or str(error).splitlines()[0]
        reason = getattr(error, "reason", None)  # urllib3's MaxRetryError keeps it here
        pending += [reason if isinstance(reason, BaseException) else None]
        pending += [error.__cause__, error.__context__]
        pending += [a for a in error.args if isinstance(a, BaseException)]
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 120 else f"{text[:119]}…"


def _from_the_system(error: OSError) -> bool:
    """An error the socket layer raised itself (a name that does not resolve, a timeout),
    whose text is the system's, unlike an HTTP client's own ``OSError`` subclasses."""
    return type(error).__module__ in ("socket", "builtins") and bool(str(error))


def _upsert_folder(api: Any, answers: _Answers, client_error: type[Exception]) -> str:
    path = f"/api/folders/{FOLDER_UID}"
    try:
        answers.expect(api.folder.get_folder(FOLDER_UID), f"GET {path}", "uid")
        updated = api.folder.update_folder(FOLDER_UID, title=FOLDER_TITLE, overwrite=True)
        answers.expect(updated, f"PUT {path}", "uid")
        return "updated"
    except client_error as exc:
        if getattr(exc, "status_code", None) != 404:
            raise
    created = api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
    answers.expect(created, "POST /api/folders", "uid")
    return "created"


def _upsert_datasource(
    api: Any, answers: _Answers, source: GrafanaJson, client_error: type[Exception]
) -> str:
    path = f"/api/datasources/uid/{DATASOURCE_UID}"
    try:
        found = api.datasource.get_datasource_by_uid(DATASOURCE_UID)
        answers.expect(found, f"GET {path}", "uid")
        updated = api.datasource.update_datasource_by_uid(DATASOURCE_UID, source)
        answers.expect(updated, f"PUT {path}", "message")
        return "updated"
    except client_error as exc:
        if getattr(exc, "status_code", None) != 404:
            raise
    created = api.datasource.create_datasource(source)
    answers.expect(created, "POST /api/datasources", "message")
    return "created"
