"""Arrow IPC bodies are read zero-copy, and refused with a 4xx, before anything is
decoded, when their decoded size is not bounded by the body's (compressed buffers) or
they declare too many rows; what reading takes on trust is validated in full."""

from __future__ import annotations

import struct

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from serving.arrow_ipc import (
    _DICTIONARY_ID,
    _MESSAGE_HEADER,
    MAX_MESSAGES,
    _Table,
    read_arrow_stream,
)
from watchkeeper.errors import BadRequest, PayloadTooLarge

LIMIT = 16 * 1024 * 1024  # the server's default body size limit
TABLE = pa.table(
    {"area": pa.array([1.0] * 1000), "zone": pa.array(["A"] * 1000).dictionary_encode()}
)


def _stream(table: pa.Table, **options: object) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema, options=ipc.IpcWriteOptions(**options)) as writer:
        writer.write_table(table, max_chunksize=400)
    return sink.getvalue().to_pybytes()


def test_an_uncompressed_stream_of_several_batches_reads_whole() -> None:
    table = read_arrow_stream(_stream(TABLE), max_rows=1000, max_dictionary_bytes=LIMIT)
    assert table.num_rows == 1000
    assert table.column("zone").to_pylist() == ["A"] * 1000


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_a_stream_with_compressed_buffers_is_refused_before_decoding(codec: str) -> None:
    with pytest.raises(BadRequest, match="compressed buffers are not accepted"):
        read_arrow_stream(
            _stream(TABLE, compression=codec), max_rows=10_000, max_dictionary_bytes=LIMIT
        )


def test_more_declared_rows_than_the_limit_is_413() -> None:
    with pytest.raises(PayloadTooLarge, match="at least 1000 rows exceeds the limit of 999"):
        read_arrow_stream(_stream(TABLE), max_rows=999, max_dictionary_bytes=LIMIT)


def test_the_file_format_is_refused_with_the_stream_media_type_named() -> None:
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, TABLE.schema) as writer:
        writer.write_table(TABLE)
    with pytest.raises(BadRequest, match="application/vnd.apache.arrow.stream"):
        read_arrow_stream(sink.getvalue().to_pybytes(), max_rows=10_000, max_dictionary_bytes=LIMIT)


@pytest.mark.parametrize(
    "body",
    [b"", b"{}", b"\xff\xff\xff\xff\x10\x00\x00\x00" + bytes(16), _stream(TABLE)[:-300]],
    ids=["empty", "json", "bad-metadata", "truncated"],
)
def test_what_is_not_an_arrow_stream_is_400(body: bytes) -> None:
    with pytest.raises(BadRequest, match="body is not a valid Arrow IPC stream"):
        read_arrow_stream(body, max_rows=10_000, max_dictionary_bytes=LIMIT)


def _one_string(raw: bytes) -> pa.Array:
    offsets = pa.py_buffer(b"\x00\x00\x00\x00" + len(raw).to_bytes(4, "little"))
    return pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(raw)])


@pytest.mark.parametrize(
    "column",
    [
        _one_string(b"\xff\xfe"),  # not UTF-8
        _one_string(b"\xed\xa0\x80"),  # a UTF-16 surrogate, encoded
        pa.DictionaryArray.from_arrays(pa.array([0, 5], pa.int8()), pa.array(["A"]), safe=False),
    ],
    ids=["invalid-utf8", "surrogate", "dictionary-index-out-of-range"],
)
def test_invalid_text_and_dangling_dictionary_codes_are_400(column: pa.Array) -> None:
    body = _stream(pa.table({"zone": column}))
    with pytest.raises(BadRequest, match="body is not a valid Arrow IPC stream"):
        read_arrow_stream(body, max_rows=10_000, max_dictionary_bytes=LIMIT)


@pytest.mark.parametrize(
    "column",
    [
        pa.array(["Elm"] * 3, pa.string_view()),
        pa.DictionaryArray.from_arrays(pa.array([0, 0, 0]), pa.array(["Elm"], pa.string_view())),
        pa.array([[1], [2], [3]], pa.list_view(pa.int8())),
    ],
    ids=["string_view", "dictionary-of-views", "list_view"],
)
def test_view_types_are_refused_before_their_text_is_checked(column: pa.Array) -> None:
    """Views may all point at one long value: 12 MB of them took 29 s to check."""
    with pytest.raises(BadRequest, match="Arrow view types are not accepted"):
        read_arrow_stream(
            _stream(pa.table({"zone": column})), max_rows=10_000, max_dictionary_bytes=LIMIT
        )


def test_a_stream_of_more_messages_than_the_limit_is_400() -> None:
    sink = pa.BufferOutputStream()
    empty = TABLE.to_batches()[0].slice(0, 0)
    with ipc.new_stream(sink, TABLE.schema) as writer:
        for _ in range(MAX_MESSAGES):  # and the schema, and a dictionary
            writer.write_batch(empty)
    with pytest.raises(BadRequest, match=f"more than {MAX_MESSAGES} Arrow IPC messages"):
        read_arrow_stream(sink.getvalue().to_pybytes(), max_rows=10_000, max_dictionary_bytes=LIMIT)


