"""Engine construction: one place for per-dialect settings."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import make_url


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


# libpq's connection options. Without keepalives a connection whose server vanished
# without a word (a node lost, a half-open TCP connection behind a NAT or a failover)
# blocks its reader until the kernel gives up, about two hours by default: the prediction
# log's writer would store nothing meanwhile and its journal fill until requests are
# refused. With these a dead peer is noticed within about a minute, whether the
# connection idles (keepalive probes) or waits for a reply to data it sent
# (``tcp_user_timeout``, milliseconds); the writer then retries as for any outage. A
# server that is alive but slow is not cut off: its kernel answers the probes.
POSTGRES_CONNECT_ARGS: dict[str, int] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}


def create_engine(url: str | sa.URL, **kwargs: Any) -> sa.Engine:
    """An engine for ``url``. SQLite gets WAL and a busy timeout so that several
    gunicorn workers can write to one file; its parent directory is created."""
    parsed = make_url(url)
    options: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        options["connect_args"] = {"timeout": 30}
    else:
        options["pool_pre_ping"] = True
        # What the URL's query sets wins (``?keepalives_idle=60``).
        options["connect_args"] = {
            name: value for name, value in POSTGRES_CONNECT_ARGS.items() if name not in parsed.query
        }
    options.update(kwargs)
    engine = sa.create_engine(url, **options)
    if parsed.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


# Each engine's generation of connections, once retire_connections() was first called
# for it: a one-item list, so that its pool's listeners share it without holding the
# engine.
_generations: weakref.WeakKeyDictionary[sa.Engine, list[int]] = weakref.WeakKeyDictionary()
_GENERATION = "watchkeeper_generation"  # in a pool entry's info: when it was made


def retire_connections(engine: sa.Engine) -> None:
    """Replace every connection ``engine`` has made so far at its next checkout: those
    idle in its pool now, and those other threads have checked out once they come back.

    Not ``engine.dispose()``, which starts a new pool and closes what is idle in the
    old one: a connection another thread (the readiness probe) had checked out then
    goes back to the discarded pool, where nothing closes it until the garbage
    collector deletes it, still open (psycopg warns, at a random later moment)."""
    generation = _generations.get(engine)
    if generation is None:
        generation = _generations[engine] = [0]

        def stamp(_dbapi_connection: Any, record: Any) -> None:
            record.info[_GENERATION] = generation[0]

        def replace_retired(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
            if record.info.get(_GENERATION, -1) < generation[0]:
                # The pool closes this connection and checks out a new one instead.
                raise sa.exc.DisconnectionError("retired by retire_connections()")

        sa.event.listen(engine, "connect", stamp)
        sa.event.listen(engine, "checkout", replace_retired)
    generation[0] += 1


# New SQLite logs are made with 4 KiB pages (SQLite's default, set here so that it is a
# choice); an existing file keeps the size it was made with. 8 KiB pages took 7-15 % off
# the writer's CPU per 1,000-row request in process (the ~590 KB of features are half as
# many overflow pages), but whole servers measured nothing for batches (1,000 rows 1.00x,
# 100 rows 0.99x) and single records cost 1.17x (a commit of a few records rewrites whole
# pages of every index: twice the bytes to the WAL). bench/README.md, "SQLite settings".
SQLITE_PAGE_SIZE = 4096
# WAL bytes between automatic checkpoints (SQLite's default is 1,000 pages: 4 MB at 4
# KiB). A checkpoint copies the pages written since the last one into the database and
# syncs both files; the pages every commit rewrites (the tables' and indexes' last
# leaves and their parents, the header, the auto-vacuum pointer map) are copied once
# per 32 MiB instead of once per 4 MB: 0-8 % less writer CPU per 1,000-row request,
# 8-19 % per single record at ten per transaction, 1-4 % at one. The WAL file stays at
# about this size plus one transaction (while no reader holds an old snapshot for
# longer). Larger caches, mmap and temp_store saved nothing, for the writer or the
# readers.
SQLITE_WAL_CHECKPOINT_BYTES = 32 << 20


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    if cursor.execute("PRAGMA page_count").fetchone()[0] == 0:
        # Only a new, empty database can take these. Incremental auto-vacuum lets a
        # prune hand deleted pages back to the file system (watchkeeper.db.retention).
        cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
        cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: the prediction log's writer moves its journal checkpoint and deletes journal
    # segments as soon as a commit returns, so the commit must then be on disk. NORMAL
    # would save ~40 % of a one-record commit but could lose, on power loss, entries
    # acknowledged long before it (bench/README.md, "SQLite settings").
    cursor.execute("PRAGMA synchronous=FULL")
    page_size = cursor.execute("PRAGMA page_size").fetchone()[0]
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_CHECKPOINT_BYTES // page_size}")
    cursor.close()
