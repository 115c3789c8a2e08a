"""What storing a request costs the prediction log, and what the readers' plans are on
a filled log (issue 10; figures in bench/README.md).

    OMP_NUM_THREADS=1 .venv/bin/python bench/index_cost_bench.py [--rounds 10]
        [--scale K] [--no-postgres] [--no-sqlite] [--plans FILE]

Makes a log per database at the head, on a real PostgreSQL 15 (started as
``tests/postgres.py`` starts it, with autovacuum off so that no background work lands
in the figures) and on SQLite, and fills each with the same ~220,000 predictions of two
versions (1,000-row requests and single records; today, and 10 and 12 days ago, the
older day in the default partition, the other in its own) and 20,000 labels. Then:

- **insert cost**: each round stores, on every log in a rotated order, four 1,000-row
  requests (one transaction each, through ``serving.log_store``, 71 features) and 200
  single records (two transactions of 100), and two 1,000-row requests of Ames rows as
  an Arrow body's columns reach the log, their category columns as lists and as values
  and codes (each form its own requests); charged to each the CPU of the PostgreSQL
  backend (``/proc/<pid>/schedstat``, nanoseconds) and of the writer's thread
  (``time.thread_time``; on SQLite that is all of it). Medians over rounds, with the
  load average.
- **plans** (with ``--plans FILE``): every statement on ``requests`` or the
  ``predictions`` view run by the readers (the monitor's label reads, the report's
  counts, OOD rows and window features, retraining data, the log's statistics, a
  dry-run and a real prune), on a copy of each log (SQLite's without ``sqlite_stat1``,
  as the server has it), recorded with ``EXPLAIN (ANALYZE)`` on PostgreSQL (in a
  savepoint rolled back) and ``EXPLAIN QUERY PLAN`` plus its run time on SQLite; per
  reader its time and its full scans of ``requests``.

Since migration 0010 a request's predictions are stored in its own ``requests`` row,
and ``predictions`` is a view: the indexes of the old ``predictions`` table, which this
bench compared before and after migration 0009 and in variants, are gone, and so are
the options that measured them (``--variants``, ``--variant-plans``, ``--base-tree``,
``--served-tree``, ``--plan-rounds``, ``--requests-only``; the figures they gave stay
in bench/README.md). ``--scale K`` adds K - 1 times the 180,000 1,000-row
predictions, spread over the 4 days before today's.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# One OpenMP thread, as every Watchkeeper process sets its pools (and
# bench/sqlite_settings_bench.py, which imports this module first).
os.environ["OMP_NUM_THREADS"] = "1"

ROOT = Path(__file__).resolve().parent.parent
FEATURES = 71
BIG = 1000
HISTORY_DAYS = 4
"""The days ``--scale`` spreads its predictions over: all younger than the prune's 5."""
LABELS = 20_000


def _schedstat_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def _columns(rows: int) -> dict[str, list[float]]:
    return {f"f{j:02d}": [float(i * 7 + j) + 0.25 for i in range(rows)] for j in range(FEATURES)}


_BIG_COLUMNS = _columns(BIG)
_ONE_COLUMNS = _columns(1)


def _ames_columns(codes: bool) -> dict[str, Any]:
    """1,000 Ames rows as an Arrow body's columns reach the log: numbers as NumPy
    arrays, the 40 category columns as lists (how they were stored before migration
    0012) or as category columns (stored as their values and codes since)."""
    import numpy as np

    from watchkeeper.category_column import CategoryColumn
    from watchkeeper.dataset import load_ames

    frame = load_ames().frame.drop(columns=["Sale_Price"]).head(BIG)
    columns: dict[str, Any] = {}
    for name in frame.columns:
        values = frame[name]
        if values.dtype.kind in "iuf":
            columns[name] = values.to_numpy()
            continue
        text = [None if v != v else str(v) for v in values.tolist()]
        if codes:
            distinct = tuple(dict.fromkeys(text))
            index = {v: i for i, v in enumerate(distinct)}
            columns[name] = CategoryColumn(distinct, np.array([index[v] for v in text]))
        else:
            columns[name] = text
    return columns


