"""Ground truth for earlier predictions: validation and storage of ``/feedback``.

Feedback is written synchronously (it is not on the prediction path) and all or
nothing: a batch with an id that has other feedback stores none of its items. The same
label for an id again is accepted, and stored once: a retry after a 503 whose write
may have been committed (:mod:`serving.request_database`).

A label is accepted whether or not its prediction has reached the log: labels often
arrive in bulk right after their predictions (backfills), while the prediction still
waits in a worker's journal. The monitor joins labels to predictions by id when it
computes accuracy, and counts a label whose prediction is still missing
``feedback_orphan_seconds`` after it arrived as an orphan (a client sending ids that
were never issued). The response says how many ids are not in the log yet, read from
the logged request each id names (:mod:`watchkeeper.prediction_ids`).

What ``actual`` may be depends on the task of the model version that made the
prediction (:mod:`serving.label_rules`; the served version's for a prediction not in
the log yet): a finite number for a regression model; a class label (a string, an
integer or a boolean) for a classifier, stored as its text in ``label``
(:func:`watchkeeper.task.label_text`) and, when it is a number, in ``actual`` too. A
label outside that version's classes is stored: it is a real outcome, which the
monitor counts as wrong.

A request reads the database once before its insert (:func:`read_log`): the logged
requests its ids name, which say each label's rule and how many ids are not logged yet,
and the labels stored for its ids, which say what is a duplicate (it read the requests
twice, on two connections: once for the rules, again for the count).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from serving.label_rules import LabelRule
from serving.validation import BOOLEAN_CATEGORIES, BOOLEAN_SPELLINGS
from watchkeeper.db.arrival import arrival_time
from watchkeeper.db.prediction_seq import ITEMS_PER_REQUEST
from watchkeeper.db.tables import feedback
from watchkeeper.errors import (
    BadRequest,
    DuplicateFeedback,
    FieldProblem,
    ModelNotAvailable,
    PayloadTooLarge,
    ValidationFailed,
    database_errors,
)
from watchkeeper.prediction_ids import LoggedRequest, logged_requests, parse_prediction_id
from watchkeeper.task import MAX_LABEL, Task, label_text

MAX_ID = 48
"""Characters of a prediction id (the width of ``feedback.prediction_id``)."""
_NO_NUL = "must not contain a NUL character (U+0000)"
_NOT_AN_ID = (
    "is no prediction id this server makes: after its request id, '.' and the item's "
    f"index, written as a plain number below {ITEMS_PER_REQUEST:,} (e.g. '.0', '.12')"
)
_LABEL_EXPECTED = "must be a class label (a string, an integer or a boolean)"
_REGRESSION = LabelRule(Task.REGRESSION)


@dataclass(frozen=True)
class FeedbackItem:
    """One label: ``actual`` is a number (a regression target, or a class label that is
    one) or None; ``label`` a class label's text, None for a regression target."""

    prediction_id: str
    actual: float | None
    label: str | None = None
    field: str = "id"
    """Where the request held the id (``items[3].id`` in a batch), for errors."""
    known_class: bool | None = None
    """For a classifier's prediction, whether the label names one of its classes."""


@dataclass(frozen=True)
class StoredFeedback:
    received_at: datetime
    accepted: int
    unmatched: int
    """Ids whose prediction is not in the log (yet)."""


@dataclass(frozen=True)
class StoredLabel:
    """The feedback stored for a prediction id."""

    actual: float | None
    label: str | None
    received_at: datetime


@dataclass(frozen=True)
class LogRead:
    """What the database says of a request's prediction ids, read once for it
    (:func:`read_log`): the logged requests that may hold them (what each label's rule
    is, :func:`serving.label_rules.label_rules`, and how many are logged yet) and the
    labels stored for them (what is a duplicate)."""

    requests: Mapping[str, LoggedRequest]
    """By request id."""
    labels: Mapping[str, StoredLabel]
    """By prediction id."""

    def logged(self, prediction_ids: Iterable[str]) -> int:
        """How many of ``prediction_ids`` the log holds."""
        held = 0
        for pid in prediction_ids:
            key = parse_prediction_id(pid)
            request = self.requests.get(key.request_id) if key is not None else None
            if key is not None and request is not None and request.holds(key):
                held += 1
        return held


