"""Serving benchmark: CPU per request of /predict with the prediction log off and on,
against the in-process model and against peers that log nothing.

Everything runs on 127.0.0.1, bounded in time. It trains the default Ames model and
starts, all at once and each with 2 workers and ``OMP_NUM_THREADS=1``: Watchkeeper
with the log off, with the log on SQLite, with the log on PostgreSQL (a real server
on loopback, as the tests start it), a BentoML service and an MLServer service
(bench/peers/, installed on demand under var/bench-peers/). Then, in several short
rounds, it loads each server in turn with each scenario (the order rotates every
round), charging each run the CPU of the server's whole process tree, PostgreSQL's
included, up to the moment the log holds one row per request answered. Ratios are
medians of per-round ratios: each pair ran back to back under the same conditions.
It prints tables; it is not a test and asserts nothing.

    .venv/bin/python bench/serving_bench.py [--seconds 4] [--rounds 5]
        [--scenarios single,batch-100,batch-1000,columnar-1000,arrow-1000]
        [--no-peers] [--no-postgres]
        [--ood-ab] [--baseline PATH] [--restart-every N]

``--ood-ab`` adds Watchkeeper with the log off and on SQLite again, each with
``WATCHKEEPER_OOD_IN_RESPONSE=false``, to the rotation, and prints what the OOD score in
the response costs: CPU per request with it on ÷ off, round by round.

``--restart-every N`` starts every server afresh after each N rounds. Two starts of
the same server, measured side by side, differ by a few % in CPU per request for as
long as they run, though nothing differs between them but the start: a ratio of two
servers started once carries that difference through every round, where restarts turn
it into round-to-round spread that the median reduces.
"""

from __future__ import annotations

import os

# Before NumPy and scikit-learn load: one OpenMP thread, here and in every child.
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import http.client  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import orjson  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import serving_report as report  # noqa: E402
from bench.ames_model import ames_model  # noqa: E402
from bench.peers import install  # noqa: E402
from bench.predict_reference import PredictReference  # noqa: E402
from bench.servers import (  # noqa: E402
    Server,
    start_bentoml,
    start_mlserver,
    start_watchkeeper,
)
from bench.serving_runs import Run, measure  # noqa: E402
from bench.workloads import (  # noqa: E402
    JSON,
    SCENARIOS,
    Scenario,
    ServerKind,
    body,
    first_prediction,
)
from tests.postgres import PostgresServer, find_bindir  # noqa: E402
from watchkeeper.schema import FeatureSchema  # noqa: E402

# MLServer 1.7.1 calls asyncio.get_event_loop() in its workers, which uvloop 0.22
# turned into an error.
PEER_PACKAGES = {"bentoml": ("bentoml",), "mlserver": ("mlserver", "uvloop<0.22")}
PEER_STARTERS = {"bentoml": start_bentoml, "mlserver": start_mlserver}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="load per run")
    parser.add_argument("--rounds", type=int, default=5, help="A/B rounds")
    parser.add_argument(
        "--scenarios",
        default=",".join(s.name for s in SCENARIOS),
        help="comma-separated subset of " + ", ".join(s.name for s in SCENARIOS),
    )
    parser.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--postgres", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--ood-ab",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also run Watchkeeper with the OOD score in the response off (A/B)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another tree of this repository (e.g. a `git worktree` of an older commit):"
        " its code also serves with the log on SQLite and PostgreSQL, in the same rounds",
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=120.0, help="longest wait for the log to drain"
    )
    parser.add_argument(
        "--restart-every",
        type=int,
        default=0,
        metavar="N",
        help="start every server afresh after each N rounds (0: never); two starts of one"
        " server differ by a few %% in CPU per request for as long as they run",
    )
    args = parser.parse_args()
    known = {s.name: s for s in SCENARIOS}
    unknown = set(args.scenarios.split(",")) - known.keys()
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}")
    args.scenarios = [known[name] for name in args.scenarios.split(",")]
    return args


def _postmaster_pid(postgres: PostgresServer) -> int:
    return int((postgres.datadir / "postmaster.pid").read_text().split()[0])


