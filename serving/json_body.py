"""Request bodies read and parsed as JSON, the same way for every endpoint.

A body is accepted only if it is valid UTF-8 JSON whose strings are all Unicode text:
a lone UTF-16 surrogate (``"\\ud800"``) is legal JSON syntax but no character, and no
later step (orjson, PostgreSQL, a log line) can encode it, so it is refused here with
the path of the string or key holding it. ``NaN``/``Infinity`` literals are not JSON
either, but clients send them; they parse so that validation can name their field.

Such a body goes to the standard library's parser, which is lenient where orjson is
strict; what it returns must still be what orjson would have read, less the values
validation then refuses. So it reads integers as orjson does (past 64 bits a float),
and it refuses a key repeated in one object (400 naming each): either parser keeps the
last value, and the first would be hidden from validation while a columnar body's text
is journaled as sent (``serving.log_entry.columnar_body_columns``), so a ``NaN`` or a
lone surrogate hidden that way reached the log, where no reader could decode it. A body
orjson reads keeps its last value for a repeated key, and its text reads back as that.

Bodies are read as sent: a ``Content-Encoding`` other than ``identity`` is refused
(415) rather than read as if it were none, and so is a JSON body declared in a
``charset`` other than UTF-8 (JSON is UTF-8, RFC 8259 section 8.1).
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from itertools import islice
from typing import Any

import orjson
from flask import g, request
from gunicorn.http.errors import ParseException

from serving.json_paths import Members, path_text, printable, walk
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


_INT64_MIN, _UINT64_MAX = -(1 << 63), (1 << 64) - 1  # orjson's integers; wider are floats
_UTF_8 = frozenset({"utf-8", "utf8"})
_IDENTITY = "identity"


class _RepeatedKey(ValueError):
    """A key twice in one object of a body only the lenient parser reads."""


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
    require_json_type()
    return parse_json(json_request_body())


def require_json_type() -> None:
    """415 unless the current request's body is declared JSON."""
    if not request.is_json:
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {request.mimetype or 'none'!r}"
        )


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
        payload = json.loads(text, parse_int=_parse_int, object_pairs_hook=_object)
    except _RepeatedKey as exc:
        problems = list(islice(_repeated_keys(text), MAX_PROBLEMS))
        fields = ", ".join(p.field for p in problems[:5])
        raise BadRequest(
            f"body repeats a key in one object{f', at {fields}' if fields else ''}: "
            "send each key once",
            details=problems,
        ) from exc
    except _NumberTooLong as exc:
        # Valid JSON, but an integer Python will not convert (sys.int_info); 422 as
        # for a shorter number too large for a float.
        raise ValidationFailed(
            f"body holds a number of {exc.digits:,} digits: number is too large "
            f"(at most {sys.get_int_max_str_digits():,} digits are read)"
        ) from exc
    except RecursionError as exc:  # past orjson's depth, and the interpreter's
        raise BadRequest("body is nested too deeply to read (arrays and objects)") from exc
    except ValueError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc
    if _SURROGATE_ESCAPE.search(text):
        problems = list(islice(_lone_surrogates(payload), MAX_PROBLEMS))
        if problems:
            fields = ", ".join(p.field for p in problems[:5])
            raise BadRequest(
                f"body holds a lone UTF-16 surrogate escape, which is not a Unicode "
                f"character, at {fields}",
                details=problems,
            )
    return payload


def _parse_int(text: str) -> int | float:
    """An integer as orjson reads it: ``int`` within 64 bits (signed, or unsigned),
    past that the nearest float. A wider ``int`` would pass validation and then be
    refused by the journal's orjson, the request answered and its log entry set aside.
    One past a float's range stays an ``int``, which validation refuses as too large
    (orjson refuses it too)."""
    digits = len(text) - text.startswith("-")
    if digits > (sys.get_int_max_str_digits() or digits):
        raise _NumberTooLong(digits)
    number = int(text)
    if _INT64_MIN <= number <= _UINT64_MAX:
        return number
    try:
        return float(number)
    except OverflowError:
        return number


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object of the lenient parse; :class:`_RepeatedKey` if a key is in it twice."""
    value = dict(pairs)
    if len(value) != len(pairs):
        raise _RepeatedKey
    return value


def _repeated_keys(text: str) -> Iterator[FieldProblem]:
    """Every key repeated in an object of ``text``, by path (parsed again, which only a
    refused body pays for; numbers left as text, whatever their length)."""
    try:
        parsed = json.loads(text, object_pairs_hook=Members, parse_int=str, parse_float=str)
    except (ValueError, RecursionError):  # nested deeper than the first parse got
        return
    for node, value in walk(parsed):
        if isinstance(value, Members):
            counts = Counter(key for key, _ in value)
            for key, count in counts.items():
                if count > 1:
                    yield FieldProblem(
                        path_text((node, key)), f"appears {count} times in one object"
                    )


def _gunicorn_text(exc: ParseException) -> str:
    """gunicorn's exception as a sentence (some print the bytes they refused)."""
    return str(exc)[:200] or type(exc).__name__


def _lone_surrogates(payload: Any) -> Iterator[FieldProblem]:
    """Every string or key holding a lone surrogate, by path, in document order."""
    for node, value in walk(payload):
        if node is not None and isinstance(key := node[1], str):
            if found := _SURROGATE.search(key):
                yield FieldProblem(path_text(node), _problem(found.group(), "key"))
        if isinstance(value, str) and (found := _SURROGATE.search(value)):
            yield FieldProblem(path_text(node), _problem(found.group(), "value"))


def _problem(surrogate: str, what: str) -> str:
    return (
        f"{what} holds a lone UTF-16 surrogate {printable(surrogate)}, "
        "which is not a Unicode character"
    )