NOTHING_READ = LogRead({}, {})
"""What a request whose ids are all malformed reads: nothing."""


def read_log(engine: sa.Engine, prediction_ids: list[str]) -> LogRead:
    """The logged requests holding ``prediction_ids`` (found by their keys) and the
    labels stored for them, on one connection. Outside the lock that orders feedback
    writes (held by one writer of every worker and pod at a time; SQLite's is the log
    writers' too): looking up 10,000 ids under it made every other write wait. An id
    stored meanwhile by another request is still refused, by the insert."""
    keys = (parse_prediction_id(pid) for pid in prediction_ids)
    with engine.connect() as connection:
        requests = logged_requests(connection, (k.request_id for k in keys if k is not None))
        labels = _stored_labels(connection, prediction_ids)
    return LogRead(requests, labels)


def _stored_labels(connection: sa.Connection, prediction_ids: list[str]) -> dict[str, StoredLabel]:
    query = sa.select(
        feedback.c.prediction_id, feedback.c.actual, feedback.c.label, feedback.c.received_at
    ).where(feedback.c.prediction_id.in_(prediction_ids))
    return {
        row.prediction_id: StoredLabel(row.actual, row.label, row.received_at)
        for row in connection.execute(query)
    }


@dataclass(frozen=True)
class _Candidate:
    """An item whose id is well formed: where it is, and its label as sent."""

    position: int
    dot: str
    """``items[i].``, or ``""`` for one label."""
    prediction_id: str
    actual: Any


@dataclass(frozen=True)
class FeedbackBody:
    """A ``/feedback`` body read as far as it can be without the database: the items
    whose ids are well formed, and what is wrong with the others. What each label must
    be is known once the log says which version made its prediction
    (:meth:`labels`)."""

    candidates: tuple[_Candidate, ...]
    problems: tuple[tuple[int, FieldProblem], ...]
    """By the item's position, to be named in the body's order."""

    @property
    def ids(self) -> list[str]:
        """The well-formed ids, to read the log for."""
        return [c.prediction_id for c in self.candidates]

    def labels(
        self, rules: Mapping[str, LabelRule], served: LabelRule = _REGRESSION
    ) -> list[FeedbackItem]:
        """Each ``actual`` as the model version that made its prediction takes it
        (``rules``, by prediction id), else as the ``served`` model does. 422 naming
        every bad field; 503 naming the items whose version's metadata cannot be read."""
        problems = list(self.problems)
        items: list[FeedbackItem] = []
        unreadable: list[FieldProblem] = []
        seen: set[str] = set()
        for candidate in self.candidates:
            position, dot, pid = candidate.position, candidate.dot, candidate.prediction_id
            rule = rules.get(pid, served)
            if rule.unreadable is not None:
                unreadable.append(
                    FieldProblem(
                        f"{dot}id",
                        f"was predicted by model version {rule.version}, whose metadata cannot "
                        "be read (the server log says why): what its label must be is unknown",
                    )
                )
                continue
            parsed = _parsed(pid, candidate.actual, rule, served)
            if isinstance(parsed, str):
                problems.append((position, FieldProblem(f"{dot}actual", parsed)))
                continue
            if pid in seen:
                problems.append((position, _twice(dot, pid)))
                continue
            seen.add(pid)
            items.append(replace(parsed, field=f"{dot}id") if dot else parsed)
        _refuse(problems)
        if unreadable:
            raise ModelNotAvailable(
                f"{len(unreadable)} label(s) are for predictions of a model version whose "
                "metadata cannot be read; nothing was stored",
                details=unreadable,
            )
        return items

    def refuse_without_log(self, tasks: Collection[Task]) -> None:
        """Raise the 422 a body gets whichever version made its predictions, if any: its
        malformed ids, ids sent twice, and labels that a model of none of ``tasks``
        (:meth:`serving.label_rules.RegistryTasks.possible`) takes. For when the log cannot be
        read: the 503 that the rest waits on must not hide what the client has to fix."""
        problems = list(self.problems)
        seen: set[str] = set()
        for candidate in self.candidates:
            position, dot, pid = candidate.position, candidate.dot, candidate.prediction_id
            refusal = _refused_by_every(pid, candidate.actual, tasks)
            if refusal is not None:
                problems.append((position, FieldProblem(f"{dot}actual", refusal)))
            elif pid in seen:
                problems.append((position, _twice(dot, pid)))
            seen.add(pid)
        _refuse(problems)


