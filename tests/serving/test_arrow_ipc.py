"""Arrow IPC bodies are read zero-copy, and refused with a 4xx, before anything is
decoded, when their decoded size is not bounded by the body's (compressed buffers) or
they declare too many rows; what reading takes on trust is validated in full."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from serving.arrow_ipc import MAX_MESSAGES, read_arrow_stream
from watchkeeper.errors import BadRequest, PayloadTooLarge

TABLE = pa.table(
    {"area": pa.array([1.0] * 1000), "zone": pa.array(["A"] * 1000).dictionary_encode()}
)


def _stream(table: pa.Table, **options: object) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema, options=ipc.IpcWriteOptions(**options)) as writer:
        writer.write_table(table, max_chunksize=400)
    return sink.getvalue().to_pybytes()


def test_an_uncompressed_stream_of_several_batches_reads_whole() -> None:
    table = read_arrow_stream(_stream(TABLE), max_rows=1000)
    assert table.num_rows == 1000
    assert table.column("zone").to_pylist() == ["A"] * 1000


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_a_stream_with_compressed_buffers_is_refused_before_decoding(codec: str) -> None:
    with pytest.raises(BadRequest, match="compressed buffers are not accepted"):
        read_arrow_stream(_stream(TABLE, compression=codec), max_rows=10_000)


def test_more_declared_rows_than_the_limit_is_413() -> None:
    with pytest.raises(PayloadTooLarge, match="at least 1000 rows exceeds the limit of 999"):
        read_arrow_stream(_stream(TABLE), max_rows=999)


def test_the_file_format_is_refused_with_the_stream_media_type_named() -> None:
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, TABLE.schema) as writer:
        writer.write_table(TABLE)
    with pytest.raises(BadRequest, match="application/vnd.apache.arrow.stream"):
        read_arrow_stream(sink.getvalue().to_pybytes(), max_rows=10_000)


@pytest.mark.parametrize(
    "body",
    [b"", b"{}", b"\xff\xff\xff\xff\x10\x00\x00\x00" + bytes(16), _stream(TABLE)[:-300]],
    ids=["empty", "json", "bad-metadata", "truncated"],
)
def test_what_is_not_an_arrow_stream_is_400(body: bytes) -> None:
    with pytest.raises(BadRequest, match="body is not a valid Arrow IPC stream"):
        read_arrow_stream(body, max_rows=10_000)


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
        read_arrow_stream(body, max_rows=10_000)


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
        read_arrow_stream(_stream(pa.table({"zone": column})), max_rows=10_000)


def test_a_stream_of_more_messages_than_the_limit_is_400() -> None:
    sink = pa.BufferOutputStream()
    empty = TABLE.to_batches()[0].slice(0, 0)
    with ipc.new_stream(sink, TABLE.schema) as writer:
        for _ in range(MAX_MESSAGES):  # and the schema, and a dictionary
            writer.write_batch(empty)
    with pytest.raises(BadRequest, match=f"more than {MAX_MESSAGES} Arrow IPC messages"):
        read_arrow_stream(sink.getvalue().to_pybytes(), max_rows=10_000)