def _arrow_entry(when: datetime, n: int, columns: dict[str, Any]) -> Any:
    entry = _entry(when, BIG, "v1", n)
    entry.columns = columns
    return entry


def _entry(when: datetime, items: int, version: str, n: int) -> Any:
    from serving.log_entry import LogEntry
    from serving.request_ids import new_request_id

    return LogEntry(
        request_id=new_request_id(),  # as serving makes them
        received_at=when,
        endpoint="/predict",
        method="POST",
        status_code=200,
        latency_seconds=0.01,
        model_version=version,
        single=items == 1,
        columns=_BIG_COLUMNS if items == BIG else _ONE_COLUMNS,
        values=[float(n + i) for i in range(items)],
        lower=[n - 1.0] * items,
        upper=[n + 1.0] * items,
        ood=[((n * 31 + i * 17) % 1000) / 100.0 for i in range(items)],
    )


class Log:
    """One prediction log: a database at a revision, and a writer's store on it."""

    def __init__(self, name: str, url: str, revision: str = "head") -> None:
        import sqlalchemy as sa

        from serving.log_store import LogStore
        from watchkeeper.db.engine import create_engine
        from watchkeeper.db.migrate import upgrade

        self.name, self.url = name, url
        self.engine = create_engine(url, poolclass=sa.pool.StaticPool)
        upgrade(self.engine, revision)
        self.store = LogStore(self.engine)
        self.postgres = self.engine.dialect.name == "postgresql"
        self.backend = 0
        if self.postgres:
            with self.engine.connect() as connection:
                self.backend = int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar())

    def timed_insert(self, entries: list[Any]) -> tuple[float, float]:
        """Writer thread and backend CPU of storing ``entries``, in ms."""
        before_backend = _schedstat_ns(self.backend) if self.postgres else 0
        before = time.thread_time_ns()
        self.store.insert(entries)
        writer = (time.thread_time_ns() - before) / 1e6
        backend = (_schedstat_ns(self.backend) - before_backend) / 1e6 if self.postgres else 0.0
        return writer, backend


def fill(log: Log, now: datetime, scale: int = 1) -> None:
    """~220,000 predictions of two versions, 20,000 labels; with ``scale`` > 1, as many
    1,000-row predictions again ``scale - 1`` times, spread over the :data:`HISTORY_DAYS`
    before today's (a log of several days, whose 5-hour periods are a small part)."""
    from serving.log_entry import prediction_id
    from watchkeeper.db.tables import feedback

    if log.postgres:  # one old day in its own partition (dropped by the prune)
        from watchkeeper.db import partitions as parts

        with log.engine.begin() as connection:
            parts.create_partition(
                connection, parts.Partition((now - timedelta(10)).date(), "requests")
            )
    logged: list[tuple[str, int, bool, datetime]] = []  # each request, in the log's order
    n = 0

    def store(entries: list[Any]) -> None:
        log.store.insert(entries)
        logged.extend((e.request_id, e.n_items, e.single, e.received_at) for e in entries)

    history = 180 * (scale - 1)  # 1,000-row requests spread over the days before today's
    for k in range(20 + history + 180):  # and 180 today, 10 ten and 10 twelve days ago
        if k < 20:
            when = now - timedelta(days=10 if k < 10 else 12) + timedelta(seconds=k)
        elif k < 20 + history:
            when = now - timedelta(hours=4, days=HISTORY_DAYS * (1 - (k - 20) / history))
        else:
            when = now - timedelta(hours=4) + timedelta(seconds=k - history)
        store([_entry(when, BIG, "v1" if k % 3 else "v2", n)])
        n += BIG
    for k in range(0, 20000, 100):  # single records today
        when = now - timedelta(hours=3) + timedelta(seconds=k / 10)
        store([_entry(when, 1, "v1", n + i) for i in range(100)])
        n += 100
    every = 11 * scale  # one prediction in so many labelled: 20,000 over the whole log
    labels, position = [], 0
    for request_id, items, single, when in logged:
        for i in range(-position % every, items, every):
            labels.append((prediction_id(request_id, i, single), when))
        position += items
    with log.engine.begin() as connection:
        connection.execute(
            feedback.insert(),
            [
                {"prediction_id": i, "actual": 1.0, "received_at": t + timedelta(hours=1)}
                for i, t in labels[:LABELS]
            ],
        )
    if log.postgres:
        with log.engine.connect() as connection:
            connection.connection.driver_connection.autocommit = True
            connection.exec_driver_sql("VACUUM ANALYZE")
            connection.connection.driver_connection.autocommit = False
    else:
        with log.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")


