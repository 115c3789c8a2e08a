"""The prediction log's journal (the spill files on local disk) on its own: what goes in
comes out once, in order, as whole lines; checkpoints, segments, the size limit, a
disk without room, and the journals of dead processes, including damaged ones."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.journal import (
    DirectoryUsage,
    Journal,
    JournalFull,
    JournalUnavailable,
    Position,
    claim_orphans,
    directory_usage,
    free_bytes,
    pending_bytes,
    remove_abandoned,
)
from tests.serving.conftest import fill_disk


def _line(n: int, size: int = 20) -> bytes:
    """A journal line of exactly ``size`` bytes, ``\\n`` included."""
    head = f"entry-{n}-".encode()
    return head + b"x" * (size - len(head) - 1) + b"\n"


@pytest.fixture
def journals(tmp_path: Path) -> Iterator[list[Journal]]:
    opened: list[Journal] = []
    yield opened
    for journal in opened:
        journal.close(may_remove=False)


def _open(journals: list[Journal], directory: Path, **options: int) -> Journal:
    options.setdefault("segment_bytes", 1 << 20)
    options.setdefault("max_bytes", 1 << 30)
    journals.append(Journal(directory, **options))
    return journals[-1]


def _drain(source: Journal, max_bytes: int = 1 << 20) -> list[bytes]:
    """Everything readable from ``source``, committed chunk by chunk."""
    lines: list[bytes] = []
    while True:
        chunk = source.read(max_bytes)
        if not chunk.lines and not chunk.moved:
            return lines
        lines.extend(bytes(line) for line in chunk.lines)
        assert source.commit(chunk)


def _segments(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.seg"))


def test_an_empty_journal_reads_nothing_and_does_not_move(
    tmp_path: Path, journals: list[Journal]
) -> None:
    journal = _open(journals, tmp_path)

    chunk = journal.read(1024)

    assert (chunk.lines, chunk.size, chunk.moved) == ([], 0, False)
    assert chunk.start == chunk.end == Position(0, 0)


def test_lines_come_back_whole_in_order_without_their_newline(
    tmp_path: Path, journals: list[Journal]
) -> None:
    journal = _open(journals, tmp_path)
    sent = [_line(n) for n in range(5)]
    for line in sent:
        journal.append(line)

    chunk = journal.read(1 << 20)

    assert chunk.lines == [line.rstrip(b"\n") for line in sent]
    assert chunk.size == sum(map(len, sent)) == journal.backlog_bytes
    assert journal.entries_appended == 5


def test_lines_read_earlier_keep_their_bytes_while_later_chunks_are_read(
    tmp_path: Path, journals: list[Journal]
) -> None:
    """Lines are views of a buffer the reader reuses: one still held when the next
    chunk is read must not see that chunk's bytes (the writer may hold a chunk's lines
    across a retry; a test or a log message may keep one)."""
    journal = _open(journals, tmp_path)
    sent = [_line(n, size=30) for n in range(12)]
    for line in sent:
        journal.append(line)

    held = []
    while chunk := journal.read(70):  # two lines a chunk
        if not chunk.lines:
            break
        held.append(chunk)
        assert journal.commit(chunk)
    assert [bytes(line) for chunk in held for line in chunk.lines] == [
        line.rstrip(b"\n") for line in sent
    ]
    first = held[0].lines[0]
    del held  # the buffers are free again: later reads may reuse them
    for line in [_line(n, size=30) for n in range(12, 20)]:
        journal.append(line)
    assert _drain(journal, 70)[-1].startswith(b"entry-19-")
    assert bytes(first) == sent[0].rstrip(b"\n")  # still held: never overwritten


def test_a_read_stops_at_its_budget_on_a_line_boundary_and_commit_moves_on(
    tmp_path: Path, journals: list[Journal]
) -> None:
    journal = _open(journals, tmp_path)
    for n in range(10):
        journal.append(_line(n))  # 20 bytes each

    first = journal.read(50)
    assert [bytes(line).split(b"-")[1] for line in first.lines] == [b"0", b"1"]  # 40 of 50 bytes
    assert journal.read(50).lines == first.lines  # nothing moves before a commit
    assert journal.commit(first)
    assert journal.backlog_bytes == 160

    rest = _drain(journal, 50)
    assert [line.split(b"-")[1] for line in rest] == [str(n).encode() for n in range(2, 10)]
    assert journal.backlog_bytes == 0


def test_a_line_longer_than_the_budget_is_read_whole(
    tmp_path: Path, journals: list[Journal]
) -> None:
    journal = _open(journals, tmp_path)
    sent = [_line(1, size=5000), _line(2)]
    for line in sent:
        journal.append(line)

    chunk = journal.read(64)

    whole = [line.rstrip(b"\n") for line in sent]
    assert chunk.lines[0] == whole[0]
    assert chunk.lines == whole[: len(chunk.lines)]  # whatever else came, whole lines


def test_an_unfinished_line_is_not_read_until_its_newline_arrives(
    tmp_path: Path, journals: list[Journal]
) -> None:
    """What a writer has only partly written must not reach the database torn."""
    journal = _open(journals, tmp_path)
    journal.append(_line(1))
    with open(tmp_path / _segments(tmp_path)[0], "ab") as segment:
        segment.write(b"entry-2-incompl")

    assert journal.read(1 << 20).lines == [_line(1).rstrip(b"\n")]


def test_segments_rotate_reads_cross_them_and_consumed_ones_are_deleted(
    tmp_path: Path, journals: list[Journal]
) -> None:
    journal = _open(journals, tmp_path, segment_bytes=100)
    sent = [_line(n) for n in range(20)]  # 400 bytes: four segments of five lines
    for line in sent:
        journal.append(line)
    assert len(_segments(tmp_path)) == 4

    assert _drain(journal, 70) == [line.rstrip(b"\n") for line in sent]
    # only the segment still appended to is left
    assert _segments(tmp_path) == [f"{journal.id}.00000003.seg"]


def test_each_line_of_a_chunk_across_segments_is_placed_where_it_starts(
    tmp_path: Path, journals: list[Journal]
) -> None:
    """A line's position is its key in dead-letter files (serving.dead_letter): it must
    name the segment and offset the line was appended at, also past a rotation, and
    after a checkpoint in the middle of a segment."""
    journal = _open(journals, tmp_path, segment_bytes=100)
    sizes = [20, 35, 50, 20, 44, 20, 61, 20, 20]
    for n, size in enumerate(sizes):
        journal.append(_line(n, size))
    first = journal.read(60)
    assert journal.commit(first)

    chunk = journal.read(1 << 20)

    assert len(first.lines) + len(chunk.lines) == len(sizes)
    assert len(_segments(tmp_path)) > 2
    for line, position in zip(chunk.lines, chunk.positions(), strict=True):
        path = tmp_path / f"{journal.id}.{position.segment:08d}.seg"
        with open(path, "rb") as segment:
            segment.seek(position.offset)
            assert segment.read(len(line) + 1) == bytes(line) + b"\n"
    assert chunk.positions()[0] == first.end


def test_a_full_journal_refuses_appends_until_a_commit_frees_room(
    tmp_path: Path, journals: list[Journal]
) -> None:
    journal = _open(journals, tmp_path, max_bytes=60)
    for n in range(3):
        journal.append(_line(n))

    assert journal.full
    with pytest.raises(JournalFull):
        journal.append(_line(3))
    assert journal.entries_appended == 3  # the refused entry is not counted

    assert journal.commit(journal.read(20))
    assert not journal.full
    journal.append(_line(3))
    assert [line.split(b"-")[1] for line in _drain(journal)] == [b"1", b"2", b"3"]


def test_a_closed_journal_refuses_appends_and_commits(
    tmp_path: Path, journals: list[Journal]
) -> None:
    journal = _open(journals, tmp_path)
    journal.append(_line(1))
    chunk = journal.read(1 << 20)

    assert journal.close(may_remove=True) is False  # not drained: kept for replay
    assert journal.closed
    with pytest.raises(JournalUnavailable):
        journal.append(_line(2))
    assert journal.commit(chunk) is False


def test_a_drained_journal_leaves_no_files_when_closed(
    tmp_path: Path, journals: list[Journal]
) -> None:
    journal = _open(journals, tmp_path, segment_bytes=50)
    for n in range(6):
        journal.append(_line(n))
    _drain(journal)

    assert journal.close(may_remove=True) is True
    assert os.listdir(tmp_path) == []


def test_a_live_journal_is_never_claimed_and_a_closed_one_is_replayed_from_its_checkpoint(
    tmp_path: Path, journals: list[Journal]
) -> None:
    dead = _open(journals, tmp_path, segment_bytes=50)
    sent = [_line(n) for n in range(8)]
    for line in sent:
        dead.append(line)
    assert dead.commit(dead.read(60))  # three lines reached the database
    live = _open(journals, tmp_path)

    assert list(claim_orphans(tmp_path, exclude=live.id)) == []  # its owner still runs
    dead.close(may_remove=False)  # as the lock goes when a process dies

    (orphan,) = claim_orphans(tmp_path, exclude=live.id)
    assert orphan.id == dead.id
    assert list(claim_orphans(tmp_path, exclude=live.id)) == []  # claimed once
    replayed = _drain(orphan, 45)
    assert replayed == [line.rstrip(b"\n") for line in sent[3:]]
    orphan.finish()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(dead.id)] == []


def test_a_damaged_checkpoint_replays_the_whole_journal(
    tmp_path: Path, journals: list[Journal]
) -> None:
    """A torn checkpoint cannot say how far the database got: replay everything (the
    store ignores rows it already holds) rather than skip entries."""
    dead = _open(journals, tmp_path)
    sent = [_line(n) for n in range(4)]
    for line in sent:
        dead.append(line)
    assert dead.commit(dead.read(45))
    dead.close(may_remove=False)
    (tmp_path / f"{dead.id}.ckpt").write_bytes(b"\x00garbage")

    (orphan,) = claim_orphans(tmp_path)

    assert _drain(orphan) == [line.rstrip(b"\n") for line in sent]
    orphan.finish()


def test_a_damaged_segment_gives_back_its_bytes_as_lines_for_the_writer_to_judge(
    tmp_path: Path, journals: list[Journal]
) -> None:
    """The journal never parses: garbage comes out as lines (the writer dead-letters
    them), and the entries after it are not lost."""
    dead = _open(journals, tmp_path)
    dead.append(_line(1))
    dead.close(may_remove=False)
    with open(tmp_path / f"{dead.id}.00000000.seg", "ab") as segment:
        segment.write(b"\xff\xfe not json \x00\n")
        segment.write(_line(2))
        segment.write(b"torn tail without a newline")

    (orphan,) = claim_orphans(tmp_path)

    assert _drain(orphan) == [
        _line(1).rstrip(b"\n"),
        b"\xff\xfe not json \x00",
        _line(2).rstrip(b"\n"),
    ]
    orphan.finish()


def test_a_released_orphan_can_be_claimed_again(tmp_path: Path, journals: list[Journal]) -> None:
    dead = _open(journals, tmp_path)
    dead.append(_line(1))
    dead.close(may_remove=False)

    (orphan,) = claim_orphans(tmp_path)
    orphan.release()  # the database went away mid-replay

    (again,) = claim_orphans(tmp_path)
    assert _drain(again) == [_line(1).rstrip(b"\n")]
    again.finish()


def test_pending_bytes_counts_segments_and_a_missing_directory_is_empty(
    tmp_path: Path, journals: list[Journal]
) -> None:
    journal = _open(journals, tmp_path / "journal", segment_bytes=50)
    for n in range(5):
        journal.append(_line(n))

    assert pending_bytes(tmp_path / "journal") == 100
    assert pending_bytes(tmp_path / "absent") == 0
    assert list(claim_orphans(tmp_path / "absent")) == []


def _fill_journal(journal: Journal) -> int:
    """Append 1 KiB lines until the disk refuses one; returns how many it took."""
    n = 0
    with pytest.raises(JournalUnavailable) as refused:
        while True:
            journal.append(_line(n, size=1024))
            n += 1
    assert not isinstance(refused.value, JournalFull)
    return n


def test_an_append_that_finds_no_room_gives_back_segments_already_in_the_database(
    small_disk: Path, journals: list[Journal]
) -> None:
    """Entries the writer has stored need no room on disk: the consumed segment is
    deleted and the append goes on in a new one, instead of refusing entries until a
    segment reaches its full size (64 MiB by default), which a full disk never let
    happen."""
    journal = _open(journals, small_disk, segment_bytes=64 << 20)  # one fills the disk
    appended = _fill_journal(journal)
    assert not journal.writable

    assert len(_drain(journal)) == appended  # the database took everything
    journal.append(_line(appended))

    assert journal.writable
    assert _segments(small_disk) == [f"{journal.id}.00000001.seg"]
    assert _drain(journal) == [_line(appended).rstrip(b"\n")]


def test_the_writer_gives_back_consumed_segments_and_finds_room_without_an_append(
    small_disk: Path, journals: list[Journal]
) -> None:
    """A worker whose journal cannot be written is not ready, so it may get no request
    to find out that there is room again: the writer finds out."""
    journal = _open(journals, small_disk, segment_bytes=64 << 20)
    _fill_journal(journal)
    _drain(journal)

    journal.reclaim(free_bytes)

    assert journal.writable
    assert _segments(small_disk) == [f"{journal.id}.00000001.seg"]  # a new, empty one
    assert pending_bytes(small_disk) == 0


def test_a_journal_that_cannot_be_created_leaves_no_files(small_disk: Path) -> None:
    filler = fill_disk(small_disk)

    with pytest.raises(OSError, match="No space left"):
        Journal(small_disk, segment_bytes=1 << 20, max_bytes=1 << 30)

    assert os.listdir(small_disk) == [filler.name]


def test_abandoned_journal_creations_are_removed_and_one_under_way_is_kept(
    tmp_path: Path,
) -> None:
    abandoned = tmp_path / "j-1-0123456789ab.ckpt.new"
    abandoned.touch()
    under_way = tmp_path / "j-2-0123456789ab.ckpt.new"
    fd = os.open(under_way, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        remove_abandoned(tmp_path)
    finally:
        os.close(fd)

    assert os.listdir(tmp_path) == [under_way.name]


def test_a_journal_is_created_even_when_a_scan_removes_its_creation_before_it_is_locked(
    tmp_path: Path, journals: list[Journal], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A creation is visible (``*.ckpt.new``) an instant before its creator locks it;
    a sibling's scan for abandoned creations that comes in that instant finds it
    unlocked and removes it. The creator then failed (its rename found nothing), and
    the worker had no journal: every entry refused until the writer tried again."""
    flock = fcntl.flock
    scans: list[bool] = []

    def scan_first(fd: int, operation: int) -> None:
        if not scans:  # the creator's lock, the first one taken: a scan comes before it
            scans.append(True)
            remove_abandoned(tmp_path)
        flock(fd, operation)

    monkeypatch.setattr("serving.journal.fcntl.flock", scan_first)
    journal = Journal(tmp_path, segment_bytes=1 << 20, max_bytes=1 << 30)
    journals.append(journal)
    monkeypatch.undo()

    assert scans == [True]
    journal.append(b"{}\t{}\n")
    assert [name for name in os.listdir(tmp_path) if name.endswith(".ckpt.new")] == []
    assert len([name for name in os.listdir(tmp_path) if name.endswith(".ckpt")]) == 1


