"""A rejected request's body as the log stores it: each body sent reads back as sent,
on SQLite and PostgreSQL, no two bodies are stored alike, and ordinary text is stored
as it is."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from serving.log_body import ESCAPED, cut_body, received_body, stored_body
from tests.serving.conftest import LogReader

# Bodies that are refused (400) and logged with their body; each byte and the text
# that spells its escape must stay apart.
AWKWARD_BODIES = {
    "nul": b'{"a": "\x00"}',
    "nul-spelled-out": b'{"a": "\\x00"}',
    "invalid-utf8": b'{"a": "\xff"}',
    "invalid-utf8-spelled-out": b'{"a": "\\xff"}',
    "utf8-encoded-surrogate": b'{"a": "\xed\xa0\x80"}',
    "backslashes": b'{"a": "\\\\ \\" \\u00e9 \\\\x00"}',
    "escaped-prefix": ESCAPED.encode() + b'{"a": "\\x00"}',
    "escaped-prefix-and-nul": ESCAPED.encode() + b'{"a": "\x00"}',
}
# Stored exactly as sent: UTF-8 text without NUL that does not begin with the prefix.
AS_SENT = {"nul-spelled-out", "invalid-utf8-spelled-out", "backslashes"}


def test_rejected_bodies_are_stored_apart_and_read_back_as_sent(
    make_app: Callable[..., Flask], read_log: Callable[[Flask], LogReader]
) -> None:
    app = make_app()
    client = app.test_client()
    sent = {}
    for name, body in AWKWARD_BODIES.items():
        response = client.post("/predict", data=body, content_type="application/json")
        assert response.status_code == 400, name
        sent[name] = response.json["request_id"]

    by_id = {row["request_id"]: row["body"] for row in read_log(app).requests()}
    stored = {name: by_id[request_id] for name, request_id in sent.items()}
    assert len(set(stored.values())) == len(stored), stored
    assert {name: received_body(text) for name, text in stored.items()} == AWKWARD_BODIES
    for name in AS_SENT:
        assert stored[name] == AWKWARD_BODIES[name].decode()
    for name in set(AWKWARD_BODIES) - AS_SENT:
        assert stored[name].startswith(ESCAPED)


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        (b"plain \\ text \xc3\xa9", "plain \\ text \u00e9"),
        (b"a\x00b", ESCAPED + "a\\x00b"),
        (b"a\\x00b", "a\\x00b"),
        (b"\\\x00\xff", ESCAPED + "\\\\\\x00\\xff"),
        (b"\xed\xa0\x80", ESCAPED + "\\xed\\xa0\\x80"),
        (ESCAPED.encode(), ESCAPED + ESCAPED),
        (b"", ""),
    ],
)
def test_the_stored_form_is_as_documented_and_reversible(raw: bytes, stored: str) -> None:
    assert stored_body(raw) == stored
    assert received_body(stored) == raw


def test_every_byte_and_its_spelled_out_escape_round_trip() -> None:
    bodies = [bytes([b]) for b in range(256)] + [f"\\x{b:02x}".encode() for b in range(256)]
    bodies += [b"\\\\", b"\\\\x00", b"x\\", bytes(range(256)), ESCAPED.encode() + b"\\"]
    stored = [stored_body(raw) for raw in bodies]
    assert len(set(stored)) == len(bodies)
    assert [received_body(text) for text in stored] == bodies
    for text in stored:
        assert "\x00" not in text
        text.encode("utf-8")  # no lone surrogate: both databases hold it


@pytest.mark.parametrize(
    ("raw", "limit", "kept"),
    [
        (b"abc", 5, b"abc"),
        (b"abcdef", 3, b"abc"),
        ("ab\u00e9".encode(), 3, b"ab"),  # é is 2 bytes: not cut in half
        ("a\U0001f3e0".encode(), 4, b"a"),  # 4 bytes
        ("a\U0001f3e0b".encode(), 5, "a\U0001f3e0".encode()),
        (b"a\x80\x80\x80\x80b", 3, b"a\x80\x80"),  # no UTF-8 anyway: cut at the limit
        (b"\x80\x80", 1, b"\x80"),
    ],
)
def test_a_body_is_cut_at_the_limit_between_characters(raw: bytes, limit: int, kept: bytes) -> None:
    assert cut_body(raw, limit) == kept
