"""The notification sink: one readable line per alert state change, from the body
Alertmanager really posts (payload version 4), over real HTTP."""

from __future__ import annotations

import gzip
import io
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from serving.api_models import ErrorBody
from tests.ports import free_port
from watchkeeper.notification_sink import Notification, NotificationLog, make_server

FIRING = {
    "status": "firing",
    "labels": {
        "alertname": "WatchkeeperDatasetDriftSustained",
        "severity": "warning",
        "model_version": "v1",
        "instance": "127.0.0.1:8001",
        "job": "watchkeeper-monitor",
    },
    "annotations": {
        "summary": "Dataset drift on model v1 for 30 minutes",
        "description": "Every monitor window of the last 30 minutes differs.",
        "runbook_url": "docs/runbook.md#dataset-drift-sustained",
    },
    "startsAt": "2026-11-29T11:46:21.307Z",
    "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "http://127.0.0.1:9090/graph",
    "fingerprint": "f4dba00c57d7a622",
}


def body(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="WatchkeeperDatasetDriftSustained"}',
        "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": "people",
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": list(alerts),
    }


def resolved(alert: dict[str, Any]) -> dict[str, Any]:
    return {**alert, "status": "resolved", "endsAt": "2026-11-29T12:20:00Z"}


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[str, Path, io.StringIO]]:
    path, echo = tmp_path / "notifications.log", io.StringIO()
    server = make_server("127.0.0.1", free_port(), "/notify", NotificationLog(path, "/repo", echo))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", path, echo
    server.shutdown()
    server.server_close()


def test_each_state_change_is_one_readable_line(sink: tuple[str, Path, io.StringIO]) -> None:
    url, path, echo = sink
    other = {**FIRING, "fingerprint": "aa", "labels": {**FIRING["labels"], "model_version": "v2"}}
    for alerts in ([FIRING], [FIRING, other], [resolved(FIRING), other]):
        assert requests.post(f"{url}/notify", json=body(*alerts), timeout=10).status_code == 200
    assert path.read_text().splitlines() == [
        "2026-11-29T11:46:21Z FIRING WatchkeeperDatasetDriftSustained severity=warning "
        "model_version=v1: Dataset drift on model v1 for 30 minutes "
        "| runbook: /repo/docs/runbook.md#dataset-drift-sustained",
        "2026-11-29T11:46:21Z FIRING WatchkeeperDatasetDriftSustained severity=warning "
        "model_version=v2: Dataset drift on model v1 for 30 minutes "
        "| runbook: /repo/docs/runbook.md#dataset-drift-sustained",
        "2026-11-29T12:20:00Z RESOLVED WatchkeeperDatasetDriftSustained severity=warning "
        "model_version=v1: Dataset drift on model v1 for 30 minutes "
        "| runbook: /repo/docs/runbook.md#dataset-drift-sustained",
    ]
    assert echo.getvalue().splitlines() == [
        f"notification: {x}" for x in path.read_text().splitlines()
    ]


def test_a_refiring_alert_is_a_new_line(tmp_path: Path) -> None:
    log = NotificationLog(tmp_path / "n.log")
    again = {**FIRING, "startsAt": "2026-11-29T13:00:00Z"}
    for alerts in ([FIRING], [resolved(FIRING)], [again], [again]):
        log.record(Notification.model_validate(body(*alerts)))
    states = [line.split()[1] for line in (tmp_path / "n.log").read_text().splitlines()]
    assert states == ["FIRING", "RESOLVED", "FIRING"]


def test_absolute_runbook_links_and_missing_annotations_read_well(tmp_path: Path) -> None:
    log = NotificationLog(tmp_path / "n.log", "/repo")
    bare = {
        "status": "firing",
        "labels": {"alertname": "Custom"},
        "startsAt": "2026-11-29T11:00:00Z",
    }
    linked = {
        **FIRING,
        "annotations": {"summary": "s", "runbook_url": "https://runbooks.example/drift"},
    }
    lines = log.record(Notification.model_validate(body(bare, linked)))
    assert lines == [
        "2026-11-29T11:00:00Z FIRING Custom severity=none: (no summary)",
        "2026-11-29T11:46:21Z FIRING WatchkeeperDatasetDriftSustained severity=warning "
        "model_version=v1: s | runbook: https://runbooks.example/drift",
    ]


def test_what_is_not_a_notification_is_refused(sink: tuple[str, Path, io.StringIO]) -> None:
    url, path, _ = sink
    assert requests.post(f"{url}/notify", data=b"{}", timeout=10).status_code == 400
    assert requests.post(f"{url}/elsewhere", json=body(FIRING), timeout=10).status_code == 404
    assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
    assert not path.exists()


