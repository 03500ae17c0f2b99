"""Helpers for MySQL playbooks: packets framed as the wire has them, a fake MariaDB, a login.

A transcript reads as the wire does: `>> from_client(1, response)` is the client's packet with
sequence id 1, `<< to_client(2, ok)` maskgate's answer numbered 2 (consecutive packets take the
ids after it). `FakeMaria` answers whatever the proxy forwards with packets built by
`proxy/mysql/packets.py`, so property tests run whole exchanges without a network. `login()`
runs the whole login (the person's mysql_native_password, the upstream's greeting and auth) as a
transcript and hands back the session ready to relay.
"""

from __future__ import annotations

import dataclasses

from policies.decision import Allow, Block, ColumnMask, Decision
from proxy.core.commands import Command, OpenUpstream, SendClient, SendUpstream
from proxy.core.events import ClientData, UpstreamConnected, UpstreamData
from proxy.core.playbook import Playbook
from proxy.mysql import auth
from proxy.mysql import packets as p
from proxy.mysql.context import SUPPORTED_CAPABILITIES, ServerFacts, SessionConfig
from proxy.mysql.login import NATIVE
from proxy.mysql.session import MySqlSession, Phase
from proxy.pg.auth import make_verifier
from proxy.services.gate import MYSQL_NATIVE_PASSWORD, SCRAM_SHA_256, Principal
from tests.proxy.pg.fakegate import FakeGate

SECRET = b"13912345678"  # a mobile number: the masked column `phone` carries it
MASKED = b"139****5678"  # what FakeGate's masker makes of it
PHONE = ColumnMask(0, "phone", "mobile", "mask")
DETECT = frozenset({"mobile"})
ROW_LIMIT = 3
# One RSA key for every test session: generating 2048 bits takes a moment.
RSA = auth.RSA_KEY
CHARSET = 45  # utf8mb4_general_ci
# What a current client asks for (PyMySQL, mysql-connector): 4.1, plugins, multi results.
CLIENT_CAPS = (
    p.CLIENT_LONG_PASSWORD
    | p.CLIENT_LONG_FLAG
    | p.CLIENT_PROTOCOL_41
    | p.CLIENT_TRANSACTIONS
    | p.CLIENT_SECURE_CONNECTION
    | p.CLIENT_MULTI_STATEMENTS
    | p.CLIENT_MULTI_RESULTS
    | p.CLIENT_PS_MULTI_RESULTS
    | p.CLIENT_PLUGIN_AUTH
    | p.CLIENT_CONNECT_WITH_DB
)
SERVER_CAPS = SUPPORTED_CAPABILITIES | p.CLIENT_SSL | p.CLIENT_LOCAL_FILES | p.CLIENT_DEPRECATE_EOF
STATUS = p.SERVER_STATUS_AUTOCOMMIT
MULTI_SQL = "SELECT 1; SELECT phone FROM c"


def decide(principal: Principal, sql: str) -> Decision:
    """Canned decisions: `secrets` is refused, `phone` masked (a classified read with a row
    limit), the multi-statement string one decision per part, anything else clear."""
    if "secrets" in sql:
        return Block("table_denied", "table secrets is not allowed")
    if sql == MULTI_SQL:
        one = Allow(kind="select", columns=(ColumnMask(0, "1", None, "clear"),))
        return Allow(kind="select", detect=DETECT, statements=(one, phone_allow()))
    if "phone" in sql or sql.startswith("USE `phones`"):
        return phone_allow()
    return Allow(kind="select", detect=DETECT)


def phone_allow() -> Allow:
    return Allow(
        kind="select",
        columns=(PHONE,),
        row_limit=ROW_LIMIT,
        detect=DETECT,
        tables=("crm.c",),
        classes=("mobile",),
    )


def cfg(*, tls: bool = False, roles: tuple[tuple[str, str], ...] = ()) -> SessionConfig:
    """A fresh configuration (its ServerFacts learn from the server's greeting: never share one)."""
    return SessionConfig(
        upstream_user="svc",
        upstream_password="svcpw",
        schema_key="crm",
        tls_available=tls,
        client_addr="10.0.0.9:5123",
        database_roles=roles,
        server=ServerFacts(),
        connection_id=7,
    )


def add_user(
    gate: FakeGate,
    name: str = "alice",
    password: str = "pw",
    *,
    unrestricted: bool = False,
    database_role: str | None = None,
    native: bool = True,
) -> Principal:
    """A person with a SCRAM verifier and (unless `native` is false) a mysql_native_password hash."""
    creds = [(SCRAM_SHA_256, make_verifier(password))]
    if native:
        creds.append((MYSQL_NATIVE_PASSWORD, auth.native_hash(password)))
    principal = Principal(name, "vendor", unrestricted, tuple(creds), database_role=database_role)
    gate.users[name] = principal
    return principal


