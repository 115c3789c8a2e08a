"""``watchkeeper serve`` for real: gunicorn with two workers on a loopback port.

Metrics aggregate across workers (multiprocess mode), SIGTERM drains every worker's
queued log entries before the processes exit, requests rejected before the app get
the JSON error shape and are counted and logged, a body over the limit gets no
``100 Continue``, a later HTTP/1.x is answered as HTTP/1.1, and no control socket is
shared.
"""

from __future__ import annotations

import http.client
import json
import socket
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.ports import free_port
from tests.processes import Process, metric, query, sqlite_url

pytestmark = pytest.mark.integration


def test_request_count_is_exact_across_two_workers(
    start_watchkeeper: Callable[..., Process], replay_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    server = start_watchkeeper("serve", WATCHKEEPER_WORKERS="2")
    n = 240

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(
                lambda r: server.post("/predict", json={"features": r}).status_code,
                replay_records[:n],
            )
        )

    assert statuses == [200] * n
    text = server.get("/metrics").text
    assert (
        metric(
            text,
            "watchkeeper_http_requests_total",
            endpoint="/predict",
            method="POST",
            status="200",
        )
        == n
    )
    assert metric(text, "watchkeeper_predictions_total", model_version="v1") == n
    assert metric(text, "watchkeeper_http_request_duration_seconds_count", endpoint="/predict") == n
    worker_files = {
        p.name.rsplit("_", 1)[-1] for p in (tmp_path / "var" / "prometheus-multiproc").glob("*.db")
    }
    assert len(worker_files) >= 2, "both workers should have served requests"


