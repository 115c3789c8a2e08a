"""What reading the ``predictions`` view's numbers costs: the plain cast, the view of
migration 0015, and the view at the head, on PostgreSQL and SQLite (figures in
bench/README.md).

    OMP_NUM_THREADS=1 .venv/bin/python bench/view_number_bench.py [--rounds 5]
        [--requests 200] [--items 1000] [--damaged N] [--no-sqlite]

Starts a PostgreSQL 15 (as ``tests/postgres.py`` starts it, autovacuum off), migrates a
database to the head and stores ``--requests`` requests of ``--items`` predictions
through the log's writer (prices, bounds and OOD scores as a model gives them: orjson's
text of random floats). Then each arm is the view's ``SELECT`` under another name, and
each round reads all four numbers of every prediction of every arm
(``count(prediction), count(lower), count(upper), count(ood_score)``, every value
computed), in a rotated order; charged to each is the CPU of PostgreSQL's backend
(``/proc/<pid>/schedstat``; no parallel workers, whose CPU it would not see), or of
this process on SQLite (a log file as the server
keeps it). Printed: per arm the median CPU seconds and the figure over the plain cast,
with the load average.

Arms: ``plain`` (PostgreSQL's ``(o.v ->> i)::float8``, which raises on a damaged
value; SQLite's ``json_extract`` alone), ``0015`` (the view as migration 0015 left it:
on PostgreSQL each value tested before its cast), ``0016`` (as migration 0016 left it:
each request's outputs expanded unguarded) and ``head``
(:mod:`watchkeeper.db.prediction_view` as it is: 0017's, outputs that are no JSON list
read as one prediction of no number, on PostgreSQL through a function whose cast is made
in an ``EXCEPTION`` block); ``--damaged N`` writes N damaged values (text, ``1e400``,
``true``) into the log first; PostgreSQL's ``plain`` cannot read them and is left out.
``--items 1`` measures single-record requests, where a cost per request counts most.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = "1"
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from serving.log_entry import LogEntry  # noqa: E402
from serving.log_store import LogStore  # noqa: E402
from tests.postgres import PostgresServer, find_bindir  # noqa: E402
from watchkeeper.db.engine import create_engine  # noqa: E402
from watchkeeper.db.migrate import upgrade  # noqa: E402
from watchkeeper.db.prediction_view import (  # noqa: E402
    _SQLITE_ITEM,
    _sqlite_outputs,
    create_statements,
)
from watchkeeper.db.tables import NUMBER_TEXT  # noqa: E402

_DOUBLE_MAX = "1.7976931348623157e308"
_DOUBLE_MIN = "4.9406564584124654e-324"


def _number_0015(index: int) -> str:
    """A value as migration 0015's view read it (commit 7596a3d)."""
    text = f"(o.v ->> {index})"
    number = f"{text}::numeric"
    return (
        f"CASE WHEN json_typeof(o.v -> {index}) = 'number'"
        f" AND length(replace(lower({text}), 'e', repeat('e', 301))) <= 300 THEN {text}::float8"
        f" WHEN {text} IN ('NaN', 'Infinity', '-Infinity') THEN {text}::float8"
        f" WHEN length({text}) > 300 OR {text} !~ '^{NUMBER_TEXT}$'"
        f" OR {text} ~ '[eE][-+]?[0-9][0-9][0-9][0-9][0-9]' THEN NULL"
        f" WHEN {number} > {_DOUBLE_MAX} THEN 'Infinity'::float8"
        f" WHEN {number} < -{_DOUBLE_MAX} THEN '-Infinity'::float8"
        f" WHEN abs({number}) < {_DOUBLE_MIN} THEN 0::float8"
        f" ELSE {number}::float8 END"
    )


def _columns(number: object) -> str:
    """The four numbers of an item, each as ``number(index)`` reads it."""
    return ", ".join(
        f"{number(i)} AS {column}"  # type: ignore[operator]
        for i, column in enumerate(("prediction", "lower", "upper", "ood_score"))
    )


