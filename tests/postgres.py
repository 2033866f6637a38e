"""A throwaway PostgreSQL cluster for the tests, from the Debian `postgresql` package.

initdb into a fresh folder under /tmp (as the `postgres` user when we are root: initdb
refuses root), start it on 127.0.0.1 at a free port with its unix socket in that folder and
password logins only, then stop it and delete the folder. Nothing else on the machine is used
or changed; a cluster the package may have started is left alone.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "postgres"


def find_bindir() -> Path | None:
    """Debian keeps initdb and pg_ctl off the PATH, under /usr/lib/postgresql/<version>/bin."""
    candidates = [os.environ.get("PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    initdb = shutil.which("initdb")
    candidates.append(str(Path(initdb).resolve().parent) if initdb else "")
    for candidate in candidates:
        if candidate and all((Path(candidate) / tool).exists() for tool in ("initdb", "pg_ctl")):
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresCluster:
    bindir: Path
    folder: Path
    port: int
    password: str
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{SUPERUSER}:{secret}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"test_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def psql(self, sql: str, database: str = "postgres") -> str:
        psql = self.bindir / "psql"
        command = [str(psql) if psql.exists() else "psql", "-X", "-q", "-t", "-A"]
        command += ["-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database]
        env = {**os.environ, "PGPASSWORD": self.password}
        done = subprocess.run([*command, "-c", sql], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def shut_down(self) -> None:
        """Stop the server, every connection dropped, keeping its data for `start_again`
        ("fast": an "immediate" stop would lose the last commits, as synchronous_commit is
        off)."""
        _as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"),
                      "-m", "fast", "-w", "stop"])  # fmt: skip

    def start_again(self) -> None:
        _as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"),
                      "-o", self.options(), "-l", str(self.folder / "server.log"),
                      "-w", "-t", "60", "start"])  # fmt: skip

    def options(self) -> str:
        # Throwaway: durability settings off for speed; loopback and our own socket only.
        return (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=200"
        )

    def stop(self) -> None:
        _as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"),
                      "-m", "immediate", "-w", "stop"], check=False)  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start_cluster(bindir: Path) -> PostgresCluster:
    folder = Path(tempfile.mkdtemp(prefix="all-in-one-bot-pg-"))
    password = secrets.token_hex(12)
    (folder / "pwfile").write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(folder, SUPERUSER, SUPERUSER)
        shutil.chown(folder / "pwfile", SUPERUSER, SUPERUSER)
    cluster = PostgresCluster(bindir, folder, 0, password)
    try:
        _as_postgres([str(bindir / "initdb"), "-D", str(folder / "data"), "-U", SUPERUSER,
                      "--auth=scram-sha-256", f"--pwfile={folder / 'pwfile'}", "-E", "UTF8",
                      "--locale=C", "--no-sync"])  # fmt: skip
        # PostgreSQL binds its port itself and cannot be handed a bound socket: a port found
        # free may be taken by another process before it starts. That shows in its log, and
        # it is started again on another port (a clash is rare: a few tries are plenty).
        for attempt in range(1, START_ATTEMPTS + 1):
            cluster.port = _free_port()
            try:
                cluster.start_again()
                break
            except RuntimeError:
                if attempt == START_ATTEMPTS or "could not bind" not in cluster.log():
                    raise
    except BaseException:
        cluster.stop()
        raise
    return cluster


START_ATTEMPTS = 5


def _as_postgres(command: list[str], *, check: bool = True) -> None:
    if os.geteuid() == 0:
        command = ["runuser", "-u", SUPERUSER, "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, cwd="/")
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip() or done.stdout}")


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    bindir = find_bindir()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL's initdb and pg_ctl were not found")
    cluster = start_cluster(bindir)
    try:
        yield cluster
    finally:
        cluster.stop()
