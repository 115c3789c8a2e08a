"""Alertmanager webhook notifications turned into retrain requests.

Alertmanager delivers at least once and re-sends a group on every
``repeat_interval``; the request's dedupe key is the group key plus the firing
alerts' fingerprints and start times, so the same episode queues one request however
often it is delivered, and a new episode (alerts that started again) queues another.
An alert without a fingerprint (a sender other than Alertmanager) is told apart by its
labels, as Alertmanager's fingerprint is computed from them.

The request keeps the firing alerts' labels as evidence, at most
:data:`MAX_EVIDENCE_ALERTS` of them (a notification may carry thousands, up to the body
limit, and each request row kept them all); how many were left out is kept with them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from watchkeeper.errors import BadRequest, FieldProblem

MAX_EVIDENCE_ALERTS = 20
"""The firing alerts whose labels a request keeps as evidence: enough for a person to
see what fired (one group's alerts, each for a model version or a feature)."""


@dataclass(frozen=True)
class FiringAlert:
    """A firing alert that asks for a retrain: its labels (strings, checked)."""

    labels: dict[str, str]

    @property
    def name(self) -> str:
        return self.labels["alertname"]

    @property
    def model_version(self) -> str | None:
        """The version the alert is about, if its rules label it."""
        return self.labels.get("model_version") or None


@dataclass(frozen=True)
class RetrainAlerts:
    """What a notification asks of the retrain queue."""

    firing: tuple[FiringAlert, ...]
    dedupe_key: str
    """The group key with the firing alerts' fingerprints and start times."""
    group_key: str | None = None
    """Alertmanager's ``groupKey``, kept with the request as evidence."""

    def evidence(self) -> dict[str, Any]:
        """What the request keeps: the group key and the labels of the first
        :data:`MAX_EVIDENCE_ALERTS` firing alerts; ``alerts_left_out`` counts the rest."""
        kept = [a.labels for a in self.firing[:MAX_EVIDENCE_ALERTS]]
        evidence: dict[str, Any] = {"groupKey": self.group_key, "alerts": kept}
        if len(self.firing) > len(kept):
            evidence["alerts_left_out"] = len(self.firing) - len(kept)
        return evidence


def retrain_alerts(payload: Any, names: tuple[str, ...]) -> RetrainAlerts:
    """The firing alerts that ask for a retrain, and the notification's dedupe key."""
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise BadRequest(
            "body must be an Alertmanager webhook payload, an object with an 'alerts' array",
            details=[FieldProblem("alerts", "must be an array of alerts")],
        )
    wanted = set(names)
    firing = []
    problems = [
        problem for i, alert in enumerate(payload["alerts"]) for problem in _problems(i, alert)
    ]
    group = payload.get("groupKey")
    if group is not None and not isinstance(group, str):
        # stored as evidence: a number past a float's range was a 500 there
        problems.append(FieldProblem("groupKey", "must be a string"))
    if problems:
        raise BadRequest(
            f"not an Alertmanager alert: {', '.join(p.field for p in problems[:5])}",
            details=problems[:100],
        )
    for alert in payload["alerts"]:
        if alert.get("status") == "firing" and alert["labels"].get("alertname") in wanted:
            firing.append(alert)
    identity = "|".join(sorted(f"{_fingerprint(a)}@{a.get('startsAt', '')}" for a in firing))
    key = hashlib.sha256(f"{group or ''}|{identity}".encode()).hexdigest()
    alerts = tuple(FiringAlert(labels=a["labels"]) for a in firing)
    return RetrainAlerts(alerts, f"alertmanager:{key}", group)


def _fingerprint(alert: dict[str, Any]) -> str:
    """Alertmanager's fingerprint, or, without one, a digest of the labels: two alerts
    without fingerprints were one alert to the dedupe key, and the second never queued."""
    fingerprint = alert.get("fingerprint")
    if isinstance(fingerprint, str) and fingerprint:
        return fingerprint
    labels = json.dumps(alert["labels"], sort_keys=True)  # ASCII: any label text encodes
    return "labels:" + hashlib.sha256(labels.encode()).hexdigest()


def _problems(i: int, alert: Any) -> Iterator[FieldProblem]:
    """What makes ``alert`` unlike Alertmanager's: labels are an object of strings
    (a label of another type once reached the webhook's grouping and raised)."""
    if not isinstance(alert, dict):
        yield FieldProblem(f"alerts[{i}]", "must be an object")
    elif not isinstance(alert.get("labels"), dict):
        yield FieldProblem(f"alerts[{i}].labels", "must be an object of strings")
    else:
        for name, value in alert["labels"].items():
            if not isinstance(value, str):
                yield FieldProblem(f"alerts[{i}].labels.{name}", "must be a string")
