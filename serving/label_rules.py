"""What ``/feedback`` takes as the label of a prediction: what the model version that
made it predicts (a number, or one of its classes), not what the served version does.

A promotion from a regression model to a classifier (or back) leaves labels to come
for the old version's predictions: checked against the served model's task, they were
refused ("must be a number" for a class) or read as the other kind. A prediction's
version is in the log (``requests.model_version``), and its task and classes in the
registry's metadata of that version.

A prediction not in the log yet (still in a worker's journal, or an id never issued)
is taken as the served version's: it was made moments ago, most likely by it. A
version whose metadata cannot be read (removed, malformed) has no rule but the reason
why, which ``/feedback`` answers with a 503 naming the item: nothing tells what its
label must be, and storing it unchecked could put a class where a number belongs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from watchkeeper.classification import Classifier, ServedModel
from watchkeeper.errors import RegistryError
from watchkeeper.prediction_ids import logged_requests, parse_prediction_id
from watchkeeper.registry import ModelRegistry
from watchkeeper.task import Task, label_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelRule:
    """What a label for a prediction of ``version`` must be: a number for a regression
    model, a class label for a classifier, whose classes' texts are ``classes``.
    ``unreadable`` says why the version's rule is not known (its metadata cannot be
    read: for the server log, as it may name paths); ``version`` is None for the
    served model when none is loaded."""

    task: Task
    classes: frozenset[str] = frozenset()
    version: str | None = None
    unreadable: str | None = None

    @classmethod
    def of_model(cls, model: ServedModel | None) -> LabelRule:
        """The rule of a loaded model; with none loaded, a number is expected, as for a
        regression model."""
        if model is None:
            return cls(Task.REGRESSION)
        classes = _texts(model.classes) if isinstance(model, Classifier) else frozenset()
        return cls(model.task, classes, model.version)


def label_rules(
    engine: sa.Engine,
    prediction_ids: Iterable[str],
    *,
    served: LabelRule,
    registry: ModelRegistry,
) -> dict[str, LabelRule]:
    """The rule of each of ``prediction_ids`` that the log holds, by the version that
    made it (ids it leaves out are the served version's). Reads the log by the
    requests' keys, and each earlier version's metadata once."""
    keys = {pid: parse_prediction_id(pid) for pid in prediction_ids}
    with engine.connect() as connection:
        logged = logged_requests(connection, {k.request_id for k in keys.values() if k})
    versions: dict[str, str] = {}
    for pid, key in keys.items():
        if key is None:
            continue
        request = logged.get(key.request_id)
        if request is not None and request.model_version and request.holds(key):
            versions[pid] = request.model_version
    rules = {version: _rule(registry, version, served) for version in set(versions.values())}
    return {pid: rules[version] for pid, version in versions.items()}


def _rule(registry: ModelRegistry, version: str, served: LabelRule) -> LabelRule:
    if version == served.version:
        return served
    try:
        record = registry.record(version)
    except RegistryError as exc:  # not registered, unreadable, malformed
        # the reason may name the registry's paths: the server log has it, not the client
        log.warning("labels for predictions of %s cannot be checked: %s", version, exc.message)
        return LabelRule(Task.REGRESSION, version=version, unreadable=exc.message)
    return LabelRule(record.task, _texts(record.classes or ()), version)


def _texts(classes: Iterable[Any]) -> frozenset[str]:
    return frozenset(label_text(c) for c in classes)