def parse_feedback(payload: Any, *, max_items: int) -> FeedbackBody:
    """``{"id", "actual"}`` or ``{"items": [{"id", "actual"}, ...]}``: its envelope and
    ids checked (400, 413, 422 for a body no database could make right), its labels
    kept for :meth:`FeedbackBody.labels`."""
    raw, where = _envelope(payload, max_items)
    problems: list[tuple[int, FieldProblem]] = []
    candidates: list[_Candidate] = []
    for position, (place, item) in enumerate(zip(where, raw, strict=True)):
        dot = f"{place}." if place else ""
        if not isinstance(item, dict) or set(item) != {"id", "actual"}:
            problem = FieldProblem(place or "body", "must be an object with 'id' and 'actual'")
            problems.append((position, problem))
            continue
        pid = item["id"]
        if not isinstance(pid, str) or not 0 < len(pid) <= MAX_ID:
            problem = FieldProblem(f"{dot}id", f"must be a prediction id (string of 1–{MAX_ID})")
            problems.append((position, problem))
            continue
        if "\x00" in pid:  # PostgreSQL's text cannot hold it (it raised: a 500)
            problems.append((position, FieldProblem(f"{dot}id", _NO_NUL)))
            continue
        if parse_prediction_id(pid) is None:
            # "<request>.01", "<request>.+1", an index past what a request holds: no
            # prediction will ever have it, so it could only become an orphan a day on
            problems.append((position, FieldProblem(f"{dot}id", _NOT_AN_ID)))
            continue
        candidates.append(_Candidate(position, dot, pid, item["actual"]))
    return FeedbackBody(tuple(candidates), tuple(problems))


def _twice(dot: str, pid: str) -> FieldProblem:
    return FieldProblem(f"{dot}id", f"{pid!r} appears twice in this request")


def _refuse(problems: list[tuple[int, FieldProblem]]) -> None:
    if problems:
        problems.sort(key=lambda found: found[0])
        raise ValidationFailed("invalid feedback", details=[p for _, p in problems])


def _refused_by_every(pid: str, actual: Any, tasks: Collection[Task]) -> str | None:
    """What is wrong with ``actual`` for a model of any of ``tasks``; None when one of
    them takes it. A classifier's problem when both refuse it: it says more (a number
    is a class label too)."""
    refusals = {task: _parsed(pid, actual, LabelRule(task), LabelRule(task)) for task in tasks}
    if any(not isinstance(refusal, str) for refusal in refusals.values()):
        return None
    refusal = refusals.get(Task.CLASSIFICATION, refusals.get(Task.REGRESSION))
    assert isinstance(refusal, str)
    return refusal