def test_a_notification_the_log_could_not_take_is_written_when_it_is_sent_again(
    sink: tuple[str, Path, io.StringIO],
) -> None:
    """With notifications.log unwritable the alert was marked seen all the same, the
    connection closed without an answer, and Alertmanager's retry got `written: 0`: the
    alert never had its line. A directory in the file's place stands in for a read-only
    file or a full disk (root ignores mode bits)."""
    url, path, _ = sink
    other = {**FIRING, "fingerprint": "aa", "labels": {**FIRING["labels"], "model_version": "v2"}}
    path.mkdir()
    refused = requests.post(f"{url}/notify", json=body(FIRING, other), timeout=10)
    assert refused.status_code == 500  # a 5xx: Alertmanager sends the notification again
    assert refused.json()["error"]["code"] == "notification_log_unwritable"
    assert str(path) in refused.json()["error"]["message"]

    path.rmdir()
    again = requests.post(f"{url}/notify", json=body(FIRING, other), timeout=10)
    repeat = requests.post(f"{url}/notify", json=body(FIRING, other), timeout=10)

    assert (again.json(), repeat.json()) == ({"written": 2}, {"written": 0})
    assert [line.split()[4] for line in path.read_text().splitlines()] == [
        "model_version=v1:",
        "model_version=v2:",
    ]


def test_an_alert_whose_time_has_no_utc_equivalent_is_written_with_the_others(
    sink: tuple[str, Path, io.StringIO],
) -> None:
    """9999-12-31T23:59:59-23:59 is past the last UTC time: formatting it raised, and
    the valid alerts sent with it were never written."""
    url, path, _ = sink
    edge = {
        "status": "firing",
        "labels": {"alertname": "Odd"},
        "startsAt": "9999-12-31T23:59:59-23:59",
        "fingerprint": "edge",
    }
    answer = requests.post(f"{url}/notify", json=body(FIRING, edge), timeout=10)

    assert answer.json() == {"written": 2}
    lines = path.read_text().splitlines()
    assert lines[0].startswith("2026-11-29T11:46:21Z FIRING WatchkeeperDatasetDriftSustained")
    assert lines[1] == "9999-12-31T23:59:59-23:59 FIRING Odd severity=none: (no summary)"


def test_line_breaks_and_terminal_escapes_in_an_alert_are_written_escaped(
    sink: tuple[str, Path, io.StringIO],
) -> None:
    """A summary holding a newline wrote a forged second line (a false all-clear), and
    an escape sequence in a label reached the terminal raw (ESC[2J clears it)."""
    url, path, echo = sink
    forged = "\n2026-12-02T00:00:00Z RESOLVED WatchkeeperDatasetDriftSustained: all clear"
    alert = {
        **FIRING,
        "labels": {**FIRING["labels"], "feature": "Lot\x1b[2J\x1b[31mArea\r\u2028"},
        "annotations": {"summary": f"drift{forged}\x00\t\u202e", "runbook_url": "x\x85y"},
    }
    assert requests.post(f"{url}/notify", json=body(alert), timeout=10).status_code == 200

    (line,) = path.read_text(encoding="utf-8").splitlines()
    assert line == (
        "2026-11-29T11:46:21Z FIRING WatchkeeperDatasetDriftSustained severity=warning "
        r"feature=Lot\x1b[2J\x1b[31mArea\r\u2028 model_version=v1: "
        r"drift\n2026-12-02T00:00:00Z RESOLVED WatchkeeperDatasetDriftSustained: all clear"
        r"\x00\t\u202e | runbook: /repo/x\x85y"
    )
    assert echo.getvalue() == f"notification: {line}\n"


def _raw_post(url: str, content_length: bytes, payload: bytes = b"{}") -> bytes:
    """What the sink answers a POST whose Content-Length header is ``content_length``."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(
            b"POST /notify HTTP/1.1\r\nHost: x\r\nContent-Length: "
            + content_length
            + b"\r\n\r\n"
            + payload
        )
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


@pytest.mark.parametrize(
    ("content_length", "status", "message"),
    [
        (b"abc", b"400", b"Content-Length"),
        (b"-1", b"400", b"Content-Length"),
        (b"1_0", b"400", b"Content-Length"),
        (b"1000000000000", b"413", b"at most"),
    ],
)
def test_a_bad_or_huge_content_length_is_answered_at_once(
    sink: tuple[str, Path, io.StringIO], content_length: bytes, status: bytes, message: bytes
) -> None:
    """`abc` closed the connection without an answer (a traceback in the terminal), -1
    held the handler thread until the client went away, and any length was read."""
    url, path, _ = sink
    answer = _raw_post(url, content_length)

    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == status
    error = json.loads(payload)["error"]
    assert message.decode() in error["message"] and error["code"]
    assert not path.exists()


def test_a_refused_body_is_answered_in_one_line_naming_its_fields(
    sink: tuple[str, Path, io.StringIO],
) -> None:
    """The 400 carried pydantic's text: several lines and a link to its documentation."""
    url, _, _ = sink
    refused = requests.post(f"{url}/notify", json={"status": "firing"}, timeout=10)
    unparsable = requests.post(f"{url}/notify", data=b"{", timeout=10)

    assert refused.status_code == unparsable.status_code == 400
    assert refused.json() == {
        "error": {
            "code": "bad_request",
            "message": "not an Alertmanager notification",
            "details": [{"field": "alerts", "problem": "Field required"}],
        }
    }
    (problem,) = unparsable.json()["error"]["details"]
    assert problem["field"] == "body" and "\n" not in problem["problem"]
    assert "pydantic.dev" not in refused.text + unparsable.text


