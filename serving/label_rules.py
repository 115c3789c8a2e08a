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

With the database down, no prediction's version is known; a label is still refused
(422) when no task the registry's versions have could take it
(:meth:`RegistryTasks.possible`):
"abc" for a prediction when every version is a regression model. Bad input is the
client's to fix whatever the database's state; one that some version would take waits
for the database (503).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from watchkeeper.classification import Classifier, ServedModel
from watchkeeper.errors import RegistryError
from watchkeeper.prediction_ids import LoggedRequest, parse_prediction_id
from watchkeeper.registry import MetadataStamp, ModelRegistry
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
    logged: Mapping[str, LoggedRequest],
    prediction_ids: Iterable[str],
    *,
    served: LabelRule,
    registry: ModelRegistry,
) -> dict[str, LabelRule]:
    """The rule of each of ``prediction_ids`` that the log holds, by the version that
    made it (ids it leaves out are the served version's); ``logged`` holds the logged
    requests among theirs, by request id (:func:`serving.feedback.read_log`, the one
    read of the log a ``/feedback`` request makes). Reads each earlier version's
    metadata once."""
    versions: dict[str, str] = {}
    for pid in prediction_ids:
        key = parse_prediction_id(pid)
        if key is None:
            continue
        request = logged.get(key.request_id)
        if request is not None and request.model_version and request.holds(key):
            versions[pid] = request.model_version
    rules = {version: _rule(registry, version, served) for version in set(versions.values())}
    return {pid: rules[version] for pid, version in versions.items()}


@dataclass(frozen=True)
class _VersionTask:
    """What a version's metadata, as ``stamp`` found it, says of its task: the task,
    or why it cannot be read (for the server log: it may name paths)."""

    stamp: MetadataStamp
    task: Task | None
    unreadable: str | None = None


class RegistryTasks:
    """The task of each registered version, for :meth:`possible` to answer without the
    log: read from the registry's metadata once, and again only for a version whose
    metadata file changed (registered, removed, rewritten:
    :meth:`~watchkeeper.registry.ModelRegistry.version_stamps`, a stat each) or could
    not be read. Every ``/feedback`` request asks while the database is down, when
    clients retry most; each then read and validated every version's metadata. One per
    app, shared by its request threads: a snapshot replaced whole, so a race reads a
    version twice at worst."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self._known: dict[str, _VersionTask] = {}

    def possible(self, served: LabelRule) -> frozenset[Task]:
        """The tasks a label could be checked by when the log cannot say which version
        made its prediction (the database is down): the served model's and every
        registered version's; every task when the registry, or a version's metadata,
        cannot be read (its predictions' labels could be of either kind)."""
        try:
            known = self._refreshed()
        except OSError as exc:
            log.warning("labels cannot be checked without the log: %s", exc)
            return frozenset(Task)
        tasks = {served.task}
        for version, read in known.items():
            if version == served.version:
                continue  # loaded: its task is known, whatever its metadata says now
            if read.task is None:
                log.warning(
                    "labels for predictions of %s cannot be checked: %s", version, read.unreadable
                )
                return frozenset(Task)
            tasks.add(read.task)
        return frozenset(tasks)

    def _refreshed(self) -> dict[str, _VersionTask]:
        before = self._known
        known = {}
        for version, stamp in self.registry.version_stamps().items():
            read = before.get(version)
            # what could not be read is read again: a file made readable keeps its stamp
            if read is None or read.stamp != stamp or read.task is None:
                read = self._read(version, stamp)
            known[version] = read
        self._known = known
        return known

    def _read(self, version: str, stamp: MetadataStamp) -> _VersionTask:
        try:
            return _VersionTask(stamp, self.registry.record(version).task)
        except RegistryError as exc:  # not registered any more, unreadable, malformed
            return _VersionTask(stamp, None, exc.message)


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