def test_sigterm_drains_every_accepted_request_into_the_log(
    start_watchkeeper: Callable[..., Process], replay_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    # A long write interval keeps entries queued in the workers when SIGTERM lands.
    server = start_watchkeeper(
        "serve",
        WATCHKEEPER_WORKERS="2",
        WATCHKEEPER_LOG_WRITE_INTERVAL="5",
        WATCHKEEPER_LOG_BATCH_SIZE="100000",
    )
    n = 150

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(
            pool.map(lambda r: server.post("/predict", json={"features": r}), replay_records[:n])
        )
    accepted = {r.headers["X-Request-ID"] for r in responses if r.status_code == 200}
    assert len(accepted) == n
    assert server.stop() == 0

    url = sqlite_url(tmp_path / "var")
    logged = {row[0] for row in query(url, "SELECT request_id FROM requests")}
    (n_predictions,) = query(url, "SELECT count(*) FROM predictions")[0]
    assert logged == accepted
    assert n_predictions == n


@dataclass(frozen=True)
class Rejected:
    raw: bytes
    status: int
    code: str
    logged: bool
    # How the request is counted in watchkeeper_http_requests_total, and logged.
    endpoint: str = "/predict"
    method: str = "POST"
    metric_labels: tuple[str, str] = ("/predict", "POST")
    client_request_id: str = "client-id"


# An X-Request-ID sent twice reaches the app as one value, joined by gunicorn.
_TWO_IDS = b"X-Request-ID: again\r\n"


def _head(path: str = "/predict", method: str = "POST") -> bytes:
    # The client's X-Request-ID comes first, as in every case: it is logged with the
    # rejection whatever the rest of the head holds.
    return (
        f"{method} {path} HTTP/1.1\r\nX-Request-ID: client-id\r\nHost: test\r\n"
        "Content-Type: application/json\r\n"
    ).encode()


_HEAD = _head()
_CHUNKED = b"Transfer-Encoding: chunked\r\n\r\n"
REJECTED = {
    "header field too large": Rejected(
        _HEAD + b"X-Padding: " + b"a" * 9000 + b"\r\nContent-Length: 2\r\n\r\n{}",
        431,
        "request_header_fields_too_large",
        True,
    ),
    "bad content-length": Rejected(
        _HEAD + b"Content-Length: 12abc\r\n\r\n{}", 400, "bad_request", True
    ),
    # Paths the app serves as /predict and /feedback: logged as theirs (once counted
    # under the route, and not logged).
    "bad content-length on //predict": Rejected(
        _head("//predict") + b"Content-Length: 12abc\r\n\r\n{}", 400, "bad_request", True
    ),
    "bad content-length on /%70redict": Rejected(
        _head("/%70redict") + b"Content-Length: 12abc\r\n\r\n{}", 400, "bad_request", True
    ),
    "gzip under chunked on //feedback": Rejected(
        _head("//feedback") + b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        501,
        "not_implemented",
        True,
        endpoint="/feedback",
        metric_labels=("/feedback", "POST"),
    ),
    "X-Request-ID twice, bad content-length": Rejected(
        _HEAD + _TWO_IDS + b"Content-Length: 12abc\r\n\r\n{}",
        400,
        "bad_request",
        True,
        client_request_id="client-id,again",
    ),
    "invalid request line": Rejected(
        b"NOT AN HTTP REQUEST\r\n\r\n",
        400,
        "bad_request",
        False,
        metric_labels=("unmatched", "other"),
    ),
    "request line too long": Rejected(
        b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: test\r\n\r\n",
        414,
        "uri_too_long",
        False,
        metric_labels=("unmatched", "other"),
    ),
    # The path ends within the first 4 KiB: it names /predict, though the line is cut
    # there. Once counted as unmatched and not logged.
    "request line too long on /predict": Rejected(
        _head("/predict?q=" + "a" * 5000) + b"Content-Length: 2\r\n\r\n{}",
        414,
        "uri_too_long",
        True,
    ),
    # Once no answer until the read timeout (408), unlogged: the head never ended.
    "bare LF line endings": Rejected(
        _head().replace(b"\r\n", b"\n") + b"Content-Length: 2\n\n{}",
        400,
        "bad_request",
        True,
    ),
    # A major version other than 1 in an HTTP/1 request line (RFC 9110 15.6.6).
    "HTTP/2.0 request line": Rejected(
        _head().replace(b"HTTP/1.1", b"HTTP/2.0") + b"Content-Length: 2\r\n\r\n{}",
        505,
        "http_version_not_supported",
        True,
    ),
    # A method the route does not take is counted under the route, as the app counts
    # its 405s (once `unmatched`).
    "header field too large on GET /predict": Rejected(
        _head(method="GET") + b"X-Padding: " + b"a" * 9000 + b"\r\n\r\n",
        431,
        "request_header_fields_too_large",
        True,
        method="GET",
        metric_labels=("/predict", "GET"),
    ),
    "chunked body over the limit": Rejected(
        _HEAD
        + _CHUNKED
        + b"800\r\n"
        + b" " * 0x800
        + b"\r\n"
        + b"800\r\n"
        + b" " * 0x800
        + b"\r\n0\r\n\r\n",
        413,
        "payload_too_large",
        True,
    ),
    # Malformed chunked framing: once a 500 from the view (gunicorn's parser raised
    # while the app read the body), or a request thread waiting for a chunk.
    "chunk size not hexadecimal": Rejected(
        _HEAD + _CHUNKED + b"zz\r\n{}\r\n0\r\n\r\n", 400, "bad_request", True
    ),
    "negative chunk size on /feedback": Rejected(
        _head("/feedback") + _CHUNKED + b"-1\r\n{}\r\n0\r\n\r\n",
        400,
        "bad_request",
        True,
        endpoint="/feedback",
        metric_labels=("/feedback", "POST"),
    ),
    "chunk without its CRLF": Rejected(
        _HEAD + _CHUNKED + b"2\r\n{}XX0\r\n\r\n", 400, "bad_request", True
    ),
    "chunk size of 16 digits": Rejected(
        _HEAD + _CHUNKED + b"1000000000000000\r\n{}\r\n0\r\n\r\n",
        413,
        "payload_too_large",
        True,
    ),
    "gzip under chunked": Rejected(
        _HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        501,
        "not_implemented",
        True,
    ),
    # A trailer the framer passes and gunicorn's parser refuses as the view reads
    # the body: a 400 from the app, once a 500.
    "trailer gunicorn refuses": Rejected(
        _HEAD + _CHUNKED + b"2\r\n{}\r\n0\r\nBad Name: x\r\n\r\n", 400, "bad_request", True
    ),
    # The same trailer on a body the view refuses unread: only the log reads it.
    "trailer gunicorn refuses, body unread": Rejected(
        _HEAD.replace(b"application/json", b"text/csv")
        + _CHUNKED
        + b"2\r\n{}\r\n0\r\nBad Name: x\r\n\r\n",
        415,
        "unsupported_media_type",
        True,
    ),
    # gunicorn takes methods of up to 32 characters; longer ones are logged too, cut
    # to the column's width, and counted under the route as method "other".
    "method over 32 characters": Rejected(
        _head(method="X" * 40) + b"Content-Length: 2\r\n\r\n{}",
        400,
        "bad_request",
        True,
        method="X" * 8,
        metric_labels=("/predict", "other"),
    ),
}


def _exchange(server: Process, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def test_requests_gunicorn_rejects_get_the_json_error_shape_and_are_counted_and_logged(
    start_watchkeeper: Callable[..., Process], tmp_path: Path
) -> None:
    # A read timeout well within the client's: a head that never ends times out as 408.
    server = start_watchkeeper(
        "serve", WATCHKEEPER_MAX_REQUEST_BYTES="3000", WATCHKEEPER_REQUEST_READ_TIMEOUT="10"
    )
    request_ids = {}
    for name, case in REJECTED.items():
        status, headers, body = _exchange(server, case.raw)
        assert (status, headers["content-type"]) == (case.status, "application/json"), name
        document = json.loads(body)
        assert document["error"]["code"] == case.code, name
        assert document["error"]["message"], name
        assert document["request_id"] == headers["x-request-id"], name
        assert uuid.UUID(hex=document["request_id"]).version == 7, name  # time-ordered
        request_ids[document["request_id"]] = case
    # The same two fields on a request the app refuses: logged as the worker logs them.
    status, headers, _ = _exchange(server, _HEAD + _TWO_IDS + b"Content-Length: 2\r\n\r\n[]")
    assert status == 400
    app_refused = headers["x-request-id"]

    text = server.get("/metrics").text
    counted = Counter((*case.metric_labels, case.status) for case in REJECTED.values())
    counted["/predict", "POST", 400] += 1  # the app's refusal
    for (endpoint, method, status), n in counted.items():
        labels = {"endpoint": endpoint, "method": method, "status": str(status)}
        assert metric(text, "watchkeeper_http_requests_total", **labels) == n, labels

    assert server.stop() == 0
    rows = query(
        sqlite_url(tmp_path / "var"),
        "SELECT request_id, endpoint, method, status_code, error, client_request_id FROM requests",
    )
    logged = {row.request_id: row for row in rows}
    assert logged.pop(app_refused).client_request_id == "client-id,again"
    expected = {request_id for request_id, case in request_ids.items() if case.logged}
    assert set(logged) == expected
    for request_id in expected:
        row, case = logged[request_id], request_ids[request_id]
        assert (row.endpoint, row.method, row.status_code) == (
            case.endpoint,
            case.method,
            case.status,
        )
        assert json.loads(row.error)["code"] == case.code
        assert row.client_request_id == case.client_request_id


def _connect(server: Process) -> socket.socket:
    address = urlsplit(server.url)
    return socket.create_connection((address.hostname, address.port), timeout=30)


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while data := sock.recv(65536):
        received += data
    return received


def _heads(received: bytes) -> list[list[bytes]]:
    """The status line and header lines of each response in ``received``, interim
    ones included (http.client skips those)."""
    heads = []
    while received:
        head, _, received = received.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        heads.append(lines)
        length = [
            int(line.split(b":")[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        ]
        received = received[length[0] if length else 0 :]
    return heads


def test_expect_continue_with_a_body_over_the_limit_gets_413_at_once_without_100(
    start_watchkeeper: Callable[..., Process], tmp_path: Path
) -> None:
    """A client that waits for ``100 Continue`` before sending a body the server will not
    take is answered 413 at once (RFC 9110 10.1.1); the 100 once invited the body."""
    server = start_watchkeeper(
        "serve", WATCHKEEPER_WORKERS="1", WATCHKEEPER_MAX_REQUEST_BYTES="3000"
    )
    with _connect(server) as sock:
        sock.sendall(_head() + b"Expect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
        [response] = _heads(_until_closed(sock))

    assert response[0] == b"HTTP/1.1 413 REQUEST ENTITY TOO LARGE"
    assert b"Connection: close" in response  # it is closed: the body was not read

    # Within the limit, the 100 comes once, before the body is sent.
    body = b'{"id": "x", "actual": 1}'
    with _connect(server) as sock:
        sock.sendall(
            _head("/feedback")
            + b"Expect: 100-continue\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        assert sock.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        responses = _heads(_until_closed(sock))
    assert [r[0] for r in responses] == [b"HTTP/1.1 200 OK"]


def test_a_request_of_a_later_http_1_minor_version_is_answered_as_http_1_1(
    start_watchkeeper: Callable[..., Process], replay_records: list[dict[str, Any]]
) -> None:
    """HTTP/1.2 is processed as HTTP/1.1, the highest 1.x the server conforms to, and
    answered as such (RFC 9110 2.5 and 6.2); gunicorn once echoed the request's 1.2."""
    server = start_watchkeeper("serve", WATCHKEEPER_WORKERS="1")
    body = json.dumps({"features": replay_records[0]}).encode()
    for request in (
        b"GET /healthz HTTP/1.2\r\nHost: test\r\nConnection: close\r\n\r\n",
        _head().replace(b"HTTP/1.1", b"HTTP/1.2")
        + f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body,
    ):
        with _connect(server) as sock:
            sock.sendall(request)
            [response] = _heads(_until_closed(sock))
        assert response[0] == b"HTTP/1.1 200 OK", request[:30]


def test_a_server_on_an_ipv6_host_listens_and_says_where_in_a_url(
    start_watchkeeper: Callable[..., Process],
) -> None:
    """WATCHKEEPER_HOST=::1 printed `serving on http://::1:PORT` (no URL) and gunicorn,
    bound to `::1:PORT`, exited: "'' is not a valid port number"."""
    server = start_watchkeeper("serve", WATCHKEEPER_HOST="::1")

    assert server.url.startswith("http://[::1]:")
    assert server.get("/healthz").status_code == 200
    assert f"serving on {server.url} with " in server.log_path.read_text()


def test_no_control_socket_is_shared_between_instances(
    start_watchkeeper: Callable[..., Process], tmp_path: Path
) -> None:
    # gunicorn's default control socket is one path per user: $XDG_RUNTIME_DIR/gunicorn.ctl
    # or ~/.gunicorn/gunicorn.ctl.
    runtime_dir, home = tmp_path / "run", tmp_path / "home"
    runtime_dir.mkdir()
    home.mkdir()
    servers = [
        start_watchkeeper(
            "serve",
            XDG_RUNTIME_DIR=str(runtime_dir),
            HOME=str(home),
            WATCHKEEPER_DATA_DIR=str(tmp_path / f"var-{i}"),  # one server per data dir
        )
        for i in range(2)
    ]
    for server in servers:
        assert server.get("/healthz").status_code == 200
    assert [p for p in (*runtime_dir.rglob("*"), *home.rglob("*")) if p.is_socket()] == []


def test_a_second_server_on_the_same_data_directory_is_refused_and_the_first_keeps_its_metrics(
    start_watchkeeper: Callable[..., Process],
    replay_records: list[dict[str, Any]],
    registry_dir: Path,
    tmp_path: Path,
) -> None:
    """Both would share one Prometheus multiprocess directory, which a server empties
    as it starts: the first one's counters would drop to zero under Prometheus."""
    first = start_watchkeeper("serve", WATCHKEEPER_WORKERS="1")
    assert first.post("/predict", json={"features": replay_records[0]}).status_code == 200
    port = free_port()
    second = Process(
        ["serve"],
        {
            "WATCHKEEPER_DATA_DIR": str(tmp_path / "var"),
            "WATCHKEEPER_REGISTRY_PATH": str(registry_dir),
            "WATCHKEEPER_PORT": str(port),
            # how long it waits for the first one's workers to exit, + 10 s
            "WATCHKEEPER_GRACEFUL_TIMEOUT": "1",
        },
        tmp_path / "second-serve.log",
        f"http://127.0.0.1:{port}",
    )
    try:
        status = second.process.wait(timeout=60)
    finally:
        second.kill()

    output = second.log_path.read_text()
    assert status != 0, output
    assert "prometheus-multiproc" in output and "another" in output, output
    assert "Traceback" not in output, output
    counted = metric(
        first.get("/metrics").text,
        "watchkeeper_http_requests_total",
        endpoint="/predict",
        method="POST",
        status="200",
    )
    assert counted == 1
