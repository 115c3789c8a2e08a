"""Where a request ends, fed a byte at a time as a slow client sends it."""

from __future__ import annotations

import pytest

from serving.request_framing import (
    Framing,
    FramingLimits,
    RequestFramer,
    RequestLine,
    request_line,
)

LIMITS = FramingLimits(max_head_bytes=4096, max_body_bytes=1000)


def _feed_bytewise(raw: bytes, limits: FramingLimits = LIMITS) -> tuple[Framing, RequestFramer]:
    """The first verdict that is not INCOMPLETE, feeding ``raw`` one byte at a time."""
    framer = RequestFramer(limits)
    buffer = bytearray()
    for byte in raw:
        buffer.append(byte)
        verdict = framer.feed(buffer)
        if verdict is not Framing.INCOMPLETE:
            return verdict, framer
    return Framing.INCOMPLETE, framer


def _chunked(*parts: bytes, trailer: bytes = b"") -> bytes:
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = b"".join(f"{len(p):x};ext=1\r\n".encode() + p + b"\r\n" for p in parts)
    return head + chunks + b"0\r\n" + trailer + b"\r\n"


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /predict HTTP/1.1\r\ncontent-LENGTH: 5\r\n\r\nhello",
        _chunked(b"hello", b" world"),
        _chunked(b"hello", trailer=b"X-Checksum: 1\r\n"),
    ],
)
def test_a_complete_request_ends_exactly_at_its_last_byte(raw: bytes) -> None:
    verdict, framer = _feed_bytewise(raw + b"GET /next HTTP/1.1\r\n")
    assert verdict is Framing.COMPLETE
    assert framer.end == len(raw)


def test_the_request_line_is_known_before_the_request_is_complete() -> None:
    assert request_line(b"POST /predict?x=1 HTTP/1.1\r\nContent-Le") == RequestLine(
        "POST", "/predict"
    )
    assert request_line(b"POST /predict?x=1 HTT") is None
    assert request_line(b"NOT AN HTTP REQUEST\r\n") is None


def test_expect_continue_is_seen_once_the_headers_are_in() -> None:
    framer = RequestFramer(LIMITS)
    head = b"POST /predict HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 9\r\n\r\n"
    assert framer.feed(head) is Framing.INCOMPLETE
    assert framer.expects_continue


@pytest.mark.parametrize(
    "raw",
    [
        # gunicorn's parser rejects these; framing them here would be guessing
        b"POST / HTTP/1.1\r\nContent-Length: 12abc\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        # over the limits: the app answers 413 without reading, gunicorn 431
        b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Padding: " + b"a" * 5000,
    ],
)
def test_what_cannot_be_framed_is_handed_over_to_gunicorn(raw: bytes) -> None:
    assert _feed_bytewise(raw)[0] is Framing.HAND_OVER


def test_a_chunked_body_over_the_limit_is_too_large() -> None:
    assert _feed_bytewise(_chunked(b"a" * 600, b"b" * 600))[0] is Framing.TOO_LARGE
