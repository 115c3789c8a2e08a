"""A serving worker's start-up heap is frozen: full collections skip it, and a model
swapped out is still reclaimed, reference cycles and all."""

from __future__ import annotations

import gc
import re
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from serving import heap
from serving.model_store import ModelStore
from tests.processes import Process, wait_for
from watchkeeper.registry import ModelRegistry
from watchkeeper.training import TrainedModel


@pytest.fixture
def unfreezes() -> Iterator[None]:
    """Gives the test process's heap back to the collector afterwards."""
    yield
    gc.unfreeze()


class _Cyclic:
    """Stands for a model whose objects refer to each other."""

    def __init__(self) -> None:
        self.me = self


@pytest.mark.integration
def test_each_worker_freezes_the_heap_it_loaded_before_serving(
    start_watchkeeper: Callable[..., Process],
) -> None:
    server = start_watchkeeper("serve", WATCHKEEPER_WORKERS="2")
    frozen: dict[str, int] = {}

    def both_froze() -> bool:
        text = server.log_path.read_text()
        frozen.update(re.findall(r"\[(\d+)\] \[INFO\] froze (\d+) objects", text))
        return len(frozen) == 2

    assert wait_for(both_froze, timeout=60), server.log_path.read_text()
    # The imports, the app and the model: a full collection walked all of them (~220,000
    # objects, a median 163 ms with the interpreter lock held).
    assert all(int(count) > 50_000 for count in frozen.values()), frozen
    assert server.get("/healthz").status_code == 200


def test_after_freezing_a_full_collection_walks_only_what_was_made_since(
    unfreezes: None,
) -> None:
    loaded = [{} for _ in range(10_000)]  # tracked objects alive at start
    frozen = heap.freeze_loaded()
    made_since = [{} for _ in range(100)]
    assert frozen > len(loaded)
    tracked = gc.get_objects()  # every generation's objects; the frozen ones are not in it
    assert len(tracked) < 5_000
    assert not any(obj is loaded for obj in tracked)
    assert any(obj is made_since for obj in tracked)


def test_a_swap_gives_a_replaced_model_in_a_reference_cycle_back_to_the_collector(
    unfreezes: None,
) -> None:
    model = _Cyclic()
    alive = weakref.ref(model)
    heap.freeze_loaded()
    del model
    gc.collect()
    assert alive() is not None, "a frozen cycle is not collected"

    heap.refreeze()

    assert alive() is None
    assert gc.get_freeze_count() > 0, "what is still alive is frozen again"


def test_refreeze_leaves_a_process_that_never_froze_alone() -> None:
    assert gc.get_freeze_count() == 0
    heap.refreeze()
    assert gc.get_freeze_count() == 0


def test_after_swap_runs_once_the_store_holds_the_old_version_no_more(
    registry_dir: Path, trained: TrainedModel
) -> None:
    registry = ModelRegistry(registry_dir)
    store = ModelStore(registry)
    freed: list[bool] = []

    def after_swap() -> None:
        gc.collect()
        freed.append(old() is None)

    store.observe(after_swap=after_swap)
    first = store.load_current()
    assert first is not None
    old = weakref.ref(first)
    del first
    registry.register(trained)  # v2 becomes current

    assert store.refresh() is True
    assert store.get().version == "v2"
    assert freed == [True]
    assert store.refresh() is False  # no swap, no call
    assert freed == [True]