def _one_dictionary_many_batches(values: int, batches: int, *, delta: bool = False) -> bytes:
    """One-row record batches of a dictionary-encoded column: its dictionary sent once
    and used by every batch, or (``delta``) sent again grown by one value each time."""
    words = pa.array([f"value-{k}" for k in range(values + batches)])
    sink = pa.BufferOutputStream()
    schema = pa.schema([("zone", pa.dictionary(pa.int32(), pa.string()))])
    options = ipc.IpcWriteOptions(emit_dictionary_deltas=delta)
    with ipc.new_stream(sink, schema, options=options) as writer:
        for k in range(batches):
            dictionary = words.slice(0, values + k if delta else values)
            column = pa.DictionaryArray.from_arrays(pa.array([0], pa.int32()), dictionary)
            writer.write_batch(pa.record_batch([column], schema=schema))
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize("delta", [False, True], ids=["shared", "deltas"])
def test_a_dictionary_is_counted_once_per_record_batch_that_uses_it(delta: bool) -> None:
    """A 100,000-value dictionary serving 200 one-row batches: a 2 MB body that took a
    worker 15 s and 2 GB (each batch's column holds the dictionary whole, and deltas
    make each batch a copy of all before it). Refused from the messages, unread."""
    body = _one_dictionary_many_batches(100_000, 200, delta=delta)
    assert len(body) < 2.5e6

    with pytest.raises(PayloadTooLarge, match="bytes of dictionaries") as refused:
        read_arrow_stream(body, max_rows=10_000, max_dictionary_bytes=LIMIT)

    assert refused.value.status_code == 413
    assert refused.value.details[0].field == "body"


def test_a_dictionary_shared_by_a_few_batches_within_the_limit_reads_whole() -> None:
    body = _one_dictionary_many_batches(100_000, 4)

    table = read_arrow_stream(body, max_rows=10_000, max_dictionary_bytes=LIMIT)

    assert table.column("zone").to_pylist() == ["value-0"] * 4
    with pytest.raises(PayloadTooLarge):  # 4 batches × ~1 MB of dictionary
        read_arrow_stream(body, max_rows=10_000, max_dictionary_bytes=3_000_000)


# Arrow's Schema.fbs: Schema.fields, Field.dictionary, DictionaryEncoding.id
_SCHEMA_FIELDS, _FIELD_DICTIONARY, _ENCODING_ID = 1, 4, 0


def _schema_fields(metadata: bytes) -> list[_Table]:
    """The top-level fields of a schema message, as flatbuffer tables."""
    at = _Table.root(metadata).table(_MESSAGE_HEADER)._at(_SCHEMA_FIELDS)
    vector = at + struct.unpack_from("<I", metadata, at)[0]
    (count,) = struct.unpack_from("<I", metadata, vector)
    elements = range(vector + 4, vector + 4 * (count + 1), 4)
    return [_Table(metadata, e + struct.unpack_from("<I", metadata, e)[0]) for e in elements]


def _one_dictionary_many_fields(columns: int, values: int) -> bytes:
    """A one-row stream whose schema points ``columns`` fields at one dictionary id,
    sent once (Arrow allows it; pyarrow writes an id per field, so the schema's ids are
    rewritten and the other dictionaries left out)."""
    words = pa.array([f"value-{k}" for k in range(values)])
    column = pa.DictionaryArray.from_arrays(pa.array([0], pa.int32()), words)
    table = pa.table({f"c{i}": column for i in range(columns)})
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    reader = ipc.MessageReader.open_stream(sink.getvalue())
    frames = []
    for message in iter(reader.read_next_message, None):
        metadata = message.metadata.to_pybytes()
        if message.type == "schema":
            patched = bytearray(metadata)
            for encoding in (f.table(_FIELD_DICTIONARY) for f in _schema_fields(metadata)):
                if encoding.has(_ENCODING_ID):  # id 0, the default, is left out
                    at = encoding._at(_ENCODING_ID)
                    patched[at : at + 8] = bytes(8)
            patched += bytes(-len(patched) % 8)
            frames.append(b"\xff\xff\xff\xff" + struct.pack("<i", len(patched)) + patched)
        elif message.type != "dictionary" or not _Table.root(metadata).table(_MESSAGE_HEADER).has(
            _DICTIONARY_ID
        ):  # the dictionary of id 0
            frames.append(message.serialize().to_pybytes())
    return b"".join(frames) + b"\xff\xff\xff\xff\x00\x00\x00\x00"


def test_a_dictionary_is_counted_once_per_field_that_uses_it() -> None:
    """Ten columns on one 200,000-value dictionary, a 3 MB body, were read: the
    category check then converted it once per column (2.1 s) and the log stored an
    18.9 MB row; 40 such columns within the body limit would be 40 times that."""
    body = _one_dictionary_many_fields(10, 200_000)
    table = ipc.open_stream(pa.py_buffer(body)).read_all()  # valid as Arrow
    assert table.num_columns == 10 and len(body) < 3.2e6

    with pytest.raises(PayloadTooLarge, match="once per batch and column"):
        read_arrow_stream(body, max_rows=10_000, max_dictionary_bytes=LIMIT)

    one = read_arrow_stream(
        _one_dictionary_many_fields(1, 200_000), max_rows=10_000, max_dictionary_bytes=LIMIT
    )
    assert one.column("c0").to_pylist() == ["value-0"]
