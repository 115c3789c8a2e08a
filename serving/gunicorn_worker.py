"""The serving worker: gunicorn's threaded worker, reading each request whole on its
event loop before a request thread sees it.

gunicorn's ``gthread`` worker hands a connection to a request thread as soon as its
first byte arrives, and the thread then blocks reading headers and body: a few
clients that send half a request and stall hold every thread, and nobody else is
answered. Here the worker's event loop (one thread, non-blocking sockets) buffers
the request until :class:`~serving.request_framing.RequestFramer` says it is
complete, and only then queues it for a thread, which parses it from memory. A
stalled client costs a buffer and a poller entry:

* a connection that sends nothing is closed after gunicorn's ``keepalive`` seconds,
  as gunicorn does;
* a request not received in full within ``WATCHKEEPER_REQUEST_READ_TIMEOUT`` seconds
  of its first byte gets a 408 in the JSON error shape and the connection is closed;
* incomplete requests of one worker hold at most ``WATCHKEEPER_REQUEST_BUFFER_BYTES``
  (beyond that, requests over 64 KiB wait unread in the kernel's socket buffer, so
  small ones such as health checks are still read), and a request's bytes count
  until its response is sent, so requests queued for a thread are bounded too;
* the request thread's socket operations time out after the same read timeout (a
  client that does not read its response cannot hold a thread either);
* a connection closed after its answer is half-closed and drained on the event loop
  for at most 2 s (gunicorn's own graceful close waited for the client's FIN there,
  stopping the whole worker for 2 s per client that never closed).

A chunked body whose framing is malformed (a chunk size that is not hexadecimal, a
chunk without its CRLF), over the body limit, or under another transfer coding is
answered at once on the event loop (400, 413, 501): gunicorn would read such a body
in a request thread, which a client that stalls mid-chunk could hold. So is a head
with a line ending in a bare LF (400), which gunicorn refuses too, but whose end the
event loop would otherwise wait for until the read timeout. Errors gunicorn raises
itself (431, 414, a bad ``Content-Length``, 505...) and these are answered in the JSON
error shape and reported as :mod:`serving.wire_errors` describes.

The event loop alone answers ``Expect: 100-continue`` (never for a body over the
limit, which gets its 413 at once), and a request of a later HTTP/1.x is answered as
HTTP/1.1 (:meth:`BufferingThreadWorker.handle_request`).

TLS, HTTP/2, the PROXY protocol and uWSGI are not framed here: with any of them
configured the worker behaves as gunicorn's own (terminate TLS at the ingress).
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn import http
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import TConn, ThreadWorker

from serving import wire_errors
from serving.request_framing import (
    Framing,
    FramingLimits,
    RequestFramer,
    client_request_id,
    request_line,
)
from serving.request_ids import new_request_id
from watchkeeper.settings import ServingSettings

_RECV_BYTES = 256 * 1024
# Most bytes read from one connection per readiness event, so that one fast large
# upload does not hold the event loop while other clients wait.
_RECV_PER_EVENT = 1024 * 1024
# Requests this small are always read, whatever the buffer budget: health checks
# and single-record predictions are never stuck behind large uploads.
_SMALL_REQUEST_BYTES = 64 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_HTTP_1_1 = (1, 1)
_REPORT_BYTES = 16 * 1024  # of a request's head, kept for its error report
_LINGER_SECONDS = 2.0  # as gunicorn's own graceful close
_LINGER_BYTES = 64 * 1024


class PreloadedUnreader(SocketUnreader):
    """gunicorn's socket reader, serving first the bytes the event loop already read.

    They are handed to the parser in the slices a socket read would return, not put
    back into its buffer whole: gunicorn's ``Unreader.read`` copies everything still
    buffered on every call, so a request of many small chunks parsed from one large
    buffer cost time quadratic in its size (80,000 one-byte chunks: 2.8 s of CPU
    against 0.3 s from the socket)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self._pending = memoryview(b"")

    def preload(self, data: bytes) -> None:
        """Serve ``data`` before anything still buffered or on the socket (the order
        ``unread`` gives)."""
        rest = self.take_buffered()
        self._pending = memoryview(data + rest if rest else data)

    def chunk(self, size_hint: int | None = None) -> bytes:
        if not self._pending:
            return super().chunk(size_hint)
        size = self.mxchunk
        if size_hint and size_hint > size:
            size = min(size_hint, self.max_body_chunk)
        piece, self._pending = self._pending[:size].tobytes(), self._pending[size:]
        return piece

    def take_buffered(self) -> bytes:
        data = super().take_buffered()
        if self._pending:
            data, self._pending = data + self._pending.tobytes(), memoryview(b"")
        return data

    def settle(self) -> None:
        """Put what the request left of the preloaded bytes (a pipelined request) into
        gunicorn's buffer, after what is there: the worker looks for a next request
        in that buffer only, and the socket will not say it has one."""
        if self._pending:
            self.buf.seek(0, os.SEEK_END)
            self.buf.write(self._pending)
            self._pending = memoryview(b"")


