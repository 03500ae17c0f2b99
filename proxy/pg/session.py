"""The PostgreSQL session state machine: one client, one upstream, sans-IO.

Owns the protocol logic between a client and the database: startup and SCRAM login of the
person, login of the service account upstream, deciding every statement through the Gate,
refusing in the server's place while keeping client and server in step (the expected-response
queue), row masking and limits, and statement records. It never touches a socket: events go in
(`client_data`, `upstream_data`, `upstream_connected`, ...) and commands come out (send bytes,
open the upstream, start TLS, close). `proxy/pg/server.py` carries the commands out.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto

from policies.decision import Allow, Block, Decision
from proxy.pg import errors
from proxy.pg import messages as m
from proxy.pg.auth import AuthError, ServerScram, UpstreamAuth
from proxy.pg.framing import DEFAULT_MAX_MESSAGE, Framer, FramingError
from proxy.pg.rowmask import CopyPlan, RowPlan, plan_rows
from proxy.pg.types import codec
from proxy.services.gate import SCRAM_SHA_256, Gate, Principal, StatementRecord
from proxy.services.rows import Unmaskable

log = logging.getLogger("maskgate.pg")

# Sent upstream in place of a refused statement so the server fails too: its transaction state
# (aborted block, rolled-back implicit transaction, discard-until-Sync) then matches what the
# client was told. Both fail before executing anything and have no side effects.
FAILING_QUERY = m.Query("maskgate_refused /* statement refused by maskgate */").serialize()
FAILING_DESCRIBE = m.Describe(b"S", "maskgate\x01refused").serialize()

# Startup parameters passed to the upstream; anything else (notably `options`, which can set
# arbitrary settings, and `replication`) stays with the proxy.
FORWARDED_PARAMS = frozenset(
    {"application_name", "client_encoding", "datestyle", "timezone", "extra_float_digits", "intervalstyle"}
    | {"search_path", "lc_monetary", "lc_numeric", "lc_time", "standard_conforming_strings"}
)

# Client encodings whose multibyte characters may end in an ASCII byte such as 0x5C (backslash)
# or 0x27 (quote): the server and maskgate would then split the same bytes into different tokens,
# which lets a quote hidden inside a character smuggle SQL past the analysis. PostgreSQL accepts
# them only as client encodings; restricted roles may not use them (names folded as PostgreSQL does).
UNSAFE_CLIENT_ENCODINGS = frozenset(
    {"SJIS", "SHIFTJIS", "MSKANJI", "WIN932", "WINDOWS932", "SHIFTJIS2004", "BIG5", "WIN950", "WINDOWS950"}
    | {"GBK", "WIN936", "WINDOWS936", "CP936", "UHC", "WIN949", "WINDOWS949", "GB18030", "JOHAB"}
)


def unsafe_session_setting(name: str, value: str) -> bool:
    """A setting that changes how the server reads SQL text differently from maskgate's parser."""
    name = name.lower()
    if name == "client_encoding":
        return "".join(ch for ch in value.upper() if ch.isalnum()) in UNSAFE_CLIENT_ENCODINGS
    if name == "standard_conforming_strings":
        return value.strip().lower() not in ("on", "true", "yes", "1")
    return False


def _withheld(err: m.ErrorResponse) -> m.ErrorResponse:
    keep = [(c, v) for c, v in err.fields if c in ("S", "V", "C", "P")]
    code = next((v for c, v in err.fields if c == "C"), "XX000")
    keep.append(
        (
            "M",
            f"maskgate: the statement failed (SQLSTATE {code}); the database's message is withheld "
            "because the statement reads classified data",
        )
    )
    return m.ErrorResponse(tuple(keep))


_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_CACHE_MAX = 64  # per-session caches of row descriptions and masking plans


# ---------------------------------------------------------------------------------------------
# Commands (out)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendClient:
    data: bytes


@dataclass(frozen=True, slots=True)
class SendUpstream:
    data: bytes


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Upgrade the client connection to TLS (after 'S' was sent), then call tls_established()."""


@dataclass(frozen=True, slots=True)
class OpenUpstream:
    database: str


@dataclass(frozen=True, slots=True)
class RegisterCancelKey:
    pid: int
    secret: bytes
    upstream_pid: int
    upstream_secret: bytes


@dataclass(frozen=True, slots=True)
class ForwardCancel:
    pid: int
    secret: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Close both connections after sending what came before. `reason` is for logs."""

    reason: str


Command = SendClient | SendUpstream | StartTLS | OpenUpstream | RegisterCancelKey | ForwardCancel | Close


class State(Enum):
    STARTUP = auto()  # waiting for the startup packet (or SSLRequest / CancelRequest)
    TLS_HANDSHAKE = auto()  # 'S' sent, the server is upgrading the client connection
    SASL_INITIAL = auto()  # AuthenticationSASL sent, waiting for SASLInitialResponse
    SASL_CONTINUE = auto()  # AuthenticationSASLContinue sent, waiting for SASLResponse
    UPSTREAM_CONNECTING = auto()  # person authenticated, service-account connection opening
    UPSTREAM_AUTH = auto()  # startup sent upstream, logging in and collecting parameters
    READY = auto()  # relaying statements
    CLOSED = auto()


_ALLOWED = {
    State.STARTUP: {State.TLS_HANDSHAKE, State.SASL_INITIAL, State.CLOSED},
    State.TLS_HANDSHAKE: {State.STARTUP, State.CLOSED},
    State.SASL_INITIAL: {State.SASL_CONTINUE, State.CLOSED},
    State.SASL_CONTINUE: {State.UPSTREAM_CONNECTING, State.CLOSED},
    State.UPSTREAM_CONNECTING: {State.UPSTREAM_AUTH, State.CLOSED},
    State.UPSTREAM_AUTH: {State.READY, State.CLOSED},
    State.READY: {State.CLOSED},
    State.CLOSED: {State.CLOSED},
}


class ProtocolViolation(Exception):
    """The peer broke the protocol; the text is for logs, the client gets 08P01."""


@dataclass(frozen=True, slots=True)
class SessionConfig:
    upstream_user: str
    upstream_password: str
    default_database: str
    tls_available: bool = False
    max_message: int = DEFAULT_MAX_MESSAGE
    client_addr: str = ""


# ---------------------------------------------------------------------------------------------
# Prepared statements, portals, results and the expected-response queue
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Stmt:
    name: str
    sql: str
    allow: Allow
    fields: tuple[m.FieldDescription, ...] | None = None  # from a Describe of the statement
    describing: bool = False
    generation: int = 0  # the gate's policy generation the decision was made under


