"""Admin endpoints and the Alertmanager webhook: bearer-token auth, requests queued
(never run in the request), one job for repeated or concurrent triggers, rollback."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask

from serving.alerts import MAX_EVIDENCE_ALERTS
from serving.services import services
from tests.bad_versions import point_current, rewrite_metadata
from tests.processes import metric
from watchkeeper import retrain_queue
from watchkeeper.current_pointer import CURRENT_FILE
from watchkeeper.db.engine import create_engine
from watchkeeper.registry import ModelRegistry
from watchkeeper.retrain_queue import RetrainRequest
from watchkeeper.version_metadata import VersionNotes

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def admin_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(admin_token=TOKEN)


def _queued(app: Flask) -> list[RetrainRequest]:
    engine = create_engine(services(app).settings.storage.database_url)
    rows = retrain_queue.pending(engine)
    engine.dispose()
    return rows


def _alert(name: str, status: str = "firing", fingerprint: str = "abc") -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "severity": "warning"},
        "annotations": {"summary": "s"},
        "startsAt": "2026-11-29T01:00:00Z",
        "fingerprint": fingerprint,
    }


def _notification(*alerts: dict[str, Any], group: str = '{}:{alertname="X"}') -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": group,
        "status": "firing",
        "receiver": "retrain",
        "alerts": list(alerts),
    }


@pytest.mark.parametrize("path", ["/admin/retrain", "/admin/rollback", "/alerts"])
@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 403), ({"Authorization": "Basic eA=="}, 401)],
    ids=["missing", "wrong", "not-bearer"],
)
def test_admin_endpoints_refuse_without_the_right_token_and_start_nothing(
    admin_app: Flask, path: str, headers: dict[str, str], status: int
) -> None:
    response = admin_app.test_client().post(path, json=_notification(_alert("X")), headers=headers)

    assert response.status_code == status
    assert response.json["error"]["code"] in ("unauthorized", "forbidden")
    # a 401 says how to authenticate (RFC 9110 section 11.6.1)
    challenge = 'Bearer realm="watchkeeper"' if status == 401 else None
    assert response.headers.get("WWW-Authenticate") == challenge
    assert _queued(admin_app) == []
    assert ModelRegistry(services(admin_app).settings.storage.registry_path).versions() == ["v1"]


def test_admin_endpoints_are_disabled_without_a_configured_token(app: Flask) -> None:
    response = app.test_client().post("/admin/retrain", headers=AUTH)

    assert response.status_code == 403
    assert "WATCHKEEPER_ADMIN_TOKEN" in response.json["error"]["message"]


def test_manual_retrain_is_queued_not_run(admin_app: Flask) -> None:
    response = admin_app.test_client().post(
        "/admin/retrain", json={"reason": "new data"}, headers=AUTH
    )

    assert response.status_code == 202
    [queued] = _queued(admin_app)
    assert (queued.id, queued.trigger, queued.reason) == (
        response.json["request_id"],
        "manual",
        "new data",
    )


@pytest.mark.parametrize("path", ["/admin/retrain", "/admin/rollback", "/alerts"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_an_admin_body_not_declared_json_is_415_and_does_nothing(
    admin_app: Flask, path: str, content_type: str | None
) -> None:
    """These bodies were read as JSON whatever their ``Content-Type`` (202 queued),
    where every other endpoint that reads JSON refuses them."""
    body = orjson.dumps({"reason": "x", **_notification(_alert("X"))})
    headers = AUTH if content_type is None else {**AUTH, "Content-Type": content_type}

    response = admin_app.test_client().post(path, data=body, headers=headers)

    assert response.status_code == 415, response.json
    assert response.json["error"]["code"] == "unsupported_media_type"
    assert "application/json" in response.json["error"]["message"]
    assert _queued(admin_app) == []
    assert (
        ModelRegistry(services(admin_app).settings.storage.registry_path).current_version() == "v1"
    )


def test_an_admin_request_without_a_body_needs_no_content_type(admin_app: Flask) -> None:
    response = admin_app.test_client().post("/admin/retrain", headers=AUTH)

    assert response.status_code == 202, response.json
    [queued] = _queued(admin_app)
    assert queued.reason == "requested over HTTP"


def test_concurrent_manual_triggers_are_all_taken_by_the_next_job(admin_app: Flask) -> None:
    client = admin_app.test_client()
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(
            pool.map(lambda _: client.post("/admin/retrain", headers=AUTH).status_code, range(8))
        )
    assert statuses == [202] * 8

    engine = create_engine(services(admin_app).settings.storage.database_url)
    claimed = retrain_queue.claim(engine, run_id=1)  # what the next job takes
    assert len(claimed) == 8 and retrain_queue.pending(engine) == []
    engine.dispose()


def test_the_same_alertmanager_notification_twice_queues_one_request(admin_app: Flask) -> None:
    client = admin_app.test_client()
    body = _notification(
        _alert("WatchkeeperDatasetDriftSustained"), _alert("Other", fingerprint="o")
    )

    first = client.post("/alerts", json=body, headers=AUTH)
    again = client.post("/alerts", json=body, headers=AUTH)

    assert (first.status_code, first.json["status"]) == (202, "queued")
    assert (again.status_code, again.json["status"]) == (200, "duplicate")
    [queued] = _queued(admin_app)
    assert queued.trigger == "alertmanager"
    assert queued.reason == "alerts firing: WatchkeeperDatasetDriftSustained"


def test_a_new_episode_of_the_same_alert_queues_again(admin_app: Flask) -> None:
    client = admin_app.test_client()
    first = _alert("WatchkeeperAccuracyDegraded")
    later = {**first, "startsAt": "2026-11-30T09:00:00Z"}

    client.post("/alerts", json=_notification(first), headers=AUTH)
    client.post("/alerts", json=_notification(later), headers=AUTH)

    assert len(_queued(admin_app)) == 2


def test_two_alerts_without_fingerprints_are_told_apart_by_their_labels(
    admin_app: Flask,
) -> None:
    """A sender other than Alertmanager (a script, a test) sends no fingerprint nor
    startsAt: the second alert, about another feature, was answered `duplicate`."""
    client = admin_app.test_client()

    def bare(feature: str) -> dict[str, Any]:
        labels = {"alertname": "WatchkeeperDatasetDriftSustained", "feature": feature}
        return {"status": "firing", "labels": labels}

    first = client.post("/alerts", json={"alerts": [bare("Gr_Liv_Area")]}, headers=AUTH)
    other = client.post("/alerts", json={"alerts": [bare("Lot_Area")]}, headers=AUTH)
    again = client.post("/alerts", json={"alerts": [bare("Lot_Area")]}, headers=AUTH)

    assert [r.json["status"] for r in (first, other, again)] == ["queued", "queued", "duplicate"]
    assert len(_queued(admin_app)) == 2


def test_a_notification_of_many_alerts_keeps_a_bounded_evidence_saying_what_it_left_out(
    admin_app: Flask,
) -> None:
    """Every firing alert's labels were kept in the request's evidence, as many as the
    body limit let through (thousands)."""
    alerts = [
        _alert("WatchkeeperDatasetDriftSustained", fingerprint=f"f{i}")
        for i in range(MAX_EVIDENCE_ALERTS + 30)
    ]

    response = admin_app.test_client().post("/alerts", json=_notification(*alerts), headers=AUTH)

    assert response.status_code == 202, response.json
    [queued] = _queued(admin_app)
    assert len(queued.evidence["alerts"]) == MAX_EVIDENCE_ALERTS
    assert queued.evidence["alerts_left_out"] == 30


@pytest.mark.parametrize(
    "alerts",
    [[_alert("SomethingElse")], [_alert("WatchkeeperDatasetDriftSustained", status="resolved")]],
    ids=["not-configured", "resolved"],
)
def test_alerts_that_do_not_ask_for_retraining_are_acknowledged_and_ignored(
    admin_app: Flask, alerts: list[dict[str, Any]]
) -> None:
    response = admin_app.test_client().post("/alerts", json=_notification(*alerts), headers=AUTH)

    assert (response.status_code, response.json["status"]) == (200, "ignored")
    assert _queued(admin_app) == []


def test_an_alert_about_the_served_model_queues_a_request_naming_it(admin_app: Flask) -> None:
    alert = _alert("WatchkeeperDatasetDriftSustained")
    alert["labels"]["model_version"] = "v1"

    response = admin_app.test_client().post("/alerts", json=_notification(alert), headers=AUTH)

    assert (response.status_code, response.json["status"]) == (202, "queued")
    [queued] = _queued(admin_app)
    assert queued.model_version == "v1"  # it was left empty


def test_an_alert_that_outlived_its_model_retrains_nothing(admin_app: Flask) -> None:
    """v1's drift alert fired 30 minutes after v2 took over and queued a retrain of v2."""
    alert = _alert("WatchkeeperDatasetDriftSustained")
    alert["labels"]["model_version"] = "v0"  # not the served v1

    response = admin_app.test_client().post("/alerts", json=_notification(alert), headers=AUTH)

    assert (response.status_code, response.json["status"]) == (200, "ignored")
    assert response.json["reason"] == "the alerts are about model v0; v1 is served"
    assert _queued(admin_app) == []


