"""Pydantic's report on a record read from disk or the database as one line naming
every field it refused; the caller names the file or row."""

from __future__ import annotations

from pydantic import ValidationError


def problems(exc: ValidationError, *, whole: str = "record") -> str:
    """``field.path: message`` for each refused field, joined by ``; `` (``whole``
    names a problem of the record as a whole)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or whole}: {error['msg']}"
        for error in exc.errors()
    )
