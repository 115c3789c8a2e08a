"""Slow and stalled clients against the real server (``watchkeeper serve``).

Every worker reads a request, headers and body, on its event loop before a request
thread sees it, so clients that connect and stall hold no thread: other clients are
answered meanwhile, and the stalled ones get a 408 in the JSON error shape (or, if
they sent nothing, are closed) once ``WATCHKEEPER_REQUEST_READ_TIMEOUT`` has passed.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.processes import Process, query, sqlite_url, wait_for

pytestmark = pytest.mark.integration

STALLED = 20
READ_TIMEOUT = 6.0
# What the issue asks of the other clients while the stalled ones hold connections.
ANSWER_WITHIN = 1.0


def _connect(server: Process) -> socket.socket:
    address = urlsplit(server.url)
    return socket.create_connection((address.hostname, address.port), timeout=60)


def _head(path: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


class _SharedFile:
    """A buffered reader that responses read in turn and none closes: each response on
    a kept-alive connection starts where the previous one ended in the buffer."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def close(self) -> None:
        pass


class _Pipelined:
    """A socket stand-in for ``http.client.HTTPResponse`` whose ``makefile`` is one
    shared reader: a reader per response reads ahead into the next response's bytes and
    drops them with itself."""

    def __init__(self, sock: socket.socket) -> None:
        self._file = _SharedFile(sock.makefile("rb"))

    def makefile(self, *args: Any, **kwargs: Any) -> Any:
        return self._file


def _read_response(
    sock: socket.socket | _Pipelined,
) -> tuple[int, dict[str, str], bytes] | None:
    """The response on ``sock``, or None if the server closed without one."""
    response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
    try:
        response.begin()
    except http.client.RemoteDisconnected:
        return None
    body = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


@contextmanager
def _stalled(server: Process, payload: bytes) -> Iterator[list[socket.socket]]:
    """``STALLED`` connections that each send ``payload`` and then nothing more."""
    sockets = [_connect(server) for _ in range(STALLED)]
    try:
        for sock in sockets:
            if payload:
                sock.sendall(payload)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def _assert_others_are_served(server: Process, record: dict[str, Any]) -> None:
    """``/healthz`` and ``/predict`` each answer within a second, several times over
    the stall (until half the read timeout has passed)."""
    rounds = 0
    until = time.monotonic() + READ_TIMEOUT / 2
    while rounds < 3 or time.monotonic() < until:
        health = _answered_within_a_second(partial(requests.get, f"{server.url}/healthz"))
        assert health.status_code == 200
        predicted = _answered_within_a_second(
            partial(requests.post, f"{server.url}/predict", json={"features": record})
        )
        assert predicted.status_code == 200, predicted.text
        rounds += 1


def _answered_within_a_second(send: Callable[..., requests.Response]) -> requests.Response:
    """The response to ``send``, sent up to three times, one of which must be answered
    within :data:`ANSWER_WITHIN`: on a shared machine, other tenants' load can hold one
    request past a second (seen once in a full run beside other servers), where denied
    service held every one for as long as the clients stalled (50 s and more)."""
    waits = []
    for _ in range(3):
        started = time.monotonic()
        try:
            response = send(timeout=ANSWER_WITHIN)
        except requests.Timeout:
            waits.append(time.monotonic() - started)
            continue
        if time.monotonic() - started < ANSWER_WITHIN:
            return response
        waits.append(time.monotonic() - started)
    raise AssertionError(f"no answer within {ANSWER_WITHIN} s in 3 tries: {waits}")


def _assert_timed_out_with_408(sock: socket.socket) -> None:
    response = _read_response(sock)
    assert response is not None, "a client that started a request gets a 408"
    status, headers, body = response
    assert status == 408
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    document = json.loads(body)
    assert document["error"]["code"] == "request_timeout"
    assert document["request_id"] == headers["x-request-id"]


# Two workers with four threads each: eight request threads in all.
SERVER = {"WATCHKEEPER_REQUEST_READ_TIMEOUT": str(READ_TIMEOUT), "WATCHKEEPER_WORKERS": "2"}


@pytest.fixture(scope="module")
def server(start_module_watchkeeper: Callable[..., Process]) -> Process:
    """One server for the tests that look only at their own clients' answers: each
    test's stalled clients are closed or timed out when it ends."""
    return start_module_watchkeeper("serve", **SERVER)


@pytest.fixture
def record(replay_records: list[dict[str, Any]]) -> dict[str, Any]:
    return replay_records[0]