def test_malformed_alert_payload_is_400(admin_app: Flask) -> None:
    response = admin_app.test_client().post("/alerts", json={"alerts": "nope"}, headers=AUTH)

    assert response.status_code == 400


@pytest.mark.parametrize("group_key", [b"1" + b"0" * 400, b"[1]", b"{}"])
def test_a_group_key_that_is_not_a_string_is_400_naming_it(
    admin_app: Flask, group_key: bytes
) -> None:
    """A 400-digit groupKey was kept as a Python int for the request's evidence, which
    the database's JSON encoder refused: a 500."""
    body = orjson.dumps(_notification(_alert("ModelDriftDetected"))).replace(
        b'"groupKey":"{}:{alertname=\\"X\\"}"', b'"groupKey":' + group_key
    )
    assert b'"groupKey":' + group_key in body

    response = admin_app.test_client().post(
        "/alerts", data=body, content_type="application/json", headers=AUTH
    )

    assert response.status_code == 400, response.json
    assert response.json["error"]["details"] == [
        {"field": "groupKey", "problem": "must be a string"}
    ]
    assert _queued(admin_app) == []


def test_rollback_moves_current_back_and_serving_follows(
    admin_app: Flask, trained: Any, record: dict[str, Any]
) -> None:
    registry = ModelRegistry(services(admin_app).settings.storage.registry_path)
    registry.register(trained)  # v2 becomes current
    client = admin_app.test_client()
    services(admin_app).model_store.refresh()
    assert client.post("/predict", json={"features": record}).json["model_version"] == "v2"

    response = client.post("/admin/rollback", headers=AUTH)

    assert response.json == {"previous": "v2", "current": "v1", "changed": True}
    assert registry.current_version() == "v1"
    assert client.post("/predict", json={"features": record}).json["model_version"] == "v1"
    refused = client.post("/admin/rollback", json={"version": "v9"}, headers=AUTH)
    assert refused.status_code == 409


