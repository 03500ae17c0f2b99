"""The login layer of a PostgreSQL session: the person's startup, TLS and SCRAM, then the upstream's.

Owns everything before the first ReadyForQuery the client sees: the startup packet (SSLRequest,
GSSENCRequest, CancelRequest, protocol negotiation, startup-parameter filtering), the SCRAM
exchange with the person, opening the upstream connection only once they are authenticated,
logging the service account in upstream, and the cancel key the client gets in place of the
upstream's. Owns no statement handling (`relay.py`) and no socket (the driver).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum, auto

from proxy.core.commands import Command, OpenUpstream, StartTLS
from proxy.core.machine import ProtocolViolation, Transitions, required
from proxy.pg import errors
from proxy.pg import messages as m
from proxy.pg.auth import AuthError, ServerScram, UpstreamAuth
from proxy.pg.context import APPLICATION_NAME, FACTS, Context, application_name
from proxy.pg.framing import Framer
from proxy.pg.types import codec
from proxy.services.gate import SCRAM_SHA_256, Principal
from proxy.services.settings import ROLE, SEARCH_PATH

log = logging.getLogger("maskgate.pg")

# Startup parameters passed to the upstream; anything else (notably `options`, which can set
# arbitrary settings, and `replication`) stays with the proxy. The client's application_name is
# passed on inside maskgate's own (see `application_name`).
FORWARDED_PARAMS = frozenset(
    {"client_encoding", "datestyle", "timezone", "extra_float_digits", "intervalstyle"}
    | {"search_path", "lc_monetary", "lc_numeric", "lc_time", "standard_conforming_strings"}
)


@dataclass(frozen=True, slots=True)
class RegisterCancelKey(Command):
    """The client's cancel key (`pid`, `secret`) stands for the upstream backend's."""

    pid: int
    secret: bytes
    upstream_pid: int
    upstream_secret: bytes


@dataclass(frozen=True, slots=True)
class ForwardCancel(Command):
    """A CancelRequest with a key the proxy issued: cancel the backend it stands for."""

    pid: int
    secret: bytes


class LoginState(Enum):
    STARTUP = auto()  # waiting for the startup packet (or SSLRequest / CancelRequest)
    TLS_HANDSHAKE = auto()  # 'S' sent, the driver is upgrading the client connection
    SASL_INITIAL = auto()  # AuthenticationSASL sent, waiting for SASLInitialResponse
    SASL_CONTINUE = auto()  # AuthenticationSASLContinue sent, waiting for SASLResponse
    UPSTREAM_CONNECTING = auto()  # person authenticated, service-account connection opening
    UPSTREAM_AUTH = auto()  # startup sent upstream, logging in and collecting parameters
    # Logged in as the service account: `SET ROLE <the role's database role>` sent, its answer
    # awaited before the client may send anything.
    ASSUMING_ROLE = auto()
    DONE = auto()  # the client got its ReadyForQuery: the relay takes over


_MOVES = Transitions(
    {
        LoginState.STARTUP: {LoginState.TLS_HANDSHAKE, LoginState.SASL_INITIAL},
        LoginState.TLS_HANDSHAKE: {LoginState.STARTUP},
        LoginState.SASL_INITIAL: {LoginState.SASL_CONTINUE},
        LoginState.SASL_CONTINUE: {LoginState.UPSTREAM_CONNECTING},
        LoginState.UPSTREAM_CONNECTING: {LoginState.UPSTREAM_AUTH},
        LoginState.UPSTREAM_AUTH: {LoginState.ASSUMING_ROLE, LoginState.DONE},
        LoginState.ASSUMING_ROLE: {LoginState.DONE},
    }
)


def quote_identifier(name: str) -> str:
    """A name as a double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


Frames = Iterator[tuple[bytes, int, int]]


