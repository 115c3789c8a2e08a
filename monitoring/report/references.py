"""Each model version's reference sample and schema (and a classifier's classes) from
the registry, read once per report; a version whose reference cannot be read is noted,
not fatal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from watchkeeper.errors import WatchkeeperError
from watchkeeper.registry import ModelRegistry
from watchkeeper.schema import FeatureSchema


@dataclass(frozen=True)
class Reference:
    schema: FeatureSchema
    sample: pd.DataFrame
    classes: tuple[Any, ...] | None = None
    """A classifier's labels in the order its logged class indices count them."""


class References:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self._found: dict[str, Reference | None] = {}
        self.problems: list[str] = []

    def get(self, version: str) -> Reference | None:
        if version not in self._found:
            try:
                metadata = self.registry.metadata(version)
                schema = FeatureSchema.from_dict(metadata["schema"])
                classes = (
                    metadata.get("classes") if metadata.get("task") == "classification" else None
                )
                self._found[version] = Reference(
                    schema,
                    self.registry.reference(version),
                    tuple(classes) if isinstance(classes, list) else None,
                )
            except (WatchkeeperError, KeyError) as exc:
                self.problems.append(f"the reference sample of {version} cannot be read: {exc}")
                self._found[version] = None
        return self._found[version]
