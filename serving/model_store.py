"""Holds the model version a server process answers with."""

from __future__ import annotations

import logging
import threading

from watchkeeper.errors import ModelNotAvailable, RegistryError
from watchkeeper.registry import ModelRegistry, RegisteredModel

log = logging.getLogger(__name__)


class ModelStore:
    """The current model, loaded from the registry with its integrity checks.

    A failed load leaves whatever was loaded before in place and is reported by
    :attr:`last_error` (surfaced on ``/readyz``).
    """

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self._current: RegisteredModel | None = None
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def load_current(self) -> RegisteredModel | None:
        with self._lock:
            try:
                self._current = self.registry.load()
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