def session(
    gate: FakeGate | None = None, *, tls: bool = False, **kw: object
) -> tuple[MySqlSession, FakeGate]:
    gate = gate or FakeGate(decide)
    s = MySqlSession(gate, cfg(tls=tls, **kw), rsa=RSA, session_id="t", clock=lambda: 0.0)  # type: ignore[arg-type]
    return s, gate


# ---------------------------------------------------------------------------------------------
# Packets on the wire
# ---------------------------------------------------------------------------------------------


def payload_of(x: object, caps: int = CLIENT_CAPS) -> bytes:
    if isinstance(x, bytes):
        return x
    if isinstance(x, p.OK):
        return x.serialize(caps)
    return x.serialize()  # type: ignore[attr-defined,no-any-return]


def wire(seq: int, *packets: object) -> bytes:
    """`packets` framed with consecutive sequence ids from `seq`."""
    out = []
    for x in packets:
        data, seq = p.frame(payload_of(x), seq)
        out.append(data)
    return b"".join(out)


def from_client(seq: int, *packets: object) -> ClientData:
    return ClientData(wire(seq, *packets))


def from_upstream(seq: int, *packets: object) -> UpstreamData:
    return UpstreamData(wire(seq, *packets))


def to_client(seq: int, *packets: object) -> SendClient:
    return SendClient(wire(seq, *packets))


def to_upstream(seq: int, *packets: object) -> SendUpstream:
    return SendUpstream(wire(seq, *packets))


def packets_of(data: bytes) -> list[tuple[int, bytes]]:
    """(sequence id, payload) of each whole packet in `data`; a partial packet is an error."""
    f = p.Framer(1 << 30)
    out = f.feed(data)
    assert f.buffered == 0, "a partial packet was sent"
    return out


def render(step: object) -> str:
    """A step of a transcript, with wire bytes shown as (seq, payload) packets."""
    if isinstance(step, ClientData | UpstreamData | SendClient | SendUpstream):
        try:
            f = p.Framer(1 << 30)
            pk = f.feed(step.data)
            if f.buffered or not pk:
                raise p.PacketError("not whole packets")
        except p.PacketError:
            return repr(step)
        return f"{type(step).__name__}({', '.join(f'{s}:{d!r}' for s, d in pk)})"
    return repr(step)


def playbook(s: MySqlSession) -> Playbook:
    return Playbook(s, render=render)


def ok(status: int = STATUS, warnings: int = 0, affected: int = 0) -> p.OK:
    return p.OK(affected, 0, status, warnings)


def eof(status: int = STATUS, warnings: int = 0) -> p.EOF:
    return p.EOF(warnings, status)


def column(
    name: bytes = b"phone", ftype: int = 253, charset: int = CHARSET, table: bytes = b"c"
) -> p.ColumnDefinition41:
    return p.ColumnDefinition41(b"crm", table, table, name, name, charset, 80, ftype, 0, 0)


PHONE_COL = column()
WARNING_COLS = (column(b"Level", table=b""), column(b"Code", 3, table=b""), column(b"Message", table=b""))


def text_row(*values: bytes | None) -> p.TextRow:
    return p.TextRow(values)


def binary_row(*values: bytes | None, cols: tuple[p.ColumnDefinition41, ...] = (PHONE_COL,)) -> bytes:
    return p.BinaryRow(values).serialize([(c.type, c.flags) for c in cols])


def result(
    rows: list[object],
    *,
    cols: tuple[p.ColumnDefinition41, ...] = (PHONE_COL,),
    status: int = STATUS,
    warnings: int = 0,
) -> list[object]:
    """A whole text result set: count, definitions, EOF, rows, EOF."""
    return [p.ColumnCount(len(cols)), *cols, eof(), *rows, eof(status, warnings)]


# ---------------------------------------------------------------------------------------------
# The person's side of a login
# ---------------------------------------------------------------------------------------------


def greeting_nonce(cmd: SendClient) -> bytes:
    ((seq, payload),) = packets_of(cmd.data)
    assert seq == 0
    return p.HandshakeV10.parse(payload).auth_data


def handshake(
    nonce: bytes,
    *,
    user: str = "alice",
    password: str = "pw",
    plugin: str = NATIVE,
    database: str | None = "crm",
    caps: int = CLIENT_CAPS,
    auth_response: bytes | None = None,
    charset: int = CHARSET,
) -> p.HandshakeResponse41:
    if auth_response is None:
        pw = password.encode()
        auth_response = auth.native_scramble(pw, nonce) if plugin == NATIVE else auth.sha2_scramble(pw, nonce)
    if database is None:
        caps &= ~p.CLIENT_CONNECT_WITH_DB
    return p.HandshakeResponse41(caps, 1 << 24, charset, user, auth_response, database, plugin, ())


