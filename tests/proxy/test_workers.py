"""The supervisor's decisions without processes (proxy/workers.py): when a dead worker is
restarted, how a SIGHUP reaches a worker that is still starting, how an exit is described.
tests/integration/test_workers.py runs the real thing."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from proxy import workers
from proxy.config import Config, Endpoint, Listener, Upstream


class FakeProc:
    def __init__(self, pid: int, exitcode: int | None = None) -> None:
        self.pid, self.exitcode = pid, exitcode

    def join(self, timeout: float | None = None) -> None:
        pass

    def is_alive(self) -> bool:
        return self.exitcode is None


class FakeConn:
    def close(self) -> None:
        pass


def supervisor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> workers.Supervisor:
    monkeypatch.setattr(workers.tempfile, "mkdtemp", lambda prefix: str(tmp_path))
    return workers.Supervisor(Config(path=tmp_path / "m.yaml", policy=tmp_path / "p.yaml", workers=2))


def worker(slot: int, pid: int, started: float, exitcode: int | None = None) -> workers.Worker:
    return workers.Worker(slot, FakeProc(pid, exitcode), FakeConn(), started)  # type: ignore[arg-type]


def test_a_worker_that_ran_a_while_is_restarted_at_once_one_that_keeps_dying_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sup = supervisor(tmp_path, monkeypatch)
    now = [1000.0]
    monkeypatch.setattr(workers.time, "monotonic", lambda: now[0])
    sup.workers[0] = w = worker(0, 11, started=now[0] - 3600, exitcode=-signal.SIGKILL)
    sup._exited(w)
    assert sup.pending == {0: now[0]} and 0 not in sup.workers
    assert "worker 0 (pid 11) killed by SIGKILL; restarting it\n" in capsys.readouterr().err
    delays = []
    for pid in range(12, 20):
        del sup.pending[0]
        sup.workers[0] = w = worker(0, pid, started=now[0] - 1, exitcode=2)
        sup._exited(w)
        delays.append(sup.pending[0] - now[0])
    assert delays == [1.0, 2.0, 5.0, 10.0, 30.0, 30.0, 30.0, 30.0]
    assert "exited with code 2; restarting it in 30 s" in capsys.readouterr().err


def test_nothing_is_restarted_while_stopping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sup = supervisor(tmp_path, monkeypatch)
    sup.stopping = True
    sup.workers[1] = w = worker(1, 21, started=0.0, exitcode=0)
    sup._exited(w)
    assert not sup.pending and not sup.workers


def test_a_sighup_waits_for_a_starting_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sup = supervisor(tmp_path, monkeypatch)
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(workers.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    sup.workers[0] = ready = worker(0, 31, started=0.0)
    ready.ready = True
    sup.workers[1] = starting = worker(1, 32, started=0.0)
    sup._signals.append(signal.SIGHUP)
    sup._handle_signals()
    assert sent == [(31, signal.SIGHUP)] and starting.hup and not sup.stopping
    sup._became_ready(starting)
    assert sent == [(31, signal.SIGHUP), (32, signal.SIGHUP)] and not starting.hup
    sup._signals.append(signal.SIGTERM)
    sup._handle_signals()
    assert sup.stopping


def test_port_zero_becomes_one_port_for_every_worker_and_a_taken_port_is_refused(tmp_path: Path) -> None:
    up = Upstream("postgresql", "127.0.0.1", 5432, "u", "p", "crm")
    cfg = Config(
        path=tmp_path / "m.yaml",
        policy=tmp_path / "p.yaml",
        postgres=Listener(Endpoint("127.0.0.1", 0), up),
        workers=2,
    )
    fixed, held = workers.reserve_ports(cfg)
    try:
        assert fixed.postgres is not None and fixed.postgres.listen.port != 0
        assert held[0].getsockname()[1] == fixed.postgres.listen.port
        # A worker binds beside the held socket.
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", fixed.postgres.listen.port))
        s.listen()
        try:
            # While anything listens there, a second maskgate gets "address in use".
            with pytest.raises(OSError):
                workers.reserve_ports(fixed)
        finally:
            s.close()
    finally:
        for h in held:
            h.close()


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (0, "exited with code 0"),
        (2, "exited with code 2"),
        (-15, "killed by SIGTERM"),
        (None, "exited with code None"),
    ],
)
def test_describe_exit(code: Any, text: str) -> None:
    assert workers.describe_exit(code) == text
