"""A promoted candidate is settled served or withdrawn once: the first writer's decision
stands, in every process, and every later writer is told it instead of its own."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
from pathlib import Path

import pytest

from watchkeeper.errors import ArtifactIntegrityError, RegistryError
from watchkeeper.registry import (
    SETTLEMENT_DIR,
    SETTLEMENT_FILE,
    ModelRegistry,
    Promotion,
    PromotionSettlement,
)

RACERS = 6


def _settle(
    root: Path,
    outcome: Promotion,
    by: str,
    start: multiprocessing.synchronize.Barrier,
    answers: multiprocessing.Queue[tuple[str, str, str]],
) -> None:
    registry = ModelRegistry(root)
    start.wait(timeout=120)
    standing = registry.settle_promotion("v1", outcome, by=by, reason=f"{by} says {outcome}")
    answers.put((by, standing.by, standing.outcome))


def test_processes_racing_to_settle_a_promotion_all_see_one_decision(registry_dir: Path) -> None:
    """Processes with their own registry handle on the real registry directory, released
    at once, half serving and half withdrawing: one wins, and all are told its decision."""
    context = multiprocessing.get_context("fork")  # the parent's imports: a fast start
    start = context.Barrier(RACERS)
    answers: multiprocessing.Queue[tuple[str, str, str]] = context.Queue()
    outcomes = [Promotion.SERVED, Promotion.WITHDRAWN]
    processes = [
        context.Process(
            target=_settle,
            args=(registry_dir, outcomes[i % 2], f"racer-{i}", start, answers),
        )
        for i in range(RACERS)
    ]
    for process in processes:
        process.start()
    told = [answers.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0

    standing = ModelRegistry(registry_dir).promotion_settlement("v1")
    assert standing is not None
    assert {(winner, outcome) for _, winner, outcome in told} == {
        (standing.by, standing.outcome)
    }, "racers were told different decisions"
    assert standing.outcome is outcomes[int(standing.by.removeprefix("racer-")) % 2]
    assert standing.reason == f"{standing.by} says {standing.outcome}"
    # nothing but the settlement and the version's own files is left behind
    assert sorted(p.name for p in (registry_dir / "versions" / "v1").iterdir()) == [
        "metadata.json",
        "model.skops",
        "reference.json",
        SETTLEMENT_DIR,
    ]


def test_a_later_settlement_is_told_the_first(registry_dir: Path) -> None:
    registry = ModelRegistry(registry_dir)
    assert registry.promotion_settlement("v1") is None

    first = registry.settle_promotion("v1", Promotion.WITHDRAWN, by="slow-job", reason="lost")
    later = registry.settle_promotion("v1", Promotion.SERVED, by="recovery", reason="dead")

    assert (first.outcome, first.by, first.reason) == (Promotion.WITHDRAWN, "slow-job", "lost")
    assert later == first == registry.promotion_settlement("v1")
    # the version itself is untouched: its status is its writers' to record
    assert registry.record("v1").status == "registered"


def test_a_malformed_settlement_is_refused_naming_it(registry_dir: Path) -> None:
    registry = ModelRegistry(registry_dir)
    directory = registry_dir / "versions" / "v1" / SETTLEMENT_DIR
    directory.mkdir()
    (directory / SETTLEMENT_FILE).write_text('{"outcome": "maybe", "by": "x"}')

    with pytest.raises(ArtifactIntegrityError, match="settlement of 'v1'.*outcome"):
        registry.promotion_settlement("v1")


def test_only_a_registered_version_is_settled(registry_dir: Path) -> None:
    with pytest.raises(RegistryError, match="'v9' is not registered"):
        ModelRegistry(registry_dir).settle_promotion(
            "v9", Promotion.SERVED, by="recovery", reason="dead"
        )
    assert not (registry_dir / "versions" / "v9").exists()


def test_the_settlement_is_a_typed_record(registry_dir: Path) -> None:
    settled = ModelRegistry(registry_dir).settle_promotion(
        "v1", Promotion.SERVED, by="job", reason="promoted by run 1"
    )
    raw = (registry_dir / "versions" / "v1" / SETTLEMENT_DIR / SETTLEMENT_FILE).read_bytes()
    assert PromotionSettlement.model_validate_json(raw) == settled
    assert settled.settled_at.tzinfo is not None


def _settle_pausing_before_the_rename(
    root: Path,
    by: str,
    staged: multiprocessing.synchronize.Event,
    resume: multiprocessing.synchronize.Event,
    answers: multiprocessing.Queue[tuple[str, str]],
) -> None:
    """Settle ``v1`` served as ``by``, stopping once the private ``.settlement.*``
    directory is written whole and is about to be renamed: ``staged`` is set, and the
    writer waits there for ``resume`` (or to be killed)."""
    rename = os.rename

    def paused_rename(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        if Path(source).name.startswith(f".{SETTLEMENT_DIR}."):
            staged.set()
            assert resume.wait(120), "never resumed"
        rename(source, target)

    os.rename = paused_rename  # this process only: the hook where the writer pauses
    standing = ModelRegistry(root).settle_promotion(
        "v1", Promotion.SERVED, by=by, reason=f"{by} says served"
    )
    answers.put((standing.by, standing.outcome))


def _leftovers(registry_dir: Path) -> list[Path]:
    return sorted((registry_dir / "versions" / "v1").glob(f".{SETTLEMENT_DIR}.*"))


def test_a_killed_writers_private_directory_is_removed_and_a_live_writers_is_not(
    registry_dir: Path,
) -> None:
    """A writer killed between writing its private directory and renaming it leaves
    that directory behind; the next settlement removes it, but not the directory of a
    writer still alive and about to rename its own (it then finishes, told the
    decision that stands). Before the fix nothing removed the dead writer's."""
    context = multiprocessing.get_context("fork")
    answers: multiprocessing.Queue[tuple[str, str]] = context.Queue()
    never = context.Event()
    killed_staged = context.Event()
    killed = context.Process(
        target=_settle_pausing_before_the_rename,
        args=(registry_dir, "killed", killed_staged, never, answers),
    )
    killed.start()
    assert killed_staged.wait(120), "the writer to kill never wrote its directory"
    killed.kill()
    killed.join(120)
    [dead] = _leftovers(registry_dir)
    live_staged, live_resume = context.Event(), context.Event()
    live = context.Process(
        target=_settle_pausing_before_the_rename,
        args=(registry_dir, "live", live_staged, live_resume, answers),
    )
    live.start()
    try:
        assert live_staged.wait(120), "the live writer never wrote its directory"
        [alive] = [p for p in _leftovers(registry_dir) if p != dead]

        standing = ModelRegistry(registry_dir).settle_promotion(
            "v1", Promotion.WITHDRAWN, by="parent", reason="parent says withdrawn"
        )

        assert standing.by == "parent"
        assert _leftovers(registry_dir) == [alive], "the killed writer's directory is left"
    finally:
        live_resume.set()
    assert answers.get(timeout=120) == ("parent", Promotion.WITHDRAWN)
    live.join(120)
    assert live.exitcode == 0
    assert _leftovers(registry_dir) == []
    assert sorted(p.name for p in (registry_dir / "versions" / "v1").iterdir()) == [
        "metadata.json",
        "model.skops",
        "reference.json",
        SETTLEMENT_DIR,
    ]


def test_a_leftover_from_another_host_is_removed_only_once_old(registry_dir: Path) -> None:
    """A process id means nothing on another host (nor in a name written before names
    recorded the host): such a directory is removed once an hour older than the
    settling writer's own, by the volume's clock, and kept while it is recent."""
    version_dir = registry_dir / "versions" / "v1"
    names = {
        "old": f".{SETTLEMENT_DIR}.other-node.example.4242.0badc0de",
        "recent": f".{SETTLEMENT_DIR}.other-node.example.4243.0badc0df",
        "unnamed-old": f".{SETTLEMENT_DIR}.4244.0badc0e0",
    }
    for name in names.values():
        (version_dir / name).mkdir()
        (version_dir / name / SETTLEMENT_FILE).write_text("{}")
    two_hours_ago = (version_dir / names["recent"]).stat().st_mtime - 2 * 3600
    for key in ("old", "unnamed-old"):
        os.utime(version_dir / names[key], (two_hours_ago, two_hours_ago))

    ModelRegistry(registry_dir).settle_promotion("v1", Promotion.SERVED, by="job", reason="r")

    assert [p.name for p in _leftovers(registry_dir)] == [names["recent"]]
