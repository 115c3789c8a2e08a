"""Where a request ends, fed a byte at a time as a slow client sends it."""

from __future__ import annotations

import pytest

from serving.request_framing import (
    Framing,
    FramingLimits,
    RequestFramer,
    RequestLine,
    client_request_id,
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


def _feed_whole(raw: bytes, limits: FramingLimits = LIMITS) -> tuple[Framing, RequestFramer]:
    framer = RequestFramer(limits)
    return framer.feed(bytearray(raw)), framer


_CHUNKED_HEAD = b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


def _chunked(*parts: bytes, trailer: bytes = b"") -> bytes:
    head = _CHUNKED_HEAD
    chunks = b"".join(f"{len(p):x};ext=1\r\n".encode() + p + b"\r\n" for p in parts)
    return head + chunks + b"0\r\n" + trailer + b"\r\n"


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /predict HTTP/1.1\r\ncontent-LENGTH: 5\r\n\r\nhello",
        _chunked(b"hello", b" world"),
        _chunked(b"hello", trailer=b"X-Checksum: 1\r\n"),
        # a size of any number of digits: leading zeros are valid (RFC 9112 7.1)
        _CHUNKED_HEAD + b"0000000000000005\r\nhello\r\n" + b"0" * 40 + b"\r\n\r\n",
        _CHUNKED_HEAD + b'5 ; name = "quoted"\r\nhello\r\n0\r\n\r\n',
        # a Content-Length of any number of digits too: handed over, its body would be
        # read by a request thread, which a client trickling it would hold
        b"POST /predict HTTP/1.1\r\nContent-Length: " + b"0" * 30 + b"5\r\n\r\nhello",
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
    # gunicorn refuses a method this long; it is still reported (and logged)
    assert request_line(b"X" * 40 + b" /predict HTTP/1.1\r\n") == RequestLine("X" * 40, "/predict")


def test_a_request_line_over_the_limit_is_known_by_its_method_and_path() -> None:
    """gunicorn answers it 414; the path is whole when it ends within the first 4 KiB
    (the query is not needed), and a path cut there names no route: None."""
    long_query = b"POST /predict?q=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert request_line(long_query) == RequestLine("POST", "/predict")
    assert request_line(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n") is None
    assert request_line(b"GET /" + b"a" * 9000) is None
    assert request_line(b"X" * 5000 + b" /predict HTTP/1.1\r\n") is None


def test_a_request_line_ending_in_a_bare_lf_is_still_known() -> None:
    # refused with 400, and logged under its path like any other refusal
    assert request_line(b"POST /feedback HTTP/1.1\nHost: x\n\n") == RequestLine("POST", "/feedback")
    assert client_request_id(b"POST / HTTP/1.1\nX-Request-ID: mine\nHost: x\n\n") == "mine"
    assert client_request_id(b"POST / HTTP/1.1\nHost: x\n\nX-Request-ID: body\n") is None


def test_the_clients_request_id_is_read_from_the_head_only() -> None:
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nx-request-ID:  mine-1 \r\n"
    assert client_request_id(head + b"Content-Le") == "mine-1"
    assert client_request_id(head + b"\r\n") == "mine-1"
    assert client_request_id(b"POST / HTTP/1.1\r\nHost: x\r\n\r\nX-Request-ID: body\r\n") is None
    assert client_request_id(b"POST / HTTP/1.1\r\nX-Request-ID: cut-off") is None
    # the text the client sent: UTF-8, or its bytes escaped when they are not UTF-8
    utf8 = "POST / HTTP/1.1\r\nX-Request-ID: café\r\n\r\n".encode()
    assert client_request_id(utf8) == "café"
    assert client_request_id(b"POST / HTTP/1.1\r\nX-Request-ID: a\xff\r\n\r\n") == "a\\xff"


def test_a_request_id_sent_twice_is_joined_by_a_comma_as_gunicorn_joins_it_for_the_app() -> None:
    twice = b"POST / HTTP/1.1\r\nX-Request-ID: one\r\nx-request-id:  two \r\nHost: x\r\n\r\n"
    assert client_request_id(twice) == "one,two"
    apart = b"POST / HTTP/1.1\nX-Request-ID: one\nHost: x\nX-Request-ID: two\n\n"
    assert client_request_id(apart) == "one,two"


def test_expect_continue_is_seen_once_the_headers_are_in() -> None:
    framer = RequestFramer(LIMITS)
    head = b"POST /predict HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 9\r\n\r\n"
    assert framer.feed(head) is Framing.INCOMPLETE
    assert framer.expects_continue


def test_expect_continue_from_an_http_1_0_client_is_ignored() -> None:
    """HTTP/1.0 has no 1xx: such an expectation must be ignored and no 100 sent to the
    client (RFC 9110 sections 10.1.1 and 15.2), as gunicorn ignores it."""
    framer = RequestFramer(LIMITS)
    head = b"POST /predict HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n"
    assert framer.feed(head) is Framing.INCOMPLETE
    assert not framer.expects_continue


@pytest.mark.parametrize(
    "raw",
    [
        # gunicorn's parser rejects these; framing them here would be guessing
        b"POST / HTTP/1.1\r\nContent-Length: 12abc\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        # over the limits: the app answers 413 without reading, gunicorn 431
        b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1" + b"0" * 40 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Padding: " + b"a" * 5000,
    ],
)
def test_what_cannot_be_framed_is_handed_over_to_gunicorn(raw: bytes) -> None:
    assert _feed_bytewise(raw)[0] is Framing.HAND_OVER


def test_a_chunked_body_over_the_limit_is_too_large() -> None:
    assert _feed_bytewise(_chunked(b"a" * 600, b"b" * 600))[0] is Framing.TOO_LARGE


def test_chunk_extensions_count_towards_the_body_limit() -> None:
    """A few bytes of data with kilobytes of extensions per chunk: without counting
    them, a 60 MB message of 7.5 kB of data was buffered whole, and one request could
    take a worker's whole buffer budget."""
    line = b"1;" + b"e" * 600 + b"\r\nx\r\n"
    raw = _CHUNKED_HEAD + line * 3 + b"0\r\n\r\n"
    assert _feed_bytewise(raw)[0] is Framing.TOO_LARGE


def test_a_chunk_size_of_more_digits_than_the_limit_has_is_too_large_at_once() -> None:
    # 16 hex digits: past what the framer once parsed, which handed the request to a
    # thread that then waited for the chunk (tests/serving/test_slow_clients.py)
    raw = _CHUNKED_HEAD + b"1000000000000000\r\n0123456789"
    assert _feed_bytewise(raw)[0] is Framing.TOO_LARGE
    assert _feed_bytewise(_CHUNKED_HEAD + b"f" * 5000 + b"\r\n")[0] is Framing.TOO_LARGE


@pytest.mark.parametrize(
    ("tail", "problem"),
    [
        (b"zz\r\n{}\r\n0\r\n\r\n", "chunk size 'zz' is not a hexadecimal number"),
        (b"-1\r\n{}\r\n0\r\n\r\n", "chunk size '-1'"),
        (b"\r\n", "chunk size '' is not"),
        (b"2 \r\n{}\r\n0\r\n\r\n", "chunk size '2 '"),  # whitespace only before ";"
        (b"0x2\r\n{}\r\n0\r\n\r\n", "chunk size '0x2'"),
        (b"2\r\n{}XX0\r\n\r\n", "not followed by CRLF"),
        (b"2;a b\r\n{}\r\n0\r\n\r\n", "chunk extension"),
        (b"2;" + b"e" * 9000, "chunk-size line is over 8190 bytes"),
        (b"0\r\nX-Trailer: " + b"a" * 5000, "trailer section is over 4096 bytes"),
    ],
)
def test_malformed_chunked_framing_is_refused_before_a_thread_reads_it(
    tail: bytes, problem: str
) -> None:
    verdict, framer = _feed_bytewise(_CHUNKED_HEAD + tail)
    assert verdict is Framing.MALFORMED
    assert problem in framer.problem
    assert framer.problem.startswith("malformed chunked body: ")


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /predict HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\n{}",
        b"POST /predict HTTP/1.1\r\nHost: x\n\r\n",
        b"GET / HTTP/1.1\n\n",
    ],
)
def test_a_head_with_a_bare_lf_is_malformed_at_once(raw: bytes) -> None:
    """gunicorn refuses a line ending in LF alone; a head of such lines never has the
    CRLF CRLF that ends it here, and waited for the read timeout (408)."""
    for verdict, framer in (_feed_bytewise(raw), _feed_whole(raw)):
        assert verdict is Framing.MALFORMED
        assert framer.problem.startswith("malformed request head: ")
        assert "bare LF" in framer.problem


