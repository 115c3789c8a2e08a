"""What the indexes of ``predictions`` cost per logged row, and what the readers' plans
are, before and after migration 0009 (issue 10; figures in bench/README.md).

    OMP_NUM_THREADS=1 .venv/bin/python bench/index_cost_bench.py [--rounds 12]
        [--variants [NAME ...]] [--variant-plans] [--base-tree DIR] [--no-postgres]
        [--no-sqlite] [--plans FILE] [--served-tree DIR] [--plan-rounds N] [--scale K]
        [--requests-only]

Makes two logs per database, one migrated to 0008 ("before") and one to the head
("after"), on a real PostgreSQL 15 (started as ``tests/postgres.py`` starts it, with
autovacuum off so that no background work lands in either side's figures) and on
SQLite, and fills each with the same ~262,000 predictions of two versions (1,000-row
requests and single records; today, and 10 and 12 days ago, the older day in the
default partition, the other in its own) and 20,000 labels. ``--variants`` adds
logs whose schema is changed by SQL after the upgrade (:data:`VARIANTS` on PostgreSQL,
:data:`SQLITE_VARIANTS` on SQLite; given names, only those). Then:

- **insert cost**, A/B interleaved: each round stores, on every log in a rotated order,
  four 1,000-row requests (one transaction each, through ``serving.log_store``, 71
  features) and 200 single records (two transactions of 100); charged to each the CPU
  of the PostgreSQL backend (``/proc/<pid>/schedstat``, nanoseconds) and of the
  writer's thread (``time.thread_time``; on SQLite that is all of it). Medians over
  rounds and of the per-round ratios (each log against the one at 0008, a variant also
  against the one at the head), with the load average. ``--requests-only`` times a
  log at the head whose inserts leave out the prediction rows (filled like the
  others): what the rows cost at all. A BRIN index's summary of
  new rows is made by ``VACUUM`` (``brin_summarize_new_values``): its cost is measured
  at the end.
- **plans** (with ``--base-tree``): every statement that reads ``predictions`` run by
  the readers (the monitor's label reads, the report's counts, OOD rows and window
  features, retraining data, the log's statistics, a dry-run and a real prune) is
  recorded with ``EXPLAIN (ANALYZE)`` on PostgreSQL (in a savepoint rolled back) and
  ``EXPLAIN QUERY PLAN`` plus its run time on SQLite (reads: the fastest of three runs
  on both), the "before" log read by the code of ``--base-tree`` (a checkout at
  migration 0008) and the "after" log by this tree. Every plan is written to
  ``--plans`` (default ``var/index_plans.txt``); the scans of each distinct statement
  are printed side by side.
- **variants' plans** (with ``--variant-plans``): the same readers, with this tree, on
  the head's log and on each variant's, and on SQLite also on copies of both without
  ``sqlite_stat1`` (the server never runs ``ANALYZE``, so its planner has no
  statistics); per reader the time of its statements and its full scans of
  ``predictions``, marked REGRESSION where the time grows > 1.5x (and by > 1 ms) or a
  full scan appears. On SQLite, then, a table per reader of the head's log **as
  served** (without ``sqlite_stat1``) against the same log with statistics, SLOWER AS
  SERVED where it takes > 1.5x (and > 1 ms more); with ``--served-tree DIR`` (e.g. a
  checkout of main) that code reads the same logs too, side by side with this tree
  (its plans compared, PostgreSQL's included). ``--plan-rounds N`` reads every log N
  times, each time on fresh copies made before any read (a run prunes what it reads),
  in a rotated order, and keeps each statement's fastest run. ``--rounds 0``: no
  insert cost (and no log at 0008 unless ``--base-tree``). ``--scale K`` adds K - 1
  times the 180,000 1,000-row predictions, spread over the 4 days before today's (a
  log of several days, in which a 5-hour period is a small part: K = 8, 1.48 M).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# One OpenMP thread, here and in the processes it starts (--base-tree), set before NumPy
# loads, as every Watchkeeper process sets its pools (and bench/sqlite_settings_bench.py,
# which imports this module first).
os.environ["OMP_NUM_THREADS"] = "1"

ROOT = Path(__file__).resolve().parent.parent
FEATURES = 71
BIG = 1000
HISTORY_DAYS = 4
"""The days ``--scale`` spreads its predictions over: all younger than the prune's 5."""


