"""Alertmanager webhook notifications turned into retrain requests.

Alertmanager delivers at least once and re-sends a group on every
``repeat_interval``; the request's dedupe key is the group key plus the firing
alerts' fingerprints and start times, so the same episode queues one request however
often it is delivered, and a new episode (alerts that started again) queues another.
"""

from __future__ import annotations

import hashlib
from typing import Any

from watchkeeper.errors import BadRequest


def retrain_alerts(payload: Any, names: tuple[str, ...]) -> tuple[list[dict[str, Any]], str]:
    """The firing alerts that ask for a retrain, and the notification's dedupe key."""
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise BadRequest("expected an Alertmanager webhook payload with an 'alerts' array")
    wanted = set(names)
    firing = []
    for alert in payload["alerts"]:
        if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
            raise BadRequest("each alert needs a 'labels' object")
        if alert.get("status") == "firing" and alert["labels"].get("alertname") in wanted:
            firing.append(alert)
    identity = "|".join(
        sorted(f"{a.get('fingerprint', '')}@{a.get('startsAt', '')}" for a in firing)
    )
    key = hashlib.sha256(f"{payload.get('groupKey', '')}|{identity}".encode()).hexdigest()
    return firing, f"alertmanager:{key}"
