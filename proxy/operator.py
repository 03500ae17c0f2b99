"""Operator endpoints of the metrics listener: /metrics, /healthz, /readyz and /status.

Owns the HTTP server of the metrics listener (a thread, as prometheus_client's start_http_server
runs one), the cached TCP probe of the upstreams and the JSON documents the endpoints answer.
Must not touch policy, sessions or protocol code: what it reports comes from the registry it
serves and from callables the process hands it (proxy/app.py in one process, proxy/workers.py's
supervisor with several), so both modes answer the same way.

/metrics is prometheus_client's own WSGI app, unchanged (content negotiation, gzip, `name[]`).
/healthz says the process answers; it checks nothing else, so a slow database never gets a live
proxy restarted. /readyz says whether this replica should get new clients: policy loaded,
listeners up and every upstream accepting TCP connections (a connect, not a login: the probe
must stay cheap and must not hold the service password in a second place).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from .config import Config

# A probe answer is reused this long: Kubernetes probes every replica every few seconds and
# Prometheus may scrape /status too; the upstream should not see a connection per request.
PROBE_TTL_S = 2.0
PROBE_TIMEOUT_S = 1.0
UPSTREAM_SECTIONS = ("postgres", "mysql", "http")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass(frozen=True)
class UpstreamHealth:
    address: str
    reachable: bool
    error: str | None = None
    latency_ms: float | None = None


def upstream_targets(config: Config) -> dict[str, tuple[str, int]]:
    """host and port of each configured upstream, by config section; never its credentials."""
    out = {}
    for name in UPSTREAM_SECTIONS:
        listener = getattr(config, name, None)
        if listener is None:
            continue
        up = listener.upstream
        if isinstance(up, str):  # the HTTP side's base URL
            u = urlsplit(up)
            out[name] = (u.hostname or "127.0.0.1", u.port or (443 if u.scheme == "https" else 80))
        else:
            out[name] = (up.host, up.port)
    return out


def config_listeners(config: Config) -> dict[str, str]:
    """The client-facing address of each configured listener, by config section."""
    out = {}
    for name in UPSTREAM_SECTIONS:
        listener = getattr(config, name, None)
        if listener is not None:
            out[name] = str(listener.listen)
    return out


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class UpstreamProbe:
    """TCP reachability of the upstreams, probed at most once per `ttl` seconds.

    Thread-safe: the HTTP server answers requests on threads of its own. A request that comes
    while a probe runs waits for it rather than starting a second one."""

    def __init__(
        self,
        targets: Mapping[str, tuple[str, int]],
        *,
        timeout: float = PROBE_TIMEOUT_S,
        ttl: float = PROBE_TTL_S,
        connect: Callable[..., socket.socket] = socket.create_connection,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.targets = dict(targets)
        self.timeout = timeout
        self.ttl = ttl
        self._connect = connect
        self._clock = clock
        self._lock = threading.Lock()
        self._at: float | None = None
        self._last: dict[str, UpstreamHealth] = {}

    def _probe(self, host: str, port: int) -> UpstreamHealth:
        started = self._clock()
        try:
            sock = self._connect((host, port), timeout=self.timeout)
        except OSError as exc:
            # strerror, not str(exc): the text goes to an HTTP client; no Python repr.
            why = exc.strerror or type(exc).__name__
            if isinstance(exc, TimeoutError | socket.timeout):
                why = f"no answer within {self.timeout:g} s"
            return UpstreamHealth(_address(host, port), False, why)
        with contextlib.suppress(OSError):
            sock.close()
        return UpstreamHealth(_address(host, port), True, None, round((self._clock() - started) * 1000, 1))

    def results(self) -> dict[str, UpstreamHealth]:
        with self._lock:
            now = self._clock()
            if self._at is None or now - self._at >= self.ttl:
                self._last = {name: self._probe(h, p) for name, (h, p) in self.targets.items()}
                self._at = self._clock()
            return dict(self._last)


def not_ready_reasons(own: Iterable[str], upstreams: Mapping[str, UpstreamHealth]) -> list[str]:
    """Everything that keeps this replica from taking new clients, in words for an operator."""
    out = list(own)
    for name, h in upstreams.items():
        if not h.reachable:
            out.append(f"{name} upstream {h.address} unreachable: {h.error}")
    return out


def readiness(reasons: list[str]) -> tuple[int, dict[str, Any]]:
    """/readyz: 200 when nothing is wrong, else 503 with what is."""
    if reasons:
        return 503, {"ready": False, "not_ready": reasons}
    return 200, {"ready": True}


def _samples(registry: CollectorRegistry) -> Iterable[tuple[str, dict[str, str], float]]:
    for metric in registry.collect():
        for s in metric.samples:
            yield s.name, s.labels, s.value


def status_document(
    *,
    listeners: Mapping[str, str],
    metrics: str,
    registry: CollectorRegistry,
    upstreams: Mapping[str, UpstreamHealth],
    reasons: list[str],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The /status answer. Revisions, connections and sessions come from the exposition being
    served: in workers mode that is already the sum over the workers, so both modes agree with
    what Prometheus scrapes."""
    revisions: list[str] = []
    connections: dict[str, int] = {}
    sessions: dict[tuple[str, str], int] = {}
    for name, labels, value in _samples(registry):
        if name == "maskgate_policy_info" and value:
            revisions.append(labels.get("revision", ""))
        elif name == "maskgate_connections":
            connections[labels.get("protocol", "")] = int(value)
        elif name == "maskgate_sessions" and value:
            key = (labels.get("protocol", ""), labels.get("role", ""))
            sessions[key] = sessions.get(key, 0) + int(value)
    doc: dict[str, Any] = {
        "ready": not reasons,
        "not_ready": reasons,
        "listeners": dict(listeners),
        "metrics": metrics,
        # Two revisions show while workers take a reload one after the other.
        "policy": {"revisions": sorted(set(revisions))},
        "connections": connections,
        "sessions": [{"protocol": p, "role": r, "sessions": n} for (p, r), n in sorted(sessions.items())],
        "upstreams": {
            name: {
                "address": h.address,
                "reachable": h.reachable,
                "error": h.error,
                "latency_ms": h.latency_ms,
            }
            for name, h in upstreams.items()
        },
    }
    if extra:
        doc.update(extra)
    return doc


