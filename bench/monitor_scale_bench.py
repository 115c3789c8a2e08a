"""Monitor at fleet scale, on a real PostgreSQL (Debian's binaries, loopback only).

(a) Sustained ingest: ``--writers`` processes push 1,000-row batches into the log (one
    ``requests`` row holding the batch's features by column and its 1,000 predictions,
    as serving stores them since migration 0010) at a total target of ``--rate`` rows/s
    for ``--seconds``, while a real ``watchkeeper monitor`` process evaluates windows
    of ``--window`` rows (and at least ``--min-seconds``), sampled to
    ``WATCHKEEPER_MONITOR_SAMPLE_ROWS``. Prints the rows/s reached, the monitor's lag
    behind the log (sampled every second) in windows and in seconds of traffic, CPU per
    1,000 rows of the writers, PostgreSQL and the monitor (whole process trees,
    ``bench/proc_cpu.py``) and the load average. Each ``--scenario
    LABEL:WINDOW:MIN_SECONDS[:CODE_DIR]`` runs it again on a fresh database, e.g. an
    A/B of the current monitor against the code of an older commit
    (``git archive <commit> | tar -x -C DIR``: its monitor runs from DIR).
(b) Cycle cost by log size: the log is filled to ``--small`` and then ``--big``
    predictions with ``INSERT … SELECT generate_series`` (1,000-prediction requests, not
    through the API; requests behind the watermark carry no features, they are never
    read), and one monitor cycle on one
    pending ``--window``-row window at the end of the log is timed, sampled and
    unsampled.
(c) Fixed cost per window: one cycle on ``--windows`` pending windows of ``--small-window``
    rows (the default window size), CPU per window.

Positions in the log (the watermark, ``max_position``) are a prediction's request's
``seq`` and its item index (``watchkeeper.db.prediction_seq``): they are not dense, so
rows between two positions are counted from the requests (:func:`_rows_after`).

Prints figures, asserts nothing, and stops within its time bounds.

    OMP_NUM_THREADS=1 .venv/bin/python bench/monitor_scale_bench.py \
        [--rate 20000] [--seconds 60] [--window 20000] [--small 1000000] [--big 10000000] \
        [--scenario old:20000:0:/tmp/old-checkout --scenario new:20000:0]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.proc_cpu import cpu_seconds  # noqa: E402
from monitoring.monitor import Monitor  # noqa: E402
from monitoring.window_features import ColumnCache  # noqa: E402
from tests.ports import free_port  # noqa: E402
from tests.postgres import PostgresServer, find_bindir  # noqa: E402
from watchkeeper.dataset import load_ames  # noqa: E402
from watchkeeper.db.engine import create_engine  # noqa: E402
from watchkeeper.db.migrate import upgrade  # noqa: E402
from watchkeeper.db.prediction_seq import (  # noqa: E402
    ITEMS_PER_REQUEST,
    item_index_of,
    request_seq_of,
)
from watchkeeper.registry import ModelRegistry  # noqa: E402
from watchkeeper.settings import Settings  # noqa: E402
from watchkeeper.training import train  # noqa: E402

BATCH = 1_000
VERSION = "v1"


@dataclass(frozen=True)
class Scenario:
    """One sustained run: windows of ``window`` rows and at least ``min_seconds``, by the
    monitor of the code in ``code`` (this checkout by default)."""

    label: str
    window: int
    min_seconds: float
    code: Path = ROOT

    @classmethod
    def parse(cls, text: str) -> Scenario:
        label, window, min_seconds, *code = text.split(":", 3)
        return cls(label, int(window), float(min_seconds), Path(code[0]) if code else ROOT)

    def window_rows(self, rate: float) -> float:
        """Rows a window holds at ``rate`` rows/s."""
        return max(self.window, rate * self.min_seconds)


@dataclass(frozen=True)
class Batch:
    """One request's worth of rows, pre-serialised: the writer only stamps ids."""

    features_json: str
    outputs_json: str


