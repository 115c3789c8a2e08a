"""Request ids: 32 lowercase hex digits in the UUID version 7 layout (RFC 9562).

A request id is the primary key of ``requests`` (which holds the request's predictions
too, since migration 0010) and the prefix of every prediction id
(:func:`serving.log_entry.prediction_id`), so each logged request inserts it into that
B-tree index. Random ids (``uuid4``) land on random leaf pages of it: once they outgrow
the database's cache every insert reads and dirties a leaf of its own (and, on
PostgreSQL, writes a full page image of it after each checkpoint). Time-ordered ids
append to the rightmost leaves instead (``bench/log_scale_bench.py`` measures the
difference).

Layout, most significant first: a 48-bit Unix time in milliseconds, the version ``7``,
a 12-bit counter (RFC 9562 section 6.2, method 1), the variant bits ``10`` and 62
random bits. The counter starts at a random value below 2,048 at each new millisecond
and counts up within it, so the ids one process makes sort in the order it made them,
even within a millisecond or when the clock steps back; a counter that runs out moves
on to the next millisecond. The 62 random bits are fresh for every id (``os.urandom``):
ids from different processes and gunicorn workers, which share no counter, do not
collide, and an id does not give away its neighbours' (a prediction id is what
``/feedback`` labels).
"""

from __future__ import annotations

import os
import threading
import time

_COUNTER_LIMIT = 1 << 12
_COUNTER_SEED_LIMIT = 1 << 11  # room to count up before moving to the next millisecond
_VERSION_7 = 0x7000
_VARIANT = 1 << 63  # the bits 10 above 62 random bits
_RANDOM_MASK = (1 << 62) - 1


class _Clock:
    """The last millisecond and counter this process used; a lock since gunicorn's
    request threads make ids at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.millisecond = 0
        self.counter = 0


_clock = _Clock()


def new_request_id() -> str:
    """A new request id: 32 lowercase hex digits, a valid UUID (version 7). Later ids of
    the same process sort after earlier ones; ids of other processes are ordered by
    their millisecond."""
    randomness = int.from_bytes(os.urandom(10), "big")
    now = time.time_ns() // 1_000_000
    with _clock.lock:
        if now > _clock.millisecond:
            _clock.millisecond = now
            _clock.counter = (randomness >> 64) % _COUNTER_SEED_LIMIT
        else:  # the same millisecond, or the clock stepped back: count on
            _clock.counter += 1
            if _clock.counter == _COUNTER_LIMIT:
                _clock.millisecond += 1
                _clock.counter = (randomness >> 64) % _COUNTER_SEED_LIMIT
        millisecond, counter = _clock.millisecond, _clock.counter
    tail = _VARIANT | (randomness & _RANDOM_MASK)
    return f"{millisecond:012x}{_VERSION_7 | counter:04x}{tail:016x}"
