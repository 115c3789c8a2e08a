"""Where an HTTP/1.1 request ends, found incrementally as its bytes arrive.

The serving worker (:mod:`serving.gunicorn_worker`) reads each request on its event
loop and hands it to a request thread only once it is complete, so that a client
that stalls holds a buffer, never a thread. This module decides "complete" and
nothing more: it is not a parser. Anything it cannot frame with certainty it hands
over as it is (:attr:`Framing.HAND_OVER`), and gunicorn's own parser rejects it
with the right status (400, 414, 431, 501); only the body-size limit on a chunked
body is enforced here, because enforcing it there would mean buffering without end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_HEAD_END = b"\r\n\r\n"
_CRLF = b"\r\n"
_DIGITS = re.compile(rb"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
# The header fields that decide where the body ends (names are case-insensitive).
_FRAMING_FIELDS = re.compile(
    rb"\r\n(content-length|transfer-encoding|expect):([^\r\n]*)", re.IGNORECASE
)
# A method is a token (RFC 9110 section 9.1).
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}")
_MAX_REQUEST_LINE = 4096


class Framing(StrEnum):
    INCOMPLETE = "incomplete"
    """More bytes are needed."""
    COMPLETE = "complete"
    """``end`` bytes hold the request, headers and body."""
    HAND_OVER = "hand_over"
    """Not framed here (malformed, headers over the limit, or a ``Content-Length``
    over the body limit, which the application answers without reading the body):
    give gunicorn what there is and do not reuse the connection for another request."""
    TOO_LARGE = "too_large"
    """A chunked body went past the body limit."""


@dataclass(frozen=True, slots=True)
class RequestLine:
    method: str
    path: str


@dataclass(frozen=True, slots=True)
class FramingLimits:
    max_head_bytes: int
    """Request line and header fields together; more without their end is handed over
    (gunicorn answers 414 or 431)."""
    max_body_bytes: int
    """Largest body; a chunked body beyond it is :attr:`Framing.TOO_LARGE`."""
    max_chunk_line_bytes: int = 8190


class RequestFramer:
    """Feed it the growing buffer of one request at a time; each call scans only what
    it has not scanned yet, so a client that sends a byte at a time costs linear work."""

    __slots__ = (
        "_chunk_payload",
        "_content_length",
        "_limits",
        "_next_chunk",
        "_scanned",
        "end",
        "expects_continue",
        "head_end",
    )

    def __init__(self, limits: FramingLimits) -> None:
        self._limits = limits
        self._scanned = 0
        self._content_length: int | None = None
        self._next_chunk: int | None = None  # offset of the next chunk-size line
        self._chunk_payload = 0
        self.head_end: int | None = None
        self.end: int | None = None
        self.expects_continue = False

    def feed(self, buffer: bytes | bytearray) -> Framing:
        """Framing of ``buffer``, which holds every byte received for this request so
        far (and possibly bytes of the next one, pipelined)."""
        if self.head_end is None:
            found = buffer.find(_HEAD_END, max(self._scanned - 3, 0))
            if found < 0:
                self._scanned = len(buffer)
                if len(buffer) > self._limits.max_head_bytes:
                    return Framing.HAND_OVER
                return Framing.INCOMPLETE
            self.head_end = found + len(_HEAD_END)
            verdict = self._read_head(bytes(buffer[: self.head_end]))
            if verdict is not None:
                return verdict
        if self._content_length is not None:
            if len(buffer) >= self.head_end + self._content_length:
                self.end = self.head_end + self._content_length
                return Framing.COMPLETE
            return Framing.INCOMPLETE
        if self._next_chunk is not None:
            return self._scan_chunks(buffer)
        self.end = self.head_end
        return Framing.COMPLETE

    def _read_head(self, head: bytes) -> Framing | None:
        """Body framing from the header fields; a verdict, or None to go on."""
        lengths: list[bytes] = []
        codings: list[bytes] = []
        # One regular-expression scan rather than a loop over every header line:
        # this runs for every request the server answers.
        for name, value in _FRAMING_FIELDS.findall(head):
            name = name.lower()
            if name == b"content-length":
                lengths.append(value.strip())
            elif name == b"transfer-encoding":
                codings.append(value.strip().lower())
            else:
                self.expects_continue = value.strip().lower() == b"100-continue"
        if codings:
            if lengths or codings != [b"chunked"]:
                return Framing.HAND_OVER
            self._next_chunk = self.head_end
            return None
        if not lengths:
            return None
        if len(lengths) != 1 or not _DIGITS.fullmatch(lengths[0]):
            return Framing.HAND_OVER
        self._content_length = int(lengths[0])
        if self._content_length > self._limits.max_body_bytes:
            return Framing.HAND_OVER
        return None

    def _scan_chunks(self, buffer: bytes | bytearray) -> Framing:
        assert self._next_chunk is not None
        while True:
            start = self._next_chunk
            line_end = buffer.find(_CRLF, start)
            if line_end < 0:
                if len(buffer) - start > self._limits.max_chunk_line_bytes:
                    return Framing.HAND_OVER
                return Framing.INCOMPLETE
            size_field = bytes(buffer[start:line_end]).split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size_field):
                return Framing.HAND_OVER
            size = int(size_field, 16)
            if size == 0:
                return self._scan_trailers(buffer, line_end + len(_CRLF))
            self._chunk_payload += size
            if self._chunk_payload > self._limits.max_body_bytes:
                return Framing.TOO_LARGE
            # chunk data and its CRLF; a wrong terminator is gunicorn's to reject
            self._next_chunk = line_end + len(_CRLF) + size + len(_CRLF)
            if len(buffer) < self._next_chunk:
                return Framing.INCOMPLETE

    def _scan_trailers(self, buffer: bytes | bytearray, start: int) -> Framing:
        if buffer[start : start + 2] == _CRLF:
            self.end = start + 2
            return Framing.COMPLETE
        found = buffer.find(_HEAD_END, start)
        if found >= 0:
            self.end = found + len(_HEAD_END)
            return Framing.COMPLETE
        if len(buffer) - start > self._limits.max_head_bytes:
            return Framing.HAND_OVER
        return Framing.INCOMPLETE


def request_line(request: bytes | bytearray) -> RequestLine | None:
    """Method and path of a request, complete or not, for reporting one that never
    reaches the app; None if its request line is not in or does not look like one.
    Not part of framing: only error paths pay for it."""
    line_end = request.find(_CRLF, 0, _MAX_REQUEST_LINE)
    if line_end < 0:
        return None
    parts = bytes(request[:line_end]).split(b" ")
    if len(parts) != 3 or not _METHOD.fullmatch(parts[0]):
        return None
    path = parts[1].split(b"?", 1)[0].split(b"#", 1)[0]
    return RequestLine(parts[0].decode("ascii"), path.decode("latin-1"))