def measure(logs: list[Log], rounds: int) -> None:
    if rounds <= 0:  # plans only
        return
    now = datetime.now(UTC)
    kinds = ("big", "one", "lists", "codes")
    results: dict[str, dict[str, list[float]]] = {
        log.name: {f"{k}_{part}": [] for k in kinds for part in "wb"} for log in logs
    }
    ames = {"lists": _ames_columns(codes=False), "codes": _ames_columns(codes=True)}
    loads = []
    n = 10_000_000
    for r in range(rounds):
        order = logs[r % len(logs) :] + logs[: r % len(logs)]
        loads.append(os.getloadavg()[0])
        for log in order:
            w = b = 0.0
            for _ in range(4):
                n += BIG
                dw, db = log.timed_insert([_entry(now, BIG, "v1", n)])
                w, b = w + dw, b + db
            results[log.name]["big_w"].append(w / 4)
            results[log.name]["big_b"].append(b / 4)
            w = b = 0.0
            for _ in range(2):
                entries = [_entry(now, 1, "v1", n + i) for i in range(100)]
                n += 100
                dw, db = log.timed_insert(entries)
                w, b = w + dw, b + db
            results[log.name]["one_w"].append(w / 200)
            results[log.name]["one_b"].append(b / 200)
            for form in ("lists", "codes") if r % 2 else ("codes", "lists"):
                w = b = 0.0
                for _ in range(2):
                    n += BIG
                    dw, db = log.timed_insert([_arrow_entry(now, n, ames[form])])
                    w, b = w + dw, b + db
                results[log.name][f"{form}_w"].append(w / 2)
                results[log.name][f"{form}_b"].append(b / 2)
    print(
        f"\ninsert cost, median of {rounds} rounds"
        f" (load average {min(loads):.1f}–{max(loads):.1f}):"
    )
    _table(logs, results, ("1,000-row", "big", 2), ("single", "one", 3))
    print(
        "\n1,000 Ames rows as an Arrow body's columns (numbers as arrays), category"
        " columns stored as lists or as values and codes (migration 0012):"
    )
    _table(logs, results, ("lists", "lists", 2), ("codes", "codes", 2))


def _table(
    logs: list[Log],
    results: dict[str, dict[str, list[float]]],
    *columns: tuple[str, str, int],
) -> None:
    """Per log, the median writer and backend time of each (title, key, decimals)."""
    widths = (19, 17)
    print(
        "  "
        + f"{'log':<18}"
        + "".join(
            f"{title + ': writer':>{width}}{'backend':>10}{'total':>9}"
            for (title, _, _), width in zip(columns, widths, strict=False)
        )
    )
    for log in logs:
        m = {k: statistics.median(v) for k, v in results[log.name].items()}
        cells = "".join(
            f"{m[key + '_w']:>{width - 3}.{d}f} ms{m[key + '_b']:>7.{d}f} ms"
            f"{m[key + '_w'] + m[key + '_b']:>6.{d}f} ms"
            for (_, key, d), width in zip(columns, widths, strict=False)
        )
        print(f"  {log.name:<18}{cells}")


# -- plans ------------------------------------------------------------------------