class _ClientSocket(socket.socket):
    """A client socket whose blocking mode has a timeout.

    gunicorn's request thread switches the socket to blocking mode before it reads
    and writes; here that mode is bounded. The request being served is referenced on
    it (no copy) for error reports: gunicorn's error path receives the socket.
    """

    __slots__ = ("io_timeout", "request")

    io_timeout: float
    request: bytes | None

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(self.io_timeout)
        else:
            super().setblocking(False)


class _Reading:
    """A request being received on the event loop."""

    __slots__ = ("buffer", "deadline", "first_byte_at", "framer", "polled", "sent_continue")

    def __init__(self, framer: RequestFramer, deadline: float) -> None:
        self.framer = framer
        self.buffer = bytearray()
        self.deadline = deadline
        self.first_byte_at: float | None = None
        self.polled = False
        self.sent_continue = False


class _Conn(TConn):
    sock: _ClientSocket

    def __init__(self, worker: BufferingThreadWorker, *args: Any) -> None:
        super().__init__(*args)
        self.worker = worker
        self.reading: _Reading | None = None
        self.held_bytes = 0
        self.whole = True  # the request handed over was received in full
        self.linger_until = 0.0
        self.drained = 0

    def close(self, graceful: bool = False) -> None:
        # gunicorn's graceful close waits up to 2 s for the client's FIN, on the event
        # loop: clients that never close would stop the worker 2 s each.
        if graceful:
            self.worker.linger(self, counted=False)
        else:
            super().close()