def _post(server: Server, payload: bytes, content_type: str = JSON) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request(
            "POST", server.predict_path, body=payload, headers={"Content-Type": content_type}
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _check_same_model(servers: list[Server], schema: FeatureSchema, records: list[dict]) -> None:
    """Every server must predict what Watchkeeper predicts for the same row: the peers
    are compared serving the same pipeline, not some other model."""
    single = SCENARIOS[0]
    answers = {}
    for server in servers:
        status, raw = _post(server, body(server.kind, single, records, schema))
        answers[server.name] = (
            first_prediction(server.kind, orjson.loads(raw)) if status == 200 else status
        )
    print(
        "first row predicted by each server: " + ", ".join(f"{k} {v}" for k, v in answers.items())
    )
    values = list(answers.values())
    if not all(isinstance(v, float) and math.isclose(v, values[0], rel_tol=1e-9) for v in values):
        raise SystemExit("the servers do not predict the same: not comparable")


def _progress(run: Run) -> None:
    cpu = run.cpu_ms_per_request
    line = (
        f"  round {run.round + 1} {run.scenario:<14}{run.server:<10}"
        f"{run.answered:>6} answered{run.not_ok:>4} not ok  "
        f"{'—' if cpu is None else f'{cpu:8.2f}'} ms CPU/request  load {run.load_average:.1f}"
    )
    if run.logged is not None:
        drain = (
            "NOT DRAINED" if run.drain_seconds is None else f"drained in {run.drain_seconds:.2f} s"
        )
        line += f"  log {run.logged}/{run.answered} ({run.lost} lost), {drain}"
    print(line, flush=True)


def main() -> None:
    args = _arguments()
    started = time.monotonic()
    print(report.run_header("serving benchmark", f"code in {ROOT}"), flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="wk-serving-bench-"))
    model = ames_model(workdir)
    trained, registry, records = model.trained, model.registry, model.records
    schema = trained.model.schema

    reference = PredictReference(trained.model, records)

    servers: list[Server] = []
    clusters: list[PostgresServer] = []
    try:
        databases = _start_clusters(args, clusters)

        def launch() -> list[Server]:
            servers.clear()
            _launch(args, workdir, registry, databases, servers)  # stopped below on failure
            _wait_ready(servers)
            return list(servers)

        def restart() -> list[Server]:
            for server in servers:
                server.stop()
            print("  servers started afresh", flush=True)
            return launch()

        launch()
        _check_same_model(servers, schema, records)
        scenarios = _supported(args.scenarios, servers[0], schema, records)
        bodies = _bodies(servers, scenarios, schema, records, workdir)
        names = [server.name for server in servers]
        print(
            f"\n{args.rounds} rounds × {args.seconds:g} s per run, servers in rotating order: "
            f"{', '.join(names)}"
            + (
                f"; all started afresh every {args.restart_every} rounds"
                if args.restart_every
                else ""
            ),
            flush=True,
        )
        runs = _run_rounds(args, list(servers), reference, scenarios, bodies, restart)
    finally:
        for server in servers:
            server.stop()
        for cluster in clusters:
            cluster.destroy()
        shutil.rmtree(workdir, ignore_errors=True)

    print("\nsummary")
    report.print_reference(runs, scenarios)
    report.print_cpu_table(runs, names, scenarios)
    report.print_log_cost(runs, names, scenarios)
    report.print_peers(runs, names, scenarios)
    report.print_columnar(runs, scenarios)
    report.print_ood_cost(runs, names, scenarios)
    report.print_baseline(runs, names, scenarios)
    report.print_log_integrity(
        runs, scenarios, [n for n in names if n in report.LOG_ON or n.endswith("@base")]
    )
    print(f"\ntotal {time.monotonic() - started:.0f} s")


@dataclass(frozen=True)
class _Database:
    """A database of a PostgreSQL cluster started for the whole run: servers started
    afresh log into the same one."""

    url: str
    postmaster: int  # its process tree is charged to the server logging into it


def _start_clusters(
    args: argparse.Namespace, clusters: list[PostgresServer]
) -> dict[str, _Database]:
    """A PostgreSQL cluster for Watchkeeper on PostgreSQL, and one for the baseline's: one
    postmaster's tree is charged to one server. Empty without PostgreSQL."""
    if not args.postgres:
        return {}
    bindir = find_bindir()
    if bindir is None:
        print("PostgreSQL skipped: no /usr/lib/postgresql/*/bin (see scripts/install-system-deps)")
        return {}
    names = [report.POSTGRES] + ([report.baseline(report.POSTGRES)] if args.baseline else [])
    databases = {}
    for name in names:
        cluster = PostgresServer(bindir).init()
        clusters.append(cluster)
        cluster.start()
        databases[name] = _Database(cluster.create_database(), _postmaster_pid(cluster))
    return databases


