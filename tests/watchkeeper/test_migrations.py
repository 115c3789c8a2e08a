"""Migrations build exactly the schema the code describes, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import current_revision, head_revision
from watchkeeper.db.tables import metadata


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
