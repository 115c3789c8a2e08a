"""``CURRENT`` moves only from the pointer its writer read: one writer among those that
read the same pointer moves it, every other is told what it names, and a writer paused
anywhere before its move (for however long) never writes over a move it did not see.
Real files, and writers in processes of their own paused at the critical point. A
``CURRENT`` that is no pointer is one error naming the file, and a rollback to a named
version repairs it by the same compare-and-set."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
from pathlib import Path

import pytest

from watchkeeper import current_pointer
from watchkeeper.current_pointer import (
    CLAIM_PREFIX,
    CURRENT_FILE,
    MOVES_DIR,
    CurrentPointer,
    UnreadableCurrent,
)
from watchkeeper.errors import RegistryError
from watchkeeper.registry import CurrentMoved, ModelRegistry, RegisteredModel

RACERS = 8
ROUNDS = 12
DEADLINE = 120.0


def _move(
    root: Path,
    version: str,
    expected: CurrentPointer,
    start: multiprocessing.synchronize.Barrier,
    answers: multiprocessing.Queue[tuple[str, bool, str | None]],
) -> None:
    start.wait(timeout=DEADLINE)
    move = ModelRegistry(root).move_current(version, expected=expected)
    answers.put((version, move.moved, move.now.version))


def test_writers_racing_from_one_pointer_move_current_once(
    three_versions: ModelRegistry,
) -> None:
    """Processes released at once, each moving from the pointer they all read, to v2 or
    v3: one moves, and every other is refused and told what ``CURRENT`` names. Round
    after round on the same registry (a claim whose file was moved out or fenced must
    never be claimed again)."""
    root = three_versions.root
    context = multiprocessing.get_context("fork")
    for _ in range(ROUNDS):
        read = three_versions.current()
        start = context.Barrier(RACERS)
        answers: multiprocessing.Queue[tuple[str, bool, str | None]] = context.Queue()
        processes = [
            context.Process(target=_move, args=(root, f"v{1 + i % 3}", read, start, answers))
            for i in range(RACERS)
        ]
        for process in processes:
            process.start()
        told = [answers.get(timeout=DEADLINE) for _ in processes]
        for process in processes:
            process.join(DEADLINE)
            assert process.exitcode == 0

        winners = [version for version, moved, _ in told if moved]
        assert len(winners) == 1, told
        now = three_versions.current()
        assert now.version == winners[0] and now.move > read.move, (told, now)
        assert {named for _, _, named in told} == {now.version}, told
    # nothing private is left, and no claim is pending: each is a move number
    moves = root / MOVES_DIR
    assert not list(moves.glob(f"{CLAIM_PREFIX}*"))
    assert not list(moves.glob(f"*/{CURRENT_FILE}"))
    numbers = sorted(int(claim.name) for claim in moves.iterdir())
    assert numbers == list(range(1, len(numbers) + 1)) and now.move in numbers


def _move_pausing_before_install(
    root: Path,
    version: str,
    expected: CurrentPointer,
    checked: multiprocessing.synchronize.Event,
    resume: multiprocessing.synchronize.Event,
    answers: multiprocessing.Queue[tuple[bool, str | None]],
) -> None:
    def pause(_root: Path, _number: int) -> None:
        checked.set()
        assert resume.wait(DEADLINE), "never resumed"

    current_pointer.before_install = pause  # this process only: where it pauses
    move = ModelRegistry(root).move_current(version, expected=expected)
    answers.put((move.moved, move.now.version))


def _paused_writer(
    registry: ModelRegistry, version: str
) -> tuple[
    multiprocessing.process.BaseProcess,
    multiprocessing.synchronize.Event,
    multiprocessing.Queue[tuple[bool, str | None]],
]:
    """A writer in its own process that read ``CURRENT``, claimed its move and checked
    that ``CURRENT`` is unchanged, paused just before it renames its file onto it."""
    context = multiprocessing.get_context("fork")
    checked, resume = context.Event(), context.Event()
    answers: multiprocessing.Queue[tuple[bool, str | None]] = context.Queue()
    process = context.Process(
        target=_move_pausing_before_install,
        args=(registry.root, version, registry.current(), checked, resume, answers),
    )
    process.start()
    assert checked.wait(DEADLINE), "the writer never reached its install"
    return process, resume, answers


def test_a_writer_paused_after_its_check_does_not_write_over_a_later_move(
    three_versions: ModelRegistry,
) -> None:
    """The writer has checked ``CURRENT`` and stops before renaming its file onto it;
    another writer moves ``CURRENT`` meanwhile. When the first resumes, its move fails
    and the other's stands."""
    process, resume, answers = _paused_writer(three_versions, "v2")

    three_versions.set_current("v3")

    resume.set()
    assert answers.get(timeout=DEADLINE) == (False, "v3")
    process.join(DEADLINE)
    assert process.exitcode == 0
    assert three_versions.current_version() == "v3"


