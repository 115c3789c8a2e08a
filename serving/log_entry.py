"""One log entry: a request and the predictions it produced, as one journal line.

The request thread builds an entry from what it already has (the validated feature
columns, the prediction arrays) and serialises it once, with no per-row work; the
writer thread parses the line back and turns it into table rows.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson

from serving.log_features import encoded_columns, plain_json
from watchkeeper.errors import ErrorBody

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_FEW = 32  # values checked one by one rather than by one NumPy call


def prediction_id(request_id: str, index: int, single: bool) -> str:
    """A single-record request's prediction shares its request id; batch items are
    ``<request_id>.<index>``."""
    return request_id if single else f"{request_id}.{index}"


_TAB = re.compile(rb"\t")  # searches a view of the journal's buffer, which has no find()

_NONE = type(None)
# The JSON types each header field is journaled as (by :meth:`LogEntry.to_line`, exact:
# a bool is no status code). A line that parses with others is not an entry of this
# version (damaged, or another version's); the database drivers would refuse some in
# ways that read as the database's fault, and SQLite would store others as they are.
_HEADER_TYPES: dict[str, tuple[type, ...]] = {
    "request_id": (str,),
    "received_us": (int,),
    "endpoint": (str,),
    "method": (str,),
    "status_code": (int,),
    "latency_seconds": (float, int),
    "model_version": (str, _NONE),
    "error": (dict, _NONE),
    "body": (str, _NONE),
    "client_request_id": (str, _NONE),
    "single": (bool,),
    "values": (list,),
    "lower": (list,),
    "upper": (list,),
    "ood": (list, _NONE),
    "probabilities": (list, _NONE),
}

# A body whose only top-level member is ``columns``: the object after the colon is
# then the body's columns, from there to its last ``}``.
_COLUMNAR_BODY = re.compile(rb'\A[ \t\r\n]*\{[ \t\r\n]*"columns"[ \t\r\n]*:')


def columnar_body_columns(body: bytes) -> str | None:
    """The ``columns`` object of a columnar ``/predict`` body as the client sent it, to
    journal as it is instead of serialising the validated columns again (lists: ~1.5 µs
    a row of 71 features; a batch whose categories validation coded is serialised
    instead, at half the text). Only for a body that passed
    validation: then it was parsed as JSON by orjson (:mod:`serving.json_body`; what
    only the fallback parser takes, ``NaN`` and ``Infinity``, validation refuses), so
    readers that decode the stored text with orjson get the validated columns, and the
    object has no other member than the schema's features. ``None`` when the body is
    not of that shape, or whose columns hold a tab or a line break (a journal line
    holds neither but the tab before its columns): the caller serialises them then.
    So, too, when the text holds another ``}`` than its last: validated columns are
    arrays of scalars, so a second ``}`` is either in a value or closes the first of two
    ``columns`` members, of which the parser kept the last (the text from the first to
    the end of the body would be no JSON)."""
    match = _COLUMNAR_BODY.match(body)
    if match is None:
        return None
    end = body.rfind(b"}")
    columns = body[match.end() : end].strip(b" \t\r\n")
    if (
        not columns.startswith(b"{")
        or columns.count(b"}") != 1
        or any(c in columns for c in (b"\t", b"\n", b"\r"))
    ):
        return None
    return columns.decode()


@dataclass(slots=True)
class LogEntry:
    request_id: str
    received_at: datetime
    endpoint: str
    method: str
    status_code: int
    latency_seconds: float
    model_version: str | None = None
    error: ErrorBody | None = None
    # A rejected request's body as stored (serving.log_body.stored_body)
    body: str | None = None
    client_request_id: str | None = None
    single: bool = True
    # Feature values by name, one list per feature, as validated (accepted requests).
    columns: dict[str, list[Any]] = field(default_factory=dict)
    values: list[float] | np.ndarray = field(default_factory=list)
    lower: list[float] | np.ndarray = field(default_factory=list)
    upper: list[float] | np.ndarray = field(default_factory=list)
    # Each prediction's OOD score as served; None when none was computed (the version
    # has no reference, the setting is off, or a line journaled before scores existed).
    ood: list[float] | np.ndarray | None = None
    # A classifier's class probabilities, one row per prediction in the version's
    # classes order (``values`` then hold the predicted class's index); None for a
    # regression model, and in a line journaled before classifiers existed.
    probabilities: list[list[float]] | np.ndarray | None = None
    # The same columns as JSON text: as read back from the journal (the writer stores
    # them as they are, without decoding and encoding them again), or as a columnar
    # body sent them (:func:`columnar_body_columns`; journaled as they are).
    columns_json: str | None = None
    # True when the caller found every value, lower and upper finite (the route checks
    # them once per request): the line then takes them without checking them again.
    finite: bool = False

    @property
    def n_items(self) -> int:
        return len(self.values)

    def to_line(self) -> bytes:
        """The entry as one journal line: a JSON header, a tab, the columns as JSON,
        ``\\n``. JSON text never holds a raw tab, so the writer can split the line
        and pass the columns on without parsing them. Never raises for content: what
        orjson refuses (a lone surrogate) is written by the standard library with
        ``\\u`` escapes, and marked, which keeps every character for the dead-letter
        file."""
        finite = self.finite
        numbers = (
            _line_numbers(self.values, finite),
            _line_numbers(self.lower, finite),
            _line_numbers(self.upper, finite),
        )
        header = {
            "request_id": self.request_id,
            "received_us": (self.received_at - _EPOCH) // _MICROSECOND,
            "endpoint": self.endpoint,
            "method": self.method,
            "status_code": self.status_code,
            "latency_seconds": self.latency_seconds,
            "model_version": self.model_version,
            "error": self.error,
            "body": self.body,
            "client_request_id": self.client_request_id,
            "single": self.single,
            "values": numbers[0],
            "lower": numbers[1],
            "upper": numbers[2],
            "ood": None if self.ood is None else _line_numbers(self.ood, False),
        }
        if self.probabilities is not None:  # a regression line stays as it was
            header["probabilities"] = self.probabilities
        try:
            return b"".join(
                (
                    orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY),
                    b"\t",
                    self.columns_bytes(),
                    b"\n",
                )
            )
        except TypeError:
            header["escaped"] = True
            escaped = (
                json.dumps(part, default=plain_json, ensure_ascii=True)
                for part in (header, self.columns)
            )
            return "\t".join(escaped).encode() + b"\n"

    def columns_bytes(self) -> bytes:
        """The columns as JSON: as journaled or sent, else serialised (lists, or an
        Arrow body's NumPy arrays and category columns: :mod:`serving.log_features`)."""
        if self.columns_json is not None:
            return self.columns_json.encode()
        return encoded_columns(self.columns)

    @classmethod
    def from_line(cls, line: bytes | memoryview) -> LogEntry:
        """Parse a journal line (without its ``\\n``; a view of the journal's buffer,
        see :mod:`serving.journal`); raises ``ValueError`` for a line that is not an
        entry, or whose text no database could store as it is. The columns part is
        copied once, into the ``str`` the database takes."""
        try:
            tab = _TAB.search(line)
            if tab is None:
                raise ValueError("no columns part")
            view = memoryview(line)
            head, columns = view[: tab.start()], view[tab.end() :]
            # PostgreSQL stores the columns as text without parsing them (migration
            # 0008): a line cut or damaged at either end must not reach it.
            if not (columns[:1] == b"{" and columns[-1:] == b"}"):
                raise ValueError("the columns part is not a JSON object")
            try:
                data = orjson.loads(head)
            except orjson.JSONDecodeError:
                data = json.loads(bytes(head))  # the escaped form :meth:`to_line` writes
            for name, value in data.items():
                allowed = _HEADER_TYPES.get(name)
                if allowed is not None and type(value) not in allowed:
                    raise ValueError(f"{name} is a {type(value).__name__}")
            if data.pop("escaped", False):
                # Re-encoding proves the text storable (a lone surrogate is not).
                columns = memoryview(orjson.dumps(json.loads(bytes(columns))))
            text = str(columns, "utf-8")
            # JSON text never holds a raw NUL; blocks a power loss left unwritten read
            # as zeros on some filesystems, possibly between intact ends (a memchr: µs).
            if "\x00" in text:
                raise ValueError("the columns part holds NUL bytes")
            received = _EPOCH + timedelta(microseconds=data.pop("received_us"))
            entry = cls(received_at=received, columns_json=text, **data)
            _check_lengths(entry)
            return entry
        except Exception as exc:  # whatever a damaged line makes fail
            raise ValueError(f"not a log entry: {exc}") from exc


def _check_lengths(entry: LogEntry) -> None:
    """One bound, score and probability row per prediction, and one prediction for a
    single record (its rows would share one id): what :meth:`LogEntry.to_line` writes."""
    n = len(entry.values)
    others = (entry.lower, entry.upper, entry.ood, entry.probabilities)
    if any(other is not None and len(other) != n for other in others):
        raise ValueError(f"bounds, scores or probabilities are not {n} long")
    if entry.single and n > 1:
        raise ValueError(f"a single record with {n} predictions")


def non_finite_name(value: float) -> str:
    """How a non-finite number is spelled where JSON cannot hold it: ``NaN``,
    ``Infinity`` or ``-Infinity`` (what ``float()`` and PostgreSQL read back)."""
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _line_numbers(values: list[float] | np.ndarray, finite: bool) -> list[Any] | np.ndarray:
    """``values`` as the journal line holds them (:func:`journal_numbers`; ``finite``:
    the caller checked them). A few float64s, a single record's, go as a list of
    Python floats, checked in the same pass: orjson writes them as the same text, and
    with a request's caches cold (after the model's ``predict``) the line cost ~2 µs
    less than through orjson's NumPy path and a check of its own (bench/README.md)."""
    if type(values) is np.ndarray and values.size <= _FEW and values.dtype.char == "d":
        numbers = values.tolist()
        if finite or all(map(math.isfinite, numbers)):
            return numbers
        return [v if math.isfinite(v) else non_finite_name(v) for v in numbers]
    return values if finite else journal_numbers(values)


def journal_numbers(values: list[float] | np.ndarray) -> list[Any] | np.ndarray:
    """``values`` as the journal line holds them: JSON has no NaN or infinity, and
    orjson writes them as ``null``, which loses which one it was; those go as their
    names (:func:`non_finite_name`), which the writer's ``float()`` reads back. The
    usual all-finite array passes as it is, after one check (element by element for a
    few values: a NumPy call costs more than that)."""
    array = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=np.float64)
    if array.size > _FEW:
        finite = bool(np.isfinite(array).all())
    else:
        numbers = array.tolist()
        finite = all(map(math.isfinite, numbers))
    if finite:
        return values
    return [v if math.isfinite(v) else non_finite_name(v) for v in array.tolist()]
