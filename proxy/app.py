"""`maskgate serve`: wires config, policy, guard, audit, metrics and the listeners into one process.

Owns process lifetime: start-up order, the metrics endpoint, policy hot reload (file change and
SIGHUP, which also reopens the audit file after rotation), the schema refresh timer and graceful
shutdown on SIGTERM/SIGINT. With `workers: N` above 1, proxy/workers.py runs one `App` per worker
process (listeners with SO_REUSEPORT, metrics on a private socket). Protocol logic lives
in proxy/pg/, proxy/mysql/ and proxy/http/; policy logic in policies/.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import sys
from datetime import tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prometheus_client import CollectorRegistry, generate_latest

import masking
from policies import load_policy
from policies.sql.text import without_comments

from . import operator
from .config import Config, Listener
from .pg import catalog
from .reload import PolicyReloader
from .services import canaries
from .services.audit import AuditLog
from .services.budgets import Budgets
from .services.disclosure import Batch, Disclosures
from .services.guard import Guard, SchemaLoader
from .services.ledger import Ledger
from .services.metrics import Metrics


def server_tls(listener: Listener) -> ssl.SSLContext | None:
    if listener.tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(listener.tls.cert), str(listener.tls.key))
    return ctx


def schema_loaders(config: Config) -> tuple[dict[str, SchemaLoader], dict[str, str]]:
    """Per configured upstream (by its config section name): its live schema loader and the
    database a session that names none uses."""
    loaders: dict[str, SchemaLoader] = {}
    defaults: dict[str, str] = {}
    if config.postgres is not None:
        pg = config.postgres.upstream
        loaders["postgres"] = catalog.SchemaLoader(pg.dsn, discover=config.discover)
        defaults["postgres"] = pg.database
    if config.mysql is not None:
        from .mysql import catalog as mysql_catalog  # PyMySQL only for configs with a MySQL side

        my = config.mysql.upstream
        # One MySQL connection sees every database: each load reads all the service account
        # may use, named after the database asked for (proxy/mysql/catalog.py).
        loaders["mysql"] = mysql_catalog.SchemaLoader(my.dsn, discover=config.discover)
        defaults["mysql"] = my.database
    return loaders, defaults


class App:
    def __init__(
        self,
        config: Config,
        *,
        registry: CollectorRegistry | None = None,
        reuse_port: bool = False,
        metrics_socket: Path | None = None,
        serve_http: bool = True,
    ) -> None:
        """`reuse_port` and `metrics_socket` are a worker's (proxy/workers.py): its listeners share
        their ports with the other workers, and its metrics go to the supervisor, which serves
        the sum of all workers' on the configured endpoint, through a unix socket."""
        self.config = config
        self.reuse_port = reuse_port
        # The HTTP side binds its own socket (mitmproxy), without SO_REUSEPORT: with workers, one
        # worker serves it (proxy/workers.py).
        self.serve_http = serve_http
        self.metrics_socket = metrics_socket
        self.metrics = Metrics(registry)
        self.audit: AuditLog | None = None
        self.guard: Guard | None = None
        self.budgets: Budgets | None = None
        self.reloader: PolicyReloader | None = None
        self.canaries: canaries.Canaries | None = None
        self.ledger: Ledger | None = None
        self.disclosures: Disclosures | None = None
        self.servers: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics_server: operator.OperatorServer | None = None
        # start() is opening the listeners: /readyz says not ready meanwhile. (A mitmdump running
        # the HTTP addon calls start_services() only; mitmproxy owns its listener.)
        self._listeners_pending = False
        self._metrics_unix: asyncio.AbstractServer | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        self._listeners_pending = True
        await self.start_services()
        await self.start_listeners()
        self._listeners_pending = False

    async def start_services(self) -> None:
        """Policy, audit, guard, schemas, hot reload and metrics: everything but the listeners
        (a mitmdump that loads the HTTP addon runs only these)."""
        cfg = self.config
        # An invalid policy at start-up is fatal: there is no last good policy to fall back on.
        policy = await asyncio.to_thread(load_policy, cfg.policy)
        self.audit = AuditLog(
            cfg.audit_log,
            on_failure=self.metrics.audit_failures.inc,
            key=cfg.masking_key,
            statement_text=without_comments,
            shared=cfg.workers > 1,
        )
        loaders, defaults = schema_loaders(cfg)
        self.budgets = self._budgets()
        self.guard = Guard(
            policy,
            metrics=self.metrics,
            audit=self.audit,
            schema_loaders=loaders,
            default_databases=defaults,
            masking_key=cfg.masking_key,
            audit_required=cfg.audit_required,
            budgets=self.budgets,
        )
        self.arm_disclosures()
        for upstream, database in defaults.items():
            await asyncio.to_thread(self.guard.load_schema, database, upstream)
        self.reloader = PolicyReloader(self.guard, cfg.policy, self.metrics, on_reload=self.arm_disclosures)
        self.metrics.sessions.source = lambda: operator.sessions_by_role(self.servers)
        if self.metrics_socket is not None:
            self._metrics_unix = await asyncio.start_unix_server(self._send_metrics, str(self.metrics_socket))
        elif cfg.metrics is not None:
            self._metrics_server = operator.OperatorServer(
                self._operator_endpoints(), cfg.metrics.host, cfg.metrics.port
            )
        self._tasks.append(asyncio.create_task(self._watch_policy()))
        if cfg.schema_refresh_s > 0 and loaders:
            self._tasks.append(asyncio.create_task(self._refresh_schemas()))

    def arm_disclosures(self) -> None:
        """Start watching disclosures when a ledger is configured or canaries are planted (at
        start, and at a reload that finds canaries): the row paths leave their fast paths only
        then. Canaries are read again on every reload."""
        cfg = self.config
        guard = self.guard
        assert guard is not None
        path = canaries.canary_file(cfg.policy)
        if self.canaries is not None:
            self.canaries.reload(path)
            guard.set_row_keys(canaries.key_columns(self.canaries.keys))
            return
        try:
            planted = canaries.load(path)
        except ValueError as exc:
            print(f"maskgate: canaries not loaded: {exc}", file=sys.stderr)
            planted = {}
        if cfg.ledger_dir is None and not planted:
            return
        guard.set_row_keys(canaries.key_columns(planted))
        keepers = []
        self.canaries = canaries.Canaries(planted, self._canary_read)
        keepers.append(self.canaries.keep)
        if cfg.ledger_dir is not None:
            self.ledger = Ledger(
                cfg.ledger_dir,
                expected=cfg.ledger_expected_values,
                fp_rate=cfg.ledger_fp_rate,
                masked=cfg.ledger_masked,
                retention_days=cfg.ledger_retention_days,
                on_values=self.metrics.ledger_values.inc,
            )
            keepers.append(self.ledger.keep)
        self.disclosures = Disclosures(
            guard.masking_key, keepers, on_drop=self.metrics.disclosures_dropped.inc
        )
        guard.add_observer(self.disclosures)

    def _canary_read(self, batch: Batch, hits: list[canaries.Canary]) -> None:
        """A statement gave someone a canary: flag it in the audit log (no value) and count it."""
        self.metrics.canary_reads.labels(role=batch.role).inc()
        if self.audit is not None:
            self.audit.submit_event(
                "canary",
                batch.statement_id,
                batch.user,
                batch.role,
                classes=sorted({c.cls for c in hits}),
                tables=sorted({c.table for c in hits if c.table}),
                values=len(hits),
            )
        print(
            f"maskgate: CANARY read by {batch.user} (role {batch.role}), statement {batch.statement_id}",
            file=sys.stderr,
            flush=True,
        )

    def _budgets(self) -> Budgets:
        """The per-person budget counts, kept even when no role has budgets yet: a reload may
        add some, and a role without them costs one dictionary lookup per statement."""
        cfg = self.config
        budgets = Budgets(
            masking_key=cfg.masking_key or masking.DEFAULT_KEY,
            redis_url=cfg.redis,
            metrics=self.metrics,
            timezone=_zone(cfg.timezone),
        )
        budgets.start()
        return budgets

    async def start_listeners(self) -> None:
        cfg = self.config
        pg = cfg.postgres
        if pg is not None:
            from .pg.server import PgProxyServer

            server = PgProxyServer(
                self.guard,
                pg.listen.host,
                pg.listen.port,
                pg.upstream.dsn(),
                tls=server_tls(pg),
                auth_timeout=cfg.auth_timeout_s,
                idle_timeout=cfg.idle_timeout_s or None,
                max_message=cfg.max_message_bytes,
                database_roles=pg.database_roles,
            )
            server.reuse_port = self.reuse_port
            await server.start()
            self.servers.append(server)
        my = cfg.mysql
        if my is not None:
            from .mysql.server import MySqlProxyServer

            mserver = MySqlProxyServer(
                self.guard,
                my.listen.host,
                my.listen.port,
                my.upstream.dsn(),
                tls=server_tls(my),
                auth_timeout=cfg.auth_timeout_s,
                idle_timeout=cfg.idle_timeout_s or None,
                max_packet=cfg.max_message_bytes,
                database_roles=my.database_roles,
            )
            mserver.reuse_port = self.reuse_port
            await mserver.start()
            self.servers.append(mserver)
        if cfg.http is not None and self.serve_http:
            from .http.server import HttpProxyServer  # mitmproxy only for configs with an HTTP side

            hserver = HttpProxyServer(self.guard, cfg.http)
            await hserver.start()
            self.servers.append(hserver)

    def _operator_endpoints(self) -> operator.OperatorEndpoints:
        """/metrics, /healthz, /readyz and /status of this process (proxy/operator.py)."""
        cfg = self.config

        def not_ready() -> list[str]:
            if self._stopped.is_set():
                return ["stopping"]  # a load balancer sends new clients elsewhere while we drain
            if self.guard is None:
                return ["starting: policy not loaded yet"]
            return ["starting: listeners not up yet"] if self._listeners_pending else []

        def listening() -> dict[str, str]:
            # The bound ports (a configured port 0 is known only once listening).
            bound = {}
            for s in list(self.servers):
                host, port = getattr(s, "listen_host", None), getattr(s, "port", None)
                if host is not None and port:
                    bound[getattr(s, "protocol", "?")] = f"{host}:{port}"
            return {**self.listen_addresses, **bound}

        return operator.OperatorEndpoints(
            self.metrics.registry,
            probe=operator.UpstreamProbe(operator.upstream_targets(cfg)),
            not_ready=not_ready,
            listeners=listening,
            metrics_address=str(cfg.metrics),
        )

    async def _send_metrics(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One scrape by the supervisor: the exposition text, then close. Rendered off the loop:
        sessions keep running while the registry is walked."""
        try:
            writer.write(await asyncio.to_thread(generate_latest, self.metrics.registry))
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _watch_policy(self) -> None:
        assert self.reloader is not None
        try:
            await self.reloader.watch()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the watcher is a convenience; SIGHUP still works without it
            print(f"maskgate: policy file watcher stopped: {exc}", file=sys.stderr)

    async def _refresh_schemas(self) -> None:
        assert self.guard is not None
        while True:
            await asyncio.sleep(self.config.schema_refresh_s)
            await asyncio.to_thread(self.guard.refresh_schemas)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self._sighup()))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopped.set)

    async def _sighup(self) -> None:
        # logrotate's postrotate: the audit file was moved away (or removed); write a new one.
        if self.audit is not None:
            await asyncio.to_thread(self.audit.reopen)
        # The operator asked for it: a policy that removes every user is applied too.
        if self.reloader is not None:
            await self.reloader.reload(force=True)

    async def wait(self) -> None:
        await self._stopped.wait()

    def request_stop(self) -> None:
        self._stopped.set()

    async def stop(self, grace: float = 10.0) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for server in self.servers:
            await server.stop(grace)
        if self._metrics_unix is not None:
            self._metrics_unix.close()
        if self._metrics_server is not None:
            self._metrics_server.close()
        if self.disclosures is not None:
            await asyncio.to_thread(self.disclosures.drain)
        if self.ledger is not None:
            await asyncio.to_thread(self.ledger.close)  # its last flush
        if self.audit is not None:
            await asyncio.to_thread(self.audit.close)
        if self.budgets is not None:
            await asyncio.to_thread(self.budgets.close)

    @property
    def listen_addresses(self) -> dict[str, str]:
        out = {}
        if self.config.postgres is not None:
            out["postgres"] = str(self.config.postgres.listen)
        if self.config.mysql is not None:
            out["mysql"] = str(self.config.mysql.listen)
        if self.config.http is not None and self.serve_http:
            out["http"] = str(self.config.http.listen)
        return out


def _zone(name: str) -> tzinfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None  # days then start at midnight local time; the config's other uses report it


async def serve(config: Config) -> int:
    app = App(config)
    await app.start()
    app.install_signal_handlers()
    for proto, addr in app.listen_addresses.items():
        print(f"maskgate: {proto} listening on {addr}", file=sys.stderr, flush=True)
    await app.wait()
    print("maskgate: shutting down", file=sys.stderr, flush=True)
    await app.stop()
    return 0
