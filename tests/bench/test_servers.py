"""The serving benchmark's log count: a run's own rows, on either database."""

from __future__ import annotations

from typing import Any

from bench.servers import LogCounter
from serving.log_store import LogStore
from tests.log_entries import log_entry
from watchkeeper.db.migrate import upgrade


def test_log_counter_counts_the_rows_stored_past_a_position(engine: Any, database_url: str) -> None:
    """The drain check counts only what a run stored (an index range of its own rows,
    not a ``count(*)`` of the whole table charged to PostgreSQL's server)."""
    upgrade(engine)
    store = LogStore(engine)
    counter = LogCounter(database_url)
    try:
        assert counter.position() == 0
        store.insert([log_entry(n) for n in range(5)])
        start = counter.position()
        assert counter.count_since(start) == 0

        store.insert([log_entry(n) for n in range(5, 8)])
        store.insert([log_entry(8, items=1)])

        assert counter.count_since(start) == 4
        assert counter.count_since(0) == 9
    finally:
        counter.close()