def _batch(registry: Path) -> Batch:
    """1,000 real 2009–2010 Ames records by column, with the model's predictions."""
    ames = load_ames()
    model = ModelRegistry(registry).load(VERSION).model
    names = list(model.schema.names)
    frame = ames.between(200901, None).frame[names]
    frame = frame.sample(BATCH, replace=True, random_state=0).reset_index(drop=True)
    columns = json.loads(frame.to_json(orient="columns"))
    by_column = {name: [columns[name][str(i)] for i in range(BATCH)] for name in names}
    values = model.predict(frame).value.tolist()
    return Batch(json.dumps(by_column), json.dumps([[v, 0.0, 0.0] for v in values]))


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _write(connection: psycopg.Connection, batch: Batch, request_id: str) -> None:
    """One batch as serving logs it: a request row holding its predictions, one commit."""
    now = datetime.now(UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO requests (request_id, received_at, endpoint, method, status_code, "
            "latency_seconds, model_version, n_items, features, single, outputs) "
            "VALUES (%s, %s, '/predict', 'POST', 200, 0.01, %s, %s, %s, false, %s)",
            (request_id, now, VERSION, BATCH, batch.features_json, batch.outputs_json),
        )
    connection.commit()


def _writer(dsn: str, batch: Batch, name: str, rate: float, seconds: float, done: object) -> None:
    """Write batches on a fixed schedule of ``rate`` rows/s; a late writer does not
    catch up by bursting (what is not reached is reported, not hidden)."""
    with psycopg.connect(dsn) as connection:
        started = time.perf_counter()
        written = 0
        while (elapsed := time.perf_counter() - started) < seconds:
            due = written / rate
            if due > elapsed:
                time.sleep(min(due - elapsed, seconds - elapsed))
                continue
            _write(connection, batch, f"{name}{written // BATCH:08d}")
            written += BATCH
    done.put(written)  # type: ignore[attr-defined]


def _scalar(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn) as connection:
        row = connection.execute(sql).fetchone()
    return int(row[0] or 0) if row else 0


def _max_position(dsn: str) -> int:
    """The position of the log's last prediction (0 when it holds none)."""
    return _scalar(
        dsn,
        f"SELECT seq * {ITEMS_PER_REQUEST} + n_items - 1 FROM requests"
        " WHERE outputs IS NOT NULL ORDER BY seq DESC LIMIT 1",
    )


def _rows_after(dsn: str, position: int) -> int:
    """Predictions logged after ``position``: the rest of its request, and every later
    request's."""
    request, item = request_seq_of(position), item_index_of(position)
    return _scalar(
        dsn,
        f"SELECT sum(CASE WHEN seq = {request} THEN n_items - {item} - 1 ELSE n_items END)"
        f" FROM requests WHERE seq >= {request} AND outputs IS NOT NULL",
    )


def _predictions(dsn: str) -> int:
    return _scalar(dsn, "SELECT sum(n_items) FROM requests WHERE outputs IS NOT NULL")


def _watermark(dsn: str) -> int:
    return _scalar(dsn, "SELECT watermark FROM monitor_state WHERE name = 'windows'")


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def _env(settings: Settings, scenario: Scenario) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    window = scenario.window
    if scenario.min_seconds:
        env["WATCHKEEPER_MONITOR_WINDOW_MIN_SECONDS"] = str(scenario.min_seconds)
    env.update(
        PYTHONPATH=str(scenario.code),
        OMP_NUM_THREADS="1",
        WATCHKEEPER_DATA_DIR=str(settings.storage.data_dir),
        WATCHKEEPER_REGISTRY_PATH=str(settings.storage.registry_path),
        WATCHKEEPER_DATABASE_URL=settings.storage.database_url,
        WATCHKEEPER_MONITOR_WINDOW_SIZE=str(window),
        WATCHKEEPER_MONITOR_WINDOW_SECONDS="3600",
        WATCHKEEPER_MONITOR_SAMPLE_ROWS=str(settings.monitor.sample_rows),
        WATCHKEEPER_MONITOR_INTERVAL="0.5",
        WATCHKEEPER_MONITOR_SETTLE_SECONDS="1",
        WATCHKEEPER_MONITOR_PORT=str(free_port()),
    )
    return env


def sustained(
    settings: Settings,
    pg: PostgresServer,
    batch: Batch,
    args: argparse.Namespace,
    scenario: Scenario,
) -> None:
    # a fresh database each: one scenario's backlog never slows the next
    settings = settings.replace(database_url=pg.create_database())
    upgrade(create_engine(settings.storage.database_url))
    dsn = _dsn(settings.storage.database_url)
    postmaster = int((pg.datadir / "postmaster.pid").read_text().split()[0])
    start_seq = _max_position(dsn)
    with psycopg.connect(dsn) as connection:  # the monitor starts at the log's end
        connection.execute(
            "INSERT INTO monitor_state (name, watermark, updated_at) VALUES ('windows', %s, now()) "
            "ON CONFLICT (name) DO UPDATE SET watermark = excluded.watermark",
            (start_seq,),
        )
    monitor = subprocess.Popen(
        [sys.executable, "-m", "watchkeeper_cli", "monitor"],
        env=_env(settings, scenario),
        cwd=scenario.code,
        stdout=subprocess.DEVNULL,
        stderr=open(settings.storage.data_dir / "monitor.log", "w"),  # noqa: SIM115
    )
    time.sleep(5)  # imports and the first (empty) cycle, outside the measured span
    done: multiprocessing.Queue[int] = multiprocessing.Queue()
    cpu_before = {
        "monitor": cpu_seconds([monitor.pid]),
        "postgres": cpu_seconds([postmaster]),
    }
    load_before = _load()
    started = time.perf_counter()
    writers = [
        multiprocessing.Process(
            target=_writer,
            args=(dsn, batch, f"w{i}-", args.rate / args.writers, args.seconds, done),
        )
        for i in range(args.writers)
    ]
    for w in writers:
        w.start()
    writer_pids = [w.pid for w in writers if w.pid is not None]
    window_rows = scenario.window_rows(args.rate)
    lags: list[float] = []
    writer_cpu = 0.0
    while any(w.is_alive() for w in writers):
        time.sleep(1)
        writer_cpu = max(writer_cpu, cpu_seconds(writer_pids))
        lags.append(_rows_after(dsn, _watermark(dsn)))
    ingest_seconds = time.perf_counter() - started
    written = sum(done.get(timeout=30) for _ in writers)
    ingest_cpu = {
        "monitor": cpu_seconds([monitor.pid]) - cpu_before["monitor"],
        "postgres": cpu_seconds([postmaster]) - cpu_before["postgres"],
    }
    load_after = _load()
    # how long the monitor takes to come within one window of the end, bounded
    catch_up_started = time.perf_counter()
    while (
        _rows_after(dsn, _watermark(dsn)) >= window_rows
        and time.perf_counter() - catch_up_started < 180
    ):
        time.sleep(0.5)
    catch_up = time.perf_counter() - catch_up_started
    left = _rows_after(dsn, _watermark(dsn)) / window_rows
    evaluated = _rows_after(dsn, start_seq) - _rows_after(dsn, _watermark(dsn))
    monitor_cpu = cpu_seconds([monitor.pid]) - cpu_before["monitor"]
    monitor.terminate()
    monitor.wait(timeout=30)
    windows = _scalar(
        dsn,
        f"SELECT count(*) FROM window_results WHERE detector = 'data_quality' "
        f"AND first_seq > {start_seq}",
    )
    per_k = 1000 / max(written, 1)
    code = "this checkout" if scenario.code == ROOT else str(scenario.code)
    print(
        f"(a) [{scenario.label}] sustained ingest: target {args.rate:,.0f} rows/s for "
        f"{args.seconds:.0f} s; windows of {scenario.window:,} rows and at least "
        f"{scenario.min_seconds:g} s (~{window_rows:,.0f} rows); monitor of {code}"
    )
    print(
        f"  written {written:,} rows by {args.writers} writer(s) in {ingest_seconds:.1f} s: "
        f"{written / ingest_seconds:,.0f} rows/s"
    )
    rate = written / ingest_seconds
    in_windows = [lag / window_rows for lag in lags]
    print(
        f"  monitor lag behind the log (sampled each second), in windows: median "
        f"{np.median(in_windows):.1f}, max {max(in_windows):.1f}, at the end "
        f"{in_windows[-1]:.1f}; in seconds of traffic: median {np.median(lags) / rate:.1f}, "
        f"max {max(lags) / rate:.1f}, at the end {lags[-1] / rate:.1f}"
    )
    print(
        f"  after the writers stopped: within one window of the end after {catch_up:.1f} s "
        f"({left:.1f} windows left); {windows} windows stored, {evaluated:,} rows evaluated"
    )
    print(
        f"  CPU per 1,000 rows written, while ingesting: writers "
        f"{writer_cpu * per_k * 1000:.1f} ms, PostgreSQL (writes and the monitor's reads) "
        f"{ingest_cpu['postgres'] * per_k * 1000:.1f} ms, monitor "
        f"{ingest_cpu['monitor'] * per_k * 1000:.1f} ms "
        f"({ingest_cpu['monitor'] / ingest_seconds:.2f} CPU-s per s)"
    )
    print(
        f"  monitor CPU per 1,000 rows evaluated, ingest and catch-up: "
        f"{monitor_cpu * 1e6 / max(evaluated, 1):.1f} ms"
    )
    print(f"  load average before {load_before}, after {load_after}")


def _fill(dsn: str, upto: int) -> float:
    """Grow the log to ``upto`` predictions with server-side generated requests of
    1,000 (featureless), as old traffic behind the watermark."""
    have = _predictions(dsn)
    outputs = json.dumps([[180000.0, 0.0, 0.0]] * BATCH)
    started = time.perf_counter()
    step = 1_000_000
    with psycopg.connect(dsn, autocommit=True) as connection:
        for first in range(have, upto, step):
            last = min(first + step, upto)
            connection.execute(
                "INSERT INTO requests (request_id, received_at, endpoint, method, "
                "status_code, latency_seconds, model_version, n_items, single, outputs) "
                "SELECT 'g' || g, now() - interval '1 day', '/predict', 'POST', 200, 0.01, "
                "%s, 1000, false, %s FROM generate_series(%s::bigint, %s::bigint) g",
                (VERSION, outputs, first // BATCH, (last - 1) // BATCH),
            )
        connection.execute("VACUUM ANALYZE requests")
    return time.perf_counter() - started


def _size(dsn: str) -> str:
    size = _scalar(dsn, "SELECT pg_database_size(current_database())")
    return f"{size / 1e9:.2f} GB"


@contextmanager
def _profiled(enabled: bool) -> Iterator[cProfile.Profile | None]:
    if not enabled:
        yield None
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield profile
    finally:
        profile.disable()


def _cycle(
    settings: Settings,
    batch: Batch,
    window: int,
    repeats: int,
    profile: bool = False,
    windows: int = 1,
) -> tuple[float, float, str]:
    """(best wall s, its CPU s, profile text) of one cycle on ``windows`` pending
    windows of ``window`` fresh rows with features, appended to the log."""
    dsn = _dsn(settings.storage.database_url)
    high = _max_position(dsn)
    with psycopg.connect(dsn) as connection:
        for i in range(window * windows // BATCH):
            _write(connection, batch, f"c{high}-{i:05d}")
    new_high = _max_position(dsn)
    monitor = Monitor(
        settings,
        create_engine(settings.storage.database_url),
        ModelRegistry(settings.storage.registry_path),
    )
    monitor.suite(VERSION)
    runs = []
    text = ""
    for repeat in range(repeats):
        monitor.reader.columns = ColumnCache()  # each repeat decodes its requests again
        monitor.reader.set_watermark(high)
        with monitor.engine.begin() as connection:
            connection.exec_driver_sql(f"DELETE FROM window_results WHERE first_seq > {high}")
        started, cpu = time.perf_counter(), time.process_time()
        with _profiled(profile and repeat == repeats - 1) as prof:
            evaluated = monitor.run_once()
        runs.append((time.perf_counter() - started, time.process_time() - cpu))
        if prof is not None:
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(18)
            text = out.getvalue()
        assert evaluated == windows and monitor.reader.watermark() == new_high, evaluated
    monitor.engine.dispose()
    best = min(runs)
    return best[0], best[1], text


def cycle_cost(settings: Settings, batch: Batch, args: argparse.Namespace) -> None:
    dsn = _dsn(settings.storage.database_url)
    cycle_settings = settings.replace(monitor_window_size=args.window, monitor_settle_seconds=0)
    unsampled = cycle_settings.replace(monitor_sample_rows=args.window)
    print(f"\n(b) one monitor cycle on one pending window of {args.window:,} rows:")
    columns = ("log rows", "sampled wall", "CPU", "unsampled wall", "CPU")
    print("  {:>12} {:>13} {:>7} {:>15} {:>7}  size".format(*columns))
    profile_text = ""
    for total in (args.small, args.big):
        fill = _fill(dsn, total)
        total = _predictions(dsn)  # the ingest's rows too
        sampled = _cycle(cycle_settings, batch, args.window, args.repeats, profile=True)
        every = _cycle(unsampled, batch, args.window, args.repeats)
        profile_text = profile_text or sampled[2]
        print(
            f"  {total:>12,} {sampled[0]:>11.2f} s {sampled[1]:>5.2f} s "
            f"{every[0]:>13.2f} s {every[1]:>5.2f} s  {_size(dsn)} (filled in {fill:.0f} s)"
        )
    if args.profile:
        print("\nprofile of one sampled cycle (cumulative):")
        print(profile_text)


def window_cost(settings: Settings, batch: Batch, args: argparse.Namespace) -> None:
    """The fixed cost of a window: many small ones in one cycle."""
    small = settings.replace(monitor_window_size=args.small_window, monitor_settle_seconds=0)
    wall, cpu, _ = _cycle(small, batch, args.small_window, args.repeats, windows=args.windows)
    print(
        f"\n(c) one cycle on {args.windows} pending windows of {args.small_window:,} rows: "
        f"{wall:.2f} s wall, {cpu:.2f} s CPU, {cpu / args.windows * 1000:.0f} ms CPU a "
        f"window (load {_load()}): at 20,000 rows/s such windows come "
        f"{20_000 / args.small_window:.0f} a second"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=20_000, help="target rows/s in all")
    parser.add_argument("--seconds", type=float, default=60, help="ingest duration")
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--window", type=int, default=20_000, help="monitor window rows")
    parser.add_argument("--sample", type=int, default=500, help="sample rows per window")
    parser.add_argument("--small", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of a cycle")
    parser.add_argument("--min-seconds", type=float, default=0, help="window minimum span")
    parser.add_argument(
        "--scenario",
        action="append",
        type=Scenario.parse,
        help="LABEL:WINDOW:MIN_SECONDS[:CODE_DIR], repeatable (default: this checkout "
        "with --window and --min-seconds)",
    )
    parser.add_argument("--small-window", type=int, default=500, help="(c) window rows")
    parser.add_argument("--windows", type=int, default=20, help="(c) windows in the cycle")
    parser.add_argument("--skip-windows", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-cycle", action="store_true")
    args = parser.parse_args()
    bindir = find_bindir()
    if bindir is None:
        sys.exit("PostgreSQL binaries not found (Debian package postgresql)")
    workdir = Path(tempfile.mkdtemp(prefix="wk-monitor-scale-"))
    pg = PostgresServer(bindir).init()
    pg.start()  # 127.0.0.1 only, its own port, fsync off (tests/postgres.py)
    try:
        ames = load_ames()
        trained = train(ames.between(None, 200712), ames.between(200801, 200812))
        registry = workdir / "registry"
        ModelRegistry(registry).register(trained)
        settings = Settings(
            data_dir=workdir / "var",
            registry_path=registry,
            database_url=pg.create_database(),
            monitor_sample_rows=args.sample,
            monitor_min_samples=200,
        )
        settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(create_engine(settings.storage.database_url))
        Monitor(
            settings, create_engine(settings.storage.database_url), ModelRegistry(registry)
        ).suite(VERSION)  # fitted and saved once, outside every measurement
        batch = _batch(registry)
        print(f"PostgreSQL {bindir.parent.name} on 127.0.0.1:{pg.port}; load {_load()}\n")
        if not args.skip_ingest:
            scenarios = args.scenario or [Scenario("current", args.window, args.min_seconds)]
            for scenario in scenarios:
                sustained(settings, pg, batch, args, scenario)
                print()
        if not args.skip_windows:
            window_cost(settings, batch, args)
        if not args.skip_cycle:
            cycle_cost(settings, batch, args)
        print(f"\nload average at the end {_load()}")
    finally:
        pg.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
