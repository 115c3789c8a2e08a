"""CPU and database work per ``POST /feedback`` request, of 1 and of 100 labels.

In process, through Flask's test client (the request runs in the calling thread, so
its CPU is that thread's ``thread_time``, the app's background threads left out), on
SQLite by default or with ``--postgres`` on a throwaway PostgreSQL (``tests/postgres.py``;
the server's own CPU is not counted). Every label is
new and for a prediction already in the log. Counted per request: the statements the
request threads' engine ran (``before_cursor_execute``) and its connection checkouts
(each a ping on PostgreSQL).

With ``--database-down`` the database is a PostgreSQL nothing listens for, and the
registry holds ``--versions`` versions (copies of the Ames model, none served but the
first): each request of one label asks which task some version has
(``serving.label_rules``), a price waiting for the database (503) and a text no
regression model takes refused (422).

Usage: ``PYTHONPATH=TREE .venv/bin/python bench/feedback_bench.py [--requests N]
[--rounds R] [--postgres | --database-down [--versions V]]``: ``TREE`` is the code
measured (this checkout, or an export of another commit: the script uses only the app's
API).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from bench.ames_model import AmesModel, ames_model
from serving.app import create_app, shutdown
from serving.services import services
from tests.ports import free_port
from tests.postgres import PostgresServer, find_bindir
from watchkeeper.db.engine import create_engine
from watchkeeper.db.migrate import upgrade
from watchkeeper.registry import ModelRegistry
from watchkeeper.settings import Settings

SIZES = (1, 100)


class Counter:
    """Statements and checkouts of one engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.statements = 0
        self.checkouts = 0
        sa.event.listen(engine, "before_cursor_execute", self._statement)
        sa.event.listen(engine.pool, "checkout", self._checkout)

    def _statement(self, *_: Any) -> None:
        self.statements += 1

    def _checkout(self, *_: Any) -> None:
        self.checkouts += 1


def _ids(client: Any, records: list[dict[str, Any]], n: int) -> list[str]:
    ids: list[str] = []
    while len(ids) < n:
        start = len(ids) % len(records)
        batch = (records * 2)[start : start + 100]
        response = client.post("/predict", json={"instances": batch})
        assert response.status_code == 200, response.json
        ids += [item["id"] for item in response.json["predictions"]]
    return ids[:n]


def _body(ids: list[str]) -> dict[str, Any]:
    if len(ids) == 1:
        return {"id": ids[0], "actual": 180000.0}
    return {"items": [{"id": pid, "actual": 180000.0 + i} for i, pid in enumerate(ids)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="of 1 label, per round")
    parser.add_argument("--batches", type=int, default=40, help="of 100 labels, per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", action="store_true", help="on PostgreSQL, not SQLite")
    parser.add_argument(
        "--database-down", action="store_true", help="no database answers: 503s and 422s"
    )
    parser.add_argument("--versions", type=int, default=10, help="registered, --database-down")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="feedback-bench-"))
    model = ames_model(workdir)
    if args.database_down:
        _measure_down(args, workdir, model)
        return
    postgres = None
    if args.postgres:
        bindir = find_bindir()
        assert bindir is not None, "no /usr/lib/postgresql/*/bin"
        postgres = PostgresServer(bindir).init()
        postgres.start()
    try:
        _measure(args, workdir, model, postgres.create_database() if postgres else "")
    finally:
        if postgres is not None:
            postgres.destroy()


def _measure(args: argparse.Namespace, workdir: Path, model: AmesModel, url: str) -> None:
    url = url or f"sqlite:///{workdir / 'log.db'}"
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    settings = Settings(
        data_dir=workdir / "var",
        registry_path=model.registry,
        database_url=url,
        log_flush_interval=0.02,
        log_write_interval=0.02,
    )
    app = create_app(settings, registry=CollectorRegistry())
    client = app.test_client()
    counter = Counter(services(app).request_database.engine)
    requests = {1: args.requests, 100: args.batches}
    warm = {1: 20, 100: 5}
    needed = sum((requests[s] + warm[s]) * s * args.rounds for s in SIZES)
    ids = iter(_ids(client, model.records, needed))
    log = services(app).prediction_log
    assert log is not None and log.flush(timeout=300)

    figures: dict[int, list[tuple[float, float, float, float]]] = {size: [] for size in SIZES}
    for _ in range(args.rounds):
        for size in SIZES:
            for _ in range(warm[size]):
                client.post("/feedback", json=_body([next(ids) for _ in range(size)]))
            bodies = [_body([next(ids) for _ in range(size)]) for _ in range(requests[size])]
            statements, checkouts = counter.statements, counter.checkouts
            started, wall = time.thread_time(), time.perf_counter()
            for body in bodies:
                response = client.post("/feedback", json=body)
                assert response.status_code == 200, response.json
                assert response.json["unmatched"] == 0, response.json
            n = requests[size]
            cpu = (time.thread_time() - started) / n
            wall = (time.perf_counter() - wall) / n
            figures[size].append(
                (
                    cpu * 1000,
                    wall * 1000,
                    (counter.statements - statements) / n,
                    (counter.checkouts - checkouts) / n,
                )
            )
    shutdown(app, timeout=30)
    services(app).engine.dispose()

    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"{backend}, {args.rounds} rounds of {args.requests} and {args.batches} requests")
    print("labels  CPU ms/request (median [min, max])  wall ms (median)  statements  checkouts")
    for size in SIZES:
        cpu = [f[0] for f in figures[size]]
        wall = statistics.median(f[1] for f in figures[size])
        statements, checkouts = figures[size][0][2:]
        print(
            f"{size:>6}  {statistics.median(cpu):8.3f} [{min(cpu):.3f}, {max(cpu):.3f}]"
            f"          {wall:8.3f}         {statements:6.1f}      {checkouts:5.1f}"
        )


def _measure_down(args: argparse.Namespace, workdir: Path, model: AmesModel) -> None:
    registry = ModelRegistry(model.registry)
    while len(registry.versions()) < args.versions:
        registry.register(model.trained, make_current=False)
    settings = Settings(
        data_dir=workdir / "var",
        registry_path=model.registry,
        database_url=f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
    )
    app = create_app(settings, registry=CollectorRegistry())
    client = app.test_client()
    labels = {503: 180000.0, 422: "abc"}
    figures: dict[int, list[float]] = {status: [] for status in labels}
    for _ in range(args.rounds):
        for status, label in labels.items():
            body = {"id": "0123abcd", "actual": label}
            for _ in range(20):
                client.post("/feedback", json=body)
            started = time.thread_time()
            for _ in range(args.requests):
                response = client.post("/feedback", json=body)
                assert response.status_code == status, response.json
            figures[status].append((time.thread_time() - started) / args.requests * 1000)
    shutdown(app, timeout=30)
    services(app).engine.dispose()

    print(f"database down, {args.versions} versions, {args.rounds} rounds of {args.requests}")
    print("status  CPU ms/request (median [min, max])")
    for status, cpu in figures.items():
        print(f"{status:>6}  {statistics.median(cpu):8.3f} [{min(cpu):.3f}, {max(cpu):.3f}]")


if __name__ == "__main__":
    main()
