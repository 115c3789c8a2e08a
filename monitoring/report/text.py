"""Text from the log as the report writes it: valid HTML, every character visible, every
value of bounded length.

Category values are whatever a client sent. Control characters (NUL, ESC, BEL) are not
allowed in HTML and show as nothing; an empty category drew as a blank label beside a
NUL one; one 300 kB value, shown in a chart and in every OOD row holding it, made a
6 MB page.
"""

from __future__ import annotations

import re
from html import escape

MAX_CHARS = 80
"""A value longer than this is cut, with an ellipsis and its full length."""
EMPTY = "(empty)"
"""An empty string's label: distinct from a missing value (—) and from a NUL."""

# Code points HTML does not allow in a document (controls other than ASCII whitespace,
# noncharacters, lone surrogates): html5lib reports each as an error
_NOT_HTML = re.compile(
    "[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(
        f"{chr(plane + 0xFFFE)}{chr(plane + 0xFFFF)}" for plane in range(0, 0x110000, 0x10000)
    )
    + "]"
)
# and, in a value, every control a reader could not see (tab, newline, form feed...)
_UNSEEN = re.compile(f"[\t\n\x0c\r{_NOT_HTML.pattern[1:-1]}]")


_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escaped(match: re.Match[str]) -> str:
    """Python's escape of the character: ``\\x00``, ``\\n``, ``\\ufffe``."""
    if (short := _SHORT.get(match.group())) is not None:
        return short
    code = ord(match.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def html_text(value: object) -> str:
    """``value`` as HTML text or an attribute value: escaped, and with each code point
    HTML does not allow written as its escape (``\\x00``, ``\\x1b``, ``\\ufffe``)."""
    return escape(_NOT_HTML.sub(_escaped, str(value)), quote=True)


def label(value: str, *, limit: int = MAX_CHARS) -> str:
    """A logged value as a reader should see it (plain text: escape it for HTML with
    :func:`html_text`): every control written as its escape, so ``"a\\x00"`` and
    ``"a"`` differ; the empty string as :data:`EMPTY`; past ``limit`` characters cut,
    with an ellipsis and the full length, so the page's size is bounded whatever the
    values."""
    if value == "":
        return EMPTY
    shown = _UNSEEN.sub(_escaped, value[:limit])
    if len(value) > limit:
        return f"{shown}… ({len(value):,} characters)"
    return shown
