"""The same features logged in both stored forms of ``requests.features``, for the
readers' tests: a request whose category column reached the log dictionary-encoded
(stored as its values and codes, :mod:`watchkeeper.feature_columns`) and one whose
columns are lists, as rows logged before that form, and JSON bodies, are stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

from serving.log_entry import LogEntry
from serving.log_store import LogStore
from tests.log_entries import journaled as journal_line
from tests.log_entries import log_entry
from watchkeeper.category_column import CategoryColumn
from watchkeeper.schema import Feature, FeatureSchema

T0 = datetime(2026, 11, 30, 12, tzinfo=UTC)
ROWS = 5
CODES_ID = f"{1:032x}"
"""The request whose category columns are stored as values and codes."""
LISTS_ID = f"{2:032x}"
"""The request with the same features as lists."""
ZONES = ("RL", "RM", None)
ZONE_CODES = np.array([1, 0, 2, 0, 1], dtype=np.int8)
ZONE_ROWS = ["RM", "RL", None, "RL", "RM"]
STREETS = ("Pave", "Grvl")
STREET_CODES = np.array([0, 0, 1, 0, 0], dtype=np.int32)
AREA = np.array([8450.0, 9600.0, 11250.0, 9550.0, 14260.0])
SCHEMA = FeatureSchema(
    features=(
        Feature("area", "numeric"),
        Feature("zone", "categorical", categories=("RL", "RM")),
        Feature("street", "categorical", categories=("Pave", "Grvl")),
    ),
    target="price",
)


def expected_columns() -> dict[str, list[Any]]:
    """The features as each reader should get them, by column."""
    return {
        "area": AREA.tolist(),
        "zone": ZONE_ROWS,
        "street": [STREETS[c] for c in STREET_CODES.tolist()],
    }


def _entry(request_id: str, columns: dict[str, Any], when: datetime) -> LogEntry:
    return log_entry(
        0,
        ROWS,
        request_id=request_id,
        received_at=when,
        columns=columns,
        values=np.arange(ROWS, dtype=np.float64),
        lower=np.arange(ROWS, dtype=np.float64) - 1,
        upper=np.arange(ROWS, dtype=np.float64) + 1,
        ood=np.linspace(0.1, 0.5, ROWS),
        finite=True,
    )


def store_both_forms(engine: sa.Engine, *, journaled: bool = False) -> None:
    """Store the request with category columns as values and codes (an Arrow body's
    columns: NumPy numbers, :class:`CategoryColumn` categories), then the one with
    lists, a second later. ``journaled``: each entry goes through its journal line,
    as the writer stores it."""
    codes = {
        "area": AREA,
        "zone": CategoryColumn(ZONES, ZONE_CODES),
        "street": CategoryColumn(STREETS, STREET_CODES),
    }
    entries = [
        _entry(CODES_ID, codes, T0),
        _entry(LISTS_ID, expected_columns(), T0 + timedelta(seconds=1)),
    ]
    if journaled:
        entries = [journal_line(e) for e in entries]
    LogStore(engine).insert(entries)


def stored_text(engine: sa.Engine, request_id: str) -> str:
    """The request's features as the database holds them."""
    with engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT CAST(features AS TEXT) FROM requests WHERE request_id = :id"),
            {"id": request_id},
        ).scalar_one()