# ---------------------------------------------------------------------------------------------
# A fake MariaDB: enough of the protocol to answer what the proxy forwards
# ---------------------------------------------------------------------------------------------

SERVER_NONCE = b"abcdefghij0123456789"


class FakeMaria:
    """Answers the proxy's packets. Every `phone` query returns `rows` rows of SECRET in one
    VARCHAR column (text or binary); `SELECT boom` fails with an error echoing SECRET;
    `LOAD DATA LOCAL` asks for a file; `SHOW WARNINGS` has no rows of its own. Checks that the
    proxy logs in with the service account's password and numbers its packets."""

    def __init__(self, rows: int = 5, *, greeting_first: bool = False) -> None:
        self.framer = p.Framer(1 << 30)
        self.rows = rows
        self.logged_in = False
        self.user = ""
        self.stmts: dict[int, tuple[str, int]] = {}  # id -> (sql, params)
        self.cursors: dict[int, int] = {}  # stmt id -> rows left
        self.next_stmt = 1
        self.infile = False  # a LOCAL INFILE request is waiting for the file
        self.queries: list[str] = []
        self.greeting_first = greeting_first

    def greeting(self) -> bytes:
        g = p.HandshakeV10("10.11.6-MariaDB", 42, SERVER_NONCE, SERVER_CAPS, CHARSET, STATUS, NATIVE)
        return wire(0, g)

    def feed(self, data: bytes) -> bytes:
        return b"".join(self._one(seq, payload) for seq, payload in self.framer.feed(data))

    def _one(self, seq: int, payload: bytes) -> bytes:
        if not self.logged_in:
            assert seq == 1, f"login packet with sequence id {seq}"
            resp = p.HandshakeResponse41.parse(payload)
            self.user = resp.user
            want = auth.native_scramble(b"svcpw", SERVER_NONCE)
            if resp.user != "svc" or resp.auth_response != want:
                return wire(2, p.ERR(1045, "28000", "Access denied"))
            self.logged_in = True
            return wire(2, ok())
        if self.infile:
            self.infile = False
            assert payload == b"", "the proxy sent a file"
            return wire(seq + 1, p.ERR(1148, "42000", "The used command is not allowed"))
        assert seq == 0, f"a command with sequence id {seq}"
        cmd = payload[0]
        if cmd == p.COM_QUERY:
            return self._query(p.ComQuery.parse(payload).query.decode())
        if cmd == p.COM_STMT_PREPARE:
            sql = p.ComStmtPrepare.parse(payload).query.decode()
            sid, self.next_stmt = self.next_stmt, self.next_stmt + 1
            params = sql.count("?")
            self.stmts[sid] = (sql, params)
            pk: list[object] = [p.StmtPrepareOK(sid, 1, params, 0)]
            if params:
                pk += [column(b"?", 253)] * params + [eof()]
            pk += [PHONE_COL, eof()]
            return wire(1, *pk)
        if cmd == p.COM_STMT_EXECUTE:
            sid = int.from_bytes(payload[1:5], "little")
            if sid not in self.stmts:
                return wire(1, p.ERR(1243, "HY000", "Unknown prepared statement handler"))
            if payload[5] & p.CURSOR_TYPE_READ_ONLY:
                self.cursors[sid] = self.rows
                return wire(1, p.ColumnCount(1), PHONE_COL, eof(STATUS | p.SERVER_STATUS_CURSOR_EXISTS))
            rows = [binary_row(SECRET)] * self.rows
            return wire(1, p.ColumnCount(1), PHONE_COL, eof(), *rows, eof())
        if cmd == p.COM_STMT_FETCH:
            f = p.ComStmtFetch.parse(payload)
            left = self.cursors.get(f.stmt_id)
            if left is None:
                return wire(1, p.ERR(1421, "HY000", "no cursor"))
            n = min(left, f.rows)
            self.cursors[f.stmt_id] = left - n
            status = STATUS | p.SERVER_STATUS_CURSOR_EXISTS
            if left - n == 0:
                status |= p.SERVER_STATUS_LAST_ROW_SENT
                del self.cursors[f.stmt_id]
            return wire(1, *([binary_row(SECRET)] * n), eof(status))
        if cmd == p.COM_STMT_CLOSE:
            sid = p.ComStmtClose.parse(payload).stmt_id
            self.stmts.pop(sid, None)
            self.cursors.pop(sid, None)
            return b""
        if cmd == p.COM_STMT_SEND_LONG_DATA:
            return b""
        if cmd == p.COM_STMT_RESET:
            self.cursors.pop(p.ComStmtReset.parse(payload).stmt_id, None)
            return wire(1, ok())
        if cmd in (p.COM_INIT_DB, p.COM_PING):
            return wire(1, ok())
        if cmd == p.COM_RESET_CONNECTION:
            self.stmts.clear()
            self.cursors.clear()
            return wire(1, ok())
        if cmd == p.COM_FIELD_LIST:
            return wire(1, dataclasses.replace(PHONE_COL, has_default=True), eof())
        if cmd == p.COM_STATISTICS:
            return wire(1, b"Uptime: 1")
        if cmd == p.COM_SET_OPTION:
            return wire(1, eof())
        if cmd == p.COM_QUIT:
            return b""
        raise AssertionError(f"the proxy forwarded command {cmd}")

    def _query(self, sql: str) -> bytes:
        self.queries.append(sql)
        if sql == MULTI_SQL:
            more = STATUS | p.SERVER_MORE_RESULTS_EXISTS
            one = [p.ColumnCount(1), column(b"1", 8), eof(), text_row(b"1"), eof(more)]
            return wire(1, *one, *result([text_row(SECRET)] * self.rows))
        if sql.startswith("SELECT boom"):
            return wire(1, p.ERR(1292, "22007", f"Truncated incorrect DOUBLE value: '{SECRET.decode()}'"))
        if "phone" in sql:
            return wire(1, *result([text_row(SECRET)] * self.rows))
        if sql.upper().startswith("SELECT @@"):  # a session variable maskgate reads
            value = b"STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION" if "sql_mode" in sql else b"0"
            return wire(1, *result([text_row(value)], cols=(column(sql[7:].encode(), table=b""),)))
        if sql.upper().startswith("SHOW WARNINGS"):
            return wire(1, *result([], cols=WARNING_COLS))
        if sql.startswith("LOAD DATA LOCAL"):
            self.infile = True
            return wire(1, p.LocalInfileRequest(b"/etc/passwd"))
        return wire(1, ok())


