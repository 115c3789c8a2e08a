"""Migrations build exactly the schema the code describes, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.ports import free_port
from tests.postgres import PostgresServer
from tests.stored_features import (
    CODES_ID,
    LISTS_ID,
    expected_columns,
    store_both_forms,
    stored_text,
)
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import (
    current_revision,
    head_revision,
    require_current,
    upgrade,
    wait_for_database,
)
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
        named = {ix["name"]: tuple(ix["column_names"]) for ix in inspector.get_indexes(table.name)}
        for index in table.indexes:
            assert named.get(index.name) == tuple(c.name for c in index.columns), index.name
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


def _upgrade_each(urls: list[str], start: Any) -> list[str]:
    """Upgrade each database of ``urls`` once every process is ready to; the errors."""
    errors = []
    for url in urls:
        engine = create_engine(url)
        with engine.connect():  # connected first: the upgrades start together
            pass
        start.wait()
        try:
            upgrade(engine)
        except Exception as exc:
            errors.append(f"{url}: {exc!r}"[:300])
        engine.dispose()
    return errors


def test_concurrent_upgrades_of_a_new_sqlite_file_both_succeed(tmp_path: Path) -> None:
    # processes, not threads: Alembic's ``context`` is one per process
    urls = [f"sqlite:///{tmp_path / f'log{trial}.db'}" for trial in range(4)]
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Manager().Barrier(2)
    with ProcessPoolExecutor(2, mp_context=spawn) as pool:
        runs = [pool.submit(_upgrade_each, urls, start) for _ in range(2)]
        errors = [e for run in runs for e in run.result(timeout=120)]

    assert errors == []
    for url in urls:
        engine = create_engine(url)
        assert current_revision(engine) == head_revision()
        engine.dispose()


def test_a_database_newer_than_the_code_is_not_told_to_upgrade(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    upgrade(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")

    with pytest.raises(ServiceUnavailable, match="at 9999, newer than this code") as raised:
        require_current(engine)
    assert "db upgrade" not in str(raised.value)
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


# -- 0010: predictions into their request's row -----------------------------------------

_T = "2026-11-29 12:00:00"


def _blank_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    return request.getfixturevalue("postgres_server").create_database()


def _insert_0009_log(engine: sa.Engine) -> None:
    """A log at 0009 as its writers left it: a single record, a batch, a classifier's
    row, NaN and infinite predictions, rows with their own features (before 0004),
    predictions whose request row is gone, a batch an old prune left only its
    labelled item of, the monitor's watermark, windows and the pruner's positions."""
    postgres = engine.dialect.name == "postgresql"
    as_json = "CAST({} AS json)" if postgres else "{}"
    nan = float("nan") if postgres else "NaN"  # SQLite's log kept NaN as text
    request = sa.text(
        "INSERT INTO requests (request_id, received_at, endpoint, method, status_code,"
        " latency_seconds, model_version, n_items, features)"
        f" VALUES (:id, '{_T}', '/predict', 'POST', :status, 0.01, :version, :n, :features)"
    )
    prediction = sa.text(
        "INSERT INTO predictions (prediction_id, request_id, item_index, created_at,"
        " model_version, features, prediction, lower, upper, ood_score, probabilities)"
        f" VALUES (:pid, :rid, :i, '{_T}', 'v1', {as_json.format(':features')}, :p, :lo, :hi,"
        f" :ood, {as_json.format(':probabilities')})"
    )
    requests = [
        ("single", 200, 1, {"area": [1.0]}),
        ("batch", 200, 3, {"area": [2.0, 3.0, 4.0]}),
        ("classes", 200, 1, {"area": [5.0]}),
        ("rejected", 400, 0, None),
        ("nonfinite", 200, 3, {"area": [6.0, 7.0, 8.0]}),
        ("old", 200, 2, None),
        ("pruned", 200, 3, {"area": [9.0, 10.0, 11.0]}),
    ]
    item = dict(features=None, ood=None, probabilities=None)
    rows = [  # in seq order
        dict(item, pid="single", rid="single", i=0, p=100.0, lo=90.0, hi=110.0, ood=0.5),
        dict(item, pid="batch.0", rid="batch", i=0, p=1.0, lo=0.0, hi=2.0),
        dict(item, pid="batch.1", rid="batch", i=1, p=2.0, lo=1.0, hi=3.0),
        dict(
            item,
            pid="classes",
            rid="classes",
            i=0,
            p=1.0,
            lo=1.0,
            hi=1.0,
            probabilities=json.dumps([0.25, 0.75]),
        ),  # fmt: skip
        dict(item, pid="batch.2", rid="batch", i=2, p=3.0, lo=2.0, hi=4.0),  # interleaved
        dict(item, pid="nonfinite.0", rid="nonfinite", i=0, p=nan, lo=nan, hi=nan),
        dict(
            item, pid="nonfinite.1", rid="nonfinite", i=1, p=float("inf"), lo=0.0, hi=float("inf")
        ),  # fmt: skip
        dict(
            item, pid="nonfinite.2", rid="nonfinite", i=2, p=float("-inf"), lo=float("-inf"), hi=0.0
        ),  # fmt: skip
        dict(
            item,
            pid="old.0",
            rid="old",
            i=0,
            p=4.0,
            lo=3.0,
            hi=5.0,
            features=json.dumps({"area": 12.0, "kind": "a"}),
        ),  # fmt: skip
        dict(
            item,
            pid="old.1",
            rid="old",
            i=1,
            p=5.0,
            lo=4.0,
            hi=6.0,
            features=json.dumps({"area": 13.0}),
        ),  # fmt: skip
        dict(item, pid="orphan.0", rid="orphan", i=0, p=6.0, lo=5.0, hi=7.0),
        dict(item, pid="orphan.1", rid="orphan", i=1, p=7.0, lo=6.0, hi=8.0),
        dict(item, pid="pruned.1", rid="pruned", i=1, p=8.0, lo=7.0, hi=9.0),
    ]
    with engine.begin() as connection:
        for rid, status, n, features in requests:
            connection.execute(
                request,
                {"id": rid, "status": status, "n": n,
                 "version": None if rid == "old" else "v1",  # logged before it had one
                 "features": None if features is None else json.dumps(features)},
            )  # fmt: skip
        for row in rows:
            connection.execute(prediction, row)
        connection.execute(
            sa.text("INSERT INTO feedback (prediction_id, actual, received_at)"
                    f" VALUES ('pruned.1', 8.5, '{_T}')")
        )  # fmt: skip
        for name, value in (("windows", 6), ("retention_predictions", 3),
                            ("retention_requests", 1_700_000_000_000_000)):  # fmt: skip
            connection.execute(
                sa.text("INSERT INTO monitor_state (name, watermark, updated_at)"
                        f" VALUES (:name, :value, '{_T}')"),
                {"name": name, "value": value},
            )  # fmt: skip
        for n, (first, last) in enumerate(((1, 3), (4, 6), (7, 13))):
            connection.execute(
                sa.text(
                    "INSERT INTO window_results (window_id, model_version, detector,"
                    " first_seq, last_seq, n_rows, started_at, ended_at, evaluated_at,"
                    f" details) VALUES (:w, 'v1', 'output_drift', :first, :last, 3, '{_T}',"
                    f" '{_T}', '{_T}', '{{}}')"
                ),
                {"w": f"w{n}", "first": first, "last": last},
            )


def _migrate(engine: sa.Engine, revision: str) -> None:
    from alembic import command

    from watchkeeper.db.migrate import _config

    with engine.begin() as connection:
        config = _config()
        config.attributes["connection"] = connection
        if revision < (current_revision(engine) or ""):
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)


def _same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_0010_moves_every_prediction_into_its_request_and_maps_the_positions(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The upgrade keeps every prediction with its id, item index, values (NaN and
    infinities too), probabilities and features; a request's position orders the log
    as its first row did; the watermark and the windows become positions of the same
    rows; a partly pruned batch keeps its item's index (its label and features still
    match)."""
    from watchkeeper.db.features import feature_records
    from watchkeeper.db.prediction_seq import prediction_seq
    from watchkeeper.db.tables import feedback, monitor_state, predictions, requests
    from watchkeeper.db.tables import window_results as windows

    engine = create_engine(_blank_url(kind, tmp_path, request))
    upgrade(engine, "0009")
    _insert_0009_log(engine)
    upgrade(engine)

    with engine.connect() as connection:
        seqs = dict(connection.execute(sa.select(requests.c.request_id, requests.c.seq)).all())
        rows = connection.execute(sa.select(predictions).order_by(predictions.c.seq)).all()
        records = feature_records(connection, rows)
        labelled = connection.execute(
            sa.select(predictions.c.prediction_id, predictions.c.item_index).join(
                feedback, feedback.c.prediction_id == predictions.c.prediction_id
            )
        ).all()
        watermark = connection.execute(
            sa.select(monitor_state.c.name, monitor_state.c.watermark)
        ).all()
        spans = connection.execute(
            sa.select(windows.c.first_seq, windows.c.last_seq).order_by(windows.c.window_id)
        ).all()
        n_items = dict(
            connection.execute(sa.select(requests.c.request_id, requests.c.n_items)).all()
        )
        single = dict(connection.execute(sa.select(requests.c.request_id, requests.c.single)).all())

    assert seqs["rejected"] is None
    order = ["single", "batch", "classes", "nonfinite", "old", "orphan", "pruned"]
    assert sorted(order, key=lambda r: seqs[r]) == order
    ids = [r.prediction_id for r in rows]
    assert ids == [
        "single", "batch.0", "batch.1", "batch.2", "classes", "nonfinite.0",
        "nonfinite.1", "nonfinite.2", "old.0", "old.1", "orphan.0", "orphan.1", "pruned.1",
    ]  # fmt: skip
    by_id = {r.prediction_id: r for r in rows}
    assert all(r.seq == prediction_seq(seqs[r.request_id], r.item_index) for r in rows)
    assert (by_id["single"].prediction, by_id["single"].ood_score) == (100.0, 0.5)
    assert by_id["batch.1"][7:10] == (2.0, 1.0, 3.0)
    assert by_id["classes"].probabilities == [0.25, 0.75]
    assert by_id["batch.0"].probabilities is None and by_id["batch.0"].ood_score is None
    expected = {
        "nonfinite.0": (float("nan"),) * 3,
        "nonfinite.1": (float("inf"), 0.0, float("inf")),
        "nonfinite.2": (float("-inf"), float("-inf"), 0.0),
    }
    for pid, values in expected.items():
        row = by_id[pid]
        assert all(map(_same, (row.prediction, row.lower, row.upper), values)), pid
    assert by_id["pruned.1"].item_index == 1 and labelled == [("pruned.1", 1)]
    features = dict(zip(ids, records, strict=True))
    assert features["old.0"] == {"area": 12.0, "kind": "a"}
    assert features["old.1"] == {"area": 13.0, "kind": None}
    assert features["batch.2"] == {"area": 4.0}
    assert features["pruned.1"] == {"area": 10.0}
    assert features["orphan.1"] == {}
    assert (n_items["orphan"], n_items["pruned"], n_items["batch"]) == (2, 1, 3)
    assert (single["single"], single["classes"], single["batch"]) == (True, True, False)
    assert {r.model_version for r in rows} == {"v1"}
    # old seq 6 was nonfinite.0 (batch.2, seq 5, is before it by position too)
    assert watermark == [("windows", by_id["nonfinite.0"].seq)]
    assert spans == [
        (1, by_id["batch.1"].seq),  # rows 1..3 were single, batch.0, batch.1
        (by_id["batch.1"].seq + 1, by_id["nonfinite.0"].seq),
        (by_id["nonfinite.0"].seq + 1, by_id["pruned.1"].seq),
    ]

    with engine.begin() as connection:  # a request stored afterwards comes after
        connection.execute(
            requests.insert().values(
                request_id="later", received_at=sa.func.now(), endpoint="/predict",
                method="POST", status_code=200, latency_seconds=0.01, model_version="v1",
                n_items=1, single=True, outputs=[[1.0, 0.0, 2.0]],
            )
        )  # fmt: skip
        later = connection.execute(
            sa.select(requests.c.seq).where(requests.c.request_id == "later")
        ).scalar_one()
    assert later > max(s for s in seqs.values() if s is not None)
    engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_0010_downgrade_gives_back_every_prediction_and_the_positions_as_numbers(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    engine = create_engine(_blank_url(kind, tmp_path, request))
    upgrade(engine, "0009")
    _insert_0009_log(engine)
    columns = (
        "prediction_id, request_id, item_index, prediction, lower, upper, ood_score, probabilities"
    )

    def stored() -> tuple[list[Any], list[Any]]:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(
                f"SELECT {columns} FROM predictions ORDER BY seq"
            ).all()
            kept = connection.exec_driver_sql(
                "SELECT name, watermark FROM monitor_state WHERE name = 'windows'"
                " UNION ALL SELECT window_id, last_seq FROM window_results"
                " UNION ALL SELECT window_id, first_seq FROM window_results"
            ).all()
        out = []
        for row in rows:
            values = [float(v) if isinstance(v, str) else v for v in row[3:7]]
            values = ["nan" if v is not None and v != v else v for v in values]
            probabilities = row.probabilities
            if isinstance(probabilities, str):
                probabilities = json.loads(probabilities)
            out.append((*row[:3], *values, probabilities))
        return out, sorted(kept)

    before, _ = stored()
    upgrade(engine)
    _migrate(engine, "0009")
    after, kept = stored()

    # batch.2 comes with its batch now; rows are numbered afresh in that order
    moved = before.pop(4)
    before.insert(3, moved)
    assert after == before
    numbers = {r[0]: n for n, r in enumerate(after, start=1)}
    assert kept == sorted(
        [
            ("windows", numbers["nonfinite.0"]),
            ("w0", numbers["batch.1"]), ("w0", 1),
            ("w1", numbers["nonfinite.0"]), ("w1", numbers["batch.1"] + 1),
            ("w2", numbers["pruned.1"]), ("w2", numbers["nonfinite.0"] + 1),
        ]
    )  # fmt: skip
    with engine.begin() as connection:  # the numbering goes on after the rows
        connection.exec_driver_sql(
            "INSERT INTO predictions (prediction_id, request_id, item_index, created_at,"
            " model_version, prediction, lower, upper)"
            f" VALUES ('next', 'next', 0, '{_T}', 'v1', 1, 0, 2)"
        )
        seq = connection.exec_driver_sql(
            "SELECT seq FROM predictions WHERE prediction_id = 'next'"
        ).scalar()
    assert seq == len(after) + 1
    upgrade(engine)  # and up again
    engine.dispose()


# -- 0011: each request's highest OOD score ----------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_0011_gives_every_stored_request_its_highest_ood_score_and_back(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Requests logged at 0010 get ``max_ood_score`` from their outputs (NaN left out,
    ``null`` items and unscored items skipped, infinities kept); the downgrade drops it."""
    engine = create_engine(_blank_url(kind, tmp_path, request))
    upgrade(engine, "0010")
    outputs = {
        "scored": '[[1,0,2,0.5],[1,0,2,2.5],[1,0,2,"NaN"]]',
        "unscored": "[[1,0,2],[1,0,2]]",
        "nan": '[[1,0,2,"NaN"]]',
        "inf": '[[1,0,2,"-Infinity"],null,[1,0,2,"Infinity"]]',
        "classes": "[[1,1,1,null,[0.25,0.75]],[0,0,0,0.75,[0.5,0.5]]]",
        "rejected": None,
    }
    with engine.begin() as connection:
        for n, (rid, text) in enumerate(outputs.items(), 1):
            connection.execute(
                sa.text(
                    "INSERT INTO requests (request_id, received_at, endpoint, method,"
                    " status_code, latency_seconds, model_version, n_items, seq, single,"
                    f" outputs) VALUES (:id, '{_T}', '/predict', 'POST', 200, 0.01, 'v1', 1,"
                    " :seq, false, :outputs)"
                ),
                {"id": rid, "seq": n, "outputs": text},
            )

    upgrade(engine)

    def highest() -> dict[str, float | None]:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT request_id, max_ood_score FROM requests")
            return dict(rows.all())

    assert highest() == {
        "scored": 2.5,
        "unscored": None,
        "nan": None,
        "inf": math.inf,
        "classes": 0.75,
        "rejected": None,
    }
    _migrate(engine, "0010")
    columns = [c["name"] for c in sa.inspect(engine).get_columns("requests")]
    assert "max_ood_score" not in columns and "outputs" in columns
    upgrade(engine)
    assert highest()["scored"] == 2.5
    engine.dispose()


# -- 0012: a category column stored as its values and codes -------------------------------


def test_0012_downgrade_stores_category_codes_as_lists_and_leaves_the_rest(
    engine: sa.Engine,
) -> None:
    """Readers before 0012 read lists only: its downgrade rewrites a request stored
    with values and codes as the lists they stand for, and leaves lists as they are
    (one holding the text that marks the form in a value included)."""
    store_both_forms(engine)
    marked = {"note": ['"codes":[1]', None]}
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE requests SET features = :f WHERE request_id = :id"),
            {"f": json.dumps(marked), "id": LISTS_ID},
        )
    assert json.loads(stored_text(engine, CODES_ID)) != expected_columns()

    _migrate(engine, "0011")

    assert json.loads(stored_text(engine, CODES_ID)) == expected_columns()
    assert json.loads(stored_text(engine, LISTS_ID)) == marked
    upgrade(engine)
    assert current_revision(engine) == head_revision()


# -- 0013: the score beside seq in one index ---------------------------------------------


def _request_indexes(engine: sa.Engine) -> dict[str, tuple[str, ...]]:
    return {
        ix["name"]: tuple(ix["column_names"])
        for ix in sa.inspect(engine).get_indexes("requests")
        if ix["name"] in ("ix_requests_seq", "ix_requests_max_ood_score")
    }


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_0013_moves_the_score_into_the_seq_index_and_back(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Requests logged at 0012 keep their rows and scores; the downgrade builds 0011's
    two indexes again."""
    engine = create_engine(_blank_url(kind, tmp_path, request))
    upgrade(engine, "0012")
    with engine.begin() as connection:
        for n, score in enumerate((0.5, None, 2.5), 1):
            connection.execute(
                sa.text(
                    "INSERT INTO requests (request_id, received_at, endpoint, method,"
                    " status_code, latency_seconds, model_version, n_items, seq, single,"
                    f" max_ood_score) VALUES (:id, '{_T}', '/predict', 'POST', 200, 0.01,"
                    " 'v1', 1, :seq, true, :score)"
                ),
                {"id": f"r{n}", "seq": n, "score": score},
            )

    def stored() -> list[tuple[Any, ...]]:
        with engine.connect() as connection:
            query = "SELECT request_id, seq, max_ood_score FROM requests ORDER BY seq"
            return [tuple(row) for row in connection.exec_driver_sql(query)]

    before = stored()
    assert _request_indexes(engine) == {
        "ix_requests_seq": ("seq",),
        "ix_requests_max_ood_score": ("max_ood_score",),
    }
    upgrade(engine)
    assert _request_indexes(engine) == {"ix_requests_seq": ("seq", "max_ood_score")}
    assert stored() == before
    _migrate(engine, "0012")
    assert _request_indexes(engine) == {
        "ix_requests_seq": ("seq",),
        "ix_requests_max_ood_score": ("max_ood_score",),
    }
    assert stored() == before
    engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_0016_makes_the_view_the_code_describes(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A database at 0015 as the code of its day left it (here: a view reading a value
    as the plain cast did, which raised on ``1e400``) reads every value as the code
    describes after the upgrade: each database alike (booleans NULL, ``1e99999`` an
    infinity). The downgrade keeps that view."""
    engine = create_engine(_blank_url(kind, tmp_path, request))
    upgrade(engine, "0015")
    plain = "(o.v ->> 0)::float8" if kind == "postgresql" else "json_extract(o.value, '$[0]')"
    elements = (
        "json_array_elements(r.outputs::json) AS o(v)"
        if kind == "postgresql"
        else "json_each(r.outputs) o"
    )
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP VIEW predictions")
        connection.exec_driver_sql(
            f"CREATE VIEW predictions AS SELECT r.request_id, {plain} AS prediction"
            f" FROM requests r, {elements}"
        )
        connection.execute(
            sa.text(
                "INSERT INTO requests (request_id, received_at, endpoint, method,"
                " status_code, latency_seconds, model_version, n_items, seq, single,"
                f" outputs) VALUES ('r1', '{_T}', '/predict', 'POST', 200, 0.01, 'v1', 4, 1,"
                " false, :outputs)"
            ),
            {"outputs": "[[1e400, 1, 2], [true, 1, 2], [1e99999, 1, 2], [150000.5, 1, 2]]"},
        )

    def read() -> list[Any]:
        with engine.connect() as connection:
            query = "SELECT prediction FROM predictions ORDER BY item_index"
            return [row[0] for row in connection.exec_driver_sql(query)]

    upgrade(engine)
    assert read() == [math.inf, None, math.inf, 150000.5]
    _migrate(engine, "0015")
    assert read() == [math.inf, None, math.inf, 150000.5]
    engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_0017_reads_outputs_that_are_no_json_and_numbers_of_any_length(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A database at 0016 as the code of its day left it (here: a view expanding the
    outputs with ``::json`` or ``json_each`` alone, which raised on outputs cut short)
    reads them as one prediction of no number after the upgrade, and a number of 400
    digits as its value. The downgrade keeps that view; upgrading again makes it anew."""
    engine = create_engine(_blank_url(kind, tmp_path, request))
    upgrade(engine, "0016")
    if kind == "postgresql":
        plain = (
            "(o.n - 1) AS item_index, (o.v ->> 0)::float8 AS prediction FROM requests r"
            " CROSS JOIN LATERAL json_array_elements(r.outputs::json) WITH ORDINALITY AS o(v, n)"
        )
    else:
        plain = (
            "o.key AS item_index, json_extract(o.value, '$[0]') AS prediction"
            " FROM requests r, json_each(r.outputs) o"
        )
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP VIEW predictions")
        connection.exec_driver_sql(f"CREATE VIEW predictions AS SELECT r.request_id, {plain}")
        for seq, outputs in enumerate(
            (f"[[150000.5, 1, 2], [{'1' * 400}, 1, 2]]", "[[1.0, 0.5"), 1
        ):
            connection.execute(
                sa.text(
                    "INSERT INTO requests (request_id, received_at, endpoint, method,"
                    " status_code, latency_seconds, model_version, n_items, seq, single,"
                    f" outputs) VALUES (:id, '{_T}', '/predict', 'POST', 200, 0.01, 'v1', 2,"
                    " :seq, false, :outputs)"
                ),
                {"id": f"r{seq}", "seq": seq, "outputs": outputs},
            )

    def read() -> list[tuple[Any, ...]]:
        with engine.connect() as connection:
            query = (
                "SELECT request_id, item_index, prediction FROM predictions"
                " ORDER BY request_id, item_index"
            )
            return [tuple(row) for row in connection.exec_driver_sql(query)]

    with pytest.raises(sa.exc.DBAPIError):
        read()
    expected = [("r1", 0, 150000.5), ("r1", 1, math.inf), ("r2", 0, None)]
    upgrade(engine)
    assert read() == expected
    _migrate(engine, "0016")
    assert read() == expected
    upgrade(engine)
    assert read() == expected
    assert current_revision(engine) == head_revision()
    engine.dispose()
