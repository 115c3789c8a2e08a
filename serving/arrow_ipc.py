"""Request bodies in Apache Arrow's IPC streaming format, read without copying.

A batch sent as Arrow (``application/vnd.apache.arrow.stream``) reaches the model
without a JSON parse: its numeric columns are the body's own buffers, and a category
column holds each distinct text once. The table is read zero-copy from the request's
bytes, so it takes no more memory than the body, which ``MAX_CONTENT_LENGTH`` bounds,
except that IPC allows compressed buffers (LZ4, ZSTD) whose decoded sizes the client
declares: a 1 MB body of compressed zeros would decode to gigabytes. Compressed bodies
are therefore refused before anything is decoded, from the messages' metadata (a few
flatbuffer fields, read here: pyarrow does not expose them), and so is a stream that
declares more rows than the server takes, or more than :data:`MAX_MESSAGES` messages
(each costs a few µs to decode whatever it holds: a 15 MB body of empty batches took 3 s).
Arrow's file format is refused with a note: its footer may point anywhere in the body,
past what the stream check read. So are view types (``string_view`` and kin): their
16-byte views may all point at one long value, so that checking their text alone took
29 s for a 12 MB body, and their values are as long as rows × that value. A dictionary
can do the same to its rows' text; :mod:`serving.arrow_validation` bounds that.

A dictionary is sent once and used by every record batch after it: each batch's column
holds it whole, and everything after the read (full validation, the category check,
the log) works through it once per batch. A 2 MB body whose 100,000-value dictionary
served 200 one-row batches took 15 s and 2 GB of a worker's memory, and logged a 178 MB
row; a dictionary sent as deltas is worse, each batch's a new copy of all before it.
So is a dictionary that several fields of the schema share (one id): each column holds
it. The dictionaries' bytes are counted once per record batch that uses them, as the
batches see them (a delta adding to its dictionary, a replacement starting it again),
from the messages before anything is decoded, and a stream whose count passes the
body's size limit is refused (413): what a JSON body of the same rows could hold. Fields
sharing an id are found after the read, which costs nothing for them (zero-copy), and
before anything works through the columns: a valid stream sends a dictionary for every
id its fields use and none other (pyarrow refuses the rest), so more dictionary fields
than ids means some share one, and the count is multiplied by the most any id can serve.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.ipc as ipc

from watchkeeper.errors import BadRequest, FieldProblem, PayloadTooLarge

ARROW_STREAM = "application/vnd.apache.arrow.stream"
ARROW_FILE = "application/vnd.apache.arrow.file"
_FILE_MAGIC = b"ARROW1"
MAX_MESSAGES = 1024
"""Messages (schema, dictionaries, record batches) one body may hold."""

# Arrow's Message.fbs: the union types of ``Message.header`` and the fields used here.
_DICTIONARY_BATCH, _RECORD_BATCH = 2, 3
_MESSAGE_HEADER_TYPE, _MESSAGE_HEADER = 1, 2
_BATCH_LENGTH, _BATCH_COMPRESSION = 0, 3
_DICTIONARY_ID, _DICTIONARY_DATA, _DICTIONARY_DELTA = 0, 1, 2


def read_arrow_stream(body: bytes, *, max_rows: int, max_dictionary_bytes: int) -> pa.Table:
    """The body's table; 400 for what is not an uncompressed Arrow IPC stream, 413 for
    more than ``max_rows`` rows, or dictionaries of more than ``max_dictionary_bytes``
    counted once per record batch that uses them (as declared, before decoding)."""
    if body.startswith(_FILE_MAGIC):
        raise BadRequest(
            f"body is in Arrow's file format; send Arrow's streaming format as {ARROW_STREAM}"
        )
    buffer = pa.py_buffer(body)
    try:
        dictionaries = _check_messages(buffer, max_rows, max_dictionary_bytes)
        table = ipc.open_stream(buffer).read_all()
        # One pass over the column types, by type id (~0.5 µs a column): views to
        # refuse, dictionary-encoded fields to count.
        scans = [_scan(kind) for kind in table.schema.types]
        viewed = [table.schema.names[i] for i, (views, _) in enumerate(scans) if views]
        if viewed:
            raise BadRequest(
                f"Arrow view types are not accepted (columns {viewed[:5]}): "
                "send string or large_string columns, or dictionary-encoded ones"
            )
        dictionary_fields = sum(fields for _, fields in scans)
        if dictionary_fields > dictionaries.ids:  # some share an id
            shared = dictionaries.used * (dictionary_fields - dictionaries.ids + 1)
            if shared > max_dictionary_bytes:
                raise _too_many_dictionary_bytes(max_dictionary_bytes)
        # Reading checks the layout only. Full validation checks what later steps take
        # on trust, in C++ (0.06 ms for 1,000 rows of 71 columns): offsets, dictionary
        # indices in range, and UTF-8 text (surrogates included), as a JSON body's.
        table.validate(full=True)
        table.schema.names  # noqa: B018 - field names are decoded here, not later
    except (pa.ArrowException, ValueError, OSError) as exc:  # UnicodeError is a ValueError
        raise BadRequest(f"body is not a valid Arrow IPC stream: {exc}") from exc
    return table


def _scan(kind: pa.DataType) -> tuple[bool, int]:
    """Whether ``kind`` is, or holds, a view type (through dictionaries and nesting),
    and how many dictionary-encoded fields it is or holds."""
    if kind.id in _VIEW_TYPE_IDS:
        return True, 0
    if kind.id == _DICTIONARY_TYPE_ID:
        return _scan(kind.value_type)[0], 1
    fields = kind.num_fields  # most columns have none: one attribute read
    if not fields:
        return False, 0
    inner = [_scan(kind.field(i).type) for i in range(fields)]
    return any(views for views, _ in inner), sum(count for _, count in inner)


_DICTIONARY_TYPE_ID = pa.dictionary(pa.int8(), pa.string()).id


def _view_type_ids() -> frozenset[int]:
    names = ("string_view", "binary_view", "list_view", "large_list_view")
    kinds = []
    for name in names:  # each in pyarrow >= 16 only
        factory = getattr(pa, name, None)
        if factory is not None:
            kinds.append(factory(pa.int8()) if name.endswith("list_view") else factory())
    return frozenset(kind.id for kind in kinds)


_VIEW_TYPE_IDS = _view_type_ids()


@dataclass(frozen=True, slots=True)
class _Message:
    """What the checks need of one IPC message, from its metadata."""

    kind: int  # Message.fbs's header type; 0 for what is not a batch
    rows: int = 0  # a record batch's
    dictionary_id: int = 0  # a dictionary batch's
    delta: bool = False  # a dictionary batch that adds to its dictionary


@dataclass(frozen=True, slots=True)
class _Dictionaries:
    """A stream's dictionaries, from its messages."""

    ids: int  # how many distinct ids were sent
    used: int  # their bytes, counted once per record batch that uses them