def _readers(engine: Any, now: datetime) -> list[tuple[str, Any]]:
    """(label, call) for every reader of the log's predictions that filters or joins on
    ``request_id``, ``created_at`` or ``model_version`` (and its neighbours)."""
    import pandas as pd
    import sqlalchemy as sa

    from monitoring import accuracy
    from monitoring.log_reader import LogReader
    from monitoring.report import log_rows, versions
    from monitoring.report.records import Period
    from retrain import data
    from watchkeeper.db import log_stats
    from watchkeeper.db.prediction_seq import prediction_seq
    from watchkeeper.db.retention import Pruner, RetentionPolicy
    from watchkeeper.db.tables import requests
    from watchkeeper.schema import FeatureSchema

    with engine.connect() as connection:  # today's last 1,000-row requests
        big = (
            connection.execute(
                sa.select(requests.c.seq)
                .where(requests.c.n_items == BIG)
                .order_by(requests.c.seq.desc())
                .limit(40)
            )
            .scalars()
            .all()
        )
    # a window of 20 requests (20,000 predictions) before the 20 newest, as positions
    first, last = prediction_seq(big[39], 0) - 1, prediction_seq(big[20], BIG - 1)
    span = accuracy.WindowSpan("w", "v1", first, last, 20_000, now, now)
    day = Period(since=now - timedelta(hours=5), until=now)
    schema = FeatureSchema.derive(pd.DataFrame({"f00": [1.0, 2.0], "y": [1.0, 2.0]}), "y")
    policy = RetentionPolicy(
        raw_days=5, labelled_days=5, history_days=None, batch_rows=1000, without_monitor=True
    )

    def connected(call: Any) -> Any:
        def run() -> Any:
            with engine.connect() as connection:
                return call(connection)

        return run

    reader = LogReader(engine, settle_seconds=0)
    return [
        ("monitor: high mark", reader.high_mark),
        ("monitor: window index", lambda: reader.read_index(first, last)),
        (  # 5 requests: 5,000 rows
            "monitor: window rows",
            lambda: reader.read(first, prediction_seq(big[35], 0) - 1),
        ),
        ("monitor: window labels", connected(lambda c: accuracy.read_window_labels(c, span))),
        ("monitor: recent labels", connected(lambda c: accuracy.read_recent_labels(c, "v1", 500))),
        (
            "monitor: new labels",
            connected(
                lambda c: accuracy.read_new_labels(c, now - timedelta(hours=3), now + timedelta(1))
            ),
        ),
        (
            "monitor: unmatched labels",
            connected(
                lambda c: accuracy.unmatched_labels(c, now - timedelta(hours=3), now + timedelta(1))
            ),
        ),
        (
            "report: count by version, all",
            lambda: versions.predictions_by_version(engine, Period()),
        ),
        ("report: count by version, 5 h", lambda: versions.predictions_by_version(engine, day)),
        (  # `watchkeeper report --since 5h`: a start, no end
            "report: count by version, since",
            lambda: versions.predictions_by_version(engine, Period(since=day.since)),
        ),
        (
            "report: count of v2, 5 h",
            lambda: versions.predictions_by_version(
                engine, Period(day.since, day.until, model_version="v2")
            ),
        ),
        (
            "report: count of v2, all",
            lambda: versions.predictions_by_version(engine, Period(model_version="v2")),
        ),
        (  # the version served most: all its rows or the period's
            "report: count of v1, 5 h",
            lambda: versions.predictions_by_version(
                engine, Period(day.since, day.until, model_version="v1")
            ),
        ),
        (
            "report: count of v1, since",
            lambda: versions.predictions_by_version(
                engine, Period(since=day.since, model_version="v1")
            ),
        ),
        ("report: OOD rows, 5 h", lambda: log_rows.most_out_of_distribution(engine, day, 20)),
        (  # the report's default period: the whole log
            "report: OOD rows, all",
            lambda: log_rows.most_out_of_distribution(engine, Period(), 20),
        ),
        (
            "report: OOD rows of v1, 5 h",
            lambda: log_rows.most_out_of_distribution(
                engine, Period(day.since, day.until, model_version="v1"), 20
            ),
        ),
        (
            "report: OOD rows of v2, 5 h",
            lambda: log_rows.most_out_of_distribution(
                engine, Period(day.since, day.until, model_version="v2"), 20
            ),
        ),
        (
            "report: OOD rows of v1, since",
            lambda: log_rows.most_out_of_distribution(
                engine, Period(since=day.since, model_version="v1"), 20
            ),
        ),
        ("report: window features", lambda: log_rows.window_features(engine, "v1", first, last)),
        (
            "retrain: labelled predictions",
            lambda: data.labelled_predictions(engine, schema, since=now - timedelta(hours=2)),
        ),
        ("log stats", lambda: log_stats.collect(engine)),
        ("prune, dry run", lambda: Pruner(engine, policy, pause=False).run(dry_run=True)),
        ("prune", lambda: Pruner(engine, policy, pause=False).run()),
    ]