class BufferingThreadWorker(ThreadWorker):
    """``gthread`` with requests read whole on the event loop (see the module doc)."""

    def init_process(self) -> None:
        serving = ServingSettings()
        self.read_timeout = serving.request_read_timeout
        # A connection that has not started a request is closed as gunicorn closes an
        # idle kept-alive one (and after the read timeout if keep-alive is off).
        self.idle_timeout = min(self.cfg.keepalive or self.read_timeout, self.read_timeout)
        self.limits = FramingLimits(
            max_head_bytes=self.cfg.limit_request_line
            + self.cfg.limit_request_fields * (self.cfg.limit_request_field_size + 2)
            + 4,
            max_body_bytes=serving.max_request_bytes,
            max_chunk_line_bytes=self.cfg.limit_request_field_size or 8190,
        )
        # At least one largest request must fit, or it could never be read.
        self.buffer_budget = max(
            serving.request_buffer_bytes,
            self.limits.max_head_bytes + serving.max_request_bytes + _RECV_BYTES,
        )
        self.buffered = 0
        # One receive buffer for the event loop; each read is copied into its request's.
        self.scratch = memoryview(bytearray(_RECV_BYTES))
        self.reading: dict[_Conn, _Reading] = {}
        self.paused: dict[_Conn, None] = {}  # insertion-ordered set: resumed first in, first out
        self.lingering: dict[_Conn, None] = {}
        self.buffering = not (
            self.cfg.is_ssl
            or "h2" in getattr(self.cfg, "http_protocols", ())
            or getattr(self.cfg, "proxy_protocol", "off") not in ("off", False, None)
            or getattr(self.cfg, "protocol", "http") != "http"
        )
        if not self.buffering:
            self.log.warning(
                "TLS, HTTP/2, PROXY protocol or uWSGI configured: requests are read by "
                "request threads, and stalled clients can hold them"
            )
        super().init_process()

    # -- connections in -----------------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        sock = _ClientSocket(client.family, client.type, client.proto, fileno=client.detach())
        sock.io_timeout = self.read_timeout
        sock.request = None
        self.enqueue_req(_Conn(self, self.cfg, sock, address, listener.getsockname()))

    def enqueue_req(self, conn: _Conn) -> None:  # type: ignore[override]
        """Every request, on a new or a kept-alive connection, is read here first;
        gunicorn calls this for both, and for bytes a client pipelined."""
        if not self.buffering:
            super().enqueue_req(conn)
            return
        now = time.monotonic()
        reading = _Reading(RequestFramer(self.limits), now + self.idle_timeout)
        conn.reading = reading
        self.reading[conn] = reading
        if conn.sock.gettimeout() != 0.0:
            conn.sock.setblocking(False)  # pipelined: straight from a request thread
        if conn.parser is not None:
            # Pipelined bytes gunicorn read past the previous request.
            pipelined = conn.parser.unreader.take_buffered()
            if pipelined:
                self._received(conn, reading, pipelined, now)
                if conn.reading is None:
                    return
        self._read(conn)

    def _on_readable(self, conn: _Conn, _fileobj: Any) -> None:
        self._read(conn)

    def _read(self, conn: _Conn) -> None:
        reading = conn.reading
        assert reading is not None
        received = 0
        while received < _RECV_PER_EVENT:
            if len(reading.buffer) >= _SMALL_REQUEST_BYTES and self.buffered >= self.buffer_budget:
                self._pause(conn, reading)
                return
            try:
                n_bytes = conn.sock.recv_into(self.scratch)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(conn)
                return
            if not n_bytes:
                self._close(conn)
                return
            received += n_bytes
            self._received(conn, reading, self.scratch[:n_bytes], time.monotonic())
            if conn.reading is None:
                return
            # Read again rather than wait for the poller: a client's body often
            # follows its headers in a second segment that is already here.
        if not reading.polled:
            reading.polled = True
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _received(
        self, conn: _Conn, reading: _Reading, data: bytes | memoryview, now: float
    ) -> None:
        if reading.first_byte_at is None:
            reading.first_byte_at = now
            # Once a request has started, it has the read timeout to arrive in full.
            reading.deadline = now + self.read_timeout
        reading.buffer += data
        self.buffered += len(data)
        framing = reading.framer.feed(reading.buffer)
        if framing is Framing.COMPLETE:
            self._hand_over(conn, reading, whole=True)
        elif framing is Framing.HAND_OVER:
            self._hand_over(conn, reading, whole=False)
        elif framing is Framing.TOO_LARGE:
            self._reject(conn, reading, wire_errors.payload_too_large(self.limits.max_body_bytes))
        elif framing is Framing.MALFORMED:
            self._reject(conn, reading, wire_errors.malformed_framing(reading.framer.problem))
        elif framing is Framing.UNSUPPORTED_CODING:
            self._reject(conn, reading, wire_errors.unsupported_coding(reading.framer.problem))
        elif reading.framer.expects_continue and not reading.sent_continue:
            # The client waits for this before it sends the body; gunicorn's own is
            # not sent (handle_request), the body being here by then.
            reading.sent_continue = True
            self._send_quietly(conn, _CONTINUE)

    def _hand_over(self, conn: _Conn, reading: _Reading, *, whole: bool) -> None:
        self._stop_reading(conn, reading)
        conn.held_bytes = len(reading.buffer)
        conn.whole = whole
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
            conn.parser.unreader = PreloadedUnreader(conn.sock)
            # What TConn.init() would do in the thread: nothing more for cleartext
            # HTTP/1.1, and the thread must not wait for data that is already here.
            conn.initialized = True
        request = bytes(reading.buffer)
        # The head for error reports (request line, X-Request-ID); a slice, so that a
        # large body is not held twice (the parser's buffer has its own copy).
        conn.sock.request = request[: min(reading.framer.head_end or _REPORT_BYTES, _REPORT_BYTES)]
        conn.parser.unreader.preload(request)
        super().enqueue_req(conn)

    def handle_request(self, req: Any, conn: _Conn) -> bool:  # type: ignore[override]
        if self.buffering:
            # The event loop has answered any 100-continue expectation: with a 100 when
            # the client waited for it, with nothing when the body came with the head
            # or is over the limit, where a 100 would invite the body that the 413
            # refuses (RFC 9110 section 10.1.1). gunicorn would send one more.
            req._expected_100_continue = False
            if not conn.whole:
                req.must_close = True  # the body is left unread: say so in the answer
        if req.version > _HTTP_1_1:
            # A later 1.x is processed as 1.1, the highest minor version this server
            # conforms to, and answered as such (RFC 9110 sections 2.5 and 6.2);
            # gunicorn would echo the client's version in the status line.
            req.version = _HTTP_1_1
        return super().handle_request(req, conn)

    # -- connections out ------------------------------------------------------------

    def finish_request(self, conn: _Conn, fs: Any) -> None:  # type: ignore[override]
        self._release(conn.held_bytes)
        conn.held_bytes = 0
        conn.sock.request = None
        if conn.parser is not None and isinstance(conn.parser.unreader, PreloadedUnreader):
            conn.parser.unreader.settle()
        super().finish_request(conn, fs)

    def _keepalive_after(self, conn: _Conn, keepalive: bool) -> bool:  # type: ignore[override]
        # A request handed over before its body arrived (a Content-Length over the
        # limit, answered without reading it) leaves the rest of the body on the
        # socket: close rather than wait for it in the thread.
        if not conn.whole:
            return False
        return super()._keepalive_after(conn, keepalive)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        # A full scan, about once a second: a few hundred entries at most.
        for conn, reading in [item for item in self.reading.items() if item[1].deadline <= now]:
            if reading.first_byte_at is None:
                self._close(conn)  # never started a request: closed like an idle one
            else:
                waited = now - reading.first_byte_at
                self._reject(conn, reading, wire_errors.request_timeout(self.read_timeout), waited)
        for conn in [conn for conn in self.lingering if conn.linger_until <= now]:
            self._end_linger(conn)

    def _reject(
        self, conn: _Conn, reading: _Reading, error: wire_errors.WireError, waited: float = 0.0
    ) -> None:
        request_id = new_request_id()
        self._send_quietly(conn, error.response(request_id))
        self.log.info(
            "%s from %s: %s", error.status, conn.client[0] if conn.client else "-", error.message
        )
        self._report(error, request_id, reading.buffer, waited)
        self._stop_reading(conn, reading)
        self._release(len(reading.buffer))
        self.linger(conn, counted=True)

    def _close(self, conn: _Conn) -> None:
        reading = conn.reading
        if reading is not None:
            self._stop_reading(conn, reading)
        self.nr_conns -= 1
        conn.close()
        if reading is not None:
            self._release(len(reading.buffer))

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's error responses, in the JSON error shape (see serving.wire_errors)."""
        error = wire_errors.classify(exc)
        request_id = new_request_id()
        ip = addr[0] if addr else "-"
        if wire_errors.is_client_error(exc):
            self.log.warning("Invalid request from ip=%s: %s", ip, exc)
        else:
            self.log.exception("Error handling request from ip=%s", ip)
        self._report(error, request_id, getattr(client, "request", None) or b"", 0.0)
        try:
            client.sendall(error.response(request_id))
        except OSError:
            self.log.debug("Failed to send error message.")

    def linger(self, conn: _Conn, *, counted: bool) -> None:
        """Close after a final response without losing it (RFC 9112 section 9.6):
        half-close, then discard what the client still sends until it closes, for
        at most 2 s or 64 KiB, on the event loop. Closing with unread bytes would
        make the kernel reset the connection, and the client could lose the answer.
        ``counted``: whether the connection is still in ``nr_conns``."""
        if not counted:
            self.nr_conns += 1  # still holds a descriptor until it is closed
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._end_linger(conn)
            return
        conn.linger_until = time.monotonic() + _LINGER_SECONDS
        conn.drained = 0
        self.lingering[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_linger, conn))

    def _on_linger(self, conn: _Conn, _fileobj: Any) -> None:
        while True:
            try:
                n_bytes = conn.sock.recv_into(self.scratch)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                break
            conn.drained += n_bytes
            if not n_bytes or conn.drained >= _LINGER_BYTES:
                break
        self._end_linger(conn)

    def _end_linger(self, conn: _Conn) -> None:
        if conn in self.lingering:
            del self.lingering[conn]
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
        self.nr_conns -= 1
        TConn.close(conn)

    # -- bookkeeping ------------------------------------------------------------------

    def _report(
        self,
        error: wire_errors.WireError,
        request_id: str,
        request: bytes | bytearray,
        waited: float,
    ) -> None:
        # Also runs on the event loop, where an exception would end the worker.
        try:
            wire_errors.report(
                self.wsgi,
                error,
                request_id,
                request_line(request),
                waited,
                client_request_id=client_request_id(request),
            )
        except Exception:
            self.log.exception("could not report a rejected request")

    def _stop_reading(self, conn: _Conn, reading: _Reading) -> None:
        if reading.polled:
            reading.polled = False
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
        self.reading.pop(conn, None)
        self.paused.pop(conn, None)
        conn.reading = None

    def _pause(self, conn: _Conn, reading: _Reading) -> None:
        """Stop reading a large request while the budget is spent; its bytes wait in
        the kernel (TCP flow control slows the client) until the budget frees."""
        if reading.polled:
            reading.polled = False
            self.poller.unregister(conn.sock)
        self.paused[conn] = None

    def _release(self, n_bytes: int) -> None:
        self.buffered -= n_bytes
        while self.paused and self.buffered < self.buffer_budget:
            conn = next(iter(self.paused))
            del self.paused[conn]
            if conn.reading is not None:
                self._read(conn)

    def _send_quietly(self, conn: _Conn, data: bytes) -> None:
        """A short write on the non-blocking socket; it fits the empty send buffer of
        a connection that has not been answered yet, and a client gone is no error."""
        try:
            conn.sock.send(data)
        except OSError:
            pass
