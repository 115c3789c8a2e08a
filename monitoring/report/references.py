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
from watchkeeper.task import Task


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
                record = self.registry.record(version)
                classifier = record.task is Task.CLASSIFICATION
                self._found[version] = Reference(
                    record.feature_schema,
                    self.registry.reference(version),
                    record.classes if classifier else None,
                )
            except WatchkeeperError as exc:
                self.problems.append(f"the reference sample of {version} cannot be read: {exc}")
                self._found[version] = None
        return self._found[version]