_BRIN = (
    "DROP INDEX ix_predictions_created_at;"
    " CREATE INDEX ix_predictions_created_at ON predictions USING brin (created_at)"
)
_IDS_C = ";".join(
    f'ALTER TABLE {t} ALTER COLUMN {c} TYPE varchar({n}) COLLATE "C"'
    for t, c, n in (
        ("predictions", "prediction_id", 48),
        ("predictions", "request_id", 32),
        ("requests", "request_id", 32),
        ("feedback", "prediction_id", 48),
    )
)


def _composite(first: str, second: str) -> str:
    """The two single-column indexes replaced by one on both columns (one B-tree less
    per logged row)."""
    return (
        "DROP INDEX ix_predictions_created_at; DROP INDEX ix_predictions_model_version;"
        f" CREATE INDEX ix_predictions_{first}_{second} ON predictions ({first}, {second})"
    )


VARIANTS = {
    "brin-only": ("0008", _BRIN),
    "ids-c-only": ("0008", _IDS_C),
    "no-request-ix": ("0008", "DROP INDEX ix_predictions_request_id"),
    "brin-ids-c": ("0008", _BRIN + ";" + _IDS_C),
    "no-request-ix-brin": ("0008", "DROP INDEX ix_predictions_request_id;" + _BRIN),
    "no-3-ix-brin": (
        "0008",
        "DROP INDEX ix_predictions_request_id; DROP INDEX ix_predictions_model_version;" + _BRIN,
    ),
    "composite-cm": ("0009", _composite("created_at", "model_version")),
    "composite-mc": ("0009", _composite("model_version", "created_at")),
}
"""PostgreSQL schemas measured beside the others with ``--variants``: the revision
and SQL run after upgrading to it."""
SQLITE_VARIANTS = {
    "composite-cm": ("0009", _composite("created_at", "model_version")),
    "composite-mc": ("0009", _composite("model_version", "created_at")),
}
"""The same for SQLite."""


def _schedstat_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def _columns(rows: int) -> dict[str, list[float]]:
    return {f"f{j:02d}": [float(i * 7 + j) + 0.25 for i in range(rows)] for j in range(FEATURES)}


_BIG_COLUMNS = _columns(BIG)
_ONE_COLUMNS = _columns(1)


def _entry(when: datetime, items: int, version: str, n: int) -> Any:
    from serving.log_entry import LogEntry

    return LogEntry(
        request_id=uuid.uuid4().hex,  # as serving.request_log makes them
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


def _requests_only(store: type) -> type:
    """``store`` storing each entry's request row (its features included) and no
    prediction rows: what the log would cost with no row per prediction at all."""

    class RequestsOnly(store):  # type: ignore[misc, valid-type]
        def _sqlite_predictions(self, entry: Any, created: str) -> Any:
            return iter(())

        @staticmethod
        def _binary_rows(entry: Any) -> bytes:
            return b""

        @staticmethod
        def _postgres_tuples(entry: Any) -> list[Any]:
            return []

    return RequestsOnly


class Log:
    """One prediction log: a database at a revision, and a writer's store on it."""

    def __init__(
        self, name: str, url: str, revision: str, extra: str = "", rows: bool = True
    ) -> None:
        import sqlalchemy as sa

        from serving.log_store import LogStore
        from watchkeeper.db.engine import create_engine
        from watchkeeper.db.migrate import upgrade

        self.name, self.url = name, url
        self.engine = create_engine(url, poolclass=sa.pool.StaticPool)
        upgrade(self.engine, revision)
        if extra:  # a variant of the schema, measured beside it
            with self.engine.begin() as connection:
                for statement in extra.split(";"):
                    connection.exec_driver_sql(statement)
        self.store = LogStore(self.engine)
        # Filled like the others, timed without prediction rows (--requests-only).
        self.timed_store = self.store if rows else _requests_only(LogStore)(self.engine)
        self.postgres = self.engine.dialect.name == "postgresql"
        self.backend = 0
        if self.postgres:
            with self.engine.connect() as connection:
                self.backend = int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar())

    def timed_insert(self, entries: list[Any]) -> tuple[float, float]:
        """Writer thread and backend CPU of storing ``entries``, in ms."""
        before_backend = _schedstat_ns(self.backend) if self.postgres else 0
        before = time.thread_time_ns()
        self.timed_store.insert(entries)
        writer = (time.thread_time_ns() - before) / 1e6
        backend = (_schedstat_ns(self.backend) - before_backend) / 1e6 if self.postgres else 0.0
        return writer, backend


