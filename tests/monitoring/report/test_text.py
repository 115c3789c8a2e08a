"""Logged text as the report writes it (:mod:`monitoring.report.text`): valid HTML,
controls visible, the empty string labelled, long values cut."""

from __future__ import annotations

from monitoring.report.text import EMPTY, html_text, label


def test_code_points_html_forbids_are_written_as_their_escapes() -> None:
    assert html_text("a\x00b\x1b[31m<i>\ufffe\U0010ffff\n") == (
        "a\\x00b\\x1b[31m&lt;i&gt;\\ufffe\\U0010ffff\n"  # a newline is HTML's own
    )


def test_a_label_shows_every_control_and_tells_empty_from_nul() -> None:
    assert label("") == EMPTY
    assert label("\x00") == "\\x00"
    assert label("tab\there\nand\r\x07") == "tab\\there\\nand\\r\\x07"
    assert label("line\u2028sep astral \U0001f3e0") == "line\u2028sep astral \U0001f3e0"


def test_a_long_label_is_cut_with_its_full_length() -> None:
    assert label("A" * 300_000) == "A" * 80 + "… (300,000 characters)"
    assert label("B" * 80) == "B" * 80
    assert label("\x00" * 100, limit=2) == "\\x00\\x00… (100 characters)"