class Login:
    """The login layer. The session feeds it frames and events until `done`."""

    def __init__(self, ctx: Context, client_framer: Framer, cancel_key: tuple[int, bytes] | None) -> None:
        self.ctx = ctx
        self._cf = client_framer
        self.state = LoginState.STARTUP
        self.user = ""
        self._principal: Principal | None = None  # looked up at startup, trusted after SCRAM
        self._scram: ServerScram | None = None
        self._startup_params: list[tuple[str, str]] = []
        self._up_auth: UpstreamAuth | None = None
        self._params: list[bytes] = []  # the upstream's ParameterStatus messages, for the client
        self._assume: str | None = None  # the database role to SET ROLE to once logged in
        self._ready_status = b"I"
        self.cancel_key = cancel_key or (
            int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF,
            os.urandom(4),
        )
        # The client messages each state accepts (anything else is a protocol violation).
        self._client: dict[LoginState, Callable[[bytes, memoryview, bool], None]] = {
            LoginState.STARTUP: self._on_startup,
            LoginState.SASL_INITIAL: self._on_sasl_initial,
            LoginState.SASL_CONTINUE: self._on_sasl_continue,
        }
        self._upstream: dict[bytes, Callable[[memoryview], None]] = {
            b"R": self._on_authentication,
            b"E": self._on_error,
            b"S": self._on_parameter,
            b"K": self._on_backend_key,
            b"Z": self._on_ready,
            b"C": self._on_role_assumed,
            b"N": _ignore,  # notices during login are not the client's business,
            b"v": _ignore,  # nor is the upstream's protocol negotiation
        }

    @property
    def done(self) -> bool:
        return self.state is LoginState.DONE

    def _move(self, new: LoginState) -> None:
        self.state = _MOVES.move(self.state, new)

    # ------------------------------------------------------------------ client side

    def client_frames(self, buf: bytes, mv: memoryview, frames: Frames) -> None:
        out = self.ctx.out
        for mtype, start, end in frames:
            if out.closed:
                return
            if mtype == b"X":
                self.ctx.close("client terminated")
                return
            handler = self._client.get(self.state)
            if handler is None:
                raise ProtocolViolation(f"unexpected message {mtype!r} in {self.state.name}")
            handler(mtype, mv[start + (4 if mtype == b"" else 5) : end], end != len(buf))

    def _on_startup(self, mtype: bytes, body: memoryview, trailing: bool) -> None:
        msg = m.parse_startup(body)
        if isinstance(msg, m.SSLRequest | m.GSSENCRequest):
            if trailing or self._cf.buffered:
                # Bytes after an SSLRequest would be read as if encrypted (CVE-2021-23214).
                raise ProtocolViolation("data after SSLRequest")
            if isinstance(msg, m.SSLRequest) and self.ctx.cfg.tls_available:
                self.ctx.out.client(b"S")
                self._move(LoginState.TLS_HANDSHAKE)
                self.ctx.out.command(StartTLS())
            else:
                self.ctx.out.client(b"N")
        elif isinstance(msg, m.CancelRequest):
            self.ctx.out.command(ForwardCancel(msg.pid, msg.secret))
            self.ctx.close("cancel request")
        else:
            self._on_startup_message(msg)

    def _on_startup_message(self, msg: m.StartupMessage) -> None:
        ctx = self.ctx
        major, minor = msg.protocol >> 16, msg.protocol & 0xFFFF
        if major != 3:
            ctx.close("unsupported protocol", errors.feature_not_supported("unsupported frontend protocol"))
            return
        unknown_opts = tuple(k for k, _ in msg.params if k.startswith("_pq_."))
        self.user = msg.param("user") or ""
        if not self.user:
            ctx.close("no user", errors.invalid_authorization("no user name given"))
            return
        if msg.param("replication") not in (None, "false", "0", "off", "no"):
            ctx.close(
                "replication", errors.feature_not_supported("replication connections are not supported")
            )
            return
        ctx.tracker.database = msg.param("database") or ctx.cfg.default_database
        self._startup_params = [(k, v) for k, v in msg.params if not k.startswith("_pq_.")]
        for k, v in self._startup_params:
            if k.lower() == "client_encoding":
                ctx.encoding = codec(v)
        principal = ctx.gate.lookup(self.user)
        if principal is not None and self.user == ctx.cfg.upstream_user:
            principal = None  # the service account never logs in through the proxy
        self._principal = principal
        self._scram = ServerScram(self.user, principal.credential(SCRAM_SHA_256) if principal else None)
        self._cf.typed()
        if minor > 0 or unknown_opts:
            ctx.out.client(m.NegotiateProtocolVersion(0, unknown_opts).serialize())
        ctx.out.client(ServerScram.mechanisms().serialize())
        self._move(LoginState.SASL_INITIAL)

    def _on_sasl_initial(self, mtype: bytes, body: memoryview, trailing: bool) -> None:
        if mtype != b"p":
            raise ProtocolViolation(f"unexpected message {mtype!r} in {self.state.name}")
        try:
            reply = required(self._scram, "SCRAM exchange").first(m.SASLInitialResponse.parse(body))
        except AuthError as e:
            self._auth_failed(str(e))
            return
        self.ctx.out.client(reply.serialize())
        self._move(LoginState.SASL_CONTINUE)

    def _on_sasl_continue(self, mtype: bytes, body: memoryview, trailing: bool) -> None:
        if mtype != b"p":
            raise ProtocolViolation(f"unexpected message {mtype!r} in {self.state.name}")
        ctx = self.ctx
        try:
            final = required(self._scram, "SCRAM exchange").final(m.SASLResponse.parse(body))
        except AuthError as e:
            self._auth_failed(str(e))
            return
        ctx.out.client(final.serialize())
        principal = required(self._principal, "authenticated principal")
        ctx.tracker.principal = principal
        if not principal.unrestricted:
            for k, v in self._startup_params:
                if k.lower() == "client_encoding" and FACTS.unsafe_setting(k, v):
                    ctx.close(
                        "unsafe client_encoding",
                        errors.error(
                            "22023",
                            f"client_encoding {v} is not allowed for this role; use UTF8",
                            severity="FATAL",
                        ),
                    )
                    return
        self._move(LoginState.UPSTREAM_CONNECTING)
        # Only now, with the person authenticated, does the proxy connect upstream.
        ctx.out.command(OpenUpstream(ctx.tracker.database, ctx.cfg.upstream))

    def _auth_failed(self, detail: str) -> None:
        log.info("session %s: authentication failed for %r: %s", self.ctx.session_id, self.user, detail)
        self.ctx.gate.auth_failed("postgres")
        self.ctx.close("authentication failed", errors.invalid_password(self.user))

    # ------------------------------------------------------------------ driver events

    def tls_established(self) -> None:
        self._move(LoginState.STARTUP)

    def upstream_connected(self) -> None:
        self._move(LoginState.UPSTREAM_AUTH)
        ctx = self.ctx
        principal = required(ctx.tracker.principal, "authenticated principal")
        # Who the session is upstream: the role's database role when maskgate has its password,
        # else the service account (which then takes the database role with SET ROLE).
        user, password = ctx.cfg.upstream_user, ctx.cfg.upstream_password
        role = principal.database_role
        if role is not None:
            own = ctx.cfg.password_for(role)
            if own is not None:
                user, password = role, own
            else:
                self._assume = role
        params = [("user", user), ("database", ctx.tracker.database)]
        unrestricted = not ctx.tracker.restricted
        client_app = ""
        for k, v in self._startup_params:
            key = k.lower()
            if key == APPLICATION_NAME:
                client_app = v
            elif key in FORWARDED_PARAMS and (unrestricted or not FACTS.unsafe_setting(k, v)):
                params.append((k, v))
        params.append((APPLICATION_NAME, application_name(principal.user, client_app)))
        for k, v in params:
            if k.lower() == SEARCH_PATH:  # the session's start (a server that reports it says so too)
                ctx.tracker.settings.started_with(SEARCH_PATH, FACTS.search_path_from_setting(v))
        self._up_auth = UpstreamAuth(user, password)
        ctx.out.upstream(m.StartupMessage(m.PROTOCOL_3_0, tuple(params)).serialize())

    # ------------------------------------------------------------------ upstream side

    def upstream_frames(self, buf: bytes, mv: memoryview, frames: Frames) -> None:
        """Handle the upstream's login messages; returns at the ReadyForQuery that ends the
        login, leaving the rest of `frames` to the relay."""
        out = self.ctx.out
        for mtype, start, end in frames:
            if self.state not in (LoginState.UPSTREAM_AUTH, LoginState.ASSUMING_ROLE):
                raise ProtocolViolation(f"upstream sent {mtype!r} in {self.state.name}")
            handler = self._upstream.get(mtype)
            if handler is None:
                raise ProtocolViolation(f"unexpected upstream message {mtype!r} during login")
            handler(mv[start + 5 : end])
            if out.closed or self.done:
                return

    def _on_authentication(self, body: memoryview) -> None:
        if self.state is not LoginState.UPSTREAM_AUTH:
            raise ProtocolViolation(f"authentication request in {self.state.name}")
        try:
            reply = required(self._up_auth, "upstream login").respond(m.parse_authentication(body))
        except AuthError as e:
            self.ctx.upstream_failed(str(e))
            return
        if reply:
            self.ctx.out.upstream(reply)

    def _on_error(self, body: memoryview) -> None:
        err = m.ErrorResponse.parse(body)
        if self.state is LoginState.ASSUMING_ROLE:
            # The service account may not take the database role (not a member of it, or the
            # role does not exist): the person's session cannot run as its policy says.
            log.warning(
                "session %s: SET ROLE %s failed: %s %s",
                self.ctx.session_id,
                self._assume,
                err.code,
                err.message,
            )
            self.ctx.close(
                f"cannot assume database role {self._assume}: {err.code}",
                errors.error(
                    "28000", "this role's database role cannot be taken; ask the DBA", severity="FATAL"
                ),
            )
            return
        self.ctx.upstream_failed(
            f"{err.code} {err.message}", err=errors.forwarded_login_error(err.code, err.message)
        )

    def _on_parameter(self, body: memoryview) -> None:
        self.ctx.track_parameter(m.ParameterStatus.parse(body), login=True)
        self._params.append(m.frame(b"S", body))

    def _on_role_assumed(self, body: memoryview) -> None:
        if self.state is not LoginState.ASSUMING_ROLE:
            raise ProtocolViolation(f"CommandComplete in {self.state.name}")

    def _on_backend_key(self, body: memoryview) -> None:
        key = m.BackendKeyData.parse(body)
        pid, secret = self.cancel_key
        self.ctx.out.command(RegisterCancelKey(pid, secret, key.pid, key.secret))

    def _on_ready(self, body: memoryview) -> None:
        if not required(self._up_auth, "upstream login").ok:
            raise ProtocolViolation("upstream ready before authentication")
        ctx = self.ctx
        ctx.txn = m.ReadyForQuery.parse(body).status
        role = self._assume
        if self.state is LoginState.UPSTREAM_AUTH and role is not None:
            # Before the client can send anything, the session becomes the database role. A
            # session-level SET outside any transaction: nothing the client does rolls it back,
            # and the relay refuses every statement that would change it.
            self._move(LoginState.ASSUMING_ROLE)
            ctx.out.upstream(m.Query(f"SET ROLE {quote_identifier(role)}").serialize())
            return
        if role is not None:
            ctx.tracker.settings.started_with(ROLE, (role,))
        principal = required(ctx.tracker.principal, "authenticated principal")
        if (
            principal.database_role is not None
            and ctx.tracker.restricted
            and ctx.identity.get("is_superuser") == "on"
        ):
            log.warning(
                "session %s: database role %s of role %s is a superuser",
                ctx.session_id,
                principal.database_role,
                principal.role,
            )
            ctx.close(
                "restricted database role is a superuser",
                errors.error(
                    "28000", "this role's database role is a superuser; ask the DBA", severity="FATAL"
                ),
            )
            return
        ctx.fix_identity(principal.database_role)
        out = ctx.out
        out.client(m.AuthenticationOk().serialize())
        out.to_client.extend(self._params)
        self._params.clear()
        pid, secret = self.cancel_key
        out.client(m.BackendKeyData(pid, secret).serialize())
        out.client(m.ReadyForQuery(ctx.txn).serialize())
        self._move(LoginState.DONE)


def _ignore(body: memoryview) -> None:
    return None
