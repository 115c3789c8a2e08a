"""Bytes the prediction log takes per logged prediction, and how fast a prune deletes.

    .venv/bin/python bench/log_size_bench.py [--predictions 20000] [--no-postgres]

Writes Ames sales through the serving writer (``serving.log_store``) into a fresh
SQLite database and a fresh PostgreSQL one (tests/postgres.py), as single-record
requests and as 100-row batches (as JSON bodies give their columns, and as Arrow bodies
do, categories dictionary-encoded), with a label for one prediction in ten, and prints
the database's growth per prediction (tables, indexes and, on SQLite, free pages;
each request's predictions are stored in its ``requests`` row) and the predictions a
prune deleted per second. README, Deployment, sizes the database from
these figures.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving.log_entry import LogEntry, prediction_id  # noqa: E402
from serving.log_store import LogStore  # noqa: E402
from tests.postgres import PostgresServer, find_bindir  # noqa: E402
from watchkeeper.category_column import CategoryColumn  # noqa: E402
from watchkeeper.dataset import load_ames  # noqa: E402
from watchkeeper.db.engine import create_engine  # noqa: E402
from watchkeeper.db.log_stats import collect  # noqa: E402
from watchkeeper.db.migrate import upgrade  # noqa: E402
from watchkeeper.db.retention import Pruner, RetentionPolicy  # noqa: E402
from watchkeeper.db.tables import feedback, requests  # noqa: E402


def _category(values: list[Any]) -> CategoryColumn:
    """A column as an Arrow body's category column reaches the log."""
    distinct = tuple(dict.fromkeys(values))
    code = {v: i for i, v in enumerate(distinct)}
    return CategoryColumn(distinct, np.array([code[v] for v in values], dtype=np.int32))


def _entries(
    frame: object, n: int, batch: int, when: datetime, *, arrow: bool = False
) -> list[LogEntry]:
    records = frame.to_dict(orient="list")  # type: ignore[attr-defined]
    rows = len(next(iter(records.values())))
    entries = []
    for start in range(0, n, batch):
        at = [(start + i) % rows for i in range(batch)]
        columns = {
            name: [None if v != v else v for v in (values[i] for i in at)]
            for name, values in records.items()
        }
        if arrow:
            columns = {
                name: _category(values) if any(isinstance(v, str) for v in values) else values
                for name, values in columns.items()
            }
        values = np.full(batch, 180_000.0)
        entries.append(
            LogEntry(
                request_id=f"{batch}-{start:08d}",
                received_at=when,
                endpoint="/predict",
                method="POST",
                status_code=200,
                latency_seconds=0.004,
                model_version="v1",
                single=batch == 1,
                columns=columns,
                values=values,
                lower=values * 0.9,
                upper=values * 1.1,
                ood=np.full(batch, 0.5),
            )
        )
    return entries


def _size(engine: sa.Engine) -> int:
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("CHECKPOINT")
    stats = collect(engine)
    assert stats.database_bytes is not None
    return stats.database_bytes


def measure(url: str, n: int, batch: int, *, arrow: bool = False) -> tuple[float, float]:
    """Bytes per prediction, and predictions a prune deletes per second."""
    engine = create_engine(url)
    upgrade(engine)
    store = LogStore(engine)
    frame = load_ames().frame.drop(columns=["Sale_Price"])
    old = datetime.now(UTC) - timedelta(days=40)
    before = _size(engine)
    entries = _entries(frame, n, batch, old, arrow=arrow)
    for start in range(0, len(entries), max(1, 2000 // batch)):
        store.insert(entries[start : start + max(1, 2000 // batch)])
    labels = [
        {
            "prediction_id": prediction_id(e.request_id, i, e.single),
            "actual": 1.0,
            "received_at": old,
        }
        for e in entries
        for i in range(e.n_items)
    ][::10]
    with engine.begin() as connection:
        connection.execute(feedback.insert(), labels)
    grown = _size(engine) - before
    # no monitor reads this log: nothing waits to be read
    policy = RetentionPolicy(
        raw_days=30, labelled_days=30, history_days=730, batch_rows=5000, without_monitor=True
    )
    held = _predictions(engine)
    started = time.perf_counter()
    Pruner(engine, policy, pause=False).run()
    seconds = time.perf_counter() - started
    deleted = held - _predictions(engine)
    engine.dispose()
    return grown / n, deleted / seconds


def _predictions(engine: sa.Engine) -> int:
    """Predictions the log holds: each request's in its row (``requests.outputs``)."""
    with engine.connect() as connection:
        return int(
            connection.execute(
                sa.select(sa.func.coalesce(sa.func.sum(requests.c.n_items), 0)).where(
                    requests.c.outputs.is_not(None)
                )
            ).scalar_one()
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--predictions", type=int, default=20_000)
    parser.add_argument("--postgres", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    server = None
    workdir = Path(tempfile.mkdtemp(prefix="wk-log-size-"))
    if args.postgres and (bindir := find_bindir()) is not None:
        server = PostgresServer(bindir).init()
        server.start()
    print(f"{'database':<11}{'request':>15}{'bytes/prediction':>18}{'pruned/s':>11}")
    try:
        for batch, arrow in ((1, False), (100, False), (100, True)):
            urls = [("sqlite", f"sqlite:///{workdir / f'log-{batch}-{arrow}.db'}")]
            if server is not None:
                urls.append(("postgresql", server.create_database()))
            for name, url in urls:
                per_row, rate = measure(url, args.predictions, batch, arrow=arrow)
                label = "single" if batch == 1 else f"{batch} rows" + (" Arrow" if arrow else "")
                print(f"{name:<11}{label:>15}{per_row:>18,.0f}{rate:>11,.0f}")
    finally:
        if server is not None:
            server.destroy()
        shutil.rmtree(workdir, ignore_errors=True)  # the SQLite logs
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
