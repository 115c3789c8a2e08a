"""Holds the model version a server process answers with."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from watchkeeper.current_pointer import CurrentPointer, UnreadableCurrent
from watchkeeper.errors import ModelNotAvailable, RegistryError
from watchkeeper.registry import ModelRegistry, RegisteredModel

OnSwap = Callable[[RegisteredModel | None, RegisteredModel], None]
Prepare = Callable[[RegisteredModel], None]
OnFailure = Callable[[str | None, str], None]
OnFallback = Callable[["Fallback | None"], None]
AfterSwap = Callable[[], None]
ServedElsewhere = Callable[[], Iterable[str]]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fallback:
    """The store does not serve ``wanted``, the version ``CURRENT`` names, because it
    would not load (``reason``); it serves ``serving`` instead, or nothing. ``wanted`` is
    ``None`` when ``CURRENT`` itself cannot be read (the reason says why)."""

    wanted: str | None
    serving: str | None
    reason: str
    at_start: bool = False

    def describe(self) -> str:
        if self.at_start:
            serving = f"serving {self.serving} instead" if self.serving else "serving nothing"
        else:
            serving = f"still serving {self.serving or 'nothing'}"
        wanted = f"model {self.wanted} not loaded" if self.wanted else "CURRENT not read"
        return f"{wanted}, {serving}: {self.reason}"


class ModelStore:
    """The current model, loaded from the registry with its integrity checks.

    :meth:`watch` follows the registry's ``current`` pointer from a background
    thread: a new version is loaded off the request path and swapped in with one
    assignment, so requests see the old model or the new one, never a failure. A
    version that fails to load leaves the old one serving, is reported by
    :attr:`fallback` (on ``/readyz``) and is not retried until the pointer moves.

    A process that starts while ``CURRENT`` names a version that will not load (a
    flipped byte, untrusted types, malformed metadata, a version that is not there)
    falls back rather than serve nothing: to the version its sibling workers serve
    (``served_elsewhere``), else to the newest earlier version that loads and that
    retraining did not reject. Otherwise one bad ``CURRENT`` plus one worker restart
    turns a refused promotion into an outage. A ``CURRENT`` that cannot be read at all
    (not UTF-8, a directory) is treated alike: refused once, reported, fallen back from.

    Loads and swaps are serialised (:meth:`load_current`, :meth:`refresh`): the watcher
    and a rollback request refreshing at once would both load and swap, counting one
    reload twice, and the slower could swap back a version ``CURRENT`` no longer names.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        prepare: Prepare | None = None,
        served_elsewhere: ServedElsewhere | None = None,
    ) -> None:
        self.registry = registry
        self._prepare = prepare
        self._served_elsewhere = served_elsewhere
        self._current: RegisteredModel | None = None
        # held across a load: a second refresh waits, then finds the version loaded
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self._fallback: Fallback | None = None
        # The CURRENT a version was refused under (its name and move): retried once
        # CURRENT is written again, though it names the same version (a rollback to it
        # after its files were restored).
        self._refused: CurrentPointer | None = None
        self._refused_current: CurrentPointer | None = None  # an unreadable CURRENT
        self._stop = threading.Event()
        self._on_swap: OnSwap | None = None
        self._on_failure: OnFailure | None = None
        self._on_fallback: OnFallback | None = None
        self._after_swap: AfterSwap | None = None

    def observe(
        self,
        on_swap: OnSwap | None = None,
        on_failure: OnFailure | None = None,
        on_fallback: OnFallback | None = None,
        after_swap: AfterSwap | None = None,
    ) -> None:
        """Callbacks for swaps, refused versions, and each change of :attr:`fallback`
        (the server updates its metrics); ``after_swap`` runs after a swap once the
        store holds the old version no more (its memory can be reclaimed then:
        :mod:`serving.heap`)."""
        self._on_swap, self._on_failure, self._on_fallback = on_swap, on_failure, on_fallback
        self._after_swap = after_swap

    @property
    def fallback(self) -> Fallback | None:
        """Set while the version ``CURRENT`` names is not the one served because it
        would not load."""
        return self._fallback

    def load_current(self) -> RegisteredModel | None:
        """Load the version ``CURRENT`` names, or fall back to a good one."""
        with self._lock:
            try:
                pointer = self.registry.current()
            except UnreadableCurrent as exc:
                self._refused_current = exc.found
                return self._start_on_fallback(None, exc)
            wanted = pointer.version
            if wanted is None:
                self.last_error = f"no model is registered as current in {self.registry.root}"
                log.error("cannot load the current model: %s", self.last_error)
                return self._current
            try:
                self._current = self._load(wanted)
                self.last_error = None
                self._set_fallback(None)
                return self._current
            except Exception as exc:  # whatever the reason, the version is refused
                return self._start_on_fallback(wanted, exc, pointer)

    def _start_on_fallback(
        self, wanted: str | None, exc: Exception, pointer: CurrentPointer | None = None
    ) -> RegisteredModel | None:
        reason = self._refuse(wanted, exc, pointer)
        self._current = self._fall_back(wanted)
        serving = self._current.version if self._current else None
        self._set_fallback(Fallback(wanted, serving, reason, at_start=True))
        if serving is not None:
            instead = wanted or "what an unreadable CURRENT names"
            log.warning("serving model %s instead of %s", serving, instead)
        return self._current

    def get(self) -> RegisteredModel:
        current = self._current
        if current is None:
            raise ModelNotAvailable(
                "no model is loaded: "
                + (self.last_error or "register one with `watchkeeper train`")
            )
        return current

    @property
    def loaded(self) -> RegisteredModel | None:
        return self._current

    def refresh(self) -> bool:
        """Load the version ``current`` names if it is not the one served; True on a swap.
        One refresh at a time: another waits for it, then finds the version loaded."""
        with self._lock:
            return self._refresh()

    def _refresh(self) -> bool:
        try:
            pointer = self.registry.current()
        except UnreadableCurrent as exc:
            return self._current_unreadable(exc)
        self._refused_current = None
        wanted = pointer.version
        loaded = self._current
        if wanted is None:
            return False
        if loaded is not None and loaded.version == wanted:
            if self._fallback is not None:  # rolled back to the version still served
                self._refused = None
                self._set_fallback(None)
            return False
        if pointer == self._refused:
            return False
        try:
            new = self._load(wanted)
        except Exception as exc:  # whatever the reason, the version is refused
            reason = self._refuse(wanted, exc, pointer)
            if loaded is None:
                return self._fall_back_late(wanted, reason)
            self._set_fallback(Fallback(wanted, loaded.version, reason))
            return False
        if not self._still_current(wanted):
            # CURRENT moved during the load (a rollback, a promotion): swapping now would
            # serve a version it no longer names; the next refresh loads what it does
            log.info("model %s loaded, but CURRENT moved meanwhile: not swapped in", wanted)
            return False
        self._current, self._refused = new, None
        self._set_fallback(None)
        log.info("now serving model %s (was %s)", new.version, loaded.version if loaded else None)
        if self._on_swap is not None:
            self._on_swap(loaded, new)
        del loaded, new  # this frame's hold on the old version
        if self._after_swap is not None:
            self._after_swap()
        return True

    def _still_current(self, version: str) -> bool:
        try:
            return self.registry.current_version() == version
        except UnreadableCurrent:
            return False

    def _current_unreadable(self, exc: UnreadableCurrent) -> bool:
        """``CURRENT`` cannot be read: refused once (logged, counted, on ``/readyz``) and
        not again until it changes; the version served stays, else one is fallen back to."""
        if exc.found == self._refused_current:
            return False
        self._refused_current = exc.found
        reason = self._refuse(None, exc)
        loaded = self._current
        if loaded is None:
            return self._fall_back_late(None, reason)
        self._set_fallback(Fallback(None, loaded.version, reason))
        return False

    def _fall_back_late(self, wanted: str | None, reason: str) -> bool:
        """Nothing served yet (no version loaded at start): fall back now."""
        new = self._fall_back(wanted)
        self._set_fallback(Fallback(wanted, new.version if new else None, reason, at_start=True))
        if new is None:
            return False
        self._current = new
        if self._on_swap is not None:
            self._on_swap(None, new)
        return True

    def _load(self, version: str) -> RegisteredModel:
        return self._prepared(self.registry.load(version))

    def _refuse(
        self, wanted: str | None, exc: Exception, pointer: CurrentPointer | None = None
    ) -> str:
        """Record that ``wanted`` will not load (``None``: ``CURRENT`` cannot be read),
        under ``pointer``: logged and counted once, not retried until ``CURRENT`` is
        written again. Returns the reason."""
        if pointer is not None:
            self._refused = pointer
        reason = str(exc)
        if isinstance(exc, RegistryError):  # an expected refusal: one line says it all
            log.error("model %s not loaded: %s", wanted or "from CURRENT", reason)
        else:
            log.error("model %s not loaded", wanted, exc_info=exc)
        if self._on_failure is not None:
            self._on_failure(wanted, reason)
        return reason

    def _fall_back(self, wanted: str | None) -> RegisteredModel | None:
        """The first candidate of :meth:`_fallback_candidates` that loads."""
        for version in self._fallback_candidates(wanted):
            try:
                return self._load(version)
            except Exception as exc:  # try the next one
                log.error("fallback model %s not loaded either: %s", version, exc)
        return None

    def _fallback_candidates(self, wanted: str | None) -> list[str]:
        """What sibling workers serve (so that every worker answers alike), then the
        versions before ``wanted``, newest first, that retraining did not judge unfit.
        Later versions are not candidates: they were never put into production. With no
        ``wanted`` (or one not registered), every version is a candidate."""
        versions = self.registry.versions()
        siblings = list(self._served_elsewhere()) if self._served_elsewhere else []
        earlier = versions[: versions.index(wanted)] if wanted in versions else versions
        candidates = [v for v in siblings if v in versions and v != wanted]
        for version in reversed(earlier):
            try:
                status = self.registry.record(version).status
            except RegistryError:
                continue
            if not status.unfit:
                candidates.append(version)
        return list(dict.fromkeys(candidates))

    def _set_fallback(self, fallback: Fallback | None) -> None:
        changed = fallback != self._fallback
        self._fallback = fallback
        self.last_error = fallback.describe() if fallback is not None else None
        if fallback is not None and fallback.serving is None:
            log.error("%s", self.last_error)
        if changed and self._on_fallback is not None:
            self._on_fallback(fallback)

    def _prepared(self, registered: RegisteredModel) -> RegisteredModel:
        """Hook: what the server derives from a version (its OOD reference) is built
        here, after the version loaded and before any request can see it."""
        if self._prepare is not None:
            self._prepare(registered)
        return registered

    def watch(self, interval: float) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.refresh()
                except Exception:  # keep watching: the registry may be mid-write
                    log.exception("model refresh failed")

        threading.Thread(target=loop, name="model-watcher", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