def test_journals_of_ended_processes_take_their_bytes_out_of_a_live_journals_room(
    tmp_path: Path, journals: list[Journal]
) -> None:
    """The disk bound (workers × max_bytes) holds only if what ended processes left
    counts: a live journal gives up the room that it and the other live journals hold
    beyond the other workers' share (all of it, whatever the other workers held,
    left a pod whose one replaced worker had a full journal refusing every request)."""
    ended = _open(journals, tmp_path)
    for n in range(5):
        ended.append(_line(n))  # 100 bytes
    ended.close(may_remove=False)  # as the lock goes when a process dies
    other = _open(journals, tmp_path)
    other.append(_line(5))  # 20 bytes
    live = _open(journals, tmp_path, max_bytes=200)

    usage = directory_usage(tmp_path, own=live.id)

    assert (usage.own, usage.ended, usage.live) == (0, 100, 20)
    assert usage.elsewhere(workers=2, max_bytes=200) == 0  # within the other's share
    assert usage.elsewhere(workers=2, max_bytes=100) == 20
    assert usage.elsewhere(workers=1, max_bytes=200) == 120
    live.elsewhere = usage.elsewhere(workers=1, max_bytes=200)
    for n in range(4):  # 80 bytes: its 200 less the 120 the others hold
        live.append(_line(n))
    assert live.full
    with pytest.raises(JournalFull):
        live.append(_line(5))
    (orphan,) = claim_orphans(tmp_path, exclude=live.id)
    # one this process replays is still an ended journal's bytes, not a live one's
    assert directory_usage(tmp_path, own=live.id, replaying=[orphan.id]).ended == 100
    orphan.release()


