"""The generated admin token of a local run: private, created once, reused."""

from __future__ import annotations

import stat
from pathlib import Path

from watchkeeper.admin_token import ensure_admin_token


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "var" / "admin-token"
    first = ensure_admin_token(path)
    assert first.created and len(first.value) >= 40
    assert mode(path) == 0o600
    again = ensure_admin_token(path)
    assert (again.value, again.created) == (first.value, False)
    assert [p.name for p in path.parent.iterdir()] == ["admin-token"]  # no partial file left


def test_a_token_file_others_can_read_is_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "admin-token"
    path.write_text("chosen-token\n")
    path.chmod(0o644)
    token = ensure_admin_token(path)
    assert (token.value, token.created, mode(path)) == ("chosen-token", False, 0o600)


def test_an_empty_token_file_gets_a_token(tmp_path: Path) -> None:
    path = tmp_path / "admin-token"
    path.write_text("\n")
    assert ensure_admin_token(path).created
    assert path.read_text().strip()