@pytest.mark.parametrize(
    "tail",
    [b"2\n{}\r\n0\r\n\r\n", b"2\r\n{}\r\n0\n\n", b"2\r\n{}\r\n0\r\nX-T: 1\n\r\n"],
    ids=["chunk-size line", "last chunk", "trailer"],
)
def test_a_chunked_body_with_a_bare_lf_is_malformed_at_once(tail: bytes) -> None:
    for verdict, framer in (
        _feed_bytewise(_CHUNKED_HEAD + tail),
        _feed_whole(_CHUNKED_HEAD + tail),
    ):
        assert verdict is Framing.MALFORMED
        assert "bare LF" in framer.problem


def test_a_lf_in_chunk_data_is_data() -> None:
    raw = _CHUNKED_HEAD + b"3\r\n\n\n\n\r\n0\r\n\r\n"
    assert _feed_bytewise(raw)[0] is Framing.COMPLETE


@pytest.mark.parametrize("codings", [b"gzip, chunked", b"identity, chunked", b"chunked, chunked"])
def test_a_transfer_coding_under_chunked_is_unsupported(codings: bytes) -> None:
    raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: " + codings + b"\r\n\r\n10\r\n0123"
    verdict, framer = _feed_bytewise(raw)
    assert verdict is Framing.UNSUPPORTED_CODING
    assert codings.decode() in framer.problem
