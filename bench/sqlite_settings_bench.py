"""What SQLite's settings cost the prediction log's writer and its readers (issue 10;
figures in bench/README.md, "SQLite settings").

    OMP_NUM_THREADS=1 .venv/bin/python bench/sqlite_settings_bench.py [--rounds 40]
        [--variants base,engine,page8k,...] [--mix both|big|one]
        [--singles-per-transaction 10] [--reader-rounds 10] [--no-readers] [--keep DIR]

Variants (:data:`VARIANTS`): ``base`` is SQLite's defaults (4 KiB pages, 2 MB cache,
a checkpoint per 1,000 pages of WAL, no mmap, temp files on disk) with the log's
``synchronous=FULL``; ``engine`` is a log as ``watchkeeper.db.engine`` makes and sets
it; the others change one or two settings of ``base``. Every other variant sets every
per-connection setting compared here, so its figures do not depend on the engine's.

Fills one log per page size with ``index_cost_bench.fill`` (220,000 predictions of two
versions, 20,000 labels; the file is made with its page size before the schema, as a
new log is), copies it once per variant, then:

- **writer**, A/B interleaved: each round stores, on every variant in a rotated order,
  four 1,000-row requests (one transaction each; 71 features, already JSON as the
  writer reads them from the journal) and 200 single records, ten per transaction
  (``--singles-per-transaction``; the writer stores a few requests per transaction at
  single-record rates), through ``serving.log_store`` on a held connection, as the
  writer does. ``--mix big`` or ``one`` stores only one kind: SQLite charges a
  checkpoint to the commit that crosses its threshold, so in a mixed round one kind
  pays for the other's WAL. Charged: the thread's CPU (``time.thread_time``, user and
  system: the ``fsync`` and the checkpoints run in it), with its parts: building the
  rows, the statements, the ``COMMIT`` (and the checkpoint it runs). Printed: the
  median over rounds of each round's mean, the mean over all rounds, the ratios to
  ``base`` (median of per-round ratios; ratio of the means; median of the ratios of
  sums over blocks of rounds), the largest WAL file seen, and the load average. A
  checkpoint comes every few rounds, so the medians of single rounds leave it out
  where it is rare: the ratio of means and the block ratios are the cost.
- **readers**: every reader of ``index_cost_bench`` but the prune (the monitor's label
  reads, the report's counts, OOD rows and window features, retraining data, the log's
  statistics, a dry-run prune), each on a pooled engine per variant that stays open
  between rounds (as the monitor's does), rotated, after a ``gc.collect()``; thread
  CPU, medians over rounds (the first, warming the caches, left out).
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import index_cost_bench as icb  # noqa: E402

# SQLite's own defaults for the per-connection settings compared here, and the log's
# synchronous=FULL.
DEFAULTS = {
    "cache_size": -2000,
    "mmap_size": 0,
    "temp_store": 0,
    "wal_autocheckpoint": 1000,
    "synchronous": 2,
}
_MB = 1 << 20


AS_MADE = 0  # a page size: the log as ``watchkeeper.db.engine`` makes and sets it


@dataclass(frozen=True)
class Variant:
    """A database made with ``page_size``, used with ``pragmas`` on every connection;
    ``wal_bytes`` sets ``wal_autocheckpoint`` (in pages) to that many bytes of WAL.
    With ``page_size=AS_MADE``, the file and every setting are the engine's own."""

    name: str
    page_size: int = 4096
    pragmas: dict[str, int] = field(default_factory=dict)
    wal_bytes: int | None = None

    def settings(self) -> dict[str, int]:
        if self.page_size == AS_MADE:
            return {}
        wal = (
            {}
            if self.wal_bytes is None
            else {"wal_autocheckpoint": self.wal_bytes // self.page_size}
        )
        return {**DEFAULTS, **wal, **self.pragmas}


VARIANTS = {
    v.name: v
    for v in (
        Variant("base"),
        Variant("engine", AS_MADE),
        Variant("page8k", 8192),
        Variant("page16k", 16384),
        Variant("cache16m", pragmas={"cache_size": -16 * 1024}),
        Variant("cache64m", pragmas={"cache_size": -64 * 1024}),
        Variant("wal16m", wal_bytes=16 * _MB),
        Variant("wal32m", wal_bytes=32 * _MB),
        Variant("wal64m", wal_bytes=64 * _MB),
        Variant("mmap256m", pragmas={"mmap_size": 256 * _MB}),
        Variant("tempmem", pragmas={"temp_store": 2}),
        Variant("page8k-wal4m", 8192, wal_bytes=4 * _MB),
        Variant("page8k-wal16m", 8192, wal_bytes=16 * _MB),
        Variant("page8k-wal32m", 8192, wal_bytes=32 * _MB),
        Variant("page8k-wal64m", 8192, wal_bytes=64 * _MB),
        Variant("page8k-cache16m", 8192, {"cache_size": -16 * 1024}),
        Variant("page16k-wal4m", 16384, wal_bytes=4 * _MB),
        Variant("page16k-wal32m", 16384, wal_bytes=32 * _MB),
        Variant("page16k-cache16m", 16384, {"cache_size": -16 * 1024}),
        Variant("page16k-mmap256m", 16384, {"mmap_size": 256 * _MB}),
        # What synchronous=FULL costs, for reference only: the log keeps FULL.
        Variant("sync-normal", pragmas={"synchronous": 1}),
    )
}
SINGLES = 200


def _entry(now: datetime, items: int, n: int) -> Any:
    """An entry as the writer reads it from the journal: its features already JSON."""
    entry = icb._entry(now, items, "v1", n)
    entry.columns_json = _BIG_JSON if items == icb.BIG else _ONE_JSON
    return entry


_BIG_JSON = orjson.dumps(icb._BIG_COLUMNS).decode()
_ONE_JSON = orjson.dumps(icb._ONE_COLUMNS).decode()


def make_database(path: Path, page_size: int) -> None:
    """An empty database with ``page_size``, as a new log is made."""
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA page_size={page_size}")
    connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()


def template(work: Path, page_size: int, now: datetime) -> Path:
    """A filled log made with ``page_size``, its WAL checkpointed into it."""
    path = work / f"template-{page_size}.db"
    if page_size != AS_MADE:
        make_database(path, page_size)
    log = icb.Log(f"template-{page_size}", f"sqlite:///{path}", "head")
    started = time.monotonic()
    icb.fill(log, now)
    with log.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar()
        size = connection.exec_driver_sql("PRAGMA page_size").scalar()
    log.engine.dispose()
    print(
        f"filled the {size}-byte-page log{' made by the engine' if page_size == AS_MADE else ''}"
        f" in {time.monotonic() - started:.0f} s:"
        f" {pages:,} pages, {path.stat().st_size / 1e6:.0f} MB"
    )
    return path


def engine_for(path: Path, variant: Variant, **kwargs: Any) -> Any:
    import sqlalchemy as sa

    from watchkeeper.db.engine import create_engine

    engine = create_engine(f"sqlite:///{path}", **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _settings(dbapi_connection: Any, _record: Any) -> None:  # after the engine's own
        for name, value in variant.settings().items():
            dbapi_connection.execute(f"PRAGMA {name}={value}")

    return engine


class Writer:
    """A writer's store on one variant's copy of the log, its time split by phase."""

    def __init__(self, variant: Variant, path: Path) -> None:
        import sqlalchemy as sa

        from serving.log_store import LogStore

        self.variant, self.path = variant, path
        self.engine = engine_for(path, variant, poolclass=sa.pool.StaticPool)
        self.store = LogStore(self.engine)
        self.store.hold()
        self.wal = Path(f"{path}-wal")
        self.max_wal = 0
        self._marks: dict[str, int] = {}

        # The store runs its statements on the driver's cursor, below SQLAlchemy's
        # statement events: the transaction's begin and commit mark the parts.
        @sa.event.listens_for(self.engine, "begin")
        def _begin(*_: Any) -> None:
            self._marks["begin"] = time.thread_time_ns()

        @sa.event.listens_for(self.engine, "commit")
        def _commit(*_: Any) -> None:
            self._marks["commit"] = time.thread_time_ns()

    def insert(self, entries: list[Any]) -> dict[str, float]:
        """Thread CPU of storing ``entries`` (``total``) and its parts, in ms: building
        the rows (``rows``, to the transaction's start), the statements, the ``COMMIT``
        (with any checkpoint)."""
        self._marks.clear()
        before = time.thread_time_ns()
        self.store.insert(entries)
        after = time.thread_time_ns()
        self.max_wal = max(self.max_wal, self.wal.stat().st_size if self.wal.exists() else 0)
        begin, commit = self._marks["begin"], self._marks["commit"]
        return {
            "total": (after - before) / 1e6,
            "rows": (begin - before) / 1e6,
            "stmts": (commit - begin) / 1e6,
            "commit": (after - commit) / 1e6,
        }


PARTS = ("total", "rows", "stmts", "commit")
KINDS = {"big": "1,000-row request, ms", "one": "single record, µs"}
BIGS = 4  # 1,000-row requests per round


def _sum(parts: list[dict[str, float]], per: float) -> dict[str, float]:
    return {k: sum(p[k] for p in parts) / per for k in PARTS}


def _round(
    writer: Writer, kind: str, now: datetime, n: int, per_transaction: int
) -> dict[str, float]:
    """One round of ``kind`` on ``writer``: the mean cost of a request (ms) or of a single
    record (µs) and of their parts."""
    if kind == "big":
        return _sum(
            [writer.insert([_entry(now, icb.BIG, n + i * icb.BIG)]) for i in range(BIGS)], BIGS
        )
    parts = [
        writer.insert([_entry(now, 1, n + i + j) for j in range(per_transaction)])
        for i in range(0, SINGLES, per_transaction)
    ]
    return _sum(parts, SINGLES / 1000)


def measure_writers(
    writers: list[Writer], rounds: int, kinds: list[str], per_transaction: int
) -> None:
    now = datetime.now(UTC)
    results = {w.variant.name: {kind: [] for kind in kinds} for w in writers}
    loads = []
    n = 50_000_000
    for r in range(rounds):
        loads.append(os.getloadavg()[0])
        for writer in writers[r % len(writers) :] + writers[: r % len(writers)]:
            for kind in kinds:
                results[writer.variant.name][kind].append(
                    _round(writer, kind, now, n, per_transaction)
                )
                n += BIGS * icb.BIG
    what = {
        "big": f"{BIGS} 1,000-row requests",
        "one": f"{SINGLES} single records, {per_transaction} per transaction",
    }
    print(
        f"\nwriter thread CPU, {rounds} rounds (load average {min(loads):.1f}–{max(loads):.1f});"
        f" a round: {' and '.join(what[k] for k in kinds)}."
        "\n  Median of the rounds' means [mean of all]; parts (medians): building rows,"
        " statements, COMMIT (with the checkpoints it runs)"
    )
    print(
        f"  {'variant':<18}"
        + "".join(f"{KINDS[k]:>24}{'rows':>7}{'stmts':>7}{'commit':>7}" for k in kinds)
        + f"{'max WAL':>10}"
    )
    for writer in writers:
        cells = []
        for kind in kinds:
            rows = results[writer.variant.name][kind]
            med = {k: statistics.median(p[k] for p in rows) for k in PARTS}
            mean = statistics.fmean(p["total"] for p in rows)
            cells.append(
                f"{med['total']:>15.2f} [{mean:6.2f}]"
                + "".join(f"{med[k]:>7.2f}" for k in ("rows", "stmts", "commit"))
            )
        print(f"  {writer.variant.name:<18}" + "".join(cells) + f"{writer.max_wal / 1e6:>7.1f} MB")
    base = results.get("base")
    if base is None:
        return
    block = max(1, rounds // 8)
    print(
        "  ratio to base: median of per-round ratios (range) [ratio of means]"
        f" {{median of the ratios of sums over blocks of {block} rounds (range)}}"
    )
    for writer in writers:
        if writer.variant.name == "base":
            continue
        parts = []
        for kind in kinds:
            mine = [p["total"] for p in results[writer.variant.name][kind]]
            theirs = [p["total"] for p in base[kind]]
            ratios = [b / a for a, b in zip(theirs, mine, strict=True)]
            blocks = [
                sum(mine[i : i + block]) / sum(theirs[i : i + block])
                for i in range(0, rounds - block + 1, block)
            ]
            parts.append(
                f"{'1,000-row' if kind == 'big' else 'single'} {statistics.median(ratios):.3f}x"
                f" ({min(ratios):.2f}–{max(ratios):.2f})"
                f" [{statistics.fmean(mine) / statistics.fmean(theirs):.3f}x]"
                f" {{{statistics.median(blocks):.3f}x ({min(blocks):.2f}–{max(blocks):.2f})}}"
            )
        print(f"  {writer.variant.name:<18}" + "  ".join(parts))


def measure_readers(paths: dict[str, Path], variants: list[Variant], rounds: int) -> None:
    now = datetime.now(UTC)
    engines = {v.name: engine_for(paths[v.name], v) for v in variants}
    readers = {
        v.name: [
            (label, call) for label, call in icb._readers(engines[v.name], now) if label != "prune"
        ]
        for v in variants
    }
    labels = [label for label, _ in readers[variants[0].name]]
    times: dict[str, dict[str, list[float]]] = {v.name: {x: [] for x in labels} for v in variants}
    loads = []
    for r in range(rounds + 1):  # the first round warms each engine's pool and cache
        loads.append(os.getloadavg()[0])
        for variant in variants[r % len(variants) :] + variants[: r % len(variants)]:
            for label, call in readers[variant.name]:
                gc.collect()  # a collection the last reader's garbage would cause
                before = time.thread_time_ns()
                call()
                if r:
                    times[variant.name][label].append((time.thread_time_ns() - before) / 1e6)
    for engine in engines.values():
        engine.dispose()
    names = [v.name for v in variants]
    print(
        f"\nreaders' thread CPU, ms, median of {rounds} rounds"
        f" (load average {min(loads):.1f}–{max(loads):.1f}):"
    )
    print(f"  {'reader':<32}" + "".join(f"{n[:16]:>17}" for n in names))
    totals = dict.fromkeys(names, 0.0)
    for label in labels:
        cells = []
        for name in names:
            m = statistics.median(times[name][label])
            totals[name] += m
            cells.append(f"{m:>17.2f}")
        print(f"  {label:<32}" + "".join(cells))
    print(f"  {'sum':<32}" + "".join(f"{totals[n]:>17.2f}" for n in names))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--reader-rounds", type=int, default=10)
    parser.add_argument("--singles-per-transaction", type=int, default=10)
    parser.add_argument(
        "--mix",
        choices=("both", "big", "one"),
        default="both",
        help="what a round stores: a checkpoint is charged to the commit that crosses the"
        " threshold, so alone each kind carries only the checkpoints it causes",
    )
    parser.add_argument(
        "--variants",
        default="base,engine,page8k,wal32m,cache16m,mmap256m",
        help=f"of: {','.join(VARIANTS)}",
    )
    parser.add_argument("--no-readers", action="store_true")
    parser.add_argument("--keep", type=Path, help="make the logs here and leave them")
    args = parser.parse_args()
    variants = [VARIANTS[name] for name in args.variants.split(",")]
    started = time.monotonic()
    print(f"load average at the start: {os.getloadavg()}; SQLite {sqlite3.sqlite_version}")
    work = args.keep or Path(tempfile.mkdtemp(prefix="wk-sqlite-settings-"))
    work.mkdir(parents=True, exist_ok=True)
    writers: list[Writer] = []
    try:
        now = datetime.now(UTC)
        templates = {size: template(work, size, now) for size in {v.page_size for v in variants}}
        paths = {}
        for variant in variants:
            paths[variant.name] = work / f"{variant.name}.db"
            shutil.copyfile(templates[variant.page_size], paths[variant.name])
        writers = [Writer(v, paths[v.name]) for v in variants]
        kinds = ["big", "one"] if args.mix == "both" else [args.mix]
        if args.rounds:
            measure_writers(writers, args.rounds, kinds, args.singles_per_transaction)
        for writer in writers:
            writer.store.release()
            writer.engine.dispose()
        if not args.no_readers:
            measure_readers(paths, variants, args.reader_rounds)
    finally:
        for writer in writers:
            writer.engine.dispose()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()}; {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
