"""The login layer of a MySQL session: the person's handshake, TLS and password, then the upstream's.

Owns everything before the OK packet that ends the client's handshake: maskgate's greeting, the
optional TLS upgrade, checking the person's password against the policy (mysql_native_password
against their `mysql_password`, else caching_sha2_password full authentication, the password in
clear over TLS or RSA-encrypted with maskgate's key, checked against either credential), then
opening the upstream, logging the service account (or the role's database role) in with the
capabilities maskgate speaks, and `SET ROLE` where the database role has no password of its own.
Every failure of the person looks the same (1045). Owns no statement handling (`relay.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from enum import Enum, auto

from policies.sql.dialects import MYSQL
from proxy.core.commands import OpenUpstream, StartTLS, StartUpstreamTLS
from proxy.core.machine import ProtocolViolation, Transitions, required
from proxy.mysql import auth, errors
from proxy.mysql import packets as p
from proxy.mysql.context import SUPPORTED_CAPABILITIES, Context
from proxy.mysql.types import charset_encoding
from proxy.services.gate import MYSQL_NATIVE_PASSWORD, SCRAM_SHA_256, Principal

log = logging.getLogger("maskgate.mysql")

NATIVE = "mysql_native_password"
SHA2 = "caching_sha2_password"
# caching_sha2_password's one-byte AuthMoreData signals and the client's request for the key.
FAST_AUTH_OK = b"\x03"
PERFORM_FULL_AUTH = b"\x04"
REQUEST_PUBLIC_KEY = b"\x02"
# What maskgate always asks of the upstream, whatever the client did: the 4.1 protocol, secure
# (length-prefixed) scrambles, plugins by name, and no MariaDB extensions (bit 0 says "MySQL").
UPSTREAM_REQUIRED = (
    p.CLIENT_LONG_PASSWORD | p.CLIENT_PROTOCOL_41 | p.CLIENT_SECURE_CONNECTION | p.CLIENT_PLUGIN_AUTH
)
# Capabilities both sides must agree on, or a packet would be framed one way for one side and
# another way for the other.
MUST_MATCH = (
    p.CLIENT_PROTOCOL_41
    | p.CLIENT_TRANSACTIONS
    | p.CLIENT_MULTI_RESULTS
    | p.CLIENT_PS_MULTI_RESULTS
    | p.CLIENT_LONG_FLAG
)


# The character sets a restricted session may send statements in: UTF-8 and single-byte sets
# whose every byte is one character, so a quote or a backslash is always itself.
READABLE_CLIENT_CODECS = frozenset({"utf-8", "cp1252", "ascii"})


class LoginState(Enum):
    GREETED = auto()  # maskgate's greeting sent: SSLRequest or HandshakeResponse expected
    TLS_HANDSHAKE = auto()  # SSLRequest received, the driver is upgrading the connection
    SWITCHING = auto()  # AuthSwitchRequest (caching_sha2_password) sent: its scramble expected
    FULL_AUTH = auto()  # "perform full authentication" sent: the password (or a key request)
    KEY_SENT = auto()  # maskgate's RSA public key sent: the encrypted password expected
    UPSTREAM_CONNECTING = auto()  # the person is authenticated; the upstream is being opened
    UPSTREAM_GREETING = auto()  # connected: the server's greeting expected
    UPSTREAM_TLS = auto()  # SSLRequest sent upstream, the driver is upgrading the connection
    UPSTREAM_AUTH = auto()  # our handshake response sent: OK, ERR or more auth expected
    ASSUMING_ROLE = auto()  # SET ROLE sent for a database role without a password
    # `SELECT @@SESSION.sql_mode` sent: the modes the server reads this session's text with.
    CHECKING_MODE = auto()
    DONE = auto()


_MOVES = Transitions(
    {
        LoginState.GREETED: {LoginState.TLS_HANDSHAKE, LoginState.SWITCHING, LoginState.FULL_AUTH}
        | {LoginState.UPSTREAM_CONNECTING},
        LoginState.TLS_HANDSHAKE: {LoginState.GREETED},
        LoginState.SWITCHING: {LoginState.FULL_AUTH},
        LoginState.FULL_AUTH: {LoginState.KEY_SENT, LoginState.UPSTREAM_CONNECTING},
        LoginState.KEY_SENT: {LoginState.UPSTREAM_CONNECTING},
        LoginState.UPSTREAM_CONNECTING: {LoginState.UPSTREAM_GREETING},
        LoginState.UPSTREAM_GREETING: {LoginState.UPSTREAM_AUTH, LoginState.UPSTREAM_TLS},
        LoginState.UPSTREAM_TLS: {LoginState.UPSTREAM_AUTH},
        LoginState.UPSTREAM_AUTH: {LoginState.ASSUMING_ROLE, LoginState.CHECKING_MODE},
        LoginState.ASSUMING_ROLE: {LoginState.CHECKING_MODE},
        LoginState.CHECKING_MODE: {LoginState.DONE},
    }
)


def quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class Login:
    """The login layer. The session feeds it packets and events until `done`."""

    def __init__(
        self,
        ctx: Context,
        client_framer: p.Framer,
        rsa: auth.RsaKey,
        tls_pending: Callable[[], bytes] = lambda: b"",
    ) -> None:
        self.ctx = ctx
        # The bytes read after an SSLRequest (the client's first TLS records), from the session.
        self.tls_pending = tls_pending
        self._cf = client_framer
        self._rsa = rsa
        self.state = LoginState.GREETED
        self.nonce = auth.new_nonce()
        self.tls = False
        self.user = ""
        self.database = ""
        self._principal: Principal | None = None
        self._response: p.HandshakeResponse41 | None = None
        # Upstream side.
        self._useq = 0  # the sequence id of the next packet to the upstream
        self._up_nonce = b""
        self._up_user = ""
        self._up_password = ""
        self._up_plugin = NATIVE
        self._assume: str | None = None
        self._early: list[tuple[int, bytes]] = []
        self._held_ok: p.OK | None = None
        self._response_up: p.HandshakeResponse41 | None = None  # sent after the upstream TLS
        self._up_tls = False
        self._mode_packets: list[bytes] = []  # the server's greeting, when it came first
        self._greeting = self._make_greeting()

    @property
    def assumed_role(self) -> str | None:
        """The database role taken with SET ROLE after login (None: logged in as it, or none)."""
        return self._assume

    @property
    def awaits_handshake(self) -> bool:
        """maskgate's greeting is out and the client's answer (or SSLRequest) not yet read."""
        return self.state is LoginState.GREETED

    @property
    def awaits_tls(self) -> bool:
        return self.state is LoginState.TLS_HANDSHAKE

    @property
    def done(self) -> bool:
        return self.state is LoginState.DONE

    def _move(self, new: LoginState) -> None:
        self.state = _MOVES.move(self.state, new)

    def _make_greeting(self) -> p.HandshakeV10:
        facts = self.ctx.cfg.server
        caps = (facts.capabilities & SUPPORTED_CAPABILITIES) | UPSTREAM_REQUIRED
        if self.ctx.cfg.tls_available:
            caps |= p.CLIENT_SSL
        return p.HandshakeV10(
            server_version=facts.version,
            connection_id=self.ctx.cfg.connection_id,
            auth_data=self.nonce,
            capabilities=caps,
            charset=facts.charset,
            status=p.SERVER_STATUS_AUTOCOMMIT,
            auth_plugin=NATIVE,
        )

    def greet(self) -> None:
        """Send maskgate's greeting (the session's first packet)."""
        self.ctx.cseq = 0
        self.ctx.send(self._greeting.serialize())

    # ------------------------------------------------------------------ client packets

    def client_packet(self, seq: int, payload: bytes) -> None:
        """One packet of the person's."""
        ctx = self.ctx
        if seq != ctx.cseq:
            raise ProtocolViolation(f"packet out of sequence ({seq}, expected {ctx.cseq})")
        ctx.cseq = (seq + 1) % 256
        st = self.state
        if st is LoginState.GREETED:
            self._on_handshake(payload)
        elif st is LoginState.SWITCHING:
            self._on_switched(payload)
        elif st is LoginState.FULL_AUTH:
            self._on_full_auth(payload)
        elif st is LoginState.KEY_SENT:
            self._check_password(self._rsa_password(payload))
        else:
            raise ProtocolViolation(f"client packet while {st.name}")

    def _on_handshake(self, payload: bytes) -> None:
        caps = int.from_bytes(payload[:4], "little") if len(payload) >= 4 else 0
        if len(payload) == 32 and caps & p.CLIENT_SSL:
            if not self.ctx.cfg.tls_available or self.tls:
                raise ProtocolViolation("SSLRequest without TLS offered")
            p.SSLRequest.parse(payload)
            self._move(LoginState.TLS_HANDSHAKE)
            self.ctx.out.command(StartTLS(pending=self.tls_pending()))
            return
        resp = p.HandshakeResponse41.parse(payload)
        if not resp.capabilities & p.CLIENT_PROTOCOL_41:
            raise ProtocolViolation("the client does not speak protocol 4.1")
        if resp.capabilities & p.CLIENT_SSL and not self.tls:
            raise ProtocolViolation("the client asked for TLS in its handshake response only")
        if charset_encoding(resp.charset) is None:
            # The server reads statements in the client's charset; analysed in any other one,
            # a multi-byte character that swallows a backslash or quote (SJIS, cp932) makes
            # them different statements. Refused like a charset the server does not know.
            log.info("session %s: unknown client charset %d", self.ctx.session_id, resp.charset)
            self.ctx.close("unknown client charset", errors.unknown_charset(resp.charset))
            return
        self._response = resp
        self.user = resp.user
        self.database = resp.database or ""
        self._principal = self.ctx.gate.lookup(resp.user)
        plugin = resp.auth_plugin or NATIVE
        stored = self._native_hash()
        if (
            plugin == NATIVE
            and stored is not None
            and resp.auth_response
            and auth.native_verify(stored, self.nonce, resp.auth_response)
        ):
            self._authenticated()
            return
        if not resp.auth_response:
            # An empty password: maskgate's users all have one. The same error as a wrong one.
            self._denied()
            return
        if plugin == SHA2:
            # Its scramble cannot be checked against what the policy stores: ask for the password.
            self._move(LoginState.FULL_AUTH)
            self.ctx.send(p.AuthMoreData(PERFORM_FULL_AUTH).serialize())
            return
        # Everyone else (a wrong native scramble, an unknown user, a user without a native
        # hash, another plugin) goes through the same switch, so no answer tells them apart.
        self.nonce = auth.new_nonce()
        self._move(LoginState.SWITCHING)
        self.ctx.send(p.AuthSwitchRequest(SHA2, self.nonce + b"\0").serialize())

    def tls_established(self) -> None:
        if self.state is not LoginState.TLS_HANDSHAKE:
            raise ProtocolViolation("TLS established outside a TLS handshake")
        self.tls = True
        self._move(LoginState.GREETED)

    def _on_switched(self, payload: bytes) -> None:
        if not payload:
            self._denied()
            return
        self._move(LoginState.FULL_AUTH)
        self.ctx.send(p.AuthMoreData(PERFORM_FULL_AUTH).serialize())

    def _on_full_auth(self, payload: bytes) -> None:
        if self.tls:
            self._check_password(payload[:-1] if payload.endswith(b"\0") else payload)
        elif payload == REQUEST_PUBLIC_KEY:
            self._move(LoginState.KEY_SENT)
            self.ctx.send(p.AuthMoreData(self._rsa.public_pem()).serialize())
        else:
            # A client that already has maskgate's public key sends the password encrypted.
            self._check_password(self._rsa_password(payload))

    def _rsa_password(self, payload: bytes) -> bytes | None:
        try:
            return self._rsa.decrypt_password(payload, self.nonce)
        except Exception:  # a ciphertext that does not decrypt is a wrong password, nothing more
            return None

    def _check_password(self, password: bytes | None) -> None:
        principal = self._principal
        ok = False
        if password is not None:
            native = principal.credential(MYSQL_NATIVE_PASSWORD) if principal is not None else None
            scram = principal.credential(SCRAM_SHA_256) if principal is not None else None
            if native is not None:
                ok = auth.native_password_verify(native, password)
            if not ok:
                # Unknown users cost the same key stretching as known ones: timing tells nothing.
                ok = auth.scram_verify(scram or "", password) and principal is not None
        if ok:
            self._authenticated()
        else:
            self._denied()

    def _native_hash(self) -> str | None:
        return self._principal.credential(MYSQL_NATIVE_PASSWORD) if self._principal is not None else None

    def _denied(self) -> None:
        ctx = self.ctx
        ctx.gate.auth_failed("mysql")
        log.info("session %s: authentication failed for user %r", ctx.session_id, self.user)
        host = ctx.cfg.client_addr.rpartition(":")[0]
        ctx.close("authentication failed", errors.access_denied(self.user, host))

    def _authenticated(self) -> None:
        ctx = self.ctx
        principal = required(self._principal, "principal")
        resp = required(self._response, "handshake response")
        ctx.tracker.principal = principal
        ctx.caps = resp.capabilities & (self._greeting.capabilities | p.CLIENT_SSL)
        ctx.multi_statements = bool(ctx.caps & p.CLIENT_MULTI_STATEMENTS)
        encoding = charset_encoding(resp.charset)
        if not principal.unrestricted and encoding not in READABLE_CLIENT_CODECS:
            # Multi-byte sets whose trailing bytes can be a quote or a backslash (gbk, big5,
            # sjis) are where a proxy and a server disagree on where a string ends.
            ctx.close(
                "client character set not allowed",
                p.ERR(
                    1115,
                    "42000",
                    f"maskgate: client character set {resp.charset} is not allowed for "
                    "this role; connect with utf8mb4",
                ),
            )
            return
        ctx.encoding = encoding or "utf-8"
        if self.database:
            ctx.tracker.settings.started_with("search_path", (self.database,))
        # The person is known: from now on their packets may be as large as the config allows.
        self._cf.max_packet = ctx.cfg.max_packet
        role = principal.database_role
        if role is not None and ctx.cfg.password_for(role) is not None:
            self._up_user, self._up_password = role, ctx.cfg.password_for(role) or ""
        else:
            self._up_user, self._up_password = ctx.cfg.upstream_user, ctx.cfg.upstream_password
            self._assume = role
        self._move(LoginState.UPSTREAM_CONNECTING)
        ctx.out.command(OpenUpstream(ctx.cfg.schema_key, ctx.cfg.upstream))

    # ------------------------------------------------------------------ upstream

    def upstream_connected(self) -> None:
        if self.state is not LoginState.UPSTREAM_CONNECTING:
            raise ProtocolViolation("UpstreamConnected while not connecting")
        self._move(LoginState.UPSTREAM_GREETING)
        early, self._early = self._early, []
        for seq, payload in early:
            if self.ctx.out.closed:
                return
            self.upstream_packet(seq, payload)

    def _send_upstream(self, payload: bytes) -> None:
        data, self._useq = p.frame(payload, self._useq)
        self.ctx.out.upstream(data)

    def upstream_packet(self, seq: int, payload: bytes) -> None:
        st = self.state
        if st is LoginState.UPSTREAM_CONNECTING:
            # The server speaks first: its greeting may arrive while the driver still waits for
            # the gate to be ready for the database. It is read once the connection is handed over.
            if self._early:
                raise ProtocolViolation("the server sent more than its greeting")
            self._early.append((seq, payload))
            return
        self._useq = (seq + 1) % 256
        if p.is_err(payload):
            err = p.ERR.parse(payload)
            if st is LoginState.ASSUMING_ROLE:
                self.ctx.upstream_failed(f"SET ROLE failed: {err.message}")
            else:
                log.warning("session %s: upstream refused the login: %s", self.ctx.session_id, err.message)
                self.ctx.upstream_failed(
                    "the database refused maskgate's login", detail=f"{err.code} {err.message}"
                )
            return
        if st is LoginState.UPSTREAM_GREETING:
            self._on_greeting(payload)
        elif st is LoginState.UPSTREAM_AUTH:
            self._on_upstream_auth(payload)
        elif st is LoginState.ASSUMING_ROLE:
            if not p.is_ok(payload):
                raise ProtocolViolation("unexpected answer to SET ROLE")
            self._check_mode(p.OK.parse(payload, self.ctx.caps))
        elif st is LoginState.CHECKING_MODE:
            self._on_mode_packet(payload)
        else:
            raise ProtocolViolation(f"upstream packet while {st.name}")

    def _on_greeting(self, payload: bytes) -> None:
        ctx = self.ctx
        g = p.HandshakeV10.parse(payload)
        ctx.server_version = g.server_version
        facts = ctx.cfg.server
        facts.version, facts.capabilities, facts.charset = g.server_version, g.capabilities, g.charset
        missing = (ctx.caps & MUST_MATCH) & ~g.capabilities
        if missing or not g.capabilities & p.CLIENT_PROTOCOL_41:
            self.ctx.upstream_failed("the database does not speak the protocol the client negotiated")
            return
        resp = required(self._response, "handshake response")
        caps = (ctx.caps & SUPPORTED_CAPABILITIES & g.capabilities) | UPSTREAM_REQUIRED
        caps &= ~(p.CLIENT_SSL | p.CLIENT_LOCAL_FILES | p.CLIENT_CONNECT_ATTRS)
        caps &= g.capabilities | UPSTREAM_REQUIRED
        if ctx.tracker.restricted:
            # An UPDATE's count of rows it changed (not matched) says whether the value written
            # equals the one stored: a lookup of a masked value that no condition shows. With
            # FOUND_ROWS the server counts the rows matched, as PostgreSQL does.
            caps |= p.CLIENT_FOUND_ROWS
        if self.database:
            caps |= p.CLIENT_CONNECT_WITH_DB
        else:
            caps &= ~p.CLIENT_CONNECT_WITH_DB
        attrs: tuple[tuple[str, str], ...] = ()
        if g.capabilities & p.CLIENT_CONNECT_ATTRS:
            caps |= p.CLIENT_CONNECT_ATTRS
            principal = required(ctx.tracker.principal, "principal")
            program = dict(resp.attrs).get("program_name", "")
            # The person's name travels with the connection: the server's processlist and
            # performance_schema tie the service account's session to them.
            name = f"maskgate:{principal.user}" + (f"/{program}" if program else "")
            attrs = (("program_name", name[:64]),)
        self._up_nonce = g.auth_data[:20]
        self._up_plugin = g.auth_plugin if g.auth_plugin in (NATIVE, SHA2) else NATIVE
        self._upstream_caps = caps
        out = p.HandshakeResponse41(
            capabilities=caps,
            max_packet=ctx.cfg.max_packet,
            charset=resp.charset,
            user=self._up_user,
            auth_response=self._scramble(self._up_plugin, self._up_nonce),
            database=self.database or None,
            auth_plugin=self._up_plugin,
            attrs=attrs,
        )
        if ctx.cfg.upstream_tls:
            if not g.capabilities & p.CLIENT_SSL:
                self.ctx.upstream_failed("upstream does not support TLS")
                return
            out = replace(out, capabilities=caps | p.CLIENT_SSL)
            self._response_up = out
            self._move(LoginState.UPSTREAM_TLS)
            self._send_upstream(p.SSLRequest(out.capabilities, out.max_packet, out.charset).serialize())
            self.ctx.out.command(StartUpstreamTLS())
            return
        self._move(LoginState.UPSTREAM_AUTH)
        self._send_upstream(out.serialize())

    def upstream_tls_established(self) -> None:
        if self.state is not LoginState.UPSTREAM_TLS:
            raise ProtocolViolation("upstream TLS established outside its handshake")
        self._up_tls = True
        self._move(LoginState.UPSTREAM_AUTH)
        self._send_upstream(required(self._response_up, "handshake response").serialize())

    def _scramble(self, plugin: str, nonce: bytes) -> bytes:
        pw = self._up_password.encode()
        if not pw:
            return b""
        if plugin == SHA2:
            return auth.sha2_scramble(pw, nonce)
        return auth.native_scramble(pw, nonce)

    def _on_upstream_auth(self, payload: bytes) -> None:
        if p.is_ok(payload):
            ok = p.OK.parse(payload, self.ctx.caps)
            if self._assume is not None:
                self._move(LoginState.ASSUMING_ROLE)
                self._useq = 0
                self._send_upstream(p.ComQuery(f"SET ROLE {quote_name(self._assume)}".encode()).serialize())
                return
            self._check_mode(ok)
            return
        head = payload[:1]
        if head == b"\xfe":
            sw = p.AuthSwitchRequest.parse(payload)
            if sw.plugin not in (NATIVE, SHA2):
                self.ctx.upstream_failed(f"the database asks for the unsupported auth plugin {sw.plugin}")
                return
            self._up_plugin = sw.plugin
            self._up_nonce = sw.data[:20]
            self._send_upstream(p.AuthSwitchResponse(self._scramble(sw.plugin, self._up_nonce)).serialize())
            return
        if head == b"\x01":
            more = p.AuthMoreData.parse(payload)
            if more.data == FAST_AUTH_OK:
                return  # the OK follows
            if more.data == PERFORM_FULL_AUTH:
                if self._up_tls:  # the password may travel in clear inside TLS
                    self._send_upstream(self._up_password.encode() + b"\0")
                else:
                    self._send_upstream(REQUEST_PUBLIC_KEY)
                return
            if more.data.startswith(b"-----BEGIN"):
                pw = self._up_password.encode()  # encrypt_password adds the NUL itself
                try:
                    secret = auth.encrypt_password(pw, self._up_nonce, more.data)
                except ValueError as e:  # not a PEM, not RSA, or too small for the password
                    raise ProtocolViolation(f"the server's public key is unusable: {e}") from None
                self._send_upstream(secret)
                return
        raise ProtocolViolation("unexpected packet during the upstream login")

    def _check_mode(self, ok: p.OK) -> None:
        """Ask the server for the session's sql_mode before the client may send anything: a
        server configured with ANSI_QUOTES, NO_BACKSLASH_ESCAPES or PIPES_AS_CONCAT reads text
        otherwise than maskgate's parser, and its global setting is not the proxy's to know."""
        self._held_ok = ok
        self._mode_packets = []
        self._move(LoginState.CHECKING_MODE)
        self._useq = 0
        self._send_upstream(p.ComQuery(b"SELECT @@SESSION.sql_mode").serialize())

    def _on_mode_packet(self, payload: bytes) -> None:
        # The answer is a one-column, one-row text result: count, definition, EOF, row, EOF.
        self._mode_packets.append(payload)
        if len(self._mode_packets) < 5:
            return
        count, _, eof1, row, eof2 = self._mode_packets
        if p.ColumnCount.parse(count).count != 1 or not (p.is_eof(eof1) and p.is_eof(eof2)):
            raise ProtocolViolation("unexpected answer to the sql_mode query")
        (value,) = p.TextRow.parse(row, 1).values
        mode = (value or b"").decode("ascii", "replace")
        ctx = self.ctx
        if ctx.tracker.restricted and MYSQL.unsafe_setting("sql_mode", mode):
            log.warning("session %s: the server's sql_mode %r changes how SQL is read", ctx.session_id, mode)
            ctx.close(
                "server sql_mode not allowed",
                p.ERR(
                    1231,
                    "42000",
                    "maskgate: the database's sql_mode changes how SQL text is read "
                    "(ANSI_QUOTES, NO_BACKSLASH_ESCAPES, PIPES_AS_CONCAT, …); ask the DBA",
                ),
            )
            return
        self._finish(required(self._held_ok, "login OK"))

    def _finish(self, ok: p.OK) -> None:
        ctx = self.ctx
        self._move(LoginState.DONE)
        # The client's handshake ends with maskgate's OK, numbered after its last packet.
        ctx.send(p.OK(0, 0, ok.status, ok.warnings).serialize(ctx.caps))