def _envelope(payload: Any, max_items: int) -> tuple[list[Any], list[str]]:
    """The body's items, and where each is (``items[i]``, or ``""`` for one label)."""
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object with 'id' and 'actual', or 'items'")
    if set(payload) == {"items"}:
        raw = payload["items"]
        if not isinstance(raw, list) or not raw:
            raise ValidationFailed(
                "items must be a non-empty array",
                details=[FieldProblem("items", "must be a non-empty array")],
            )
        if len(raw) > max_items:
            raise PayloadTooLarge(
                f"{len(raw)} feedback items exceed the limit of {max_items}",
                details=[FieldProblem("items", f"at most {max_items} items")],
            )
        return raw, [f"items[{i}]" for i in range(len(raw))]
    if set(payload) == {"id", "actual"}:
        return [payload], [""]
    raise BadRequest("body must have 'id' and 'actual', or an 'items' array of them")


def _parsed(pid: str, actual: Any, rule: LabelRule, served: LabelRule) -> FeedbackItem | str:
    """The label as ``rule``'s task takes it, or the problem with it (saying which
    version's task decided, when that is not the served one)."""
    if rule.task is Task.CLASSIFICATION:
        parsed = _class_label(pid, actual)
        if not isinstance(parsed, str):
            parsed = _as_class_of(parsed, rule.classes)
    else:
        parsed = _target(pid, actual)
    if isinstance(parsed, str) and rule.version is not None and rule.version != served.version:
        return f"{parsed} (its prediction was made by {rule.version}, a {rule.task} model)"
    return parsed


def _target(pid: str, actual: Any) -> FeedbackItem | str:
    """A regression target, or the problem with it."""
    if isinstance(actual, bool) or not isinstance(actual, int | float):
        return "must be a number"
    try:
        number = float(actual)
    except OverflowError:
        return "must be a finite number"
    if not math.isfinite(number):
        return "must be a finite number"
    return FeedbackItem(pid, number)


def _class_label(pid: str, actual: Any) -> FeedbackItem | str:
    """A class label, or the problem with it. A number is kept as one too (a 0/1
    outcome), unless it is too large for a float; a boolean is not a number."""
    if actual is None or isinstance(actual, dict | list):
        kind = "null" if actual is None else "an object" if isinstance(actual, dict) else "an array"
        return f"{_LABEL_EXPECTED}, got {kind}"
    if isinstance(actual, bool):
        return FeedbackItem(pid, None, label_text(actual))
    if isinstance(actual, str):
        if not actual:
            return f"{_LABEL_EXPECTED}, got an empty string"
        if len(actual) > MAX_LABEL:
            return f"must be at most {MAX_LABEL} characters long, got {len(actual)}"
        if "\x00" in actual:
            return _NO_NUL
        return FeedbackItem(pid, None, actual)
    if not isinstance(actual, int | float):
        return f"{_LABEL_EXPECTED}, got {type(actual).__name__}"
    try:
        number = float(actual)
    except OverflowError:
        return f"{_LABEL_EXPECTED}; this number is too large"
    if not math.isfinite(number):
        shown = "NaN" if number != number else f"{'-' if number < 0 else ''}Infinity"
        return f"{_LABEL_EXPECTED}, got {shown}"
    text = label_text(actual)
    if len(text) > MAX_LABEL:
        return f"must be at most {MAX_LABEL} characters long, got a number of {len(text)}"
    return FeedbackItem(pid, number, text)


def _as_class_of(item: FeedbackItem, classes: frozenset[str]) -> FeedbackItem:
    """``item`` with a text label spelling one of a boolean target's classes
    (``"true"``, ``"FALSE"``) as that class's text (pandas reads a CSV's true/false as
    booleans, so the model's classes are ``True``/``False``, and the file's own text
    was stored as a class the model did not know, counted wrong by the monitor, left
    out of retraining), and whether it names one of ``classes``."""
    label = item.label
    if label is not None and classes == BOOLEAN_CATEGORIES:
        label = BOOLEAN_SPELLINGS.get(label.lower(), label)
    return replace(item, label=label, known_class=label in classes)


