"""The writer's cost per request on a log of production size: random vs time-ordered
ids, or the OOD score's index of its own vs in the ``seq`` index.

    .venv/bin/python bench/log_scale_bench.py [--sizes 0,1000000,3000000] [--rounds 3]
        [--no-postgres] [--compare ids|score-index]

Request ids are the primary key of ``requests``, which since migration 0010 holds each
request's predictions too (the ``prediction_id`` and ``request_id`` indexes of the
former ``predictions`` table, which the ids entered as well, are gone, and with them
most of what random ids cost there: figures in bench/README.md). This bench stores Ames sales
through the writer's own path (``serving.log_store.LogStore.insert``, entries built
as ``serving/log_entry.py`` builds them) into databases already holding 0, 1 M and
3 M single-record predictions (and as many requests), once with random ids
(``uuid.uuid4().hex``, the ids before issue 10's change) and once with time-ordered
ones (``serving.request_ids.new_request_id``, UUIDv7 layout). Each arm has its own
database per engine, pre-filled with ids of its own kind.

Per request it prints the CPU of the writer thread (``time.thread_time``) plus, on
PostgreSQL, of the whole server (postmaster, backends, checkpointer, WAL writer, from
``/proc``), and the bytes of WAL written: on PostgreSQL the ``pg_current_wal_lsn``
difference, on SQLite the ``-wal`` file's frames (automatic checkpoints are off; the
checkpoint that copies them into the database runs at the end of each run and is
counted in its CPU, as the writer's commits run it in service). Each PostgreSQL run
starts just after a ``CHECKPOINT`` (in service: every ``checkpoint_timeout``, 5 min by
default), so its first change to a page writes the whole page to the WAL.

Scenarios: ``single×1`` (one single-record request per commit, a quiet server),
``single×20`` (20 per commit, a busy writer's cycle) and ``batch-100`` (one 100-row
request per commit). A/B interleaved: each round runs every scenario with both arms
back to back, the arm order swapped every round; ratios are the median of the rounds'
ratios. ``@`` is the 1-minute load average over the runs behind a figure.

``--compare score-index`` compares, with time-ordered ids, migration 0011's index of
each request's highest OOD score (``requests.max_ood_score``) on its own (``score
index``: the ``seq`` index on ``seq`` alone, as it was) with migration 0013's ``seq``
index holding the score as its second key (``score in seq``, the head's schema).
Pre-filled and measured requests carry random scores, as served scores come.

After each size's rounds it times, on each database, the report's ranking of the whole
log's most out-of-distribution rows (its default period), which the score's index
served and the ``seq`` index serves now.

Pre-filled rows are written by bulk SQL in one statement per table and carry no
features (the ids and scores change the indexes, not the appended table rows). PostgreSQL's
rows, pre-filled and measured, all fall on one day (two days ahead, a partition the
migration made): the day's partition is the index that grows.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.proc_cpu import cpu_seconds  # noqa: E402
from monitoring.report.log_rows import most_out_of_distribution  # noqa: E402
from monitoring.report.records import Period  # noqa: E402
from serving.log_entry import LogEntry  # noqa: E402
from serving.log_store import LogStore  # noqa: E402
from serving.request_ids import new_request_id  # noqa: E402
from tests.postgres import PostgresServer, find_bindir  # noqa: E402
from watchkeeper.dataset import load_ames  # noqa: E402
from watchkeeper.db.engine import create_engine  # noqa: E402
from watchkeeper.db.migrate import upgrade  # noqa: E402

DAY = (datetime.now(UTC) + timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
_FILL_STEP = timedelta(milliseconds=10)  # pre-filled rows: 3 M of them take 8.3 h of the day
_MEASURED_FROM = DAY + timedelta(hours=12)
# A pre-filled request's one prediction, as requests.outputs holds it.
_OUTPUTS = "[[180000.0,162000.0,198000.0,0.5]]"


def _random_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Arm:
    name: str
    new_id: Callable[[], str]
    sqlite_id: str  # SQL making a pre-filled row's id from its number ``g``
    postgres_id: str
    schema: tuple[str, ...] = ()  # statements run on the head's schema before filling


# Pre-filled time-ordered ids take one millisecond each, ending before the bench's
# first id; ``:base`` is that first millisecond.
_TIME_ORDERED = Arm(
    "time-ordered",
    new_request_id,
    "printf('%012x', :base + g) || '70008' || substr(lower(hex(randomblob(8))), 1, 15)",
    "lpad(to_hex(:base + g), 12, '0') || '70008' || substr(md5(g::text || random()::text), 1, 15)",
)
COMPARISONS = {
    "ids": (
        Arm("random", _random_id, "lower(hex(randomblob(16)))", "md5(g::text || random()::text)"),
        _TIME_ORDERED,
    ),
    "score-index": (
        replace(
            _TIME_ORDERED,
            name="score index",
            schema=(
                "DROP INDEX ix_requests_seq",
                "CREATE INDEX ix_requests_seq ON requests (seq)",
                "CREATE INDEX ix_requests_max_ood_score ON requests (max_ood_score)",
            ),
        ),
        replace(_TIME_ORDERED, name="score in seq"),
    ),
}


@dataclass(frozen=True)
class Scenario:
    name: str
    rows: int  # predictions per request
    per_commit: int  # requests per insert (one transaction)
    requests: int  # requests per run


SCENARIOS = (
    Scenario("single×1", 1, 1, 400),
    Scenario("single×20", 1, 20, 2000),
    Scenario("batch-100", 100, 1, 20),
)


@dataclass
class Run:
    cpu_ms: float  # per request
    wal_bytes: float  # per request
    load: float


@dataclass
class Target:
    """One arm's database on one engine."""

    engine_name: str
    arm: Arm
    url: str
    engine: sa.Engine
    store: LogStore
    sqlite_path: Path | None = None
    filled: int = 0
    runs: dict[tuple[int, str], list[Run]] = field(default_factory=dict)
    ranking_ms: dict[tuple[int, str], float] = field(default_factory=dict)  # size, period


