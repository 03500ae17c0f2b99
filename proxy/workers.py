"""`workers: N`: a supervisor process and N worker processes serving the same listeners.

Owns process supervision only: starting the workers, restarting one that dies, forwarding
SIGHUP, stopping them all on SIGTERM/SIGINT, and the one metrics endpoint that sums their
expositions (proxy/exposition.py). Each worker is a whole `App` (proxy/app.py): it loads the
policy, opens the audit log and watches the policy files itself, so a worker never depends on
the supervisor for a decision. With `workers: 1` none of this runs (proxy/commands/serve.py).

Why processes: the session code holds the GIL for most of a statement, so one process is one
core. Every worker listens on the same ports with SO_REUSEPORT and the kernel spreads new
connections over them by a hash of the addresses; a session stays on its worker. The workers
share one audit log file: each batch of records is one write(2) on a descriptor opened with
O_APPEND (proxy/services/audit.py), which the kernel appends whole, so lines of two workers
never interleave. Workers are started with `spawn`, not `fork`: a restart happens while the
supervisor runs its metrics thread, and a fork of a threaded process can inherit a held lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import multiprocessing as mp
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from .config import Config, Listener

# A worker reports ready or failed within this many seconds of starting (policy load, schema
# load of the default database, listeners).
READY_TIMEOUT = 120.0
# Waits before restarting a worker that keeps dying soon after it started, by how many times in
# a row it did; one that ran for STABLE_AFTER seconds starts again at once.
BACKOFF = (0.0, 1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER = 30.0
# A worker gets this long to finish its sessions after SIGTERM (App.stop's grace and drain).
STOP_TIMEOUT = 25.0
SCRAPE_TIMEOUT = 2.0


def _say(message: str) -> None:
    print(f"maskgate: {message}", file=sys.stderr, flush=True)


# --- in the worker process ----------------------------------------------------------------------
def worker_main(config: Config, slot: int, metrics_socket: str, conn: Connection) -> None:
    """A worker's entry point (spawned): serve until SIGTERM/SIGINT or until the supervisor is gone."""
    import asyncio

    from .commands.serve import _event_loop_policy

    # Until App installs its handler, a SIGHUP (the terminal's, or one the supervisor sends)
    # would kill a starting worker; the supervisor sends it again once the worker is ready.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _event_loop_policy()
    _name_process(f"maskgate-w{slot}")
    try:
        code = asyncio.run(_worker(config, Path(metrics_socket), conn, slot))
    except KeyboardInterrupt:  # Ctrl-C before the handlers were installed
        code = 130
    sys.exit(code)


def _name_process(name: str) -> None:
    """The name `ps -o comm`, `top` and the kernel's OOM messages show (Linux; best effort):
    every worker otherwise shows as `python`."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


async def _worker(config: Config, metrics_socket: Path, conn: Connection, slot: int = 0) -> int:
    import asyncio

    from policies import PolicyError

    from .app import App

    # mitmproxy binds without SO_REUSEPORT: the first worker serves the HTTP side alone.
    app = App(config, reuse_port=True, metrics_socket=metrics_socket, serve_http=slot == 0)
    try:
        await app.start()
    except PolicyError as exc:
        conn.send(("error", 2, [str(e) for e in getattr(exc, "errors", [exc])]))
        return 2
    except OSError as exc:
        conn.send(("error", 1, [f"maskgate: {exc}"]))
        return 1
    app.install_signal_handlers()
    # The supervisor never writes to this pipe: readable means it closed, i.e. the supervisor
    # is gone (killed with SIGKILL). A worker without a supervisor stops rather than serve on
    # unsupervised and unscraped.
    asyncio.get_running_loop().add_reader(conn.fileno(), app.request_stop)
    conn.send(("ready", os.getpid()))
    await app.wait()
    await app.stop()
    return 0


# --- in the supervisor ------------------------------------------------------------------------
@dataclasses.dataclass
class Worker:
    slot: int
    proc: Any  # multiprocessing.Process (spawn context)
    conn: Connection
    started: float
    ready: bool = False
    hup: bool = False  # a SIGHUP arrived while it was starting: send it once it is ready


def reserve_ports(config: Config) -> tuple[Config, list[socket.socket]]:
    """Hold each listener's port for the workers (raises OSError when it is taken).

    SO_REUSEPORT lets any process of the same user share a port. A second maskgate started by
    mistake on the same address would then take half of the connections, with its own policy:
    so the port is first bound here without SO_REUSEPORT, which fails with "address in use" if
    anything listens on it, as with one process. Then a socket with SO_REUSEPORT holds it (bound,
    not listening: it gets no connections) so that no one else takes it while a worker restarts;
    port 0 becomes the one port all workers use."""
    held: list[socket.socket] = []

    def bind(host: str, port: int, reuse_port: bool) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            # As asyncio's create_server does: a port whose old connections are in TIME_WAIT is free.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((host, port))
        except OSError:
            s.close()
            raise
        return s

    def fix(listener: Listener | None) -> Listener | None:
        if listener is None:
            return listener
        host, port = listener.listen.host, listener.listen.port
        if port != 0:
            bind(host, port, reuse_port=False).close()
        s = bind(host, port, reuse_port=True)
        held.append(s)
        return dataclasses.replace(
            listener, listen=dataclasses.replace(listener.listen, port=s.getsockname()[1])
        )

    try:
        config = dataclasses.replace(config, postgres=fix(config.postgres), mysql=fix(config.mysql))
    except OSError:
        for s in held:
            s.close()
        raise
    return config, held


def scrape(path: Path, timeout: float = SCRAPE_TIMEOUT) -> str:
    """One worker's exposition from its private socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        chunks = []
        while chunk := s.recv(1 << 16):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8")