@dataclass(slots=True, eq=False)
class Result:
    """One result being streamed to the client (a simple-query part, or a portal)."""

    allow: Allow
    plan: RowPlan | None = None
    planned: bool = False
    copy: CopyPlan | None = None
    sent: int = 0  # rows forwarded over the whole statement: the row limit counts these
    sent_call: int = 0  # rows forwarded in this Execute call / this result
    masked: int = 0
    truncated: bool = False
    noticed: bool = False
    refused: m.ErrorResponse | None = None  # refused after it started: swallow the rest
    ncols: int = -1  # columns described for it: a restricted row with another count is malformed


@dataclass(slots=True, eq=False)
class Portal:
    name: str
    stmt: Stmt
    formats: tuple[int, ...]
    result: Result
    fields: tuple[m.FieldDescription, ...] | None = None  # from a Describe of the portal
    describing: bool = False
    started: float = 0.0


class Kind(Enum):
    PARSE = auto()
    BIND = auto()
    DESCRIBE_STMT = auto()
    DESCRIBE_PORTAL = auto()
    HIDDEN_DESCRIBE = auto()  # injected by the proxy to learn column types; never shown
    EXECUTE = auto()
    CLOSE_STMT = auto()
    CLOSE_PORTAL = auto()
    SYNC = auto()  # also ends a simple Query, FunctionCall or refusal: answered by ReadyForQuery
    QUERY = auto()
    FUNCTION = auto()
    REFUSAL = auto()  # the upstream's error for our failing stand-in is replaced by `error`
    ABORT = auto()  # failing query sent to put the upstream transaction in 'E'; error swallowed


@dataclass(slots=True, eq=False)
class QueryRun:
    """A simple Query in flight: its decision, which part is streaming, and totals."""

    sql: str
    allow: Allow
    started: float
    overhead: float
    part: int = 0
    result: Result | None = None
    rows: int = 0
    masked: int = 0
    truncated: bool = False
    error: str | None = None
    failed: bool = False  # refused after it started (or upstream error): swallow until ReadyForQuery


@dataclass(slots=True, eq=False)
class Pending:
    kind: Kind
    stmt: Stmt | None = None
    portal: Portal | None = None
    run: QueryRun | None = None
    error: m.ErrorResponse | None = None
    name: str = ""
    paired: bool = False  # a simple message (Query, FunctionCall): the SYNC right after is its own


# ---------------------------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------------------------