class EntryMaker:
    """Log entries of Ames rows, as the request thread builds them."""

    def __init__(self) -> None:
        frame = load_ames().frame.drop(columns=["Sale_Price"])
        self._records = {
            name: [None if v != v else v for v in values]
            for name, values in frame.to_dict(orient="list").items()
        }
        self._n = len(next(iter(self._records.values())))
        self._next = 0
        self._clock = _MEASURED_FROM
        self._rng = np.random.default_rng(0)

    def entry(self, request_id: str, rows: int) -> LogEntry:
        at = [(self._next + i) % self._n for i in range(rows)]
        self._next += rows
        self._clock += timedelta(milliseconds=1)
        values = np.full(rows, 180_000.0)
        return LogEntry(
            request_id=request_id,
            received_at=self._clock,
            endpoint="/predict",
            method="POST",
            status_code=200,
            latency_seconds=0.004,
            model_version="v1",
            single=rows == 1,
            columns={name: [values_[i] for i in at] for name, values_ in self._records.items()},
            values=values,
            lower=values * 0.9,
            upper=values * 1.1,
            ood=self._rng.random(rows),  # served scores come in no order
        )


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


def _fill_sqlite(target: Target, upto: int, base_ms: int) -> None:
    assert target.sqlite_path is not None
    connection = sqlite3.connect(target.sqlite_path, isolation_level=None)
    try:
        # A large cache and no fsync for the fill only; the measured runs use the
        # writer's own engine and settings.
        connection.execute("PRAGMA cache_size=-2000000")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("BEGIN")
        connection.execute("DROP TABLE IF EXISTS temp.fill")
        day = DAY.timestamp()
        connection.execute(
            "CREATE TEMP TABLE fill AS WITH RECURSIVE s(g) AS"
            " (SELECT :start UNION ALL SELECT g + 1 FROM s WHERE g < :end)"
            f" SELECT {target.arm.sqlite_id} AS id,"
            " strftime('%Y-%m-%d %H:%M:%f', :day + g * 0.01, 'unixepoch') || '000' AS at, g"
            " FROM s",
            {"start": target.filled + 1, "end": upto, "base": base_ms, "day": day},
        )
        connection.execute(  # numbered in order, as the writer numbers its requests
            "INSERT INTO requests (request_id, received_at, endpoint, method, status_code,"
            " latency_seconds, model_version, n_items, seq, single, outputs, max_ood_score)"
            f" SELECT id, at, '/predict', 'POST', 200, 0.004, 'v1', 1, g, 1, '{_OUTPUTS}',"
            " (random() / 18446744073709551616.0) + 0.5 FROM fill"
        )
        connection.execute("DROP TABLE temp.fill")
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def _fill_postgres(target: Target, upto: int, base_ms: int) -> None:
    statement = (
        "INSERT INTO requests (request_id, received_at, endpoint, method,"
        " status_code, latency_seconds, model_version, n_items, single, outputs,"
        " max_ood_score)"
        f" SELECT {target.arm.postgres_id.replace(':base', str(base_ms))},"
        f" '{DAY.isoformat()}'::timestamptz + g * interval '10 milliseconds', '/predict',"
        f" 'POST', 200, 0.004, 'v1', 1, true, '{_OUTPUTS}', random()"
        f" FROM generate_series({target.filled + 1}, {upto}) AS g"
    )
    with target.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(statement)
        connection.exec_driver_sql("VACUUM ANALYZE requests")
        connection.exec_driver_sql("CHECKPOINT")


