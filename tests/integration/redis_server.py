"""A private redis-server for integration tests: a free port on 127.0.0.1, a temp directory,
nothing saved to disk; the test skips when the binary is not installed (CI installs it)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from proxy.demo.embedded_pg import free_port

MISSING = "redis-server not installed (apt-get install redis-server)"


class RedisServer:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip(MISSING)
        self.base.mkdir(parents=True, exist_ok=True)
        # No RDB snapshots or AOF: the server lives as long as the test.
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.base), "--daemonize", "no", "--protected-mode", "yes"]
        self.proc = subprocess.Popen(
            args, stdout=(self.base / "redis.log").open("wb"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return self
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.base / "redis.log").read_text(errors="replace")
                    raise RuntimeError(f"redis-server did not start:\n{log}") from None
                time.sleep(0.05)

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