def _execution_ms(plan: list[str]) -> float:
    found = [float(m[1]) for line in plan if (m := re.search(r"Execution Time: ([0-9.]+)", line))]
    return found[0] if found else 0.0


def plans(url: str) -> list[dict[str, Any]]:
    """Run the readers on ``url``, recording the plan of every statement on the log's
    requests or predictions, with its run time (the fastest of three for reads)."""
    import sqlalchemy as sa

    from watchkeeper.db.engine import create_engine

    now = datetime.now(UTC)
    engine = create_engine(url)
    postgres = engine.dialect.name == "postgresql"
    recorded: list[dict[str, Any]] = []
    current = {"label": ""}

    @sa.event.listens_for(engine, "before_cursor_execute")
    def explain(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        text = statement.lstrip().upper()
        if (
            executemany
            or not ("PREDICTIONS" in text or "REQUESTS" in text)
            or not text.startswith(("SELECT", "DELETE", "WITH", "UPDATE"))
        ):
            return
        entry = {"label": current["label"], "sql": statement, "plan": ""}
        raw = cursor.connection
        if postgres:  # the fastest of three runs: one run's time is mostly noise here
            runs = []
            for _ in range(3):
                raw.execute("SAVEPOINT wk_explain")
                rows = raw.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                runs.append([r[0] for r in rows.fetchall()])
                raw.execute("ROLLBACK TO SAVEPOINT wk_explain")
            entry["plan"] = "\n".join(min(runs, key=_execution_ms))
        else:
            rows = raw.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
            entry["plan"] = "\n".join(f"{r[0]}/{r[1]}: {r[3]}" for r in rows)
            if not text.startswith("SELECT"):
                context._wk_started = time.perf_counter()
            else:
                times = []
                for _ in range(3):
                    started = time.perf_counter()
                    raw.execute(statement, parameters).fetchall()
                    times.append(time.perf_counter() - started)
                entry["plan"] += f"\n  run time {1000 * min(times):.2f} ms"
        recorded.append(entry)

    @sa.event.listens_for(engine, "after_cursor_execute")
    def timed(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        started = getattr(context, "_wk_started", None)
        if started is not None and recorded:
            recorded[-1]["plan"] += f"\n  run time {1000 * (time.perf_counter() - started):.2f} ms"

    for label, call in _readers(engine, now):
        current["label"] = label
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - a reader that fails is reported
            recorded.append({"label": label, "sql": "", "plan": f"FAILED: {exc!r}"})
    engine.dispose()
    return recorded


_SCAN = re.compile(
    r"(?P<node>[A-Za-z ]*Scan(?: Backward)?)(?: using (?P<index>\S+))? on (?P<rel>\S+)"
    r"(?: \S+)?\s+\(cost=(?P<cost>[0-9.]+\.\.[0-9.]+).*?actual time=\S+ rows=(?P<rows>\d+)"
    r" loops=(?P<loops>\d+)"
)


def _statement_ms(plan: str) -> float:
    found = re.findall(r"(?:Execution Time:|run time) ([0-9.]+) ms", plan)
    return sum(float(x) for x in found)


def _full_scans(plan: str) -> int:
    """Scans reading a whole table (or partition) of requests: PostgreSQL's sequential
    scans of more than 1,000 rows, SQLite's ``SCAN requests`` (or ``SCAN r``, the view's
    name for it) without an index."""
    postgres = sum(
        1
        for m in _SCAN.finditer(plan)
        if "Seq Scan" in m["node"]
        and m["rel"].startswith("requests")
        and int(m["rows"]) * int(m["loops"]) > 1000
    )
    return postgres + len(re.findall(r"SCAN (?:requests|r)(?!\S| USING)", plan))


def _report(name: str, recorded: list[dict[str, Any]]) -> None:
    """Per reader: the time of its statements and its full scans of requests."""
    print(f"\nreaders on {name}:")
    print(f"    {'reader':<34}{'time':>11}  full scans")
    for label in dict.fromkeys(e["label"] for e in recorded):
        mine = [e["plan"] for e in recorded if e["label"] == label]
        failed = "  FAILED" if any("FAILED" in p for p in mine) else ""
        total, scans = sum(map(_statement_ms, mine)), sum(map(_full_scans, mine))
        print(f"    {label:<34}{total:>8.2f} ms  {scans}{failed}")


def _copy(url: str, suffix: str, *, statistics: bool = True) -> str:
    """A copy of a log (the readers prune the one they read): a SQLite file (without
    ``sqlite_stat1`` unless ``statistics``: the server never runs ``ANALYZE``), or a
    PostgreSQL database made from it as a template."""
    import sqlite3

    import sqlalchemy as sa

    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        copy = path.removesuffix(".db") + f"{suffix}.db"
        shutil.copyfile(path, copy)
        if not statistics:
            with sqlite3.connect(copy) as connection:
                connection.execute("DROP TABLE IF EXISTS sqlite_stat1")
        return f"sqlite:///{copy}"
    server, name = url.rsplit("/", 1)
    engine = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    copy = name + suffix.replace("-", "_")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{copy}" TEMPLATE "{name}"')
    engine.dispose()
    return f"{server}/{copy}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--scale",
        type=int,
        default=1,
        help="1,000-row predictions times this, those beyond 180,000 over the 4 days before"
        " (1: ~220,000 predictions; 8: ~1.5 M)",
    )
    parser.add_argument("--plans", type=Path, help="run the readers and write their plans here")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.postgres import PostgresServer, find_bindir

    started = time.monotonic()
    print(f"load average at the start: {os.getloadavg()}")
    work = Path(tempfile.mkdtemp(prefix="wk-index-"))
    server = None
    logs: list[Log] = []
    try:
        bindir = None if args.no_postgres else find_bindir()
        if bindir is not None:
            server = PostgresServer(bindir).init()
            server.start()
            with (
                __import__("sqlalchemy")
                .create_engine(server.url(), isolation_level="AUTOCOMMIT")
                .connect() as c
            ):
                c.exec_driver_sql("ALTER SYSTEM SET autovacuum = off")
                c.exec_driver_sql("SELECT pg_reload_conf()")
            logs.append(Log("postgres", server.create_database()))
        if not args.no_sqlite:
            logs.append(Log("sqlite", f"sqlite:///{work}/log.db"))
        now = datetime.now(UTC)
        for log in logs:
            t = time.monotonic()
            fill(log, now, args.scale)
            print(f"filled {log.name} in {time.monotonic() - t:.0f} s")
        measure(logs, args.rounds)
        if args.plans is not None:
            lines = []
            for log in logs:
                log.engine.dispose()  # no session left: PostgreSQL copies it as a template
                name = log.name if log.postgres else f"{log.name} as served (no sqlite_stat1)"
                recorded = plans(_copy(log.url, "-read", statistics=log.postgres))
                _report(name, recorded)
                lines += [f"=== {name} | {e['label']}\n{e['sql']}\n{e['plan']}\n" for e in recorded]
            args.plans.parent.mkdir(parents=True, exist_ok=True)
            args.plans.write_text("\n".join(lines))
            print(f"plans written to {args.plans}")
    finally:
        for log in logs:
            log.engine.dispose()
        if server is not None:
            server.destroy()
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()}; {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