def test_rollback_to_the_version_current_already_is_answered_as_no_change(
    admin_app: Flask,
) -> None:
    """It answered as a rollback, and a retraining job promoting meanwhile gave way to it
    (tests/retrain/test_promotion_race.py)."""
    response = admin_app.test_client().post("/admin/rollback", json={"version": "v1"}, headers=AUTH)

    assert response.status_code == 200, response.json
    assert response.json == {"previous": "v1", "current": "v1", "changed": False}


def test_rollback_over_http_refuses_a_rejected_version_unless_forced(
    admin_app: Flask, trained: Any
) -> None:
    registry = ModelRegistry(services(admin_app).settings.storage.registry_path)
    registry.register(
        trained, make_current=False, status="rejected", notes=VersionNotes(reason="worse MAE")
    )  # v2
    client = admin_app.test_client()

    refused = client.post("/admin/rollback", json={"version": "v2"}, headers=AUTH)

    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "rollback_refused"
    assert [d["field"] for d in refused.json["error"]["details"]] == ["version"]
    assert "rejected" in refused.json["error"]["message"]
    assert "worse MAE" in refused.json["error"]["message"]
    assert registry.current_version() == "v1"
    forced = client.post("/admin/rollback", json={"version": "v2", "force": True}, headers=AUTH)
    assert forced.json == {"previous": "v1", "current": "v2", "changed": True}
    assert registry.current_version() == "v2"


