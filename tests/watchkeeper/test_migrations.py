"""Migrations build exactly the schema the code describes, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.ports import free_port
from tests.postgres import PostgresServer
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import current_revision, head_revision, upgrade, wait_for_database
from watchkeeper.db.tables import metadata
from watchkeeper.errors import ServiceUnavailable


def test_migrated_database_matches_the_table_definitions(database_url: str) -> None:
    engine = create_engine(database_url)
    inspector = sa.inspect(engine)

    assert current_revision(engine) == head_revision()
    for table in metadata.sorted_tables:
        columns = {c["name"]: c for c in inspector.get_columns(table.name)}
        assert list(columns) == [c.name for c in table.columns], table.name
        for column in table.columns:
            assert columns[column.name]["nullable"] == column.nullable, (table.name, column.name)
        indexed = {tuple(ix["column_names"]) for ix in inspector.get_indexes(table.name)}
        indexed |= {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table.name)}
        for column in table.columns:
            if column.index or column.unique:
                assert (column.name,) in indexed, (table.name, column.name)
    engine.dispose()


@pytest.mark.postgres
def test_concurrent_upgrades_on_postgresql_both_succeed(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database()
    engines = [create_engine(url) for _ in range(3)]
    with ThreadPoolExecutor(len(engines)) as pool:
        list(pool.map(upgrade, engines))  # re-raises the first failure

    assert current_revision(engines[0]) == head_revision()
    for engine in engines:
        engine.dispose()


def test_waiting_for_an_unreachable_database_fails_with_the_reason() -> None:
    engine = create_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    started = time.monotonic()

    with pytest.raises(ServiceUnavailable, match=r"not reachable after 1\.5 s: .*127\.0\.0\.1"):
        wait_for_database(engine, timeout=1.5, interval=0.2)
    assert 1.5 <= time.monotonic() - started < 10
    engine.dispose()


def test_waiting_for_a_reachable_database_returns_at_once(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    started = time.monotonic()

    wait_for_database(engine, timeout=5)
    assert time.monotonic() - started < 1
    engine.dispose()


@pytest.mark.postgres
def test_request_features_become_text_on_postgresql_and_back(
    postgres_server: PostgresServer,
) -> None:
    """Migration 0008: PostgreSQL keeps ``requests.features`` as text (it no longer
    parses every value written); values stored before it read back the same after it,
    through the Core table as decoded JSON, and after its downgrade."""
    from alembic import command

    from watchkeeper.db.migrate import _config
    from watchkeeper.db.tables import requests

    engine = create_engine(postgres_server.create_database())
    upgrade(engine, "0007")
    columns = {"Lot_Area": [8450.0, None], "Neighborhood": ["North_Ames", "Ünïcode"]}
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO requests (request_id, received_at, endpoint, method, status_code,"
            " latency_seconds, n_items, features)"
            " VALUES ('r1', now(), '/predict', 'POST', 200, 0.01, 2, %(features)s::json)",
            {"features": json.dumps(columns)},
        )

    def stored() -> tuple[str, Any]:
        with engine.connect() as connection:
            kind = connection.exec_driver_sql(
                "SELECT data_type FROM information_schema.columns"
                " WHERE table_name = 'requests' AND column_name = 'features'"
            ).scalar()
            value = connection.execute(sa.select(requests.c.features)).scalar()
        return kind, value

    upgrade(engine)
    assert stored() == ("text", columns)
    with engine.begin() as connection:  # written through the Core table too
        connection.execute(
            requests.insert().values(
                request_id="r2",
                received_at=sa.func.now(),
                endpoint="/predict",
                method="POST",
                status_code=200,
                latency_seconds=0.01,
                features=columns,
            )
        )
    with engine.begin() as connection:
        config = _config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0007")
    with engine.connect() as connection:
        kind = connection.exec_driver_sql(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_name = 'requests' AND column_name = 'features'"
        ).scalar()
        values = connection.exec_driver_sql(
            "SELECT features::text FROM requests ORDER BY request_id"
        ).scalars()
        assert [json.loads(v) for v in values] == [columns, columns]
    assert kind == "json"
    engine.dispose()
