"""A throw-away PostgreSQL server for the tests.

Installed from Debian packages when absent (``apt-get install postgresql``), started with
``initdb``/``pg_ctl`` in a temporary directory, listening on 127.0.0.1 only, on a free
port, with trust authentication. PostgreSQL refuses to run as root, so as root the server
runs as the ``postgres`` system user (created if missing). Durability is off (``fsync``,
``full_page_writes``): the data is thrown away anyway, and tests run faster.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

__all__ = ["PgServer", "find_bindir", "start_postgres"]


@dataclass
class PgServer:
    port: int
    root: Path  # owns datadir, the socket and the log
    bindir: Path
    run_as: list[str]

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[object, ...]]:
        """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
        conninfo = f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"
        with psycopg.connect(conninfo, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(sql.encode())
            return list(cur.fetchall()) if cur.description else []

    def database_dir(self, database: str) -> Path:
        """Where the database's tables, indexes and TOAST live (not the shared WAL)."""
        rows = self.execute(f"SELECT oid FROM pg_database WHERE datname = '{database}'")
        return self.datadir / "base" / str(rows[0][0])

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)

    def halt(self) -> None:
        """Stop the server as a crash would (``-m immediate``), keeping its data."""
        subprocess.run(
            [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate",
             "-w", "stop"],
            capture_output=True,
        )  # fmt: skip

    def start(self) -> None:
        """Start the server on its data directory (again, after :meth:`halt`)."""
        opts = (
            f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c full_page_writes=off "
            "-c synchronous_commit=off -c max_connections=200"
        )
        _run(
            [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-o", opts,
             "-l", str(self.root / "log"), "-w", "-t", "60", "start"],
            "pg_ctl start",
        )  # fmt: skip


def _version(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.split("/postgresql/")[1].split("/")[0]))


def find_bindir() -> Path | None:
    """PostgreSQL's server programs: Debian's versioned directory, else ``initdb`` on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")  # e.g. /usr/local/bin/initdb, a link into the real one
    return Path(which).resolve().parent if which else None


def _install() -> Path:
    bindir = find_bindir()
    if bindir is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"],
                check=True, env=env, capture_output=True,
            )  # fmt: skip
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            raise RuntimeError(
                "PostgreSQL is not installed and `apt-get install postgresql` failed: "
                f"{exc} {detail.decode(errors='replace')[-2000:]}"
            ) from exc
        bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("apt-get installed postgresql but initdb is nowhere to be found")
    return bindir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True)
    if done.returncode:
        out = (done.stdout + done.stderr).decode(errors="replace")
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{out[-4000:]}")


def start_postgres() -> PgServer:
    bindir = _install()
    root = Path(tempfile.mkdtemp(prefix="openclone-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        if subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
            _run(["useradd", "--system", "--no-create-home", "postgres"], "useradd postgres")
        shutil.chown(root, "postgres", "postgres")
        os.chmod(root, 0o700)
        run_as = ["runuser", "-u", "postgres", "--"]
    server = PgServer(_free_port(), root, bindir, run_as)
    _run(
        [*run_as, str(bindir / "initdb"), "-D", str(server.datadir), "-U", "postgres",
         "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"],
        "initdb",
    )  # fmt: skip
    server.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            server.execute("SELECT 1")
            return server
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.1)