def finish_upstream_login(s: MySqlSession, maria: FakeMaria, sent: list[Command]) -> list[Command]:
    """Let `maria` answer what maskgate sends upstream until the person is told the login
    ended; every command that came out, in order."""
    out = list(sent)
    while not client_bytes(out) and s.phase is not Phase.CLOSED:
        reply = maria.feed(upstream_bytes(sent))
        assert reply, "maskgate waits for the server, which has nothing to say"
        sent = s.handle(UpstreamData(reply))
        out += sent
    return out


def upstream_bytes(out: list[object]) -> bytes:
    return b"".join(c.data for c in out if isinstance(c, SendUpstream))


def client_bytes(out: list[object]) -> bytes:
    return b"".join(c.data for c in out if isinstance(c, SendClient))


# ---------------------------------------------------------------------------------------------
# A whole login
# ---------------------------------------------------------------------------------------------


def login(
    gate: FakeGate | None = None,
    *,
    unrestricted: bool = False,
    database_role: str | None = None,
    maria: FakeMaria | None = None,
    caps: int = CLIENT_CAPS,
    charset: int = CHARSET,
) -> tuple[MySqlSession, FakeGate, Playbook]:
    """A session of `alice` (password `pw`, mysql_native_password) logged in through the whole
    exchange, ready to relay. With `database_role` (not among the configured roles) the proxy
    assumes it with SET ROLE after the service account's login."""
    gate = gate or FakeGate(decide)
    add_user(gate, unrestricted=unrestricted, database_role=database_role)
    s, _ = session(gate)
    greeting = s.greeting()
    assert len(greeting) == 1 and isinstance(greeting[0], SendClient)
    nonce = greeting_nonce(greeting[0])
    maria = maria or FakeMaria()
    assert s.handle(from_client(1, handshake(nonce, caps=caps, charset=charset))) == [
        OpenUpstream("crm", "mysql")
    ]
    assert s.handle(UpstreamConnected()) == []
    sent = s.handle(UpstreamData(maria.greeting()))
    # The rest of the upstream login (the service account's OK, SET ROLE, whatever maskgate
    # asks the server before it answers the person) is the fake server's to answer.
    assert client_bytes(finish_upstream_login(s, maria, sent)) == wire(2, ok())
    if database_role is not None:
        assert f"SET ROLE `{database_role}`" in maria.queries
    pb = playbook(s)
    assert s.phase is Phase.RELAY
    return s, gate, pb
