"""Request bodies read and parsed as JSON, the same way for every endpoint.

A body is accepted only if it is valid UTF-8 JSON whose strings are all Unicode text:
a lone UTF-16 surrogate (``"\\ud800"``) is legal JSON syntax but no character, and no
later step (orjson, PostgreSQL, a log line) can encode it, so it is refused here with
the path of the string or key holding it. ``NaN``/``Infinity`` literals are not JSON
either, but clients send them; they parse so that validation can name their field.

Bodies are read as sent: a ``Content-Encoding`` other than ``identity`` is refused
(415) rather than read as if it were none, and so is a JSON body declared in a
``charset`` other than UTF-8 (JSON is UTF-8, RFC 8259 section 8.1).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from typing import Any

import orjson
from flask import g, request
from gunicorn.http.errors import ParseException

from watchkeeper.errors import (
    BadRequest,
    FieldProblem,
    PayloadTooLarge,
    UnsupportedContentEncoding,
    UnsupportedMediaType,
    ValidationFailed,
)

MAX_PROBLEMS = 100
# A JSON escape of a code point in the surrogate range; a hit only means "look closer".
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


_UTF_8 = frozenset({"utf-8", "utf8"})
_IDENTITY = "identity"


class _NumberTooLong(ValueError):
    """A JSON integer of more digits than Python converts (``sys.int_info``)."""

    def __init__(self, digits: int) -> None:
        super().__init__(digits)
        self.digits = digits


def request_body() -> bytes:
    """The current request's body; 413 when it is over ``MAX_CONTENT_LENGTH``, whether
    the client declared a ``Content-Length`` or streamed it chunked; 415 when it is
    encoded (``Content-Encoding``); 400 when its chunked framing is malformed."""
    encoding = request.headers.get("Content-Encoding")
    if encoding is not None and any(
        coding.strip().lower() != _IDENTITY for coding in encoding.split(",")
    ):
        raise UnsupportedContentEncoding(
            f"Content-Encoding {encoding[:40]!r} is not supported; send the body unencoded"
        )
    try:
        body = request.get_data(cache=True)
    except ParseException as exc:
        # The worker checks chunked framing before a thread sees the request; this is
        # for what it lets through (a trailer gunicorn refuses) or a worker without it.
        g.body_unreadable = True
        raise BadRequest(f"malformed chunked body: {_gunicorn_text(exc)}") from exc
    limit = request.max_content_length
    if limit is not None and request.content_length is None and len(body) >= limit:
        # Werkzeug stops reading a streamed body at the limit and returns what it has,
        # so one byte more from the server's stream tells a cut body from a whole one.
        if request.environ["wsgi.input"].read(1):
            raise PayloadTooLarge.body_over(limit)
    return body


def json_request_body() -> bytes:
    """The current request's body, to be read as JSON: 415 if its ``Content-Type``
    names a charset other than UTF-8 (the body would be misread)."""
    charset = request.mimetype_params.get("charset")
    if charset is not None and charset.strip().lower() not in _UTF_8:
        raise UnsupportedMediaType(
            f"charset {charset[:40]!r} is not supported: a JSON body is UTF-8 (RFC 8259)"
        )
    return request_body()


def request_json() -> Any:
    """The current request's body as JSON; 415 unless it is declared JSON."""
    if not request.is_json:
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {request.mimetype or 'none'!r}"
        )
    return parse_json(json_request_body())


def parse_json(body: bytes) -> Any:
    """Parse a request body; :class:`BadRequest` naming the problem if it is not
    UTF-8 JSON made of Unicode text."""
    try:
        return orjson.loads(body)  # strict: refuses invalid UTF-8 and lone surrogates
    except orjson.JSONDecodeError:
        pass
    # Refused by orjson: NaN/Infinity, text that is not Unicode, or not JSON at all.
    # The stdlib parser takes the first and would take the second too, so check it.
    try:
        text = body.decode("utf-8")  # strict: also refuses UTF-8-encoded surrogates
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"body is not valid UTF-8: {exc.reason} at byte {exc.start} "
            f"(0x{body[exc.start : exc.start + 4].hex()})"
        ) from exc
    try:
        payload = json.loads(text, parse_int=_parse_int)
    except _NumberTooLong as exc:
        # Valid JSON, but an integer Python will not convert (sys.int_info); 422 as
        # for a shorter number too large for a float.
        raise ValidationFailed(
            f"body holds a number of {exc.digits:,} digits: number is too large "
            f"(at most {sys.get_int_max_str_digits():,} digits are read)"
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc
    if _SURROGATE_ESCAPE.search(text):
        problems = [p for _, p in zip(range(MAX_PROBLEMS), _lone_surrogates(payload), strict=False)]
        if problems:
            fields = ", ".join(p.field for p in problems[:5])
            raise BadRequest(
                f"body holds a lone UTF-16 surrogate escape, which is not a Unicode "
                f"character, at {fields}",
                details=problems,
            )
    return payload


def _parse_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > (sys.get_int_max_str_digits() or digits):
        raise _NumberTooLong(digits)
    return int(text)


def _gunicorn_text(exc: ParseException) -> str:
    """gunicorn's exception as a sentence (some print the bytes they refused)."""
    return str(exc)[:200] or type(exc).__name__


def _lone_surrogates(payload: Any) -> Iterator[FieldProblem]:
    """Every string or key holding a lone surrogate, by path. Iterative: the stdlib
    parser accepts nesting deeper than Python's recursion limit allows a walk."""
    stack: list[tuple[str, Any]] = [("", payload)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if found := _SURROGATE.search(value):
                yield FieldProblem(path or "body", _problem(found.group(), "value"))
        elif isinstance(value, dict):
            children = []
            for key, child in value.items():
                where = f"{path}.{_printable(key)}" if path else _printable(key)
                if found := _SURROGATE.search(key):
                    yield FieldProblem(where, _problem(found.group(), "key"))
                children.append((where, child))
            stack.extend(reversed(children))
        elif isinstance(value, list):
            stack.extend(reversed([(f"{path}[{i}]", v) for i, v in enumerate(value)]))


def _problem(surrogate: str, what: str) -> str:
    return (
        f"{what} holds a lone UTF-16 surrogate {_printable(surrogate)}, "
        "which is not a Unicode character"
    )


def _printable(text: str) -> str:
    """``text`` with surrogates as ``\\udXXX`` escapes: error messages and the log must
    stay encodable."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
