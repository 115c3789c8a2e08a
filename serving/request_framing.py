"""Where an HTTP/1.1 request ends, found incrementally as its bytes arrive.

The serving worker (:mod:`serving.gunicorn_worker`) reads each request on its event
loop and hands it to a request thread only once it is complete, so that a client
that stalls holds a buffer, never a thread. This module decides "complete" and
nothing more: it is not a parser. A head it cannot frame with certainty (a bad
``Content-Length``, a ``Transfer-Encoding`` that does not end in ``chunked``, head
fields over the limit) is handed over as it is (:attr:`Framing.HAND_OVER`): gunicorn's
parser rejects it from the head alone (400, 414, 431, 501), without reading a body.
A line ending in LF alone (a "bare LF", which gunicorn refuses: RFC 9112 section 2.2
lets a server take it, but a proxy in front that reads lines differently could be
made to see another request in the same bytes) is :attr:`Framing.MALFORMED` as soon
as it arrives: a head of such lines has no CRLF CRLF, and was otherwise waited for
until the read timeout.
A chunked body is different: gunicorn would read it in the request thread, so
everything about its framing is checked here, every chunk-size line, extension and
chunk terminator (:attr:`Framing.MALFORMED`), its size against the limit
(:attr:`Framing.TOO_LARGE`), and transfer codings stacked under ``chunked`` that
nothing here decodes (:attr:`Framing.UNSUPPORTED_CODING`), so that no request a
thread receives can make it wait for bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_HEAD_END = b"\r\n\r\n"
_CRLF = b"\r\n"
_LF = b"\n"
# An LF not preceded by CR; searched from an offset, the look-behind sees before it.
_BARE_LF = re.compile(rb"(?<!\r)\n")
# Where a head ends for reporting, bare LFs included.
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_DIGITS = re.compile(rb"[0-9]+")
_HEX = re.compile(rb"[0-9A-Fa-f]+")
# RFC 9112 section 7.1.1, from a chunk-size line's first ";" (gunicorn's own grammar):
#   chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED_STRING = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CHUNK_EXT = re.compile(
    rb"(?:[ \t]*;[ \t]*"
    + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + _TOKEN
    + rb"|"
    + _QUOTED_STRING
    + rb"))?)*"
)
# The header fields that decide where the body ends (names are case-insensitive).
_FRAMING_FIELDS = re.compile(
    rb"\r\n(content-length|transfer-encoding|expect):([^\r\n]*)", re.IGNORECASE
)
_CHUNKED = b"chunked"
# A method is a token (RFC 9110 section 9.1), of any length: one longer than gunicorn
# takes is still reported, and logged when it names a logged path.
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# The line's end is looked at, not taken: the next field's leading newline stays there.
_REQUEST_ID = re.compile(rb"\nx-request-id:[ \t]*([^\r\n]*?)[ \t]*(?=\r?\n)", re.IGNORECASE)
_MAX_REQUEST_LINE = 4096
_PATH_END = re.compile(rb"[?# ]")
_SHOWN = 20  # bytes of a malformed field quoted in the problem


class Framing(StrEnum):
    INCOMPLETE = "incomplete"
    """More bytes are needed."""
    COMPLETE = "complete"
    """``end`` bytes hold the request, headers and body."""
    HAND_OVER = "hand_over"
    """Not framed here, and rejected by gunicorn from the head alone (malformed
    framing fields, head fields over the limit), or a ``Content-Length`` over the body
    limit, which the application answers without reading the body: give gunicorn
    what there is and do not reuse the connection for another request."""
    TOO_LARGE = "too_large"
    """A chunked body went past the body limit."""
    MALFORMED = "malformed"
    """A line of the head ends in a bare LF, or a chunked body's framing is broken
    (:attr:`RequestFramer.problem` says how): answer 400 at once."""
    UNSUPPORTED_CODING = "unsupported_coding"
    """A transfer coding other than ``chunked`` (``gzip, chunked``): nothing here
    decodes it, answer 501 (RFC 9112 section 6.1); :attr:`RequestFramer.problem`."""


@dataclass(frozen=True, slots=True)
class RequestLine:
    method: str
    path: str


@dataclass(frozen=True, slots=True)
class FramingLimits:
    max_head_bytes: int
    """Request line and header fields together, and a chunked body's trailer section;
    more without their end is handed over (gunicorn answers 414 or 431), or for
    trailers :attr:`Framing.MALFORMED`."""
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
        "problem",
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
        self.problem = ""
        """What is wrong, for :attr:`Framing.MALFORMED` and
        :attr:`Framing.UNSUPPORTED_CODING`: a sentence for the client."""

    def feed(self, buffer: bytes | bytearray) -> Framing:
        """Framing of ``buffer``, which holds every byte received for this request so
        far (and possibly bytes of the next one, pipelined)."""
        if self.head_end is None:
            found = buffer.find(_HEAD_END, max(self._scanned - 3, 0))
            if found < 0:
                # Only a head not complete yet is searched: a complete one with a bare
                # LF goes to gunicorn, which refuses it as well, at no cost to others.
                if _BARE_LF.search(buffer, self._scanned) is not None:
                    self.problem = (
                        "malformed request head: a line ends with a bare LF; "
                        "HTTP/1.1 lines end with CRLF"
                    )
                    return Framing.MALFORMED
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
                # A list, possibly over several fields, as gunicorn reads it.
                codings.extend(c.strip(b" \t").lower() for c in value.split(b","))
            elif value.strip().lower() == b"100-continue":
                # HTTP/1.0 has no 1xx: its expectation is ignored (RFC 9110 section
                # 10.1.1), as gunicorn ignores it. Only requests with an Expect look.
                self.expects_continue = not head[: head.find(_CRLF, 1)].endswith(b" HTTP/1.0")
            else:
                self.expects_continue = False
        if codings:
            if codings == [_CHUNKED] and not lengths:
                self._next_chunk = self.head_end
                return None
            if codings[-1] == _CHUNKED and not lengths:
                # gunicorn would take it as chunked and pass the inner coding on
                # undecoded, reading the body in the request thread.
                shown = b", ".join(codings).decode("latin-1")[: _SHOWN * 4]
                self.problem = f"Transfer-Encoding {shown!r} is not supported; send chunked alone"
                return Framing.UNSUPPORTED_CODING
            # With a Content-Length, or not ending in chunked: 400 from the head.
            return Framing.HAND_OVER
        if not lengths:
            return None
        if len(lengths) != 1 or not _DIGITS.fullmatch(lengths[0]):
            return Framing.HAND_OVER
        # Any number of digits, leading zeros included (RFC 9112 section 6.3, and
        # gunicorn takes them): handed over, such a body would be read in a thread.
        digits = lengths[0].lstrip(b"0")
        if len(digits) > len(str(self._limits.max_body_bytes)):
            return Framing.HAND_OVER  # over the limit: answered without reading it
        self._content_length = int(digits or b"0")
        if self._content_length > self._limits.max_body_bytes:
            return Framing.HAND_OVER
        return None

    def _scan_chunks(self, buffer: bytes | bytearray) -> Framing:
        assert self._next_chunk is not None
        while True:
            start = self._next_chunk
            if start > self.head_end:
                # The previous chunk's data must end with CRLF.
                if len(buffer) < start:
                    return Framing.INCOMPLETE
                if buffer[start - 2 : start] != _CRLF:
                    return self._malformed("a chunk's data is not followed by CRLF")
            line_end = buffer.find(_CRLF, start, start + self._limits.max_chunk_line_bytes + 2)
            if line_end < 0:
                if buffer.find(_LF, start, start + self._limits.max_chunk_line_bytes + 2) >= 0:
                    # an LF with no CR before it: the line's own end
                    return self._malformed("a chunk-size line ends with a bare LF")
                if len(buffer) - start > self._limits.max_chunk_line_bytes:
                    return self._malformed(
                        f"a chunk-size line is over {self._limits.max_chunk_line_bytes} bytes"
                    )
                return Framing.INCOMPLETE
            size = self._chunk_size(bytes(buffer[start:line_end]))
            if size is None:
                return Framing.MALFORMED
            if size == 0:
                return self._scan_trailers(buffer, line_end + len(_CRLF))
            # Extensions count with the data: they are buffered like it, and a few
            # bytes of data under kilobytes of them would otherwise take a worker's
            # whole buffer budget within the limit.
            semicolon = buffer.find(b";", start, line_end)
            extensions = line_end - semicolon if semicolon >= 0 else 0
            self._chunk_payload += size + extensions
            if self._chunk_payload > self._limits.max_body_bytes:
                return Framing.TOO_LARGE
            self._next_chunk = line_end + len(_CRLF) + size + len(_CRLF)

    def _chunk_size(self, line: bytes) -> int | None:
        """A chunk-size line's size, checked as gunicorn's parser would (RFC 9112
        section 7.1: hex digits, any number of them, then extensions); None and
        :attr:`problem` set if it is malformed. A size past the body limit is
        returned as one more than the limit, without converting every digit."""
        size, semicolon, extensions = line.partition(b";")
        if semicolon:
            size = size.rstrip(b" \t")  # whitespace before extensions only
        if not _HEX.fullmatch(size):
            if _LF in size:
                self._malformed("a chunk-size line ends with a bare LF")
                return None
            shown = size[:_SHOWN].decode("latin-1")
            self._malformed(f"chunk size {shown!r} is not a hexadecimal number")
            return None
        if semicolon and (b"\r" in extensions or not _CHUNK_EXT.fullmatch(semicolon + extensions)):
            self._malformed("a chunk extension is malformed")
            return None
        digits = size.lstrip(b"0")
        if len(digits) > len(f"{self._limits.max_body_bytes:x}"):
            return self._limits.max_body_bytes + 1
        return int(digits or b"0", 16)

    def _scan_trailers(self, buffer: bytes | bytearray, start: int) -> Framing:
        if len(buffer) < start + 2:
            return Framing.INCOMPLETE
        if buffer[start : start + 2] == _CRLF:
            self.end = start + 2
            return Framing.COMPLETE
        found = buffer.find(_HEAD_END, start)
        if found >= 0:
            self.end = found + len(_HEAD_END)
            return Framing.COMPLETE
        if _BARE_LF.search(buffer, start) is not None:
            return self._malformed("a trailer line ends with a bare LF")
        if len(buffer) - start > self._limits.max_head_bytes:
            return self._malformed(
                f"the trailer section is over {self._limits.max_head_bytes} bytes"
            )
        return Framing.INCOMPLETE

    def _malformed(self, problem: str) -> Framing:
        self.problem = f"malformed chunked body: {problem}"
        return Framing.MALFORMED


def request_line(request: bytes | bytearray) -> RequestLine | None:
    """Method and path of a request, complete or not, for reporting one that never
    reaches the app; None if its request line is not in or does not look like one.
    A line ending in a bare LF is read as a line. A line over 4 KiB (414) is known
    when its path ends within them (a long query string); a path cut there is None.
    Not part of framing: only error paths pay for it."""
    line_end = request.find(_LF, 0, _MAX_REQUEST_LINE)
    if line_end < 0:
        if len(request) < _MAX_REQUEST_LINE:
            return None  # not all here yet
        method, space, target = bytes(request[:_MAX_REQUEST_LINE]).partition(b" ")
        path_end = _PATH_END.search(target)
        if not space or path_end is None or not _METHOD.fullmatch(method):
            return None
        path = target[: path_end.start()]
    else:
        parts = bytes(request[:line_end]).removesuffix(b"\r").split(b" ")
        if len(parts) != 3 or not _METHOD.fullmatch(parts[0]):
            return None
        method, path = parts[0], parts[1].split(b"?", 1)[0].split(b"#", 1)[0]
    return RequestLine(method.decode("ascii"), path.decode("latin-1"))


def header_text(raw: bytes) -> str:
    """A header value's bytes as the text the client meant: UTF-8, as clients send
    non-ASCII values; bytes that are not UTF-8 as ``\\xNN`` escapes, visibly."""
    return raw.decode("utf-8", "backslashreplace")


def client_request_id(request: bytes | bytearray) -> str | None:
    """The client's own ``X-Request-ID`` in a request's head (complete or not), as
    the app logs it (:func:`header_text`; fields of that name sent more than once
    joined by commas, as gunicorn joins them for the app); None without one. For
    reporting a request that never reaches the app."""
    head_end = _BLANK_LINE.search(request)
    end = len(request) if head_end is None else head_end.end()
    found = [m.group(1) for m in _REQUEST_ID.finditer(request, 0, end)]
    return header_text(b",".join(found)) if found else None