def _launch(
    args: argparse.Namespace,
    workdir: Path,
    registry: Path,
    databases: dict[str, _Database],
    servers: list[Server],
) -> None:
    """Start every server of the run into ``servers`` (not waiting until ready)."""
    servers.append(start_watchkeeper(report.OFF, workdir, registry, log_enabled=False))
    servers.append(start_watchkeeper(report.SQLITE, workdir, registry, log_enabled=True))
    if args.ood_ab:
        for name, log_enabled in ((report.OFF, False), (report.SQLITE, True)):
            servers.append(
                start_watchkeeper(
                    report.without_ood(name),
                    workdir,
                    registry,
                    log_enabled=log_enabled,
                    ood_in_response=False,
                )
            )
    if args.baseline:
        servers.append(
            start_watchkeeper(
                report.baseline(report.SQLITE),
                workdir,
                registry,
                log_enabled=True,
                root=args.baseline.resolve(),
            )
        )
    for name, database in databases.items():
        root = args.baseline.resolve() if name != report.POSTGRES else ROOT
        server = start_watchkeeper(
            name, workdir, registry, log_enabled=True, database_url=database.url, root=root
        )
        # PostgreSQL's own CPU is part of what logging costs.
        server.extra_roots.append(database.postmaster)
        servers.append(server)
    if args.peers:
        _start_peers(servers, workdir, registry)


def _start_peers(servers: list[Server], workdir: Path, registry: Path) -> None:
    for name, packages in PEER_PACKAGES.items():
        env = install.ensure(ROOT / "var" / "bench-peers", name, packages)
        if env.bin_dir is None:
            print(f"{name} skipped: {env.problem}")
            continue
        servers.append(PEER_STARTERS[name](env.bin_dir, workdir, registry))


def _wait_ready(servers: list[Server]) -> None:
    deadline = time.monotonic() + 300
    for server in list(servers):
        try:
            server.wait_ready(deadline)
        except RuntimeError as exc:
            if server.kind is ServerKind.WATCHKEEPER:
                raise
            print(f"{server.name} skipped: {exc}")
            server.stop()
            servers.remove(server)


def _supported(
    scenarios: list[Scenario], server: Server, schema: FeatureSchema, records: list[dict]
) -> list[Scenario]:
    """Drop a columnar scenario if Watchkeeper does not take its body (one request to
    the server with the log off, so that no log counts it)."""
    kept = []
    for scenario in scenarios:
        if scenario.columnar:
            payload = body(server.kind, scenario, records, schema)
            status, raw = _post(server, payload, scenario.content_type)
            if status != 200:
                answer = raw[:200].decode(errors="replace")
                print(
                    f"{scenario.name} skipped: /predict answered a columnar body {status} {answer}"
                )
                continue
        kept.append(scenario)
    return kept


def _bodies(
    servers: list[Server],
    scenarios: list[Scenario],
    schema: FeatureSchema,
    records: list[dict],
    workdir: Path,
) -> dict[tuple[ServerKind, str], Path]:
    bodies = {}
    for kind in {server.kind for server in servers}:
        for scenario in scenarios:
            path = workdir / f"body-{kind}-{scenario.name}.json"
            path.write_bytes(body(kind, scenario, records, schema))
            bodies[(kind, scenario.name)] = path
    return bodies


def _serves(server: Server, scenario: Scenario) -> bool:
    return server.kind is ServerKind.WATCHKEEPER or not scenario.columnar


def _run_rounds(
    args: argparse.Namespace,
    servers: list[Server],
    reference: PredictReference,
    scenarios: list[Scenario],
    bodies: dict[tuple[ServerKind, str], Path],
    restart: Callable[[], list[Server]],
) -> list[Run]:
    """A warm-up run of every pair (not counted), then the rounds; with
    ``--restart-every``, every server is started afresh (and warmed up again) between
    rounds now and then. The in-process reference takes its turn in each round like a
    server, so that it shares their conditions."""

    def run(server: Server | None, scenario: Scenario, seconds: float, round_: int) -> Run:
        if server is None:
            return reference.measure(scenario, seconds=seconds, round_=round_)
        return measure(
            server,
            scenario,
            bodies[(server.kind, scenario.name)],
            seconds=seconds,
            round_=round_,
            drain_timeout=args.drain_timeout,
        )

    def warm_up() -> None:
        for scenario in scenarios:
            for server in servers:
                if _serves(server, scenario):
                    run(server, scenario, 1.0, -1)

    warm_up()
    runs = []
    for round_ in range(args.rounds):
        if round_ and args.restart_every and round_ % args.restart_every == 0:
            servers = restart()
            warm_up()
        for scenario in scenarios:
            eligible: list[Server | None] = [s for s in servers if _serves(s, scenario)]
            eligible.append(None)  # the reference
            # Rotate the order so that no server always runs first, or right after another.
            shift = round_ % len(eligible)
            for server in eligible[shift:] + eligible[:shift]:
                result = run(server, scenario, args.seconds, round_)
                _progress(result)
                runs.append(result)
    return runs


if __name__ == "__main__":
    main()