def test_a_writer_killed_before_its_install_holds_nobody_back(
    three_versions: ModelRegistry,
) -> None:
    process, _, _ = _paused_writer(three_versions, "v2")
    process.kill()
    process.join(DEADLINE)

    three_versions.set_current("v3")

    assert three_versions.current_version() == "v3"
    assert not list((three_versions.root / MOVES_DIR).glob("*/CURRENT")), "a claim is pending"


def test_the_moves_installed_tell_whether_a_version_was_ever_current(
    three_versions: ModelRegistry,
) -> None:
    """What was served is what the installed moves say, not what a writer meant: a move
    to v2 killed before its install and one refused (it read an older pointer) never
    served v2; v3, served and then rolled back from, was."""
    registry = three_versions
    stale = registry.current()
    process, _, _ = _paused_writer(registry, "v2")
    process.kill()
    process.join(DEADLINE)
    registry.set_current("v3")
    assert not registry.move_current("v2", expected=stale).moved
    assert registry.rollback("v1") == ("v3", "v1")

    assert registry.served_since_registered("v2") is False
    assert registry.served_since_registered("v3") is True
    assert registry.served_since_registered("v1") is True


def test_whether_a_version_was_served_is_unknown_past_an_earlier_watchkeepers_move(
    three_versions: ModelRegistry,
) -> None:
    """An earlier Watchkeeper's claims name their writer alone: the history stops there."""
    registry = three_versions
    registry.set_current("v3")
    assert registry.rollback("v1") == ("v3", "v1")
    for claim in (registry.root / MOVES_DIR).glob("*/claim"):
        claim.write_text(claim.read_text().splitlines()[0] + "\n")

    assert registry.served_since_registered("v2") is None
    assert registry.served_since_registered("v1") is True  # current now: that is known
    assert registry.move_current("v2", expected=registry.current()).moved  # still moves


def test_a_rollback_to_the_version_already_current_reaffirms_the_pointer_read(
    three_versions: ModelRegistry,
) -> None:
    """A rollback to v1 while v1 is current writes ``CURRENT`` again (servers that refused
    v1's files retry them) and refuses a writer that read v1 before it, as any move does;
    but it says it only reaffirmed that pointer, for such a writer (a retraining job) to
    tell it from a real move and move on from it."""
    read = three_versions.current()

    assert three_versions.rollback("v1") == ("v1", "v1")

    move = three_versions.move_current("v2", expected=read)
    assert not move.moved and move.now.version == "v1" and move.now.move > read.move
    assert move.now.reaffirmed(read)
    assert three_versions.current() == move.now  # read back as written
    assert three_versions.move_current("v2", expected=move.now).moved


def test_a_version_that_came_back_after_another_reaffirms_nothing(
    three_versions: ModelRegistry,
) -> None:
    """v1, then v2, then v1 again: a writer that read the first v1 must not take the last
    for its own pointer, or it would write over the move to v2 and the one back."""
    read = three_versions.current()
    three_versions.set_current("v2")

    assert three_versions.rollback("v1") == ("v2", "v1")

    now = three_versions.current()
    assert now.version == read.version and not now.reaffirmed(read)
    assert not three_versions.move_current("v3", expected=read).moved


def test_rollbacks_in_a_row_to_the_version_already_current_reaffirm_the_pointer_read(
    three_versions: ModelRegistry,
) -> None:
    """Two or three rollbacks to v1 while v1 is current (one retried): the last one
    reaffirmed the one before, not the pointer a writer read before them all, which
    then took them for a real move and gave way."""
    read = three_versions.current()

    for _ in range(3):
        assert three_versions.rollback("v1") == ("v1", "v1")
        now = three_versions.current()
        assert now.reaffirmed(read) and now.reaffirms == read.move

    move = three_versions.move_current("v2", expected=read)
    assert not move.moved and move.now.reaffirmed(read)
    assert three_versions.move_current("v2", expected=move.now).moved


def test_a_reaffirming_pointer_does_not_reaffirm_itself(three_versions: ModelRegistry) -> None:
    """A writer moves on from a pointer that reaffirms the one it read; a move that gave
    up under contention returns the very pointer the writer read, which, were it taken
    for a reaffirm of itself, would have the writer try again for ever."""
    three_versions.rollback("v1")
    reaffirming = three_versions.current()
    assert reaffirming.reaffirms is not None

    assert not reaffirming.reaffirmed(reaffirming)