def _fill(target: Target, upto: int) -> float:
    """Pre-fill ``target`` to ``upto`` single-record requests; seconds it took."""
    if upto <= target.filled:
        return 0.0
    started = time.perf_counter()
    # Pre-filled time-ordered ids end a little before the bench's own first id.
    base_ms = time.time_ns() // 1_000_000 - 10_000_000
    if target.sqlite_path is not None:
        _fill_sqlite(target, upto, base_ms)
    else:
        _fill_postgres(target, upto, base_ms)
    target.filled = upto
    return time.perf_counter() - started


class Meter:
    """CPU and WAL of one run on one target."""

    def __init__(self, target: Target, postmaster: int | None) -> None:
        self._target = target
        self._postmaster = postmaster

    def _lsn(self, connection: sa.Connection) -> int:
        return connection.exec_driver_sql(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
        ).scalar_one()

    def measure(self, batches: list[list[LogEntry]]) -> tuple[float, float]:
        """CPU seconds and WAL bytes of inserting ``batches``."""
        target = self._target
        if target.sqlite_path is None:
            assert self._postmaster is not None
            with target.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.exec_driver_sql("CHECKPOINT")
                lsn = self._lsn(c)
            server = cpu_seconds([self._postmaster])
            thread = time.thread_time()
            for batch in batches:
                target.store.insert(batch)
            thread = time.thread_time() - thread
            server = cpu_seconds([self._postmaster]) - server
            with target.engine.connect() as c:
                wal = self._lsn(c) - lsn
            return thread + server, float(wal)
        thread = time.thread_time()
        for batch in batches:
            target.store.insert(batch)
        # Automatic checkpoints are off and each run ends with a truncating one: the
        # file holds exactly this run's WAL (its frames; a TRUNCATE reports none).
        wal = target.sqlite_path.with_name(target.sqlite_path.name + "-wal").stat().st_size
        with target.engine.connect() as c:
            c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        thread = time.thread_time() - thread
        return thread, float(wal)


def _target(engine_name: str, arm: Arm, url: str, path: Path | None) -> Target:
    engine = create_engine(url)
    if path is not None:
        sa.event.listen(engine, "connect", _no_autocheckpoint)
    upgrade(engine)
    with engine.begin() as connection:
        for statement in arm.schema:
            connection.exec_driver_sql(statement)
    return Target(engine_name, arm, url, engine, LogStore(engine), sqlite_path=path)


