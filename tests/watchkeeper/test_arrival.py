"""A label's arrival time (``watchkeeper.db.arrival``): after every label stored, on
SQLite and PostgreSQL, whatever the clock does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from watchkeeper.db import arrival
from watchkeeper.db.arrival import arrival_time
from watchkeeper.db.tables import feedback


def _store_label(engine: sa.Engine, prediction_id: str) -> datetime:
    with engine.begin() as connection:
        stamp = arrival_time(connection)
        connection.execute(
            feedback.insert(), {"prediction_id": prediction_id, "actual": 1.0, "received_at": stamp}
        )
    return stamp


def test_a_label_stamped_after_the_clock_stepped_back_follows_the_newest_stored(
    engine: sa.Engine,
) -> None:
    """The monitor's feedback watermark reaches the newest label read: one stamped
    behind it by a clock that stepped back (an NTP step, a resumed VM) was never read.
    A label stored before a 300 s step back stands 300 s ahead of the clock."""
    ahead = datetime.now(UTC) + timedelta(seconds=300)
    with engine.begin() as connection:
        connection.execute(
            feedback.insert(), {"prediction_id": "before", "actual": 1.0, "received_at": ahead}
        )

    stamps = [_store_label(engine, "after-1"), _store_label(engine, "after-2")]

    assert ahead < stamps[0] < stamps[1]
    with engine.connect() as connection:
        newest = connection.execute(sa.select(sa.func.max(feedback.c.received_at))).scalar()
    assert newest == stamps[1]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_stepped_back_host_clock_stamps_after_the_newest_label_on_sqlite(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite takes the host's clock (PostgreSQL the server's, which no test can step):
    stepped back 300 s between two labels."""
    first = _store_label(engine, "first")
    monkeypatch.setattr(arrival, "now", lambda: datetime.now(UTC) - timedelta(seconds=300))

    assert _store_label(engine, "second") > first


def test_a_label_takes_the_clock_when_it_is_ahead_of_every_stored_label(
    engine: sa.Engine,
) -> None:
    _store_label(engine, "first")
    before = datetime.now(UTC)
    stamp = _store_label(engine, "second")
    assert before <= stamp <= datetime.now(UTC) + timedelta(seconds=5)


def test_a_label_stored_by_a_clock_far_ahead_holds_no_later_label_back(
    engine: sa.Engine,
) -> None:
    """Followed, one label stamped in 2096 by a host whose clock was decades wrong would
    hold every later label unread until 2096; beyond an hour ahead the clock is taken."""
    far = datetime.now(UTC) + arrival.MOST_TRUSTED_AHEAD + timedelta(minutes=5)
    with engine.begin() as connection:
        connection.execute(
            feedback.insert(), {"prediction_id": "far", "actual": 1.0, "received_at": far}
        )

    stamp = _store_label(engine, "later")

    assert stamp <= datetime.now(UTC) + timedelta(seconds=5)


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param("9999-12-31 00:00:00", id="year 9999"),
        # which psycopg cannot read at all, nor SQLAlchemy's SQLite datetime
        pytest.param("infinity", id="infinity"),
    ],
)
def test_a_label_stored_with_a_time_no_reader_holds_fails_no_later_label(
    engine: sa.Engine, stored: str
) -> None:
    """A foreign writer's label stamped ``infinity`` was the newest stamp every later
    label read to be stamped after it: reading it raised, and every ``/feedback`` failed
    until the row was deleted. Such stamps are passed over, as any beyond 2262."""
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO feedback (prediction_id, actual, received_at) VALUES ('far', 1.0, :at)"
            ),
            {"at": stored},
        )

    stamp = _store_label(engine, "later")

    assert stamp <= datetime.now(UTC) + timedelta(seconds=5)