def test_clients_stalled_mid_body_do_not_deny_service_and_get_a_logged_408(
    start_watchkeeper: Callable[..., Process], record: dict[str, Any], tmp_path: Path
) -> None:
    server = start_watchkeeper("serve", **SERVER)  # its own: the test counts its log's rows
    body = json.dumps({"features": record}).encode()
    with _stalled(server, _head("/predict", len(body)) + body[: len(body) // 2]) as sockets:
        _assert_others_are_served(server, record)
        for sock in sockets:
            _assert_timed_out_with_408(sock)

    assert server.stop() == 0
    rows = query(
        sqlite_url(tmp_path / "var"),
        "SELECT endpoint, method, error FROM requests WHERE status_code = 408",
    )
    assert len(rows) == STALLED
    assert {(endpoint, method) for endpoint, method, _ in rows} == {("/predict", "POST")}
    assert all(json.loads(error)["code"] == "request_timeout" for _, _, error in rows)


def test_clients_stalled_mid_body_of_a_zero_padded_length_do_not_deny_service(
    server: Process, record: dict[str, Any]
) -> None:
    """A Content-Length with leading zeros is a valid length: framed on the event loop
    like any other, not handed to a request thread to wait for the body in."""
    body = json.dumps({"features": record}).encode()
    head = (
        "POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body):025d}\r\n\r\n"
    ).encode()
    with _stalled(server, head + body[: len(body) // 2]) as sockets:
        _assert_others_are_served(server, record)
        for sock in sockets:
            _assert_timed_out_with_408(sock)


def test_clients_stalled_mid_headers_do_not_deny_service(
    server: Process, record: dict[str, Any]
) -> None:
    with _stalled(server, b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Le") as sockets:
        _assert_others_are_served(server, record)
        for sock in sockets:
            _assert_timed_out_with_408(sock)


@pytest.mark.parametrize(
    ("coding", "chunk", "status", "code"),
    [
        # 16 hex digits: once handed to a request thread, which waited for the chunk
        ("chunked", b"1000000000000000\r\n0123456789", 413, "payload_too_large"),
        # gunicorn takes this as chunked, in a request thread; nothing here decodes gzip
        ("gzip, chunked", b"10\r\n0123456789", 501, "not_implemented"),
    ],
    ids=["16-digit-chunk-size", "gzip-under-chunked"],
)
def test_clients_stalled_in_chunked_framing_the_server_refuses_are_answered_at_once(
    server: Process, record: dict[str, Any], coding: str, chunk: bytes, status: int, code: str
) -> None:
    head = (
        "POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Transfer-Encoding: {coding}\r\n\r\n"
    ).encode()
    with _stalled(server, head + chunk) as sockets:
        _assert_others_are_served(server, record)
        for sock in sockets:
            sock.settimeout(ANSWER_WITHIN)  # answered long ago, not at the read timeout
            response = _read_response(sock)
            assert response is not None
            assert response[0] == status
            assert json.loads(response[2])["error"]["code"] == code


def test_clients_that_connect_and_send_nothing_do_not_deny_service(
    server: Process, record: dict[str, Any]
) -> None:
    with _stalled(server, b"") as sockets:
        _assert_others_are_served(server, record)
        for sock in sockets:
            # Nothing was asked, so nothing is answered: the connection is closed.
            assert _read_response(sock) is None


def test_clients_that_never_close_after_their_answer_do_not_deny_service(
    server: Process, record: dict[str, Any]
) -> None:
    # After a "Connection: close" answer the server half-closes and drains what the
    # client still sends; a client that never closes its side must not hold it.
    body = json.dumps({"features": record}).encode()
    request = _head("/predict", len(body), "Connection: close\r\n") + body
    with _stalled(server, request) as sockets:
        _assert_others_are_served(server, record)
        for sock in sockets:
            response = _read_response(sock)
            assert response is not None
            assert response[0] == 200


def test_a_slow_but_steady_client_is_served(server: Process, record: dict[str, Any]) -> None:
    body = json.dumps({"features": record}).encode()
    request = _head("/predict", len(body)) + body
    with _connect(server) as sock:
        step = len(request) // 10 + 1
        for start in range(0, len(request), step):
            sock.sendall(request[start : start + step])
            time.sleep(0.05)  # the point of the test: a client that trickles its request
        response = _read_response(sock)
    assert response is not None
    assert response[0] == 200, response


def test_chunked_pipelined_and_expect_continue_requests_are_served(
    server: Process, record: dict[str, Any]
) -> None:
    body = json.dumps({"features": record}).encode()
    chunked = (
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(
            f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:100], body[100:])
        )
        + b"0\r\n\r\n"
    )
    plain = _head("/predict", len(body)) + body
    with _connect(server) as sock:
        # Two requests in one write (pipelined), then one after the other. Both answers
        # are read once both have arrived: the case where a reader per response lost the
        # second one in the first one's read-ahead buffer (a failure seen under load).
        sock.sendall(chunked + plain)
        assert wait_for(lambda: sock.recv(65536, socket.MSG_PEEK).count(b"HTTP/1.1 ") >= 2)
        pipelined = _Pipelined(sock)
        assert [_read_response(pipelined)[0] for _ in range(2)] == [200, 200]  # type: ignore[index]
        sock.sendall(plain)
        assert _read_response(pipelined)[0] == 200  # type: ignore[index]

    # A client that waits for "100 Continue" before sending its body gets it at once.
    with _connect(server) as sock:
        sock.sendall(_head("/predict", len(body), "Expect: 100-continue\r\n"))
        sock.settimeout(ANSWER_WITHIN)
        interim = sock.recv(64)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.settimeout(60)
        sock.sendall(body)
        response = _read_response(sock)
    assert response is not None
    assert response[0] == 200


def test_a_request_pipelined_behind_a_large_body_is_answered(
    server: Process, replay_records: list[dict[str, Any]]
) -> None:
    """The event loop reads both requests; the first one's body is parsed by the
    request thread in pieces, which leaves the second one unparsed in the preloaded
    bytes rather than in gunicorn's buffer, where the worker looks for a pipelined
    request: it was never answered (the socket has nothing more to read)."""
    body = json.dumps({"instances": replay_records[:30]}).encode()
    assert len(body) > 32 * 1024  # the tester's threshold was ~16 KiB
    health = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
    with _connect(server) as sock:
        sock.sendall(_head("/predict", len(body)) + body + health)
        assert wait_for(
            lambda: sock.recv(1 << 20, socket.MSG_PEEK).count(b"HTTP/1.1 ") >= 2,
            timeout=ANSWER_WITHIN * 10,
        )
        pipelined = _Pipelined(sock)
        assert [_read_response(pipelined)[0] for _ in range(2)] == [200, 200]  # type: ignore[index]


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_stalled_large_uploads_hold_at_most_the_buffer_budget(
    start_watchkeeper: Callable[..., Process], record: dict[str, Any]
) -> None:
    """48 clients each send 900 KB of a 1 MB body and stall: the worker holds about
    its budget (1 MB, raised to fit one largest request: ~2 MB), not 43 MB, the rest
    waits in the kernel, and small requests are still answered."""
    limit = 1024 * 1024
    server = start_watchkeeper(
        "serve",
        WATCHKEEPER_WORKERS="1",
        WATCHKEEPER_MAX_REQUEST_BYTES=str(limit),
        WATCHKEEPER_REQUEST_BUFFER_BYTES=str(limit),
        WATCHKEEPER_REQUEST_READ_TIMEOUT="120",
    )
    (worker,) = (
        int(pid)
        for pid in Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
        .read_text()
        .split()
    )
    for _ in range(20):
        assert requests.post(f"{server.url}/predict", json={"features": record}).ok
    before = _rss_bytes(worker)

    sent = 0
    sockets = [_connect(server) for _ in range(48)]
    try:
        for sock in sockets:
            data = _head("/predict", 1_000_000) + b" " * 900_000
            sock.setblocking(False)
            while data:  # as much as the kernel takes without blocking
                try:
                    n_bytes = sock.send(data)
                except BlockingIOError:
                    break
                sent += n_bytes
                data = data[n_bytes:]
        samples = [_rss_bytes(worker)]

        def settled() -> bool:
            samples.append(_rss_bytes(worker))
            return len(samples) > 10 and max(samples[-10:]) == min(samples[-10:])

        assert wait_for(settled, timeout=60, interval=0.1)
        grown = samples[-1] - before
        assert sent > 30_000_000, "the clients should have sent most of their bodies"
        assert grown < 14 * 1024 * 1024, f"worker grew {grown / 1e6:.1f} MB"
        _assert_others_are_served(server, record)
    finally:
        for sock in sockets:
            sock.close()
