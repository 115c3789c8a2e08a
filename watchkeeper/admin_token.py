"""The admin token of a local run: generated on first start, kept in a file only its
owner can read, reused afterwards (as notebook servers do).

Only ``make run`` uses this, and only when ``WATCHKEEPER_ADMIN_TOKEN`` is unset: a
configured token always wins.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

TOKEN_BYTES = 32


@dataclass(frozen=True)
class AdminToken:
    path: Path
    value: str
    created: bool
    """True when this call generated the token (print it then, and only then)."""


def ensure_admin_token(path: Path) -> AdminToken:
    """The token in ``path``, generating one if the file is missing or empty.

    The file is created with mode 0600 and never readable by others in between; an
    existing file that others could read is narrowed to 0600.
    """
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        value = ""
    if value:
        if stat.S_IMODE(path.stat().st_mode) != 0o600:
            path.chmod(0o600)
        return AdminToken(path, value, created=False)
    value = secrets.token_urlsafe(TOKEN_BYTES)
    write_secret(path, value)
    return AdminToken(path, value, created=True)


def write_secret(path: Path, value: str) -> None:
    """Write ``value`` to ``path`` readable by its owner only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write a new file and rename it over the old: the token is never half-written,
    # and O_EXCL with mode 0600 means it is never readable by others, not even briefly.
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(value + "\n")
    os.chmod(partial, 0o600)  # the umask may have narrowed it further; make it exact
    os.replace(partial, path)