def test_a_room_is_contested_while_ended_journals_or_half_the_others_share_take_it() -> None:
    def usage(ended: int, live: int) -> DirectoryUsage:
        return DirectoryUsage(own=0, ended=ended, live=live)

    assert usage(ended=1, live=0).contested(workers=2, max_bytes=100)
    assert not usage(ended=0, live=49).contested(workers=2, max_bytes=100)
    assert usage(ended=0, live=50).contested(workers=2, max_bytes=100)
    assert not usage(ended=0, live=99).contested(workers=3, max_bytes=100)
    assert not usage(ended=0, live=0).contested(workers=1, max_bytes=100)  # alone
    assert usage(ended=0, live=1).contested(workers=1, max_bytes=100)  # a stranger's


def test_a_journal_failed_by_an_io_error_is_tried_again_once_the_writer_has_looked(
    tmp_path: Path, journals: list[Journal], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a successful append cleared an error other than no room; an unwritable
    journal makes its worker unready, so no request came to append: one passing I/O
    error (a network volume's) kept the worker out of service for good. (An I/O error
    cannot be had from a real disk here: the write is made to fail once.)"""
    journal = _open(journals, tmp_path)
    real_write = os.write

    def failing_write(fd: int, data: bytes) -> int:
        monkeypatch.setattr(os, "write", real_write)  # once
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(JournalUnavailable):
        journal.append(_line(0))
    assert not journal.writable

    journal.reclaim(lambda _directory: 1 << 40)  # the writer's cycle

    assert journal.writable
    journal.append(_line(1))