class PgSession:
    """Sans-IO state machine for one client connection. Every event method returns commands."""

    def __init__(
        self,
        gate: Gate,
        config: SessionConfig,
        *,
        session_id: str = "",
        clock: Callable[[], float] = time.monotonic,
        cancel_key: tuple[int, bytes] | None = None,
    ) -> None:
        self.gate = gate
        self.cfg = config
        self.session_id = session_id or os.urandom(6).hex()
        self.clock = clock
        self.state = State.STARTUP
        self._cf = Framer(startup=True, max_message=config.max_message)
        self._uf = Framer(max_message=config.max_message)
        self._out: list[Command] = []
        self._to_client: list[bytes | memoryview] = []
        self._to_upstream: list[bytes | memoryview] = []
        # Login
        self.user = ""
        self.database = config.default_database
        self.principal: Principal | None = None
        self.restricted = True
        self._scram: ServerScram | None = None
        self._startup_params: list[tuple[str, str]] = []
        self._negotiate: m.NegotiateProtocolVersion | None = None
        self._up_auth: UpstreamAuth | None = None
        self._params: list[bytes] = []
        self._cancel_key = cancel_key or (
            int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF,
            os.urandom(4),
        )
        # Relay
        self.txn = b"I"
        self.search_path: tuple[str, ...] = ("$user", "public")
        self.encoding = "utf-8"
        self.queue: deque[Pending] = deque()
        self.discarding = False  # extended protocol: after an error, drop client messages until Sync
        self.stmts: dict[str, Stmt] = {}
        self.portals: dict[str, Portal] = {}
        self._stmts_inflight: dict[str, Stmt] = {}
        self._portals_inflight: dict[str, Portal] = {}
        self._ext_failed = False  # upstream responses until the next Sync are swallowed
        self._ext_abort = False  # ...and the transaction must be failed upstream at that Sync
        self._unknown = Allow(kind="unknown")
        self._last_detect: frozenset[str] = frozenset()
        # A repeated statement gets the same RowDescription and decision every time: parse the
        # one and build the masking plan for the pair once (both bounded, cleared when full).
        self._rd_cache: dict[bytes, tuple[m.FieldDescription, ...]] = {}
        self._plans: dict[tuple[object, ...], tuple[object, Allow, RowPlan | None]] = {}

    # ------------------------------------------------------------------ plumbing

    def _set_state(self, new: State) -> None:
        if new not in _ALLOWED[self.state]:
            raise ProtocolViolation(f"illegal transition {self.state.name} -> {new.name}")
        self.state = new

    def _flush(self) -> list[Command]:
        out: list[Command] = []
        if self._to_upstream:
            out.append(SendUpstream(b"".join(self._to_upstream)))
            self._to_upstream.clear()
        if self._to_client:
            out.append(SendClient(b"".join(self._to_client)))
            self._to_client.clear()
        out.extend(self._out)
        self._out.clear()
        return out

    def _client(self, data: bytes | memoryview) -> None:
        self._to_client.append(data)

    def _upstream(self, data: bytes | memoryview) -> None:
        self._to_upstream.append(data)

    def _close(self, reason: str, err: m.ErrorResponse | None = None) -> None:
        if self.state is State.CLOSED:
            return
        if err is not None:
            self._client(err.serialize())
        self.state = State.CLOSED
        self._out.append(Close(reason))

    # ------------------------------------------------------------------ events

    def client_data(self, data: bytes | memoryview) -> list[Command]:
        if self.state is State.CLOSED:
            return []
        try:
            buf, frames = self._cf.feed(data)
            mv = memoryview(buf)
            for mtype, start, end in frames:
                if self.state is State.CLOSED:
                    break
                self._on_client(mtype, buf, mv, start, end)
        except (FramingError, m.MessageError, ProtocolViolation) as e:
            log.info("session %s: client protocol violation: %s", self.session_id, e)
            self._close(f"client protocol violation: {e}", errors.protocol_violation())
        return self._flush()

    def upstream_data(self, data: bytes | memoryview) -> list[Command]:
        if self.state is State.CLOSED:
            return []
        try:
            buf, frames = self._uf.feed(data)
            mv = memoryview(buf)
            if self.state is State.READY:
                self._relay_upstream(buf, mv, frames)
            else:
                for mtype, start, end in frames:
                    if self.state is State.CLOSED:
                        break
                    self._on_upstream_login(mtype, mv[start + 5 : end])
        except (FramingError, m.MessageError, ProtocolViolation) as e:
            log.warning("session %s: upstream protocol violation: %s", self.session_id, e)
            self._close(
                f"upstream protocol violation: {e}", errors.protocol_violation("upstream protocol error")
            )
        return self._flush()

    def tls_established(self) -> list[Command]:
        self._set_state(State.STARTUP)
        return self._flush()

    def upstream_connected(self) -> list[Command]:
        self._set_state(State.UPSTREAM_AUTH)
        params = [("user", self.cfg.upstream_user), ("database", self.database)]
        unrestricted = self.principal is not None and self.principal.unrestricted
        params += [
            (k, v)
            for k, v in self._startup_params
            if k.lower() in FORWARDED_PARAMS and (unrestricted or not unsafe_session_setting(k, v))
        ]
        self._up_auth = UpstreamAuth(self.cfg.upstream_user, self.cfg.upstream_password)
        self._upstream(m.StartupMessage(m.PROTOCOL_3_0, tuple(params)).serialize())
        return self._flush()

    def upstream_failed(self, reason: str) -> list[Command]:
        self._upstream_failed(reason)
        return self._flush()

    def _upstream_failed(self, reason: str) -> None:
        # Queues the error and the Close without flushing: inside upstream_data the commands
        # must reach the caller with the rest of that event's output.
        log.warning("session %s: upstream connection failed: %s", self.session_id, reason)
        self._close(f"upstream failed: {reason}", errors.upstream_unavailable())

    def upstream_closed(self) -> list[Command]:
        if self.state is State.READY:
            err = errors.error("57P01", "the database closed the connection", severity="FATAL")
            self._close("upstream closed", err)
        else:
            self._close("upstream closed", errors.upstream_unavailable())
        return self._flush()

    def client_closed(self) -> list[Command]:
        self._close("client closed")
        return self._flush()

    def auth_timeout(self) -> list[Command]:
        if self.state not in (State.READY, State.CLOSED):
            self._close("authentication timeout", errors.auth_timeout())
        return self._flush()

    def idle_timeout(self) -> list[Command]:
        self._close("idle timeout", errors.idle_timeout())
        return self._flush()

    def shutdown(self) -> list[Command]:
        self._close("shutdown", errors.shutting_down())
        return self._flush()

    @property
    def idle(self) -> bool:
        """Nothing in flight: a graceful shutdown may close this session now."""
        return self.state is State.READY and not self.queue and self.txn == b"I"

    # ------------------------------------------------------------------ login (client side)

    def _on_client(self, mtype: bytes, buf: bytes, mv: memoryview, start: int, end: int) -> None:
        if self.state is State.READY:
            self._on_client_ready(mtype, buf, mv, start, end)
            return
        body = mv[start + (4 if mtype == b"" else 5) : end]
        if mtype == b"X":
            self._close("client terminated")
            return
        if self.state is State.STARTUP:
            self._on_startup(m.parse_startup(body), trailing=end != len(buf))
        elif self.state is State.SASL_INITIAL and mtype == b"p":
            assert self._scram is not None
            try:
                self._client(self._scram.first(m.SASLInitialResponse.parse(body)).serialize())
            except AuthError as e:
                self._auth_failed(str(e))
                return
            self._set_state(State.SASL_CONTINUE)
        elif self.state is State.SASL_CONTINUE and mtype == b"p":
            assert self._scram is not None
            try:
                final = self._scram.final(m.SASLResponse.parse(body))
            except AuthError as e:
                self._auth_failed(str(e))
                return
            self._client(final.serialize())
            assert self.principal is not None
            if not self.principal.unrestricted:
                for k, v in self._startup_params:
                    if k.lower() == "client_encoding" and unsafe_session_setting(k, v):
                        self._close(
                            "unsafe client_encoding",
                            errors.error(
                                "22023",
                                f"client_encoding {v} is not allowed for this role; use UTF8",
                                severity="FATAL",
                            ),
                        )
                        return
            self._set_state(State.UPSTREAM_CONNECTING)
            # Only now, with the person authenticated, does the proxy connect upstream.
            self._out.append(OpenUpstream(self.database))
        else:
            raise ProtocolViolation(f"unexpected message {mtype!r} in {self.state.name}")

    def _on_startup(self, msg: object, *, trailing: bool) -> None:
        if isinstance(msg, m.SSLRequest | m.GSSENCRequest):
            if trailing or self._cf.buffered:
                # Bytes after an SSLRequest would be read as if encrypted (CVE-2021-23214).
                raise ProtocolViolation("data after SSLRequest")
            if isinstance(msg, m.SSLRequest) and self.cfg.tls_available:
                self._client(b"S")
                self._set_state(State.TLS_HANDSHAKE)
                self._out.append(StartTLS())
            else:
                self._client(b"N")
            return
        if isinstance(msg, m.CancelRequest):
            self._out.append(ForwardCancel(msg.pid, msg.secret))
            self._close("cancel request")
            return
        assert isinstance(msg, m.StartupMessage)
        major, minor = msg.protocol >> 16, msg.protocol & 0xFFFF
        if major != 3:
            self._close("unsupported protocol", errors.feature_not_supported("unsupported frontend protocol"))
            return
        unknown_opts = tuple(k for k, _ in msg.params if k.startswith("_pq_."))
        if minor > 0 or unknown_opts:
            self._negotiate = m.NegotiateProtocolVersion(0, unknown_opts)
        self.user = msg.param("user") or ""
        if not self.user:
            self._close("no user", errors.invalid_authorization("no user name given"))
            return
        if msg.param("replication") not in (None, "false", "0", "off", "no"):
            self._close(
                "replication", errors.feature_not_supported("replication connections are not supported")
            )
            return
        self.database = msg.param("database") or self.cfg.default_database
        self._startup_params = [(k, v) for k, v in msg.params if not k.startswith("_pq_.")]
        for k, v in self._startup_params:
            if k.lower() == "client_encoding":
                self.encoding = codec(v)
        principal = self.gate.lookup(self.user)
        if principal is not None and self.user == self.cfg.upstream_user:
            principal = None  # the service account never logs in through the proxy
        self.principal = principal
        self._scram = ServerScram(self.user, principal.credential(SCRAM_SHA_256) if principal else None)
        self._cf.typed()
        if self._negotiate is not None:
            self._client(self._negotiate.serialize())
        self._client(ServerScram.mechanisms().serialize())
        self._set_state(State.SASL_INITIAL)

    def _auth_failed(self, detail: str) -> None:
        log.info("session %s: authentication failed for %r: %s", self.session_id, self.user, detail)
        self.gate.auth_failed("postgres")
        self._close("authentication failed", errors.invalid_password(self.user))

    # ------------------------------------------------------------------ login (upstream side)

    def _on_upstream_login(self, mtype: bytes, body: memoryview) -> None:
        if self.state is not State.UPSTREAM_AUTH:
            raise ProtocolViolation(f"upstream sent {mtype!r} in {self.state.name}")
        assert self._up_auth is not None
        if mtype == b"R":
            try:
                reply = self._up_auth.respond(m.parse_authentication(body))
            except AuthError as e:
                self._upstream_failed(str(e))
                return
            if reply:
                self._upstream(reply)
        elif mtype == b"E":
            err = m.ErrorResponse.parse(body)
            self._upstream_failed(f"{err.code} {err.message}")
        elif mtype == b"S":
            ps = m.ParameterStatus.parse(body)
            self._track_parameter(ps)
            self._params.append(bytes(m.frame(b"S", body)))
        elif mtype == b"K":
            key = m.BackendKeyData.parse(body)
            pid, secret = self._cancel_key
            self._out.append(RegisterCancelKey(pid, secret, key.pid, key.secret))
        elif mtype == b"Z":
            if not self._up_auth.ok:
                raise ProtocolViolation("upstream ready before authentication")
            assert self.principal is not None
            self.restricted = not self.principal.unrestricted
            self.txn = m.ReadyForQuery.parse(body).status
            self._client(m.AuthenticationOk().serialize())
            self._to_client.extend(self._params)
            self._params.clear()
            pid, secret = self._cancel_key
            self._client(m.BackendKeyData(pid, secret).serialize())
            self._client(m.ReadyForQuery(self.txn).serialize())
            self._set_state(State.READY)
        elif mtype in (b"N", b"v"):
            pass  # notices during login and protocol negotiation are not the client's business
        else:
            raise ProtocolViolation(f"unexpected upstream message {mtype!r} during login")

    def _track_parameter(self, ps: m.ParameterStatus) -> None:
        # Backstop behind the engine's refusal of such SETs: whatever route changed the setting,
        # a restricted session that reaches it is closed before it can send another statement.
        if (self.principal is None or not self.principal.unrestricted) and unsafe_session_setting(
            ps.name, ps.value
        ):
            self._close(
                f"unsafe session setting {ps.name}={ps.value}",
                errors.error(
                    "42501",
                    f"session setting {ps.name} = {ps.value} is not allowed for this role",
                    severity="FATAL",
                ),
            )
            return
        if ps.name == "client_encoding":
            self.encoding = codec(ps.value)
        elif ps.name == "search_path":
            self.search_path = tuple(p.strip().strip('"') for p in ps.value.split(",") if p.strip())

    # ------------------------------------------------------------------ decisions and records

    def _decide(self, sql: str) -> tuple[Decision, float]:
        t0 = time.perf_counter()
        assert self.principal is not None
        if not sql.strip(" \t\r\n;"):
            return Allow(kind="empty"), 0.0  # an empty query reads nothing
        try:
            d = self.gate.decide(
                self.principal, sql, dialect="postgres", search_path=self.search_path, database=self.database
            )
        except Exception:  # fail closed: a decision that cannot be made is a refusal
            log.exception("session %s: decide failed", self.session_id)
            d = Block("unparsable", "statement could not be checked")
        if isinstance(d, Allow) and d.detect:
            self._last_detect = d.detect
        return d, time.perf_counter() - t0

    def _record(
        self,
        sql: str,
        decision: Decision,
        *,
        started: float,
        rows: int = 0,
        masked: int = 0,
        truncated: bool = False,
        overhead: float = 0.0,
        error: str | None = None,
    ) -> None:
        assert self.principal is not None
        self.gate.record(
            StatementRecord(
                protocol="postgres",
                session=self.session_id,
                user=self.principal.user,
                role=self.principal.role,
                client=self.cfg.client_addr,
                database=self.database,
                sql=sql,
                decision=decision,
                rows=rows,
                masked=masked,
                truncated=truncated,
                duration_s=max(0.0, self.clock() - started),
                overhead_s=overhead,
                error=error,
            )
        )

    def _after_success(self, allow: Allow) -> None:
        if allow.search_path is not None:
            self.search_path = allow.search_path
        if allow.schema_changed:
            self.gate.schema_changed(self.database)

    # ------------------------------------------------------------------ relay: client -> upstream

    def _on_client_ready(self, mtype: bytes, buf: bytes, mv: memoryview, start: int, end: int) -> None:
        if mtype == b"X":
            self._upstream(mv[start:end])
            self._close("client terminated")
            return
        if self.discarding:
            if mtype != b"S":
                return  # PostgreSQL discards everything after an extended-protocol error until Sync
            self.discarding = False
        body = mv[start + 5 : end]
        raw = mv[start:end]
        if mtype == b"Q":
            self._on_query(m.Query.parse(body), raw)
        elif mtype == b"P":
            self._on_parse(m.Parse.parse(body), raw)
        elif mtype == b"B":
            self._on_bind(m.Bind.parse(body), raw)
        elif mtype == b"E":
            self._on_execute(m.Execute.parse(body), raw)
        elif mtype == b"D":
            d = m.Describe.parse(body)
            if d.kind == b"S":
                st = self._stmt(d.name)
                if st is not None:
                    st.describing = True
                self.queue.append(Pending(Kind.DESCRIBE_STMT, stmt=st, name=d.name))
            else:
                p = self._portal(d.name)
                if p is not None:
                    p.describing = True
                self.queue.append(Pending(Kind.DESCRIBE_PORTAL, portal=p, name=d.name))
            self._upstream(raw)
        elif mtype == b"C":
            c = m.Close.parse(body)
            self.queue.append(Pending(Kind.CLOSE_STMT if c.kind == b"S" else Kind.CLOSE_PORTAL, name=c.name))
            self._upstream(raw)
        elif mtype == b"S":
            self.queue.append(Pending(Kind.SYNC))
            self._upstream(raw)
        elif mtype == b"H":
            self._upstream(raw)
        elif mtype in (b"d", b"c", b"f"):
            self._upstream(raw)  # COPY FROM STDIN data: the COPY statement itself was decided
        elif mtype == b"F":
            m.FunctionCall.parse(body)
            if self.restricted:
                block = Block("function_denied", "function calls over the fast-path protocol are not allowed")
                self._record("<fast-path function call>", block, started=self.clock())
                self._refuse_simple(block)
            else:
                self._record("<fast-path function call>", Allow(kind="function_call"), started=self.clock())
                self.queue.append(Pending(Kind.FUNCTION, paired=True))
                self.queue.append(Pending(Kind.SYNC))
                self._upstream(raw)
        else:
            raise ProtocolViolation(f"unexpected client message {mtype!r}")

    def _refuse_simple(self, block: Block) -> None:
        """Answer a refused simple Query / FunctionCall: the upstream runs a failing stand-in so its
        transaction status (idle stays idle, an open block becomes failed) is what the client sees."""
        self.queue.append(
            Pending(Kind.REFUSAL, error=errors.insufficient_privilege(block.message), paired=True)
        )
        self.queue.append(Pending(Kind.SYNC))
        self._upstream(FAILING_QUERY)

    def _refuse_extended(self, block: Block) -> None:
        """Refuse inside an extended-protocol batch: the upstream gets a failing Describe so it
        also aborts the batch (and the implicit or explicit transaction) and discards until Sync;
        the client's messages are dropped until its Sync, as PostgreSQL itself would."""
        self.queue.append(Pending(Kind.REFUSAL, error=errors.insufficient_privilege(block.message)))
        self._upstream(FAILING_DESCRIBE)
        self.discarding = True

    def _on_query(self, q: m.Query, raw: memoryview) -> None:
        started = self.clock()
        d, overhead = self._decide(q.sql)
        if isinstance(d, Block):
            self._record(q.sql, d, started=started, overhead=overhead)
            self._refuse_simple(d)
            return
        run = QueryRun(q.sql, d, started, overhead)
        self.queue.append(Pending(Kind.QUERY, run=run, paired=True))
        self.queue.append(Pending(Kind.SYNC))
        self._upstream(m.Query(d.rewritten_sql).serialize() if d.rewritten_sql else raw)

    def _stmt(self, name: str) -> Stmt | None:
        return self._stmts_inflight.get(name) or self.stmts.get(name)

    def _portal(self, name: str) -> Portal | None:
        return self._portals_inflight.get(name) or self.portals.get(name)

    def _on_parse(self, p: m.Parse, raw: memoryview) -> None:
        started = self.clock()
        d, overhead = self._decide(p.sql)
        if isinstance(d, Block):
            self._record(p.sql, d, started=started, overhead=overhead)
            self._refuse_extended(d)
            return
        st = Stmt(p.name, p.sql, d, generation=self.gate.generation)
        # Committed only on ParseComplete: a failed Parse (e.g. a duplicate name) must not
        # replace the decision of the statement the server still holds under that name.
        self._stmts_inflight[p.name] = st
        if p.name == "":
            self.stmts.pop("", None)  # the server drops the unnamed statement at any Parse
        self.queue.append(Pending(Kind.PARSE, stmt=st, name=p.name))
        self._upstream(
            m.Parse(p.name, d.rewritten_sql, p.param_types).serialize() if d.rewritten_sql else raw
        )

    def _redecide(self, st: Stmt) -> bool:
        """The policy was reloaded since `st` was prepared: decide it again. A tighter decision
        applies from this Bind on; one that needs different SQL upstream (a new row filter or
        limit) cannot be applied to the statement the server holds, so it is refused until the
        client prepares it again. Returns whether the Bind may go on."""
        d, _ = self._decide(st.sql)
        if isinstance(d, Allow) and d.rewritten_sql == st.allow.rewritten_sql:
            st.allow = d
            st.generation = self.gate.generation
            return True
        block = (
            d
            if isinstance(d, Block)
            else Block(
                "statement_not_allowed",
                "the policy changed since this statement was prepared; prepare it again",
            )
        )
        self._record(st.sql, block, started=self.clock())
        self._refuse_extended(block)
        return False

    def _on_bind(self, b: m.Bind, raw: memoryview) -> None:
        st = self._stmt(b.statement)
        if st is None:
            if self.restricted:
                # Not prepared through this session's Parse (e.g. SQL-level PREPARE): no decision
                # travels with it, so it cannot be bound by a restricted role.
                block = Block("unparsable", "unknown prepared statement")
                self._record(f"<bind {b.statement}>", block, started=self.clock())
                self._refuse_extended(block)
                return
            st = Stmt(b.statement, "", self._unknown)
        elif st.generation != self.gate.generation and st.sql and not self._redecide(st):
            return
        portal = Portal(b.portal, st, b.result_formats, Result(st.allow))
        self._portals_inflight[b.portal] = portal
        if b.portal == "":
            self.portals.pop("", None)
        self.queue.append(Pending(Kind.BIND, portal=portal, name=b.portal))
        self._upstream(raw)

    def _on_execute(self, e: m.Execute, raw: memoryview) -> None:
        p = self._portal(e.portal)
        if p is None:
            if self.restricted:
                block = Block("unparsable", "unknown portal")
                self._record(f"<execute {e.portal}>", block, started=self.clock())
                self._refuse_extended(block)
                return
            p = Portal(e.portal, Stmt("", "", self._unknown), (), Result(self._unknown))
        if (
            self.restricted
            and p.fields is None
            and p.stmt.fields is None
            and not (p.describing or p.stmt.describing)
        ):
            # Masking needs column types and formats; the client did not ask, so the proxy does.
            p.describing = True
            self.queue.append(Pending(Kind.HIDDEN_DESCRIBE, portal=p, name=p.name))
            self._upstream(m.Describe(b"P", p.name).serialize())
        p.started = self.clock()
        self.queue.append(Pending(Kind.EXECUTE, portal=p, name=p.name))
        self._upstream(raw)

    # ------------------------------------------------------------------ relay: upstream -> client

    def _relay_upstream(self, buf: bytes, mv: memoryview, frames) -> None:  # type: ignore[no-untyped-def]
        # Untouched messages are passed on as slices of the received buffer; consecutive ones
        # are merged into one slice so a burst of rows costs one write, not one per row.
        run_start = run_end = -1
        queue = self.queue
        res: Result | None = None
        plan: RowPlan | None = None
        limit: int | None = None
        for mtype, start, end in frames:
            if self.state is State.CLOSED:
                break
            if self._ext_failed and mtype != b"Z":
                # The client was told this batch failed: process (to keep the queue and the
                # statement maps right) but show nothing until ReadyForQuery.
                if run_start >= 0:
                    self._client(mv[run_start:run_end])
                    run_start = -1
                if mtype != b"D":
                    mark = len(self._to_client)
                    self._on_upstream_message(mtype, mv[start + 5 : end])
                    del self._to_client[mark:]
                continue
            passthrough = False
            if mtype == b"D":
                if res is None:
                    # First row of a burst: the result, its plan and limit hold for the burst.
                    head = queue[0] if queue else None
                    res = self._current_result(head)
                    if res is None:
                        raise ProtocolViolation("DataRow outside a result")
                    plan = None
                    if self.restricted and res.refused is None:
                        plan = self._plan(head, res)  # type: ignore[arg-type]
                    limit = res.allow.row_limit
                if res.refused is not None:
                    continue
                if self.restricted and (end - start < 7 or _I16.unpack_from(buf, start + 5)[0] != res.ncols):
                    # A column the description did not announce has no type, so no mask or
                    # detector can be chosen for it: fail closed instead of passing it on.
                    raise ProtocolViolation("DataRow does not match its RowDescription")
                if limit is not None and res.sent >= limit:
                    res.truncated = True
                    continue
                res.sent += 1
                res.sent_call += 1
                if plan is not None:
                    new, n = plan.apply(buf, start, end)
                    if new is not None:
                        res.masked += n
                        if run_start >= 0:
                            self._client(mv[run_start:run_end])
                            run_start = -1
                        self._client(new)
                        continue
                passthrough = True
            else:
                res = None
                mark = len(self._to_client)
                passthrough = self._on_upstream_message(mtype, mv[start + 5 : end])
                if run_start >= 0 and len(self._to_client) > mark:
                    # The handler answered in the server's place: earlier messages go first.
                    self._to_client.insert(mark, mv[run_start:run_end])
                    run_start = -1
            if passthrough:
                if run_start >= 0 and run_end == start:
                    run_end = end
                else:
                    if run_start >= 0:
                        self._client(mv[run_start:run_end])
                    run_start, run_end = start, end
            elif run_start >= 0:
                self._client(mv[run_start:run_end])
                run_start = -1
        if run_start >= 0 and self.state is not State.CLOSED:
            self._client(mv[run_start:run_end])

    def _current_result(self, head: Pending | None) -> Result | None:
        if head is None:
            return None
        if head.kind is Kind.EXECUTE:
            assert head.portal is not None
            return head.portal.result
        if head.kind is Kind.QUERY:
            assert head.run is not None
            run = head.run
            if run.failed:
                return Result(run.allow, refused=errors.protocol_violation())  # swallow
            if run.result is None:
                run.result = Result(self._part(run))
            return run.result
        return None

    def _part(self, run: QueryRun) -> Allow:
        parts = run.allow.parts()
        if run.part < len(parts):
            return parts[run.part]
        # More results than the decision described: unknown shape, detectors only.
        return Allow(kind="unknown", detect=run.allow.detect, row_limit=run.allow.row_limit)

    def _plan(self, head: Pending, res: Result) -> RowPlan | None:
        """The masking plan for the result at the head of the queue, built once per result."""
        if res.planned:
            return res.plan
        res.planned = True
        fields: tuple[m.FieldDescription, ...] | None = None
        formats: tuple[int, ...] | None = None
        if head.kind is Kind.EXECUTE:
            p = head.portal
            assert p is not None
            if p.fields is not None:
                fields = p.fields
            elif p.stmt.fields is not None:
                fields, formats = p.stmt.fields, p.formats
        if fields is None:
            self._refuse_result(head, res, "result columns could not be described")
            return None
        res.ncols = len(fields)
        try:
            res.plan = self._plan_rows(fields, formats, res.allow)
        except Unmaskable as e:
            self._refuse_result(head, res, str(e))
        return res.plan

    def _fields(self, body: memoryview) -> tuple[m.FieldDescription, ...]:
        key = bytes(body)
        fields = self._rd_cache.get(key)
        if fields is None:
            if len(self._rd_cache) >= _CACHE_MAX:
                self._rd_cache.clear()
            fields = self._rd_cache[key] = m.RowDescription.parse(key).fields
        return fields

    def _plan_rows(
        self, fields: tuple[m.FieldDescription, ...], formats: tuple[int, ...] | None, allow: Allow
    ) -> RowPlan | None:
        """plan_rows, cached per (fields, formats, decision); raises Unmaskable (never cached)."""
        key = (id(fields), formats, id(allow), self.encoding)
        hit = self._plans.get(key)
        # The entry holds both objects, so their ids cannot be reused while it exists.
        if hit is not None and hit[0] is fields and hit[1] is allow:
            return hit[2]
        plan = plan_rows(fields, formats, allow, self.gate, self.encoding)
        if len(self._plans) >= _CACHE_MAX:
            self._plans.clear()
        self._plans[key] = (fields, allow, plan)
        return plan

    def _refuse_result(self, head: Pending, res: Result, why: str) -> None:
        """Refuse a statement the upstream is already running (its result cannot be masked)."""
        log.info("session %s: refusing result: %s", self.session_id, why)
        res.refused = errors.insufficient_privilege(why)

    def _mask_fields(
        self, msg: m.ErrorResponse | m.NoticeResponse
    ) -> m.ErrorResponse | m.NoticeResponse | None:
        """Detector masking of the free-text fields of an error or notice; None if unchanged.

        An error raised while a restricted statement evaluates classified data is withheld whole:
        the database echoes the offending value (`invalid input syntax for type integer: "x7950"`)
        after any transformation, in a shape no detector recognises. Its SQLSTATE still reaches
        the client; the full text goes to the proxy's log only at debug level.
        """
        if not self.restricted:
            return None
        if isinstance(msg, m.ErrorResponse):
            allow = self._in_flight()
            if allow is not None and allow.classes:
                log.debug("session %s: withheld error text %r", self.session_id, msg.message)
                return _withheld(msg)
        detect = self._detect()
        if not detect:
            return None
        tm = self.gate.text_masker(detect)
        changed = False
        fields = []
        for code, value in msg.fields:
            if code in ("M", "D", "H", "W", "q"):
                new = tm(value)
                if new is not value:
                    changed = True
                    value = new
            fields.append((code, value))
        return type(msg)(tuple(fields)) if changed else None

    def _in_flight(self) -> Allow | None:
        """The decision of the statement the upstream is answering, if any."""
        for p in self.queue:
            if p.run is not None:
                return p.run.allow
            if p.portal is not None:
                return p.portal.result.allow
            if p.stmt is not None:
                return p.stmt.allow
        return None

    def _detect(self) -> frozenset[str]:
        """Detector classes for messages outside a result: the statement in flight, else the last
        decision's (errors and notices belong to the statement that caused them)."""
        for p in self.queue:
            if p.run is not None:
                return p.run.allow.detect
            if p.portal is not None:
                return p.portal.result.allow.detect
            if p.stmt is not None:
                return p.stmt.allow.detect
        return self._last_detect

    def _on_upstream_message(self, mtype: bytes, body: memoryview) -> bool:
        """Handle one non-DataRow message; True to pass its raw bytes on to the client."""
        q = self.queue
        head = q[0] if q else None
        kind = head.kind if head else None

        if mtype in (b"S", b"N", b"A"):  # asynchronous: may arrive any time
            if mtype == b"S":
                self._track_parameter(m.ParameterStatus.parse(body))
                return True
            if mtype == b"N":
                if self._ext_failed or (head is not None and head.run is not None and head.run.failed):
                    return False
                masked = self._mask_fields(m.NoticeResponse.parse(body))
                if masked is not None:
                    self._client(masked.serialize())
                    return False
                return True
            if self.restricted and self._detect():
                n = m.NotificationResponse.parse(body)
                payload = self.gate.text_masker(self._detect())(n.payload)
                if payload is not n.payload:
                    self._client(m.NotificationResponse(n.pid, n.channel, payload).serialize())
                    return False
            return True

        if mtype == b"Z":
            status = m.ReadyForQuery.parse(body).status
            # Everything still queued before the Sync was skipped by the upstream.
            while q and q[0].kind is not Kind.SYNC:
                self._drop(q.popleft())
            if not q:
                raise ProtocolViolation("unexpected ReadyForQuery")
            q.popleft()
            self.txn = status
            if status == b"I":
                self.portals.clear()  # protocol portals do not outlive their transaction
            abort = self._ext_abort
            self._ext_failed = False
            self._ext_abort = False
            if abort and status == b"T":
                # We told the client its statement failed; fail the upstream block too.
                q.appendleft(Pending(Kind.SYNC))
                q.appendleft(Pending(Kind.ABORT))
                self._upstream(FAILING_QUERY)
                return False
            return True

        if mtype == b"E":
            return self._on_upstream_error(m.ErrorResponse.parse(body), head)

        if kind is Kind.QUERY:
            return self._on_query_response(mtype, body, head)  # type: ignore[arg-type]
        if kind is Kind.FUNCTION:
            if mtype == b"V":
                return True
            raise ProtocolViolation(f"unexpected {mtype!r} after FunctionCall")
        if kind is None or kind in (Kind.SYNC, Kind.REFUSAL, Kind.ABORT):
            raise ProtocolViolation(f"unexpected upstream message {mtype!r}")

        # Extended protocol responses.
        assert head is not None
        if mtype == b"1" and kind is Kind.PARSE:
            q.popleft()
            st = head.stmt
            assert st is not None
            if self._stmts_inflight.get(st.name) is st:
                del self._stmts_inflight[st.name]
            self.stmts[st.name] = st
            self._last_detect = st.allow.detect
            return True
        if mtype == b"2" and kind is Kind.BIND:
            q.popleft()
            p = head.portal
            assert p is not None
            if self._portals_inflight.get(p.name) is p:
                del self._portals_inflight[p.name]
            self.portals[p.name] = p
            return True
        if mtype == b"3" and kind in (Kind.CLOSE_STMT, Kind.CLOSE_PORTAL):
            q.popleft()
            (self.stmts if kind is Kind.CLOSE_STMT else self.portals).pop(head.name, None)
            return True
        if kind in (Kind.DESCRIBE_STMT, Kind.DESCRIBE_PORTAL, Kind.HIDDEN_DESCRIBE):
            hidden = kind is Kind.HIDDEN_DESCRIBE
            if mtype == b"t" and kind is Kind.DESCRIBE_STMT:
                return True
            if mtype == b"T":
                q.popleft()
                fields = self._fields(body)
                if kind is Kind.DESCRIBE_STMT:
                    if head.stmt is not None:
                        head.stmt.fields = fields
                elif head.portal is not None:
                    head.portal.fields = fields
                return not hidden
            if mtype == b"n":
                q.popleft()
                if kind is not Kind.DESCRIBE_STMT and head.portal is not None:
                    head.portal.fields = ()
                elif head.stmt is not None:
                    head.stmt.fields = ()
                return not hidden
        if kind is Kind.EXECUTE:
            return self._on_execute_response(mtype, body, head)
        raise ProtocolViolation(f"unexpected upstream message {mtype!r} for {kind.name}")

    def _drop(self, p: Pending) -> None:
        """A queued entry ends at ReadyForQuery: the upstream finished or skipped it."""
        if p.kind is Kind.QUERY and p.run is not None:
            r = p.run
            self._record(
                r.sql,
                r.allow,
                started=r.started,
                rows=r.rows,
                masked=r.masked,
                truncated=r.truncated,
                overhead=r.overhead,
                error=r.error,
            )
        elif p.kind is Kind.PARSE and p.stmt is not None and self._stmts_inflight.get(p.name) is p.stmt:
            del self._stmts_inflight[p.name]
        elif p.kind is Kind.BIND and p.portal is not None and self._portals_inflight.get(p.name) is p.portal:
            del self._portals_inflight[p.name]

    def _on_upstream_error(self, err: m.ErrorResponse, head: Pending | None) -> bool:
        q = self.queue
        kind = head.kind if head else None
        if self._ext_failed:
            self._skip_to_sync()
            return False
        if kind in (Kind.REFUSAL, Kind.ABORT):
            q.popleft()
            assert head is not None
            if head.error is not None:
                self._client(head.error.serialize())
            self._skip_to_sync()
            return False
        if err.get("S") in ("FATAL", "PANIC") and kind is None:
            self._forward_error(err)
            return False
        if kind is Kind.QUERY:
            assert head is not None and head.run is not None
            run = head.run
            run.error = err.code
            if run.failed:
                return False
            run.failed = True
            self._forward_error(err)
            return False
        if kind is Kind.FUNCTION or kind is Kind.SYNC or kind is None:
            self._forward_error(err)
            return False
        # Extended protocol: the upstream skips everything until Sync.
        assert head is not None
        if kind is Kind.EXECUTE:
            p = head.portal
            assert p is not None
            self._record(p.stmt.sql, p.stmt.allow, started=p.started, rows=p.result.sent_call, error=err.code)
        self._forward_error(err)
        self._skip_to_sync()
        return False

    def _forward_error(self, err: m.ErrorResponse) -> None:
        masked = self._mask_fields(err)
        self._client((masked or err).serialize())

    def _skip_to_sync(self) -> None:
        """The upstream failed the message at the head: drop what it skips until the client's Sync.

        After an extended-protocol error PostgreSQL skips a simple Query or FunctionCall too, so
        no ReadyForQuery comes for it: its SYNC goes with it. The head itself may be a simple
        message that failed (nothing is skipped then): its own ReadyForQuery still comes."""
        q = self.queue
        head = True
        while q and q[0].kind is not Kind.SYNC:
            p = q.popleft()
            self._drop(p)
            if p.paired and not head and q and q[0].kind is Kind.SYNC:
                q.popleft()
            head = False
        if not q:
            # The client's Sync has not come yet: the upstream will skip what the client sends
            # until it does, so drop those messages here too rather than wait for answers.
            self.discarding = True

    def _fail_extended(self, err: m.ErrorResponse) -> None:
        """A statement refused after the upstream started it, in an extended batch: the client
        gets the error, and the rest of the batch is hidden and dropped as PostgreSQL would."""
        self._client(err.serialize())
        self._ext_failed = True
        self._ext_abort = True
        if not any(p.kind is Kind.SYNC for p in self.queue):
            self.discarding = True

    def _on_execute_response(self, mtype: bytes, body: memoryview, head: Pending) -> bool:
        p = head.portal
        assert p is not None
        res = p.result
        if mtype in (b"C", b"s", b"I"):
            self.queue.popleft()
            rows = res.sent_call
            res.sent_call = 0
            if res.refused is not None:
                self._record(p.stmt.sql, Block("class_denied", res.refused.message), started=p.started)
                self._fail_extended(res.refused)
                return False
            truncated = res.truncated
            if mtype == b"s" and res.allow.row_limit is not None and res.sent >= res.allow.row_limit:
                truncated = True  # stop the client fetching more: the portal is finished for it
            if mtype == b"C" or truncated:
                self._after_success(p.stmt.allow)
            self._record(
                p.stmt.sql, p.stmt.allow, started=p.started, rows=rows, masked=res.masked, truncated=truncated
            )
            res.masked = 0
            if truncated:
                if not res.noticed:
                    res.noticed = True
                    self._client(errors.truncated_notice(res.sent).serialize())
                tag = m.CommandComplete.parse(body).tag if mtype == b"C" else "SELECT 0"
                self._client(m.CommandComplete(_retag(tag, rows)).serialize())
                return False
            return True
        if mtype in (b"G", b"H", b"W", b"d", b"c"):
            return self._on_copy(mtype, body, res, head)
        raise ProtocolViolation(f"unexpected upstream message {mtype!r} for Execute")

    def _on_copy(self, mtype: bytes, body: memoryview, res: Result, head: Pending) -> bool:
        if mtype == b"G":
            return True  # COPY FROM STDIN: the client now sends data
        if mtype in (b"H", b"W"):
            cr = m.CopyOutResponse.parse(body)
            if not self.restricted:
                return True
            if cr.format != 0 or mtype == b"W":
                res.refused = errors.insufficient_privilege("binary COPY is not allowed for this role")
                return False
            res.copy = CopyPlan(len(cr.column_formats), res.allow, self.gate, self.encoding)
            return True
        if res.refused is not None:
            return False
        if mtype == b"c":
            return True
        limit = res.allow.row_limit
        if limit is not None and res.sent >= limit:
            res.truncated = True
            return False
        res.sent += 1
        res.sent_call += 1
        if res.copy is None:
            if self.restricted:
                # No CopyOutResponse announced the columns, so none can be masked: fail closed.
                raise ProtocolViolation("CopyData outside COPY TO STDOUT")
            return True
        try:
            data, n = res.copy.apply(bytes(body))
        except Unmaskable:
            res.refused = errors.insufficient_privilege("COPY row format cannot be masked")
            return False
        if n:
            res.masked += n
            self._client(m.frame(b"d", data))
            return False
        return True

    def _on_query_response(self, mtype: bytes, body: memoryview, head: Pending) -> bool:
        run = head.run
        assert run is not None
        if run.failed:
            return False
        if mtype == b"T":
            res = run.result = Result(self._part(run))
            if not self.restricted:
                res.planned = True
                return True
            res.planned = True
            fields = self._fields(body)
            res.ncols = len(fields)
            try:
                res.plan = self._plan_rows(fields, None, res.allow)
            except Unmaskable as e:
                res.refused = errors.insufficient_privilege(str(e))
                return False
            return True
        if mtype in (b"C", b"I"):
            res = run.result or Result(self._part(run))
            run.result = None
            part = res.allow
            run.part += 1
            run.rows += res.sent
            run.masked += res.masked
            if res.refused is not None:
                # Tell the client this statement failed; hide the rest of the Query's results.
                self._client(res.refused.serialize())
                run.failed = True
                run.error = "42501"
                self._ext_abort = True  # at ReadyForQuery: fail an open transaction block upstream
                return False
            if mtype == b"I":
                return True
            self._after_success(part)
            if res.truncated:
                run.truncated = True
                self._client(errors.truncated_notice(res.sent).serialize())
                self._client(
                    m.CommandComplete(_retag(m.CommandComplete.parse(body).tag, res.sent)).serialize()
                )
                return False
            return True
        if mtype in (b"G", b"H", b"W", b"d", b"c"):
            if run.result is None:
                run.result = Result(self._part(run))
            return self._on_copy(mtype, body, run.result, head)
        raise ProtocolViolation(f"unexpected upstream message {mtype!r} for Query")


def _retag(tag: str, rows: int) -> str:
    """Replace the row count of a command tag (`SELECT 5000` -> `SELECT 200`)."""
    head, _, last = tag.rpartition(" ")
    if head and last.isdigit():
        return f"{head} {rows}"
    return tag