def store_feedback(
    engine: sa.Engine, items: list[FeedbackItem], read: LogRead | None = None
) -> StoredFeedback:
    """Insert ``items``; raise if any id already has other feedback, and
    :class:`DatabaseUnavailable` (503) if the database cannot be used now. ``read`` is
    what the request read of the database for these ids (:func:`read_log`), read here
    when not given.

    An id that already has the same label is accepted again and not stored twice: a
    client whose request was answered 503 when the database was cut off during its
    commit cannot know whether it was stored, and retries."""
    ids = [item.prediction_id for item in items]
    with database_errors("the feedback"):
        if read is None:
            read = read_log(engine, ids)
        try:
            return _store(engine, items, read)
        except _StoredMeanwhile:
            # Another request stored some of these ids after they were looked up: look
            # again, which tells a retry of the same labels from other labels.
            with engine.connect() as connection:
                read = replace(read, labels=_stored_labels(connection, ids))
            try:
                return _store(engine, items, read)
            except _StoredMeanwhile as exc:
                # Stored meanwhile again, by yet another request: the same 409 as for
                # an id labelled before, naming the ids the insert found taken.
                raise _duplicates(_taken(engine, exc.tried)) from exc


class _StoredMeanwhile(Exception):
    """An id of ``tried`` was stored between its look-up and the insert."""

    def __init__(self, tried: list[FeedbackItem]) -> None:
        super().__init__(len(tried))
        self.tried = tried


def _duplicates(other: list[FeedbackItem]) -> DuplicateFeedback:
    """The 409 for ``other``, items whose ids have feedback, each named where it was."""
    return DuplicateFeedback(
        f"{len(other)} prediction(s) already have feedback",
        details=[
            FieldProblem(i.field, f"feedback for {i.prediction_id!r} exists") for i in other[:100]
        ],
    )


def _taken(engine: sa.Engine, tried: list[FeedbackItem]) -> list[FeedbackItem]:
    """The items of ``tried`` (none of them stored when looked up) whose ids have
    feedback now; all of ``tried`` if none has (it was removed again meanwhile)."""
    with engine.connect() as connection:
        stored = _stored_labels(connection, [i.prediction_id for i in tried])
    return [i for i in tried if i.prediction_id in stored] or tried


def _id(item: FeedbackItem) -> str:
    return item.prediction_id


def _store(engine: sa.Engine, items: list[FeedbackItem], read: LogRead) -> StoredFeedback:
    stored = read.labels
    other = [i for i in items if i.prediction_id in stored and not _same(i, stored)]
    if other:
        raise _duplicates(other)
    known = read.logged(i.prediction_id for i in items)
    new = [i for i in items if i.prediction_id not in stored]
    if not new:  # all of it stored before, as it is now: by this request's first try
        latest = max(label.received_at for label in stored.values())
        return StoredFeedback(latest, len(items), len(items) - known)
    with engine.begin() as connection:
        now = arrival_time(connection)
        try:
            connection.execute(
                feedback.insert(),
                # In id order, a guard beside the arrival lock that orders feedback
                # writers: batches sharing ids take their locks in one order. In the
                # client's order each could hold an id the other waits for: a
                # deadlock, which PostgreSQL breaks by failing one (a 503).
                [
                    {
                        "prediction_id": i.prediction_id,
                        "actual": i.actual,
                        "label": i.label,
                        "received_at": now,
                    }
                    for i in sorted(new, key=_id)
                ],
            )
        except sa.exc.IntegrityError as exc:  # a concurrent request stored the same id
            raise _StoredMeanwhile(new) from exc
    return StoredFeedback(now, len(items), len(items) - known)


def _same(item: FeedbackItem, stored: Mapping[str, StoredLabel]) -> bool:
    """Whether ``item`` is the label stored for its id (floats round-trip exactly)."""
    label = stored[item.prediction_id]
    return (label.actual, label.label) == (item.actual, item.label)