def test_an_app_started_on_an_unreadable_current_serves_degraded_until_a_rollback_repairs_it(
    make_app: Callable[..., Flask], registry_dir: Path, record: dict[str, Any]
) -> None:
    """A worker (re)started while CURRENT is not UTF-8 once failed to boot, taking
    gunicorn down with it; a rollback over HTTP answered 500."""
    (registry_dir / CURRENT_FILE).write_bytes(b"v\xff1\nmove 1 x\n")

    app = make_app(admin_token=TOKEN)
    client = app.test_client()

    assert client.post("/predict", json={"features": record}).json["model_version"] == "v1"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["status"] == "degraded"
    assert "CURRENT file is not UTF-8" in ready.json["checks"]["model"]["reload_error"]
    assert (
        metric(client.get("/metrics").text, "watchkeeper_model_reloads_total", outcome="failed")
        == 1
    )
    default = client.post("/admin/rollback", headers=AUTH)
    assert default.status_code == 409 and "name the version" in default.json["error"]["message"]

    repaired = client.post("/admin/rollback", json={"version": "v1"}, headers=AUTH)

    assert repaired.status_code == 200, repaired.json
    assert repaired.json == {"previous": None, "current": "v1", "changed": True}
    assert ModelRegistry(registry_dir).current_version() == "v1"
    assert client.get("/readyz").json["status"] == "ready"


def test_a_version_whose_schema_has_a_wrongly_typed_field_is_refused_and_the_old_one_serves(
    admin_app: Flask, registry_dir: Path, trained: Any, record: dict[str, Any]
) -> None:
    """A bound stored as the string "0" once loaded, then failed every /predict (500)."""
    version = ModelRegistry(registry_dir).register(trained, make_current=False)

    def string_bound(meta: dict[str, Any]) -> dict[str, Any]:
        [feature] = [f for f in meta["schema"]["features"] if f["name"] == "Gr_Liv_Area"]
        feature["minimum"] = "0"
        return meta

    rewrite_metadata(registry_dir, version, string_bound)
    client = admin_app.test_client()

    for force in (False, True):
        refused = client.post(
            "/admin/rollback", json={"version": version, "force": force}, headers=AUTH
        )
        assert refused.status_code == 409
        [detail] = refused.json["error"]["details"]
        assert detail["field"] == "version"
        assert "('Gr_Liv_Area'): minimum: Input should be a valid number" in detail["problem"]
    assert ModelRegistry(registry_dir).current_version() == "v1"
    assert client.post("/predict", json={"features": record}).status_code == 200

    point_current(registry_dir, version)  # by hand, past the rollback's checks
    services(admin_app).model_store.refresh()
    answer = client.post("/predict", json={"features": record})
    assert answer.status_code == 200 and answer.json["model_version"] == "v1"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"version": 3}, 400, "version"),
        ({"force": "yes"}, 400, "force"),
        ({"version": "v9"}, 409, "version"),
        ({"version": "v1\n"}, 409, "version"),
        ({"version": "v" + "1" * 300}, 409, "version"),
    ],
    ids=["version-a-number", "force-a-string", "unknown", "trailing-newline", "very-long"],
)
def test_a_bad_rollback_request_names_the_field_and_keeps_the_registry_path_out(
    admin_app: Flask, body: dict[str, Any], status: int, field: str
) -> None:
    response = admin_app.test_client().post("/admin/rollback", json=body, headers=AUTH)

    assert response.status_code == status
    [detail] = response.json["error"]["details"]
    assert detail["field"] == field
    root = str(services(admin_app).settings.storage.registry_path)
    assert root not in response.get_data(as_text=True)
    assert services(admin_app).model_store.registry.current_version() == "v1"
