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
"""

from __future__ import annotations

import struct

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
_DICTIONARY_DATA = 1


def read_arrow_stream(body: bytes, *, max_rows: int) -> pa.Table:
    """The body's table; 400 for what is not an uncompressed Arrow IPC stream, 413 for
    more than ``max_rows`` rows (as declared, before decoding)."""
    if body.startswith(_FILE_MAGIC):
        raise BadRequest(
            f"body is in Arrow's file format; send Arrow's streaming format as {ARROW_STREAM}"
        )
    buffer = pa.py_buffer(body)
    try:
        _check_messages(buffer, max_rows)
        table = ipc.open_stream(buffer).read_all()
        viewed = [field.name for field in table.schema if _has_views(field.type)]
        if viewed:
            raise BadRequest(
                f"Arrow view types are not accepted (columns {viewed[:5]}): "
                "send string or large_string columns, or dictionary-encoded ones"
            )
        # Reading checks the layout only. Full validation checks what later steps take
        # on trust, in C++ (0.06 ms for 1,000 rows of 71 columns): offsets, dictionary
        # indices in range, and UTF-8 text (surrogates included), as a JSON body's.
        table.validate(full=True)
        table.schema.names  # noqa: B018 - field names are decoded here, not later
    except (pa.ArrowException, ValueError, OSError) as exc:  # UnicodeError is a ValueError
        raise BadRequest(f"body is not a valid Arrow IPC stream: {exc}") from exc
    return table


def _has_views(kind: pa.DataType) -> bool:
    """Whether ``kind`` is, or holds, a view type (through dictionaries and nesting)."""
    if kind.id in _VIEW_TYPE_IDS:
        return True
    if pa.types.is_dictionary(kind):
        return _has_views(kind.value_type)
    return any(_has_views(kind.field(i).type) for i in range(kind.num_fields))


def _view_type_ids() -> frozenset[int]:
    names = ("string_view", "binary_view", "list_view", "large_list_view")
    kinds = []
    for name in names:  # each in pyarrow >= 16 only
        factory = getattr(pa, name, None)
        if factory is not None:
            kinds.append(factory(pa.int8()) if name.endswith("list_view") else factory())
    return frozenset(kind.id for kind in kinds)


_VIEW_TYPE_IDS = _view_type_ids()


def _check_messages(buffer: pa.Buffer, max_rows: int) -> None:
    reader = ipc.MessageReader.open_stream(buffer)
    rows = 0
    for count in range(MAX_MESSAGES + 1):
        try:
            message = reader.read_next_message()
        except StopIteration:
            return
        if message is None:
            return
        if count == MAX_MESSAGES:
            raise BadRequest(
                f"body holds more than {MAX_MESSAGES} Arrow IPC messages; "
                "send fewer, larger record batches"
            )
        rows += _batch_rows(message.metadata.to_pybytes())
        if rows > max_rows:
            raise PayloadTooLarge(
                f"batch of at least {rows} rows exceeds the limit of {max_rows}",
                details=[FieldProblem("body", f"at most {max_rows} rows")],
            )


def _batch_rows(metadata: bytes) -> int:
    """A record batch message's row count (0 for other messages); 400 when the
    message, or a dictionary batch's data, is compressed."""
    message = _Table.root(metadata)
    kind = message.ubyte(_MESSAGE_HEADER_TYPE)
    if kind not in (_RECORD_BATCH, _DICTIONARY_BATCH):
        return 0
    header = message.table(_MESSAGE_HEADER)
    batch = header if kind == _RECORD_BATCH else header.table(_DICTIONARY_DATA)
    if batch.has(_BATCH_COMPRESSION):
        raise BadRequest(
            "Arrow IPC bodies with compressed buffers are not accepted "
            "(their decoded size is not bounded by the body's); write them uncompressed"
        )
    return batch.long(_BATCH_LENGTH) if kind == _RECORD_BATCH else 0


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
