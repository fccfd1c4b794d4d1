"""A throw-away PostgreSQL cluster for tests: `initdb` and `pg_ctl` on a Unix socket in a
temporary folder (no TCP port, never a system service), one fresh database per test."""

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, create_engine, text

PORT = 55_432  # names the socket file only: the folder is the cluster's own
# Durability is of no use to a cluster thrown away after the tests; it costs them time.
SPEED_OVER_SAFETY = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


def server_binaries() -> Path | None:
    """Where `initdb` and `pg_ctl` are: on PATH, else Debian's versioned folder."""
    found = shutil.which("initdb")
    if found is not None and shutil.which("pg_ctl") is not None:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    return versions[0].parent if versions else None


def as_server_user(*command: str) -> list[str]:
    """PostgreSQL refuses to run as root; as root, run it as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


@dataclass
class PostgresCluster:
    root: Path  # the cluster's folder: its data, its socket and its log
    binaries: Path  # initdb, pg_ctl
    _admin: Engine | None = None  # creates the tests' databases
    _names: Iterator[int] = field(default_factory=itertools.count)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.root}&port={PORT}"

    def new_database(self) -> str:
        """The URL of a database made just now, empty."""
        name = f"test_{next(self._names)}"
        if self._admin is None:
            self._admin = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with self._admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        return self.url(name)

    def pg_ctl(self, *args: str) -> None:
        command = [str(self.binaries / "pg_ctl"), "-D", str(self.root / "data"), *args]
        subprocess.run(as_server_user(*command), check=True, capture_output=True)

    def start(self) -> None:
        options = f"-k {self.root} -p {PORT} -c listen_addresses='' {SPEED_OVER_SAFETY}"
        self.pg_ctl("-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.dispose()
        self.pg_ctl("-m", "immediate", "stop")


@contextmanager
def throwaway_cluster(binaries: Path) -> Iterator[PostgresCluster]:
    root = Path(tempfile.mkdtemp(prefix="pagedrag-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
    initdb = [str(binaries / "initdb"), "-D", str(root / "data"), "-U", "postgres"]
    subprocess.run(as_server_user(*initdb, "--auth=trust"), check=True, capture_output=True)
    cluster = PostgresCluster(root, binaries)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
