"""Which database errors mean PostgreSQL did not answer at all (a process starts and
waits) and which are answers (it refuses to start, saying why)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.ports import free_port
from tests.postgres import PostgresServer
from watchkeeper.db.engine import create_engine
from watchkeeper.db.reachability import unreachable


def _error(url: str) -> sa.exc.SQLAlchemyError:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT count(*) FROM no_such_table"))
    except sa.exc.SQLAlchemyError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("no error")


def test_a_refused_connection_is_no_answer() -> None:
    assert unreachable(_error(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"))


@pytest.mark.postgres
def test_a_missing_database_and_a_missing_table_are_answers(
    postgres_server: PostgresServer,
) -> None:
    assert not unreachable(_error(postgres_server.url("no_such_database")))
    assert not unreachable(_error(postgres_server.url()))


def test_sqlite_always_answers(tmp_path: Path) -> None:
    assert not unreachable(_error(f"sqlite:///{tmp_path / 'log.db'}"))
