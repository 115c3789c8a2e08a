"""A rejected request's body as the log stores it (``requests.body``), and back.

A body that is UTF-8 text without NUL is stored as that text, unchanged (JSON a
client got wrong reads as it was sent). Any other body is stored in the escaped form:
:data:`ESCAPED` followed by the body with each backslash doubled (``\\\\``) and NUL and
each byte that is not part of a UTF-8 character written ``\\xNN`` (two lowercase hex
digits). That is text both databases hold (PostgreSQL's text holds neither NUL nor
invalid UTF-8), and it is unambiguous: an ordinary body that itself begins with
:data:`ESCAPED` is stored escaped too, so the prefix alone tells the forms apart, and
inside the escaped form a backslash always starts ``\\\\`` or ``\\xNN``. So a body
holding the four characters ``\\x00`` and one holding a NUL byte are stored apart, and
:func:`received_body` gives back the exact bytes of either.
"""

from __future__ import annotations

import re

ESCAPED = "wk-escaped:"
"""Begins every body stored in the escaped form, and no body stored as it was sent."""

# In a body decoded with ``surrogateescape``: a backslash, NUL, or a byte that is not
# part of a UTF-8 character (U+DC80-U+DCFF: what that decoder makes of bytes 0x80-0xFF).
_TO_ESCAPE = re.compile("[\\\\\x00\udc80-\udcff]")
_ESCAPE = re.compile(rb"\\(\\|x[0-9a-f]{2})")
_SURROGATE_ESCAPE_BASE = 0xDC00
_CONTINUATION_MASK, _CONTINUATION = 0xC0, 0x80
_LEAD_MIN = 0xC0
_MAX_CONTINUATIONS = 3


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code - _SURROGATE_ESCAPE_BASE if code > 0xFF else code:02x}"


def _unescape(match: re.Match[bytes]) -> bytes:
    escape = match.group(1)
    return b"\\" if escape == b"\\" else bytes((int(escape[1:], 16),))


def stored_body(raw: bytes) -> str:
    """``raw`` as ``requests.body`` holds it: as sent when it is UTF-8 text without NUL
    that does not begin with :data:`ESCAPED`, otherwise in the escaped form."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if "\x00" not in text and not text.startswith(ESCAPED):
            return text
    return ESCAPED + _TO_ESCAPE.sub(_escape, raw.decode("utf-8", "surrogateescape"))


def received_body(stored: str) -> bytes:
    """The bytes a stored body was made from (the inverse of :func:`stored_body`)."""
    if not stored.startswith(ESCAPED):
        return stored.encode()
    return _ESCAPE.sub(_unescape, stored[len(ESCAPED) :].encode())


def cut_body(raw: bytes, limit: int) -> bytes:
    """The first ``limit`` bytes of ``raw``, less the start of a UTF-8 character the cut
    would split (a text body cut mid-character would otherwise be stored escaped)."""
    if len(raw) <= limit:
        return raw
    end = limit
    # a character is a lead byte and up to three continuation bytes (10xxxxxx)
    while end > max(limit - _MAX_CONTINUATIONS, 0) and (
        raw[end] & _CONTINUATION_MASK == _CONTINUATION
    ):
        end -= 1
    return raw[:end] if raw[end] >= _LEAD_MIN else raw[:limit]
