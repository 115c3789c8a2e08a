"""Reading a report's ``--since``/``--until``: an ISO 8601 time or date (UTC unless it
names a zone), or a span back from now such as ``90m``, ``24h`` or ``7d``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_SPAN = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_moment(text: str, *, now: datetime | None = None) -> datetime:
    """The moment ``text`` names; ValueError with what is accepted otherwise."""
    text = text.strip()
    span = _SPAN.match(text)
    if span:
        delta = timedelta(**{_UNITS[span.group(2)]: float(span.group(1))})
        return (now or datetime.now(UTC)) - delta
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO 8601 time (2026-11-29T08:00, 2026-11-29) "
            "nor a span back from now (90m, 24h, 7d)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