def listen_lines(config: Config) -> list[str]:
    out = []
    if config.postgres is not None:
        out.append(f"postgres listening on {config.postgres.listen}")
    if config.mysql is not None:
        out.append(f"mysql listening on {config.mysql.listen}")
    return out


def describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.ctx = mp.get_context("spawn")
        # Private (0700): the worker sockets answer anyone who can reach them.
        self.dir = Path(tempfile.mkdtemp(prefix="maskgate-workers-"))
        self.workers: dict[int, Worker] = {}
        self.pending: dict[int, float] = {}  # slot -> when to restart it
        self.failures: dict[int, int] = {}  # slot -> quick deaths in a row
        self.stopping = False
        self._signals: list[int] = []
        self._wake_r, self._wake_w = socket.socketpair()
        # Signals only wake the loop (set_wakeup_fd writes a byte); reading them must not block.
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._metrics_server: Any = None

    def socket_path(self, slot: int) -> Path:
        return self.dir / f"worker-{slot}.sock"

    def spawn(self, slot: int) -> Worker:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path(slot).unlink()
        # Duplex (a socket pair): the worker sees EOF on its end when the supervisor is gone.
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(
            target=worker_main,
            args=(self.config, slot, str(self.socket_path(slot)), child),
            name=f"maskgate-worker-{slot}",
        )
        proc.start()
        child.close()
        w = Worker(slot, proc, parent, time.monotonic())
        self.workers[slot] = w
        return w

    def sources(self) -> list[tuple[int, int, Callable[[], str]]]:
        """The live workers for the metrics collector (called on the HTTP server's thread)."""
        return [
            (w.slot, w.proc.pid, functools.partial(scrape, self.socket_path(w.slot)))
            for w in list(self.workers.values())
            if w.ready
        ]

    def start_metrics(self) -> None:
        if self.config.metrics is None:
            return
        from prometheus_client import CollectorRegistry

        from . import operator
        from .exposition import WorkerExpositions

        registry = CollectorRegistry(auto_describe=False)
        registry.register(WorkerExpositions(self.sources))  # type: ignore[arg-type]
        endpoints = operator.OperatorEndpoints(
            registry,
            probe=operator.UpstreamProbe(operator.upstream_targets(self.config)),
            not_ready=self.not_ready,
            listeners=lambda: operator.config_listeners(self.config),
            metrics_address=str(self.config.metrics),
            extra=lambda: {"workers": {"configured": self.config.workers, "ready": self.ready_count()}},
        )
        self._metrics_server = operator.OperatorServer(
            endpoints, self.config.metrics.host, self.config.metrics.port
        )

    def ready_count(self) -> int:
        return sum(1 for w in list(self.workers.values()) if w.ready)

    def not_ready(self) -> list[str]:
        """For /readyz: one ready worker is enough to take clients. The kernel hands new
        connections only to listening sockets, and a worker listens once its policy is loaded."""
        if self.stopping:
            return ["stopping"]
        if self.ready_count() == 0:
            return [f"no worker ready yet (of {self.config.workers})"]
        return []

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)

    def install_signal_handlers(self) -> None:
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _handle_signals(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(256):
                pass
        while self._signals:
            sig = self._signals.pop(0)
            if sig == signal.SIGHUP:
                for w in self.workers.values():
                    if w.ready:
                        self._hup(w)
                    else:
                        w.hup = True
            else:
                self.stopping = True

    def _hup(self, w: Worker) -> None:
        w.hup = False
        with contextlib.suppress(ProcessLookupError):
            os.kill(w.proc.pid, signal.SIGHUP)

    def _became_ready(self, w: Worker) -> None:
        w.ready = True
        if w.hup:
            self._hup(w)

    def _message(self, w: Worker) -> tuple[Any, ...] | None:
        try:
            return w.conn.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError):
            return None

    def _exited(self, w: Worker) -> None:
        w.proc.join(1)
        w.conn.close()
        del self.workers[w.slot]
        if self.stopping:
            return
        quick = time.monotonic() - w.started < STABLE_AFTER
        n = self.failures[w.slot] = self.failures.get(w.slot, 0) + 1 if quick else 0
        delay = BACKOFF[min(n, len(BACKOFF) - 1)]
        _say(
            f"worker {w.slot} (pid {w.proc.pid}) {describe_exit(w.proc.exitcode)}; "
            f"restarting it{f' in {delay:g} s' if delay else ''}"
        )
        self.pending[w.slot] = time.monotonic() + delay

    def start(self) -> int:
        """Start every worker; 0 when all are ready, else the exit code of `maskgate serve`."""
        for slot in range(self.config.workers):
            self.spawn(slot)
        deadline = time.monotonic() + READY_TIMEOUT
        while not all(w.ready for w in self.workers.values()):
            self._handle_signals()
            if self.stopping:
                return 0
            left = deadline - time.monotonic()
            if left <= 0:
                _say(f"workers not ready within {READY_TIMEOUT:g} s")
                return 1
            objs: list[Any] = [self._wake_r]
            for w in self.workers.values():
                if not w.ready:
                    objs += [w.conn, w.proc.sentinel]
            wait(objs, timeout=min(left, 1.0))
            for w in list(self.workers.values()):
                if w.ready:
                    continue
                if w.conn.poll():
                    msg = self._message(w)
                    if msg is not None and msg[0] == "ready":
                        self._became_ready(w)
                        continue
                    if msg is not None and msg[0] == "error":
                        # Every worker reads the same files: one's error is all of theirs.
                        for line in msg[2]:
                            print(line, file=sys.stderr, flush=True)
                        return int(msg[1])
                if not w.proc.is_alive():
                    _say(f"worker {w.slot} {describe_exit(w.proc.exitcode)} while starting")
                    return 1
        return 0

    def run(self) -> None:
        """Supervise until SIGTERM/SIGINT: restart workers that die, forward SIGHUP."""
        while not self.stopping:
            now = time.monotonic()
            for slot, when in list(self.pending.items()):
                if when <= now:
                    del self.pending[slot]
                    self.spawn(slot)
            objs: list[Any] = [self._wake_r]
            for w in self.workers.values():
                objs.append(w.proc.sentinel)
                if not w.ready:
                    objs.append(w.conn)
            timeout = min([max(0.0, t - now) for t in self.pending.values()], default=5.0)
            wait(objs, timeout=min(timeout, 5.0))
            self._handle_signals()
            for w in list(self.workers.values()):
                if not w.ready and w.conn.poll():
                    msg = self._message(w)
                    if msg is not None and msg[0] == "ready":
                        self._became_ready(w)
                        _say(f"worker {w.slot} (pid {w.proc.pid}) ready")
                    elif msg is not None and msg[0] == "error":
                        _say(f"worker {w.slot} could not start:")
                        for line in msg[2]:
                            print(f"  {line}", file=sys.stderr, flush=True)
                if not w.proc.is_alive():
                    self._exited(w)

    def stop(self) -> None:
        for w in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for w in list(self.workers.values()):
            w.proc.join(max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                _say(f"worker {w.slot} (pid {w.proc.pid}) did not stop in time; killing it")
                w.proc.kill()
                w.proc.join(5)
        if self._metrics_server is not None:
            self._metrics_server.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def supervise(config: Config) -> int:
    """`maskgate serve` with `workers` above 1: returns its exit code."""
    try:
        config, held = reserve_ports(config)
    except OSError as exc:
        _say(str(exc))
        return 1
    sup = Supervisor(config)
    sup.install_signal_handlers()
    try:
        try:
            sup.start_metrics()
        except OSError as exc:
            _say(str(exc))
            return 1
        code = sup.start()
        if code or sup.stopping:
            return code
        for line in listen_lines(config):
            _say(line)
        pids = ", ".join(str(w.proc.pid) for w in sup.workers.values())
        _say(f"{config.workers} workers (pids {pids})")
        sup.run()
        _say("shutting down")
        return 0
    finally:
        sup.stop()
        for s in held:
            s.close()
