"""Dead-letter files: what the writer sets aside reads back exactly as it was sent."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from serving.dead_letter import DeadLetters, Span
from serving.journal import Position
from serving.log_body import received_body, stored_body
from serving.log_entry import LogEntry
from serving.metrics import LogMetrics
from serving.prediction_log import PredictionLog
from tests.serving.log_entries import make_entry
from watchkeeper.db.engine import create_engine

# Text no escaping may confuse: NUL, lone surrogates, backslashes, and the escapes of
# JSON and of the log's bodies spelled out.
AWKWARD_TEXT = [
    "nul\x00inside",
    "lone \ud800 high",
    "lone \udfff low",
    "back\\slash",
    "spelled \\x00 and \\xff",
    "spelled \\u0000 and \\ud800",
    'quote " tab \t cr \r',
    "astral \U0001f3e0",
]
# Bodies as received: NUL, invalid UTF-8, a UTF-8-encoded surrogate, and their escapes
# spelled out.
AWKWARD_BODIES = [
    b"\x00",
    b"\\x00",
    b"\xff",
    b"\\xff",
    b"\xed\xa0\x80",
    b"\\\\x00",
    b"back\\slash",
    b"plain",
]


def _unstorable(n: int, text: str, body: bytes) -> LogEntry:
    """An entry holding ``text`` and ``body`` that no database stores: a lone surrogate
    (even entries: journaled by the standard library's escaping encoder), or no model
    version for its prediction (odd entries: journaled by orjson)."""
    if n % 2 == 0:
        return make_entry(
            n,
            columns={"x": [n], "text": [text], "poison": ["\ud800"]},
            client_request_id=text,
            body=stored_body(body),
        )
    return make_entry(
        n,
        columns={"x": [n], "text": [text]},
        client_request_id=text,
        body=stored_body(body),
        model_version=None,
    )


@pytest.fixture
def log(database_url: str, tmp_path: Path) -> Iterator[PredictionLog]:
    engine = create_engine(database_url)
    log = PredictionLog(
        engine,
        tmp_path / "journal",
        LogMetrics(CollectorRegistry()),
        flush_interval=0.01,
        write_interval=0.01,
    )
    yield log
    log.close(timeout=10)
    engine.dispose()


def _dead_lines(directory: Path) -> list[bytes]:
    dead = DeadLetters(directory)
    return [line for path in dead.files() for line in dead.read(path)]


def test_dead_lettered_lines_read_back_exactly_as_sent(
    log: PredictionLog, tmp_path: Path, database_url: str
) -> None:
    entries = [
        _unstorable(n, text, body)
        for n, (text, body) in enumerate(zip(AWKWARD_TEXT, AWKWARD_BODIES, strict=True))
    ]
    damaged = b"\xff\xfe not json \x00 \\x00 \\\\ \r\xed\xa0\x80"
    for entry in entries:
        log.submit(entry)
    log._journal.append(damaged + b"\n")  # noqa: SLF001
    log.start()
    assert log.flush(timeout=60)

    lines = _dead_lines(tmp_path / "journal")
    # byte for byte, in journal order
    assert lines == [e.to_line().rstrip(b"\n") for e in entries] + [damaged]
    for line, text, body in zip(lines, AWKWARD_TEXT, AWKWARD_BODIES, strict=False):
        head, _, columns = line.partition(b"\t")
        header = json.loads(head)
        assert header["client_request_id"] == text
        assert json.loads(columns)["text"] == [text]
        assert received_body(header["body"]) == body
    engine = create_engine(database_url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM requests")).scalar() == 0
    engine.dispose()


def _at(offset: int, segment: int = 0) -> Position:
    return Position(segment, offset)


def test_lines_set_aside_before_are_neither_written_nor_counted_again(tmp_path: Path) -> None:
    """A replay after a crash between setting lines aside and the checkpoint: its chunk
    may be the same, longer (more was journaled by then) or shorter (a smaller batch
    setting), or cross into the next segment."""
    dead = DeadLetters(tmp_path)
    first = dead.write(Span("j-1-ab", _at(0), _at(300)), [(_at(100), b"a"), (_at(200), b"b")])
    assert (first.written, first.already) == (2, 0)
    assert first.path is not None and stat.S_IMODE(first.path.stat().st_mode) == 0o600

    same = dead.write(Span("j-1-ab", _at(0), _at(300)), [(_at(100), b"a"), (_at(200), b"b")])
    shorter = dead.write(Span("j-1-ab", _at(0), _at(150)), [(_at(100), b"a")])
    longer = dead.write(
        Span("j-1-ab", _at(0), _at(10, segment=1)), [(_at(200), b"b"), (_at(0, segment=1), b"c")]
    )
    other_journal = dead.write(Span("j-2-cd", _at(0), _at(300)), [(_at(100), b"a")])

    assert (same.path, same.written, same.already) == (None, 0, 2)
    assert (shorter.path, shorter.written, shorter.already) == (None, 0, 1)
    assert (longer.written, longer.already) == (1, 1)
    assert other_journal.written == 1
    assert longer.path is not None and dead.read(longer.path) == [b"c"]
    assert sorted(line for path in dead.files() for line in dead.read(path)) == [
        b"a",
        b"a",
        b"b",
        b"c",
    ]


def test_a_file_half_written_by_a_killed_process_is_not_taken_for_one(tmp_path: Path) -> None:
    dead = DeadLetters(tmp_path)
    span = Span("j-1-ab", _at(0), _at(300))
    left = tmp_path / f".{span.file_name}.0123.tmp"  # killed before its rename
    left.write_bytes(b"half a li")

    written = dead.write(span, [(_at(100), b"a whole line")])

    assert written.written == 1
    assert [p.name for p in tmp_path.iterdir()] == [span.file_name]
    assert dead.read(tmp_path / span.file_name) == [b"a whole line"]
