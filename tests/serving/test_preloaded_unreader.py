"""The serving worker hands gunicorn's parser a request its event loop read whole;
parsing it must cost what parsing it from the socket costs, however it is chunked."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from gunicorn.config import Config
from gunicorn.http.parser import RequestParser

from serving.gunicorn_worker import PreloadedUnreader

N_CHUNKS = 200_000


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def _chunked_request(n_chunks: int) -> bytes:
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + b"1\r\nx\r\n" * n_chunks + b"0\r\n\r\n"


def _parse(sock: socket.socket, raw: bytes) -> bytes:
    parser = RequestParser(Config(), sock, ("127.0.0.1", 1))
    parser.unreader = PreloadedUnreader(sock)
    parser.unreader.preload(raw)
    request = next(parser)
    return request.body.read()


def test_a_request_of_many_tiny_chunks_parses_in_linear_time(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    raw = _chunked_request(N_CHUNKS)
    started = time.thread_time()
    body = _parse(sockets[0], raw)
    cpu = time.thread_time() - started
    assert body == b"x" * N_CHUNKS
    # From the socket this takes ~1 s; from one preloaded buffer it took minutes.
    assert cpu < 20, f"{N_CHUNKS} one-byte chunks took {cpu:.1f} s of CPU"


def test_bytes_after_the_preloaded_request_come_from_the_socket_in_order(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    raw = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234"
    sockets[1].sendall(b"56789")
    assert _parse(sockets[0], raw) == b"0123456789"


def test_what_is_left_unparsed_is_handed_back_for_the_next_request(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    unreader = PreloadedUnreader(sockets[0])
    unreader.preload(b"abcdef")
    assert unreader.read(2) == b"ab"
    assert unreader.take_buffered() == b"cdef"
    unreader.preload(b"12")
    unreader.unread(b"0")
    assert unreader.read(3) == b"012"