class OperatorEndpoints:
    """The WSGI app of the metrics listener.

    `not_ready()` returns the process's own reasons not to take clients (policy not loaded yet,
    listeners not up, no worker ready); `listeners()` the addresses clients connect to; `extra()`
    anything mode-specific for /status (workers)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        probe: UpstreamProbe,
        not_ready: Callable[[], list[str]],
        listeners: Callable[[], Mapping[str, str]],
        metrics_address: str = "",
        extra: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.registry = registry
        self.probe = probe
        self.not_ready = not_ready
        self.listeners = listeners
        self.metrics_address = metrics_address
        self.extra = extra
        self._metrics = make_wsgi_app(registry)

    def reasons(self) -> tuple[list[str], dict[str, UpstreamHealth]]:
        upstreams = self.probe.results()
        return not_ready_reasons(self.not_ready(), upstreams), upstreams

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path in ("/metrics", "/"):
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _answer(start_response, 405, "text/plain", b"method not allowed\n")
        if path == "/healthz":
            return _answer(start_response, 200, "text/plain", b"ok\n")
        if path == "/readyz":
            reasons, _ = self.reasons()
            code, body = readiness(reasons)
            return _json(start_response, code, body)
        if path == "/status":
            reasons, upstreams = self.reasons()
            doc = status_document(
                listeners=self.listeners(),
                metrics=self.metrics_address,
                registry=self.registry,
                upstreams=upstreams,
                reasons=reasons,
                extra=self.extra() if self.extra is not None else None,
            )
            return _json(start_response, 200, doc)
        return _answer(
            start_response, 404, "text/plain", b"not found: try /metrics, /healthz, /readyz, /status\n"
        )


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def _answer(start_response: StartResponse, code: int, ctype: str, body: bytes) -> list[bytes]:
    start_response(
        f"{code} {_REASONS[code]}",
        [("Content-Type", ctype), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")],
    )
    return [body]


def _json(start_response: StartResponse, code: int, doc: Mapping[str, Any]) -> list[bytes]:
    return _answer(start_response, code, "application/json", json.dumps(doc, indent=1).encode() + b"\n")


class _QuietHandler(WSGIRequestHandler):
    # Probes every few seconds would fill stderr with access lines.
    def log_message(self, format: str, *args: Any) -> None:
        pass


class OperatorServer:
    """The metrics listener: serves an `OperatorEndpoints` on a daemon thread until `close()`."""

    def __init__(self, app: OperatorEndpoints, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(ThreadingWSGIServer):
            address_family = family

        self.httpd = make_server(host, port, app, Server, handler_class=_QuietHandler)
        self.port: int = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="maskgate-metrics", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(2)


def sessions_by_role(listeners: Iterable[Any]) -> dict[tuple[str, str], int]:
    """Authenticated sessions per (protocol, role) of the driver's listeners (proxy/core/driver.py),
    read at scrape time: counting here costs the statement path nothing. A session's principal is
    set by its login (proxy/services/statement.py's tracker); one still logging in has none."""
    out: dict[tuple[str, str], int] = {}
    for lst in listeners:
        protocol = getattr(lst, "protocol", "")
        # list(): a copy made in one C call, while the event loop thread may add and remove.
        for conn in list(getattr(lst, "connections", ())):
            ctx = getattr(getattr(conn, "session", None), "ctx", None)
            principal = getattr(getattr(ctx, "tracker", None), "principal", None)
            if principal is not None:
                key = (protocol, principal.role)
                out[key] = out.get(key, 0) + 1
    return out