def _view(name: str, number: object) -> str:
    columns = _columns(number)
    return (
        f"CREATE VIEW {name} AS SELECT r.seq AS request_seq, {columns}"
        " FROM requests r CROSS JOIN LATERAL json_array_elements(r.outputs::json)"
        " WITH ORDINALITY AS o(v, n) WHERE r.outputs IS NOT NULL AND json_typeof(o.v) <> 'null'"
    )


def _head(dialect: str, name: str = "bench_head") -> str:
    (statement,) = (s for s in create_statements(dialect) if "CREATE VIEW predictions" in s)
    return statement.replace("CREATE VIEW predictions AS", f"CREATE VIEW {name} AS", 1)


def _0016(dialect: str) -> str:
    """The view as migration 0016 left it: the head's, its outputs expanded as they are
    (which raised on outputs that are no JSON list) and, on SQLite, each item read as it
    is (a string item raised). Its numbers as the head reads them: 0016 read the values
    the writer stores alike, and others (a function now) inline."""
    statement = _head(dialect, "bench_0016")
    if dialect == "postgresql":
        guarded = "watchkeeper_outputs(r.outputs)"
        assert guarded in statement
        return statement.replace(guarded, "r.outputs::json")
    guarded, item = _sqlite_outputs("r.outputs"), _SQLITE_ITEM
    assert guarded in statement and item in statement
    return statement.replace(guarded, "r.outputs").replace(item, "o.value")


def _sqlite_0015(index: int) -> str:
    """A value as SQLite's view read it before (a JSON boolean as 1 or 0)."""
    value = f"json_extract(o.value, '$[{index}]')"
    return (
        f"CASE {value} WHEN 'Infinity' THEN 9e999 WHEN '-Infinity' THEN -9e999"
        f" WHEN 'NaN' THEN 'NaN' ELSE {value} END"
    )


def _sqlite_view(name: str, number: object) -> str:
    columns = _columns(number)
    return (
        f"CREATE VIEW {name} AS SELECT r.seq AS request_seq, {columns}"
        " FROM requests r, json_each(r.outputs) o WHERE r.outputs IS NOT NULL"
        " AND o.type <> 'null'"
    )


ARMS = {
    "postgresql": {
        "plain": _view("bench_plain", lambda i: f"(o.v ->> {i})::float8"),
        "0015": _view("bench_0015", _number_0015),
        "0016": _0016("postgresql"),
        "head": _head("postgresql"),
    },
    "sqlite": {
        "plain": _sqlite_view("bench_plain", lambda i: f"json_extract(o.value, '$[{i}]')"),
        "0015": _sqlite_view("bench_0015", _sqlite_0015),
        "0016": _0016("sqlite"),
        "head": _head("sqlite"),
    },
}
"""Each database's arms: the view's ``SELECT`` under another name."""


def _entries(first: int, requests: int, items: int) -> list[LogEntry]:
    """Requests ``first`` to ``first + requests - 1``, a second apart."""
    rng = random.Random(first)
    start = datetime.now(UTC) - timedelta(hours=1)
    entries = []
    for n in range(first, first + requests):
        values = [rng.gauss(180_000, 60_000) for _ in range(items)]
        entries.append(
            LogEntry(
                request_id=f"{n:032x}",
                received_at=start + timedelta(seconds=n),
                endpoint="/predict",
                method="POST",
                status_code=200,
                latency_seconds=0.01,
                model_version="v1",
                single=items == 1,
                columns={"area": [float(i) for i in range(items)]},
                values=values,
                lower=[v - rng.uniform(10_000, 40_000) for v in values],
                upper=[v + rng.uniform(10_000, 40_000) for v in values],
                ood=[rng.expovariate(1.0) for _ in range(items)],
            )
        )
    return entries


