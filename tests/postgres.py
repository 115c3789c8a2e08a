"""A throwaway PostgreSQL server for tests, from Debian's ``postgresql`` package.

PostgreSQL refuses to run as root, so when the tests run as root (CI does) the
cluster is created and started as the ``postgres`` user with ``runuser``.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.orphan_guard import OrphanGuard, remove
from tests.ports import free_port
from tests.processes import children


def find_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


class PostgresServer:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="wk-pg-"))
        self.datadir = self.root / "data"
        self._as_postgres = os.geteuid() == 0
        self._databases = 0
        self._migrated: str | None = None  # the template of migrated_database()
        # pg_ctl daemonises the cluster: a killed test run would leave it running
        self._guard = OrphanGuard(f"{self._stop_command('immediate')}; {remove(self.root)}")

    def _command(self, *argv: str | Path) -> list[str]:
        command = [str(a) for a in argv]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return command

    def _stop_command(self, mode: str) -> str:
        return shlex.join(
            self._command(self.bindir / "pg_ctl", "-D", self.datadir, "-m", mode, "-w", "stop")
        )

    def _run(self, *argv: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._command(*argv), check=True, capture_output=True, text=True, timeout=60
        )

    def init(self) -> PostgresServer:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(self.bindir / "initdb", "-D", self.datadir, "-A", "trust", "-U", "postgres")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            self.bindir / "pg_ctl",
            "-D",
            self.datadir,
            "-o",
            options,
            "-l",
            self.root / "log",
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(self.bindir / "pg_ctl", "-D", self.datadir, "-m", mode, "-w", "stop")

    def _processes(self) -> list[int]:
        """The postmaster and every backend it started."""
        try:
            postmaster = int((self.datadir / "postmaster.pid").read_text().split()[0])
        except FileNotFoundError:
            return []  # not running
        return [postmaster, *children(postmaster)]

    def stall(self) -> None:
        """Freeze the server (SIGSTOP): connections hang instead of failing."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: signal.Signals) -> None:
        for pid in self._processes():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:  # a backend that ended since it was listed
                pass

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
        self._guard.release()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, template: str = "template1") -> str:
        """A new, empty database (a copy of ``template``); returns its URL."""
        self._databases += 1
        name = f"wk_test_{self._databases}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def migrated_database(self) -> str:
        """A new database at the latest schema: a copy of one migrated once per server,
        which costs a third of migrating each copy (0.13 s against 0.38 s here)."""
        if self._migrated is None:
            from watchkeeper.db.engine import create_engine
            from watchkeeper.db.migrate import upgrade

            url = self.create_database()
            engine = create_engine(url)
            upgrade(engine)
            engine.dispose()  # a template must have no connection while it is copied
            self._migrated = sa_database(url)
        return self.create_database(template=self._migrated)

    def drop_database(self, url: str) -> None:
        """Remove a test's database now, connections and all: hundreds of databases
        left to the end made the session's teardown remove 6 GB at once (24 s)."""
        self._admin(f'DROP DATABASE IF EXISTS "{sa_database(url)}" WITH (FORCE)')

    def _admin(self, statement: str) -> None:
        import sqlalchemy as sa

        engine = sa.create_engine(
            self.url(), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 10}
        )
        try:
            with engine.connect() as connection:
                connection.execute(sa.text(statement))
        finally:
            engine.dispose()


def sa_database(url: str) -> str:
    """The database name of a SQLAlchemy URL."""
    import sqlalchemy as sa

    name = sa.make_url(url).database
    assert name, url
    return name