def test_errors_are_answered_in_the_apis_error_shape(sink: tuple[str, Path, io.StringIO]) -> None:
    """The sink answered `{"code", "message"}` at the top level, where the API answers
    `{"error": {"code", "message", "details"}}`: one reader could not read both."""
    url, _, _ = sink
    answers = [
        requests.post(f"{url}/notify", data=b"{", timeout=10),
        requests.post(f"{url}/elsewhere", json=body(FIRING), timeout=10),
        requests.put(f"{url}/notify", timeout=10),
    ]
    for answer in answers:
        assert answer.headers["Content-Type"] == "application/json"
        ErrorBody.model_validate(answer.json()["error"])
        assert set(answer.json()) == {"error"}


@pytest.mark.parametrize(
    ("method", "where", "allow"),
    [
        ("PUT", "/notify", "POST"),
        ("DELETE", "/notify", "POST"),
        ("PATCH", "/notify", "POST"),
        ("OPTIONS", "/notify", "POST"),
        ("GET", "/notify", "POST"),
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/healthz", "GET, HEAD"),
    ],
)
def test_a_method_a_path_does_not_take_is_a_405_naming_those_it_does(
    sink: tuple[str, Path, io.StringIO], method: str, where: str, allow: str
) -> None:
    """PUT, DELETE, PATCH and OPTIONS were answered 501 with http.server's HTML page."""
    url, path, _ = sink
    answer = requests.request(method, f"{url}{where}", json=body(FIRING), timeout=10)

    assert answer.status_code == 405
    assert answer.headers["Allow"] == allow
    assert answer.json()["error"]["code"] == "method_not_allowed"
    assert method in answer.json()["error"]["message"]
    assert not path.exists()


def test_head_on_healthz_answers_as_get_does_without_a_body(
    sink: tuple[str, Path, io.StringIO],
) -> None:
    url, _, _ = sink
    head = requests.head(f"{url}/healthz", timeout=10)
    get = requests.get(f"{url}/healthz", timeout=10)

    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"]


def test_a_method_http_does_not_define_is_a_501_in_the_json_shape(
    sink: tuple[str, Path, io.StringIO],
) -> None:
    url, _, _ = sink
    answer = requests.request("BREW", f"{url}/notify", timeout=10)

    assert answer.status_code == 501
    assert answer.json()["error"]["code"] == "not_implemented"


def test_a_gzip_body_is_refused_not_read_as_text(sink: tuple[str, Path, io.StringIO]) -> None:
    """A gzip body was parsed as JSON as it was: a 400 "Invalid JSON" that blamed the
    notification. Alertmanager sends bodies unencoded; an encoded one is a 415 that
    says so, as the API answers it."""
    url, path, _ = sink
    answer = requests.post(
        f"{url}/notify",
        data=gzip.compress(json.dumps(body(FIRING)).encode()),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        timeout=10,
    )

    assert answer.status_code == 415
    assert answer.json()["error"]["code"] == "unsupported_media_type"
    assert "Content-Encoding 'gzip'" in answer.json()["error"]["message"]
    assert answer.headers["Accept-Encoding"] == "identity"
    assert not path.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("startsAt", 30000000000),  # read as milliseconds: 1970-12-14
        ("startsAt", 1764416781),  # read as seconds
        ("startsAt", 1764416781.5),
        ("startsAt", "1764416781"),  # a string of a number: the same guess
        ("endsAt", 1764416781000),
    ],
)
def test_a_number_for_an_alert_time_is_refused_naming_the_field(
    sink: tuple[str, Path, io.StringIO], field: str, value: object
) -> None:
    """A numeric `startsAt` was taken as a Unix time, in seconds or, above 2e10, in
    milliseconds: 30000000000 was written as 1970-12-14. Alertmanager sends RFC 3339
    times; a number's unit is a guess, so it is refused."""
    url, path, _ = sink
    answer = requests.post(
        f"{url}/notify", json=body({**resolved(FIRING), field: value}), timeout=10
    )

    assert answer.status_code == 400
    (problem,) = answer.json()["error"]["details"]
    assert problem["field"] == f"alerts.0.{field}"
    assert problem["problem"].startswith("must be an RFC 3339 time such as 2026-11-29T11:46:21Z")
    assert "not a number" in problem["problem"]
    assert not path.exists()


@pytest.mark.parametrize("value", ["2026-11-29T11:46:21", "2026-11-29 11:46:21.5"])
def test_an_alert_time_without_its_offset_is_refused_naming_the_field(
    sink: tuple[str, Path, io.StringIO], value: str
) -> None:
    """A time without an offset was taken as this host's local time: the line said a
    time the alert never fired at. RFC 3339, which Alertmanager writes, requires one."""
    url, path, _ = sink
    answer = requests.post(f"{url}/notify", json=body({**FIRING, "startsAt": value}), timeout=10)

    assert answer.status_code == 400
    (problem,) = answer.json()["error"]["details"]
    assert problem["field"] == "alerts.0.startsAt"
    assert "with its offset" in problem["problem"]
    assert not path.exists()