def _backend_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def _fill(engine: sa.Engine, args: argparse.Namespace) -> dict[str, str]:
    """The log filled, each arm's view made; the arms that can read it."""
    upgrade(engine)
    store = LogStore(engine)
    for start in range(0, args.requests, 20):
        store.insert(_entries(start, min(20, args.requests - start), args.items))
    arms = dict(ARMS[engine.dialect.name])
    with engine.begin() as connection:
        for statement in arms.values():
            connection.execute(sa.text(statement))
        if args.damaged:
            if engine.dialect.name == "postgresql":
                arms.pop("plain")  # it raises on them
            rng = random.Random(1)
            # one value in each of as many requests (at most all of them)
            for n in rng.sample(range(args.requests), min(args.damaged, args.requests)):
                request_id = f"{n:032x}"
                outputs = connection.execute(
                    sa.text("SELECT outputs FROM requests WHERE request_id = :id"),
                    {"id": request_id},
                ).scalar_one()
                items = orjson.loads(outputs)
                bad = rng.choice(['"abc"', "1e400", "-1e400", "true", "1e99999"])
                at, value = rng.randrange(len(items)), rng.randrange(4)
                texts = [orjson.dumps(v).decode() for v in items[at]]
                texts[value] = bad
                item = "[" + ",".join(texts) + "]"
                damaged = ",".join(
                    item if k == at else orjson.dumps(other).decode()
                    for k, other in enumerate(items)
                )
                connection.execute(
                    sa.text("UPDATE requests SET outputs = :o WHERE request_id = :id"),
                    {"o": f"[{damaged}]", "id": request_id},
                )
        connection.exec_driver_sql("ANALYZE requests")
    return arms


def _measure(
    engine: sa.Engine,
    arms: dict[str, str],
    rounds: int,
    cpu: Callable[[], float],
    predictions: int,
) -> dict[str, list[float]]:
    """Each arm's CPU seconds per round, in a rotated order (a first round not counted:
    it warms the caches)."""
    spent: dict[str, list[float]] = {name: [] for name in arms}
    names = list(arms)
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":  # all of it in the backend measured
            connection.exec_driver_sql("SET max_parallel_workers_per_gather = 0")
        (stored,) = connection.exec_driver_sql("SELECT count(*) FROM bench_head").one()
        assert stored == predictions, f"{stored} predictions stored, not {predictions}"
        for round_ in range(rounds + 1):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                query = (
                    "SELECT count(prediction), count(lower), count(upper), count(ood_score)"
                    f" FROM bench_{name}"
                )
                before = cpu()
                connection.exec_driver_sql(query).one()
                used = cpu() - before
                if round_:
                    spent[name].append(used)
    return spent


def _print(database: str, spent: dict[str, list[float]], predictions: int) -> None:
    plain = statistics.median(spent["plain"]) if "plain" in spent else None
    print(f"{database}, {predictions:,} predictions, load average {os.getloadavg()}")
    print(f"  {'arm':8} {'CPU s (median)':>15} {'min':>7} {'max':>7} {'/ plain':>8}")
    for name, values in spent.items():
        median = statistics.median(values)
        ratio = f"{median / plain:8.2f}" if plain else "       -"
        print(f"  {name:8} {median:15.3f} {min(values):7.3f} {max(values):7.3f} {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--damaged", type=int, default=0)
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    predictions = args.requests * args.items
    bindir = find_bindir()
    if bindir is None:
        sys.exit("PostgreSQL is not installed (Debian package postgresql)")
    server = PostgresServer(bindir).init()
    server.start()
    try:
        admin = sa.create_engine(server.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql("ALTER SYSTEM SET autovacuum = off")
            connection.exec_driver_sql("SELECT pg_reload_conf()")
        admin.dispose()
        engine = create_engine(server.create_database(), poolclass=sa.pool.StaticPool)
        arms = _fill(engine, args)
        with engine.connect() as connection:
            pid = int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        spent = _measure(engine, arms, args.rounds, lambda: _backend_ns(pid) / 1e9, predictions)
        engine.dispose()
    finally:
        server.destroy()
    _print("PostgreSQL (the backend's CPU)", spent, predictions)
    if args.no_sqlite:
        return
    with tempfile.TemporaryDirectory() as work:
        engine = create_engine(f"sqlite:///{work}/log.db", poolclass=sa.pool.StaticPool)
        arms = _fill(engine, args)
        spent = _measure(engine, arms, args.rounds, time.process_time, predictions)
        engine.dispose()
    _print("SQLite (this process's CPU)", spent, predictions)


if __name__ == "__main__":
    main()
