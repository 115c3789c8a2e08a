"""The model registry as the settings locate it, for the commands that read or write it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from watchkeeper.settings import StorageSettings

if TYPE_CHECKING:  # the registry pulls in scikit-learn; commands import it when they run
    from watchkeeper.registry import ModelRegistry


def open_registry(storage: StorageSettings) -> ModelRegistry:
    from watchkeeper.registry import ModelRegistry

    return ModelRegistry(storage.registry_path, trusted_types=storage.trusted_types)