def _check_messages(buffer: pa.Buffer, max_rows: int, max_dictionary_bytes: int) -> _Dictionaries:
    reader = ipc.MessageReader.open_stream(buffer)
    rows = 0
    dictionaries: dict[int, int] = {}  # id -> bytes of it the next record batch uses
    used = 0
    for count in range(MAX_MESSAGES + 1):
        try:
            message = reader.read_next_message()
        except StopIteration:
            break
        if message is None:
            break
        if count == MAX_MESSAGES:
            raise BadRequest(
                f"body holds more than {MAX_MESSAGES} Arrow IPC messages; "
                "send fewer, larger record batches"
            )
        header = _message(message.metadata.to_pybytes())
        if header.kind == _DICTIONARY_BATCH:
            size = 0 if message.body is None else message.body.size
            before = dictionaries.get(header.dictionary_id, 0) if header.delta else 0
            dictionaries[header.dictionary_id] = before + size
        elif header.kind == _RECORD_BATCH:
            rows += header.rows
            if rows > max_rows:
                raise PayloadTooLarge(
                    f"batch of at least {rows} rows exceeds the limit of {max_rows}",
                    details=[FieldProblem("body", f"at most {max_rows} rows")],
                )
            used += sum(dictionaries.values())
            if used > max_dictionary_bytes:
                raise _too_many_dictionary_bytes(max_dictionary_bytes)
    return _Dictionaries(len(dictionaries), used)


def _too_many_dictionary_bytes(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the record batches use over {limit:,} bytes of dictionaries, each counted once "
        "per batch and column that uses it: send fewer record batches, or dictionaries "
        "of the values the rows hold",
        details=[FieldProblem("body", f"at most {limit:,} bytes of dictionaries")],
    )


def _message(metadata: bytes) -> _Message:
    """A message's kind, and a record batch's rows or a dictionary batch's id; 400 when
    the message, or a dictionary batch's data, is compressed."""
    message = _Table.root(metadata)
    kind = message.ubyte(_MESSAGE_HEADER_TYPE)
    if kind not in (_RECORD_BATCH, _DICTIONARY_BATCH):
        return _Message(0)
    header = message.table(_MESSAGE_HEADER)
    batch = header if kind == _RECORD_BATCH else header.table(_DICTIONARY_DATA)
    if batch.has(_BATCH_COMPRESSION):
        raise BadRequest(
            "Arrow IPC bodies with compressed buffers are not accepted "
            "(their decoded size is not bounded by the body's); write them uncompressed"
        )
    if kind == _RECORD_BATCH:
        return _Message(kind, rows=batch.long(_BATCH_LENGTH))
    return _Message(
        kind,
        dictionary_id=header.long(_DICTIONARY_ID),
        delta=bool(header.ubyte(_DICTIONARY_DELTA)),
    )


class _Table:
    """One table of a flatbuffer: its fields by index, through its vtable."""

    def __init__(self, data: bytes, position: int) -> None:
        self._data = data
        self._position = position
        vtable = position - _int32(data, position)
        size = _uint16(data, vtable)
        # a field's offset in the table; 0 for a field the writer left out
        self._fields = [_uint16(data, vtable + offset) for offset in range(4, size, 2)]

    @classmethod
    def root(cls, data: bytes) -> _Table:
        return cls(data, _uint32(data, 0))

    def has(self, field: int) -> bool:
        return field < len(self._fields) and self._fields[field] != 0

    def _at(self, field: int) -> int:
        if not self.has(field):
            raise ValueError(f"flatbuffer field {field} is missing")
        return self._position + self._fields[field]

    def ubyte(self, field: int) -> int:
        return _unpack("<B", self._data, self._at(field)) if self.has(field) else 0

    def long(self, field: int) -> int:
        return _unpack("<q", self._data, self._at(field)) if self.has(field) else 0

    def table(self, field: int) -> _Table:
        at = self._at(field)
        return _Table(self._data, at + _uint32(self._data, at))


def _uint16(data: bytes, at: int) -> int:
    return _unpack("<H", data, at)


def _uint32(data: bytes, at: int) -> int:
    return _unpack("<I", data, at)


def _int32(data: bytes, at: int) -> int:
    return _unpack("<i", data, at)


def _unpack(fmt: str, data: bytes, at: int) -> int:
    if not 0 <= at <= len(data) - struct.calcsize(fmt):
        raise ValueError("message metadata is truncated")
    return struct.unpack_from(fmt, data, at)[0]
