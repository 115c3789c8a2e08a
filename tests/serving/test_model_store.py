"""The model store on its own: a ``CURRENT`` that cannot be read is a version that will
not load (fallen back from at start, refused once and reported while serving), and
refreshes at once (the watcher's, a rollback request's) load and swap one at a time,
never to a version ``CURRENT`` moved away from during the load."""

from __future__ import annotations

import logging
import threading

import pytest

from serving.model_store import ModelStore
from watchkeeper.current_pointer import CURRENT_FILE
from watchkeeper.registry import ModelRegistry, RegisteredModel

NOT_UTF8 = "the registry's CURRENT file is not UTF-8 text"


def _damage_current(registry: ModelRegistry) -> None:
    (registry.root / CURRENT_FILE).write_bytes(b"v\xff1\nmove 1 x\n")


def test_a_store_starting_on_an_unreadable_current_falls_back_degraded(
    three_versions: ModelRegistry,
) -> None:
    _damage_current(three_versions)
    failures: list[tuple[str | None, str]] = []
    alone = ModelStore(three_versions)
    alone.observe(on_failure=lambda version, reason: failures.append((version, reason)))
    beside_v1 = ModelStore(three_versions, served_elsewhere=lambda: ["v1"])

    assert alone.load_current().version == "v3"  # the newest that loads: none is earlier
    assert beside_v1.load_current().version == "v1"
    fallback = alone.fallback
    assert fallback is not None and fallback.wanted is None and fallback.serving == "v3"
    assert NOT_UTF8 in fallback.reason
    assert alone.last_error == f"CURRENT not read, serving v3 instead: {fallback.reason}"
    assert failures == [(None, fallback.reason)]  # counted as a failed reload


def test_an_unreadable_current_is_refused_once_and_reported_until_repaired(
    three_versions: ModelRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    store = ModelStore(three_versions)
    failures: list[str | None] = []
    store.observe(on_failure=lambda version, _reason: failures.append(version))
    store.load_current()
    _damage_current(three_versions)

    with caplog.at_level(logging.ERROR):
        for _ in range(3):  # three polls
            assert store.refresh() is False

    [refusal] = [r for r in caplog.records if r.name == "serving.model_store"]
    assert refusal.exc_info is None and NOT_UTF8 in refusal.getMessage()
    assert failures == [None]
    assert store.loaded is not None and store.loaded.version == "v1"
    assert store.fallback is not None and store.fallback.serving == "v1"
    assert store.last_error is not None and NOT_UTF8 in store.last_error

    (three_versions.root / CURRENT_FILE).write_bytes(b"\xfe")  # damaged otherwise: again
    assert store.refresh() is False
    assert failures == [None, None]

    three_versions.rollback("v1")  # the repair
    assert store.refresh() is False  # v1 is still the one served
    assert store.fallback is None and store.last_error is None


class _PausedLoads:
    """Loads from versions loaded beforehand (no time spent in skops), the first load
    of ``paused`` held until :attr:`release` is set."""

    def __init__(self, registry: ModelRegistry, paused: str) -> None:
        self.loaded = {v: registry.load(v) for v in registry.versions()}
        self.paused = paused
        self.entered = threading.Event()
        self.release = threading.Event()
        self.swaps: list[tuple[str | None, str]] = []

    def load(self, version: str | None = None) -> RegisteredModel:
        assert version is not None
        return self.loaded[version]

    def prepare(self, registered: RegisteredModel) -> None:
        if registered.version == self.paused and not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(timeout=30)

    def on_swap(self, old: RegisteredModel | None, new: RegisteredModel) -> None:
        self.swaps.append((old.version if old else None, new.version))


def _paused_store(
    registry: ModelRegistry, paused: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[ModelStore, _PausedLoads]:
    loads = _PausedLoads(registry, paused)
    monkeypatch.setattr(registry, "load", loads.load)
    store = ModelStore(registry, prepare=loads.prepare)
    store.load_current()
    store.observe(on_swap=loads.on_swap)
    return store, loads


def _refresh_in_thread(store: ModelStore) -> tuple[threading.Thread, list[bool]]:
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(store.refresh()))
    thread.start()
    return thread, results


def test_a_refresh_does_not_swap_in_a_version_current_moved_away_from_during_its_load(
    three_versions: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, loads = _paused_store(three_versions, "v2", monkeypatch)
    three_versions.set_current("v2")
    watcher, results = _refresh_in_thread(store)
    assert loads.entered.wait(timeout=30)  # the watcher is loading v2

    three_versions.set_current("v3")  # a rollback or promotion meanwhile
    loads.release.set()
    watcher.join(timeout=30)

    assert results == [False] and store.loaded is not None and store.loaded.version == "v1"
    assert store.refresh() is True  # the next poll loads what CURRENT names now
    assert loads.swaps == [("v1", "v3")]


def test_refreshes_at_once_load_and_swap_one_at_a_time(
    three_versions: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher is loading v2 when a rollback to v3 refreshes on the request thread:
    the second waits, the first does not swap v2 in over v3, each swap is counted once."""
    store, loads = _paused_store(three_versions, "v2", monkeypatch)
    three_versions.set_current("v2")
    watcher, _ = _refresh_in_thread(store)
    assert loads.entered.wait(timeout=30)

    three_versions.set_current("v3")
    handler, _ = _refresh_in_thread(store)
    handler.join(timeout=1)  # it waits for the watcher (it swapped v3 in at once before)
    loads.release.set()
    for thread in (watcher, handler):
        thread.join(timeout=30)

    assert store.loaded is not None and store.loaded.version == "v3"
    assert loads.swaps == [("v1", "v3")]


def test_two_refreshes_for_the_same_version_swap_it_in_once(
    three_versions: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollback's refresh while the watcher loads the same version: one reload, not
    two (``watchkeeper_model_reloads_total`` counted 43 for 40)."""
    store, loads = _paused_store(three_versions, "v2", monkeypatch)
    three_versions.set_current("v2")
    watcher, _ = _refresh_in_thread(store)
    assert loads.entered.wait(timeout=30)

    handler, _ = _refresh_in_thread(store)
    handler.join(timeout=1)
    loads.release.set()
    for thread in (watcher, handler):
        thread.join(timeout=30)

    assert loads.swaps == [("v1", "v2")]
