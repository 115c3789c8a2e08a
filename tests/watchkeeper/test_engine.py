"""Settings of ``watchkeeper.db.engine``: what a new SQLite log is made with, what every
connection gets (SQLite and PostgreSQL), and that the WAL stays bounded between checkpoints."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.postgres import PostgresServer
from watchkeeper.db import engine as engine_module
from watchkeeper.db.engine import create_engine, retire_connections


def pragma(connection: sa.Connection, name: str) -> object:
    return connection.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_a_new_log_is_made_with_4_kib_pages_and_incremental_auto_vacuum(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x TEXT)")
    engine.dispose()

    raw = sqlite3.connect(tmp_path / "log.db")  # as stored in the file
    assert raw.execute("PRAGMA page_size").fetchone()[0] == 4096
    assert raw.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def test_an_existing_log_keeps_its_page_size_and_checkpoints_by_bytes(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    raw = sqlite3.connect(path)  # a log made with other pages, e.g. converted by hand
    raw.execute("PRAGMA page_size=8192")
    raw.execute("CREATE TABLE t (x TEXT)")
    raw.commit()
    raw.close()

    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        assert pragma(connection, "page_size") == 8192
        assert pragma(connection, "wal_autocheckpoint") == (32 << 20) // 8192
    engine.dispose()


def test_every_connection_gets_the_settings(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}", pool_size=2, max_overflow=0)
    with engine.connect() as first, engine.connect() as second:
        for connection in (first, second):
            assert pragma(connection, "journal_mode") == "wal"
            assert pragma(connection, "synchronous") == 2  # FULL: the log's durability
            assert pragma(connection, "wal_autocheckpoint") == (32 << 20) // 4096
    engine.dispose()


def test_the_wal_stays_within_the_checkpoint_bytes_and_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 256 KiB instead of 32 MiB, so that the test writes a few MB rather than ~100.
    monkeypatch.setattr(engine_module, "SQLITE_WAL_CHECKPOINT_BYTES", 256 << 10)
    path = tmp_path / "log.db"
    engine = create_engine(f"sqlite:///{path}")
    transaction = 64 << 10
    largest = 0
    with engine.connect() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x BLOB)")
        connection.commit()
        for _ in range(60):  # ~4 MB, 15 times the threshold
            connection.exec_driver_sql("INSERT INTO t VALUES (zeroblob(?))", (transaction,))
            connection.commit()
            largest = max(largest, Path(f"{path}-wal").stat().st_size)
    engine.dispose()
    # frames are pages plus a 24-byte header each, the WAL has a 32-byte header
    page = engine_module.SQLITE_PAGE_SIZE
    assert largest <= ((256 << 10) + transaction) * (page + 24) / page + page * 4 + 32


@pytest.mark.postgres
def test_postgres_connections_notice_a_vanished_server_within_a_minute(
    postgres_server: PostgresServer,
) -> None:
    """Keepalives and a TCP user timeout on every connection (without them a half-open
    connection blocks the log's writer for the kernel's two hours); the URL's own
    choice wins."""
    url = postgres_server.create_database()
    for query, idle in (("", "30"), ("?keepalives_idle=7", "7")):
        engine = create_engine(url + query)
        try:
            with engine.connect() as connection:
                used = connection.connection.driver_connection.info.get_parameters()
        finally:
            engine.dispose()
        assert used["keepalives"] == "1"
        assert used["keepalives_idle"] == idle
        assert used["keepalives_interval"] == "10"
        assert used["keepalives_count"] == "3"
        assert used["tcp_user_timeout"] == "60000"
        assert used["connect_timeout"] == "5"


@pytest.mark.postgres
def test_retired_connections_are_closed_and_replaced_once_idle_or_checked_out(
    postgres_engine: sa.Engine,
) -> None:
    """Each connection made before ``retire_connections`` is closed and replaced at its
    next checkout, including one checked out meanwhile (``engine.dispose()`` left that
    one open in a discarded pool); those made after are kept."""
    with postgres_engine.connect() as connection:
        idle = connection.connection.dbapi_connection  # back in the pool
    other = postgres_engine.connect()
    held = other.connection.dbapi_connection  # checked out, as by another thread
    retire_connections(postgres_engine)
    other.close()

    def two_checked_out() -> set[int]:
        with postgres_engine.connect() as a, postgres_engine.connect() as b:
            return {id(a.connection.dbapi_connection), id(b.connection.dbapi_connection)}

    replaced = two_checked_out()
    assert idle.closed and held.closed
    assert not replaced & {id(idle), id(held)}
    assert two_checked_out() == replaced  # not replaced again
