"""A private MariaDB from the binaries on PATH, for tests and the demo of the MySQL side.

Owns: install (mariadb-install-db), start and stop of one server whose datadir, socket, pid file
and log all live in one folder, listening on a free port of 127.0.0.1. Root is administered over
the private Unix socket only (unix_socket authentication: no password exists to leak, and no
root login over TCP). Must not touch the proxy, and never the machine's shared server: every
binary runs with `--no-defaults`, so no my.cnf can point it at the shared datadir or port 3306.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .embedded_pg import free_port

MISSING = (
    "MariaDB server binaries (mariadbd, mariadb-install-db) are not on PATH: "
    "apt-get install -y mariadb-server"
)
# The kernel's limit for a Unix socket path (sun_path) less its terminating NUL.
_SOCKET_PATH_MAX = 107


def binaries() -> tuple[str, str] | None:
    """(install tool, server) from PATH, or None when MariaDB (or MySQL's old names) is missing."""
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    # The Debian package puts the server in /usr/sbin, which a non-root PATH may lack.
    server = (
        shutil.which("mariadbd")
        or shutil.which("mysqld")
        or shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin")
        or shutil.which("mysqld", path="/usr/sbin:/usr/local/sbin")
    )
    if install is None or server is None:
        return None
    return install, server


def available() -> bool:
    return binaries() is not None


class EmbeddedMariaDB:
    """One MariaDB server in `base`. `start()` is idempotent; `stop()` shuts it down cleanly."""

    host = "127.0.0.1"

    def __init__(
        self,
        base: Path,
        port: int = 0,
        *,
        performance_schema: bool = True,
        options: tuple[str, ...] = (),
    ) -> None:
        self.base = Path(base)
        self.port = port
        self.performance_schema = performance_schema
        self.options = options  # more server options (`--ssl-cert=…`, `--sql-mode=…`)
        self._proc: subprocess.Popen[bytes] | None = None
        self._version: str | None = None
        self._short_socket_dir: str | None = None

    # --- paths -------------------------------------------------------------------------------
    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def pid_file(self) -> Path:
        return self.base / "mariadb.pid"

    @property
    def log_file(self) -> Path:
        return self.base / "mariadb.log"

    @property
    def socket(self) -> Path:
        path = self.base / "mariadb.sock"
        if len(str(path.resolve())) <= _SOCKET_PATH_MAX:
            return path
        # A deep pytest temp folder can exceed the kernel's socket path limit; only then does the
        # socket live in a short private folder of its own (0700, removed by destroy()).
        if self._short_socket_dir is None:
            self._short_socket_dir = tempfile.mkdtemp(prefix="mdb-")
        return Path(self._short_socket_dir) / "mariadb.sock"

    # --- lifetime ----------------------------------------------------------------------------
    def _binaries(self) -> tuple[str, str]:
        found = binaries()
        if found is None:
            raise RuntimeError(MISSING)
        return found

    def _user_args(self) -> list[str]:
        # mariadbd refuses to run as root unless told to; the datadir is root's own then.
        return ["--user=root"] if os.geteuid() == 0 else []

    def init(self) -> None:
        if (self.datadir / "mysql").is_dir():
            return
        install, _ = self._binaries()
        self.base.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(
            [
                install,
                "--no-defaults",  # first: never read the shared server's my.cnf
                f"--datadir={self.datadir}",
                *self._user_args(),
                # root@localhost logs in over the socket as the OS user root (or the current user
                # when not root), with no password; no anonymous accounts, no test database.
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                "--skip-name-resolve",
                *self._server_options(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {res.stderr.strip()[-2000:]}")

    def _server_options(self) -> list[str]:
        # Small and fast: a test server holds a few MB and is thrown away, so durability settings
        # that cost fsyncs are off. performance_schema costs ~0.1 s of start and ~100 MB of RSS;
        # later tests want its statement tables, so it is on unless the caller says otherwise.
        tmp = self.base / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return [
            # Its own temporary files, not the machine's /tmp: servers bootstrapped side by side
            # (parallel test runs) failed on each other's `#sql-temptable-*` files there.
            f"--tmpdir={tmp}",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=8M",
            "--innodb-flush-log-at-trx-commit=2",
            "--innodb-doublewrite=0",
            f"--performance-schema={'ON' if self.performance_schema else 'OFF'}",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            *self.options,
        ]

    def is_running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        pid = self._pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True

    def _pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self, timeout: float = 30.0) -> EmbeddedMariaDB:
        self.init()
        if self.is_running():
            if not self.port:
                self.port = int(self.sql("SELECT @@port")[0][0])
            return self
        _, server = self._binaries()
        if not self.port:
            self.port = free_port(self.host)
        self.socket.unlink(missing_ok=True)
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    server,
                    "--no-defaults",  # first: never read the shared server's my.cnf
                    f"--datadir={self.datadir}",
                    f"--socket={self.socket}",
                    f"--pid-file={self.pid_file}",
                    f"--log-error={self.log_file}",
                    f"--port={self.port}",
                    f"--bind-address={self.host}",
                    "--skip-name-resolve",
                    *self._user_args(),
                    *self._server_options(),
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                # Its own process group: a Ctrl-C meant for pytest does not kill it half-way.
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"embedded MariaDB exited while starting:\n{self._log_tail()}")
            try:
                self._version = str(self.sql("SELECT VERSION()")[0][0])
                return self
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"embedded MariaDB did not accept connections in {timeout:.0f} s:\n{self._log_tail()}"
                    ) from None
                time.sleep(0.05)

    def _log_tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""

    def stop(self, timeout: float = 30.0) -> None:
        pid = self._proc.pid if self._proc is not None else self._pid()
        if pid is None or not self.is_running():
            self._proc = None
            return
        # SIGTERM is mariadbd's clean shutdown (the same as `mariadb-admin shutdown`).
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.is_running():
            if self._proc is not None:
                try:
                    self._proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    break
            elif time.monotonic() > deadline:
                break
            else:
                time.sleep(0.05)
        if self.is_running():
            os.kill(pid, signal.SIGKILL)
            if self._proc is not None:
                self._proc.wait(timeout=10)
        self._proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
        if self._short_socket_dir is not None:
            shutil.rmtree(self._short_socket_dir, ignore_errors=True)
            self._short_socket_dir = None

    # --- use ---------------------------------------------------------------------------------
    @property
    def version(self) -> str:
        if self._version is None:
            self._version = str(self.sql("SELECT VERSION()")[0][0])
        return self._version

    def connect(self, database: str | None = None, **kwargs: Any) -> Any:
        """A PyMySQL connection as root over the private socket (setup only, never the proxy's)."""
        import pymysql

        kwargs.setdefault("autocommit", True)
        return pymysql.connect(
            unix_socket=str(self.socket), user="root", database=database, charset="utf8mb4", **kwargs
        )

    def sql(self, statement: str, database: str | None = None) -> list[tuple[Any, ...]]:
        """Run SQL as root over the private socket; several statements may be given, separated by
        `;`. Returns the rows of the last statement that produced any."""
        from pymysql.constants import CLIENT

        conn = self.connect(database, client_flag=CLIENT.MULTI_STATEMENTS)
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                rows: list[tuple[Any, ...]] = list(cur.fetchall()) if cur.description else []
                while cur.nextset():
                    if cur.description:
                        rows = list(cur.fetchall())
            return rows
        finally:
            conn.close()

    def dsn(self, user: str, password: str, database: str) -> str:
        from urllib.parse import quote

        return (
            f"mysql://{quote(user, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}/"
            f"{quote(database, safe='')}"
        )
