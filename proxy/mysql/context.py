"""What the login and relay layers of one MySQL session share: configuration, outbox, tracker.

Owns the session's configuration (the service account, the database roles, what the listener
learnt of the upstream server), its outbox and statement tracker, the capabilities negotiated
with both sides, the server version executable comments are expanded for, and the sequence ids
of packets sent to the client. Owns no state machine and no packet handling: `login.py` and
`relay.py` do, `session.py` composes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from proxy.core.commands import Outbox
from proxy.mysql import errors
from proxy.mysql import packets as p
from proxy.services.gate import Gate
from proxy.services.statement import StatementTracker

log = logging.getLogger("maskgate.mysql")

UPSTREAM = "mysql"  # the configuration's name for the MySQL upstream (its config section)
DEFAULT_MAX_PACKET = 64 * 1024 * 1024
# Before authentication a client has no business sending more than a handshake response: a few
# hundred bytes with its connection attributes. Larger packets are refused from their header.
MAX_PREAUTH_PACKET = 10_000

# Capabilities maskgate speaks. Left out on purpose: LOCAL_FILES (the server's request for a
# client file is never relayed), COMPRESS, SESSION_TRACK and QUERY_ATTRIBUTES (their extra
# packet fields would carry values past the analysis), DEPRECATE_EOF (one result-set framing to
# follow), OPTIONAL_RESULTSET_METADATA and MariaDB's extended capabilities (progress reports,
# bulk execution, cached metadata: each changes how results are framed), and IGNORE_SPACE: the
# server turns it into sql_mode IGNORE_SPACE, which reads `count (x)` and built-in names
# otherwise than maskgate's parser, so a restricted session would be refused at login
# (MariaDB Connector/J 2.7 asks for it on every connection).
SUPPORTED_CAPABILITIES = (
    p.CLIENT_LONG_PASSWORD
    | p.CLIENT_FOUND_ROWS
    | p.CLIENT_LONG_FLAG
    | p.CLIENT_CONNECT_WITH_DB
    | p.CLIENT_NO_SCHEMA
    | p.CLIENT_ODBC
    | p.CLIENT_PROTOCOL_41
    | p.CLIENT_INTERACTIVE
    | p.CLIENT_IGNORE_SIGPIPE
    | p.CLIENT_TRANSACTIONS
    | p.CLIENT_RESERVED
    | p.CLIENT_SECURE_CONNECTION
    | p.CLIENT_MULTI_STATEMENTS
    | p.CLIENT_MULTI_RESULTS
    | p.CLIENT_PS_MULTI_RESULTS
    | p.CLIENT_PLUGIN_AUTH
    | p.CLIENT_CONNECT_ATTRS
    | p.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | p.CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS
)


@dataclass(slots=True)
class ServerFacts:
    """What the listener knows of the upstream server before a session reaches it: its version
    string and capabilities (from the latest greeting), shown to clients in maskgate's greeting."""

    version: str = "5.5.5-10.11.0-MariaDB-maskgate"
    capabilities: int = SUPPORTED_CAPABILITIES | p.CLIENT_SSL
    charset: int = 45  # utf8mb4_general_ci


@dataclass(frozen=True, slots=True)
class SessionConfig:
    upstream_user: str
    upstream_password: str = field(repr=False)
    # The database the guard keys the server's schema by (the upstream URL's database): one MySQL
    # connection sees every database, so one schema describes them all.
    schema_key: str
    default_database: str = ""
    tls_available: bool = False
    max_packet: int = DEFAULT_MAX_PACKET
    client_addr: str = ""
    upstream: str = UPSTREAM
    database_roles: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    server: ServerFacts = field(default_factory=ServerFacts)
    upstream_tls: bool = False  # the upstream URL asks for TLS: required, never skipped
    connection_id: int = 1

    def password_for(self, database_role: str) -> str | None:
        for name, password in self.database_roles:
            if name == database_role:
                return password
        return None


class Context:
    """One session's shared state; each layer holds the same instance."""

    __slots__ = (
        "_pending",
        "_pending_next",
        "_pending_seq",
        "caps",
        "cfg",
        "cseq",
        "encoding",
        "gate",
        "multi_statements",
        "out",
        "server_version",
        "tracker",
    )

    def __init__(
        self, gate: Gate, cfg: SessionConfig, *, session_id: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.gate = gate
        self.cfg = cfg
        self.out = Outbox()
        self.tracker = StatementTracker(
            gate,
            protocol="mysql",
            dialect="mysql",
            upstream=cfg.upstream,
            database=cfg.schema_key,
            search_path=(),
            session_id=session_id,
            client=cfg.client_addr,
            clock=clock,
        )
        self.caps = 0  # negotiated with the client (and, the same, with the upstream)
        # Packets to the client not framed yet: one run of sequence ids from `_pending_seq`,
        # framed together when the event's commands are gathered (`flush_client`).
        self._pending: list[bytes] = []
        self._pending_seq = 0
        self._pending_next = 0
        self.cseq = 0  # the sequence id of the next packet to the client
        self.encoding = "utf-8"  # the Python codec of character_set_client
        self.multi_statements = False
        self.server_version = cfg.server.version  # the upstream's own, once its greeting came

    @property
    def session_id(self) -> str:
        return self.tracker.session_id

    @property
    def clock(self) -> Callable[[], float]:
        return self.tracker.clock

    def send(self, payload: bytes) -> None:
        """One packet to the client, numbered after the last one."""
        if self._pending and self.cseq != self._pending_next:
            self.flush_client()  # the numbering was restarted (a new command): a new run
        if len(payload) >= p.MAX_PAYLOAD:
            self.flush_client()
            data, self.cseq = p.frame(payload, self.cseq)
            self.out.client(data)
            return
        pending = self._pending
        if not pending:
            self._pending_seq = self.cseq
        pending.append(payload)
        self.cseq = self._pending_next = (self.cseq + 1) & 0xFF

    def send_all(self, payloads: list[bytes]) -> None:
        """Packets to the client, numbered after the last one."""
        if not payloads:
            return
        if max(map(len, payloads)) >= p.MAX_PAYLOAD:
            for payload in payloads:
                self.send(payload)
            return
        if self._pending and self.cseq != self._pending_next:
            self.flush_client()
        if not self._pending:
            self._pending_seq = self.cseq
        self._pending += payloads
        self.cseq = self._pending_next = (self.cseq + len(payloads)) & 0xFF

    def flush_client(self) -> None:
        """Frame what was sent to the client since the last flush, into one chunk of the outbox:
        the session calls it before its outbox is read or closed."""
        if self._pending:
            data, _ = p.frame_all(self._pending, self._pending_seq)
            self._pending = []
            self.out.client(data)

    def close(self, reason: str, err: p.ERR | None = None) -> None:
        """Close the session, telling the client `err` last."""
        self.flush_client()
        last = b""
        if err is not None:
            last, self.cseq = p.frame(err.serialize(), self.cseq)
        self.out.close(reason, last)

    def upstream_failed(self, reason: str, *, detail: str = "", err: p.ERR | None = None) -> None:
        log.warning(
            "session %s: upstream connection failed: %s%s",
            self.session_id,
            reason,
            f" ({detail})" if detail else "",
        )
        self.close(f"upstream failed: {reason}", err or errors.upstream_failed(reason))