def _postgres_settings(server: PostgresServer) -> None:
    """No autovacuum (it would charge a pre-fill's cleanup to whichever arm runs next)
    and no timed checkpoints (each run starts after its own)."""
    engine = sa.create_engine(server.url(), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        for setting in (
            "autovacuum = off",
            "checkpoint_timeout = '1h'",
            "max_wal_size = '20GB'",
        ):
            connection.exec_driver_sql(f"ALTER SYSTEM SET {setting}")
        connection.exec_driver_sql("SELECT pg_reload_conf()")
    engine.dispose()


def _run_round(
    targets: list[Target],
    size: int,
    round_: int,
    maker: EntryMaker,
    postmaster: int | None,
) -> None:
    for scenario in SCENARIOS:
        by_engine: dict[str, list[Target]] = {}
        for target in targets:
            by_engine.setdefault(target.engine_name, []).append(target)
        for pair in by_engine.values():
            order = pair if round_ % 2 == 0 else pair[::-1]
            for target in order:
                batches = [
                    [
                        maker.entry(target.arm.new_id(), scenario.rows)
                        for _ in range(scenario.per_commit)
                    ]
                    for _ in range(scenario.requests // scenario.per_commit)
                ]
                load = os.getloadavg()[0]
                cpu, wal = Meter(target, postmaster).measure(batches)
                load = (load + os.getloadavg()[0]) / 2
                run = Run(1000 * cpu / scenario.requests, wal / scenario.requests, load)
                target.runs.setdefault((size, scenario.name), []).append(run)


# The report's periods timed: its default, and one since the pre-filled rows' middle
# (3 M of them take 8.3 h of the day; the measured ones come after its noon).
RANKED_PERIODS = {"whole log": Period(), "since 04:00": Period(since=DAY + timedelta(hours=4))}


def _time_ranking(target: Target, size: int) -> None:
    """The report's 20 most out-of-distribution predictions of each of
    :data:`RANKED_PERIODS`: median wall time of 3 calls, after one to warm the caches."""
    for name, period in RANKED_PERIODS.items():
        times = []
        for _ in range(4):
            started = time.perf_counter()
            most_out_of_distribution(target.engine, period, 20)
            times.append(time.perf_counter() - started)
        target.ranking_ms[(size, name)] = 1000 * statistics.median(times[1:])


def _report_ranking(targets: list[Target], sizes: list[int], arms: tuple[Arm, Arm]) -> None:
    print()
    print("the report's 20 most out-of-distribution rows of a period, ms (median of 3)")
    print(f"{'engine':<11}{'filled':>10}  {'period':<12}{arms[0].name:>16}{arms[1].name:>16}")
    for engine_name in dict.fromkeys(t.engine_name for t in targets):
        a, b = (t for t in targets if t.engine_name == engine_name)
        for size in sizes:
            for name in RANKED_PERIODS:
                print(
                    f"{engine_name:<11}{size:>10,}  {name:<12}{a.ranking_ms[(size, name)]:>16.1f}"
                    f"{b.ranking_ms[(size, name)]:>16.1f}"
                )


def _report(targets: list[Target], sizes: list[int], arms: tuple[Arm, Arm]) -> None:
    first, second = (arm.name for arm in arms)
    print()
    print("CPU per request (writer thread + PostgreSQL), ms, median over rounds @ load average;")
    print(f"WAL bytes per request; {second} ÷ {first}: median of per-round ratios")
    print(
        f"{'engine':<11}{'filled':>10}  {'scenario':<10}{first:>14}{second:>14}"
        f"{'ratio':>7}{'WAL ' + first:>18}{'WAL ' + second:>18}{'ratio':>7}"
    )
    engines = list(dict.fromkeys(t.engine_name for t in targets))
    for engine_name in engines:
        a, b = (t for t in targets if t.engine_name == engine_name)
        for size in sizes:
            for scenario in SCENARIOS:
                ra, rb = a.runs[(size, scenario.name)], b.runs[(size, scenario.name)]
                cpu_a = statistics.median(r.cpu_ms for r in ra)
                cpu_b = statistics.median(r.cpu_ms for r in rb)
                load_a = statistics.median(r.load for r in ra)
                load_b = statistics.median(r.load for r in rb)
                ratio = statistics.median(y.cpu_ms / x.cpu_ms for x, y in zip(ra, rb, strict=True))
                wal_a = statistics.median(r.wal_bytes for r in ra)
                wal_b = statistics.median(r.wal_bytes for r in rb)
                wal_ratio = wal_b / wal_a if wal_a else float("nan")
                print(
                    f"{engine_name:<11}{size:>10,}  {scenario.name:<10}"
                    f"{cpu_a:>8.3f} @{load_a:<4.1f}{cpu_b:>8.3f} @{load_b:<4.1f}{ratio:>6.2f}x"
                    f"{wal_a:>18,.0f}{wal_b:>18,.0f}{wal_ratio:>6.2f}x"
                )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="0,1000000,3000000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--compare", choices=sorted(COMPARISONS), default="ids")
    args = parser.parse_args()
    arms = COMPARISONS[args.compare]
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="wk-log-scale-"))
    server = None
    postmaster = None
    if args.postgres and (bindir := find_bindir()) is not None:
        server = PostgresServer(bindir).init()
        server.start()
        _postgres_settings(server)
        postmaster = int((server.datadir / "postmaster.pid").read_text().split()[0])
    elif args.postgres:
        print("PostgreSQL left out: no Debian postgresql binaries (scripts/install-system-deps)")
    print(f"load average at the start: {os.getloadavg()[0]:.2f}; pre-filled day {DAY:%Y-%m-%d}")
    targets: list[Target] = []
    try:
        for arm in arms:
            path = workdir / f"log-{arm.name.replace(' ', '-')}.db"
            targets.append(_target("sqlite", arm, f"sqlite:///{path}", path))
        if server is not None:
            for arm in arms:
                targets.append(_target("postgresql", arm, server.create_database(), None))
        maker = EntryMaker()
        for size in sizes:
            for target in targets:
                seconds = _fill(target, size)
                if seconds:
                    print(
                        f"pre-filled {target.engine_name} {target.arm.name} to {size:,}"
                        f" requests in {seconds:.0f} s"
                    )
            for round_ in range(args.rounds):
                _run_round(targets, size, round_, maker, postmaster)
            for target in targets:
                _time_ranking(target, size)
            print(f"measured at {size:,}: {time.perf_counter() - started:.0f} s so far")
        _report(targets, sizes, arms)
        _report_ranking(targets, sizes, arms)
    finally:
        for target in targets:
            target.engine.dispose()
        if server is not None:
            server.destroy()
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
