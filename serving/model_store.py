"""Holds the model version a server process answers with."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from watchkeeper.errors import ModelNotAvailable, RegistryError
from watchkeeper.registry import ModelRegistry, RegisteredModel

OnSwap = Callable[[RegisteredModel | None, RegisteredModel], None]
Prepare = Callable[[RegisteredModel], None]
OnFailure = Callable[[str, str], None]

log = logging.getLogger(__name__)


class ModelStore:
    """The current model, loaded from the registry with its integrity checks.

    :meth:`watch` follows the registry's ``current`` pointer from a background
    thread: a new version is loaded off the request path and swapped in with one
    assignment, so requests see the old model or the new one, never a failure. A
    version that fails to load leaves the old one serving, is reported by
    :attr:`last_error` (on ``/readyz``) and is not retried until the pointer moves.
    """

    def __init__(self, registry: ModelRegistry, *, prepare: Prepare | None = None) -> None:
        self.registry = registry
        self._prepare = prepare
        self._current: RegisteredModel | None = None
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self._refused: str | None = None
        self._stop = threading.Event()
        self._on_swap: OnSwap | None = None
        self._on_failure: OnFailure | None = None

    def observe(self, on_swap: OnSwap | None = None, on_failure: OnFailure | None = None) -> None:
        """Callbacks for swaps and refused versions (the server updates its metrics)."""
        self._on_swap, self._on_failure = on_swap, on_failure

    def load_current(self) -> RegisteredModel | None:
        with self._lock:
            try:
                self._current = self._prepared(self.registry.load())
                self.last_error = None
            except RegistryError as exc:
                self.last_error = str(exc)
                log.error("cannot load the current model: %s", exc)
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
        """Load the version ``current`` names if it is not the one served; True on a swap."""
        wanted = self.registry.current_version()
        loaded = self._current
        if wanted is None or wanted == self._refused or (loaded and loaded.version == wanted):
            return False
        try:
            new = self._prepared(self.registry.load(wanted))
        except RegistryError as exc:
            self._refused = wanted
            self.last_error = (
                f"model {wanted} not loaded, still serving "
                + (loaded.version if loaded else "nothing")
                + f": {exc}"
            )
            log.error("%s", self.last_error)
            if self._on_failure is not None:
                self._on_failure(wanted, str(exc))
            return False
        self._current, self._refused, self.last_error = new, None, None
        log.info("now serving model %s (was %s)", new.version, loaded.version if loaded else None)
        if self._on_swap is not None:
            self._on_swap(loaded, new)
        return True

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