def fill(log: Log, now: datetime, scale: int = 1) -> None:
    """~220,000 predictions of two versions, 20,000 labels; with ``scale`` > 1, as many
    1,000-row predictions again ``scale - 1`` times, spread over the :data:`HISTORY_DAYS`
    before today's (a log of several days, whose 5-hour periods are a small part)."""
    import sqlalchemy as sa

    from watchkeeper.db.tables import feedback, predictions

    n = 0
    if log.postgres:  # one old day in its own partition (dropped by the prune)
        from watchkeeper.db import partitions as parts

        with log.engine.begin() as connection:
            parts.create_partition(
                connection, parts.Partition((now - timedelta(10)).date(), "predictions")
            )
            parts.create_partition(
                connection, parts.Partition((now - timedelta(10)).date(), "requests")
            )
    history = 180 * (scale - 1)  # 1,000-row requests spread over the days before today's
    for k in range(20 + history + 180):  # and 180 today, 10 ten and 10 twelve days ago
        if k < 20:
            when = now - timedelta(days=10 if k < 10 else 12) + timedelta(seconds=k)
        elif k < 20 + history:
            when = now - timedelta(hours=4, days=HISTORY_DAYS * (1 - (k - 20) / history))
        else:
            when = now - timedelta(hours=4) + timedelta(seconds=k - history)
        log.store.insert([_entry(when, BIG, "v1" if k % 3 else "v2", n)])
        n += BIG
    for k in range(0, 20000, 100):  # single records today
        when = now - timedelta(hours=3) + timedelta(seconds=k / 10)
        log.store.insert([_entry(when, 1, "v1", n + i) for i in range(100)])
        n += 100
    with log.engine.begin() as connection:
        ids = connection.execute(
            sa.select(predictions.c.prediction_id, predictions.c.created_at)
            .where(predictions.c.seq % (11 * scale) == 0)  # 20,000 over the whole log
            .order_by(predictions.c.seq)
            .limit(20000)
        ).all()
        connection.execute(
            feedback.insert(),
            [
                {"prediction_id": i, "actual": 1.0, "received_at": t + timedelta(hours=1)}
                for i, t in ids
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


def brin_summary_ms(log: Log) -> float:
    """Backend CPU of summarising the BRIN ranges not summarised yet (what VACUUM does)."""
    before = _schedstat_ns(log.backend)
    with log.engine.begin() as connection:
        names = connection.exec_driver_sql(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'brin'"
            " AND c.relkind = 'i'"
        ).scalars()
        for name in list(names):
            connection.exec_driver_sql(f"SELECT brin_summarize_new_values('{name}')")
    return (_schedstat_ns(log.backend) - before) / 1e6


def measure(logs: list[Log], rounds: int) -> None:
    if rounds <= 0:  # plans only
        return
    now = datetime.now(UTC)
    results: dict[str, dict[str, list[float]]] = {
        log.name: {"big_w": [], "big_b": [], "one_w": [], "one_b": []} for log in logs
    }
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
    print(
        f"\ninsert cost, median of {rounds} rounds"
        f" (load average {min(loads):.1f}–{max(loads):.1f}):"
    )
    print(
        f"  {'log':<18}{'1,000-row: writer':>19}{'backend':>10}{'total':>9}"
        f"{'single: writer':>17}{'backend':>10}{'total':>9}"
    )
    for log in logs:
        m = {k: statistics.median(v) for k, v in results[log.name].items()}
        print(
            f"  {log.name:<18}{m['big_w']:>16.2f} ms{m['big_b']:>7.2f} ms"
            f"{m['big_w'] + m['big_b']:>6.2f} ms{m['one_w']:>14.3f} ms{m['one_b']:>7.3f} ms"
            f"{m['one_w'] + m['one_b']:>6.3f} ms"
        )
    # each log against the one at 0008 and (the variants) against the one at the head
    pairs = [
        (a, b)
        for a in logs
        for b in logs
        if a.name.endswith(("before", "after"))
        and not b.name.endswith(("before", a.name.rsplit("-", 1)[1]))
        and b.name.split("-")[0] == a.name.split("-")[0]
    ]
    for a, b in pairs:
        for key, label in (("big", "1,000-row"), ("one", "single")):
            ratios = [
                (bw + bb) / (aw + ab)
                for aw, ab, bw, bb in zip(
                    results[a.name][f"{key}_w"],
                    results[a.name][f"{key}_b"],
                    results[b.name][f"{key}_w"],
                    results[b.name][f"{key}_b"],
                    strict=True,
                )
            ]
            print(
                f"  {b.name} / {a.name}, {label}: {statistics.median(ratios):.3f}x"
                f" (per-round range {min(ratios):.3f}–{max(ratios):.3f})"
            )
    for log in logs:
        if log.postgres and not log.name.endswith("before"):
            rows = rounds * (4 * BIG + 200)
            ms = brin_summary_ms(log)
            print(
                f"  {log.name}: BRIN summary of the {rows:,} rows inserted: {ms:.1f} ms"
                f" ({ms / rows * 1000:.3f} ms per 1,000 rows)"
            )


# -- plans ------------------------------------------------------------------------


def _readers(engine: Any, now: datetime) -> list[tuple[str, Any]]:
    """(label, call) for every reader of ``predictions`` that filters or joins on
    ``request_id``, ``created_at`` or ``model_version`` (and its neighbours)."""
    import pandas as pd
    import sqlalchemy as sa

    from monitoring import accuracy
    from monitoring.log_reader import LogReader
    from monitoring.report import log_rows, versions
    from monitoring.report.records import Period
    from retrain import data
    from watchkeeper.db import log_stats
    from watchkeeper.db.retention import Pruner, RetentionPolicy
    from watchkeeper.db.tables import predictions
    from watchkeeper.schema import FeatureSchema

    with engine.connect() as connection:
        top = int(connection.execute(sa.select(sa.func.max(predictions.c.seq))).scalar())
    first, last = top - 60_000, top - 40_000
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
        ("monitor: window rows", lambda: reader.read(first, first + 5000)),
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


def plans(url: str, out: Path, now_text: str) -> None:
    """Run the readers on ``url``, recording the plan of every statement on
    ``predictions`` (this process imports the code to measure)."""
    import sqlalchemy as sa

    from watchkeeper.db.engine import create_engine

    now = datetime.fromisoformat(now_text)
    engine = create_engine(url)
    postgres = engine.dialect.name == "postgresql"
    recorded: list[dict[str, Any]] = []
    current = {"label": ""}

    @sa.event.listens_for(engine, "before_cursor_execute")
    def explain(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        text = statement.lstrip().upper()
        if (
            executemany
            or "PREDICTIONS" not in text
            or not text.startswith(("SELECT", "DELETE", "WITH"))
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
            if text.startswith("DELETE"):
                context._wk_started = time.perf_counter()
            else:  # a read: the fastest of three runs, as on PostgreSQL
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
    out.write_text(json.dumps(recorded))
    engine.dispose()


def _run_plans(tree: Path, url: str, out: Path, now: datetime) -> list[dict[str, Any]]:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--plans-of",
            url,
            "--plans-out",
            str(out),
            "--now",
            now.isoformat(),
        ],
        check=True,
        env=env,
        cwd=tree,
    )
    return json.loads(out.read_text())


_SCAN = re.compile(
    r"(?P<node>[A-Za-z ]*Scan(?: Backward)?)(?: using (?P<index>\S+))? on (?P<rel>\S+)"
    r"(?: \S+)?\s+\(cost=(?P<cost>[0-9.]+\.\.[0-9.]+).*?actual time=\S+ rows=(?P<rows>\d+)"
    r" loops=(?P<loops>\d+)"
)


def _summary(plan: str) -> str:
    """The scans of a plan on one line: PostgreSQL's, but for those of empty partitions
    (costed 0), with the rows they returned; SQLite's plan lines; the time taken."""
    parts = []
    for line in plan.splitlines():
        match = _SCAN.search(line)
        if match:
            if match["cost"] == "0.00..0.00":
                continue
            how = match["node"].strip() + (f" {match['index']}" if match["index"] else "")
            parts.append(f"{how} on {match['rel']} ({match['rows']}×{match['loops']})")
        elif "Execution Time" in line or "run time" in line:
            parts.append(line.strip())
        elif re.match(r"\d+/\d+: ", line) or "FAILED" in line:
            parts.append(line.split(": ", 1)[1] if ": " in line else line)
    return "; ".join(parts)


def _compare(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
    labels = list(dict.fromkeys(e["label"] for e in before + after))
    for label in labels:
        print(f"  {label}")
        for side, entries in (("before", before), ("after", after)):
            seen: dict[str, int] = {}
            for entry in entries:
                if entry["label"] == label:
                    text = re.sub(r"[0-9.]+ ms", "", _summary(entry["plan"]))
                    if text in seen:
                        continue
                    seen[text] = 1
                    print(f"    {side:<7}{_summary(entry['plan'])}")


def _chosen(variants: dict[str, tuple[str, str]], names: list[str] | None) -> dict:
    if names is None:
        return {}
    return {k: v for k, v in variants.items() if not names or k in names}


def _without_statistics(url: str, suffix: str = "-nostat") -> str:
    """A copy of a SQLite log without ``sqlite_stat1``: the planner as the server has it."""
    import sqlite3

    copy = _copy(url, suffix)
    with sqlite3.connect(copy.removeprefix("sqlite:///")) as connection:
        connection.execute("DROP TABLE IF EXISTS sqlite_stat1")
    return copy


def _copy(url: str, suffix: str) -> str:
    """A copy of a log (each run of the readers prunes the one it reads): a SQLite file,
    or a PostgreSQL database made from it as a template."""
    import sqlalchemy as sa

    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        copy = path.removesuffix(".db") + f"{suffix}.db"
        shutil.copyfile(path, copy)
        return f"sqlite:///{copy}"
    server, name = url.rsplit("/", 1)
    engine = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    copy = name + suffix.replace("-", "_")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{copy}" TEMPLATE "{name}"')
    engine.dispose()
    return f"{server}/{copy}"


def _drop(url: str) -> None:
    """Remove a copy made by :func:`_copy`."""
    import sqlalchemy as sa

    if url.startswith("sqlite"):
        for suffix in ("", "-wal", "-shm"):
            Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
        return
    server, name = url.rsplit("/", 1)
    engine = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE "{name}"')
    engine.dispose()


def _fastest(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Of several rounds' recordings of one log's readers, each statement's fastest
    run, in the first round's order: a statement is its reader, its text and how many
    times that reader ran that text before (a prune's batches may differ by round)."""

    def keyed(run: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
        seen: dict[tuple[str, str], int] = {}
        out = {}
        for entry in run:
            text = entry["label"], entry["sql"]
            seen[text] = seen.get(text, -1) + 1
            out[(*text, seen[text])] = entry
        return out

    rounds = [keyed(run) for run in runs]
    return [
        min((r[key] for r in rounds if key in r), key=lambda e: _statement_ms(e["plan"]))
        for key in rounds[0]
    ]


def _statement_ms(plan: str) -> float:
    found = re.findall(r"(?:Execution Time:|run time) ([0-9.]+) ms", plan)
    return sum(float(x) for x in found)


def _full_scans(plan: str) -> int:
    """Scans reading a whole table (or partition) of predictions: PostgreSQL's sequential
    scans of more than 1,000 rows, SQLite's ``SCAN predictions`` without an index."""
    postgres = sum(
        1
        for m in _SCAN.finditer(plan)
        if "Seq Scan" in m["node"]
        and m["rel"].startswith("predictions")
        and int(m["rows"]) * int(m["loops"]) > 1000
    )
    return postgres + len(re.findall(r"SCAN predictions(?!\S| USING)", plan))


def _verdict(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
    """Per reader: the time of all its statements on predictions, before and after, and
    its full scans of predictions; REGRESSION where the time grows > 1.5x (and by more
    than 1 ms) or a full scan appears."""
    print(f"    {'reader':<34}{'before':>11}{'after':>11}{'ratio':>8}  full scans")
    for label in dict.fromkeys(e["label"] for e in before + after):
        b = [e["plan"] for e in before if e["label"] == label]
        a = [e["plan"] for e in after if e["label"] == label]
        tb, ta = sum(map(_statement_ms, b)), sum(map(_statement_ms, a))
        sb, sa_ = sum(map(_full_scans, b)), sum(map(_full_scans, a))
        ratio = ta / tb if tb else float("nan")
        # a millisecond's difference is the noise of a shared machine, whatever the ratio
        flag = "  REGRESSION" if (ratio > 1.5 and ta - tb > 1.0) or sa_ > sb else ""
        print(f"    {label:<34}{tb:>8.2f} ms{ta:>8.2f} ms{ratio:>7.2f}x  {sb} -> {sa_}{flag}")


def _as_served(
    recorded: dict[str, list[dict[str, Any]]], kind: str, trees: list[str], load: str
) -> None:
    """Per reader on SQLite: its time on the head's log as served (no ``sqlite_stat1``)
    and on the same log with statistics, for each tree that read both; SLOWER where as
    served takes > 1.5x (and > 1 ms more), "plan" where the plans differ."""
    print(
        f"\n{kind} readers as served (no sqlite_stat1) against the same log with statistics"
        f" (load average {load}):"
    )
    head = f"    {'reader':<34}"
    for tree in trees:
        head += f"{tree + ': served':>20}{'stats':>10}{'ratio':>8}"
    print(head)
    labels = dict.fromkeys(e["label"] for e in recorded[f"{kind}-after"] if e["label"])
    for label in labels:
        line, notes = f"    {label:<34}", []
        for tree in trees:
            at = "" if tree == "this tree" else "@base"
            served = [
                e["plan"] for e in recorded[f"{kind}-after-nostat{at}"] if e["label"] == label
            ]
            stats = [e["plan"] for e in recorded[f"{kind}-after{at}"] if e["label"] == label]
            ts, tt = sum(map(_statement_ms, served)), sum(map(_statement_ms, stats))
            ratio = ts / tt if tt else float("nan")
            line += f"{ts:>17.2f} ms{tt:>7.2f} ms{ratio:>7.2f}x"

            def shape(plans: list[str]) -> list[str]:
                return [re.sub(r"run time [0-9.]+ ms", "", _summary(p)) for p in plans]

            if ratio > 1.5 and ts - tt > 1.0:
                notes.append(f"SLOWER AS SERVED ({tree})")
            if shape(served) != shape(stats):
                notes.append(f"plan ({tree})")
        print(line + ("  " + ", ".join(notes) if notes else ""))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--base-tree", type=Path, help="a checkout at migration 0008")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--variants",
        nargs="*",
        metavar="NAME",
        help="also the schemas of VARIANTS (PostgreSQL) and SQLITE_VARIANTS; names: only those",
    )
    parser.add_argument(
        "--variant-plans",
        action="store_true",
        help="run every reader on the variants' logs and on the head's, with this tree",
    )
    parser.add_argument(
        "--served-tree",
        type=Path,
        help="with --variant-plans: also read the head's log (with and without statistics,"
        " on copies) with the code of this checkout, beside this tree's",
    )
    parser.add_argument(
        "--plan-rounds",
        type=int,
        default=1,
        help="read every log this many times (fresh copies, rotated order); each statement's"
        " fastest",
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=1,
        help="1,000-row predictions times this, those beyond 180,000 over the 4 days before"
        " (1: ~262,000 predictions; 8: ~1.5 M)",
    )
    parser.add_argument(
        "--requests-only",
        action="store_true",
        help="also time a log at the head storing each entry's request row and no prediction"
        " rows (filled like the others): what the rows cost, whatever their indexes",
    )
    parser.add_argument("--plans", type=Path, default=ROOT / "var" / "index_plans.txt")
    parser.add_argument("--plans-of", help=argparse.SUPPRESS)
    parser.add_argument("--plans-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--now", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plans_of:
        plans(args.plans_of, args.plans_out, args.now)
        return
    sys.path.insert(0, str(ROOT))
    from tests.postgres import PostgresServer, find_bindir

    started = time.monotonic()
    print(f"load average at the start: {os.getloadavg()}")
    work = Path(tempfile.mkdtemp(prefix="wk-index-"))
    server = None
    logs: list[Log] = []
    try:
        # the logs at 0008 are for the insert cost's ratios and --base-tree's plans
        sides = (("before", "0008"), ("after", "head"))
        if args.rounds <= 0 and args.base_tree is None:
            sides = sides[1:]
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
            for side, revision in sides:
                logs.append(Log(f"postgres-{side}", server.create_database(), revision))
            for name, (revision, extra) in _chosen(VARIANTS, args.variants).items():
                url = server.create_database()  # other schemas, measured beside them
                logs.append(Log(f"postgres-{name}", url, revision, extra))
            if args.requests_only:
                logs.append(
                    Log("postgres-requests-only", server.create_database(), "head", rows=False)
                )
        for side, revision in () if args.no_sqlite else sides:
            logs.append(Log(f"sqlite-{side}", f"sqlite:///{work}/{side}.db", revision))
        for name, (revision, extra) in (
            () if args.no_sqlite else _chosen(SQLITE_VARIANTS, args.variants).items()
        ):
            logs.append(Log(f"sqlite-{name}", f"sqlite:///{work}/{name}.db", revision, extra))
        if args.requests_only and not args.no_sqlite:
            url = f"sqlite:///{work}/requests-only.db"
            logs.append(Log("sqlite-requests-only", url, "head", rows=False))
        now = datetime.now(UTC)
        for log in logs:
            t = time.monotonic()
            fill(log, now, args.scale)
            print(f"filled {log.name} in {time.monotonic() - t:.0f} s")
        measure(logs, args.rounds)
        if args.base_tree is not None or args.variant_plans:
            for log in logs:
                log.engine.dispose()
                if log.postgres:  # as autovacuum would, before the readers
                    import sqlalchemy as sa

                    vacuum = sa.create_engine(log.url, isolation_level="AUTOCOMMIT")
                    with vacuum.connect() as c:
                        c.exec_driver_sql("VACUUM ANALYZE")
                    vacuum.dispose()  # no session left: the log is copied as a template
            lines = []
            recorded: dict[str, list[dict[str, Any]]] = {}
            # (name, log, with statistics): each read on its own copy, made before any
            # reads (a run prunes the log it reads), fresh in every round
            read = [
                (x.name, x.url, True)
                for x in logs
                if (x.name.endswith("before") and args.base_tree is not None)
                or x.name.endswith("after")
                or (args.variant_plans and not x.name.endswith("before"))
            ]
            if args.variant_plans:  # SQLite as served: the server never runs ANALYZE
                heads = list(read)
                read += [(f"{n}-nostat", u, False) for n, u, _ in heads if u.startswith("sqlite")]
                if args.served_tree is not None:  # the head's log read by that code too
                    for name, url, _ in heads:
                        if name.endswith("after"):
                            read.append((f"{name}@base", url, True))
                            if url.startswith("sqlite"):
                                read.append((f"{name}-nostat@base", url, False))
            loads = [os.getloadavg()[0]]
            rounds: dict[str, list[list[dict[str, Any]]]] = {name: [] for name, _, _ in read}
            for r in range(args.plan_rounds):
                copies = {
                    name: (_copy if stats else _without_statistics)(
                        url, "-" + name.replace("@", "-")
                    )
                    for name, url, stats in read
                }
                order = read[r % len(read) :] + read[: r % len(read)]  # rotated, A/B
                for name, _, _ in order:
                    tree = args.base_tree if name.endswith("before") else ROOT
                    tree = args.served_tree if name.endswith("@base") else tree
                    out = work / f"{name}.json"
                    rounds[name].append(_run_plans(tree, copies[name], out, now))
                    loads.append(os.getloadavg()[0])
                    _drop(copies[name])
            for name, runs in rounds.items():
                recorded[name] = _fastest(runs)
                for entry in recorded[name]:
                    lines.append(
                        f"=== {name} | {entry['label']}\n{entry['sql']}\n{entry['plan']}\n"
                    )
            for kind in ("postgres", "sqlite"):
                if f"{kind}-before" in recorded:
                    print(f"\nplans on {kind}, each distinct statement on predictions:")
                    _compare(recorded[f"{kind}-before"], recorded[f"{kind}-after"])
            load = f"{min(loads):.1f}–{max(loads):.1f}"
            if "sqlite-after-nostat" in recorded:
                trees = ["this tree"]
                if "sqlite-after-nostat@base" in recorded:
                    trees.insert(0, "base")
                _as_served(recorded, "sqlite", trees, load)
            for at in ("@base",) if "postgres-after@base" in recorded else ():
                print("\nplans on postgres, --served-tree (before) against this tree (after):")
                _compare(recorded[f"postgres-after{at}"], recorded["postgres-after"])
                print(f"\nreaders on postgres, --served-tree against this tree (load {load}):")
                _verdict(recorded[f"postgres-after{at}"], recorded["postgres-after"])
            for at in ("@base",) if "sqlite-after@base" in recorded else ():
                for stat in ("-nostat", ""):
                    print(f"\nplans on sqlite{stat}, --served-tree (before) against this tree:")
                    _compare(recorded[f"sqlite-after{stat}{at}"], recorded[f"sqlite-after{stat}"])
            for name in recorded:
                kind, nostat = name.split("-")[0], name.endswith("-nostat")
                base = f"{kind}-after" + ("-nostat" if nostat else "")
                if name.endswith(("before", "after", "@base")) or name == base:
                    continue
                print(f"\nplans, {base} (before) against {name} (after):")
                _compare(recorded[base], recorded[name])
                print(f"\nreaders, {base} (before) against {name} (after):")
                _verdict(recorded[base], recorded[name])
            args.plans.parent.mkdir(parents=True, exist_ok=True)
            args.plans.write_text("\n".join(lines))
            print(f"plans written to {args.plans}")
    finally:
        for log in logs:
            log.engine.dispose()
        if server is not None:
            server.destroy()
        shutil.rmtree(work, ignore_errors=True)  # the SQLite logs: ~0.4 GB each
    print(f"load average at the end: {os.getloadavg()}; {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
