"""Grafana JSON building blocks: panels (with unit, description and threshold lines),
rows, template variables, layout. The dashboards themselves are in
:mod:`watchkeeper.grafana.dashboards`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GrafanaJson = dict[str, Any]
"""A piece of a dashboard's JSON model (a panel, a target, a variable, a threshold step):
free-form JSON in Grafana's schema, built here and written as is, deliberately not a
record of ours."""

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
REFS = "ABCDEFGH"


@dataclass(frozen=True)
class Threshold:
    """A threshold line at ``value``; ``low_is_bad`` for p-values and the like."""

    value: float
    low_is_bad: bool = False

    def steps(self) -> list[GrafanaJson]:
        good, bad = ("red", "green") if self.low_is_bad else ("green", "red")
        return [{"color": good, "value": None}, {"color": bad, "value": self.value}]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


def _target(query: Query, ref: str, instant: bool) -> GrafanaJson:
    return {
        "datasource": DATASOURCE,
        "expr": query.expr,
        "legendFormat": query.legend,
        "refId": ref,
        "instant": instant,
        "range": not instant,
    }


def panel(
    kind: str,
    title: str,
    queries: list[Query],
    *,
    unit: str,
    description: str,
    threshold: Threshold | None = None,
    width: int = 8,
    height: int = 8,
) -> GrafanaJson:
    instant = kind in ("stat", "table")
    defaults: GrafanaJson = {"unit": unit}
    if threshold is not None:
        defaults["thresholds"] = {"mode": "absolute", "steps": threshold.steps()}
        if kind == "timeseries":
            defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
        elif kind == "table":
            defaults["custom"] = {"cellOptions": {"type": "color-text"}}
    result: GrafanaJson = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [_target(q, REFS[i], instant) for i, q in enumerate(queries)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {},
        "gridPos": {"w": width, "h": height},
    }
    if kind == "table":
        result["transformations"] = [{"id": "labelsToFields", "options": {}}]
    return result


def timeseries(title: str, *queries: Query, **kw: Any) -> GrafanaJson:
    return panel("timeseries", title, list(queries), **kw)


def stat(title: str, query: Query, **kw: Any) -> GrafanaJson:
    kw.setdefault("width", 4)
    kw.setdefault("height", 4)
    return panel("stat", title, [query], **kw)


def up_stat(title: str, query: Query, description: str) -> GrafanaJson:
    """A yes/no stat of a component that should be up: red at No."""
    return stat(
        title,
        query,
        unit="bool_yes_no",
        threshold=Threshold(1, low_is_bad=True),
        description=description,
    )


def table(title: str, query: Query, **kw: Any) -> GrafanaJson:
    return panel("table", title, [query], **kw)


def row(title: str) -> GrafanaJson:
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "panels": [],
        "gridPos": {"w": 24, "h": 1},
    }


def layout(panels: list[GrafanaJson]) -> list[GrafanaJson]:
    """Place panels left to right, wrapping at Grafana's 24 columns; a row starts a
    new line. Ids are positions, so a panel's id (and the alerts' links to it) only
    moves when panels before it change."""
    x = y = row_height = 0
    for panel_id, item in enumerate(panels, 1):
        w, h = item["gridPos"]["w"], item["gridPos"]["h"]
        if x + w > 24 or (item["type"] == "row" and x > 0):
            x, y, row_height = 0, y + row_height, 0
        item["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        item["id"] = panel_id
        x += w
        row_height = max(row_height, h)
    return panels


def datasource_variable(uid: str) -> GrafanaJson:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"selected": True, "text": uid, "value": uid},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def query_variable(
    name: str, label: str, query: str, all_value: str, description: str
) -> GrafanaJson:
    """A multi-value variable from ``label_values``, "All" by default; ``all_value``
    is the regex "All" stands for."""
    return {
        "name": name,
        "label": label,
        "description": description,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-values"},
        "includeAll": True,
        "allValue": all_value,
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "hide": 0,
        "refresh": 2,
        "sort": 1,
        "regex": "",
        "options": [],
    }
