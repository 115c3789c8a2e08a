"""Create or update the Watchkeeper folder, Prometheus datasource and dashboards in a
running Grafana through its HTTP API (grafana-client). Safe to run again: existing
objects are updated in place, keyed by their fixed uids."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from watchkeeper.errors import WatchkeeperError
from watchkeeper.grafana.dashboards import (
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
    build,
)
from watchkeeper.grafana.panels import GrafanaJson

log = logging.getLogger(__name__)


class GrafanaError(WatchkeeperError):
    code = "grafana_error"


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

    api = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    try:
        folder = _upsert_folder(api, GrafanaClientError)
        source = _upsert_datasource(api, datasource(prometheus_url), GrafanaClientError)
        names = []
        for dashboard in build().values():
            api.dashboard.update_dashboard(
                {
                    "dashboard": {**dashboard, "id": None},
                    "folderUid": FOLDER_UID,
                    "overwrite": True,
                    "message": "provisioned by watchkeeper",
                }
            )
            names.append(dashboard["uid"])
    except GrafanaUnauthorizedError as exc:
        raise GrafanaError(
            f"Grafana at {url} refused the token (401): check WATCHKEEPER_GRAFANA_TOKEN"
        ) from exc
    except GrafanaClientError as exc:
        raise GrafanaError(f"Grafana at {url} refused a request: {exc}") from exc
    except GrafanaException as exc:
        raise GrafanaError(f"Grafana at {url} failed: {exc}") from exc
    except OSError as exc:
        raise GrafanaError(f"Grafana at {url} is unreachable: {exc}") from exc
    except Exception as exc:  # niquests raises its own connection errors
        if type(exc).__module__.startswith(("niquests", "urllib3")):
            raise GrafanaError(f"Grafana at {url} is unreachable: {exc}") from exc
        raise
    return ProvisionReport(folder=folder, datasource=source, dashboards=names)


def _upsert_folder(api: Any, client_error: type[Exception]) -> str:
    try:
        api.folder.get_folder(FOLDER_UID)
        api.folder.update_folder(FOLDER_UID, title=FOLDER_TITLE, overwrite=True)
        return "updated"
    except client_error as exc:
        if getattr(exc, "status_code", None) != 404:
            raise
    api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
    return "created"


def _upsert_datasource(api: Any, source: GrafanaJson, client_error: type[Exception]) -> str:
    try:
        api.datasource.get_datasource_by_uid(DATASOURCE_UID)
        api.datasource.update_datasource_by_uid(DATASOURCE_UID, source)
        return "updated"
    except client_error as exc:
        if getattr(exc, "status_code", None) != 404:
            raise
    api.datasource.create_datasource(source)
    return "created"
