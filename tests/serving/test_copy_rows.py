"""Prediction rows made by NumPy and struct for PostgreSQL's binary COPY are, byte for
byte, what PostgreSQL itself writes for the rows it stored."""

from __future__ import annotations

import math

import sqlalchemy as sa

from serving.copy_rows import FEW_ROWS, PredictionRows, copy_stream, prediction_rows
from serving.log_store import _PREDICTION_COLUMNS, LogStore
from tests.log_entries import log_entry


def test_rows_made_here_are_the_bytes_postgres_writes_for_them(
    postgres_engine: sa.Engine,
) -> None:
    """A batch whose indexes cross from 1 to 4 digits (NumPy), a few rows and a single
    record (struct), with and without scores, non-finite numbers, a UTF-8 version:
    PostgreSQL's ``COPY … TO STDOUT (FORMAT BINARY)`` of what was stored is the stream
    made here (the signature, the rows in order, the trailer)."""
    n = 1234
    values = [i / 3 for i in range(n)]
    values[7], values[70], values[700] = math.nan, math.inf, -math.inf
    entries = [
        log_entry(
            1, n, model_version="v-\u00e9t\u00e9", values=values, ood=[i / 7 for i in range(n)]
        ),
        log_entry(2, FEW_ROWS, ood=None),
        log_entry(3, 1, ood=[0.5]),
    ]
    made = copy_stream(
        prediction_rows(
            PredictionRows(
                request_id=e.request_id,
                single=e.single,
                created_at=e.received_at,
                model_version=e.model_version,
                values=e.values,
                lower=e.lower,
                upper=e.upper,
                ood=e.ood,
            )
        )
        for e in entries
    )
    LogStore(postgres_engine).insert(entries)

    rows = f"SELECT {_PREDICTION_COLUMNS} FROM predictions ORDER BY seq"
    query = f"COPY ({rows}) TO STDOUT (FORMAT BINARY)"
    with postgres_engine.connect() as connection:
        driver = connection.connection.driver_connection
        with driver.cursor() as cursor, cursor.copy(query) as copy:
            written = b"".join(bytes(block) for block in copy)
    assert len(written) == len(made)
    assert written == made