def test_a_rollback_to_a_version_that_came_back_reaffirms_its_return_not_its_first_move(
    three_versions: ModelRegistry,
) -> None:
    """v1, v2, v1, then a rollback to v1 again: it reaffirms the move back to v1, so a
    writer that read the first v1 is still refused (it missed v2 and the move back)."""
    read = three_versions.current()
    three_versions.set_current("v2")
    assert three_versions.rollback("v1") == ("v2", "v1")
    back = three_versions.current()

    assert three_versions.rollback("v1") == ("v1", "v1")

    now = three_versions.current()
    assert now.reaffirmed(back) and not now.reaffirmed(read)
    assert not three_versions.move_current("v3", expected=read).moved


class _MovedWhileRollingBack(ModelRegistry):
    """Another writer moves ``CURRENT`` to v3 once the rollback has decided where to go
    (while it checks that the version loads)."""

    def load(self, version: str | None = None) -> RegisteredModel:
        loaded = super().load(version)
        ModelRegistry(self.root).set_current("v3")
        return loaded


def test_a_rollback_that_current_moved_under_is_refused(three_versions: ModelRegistry) -> None:
    three_versions.set_current("v2")
    registry = _MovedWhileRollingBack(three_versions.root)

    with pytest.raises(CurrentMoved, match="moved from v2 to v3 while rolling back to v1"):
        registry.rollback()

    assert three_versions.current_version() == "v3"


def test_a_current_written_by_hand_is_move_zero_and_moved_from(
    three_versions: ModelRegistry,
) -> None:
    (three_versions.root / "CURRENT").write_text("v2\n")
    read = three_versions.current()
    assert read == CurrentPointer("v2", 0)

    assert three_versions.move_current("v3", expected=read).moved
    assert three_versions.current_version() == "v3"
    assert (three_versions.root / "CURRENT").read_text().splitlines()[0] == "v3"


def _not_utf8(root: Path) -> None:
    (root / CURRENT_FILE).write_bytes(b"v\xff1\nmove 1 x\n")


def _a_directory(root: Path) -> None:
    (root / CURRENT_FILE).unlink()
    (root / CURRENT_FILE).mkdir()


def _empty(root: Path) -> None:
    (root / CURRENT_FILE).write_bytes(b"")


def _too_long(root: Path) -> None:
    (root / CURRENT_FILE).write_bytes(b"v1" * 10_000)


UNREADABLE = {
    "not-utf8": (_not_utf8, "is not UTF-8 text (byte 0xff at offset 1)"),
    "a-directory": (_a_directory, "cannot be read (Is a directory)"),
    "empty": (_empty, "names no version"),
    "too-long": (_too_long, "is longer than 4096 bytes"),
}


@pytest.mark.parametrize("kind", UNREADABLE)
def test_an_unreadable_current_is_a_registry_error_naming_the_file(
    three_versions: ModelRegistry, kind: str
) -> None:
    damage, problem = UNREADABLE[kind]
    damage(three_versions.root)

    with pytest.raises(UnreadableCurrent) as caught:
        three_versions.current_version()

    assert isinstance(caught.value, RegistryError)
    assert caught.value.message.startswith(f"the registry's CURRENT file {problem}")
    assert str(three_versions.root) not in caught.value.message  # answered to clients


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("kind", UNREADABLE)
def test_a_rollback_to_a_named_version_repairs_an_unreadable_current(
    three_versions: ModelRegistry, kind: str, force: bool
) -> None:
    UNREADABLE[kind][0](three_versions.root)

    assert three_versions.rollback("v2", force=force) == (None, "v2")

    assert three_versions.current_version() == "v2"


def test_a_default_rollback_from_an_unreadable_current_asks_for_a_version(
    three_versions: ModelRegistry,
) -> None:
    _not_utf8(three_versions.root)

    with pytest.raises(RegistryError, match="CURRENT file is not UTF-8.*name the version"):
        three_versions.rollback()


def test_a_repair_is_refused_when_current_was_replaced_since_it_was_read(
    three_versions: ModelRegistry,
) -> None:
    _not_utf8(three_versions.root)
    with pytest.raises(UnreadableCurrent) as caught:
        three_versions.current()
    read = caught.value.found
    (three_versions.root / CURRENT_FILE).write_bytes(b"v\xfe2\n")  # damaged again, otherwise

    move = three_versions.move_current("v3", expected=read)

    assert not move.moved and move.now.problem is not None
    assert three_versions.move_current("v3", expected=move.now).moved  # from what is there
    assert three_versions.current_version() == "v3"
