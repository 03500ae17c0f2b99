"""Property tests for the MySQL session: whatever either peer sends, it fails closed.

Whatever bytes a client or a broken upstream sends, before or after login, no exception leaves
`handle(event)`, the client never sees a Python exception text, a protocol violation is answered
with an ERR packet (08S01) and a `Close`, and nothing follows the `Close`. A well-formed but
refused command leaves the session usable. And across random interleavings of commands (text and
binary results, cursors, multi-statement strings, resets), pipelined and split anywhere, no row
value the fake upstream sends for the masked column ever reaches the client unmasked.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.core.commands import Close, Command, OpenUpstream, SendClient, SendUpstream, StartTLS
from proxy.core.events import (
    ClientClosed,
    ClientData,
    TlsEstablished,
    UpstreamClosed,
    UpstreamConnected,
    UpstreamData,
)
from proxy.mysql import auth
from proxy.mysql import packets as p
from proxy.mysql.login import NATIVE, SHA2, LoginState
from proxy.mysql.session import MySqlSession, Phase
from tests.proxy.mysql.transcripts import (
    CLIENT_CAPS,
    MASKED,
    MULTI_SQL,
    PHONE_COL,
    RSA,
    SECRET,
    FakeMaria,
    add_user,
    binary_row,
    column,
    eof,
    greeting_nonce,
    handshake,
    login,
    ok,
    session,
    text_row,
    wire,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Texts a client may get that are not maskgate's own: the server's words, kept where tools
# match on them, and the fake upstream's.
FOREIGN = (
    "Access denied for user ",
    "Server shutdown in progress",
    "Unknown prepared statement handler",
    "The statement has no open cursor",
    "Truncated incorrect DOUBLE value: '139****5678'",
    "no cursor",
)
EXCEPTION_MARKERS = ("Traceback", "Error(", "struct.error", "invalid literal", "unpack", "object has no")


# ---------------------------------------------------------------------------------------------
# Driving a session and checking the contract
# ---------------------------------------------------------------------------------------------


class Trace:
    """Every command list a session returned, in order."""

    def __init__(self, s: MySqlSession) -> None:
        self.s = s
        self.outs: list[list[Command]] = []

    def add(self, out: list[Command]) -> list[Command]:
        self.outs.append(out)
        return out

    def commands(self) -> list[Command]:
        return [c for out in self.outs for c in out]

    def to_client(self) -> bytes:
        return b"".join(c.data for c in self.commands() if isinstance(c, SendClient))

    def to_upstream(self) -> bytes:
        return b"".join(c.data for c in self.commands() if isinstance(c, SendUpstream))

    def close(self) -> Close | None:
        return next((c for c in self.commands() if isinstance(c, Close)), None)

    def check_close_discipline(self) -> None:
        closed = False
        for out in self.outs:
            if closed:
                assert out == [], f"commands after Close: {out}"
            closes = [i for i, c in enumerate(out) if isinstance(c, Close)]
            assert len(closes) <= 1
            if closes:
                assert closes[0] == len(out) - 1, "Close must be the last command"
                closed = True
        assert closed == (self.s.phase is Phase.CLOSED)


def packets(data: bytes) -> list[tuple[int, bytes]]:
    """The packets of a stream the proxy wrote: it only ever sends whole ones."""
    f = p.Framer(1 << 30)
    out = f.feed(data)
    assert f.buffered == 0, "a partial packet was sent"
    return out


def errors_in(data: bytes, *, foreign: tuple[str, ...] = FOREIGN) -> list[p.ERR]:
    """The ERR packets of the client stream; each is maskgate's own (`maskgate: …`) or a text
    in `foreign`, and none carries a Python exception text."""
    errs = []
    for _, payload in packets(data):
        if p.is_err(payload):
            err = p.ERR.parse(payload)
            assert err.message.startswith(("maskgate: ", *foreign)), err
            for marker in EXCEPTION_MARKERS:
                assert marker not in err.message, err
            errs.append(err)
    return errs


def check_violation_close(t: Trace, states: tuple[str, ...] = ("08S01",)) -> None:
    """If the session closed for anything but an orderly end, the client was told why, last."""
    close = t.close()
    if close is None or close.reason in ("client closed", "client quit", "drained", "upstream closed"):
        return
    pk = packets(t.to_client())
    assert pk, f"closed ({close.reason}) without telling the client"
    last = pk[-1][1]
    assert p.is_err(last), f"closed ({close.reason}) but the last packet is {last[:1]!r}"
    err = p.ERR.parse(last)
    assert err.sqlstate in states, (close.reason, err)
    if close.reason.startswith(("protocol violation", "client protocol violation", "upstream protocol")):
        assert err.sqlstate == "08S01" and err.message.startswith("maskgate: protocol violation"), err


def chunked(draw: st.DrawFn, blob: bytes) -> list[bytes]:
    # Cuts drawn on a fixed scale: a blob's length can differ between hypothesis's runs of one
    # example (a random greeting nonce decides whether a scramble holds a NUL), and a strategy
    # whose bounds follow it is rejected as flaky.
    scale = 1 << 20
    cuts = sorted({c * len(blob) // scale for c in draw(st.lists(st.integers(0, scale), max_size=6))})
    bounds = [0, *cuts, len(blob)]
    return [blob[a:b] for a, b in itertools.pairwise(bounds) if b > a] or [b""]


def upstream_of(out: list[Command]) -> bytes:
    return b"".join(c.data for c in out if isinstance(c, SendUpstream))


def pump(t: Trace, maria: FakeMaria, data: bytes, draw: st.DrawFn | None = None) -> None:
    """Let the fake server answer what the proxy sent upstream, until nothing more is sent;
    with `draw` its answers arrive split at random places."""
    while data and t.s.phase is not Phase.CLOSED:
        reply = maria.feed(data)
        if not reply:
            return
        data = b""
        for chunk in chunked(draw, reply) if draw is not None else [reply]:
            data += upstream_of(t.add(t.s.handle(UpstreamData(chunk))))


def frame_all(*payloads: bytes, seq: int = 0) -> bytes:
    return wire(seq, *payloads)


# ---------------------------------------------------------------------------------------------
# Client packets: well-formed commands with random fields, and broken ones
# ---------------------------------------------------------------------------------------------

SQLS = st.sampled_from(
    [
        "SELECT phone FROM c",
        "SELECT * FROM secrets",
        "SELECT 1",
        MULTI_SQL,
        "SHOW WARNINGS",
        "SELECT boom",
        "SELECT boom FROM phone_book",
        "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t",
        "",
        " ; ",
        "SET ROLE `admin`",
    ]
) | st.text(max_size=20)
STMT_IDS = st.sampled_from([1, 2, 3, 0, 2**32 - 1])
U32 = st.integers(0, 2**32 - 1)


def execute_payload(stmt_id: int, flags: int) -> bytes:
    """An execute of `SELECT phone FROM c WHERE id = ?` (one INT parameter)."""
    return p.ComStmtExecute(stmt_id, flags, 1, b"\x00", True, ((3, 0),), (b"\x01\x00\x00\x00",)).serialize()


def command() -> st.SearchStrategy[bytes]:
    """One well-formed command payload (COM_QUIT excluded)."""
    return st.one_of(
        st.builds(lambda s: p.ComQuery(s.encode()).serialize(), SQLS),
        st.builds(lambda s: p.ComQuery(s).serialize(), st.binary(max_size=12)),
        st.builds(
            lambda s: p.ComStmtPrepare(s.encode()).serialize(),
            st.sampled_from(
                ["SELECT phone FROM c WHERE id = ?", "SELECT * FROM secrets", "SELECT 1; SELECT 2"]
            ),
        ),
        st.builds(execute_payload, STMT_IDS, st.sampled_from([0, 1, 2, 4, 0xFF])),
        st.builds(lambda i, n: p.ComStmtFetch(i, n).serialize(), STMT_IDS, st.sampled_from([0, 1, 2, 100])),
        st.builds(lambda i: p.ComStmtClose(i).serialize(), STMT_IDS),
        st.builds(lambda i: p.ComStmtReset(i).serialize(), STMT_IDS),
        st.builds(lambda i, d: p.ComStmtSendLongData(i, 0, d).serialize(), STMT_IDS, st.binary(max_size=6)),
        st.builds(lambda d: p.ComInitDb(d).serialize(), st.sampled_from([b"crm", b"secrets", b"\xff", b""])),
        st.builds(
            lambda t: p.ComFieldList(t, b"").serialize(), st.sampled_from([b"c", b"secrets", b"\xfe", b""])
        ),
        st.just(p.ComPing().serialize()),
        st.just(p.ComStatistics().serialize()),
        st.just(p.ComResetConnection().serialize()),
        st.builds(lambda o: p.ComSetOption(o).serialize(), st.sampled_from([0, 1])),
        st.just(p.ComChangeUser("root", b"", "mysql", 45, NATIVE, ()).serialize(CLIENT_CAPS)),
        st.builds(
            lambda c, rest: bytes((c,)) + rest,
            st.sampled_from([0, 5, 6, 7, 8, 10, 11, 12, 13, 15, 18, 29, 30, 250, 0xFF]),
            st.binary(max_size=6),
        ),
    )


@st.composite
def mutated(draw: st.DrawFn, payloads: st.SearchStrategy[bytes]) -> bytes:
    """A valid payload with one thing wrong, framed (or with its framing wrong), or garbage."""
    raw = draw(payloads)
    seq = draw(st.sampled_from([0, 0, 1, 2, 255]))
    how = draw(st.sampled_from(["flip", "truncate", "extend", "length", "huge", "seq", "garbage", "empty"]))
    if how == "flip" and raw:
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes((raw[i] ^ draw(st.integers(1, 255)),)) + raw[i + 1 :]
    elif how == "truncate" and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif how == "extend":
        raw += draw(st.binary(min_size=1, max_size=8))
    elif how == "length":
        n = draw(st.integers(0, 0xFFFFFF))
        return n.to_bytes(3, "little") + bytes((seq,)) + raw
    elif how == "huge":
        return draw(st.integers(10_001, 0xFFFFFF)).to_bytes(3, "little") + bytes((seq,)) + raw[:8]
    elif how == "garbage":
        return draw(st.binary(max_size=24))
    elif how == "empty":
        raw = b""
    return frame_all(raw, seq=seq)


# ---------------------------------------------------------------------------------------------
# 1. Before login: handshakes, SSL requests, auth answers and garbage
# ---------------------------------------------------------------------------------------------


@st.composite
def login_packets(draw: st.DrawFn, nonce: bytes) -> list[bytes]:
    """Payloads a client might send during login, right or wrong, valid or not."""
    caps = draw(
        st.sampled_from([CLIENT_CAPS, CLIENT_CAPS | p.CLIENT_SSL, CLIENT_CAPS & ~p.CLIENT_PROTOCOL_41])
        | st.integers(0, 2**32 - 1)
    )
    user = draw(st.sampled_from(["alice", "ghost", "nohash", ""]))
    pw = draw(st.sampled_from(["pw", "nope", ""]))
    plugin = draw(st.sampled_from([NATIVE, SHA2, "mysql_clear_password", "x"]))

    def response() -> bytes:
        try:
            return handshake(nonce, user=user, password=pw, plugin=plugin, caps=caps).serialize()
        except p.PacketError:
            return b"\x00" * 32

    out = draw(
        st.lists(
            st.one_of(
                st.just(response()),
                st.builds(
                    lambda c: p.SSLRequest(c | p.CLIENT_SSL, 1 << 24, 45).serialize(),
                    st.sampled_from([CLIENT_CAPS, 0]),
                ),
                st.sampled_from([b"\x02", b"pw\0", b"pw", b"", auth.sha2_scramble(b"pw", nonce)]),
                st.builds(
                    lambda pw: auth.encrypt_password(pw, nonce, RSA.public_pem()),
                    st.sampled_from([b"pw", b"x"]),
                ),
                st.binary(max_size=40),
            ),
            min_size=1,
            max_size=5,
        )
    )
    return out


@FUZZ
@given(st.data(), st.booleans())
def test_client_anything_before_login_closes_cleanly(data: st.DataObject, tls: bool) -> None:
    s, gate = session(tls=tls)
    add_user(gate)
    add_user(gate, "nohash", native=False)
    t = Trace(s)
    (g,) = t.add(s.greeting())
    nonce = greeting_nonce(g)  # type: ignore[arg-type]
    payloads = data.draw(login_packets(nonce))
    seqs = data.draw(st.sampled_from(["right", "right", "random"]))
    blob = b""
    for i, payload in enumerate(payloads):
        seq = 2 * i + 1 if seqs == "right" else data.draw(st.integers(0, 255))
        blob += frame_all(payload, seq=seq)
    blob += b"".join(data.draw(st.lists(mutated(st.binary(max_size=40)), max_size=2)))
    for chunk in chunked(data.draw, blob):
        out = t.add(s.handle(ClientData(chunk)))
        if any(isinstance(c, StartTLS) for c in out):
            t.add(s.handle(TlsEstablished()))
    t.add(s.handle(ClientClosed()))

    t.check_close_discipline()
    assert s.phase is Phase.CLOSED
    errors_in(t.to_client())
    # 08S01 a violation, 28000 a wrong password, 42000 (1115) a client charset maskgate cannot read.
    check_violation_close(t, ("08S01", "28000", "42000"))
    assert not any(isinstance(c, SendUpstream) for c in t.commands())  # nothing upstream before login
    opened = any(isinstance(c, OpenUpstream) for c in t.commands())
    if opened:  # only a person who proved their password gets an upstream
        assert s.ctx.tracker.principal is not None and gate.auth_failures == 0


# ---------------------------------------------------------------------------------------------
# 2. After login: the client sends anything
# ---------------------------------------------------------------------------------------------


@FUZZ
@given(st.data())
def test_client_anything_after_login_closes_cleanly(data: st.DataObject) -> None:
    """No upstream answers: everything the client gets is the proxy's own, and a violation is
    its last word."""
    s, _, _ = login()
    t = Trace(s)
    framed = st.builds(lambda c: frame_all(c), command())
    msgs = data.draw(
        st.lists(framed | mutated(command()) | st.just(frame_all(p.ComQuit().serialize())), max_size=10)
    )
    for chunk in chunked(data.draw, b"".join(msgs)):
        t.add(s.handle(ClientData(chunk)))
    t.check_close_discipline()
    errs = errors_in(t.to_client())
    close = t.close()
    if close is not None and close.reason != "client quit":
        assert close.reason.startswith(("protocol violation", "client protocol violation")), close
        check_violation_close(t)
        assert all(e.sqlstate != "08S01" for e in errs[:-1])
    packets(t.to_upstream())  # only whole packets ever go upstream
    if close is not None:
        assert s.handle(ClientData(frame_all(b"\x03SELECT 1"))) == []
        assert s.handle(UpstreamData(frame_all(ok().serialize(CLIENT_CAPS), seq=1))) == []


# ---------------------------------------------------------------------------------------------
# 3. Well-formed commands through a fake server: usable, and nothing leaks
# ---------------------------------------------------------------------------------------------


@st.composite
def reading_command(draw: st.DrawFn) -> bytes:
    """A command that reads the masked column, or one that changes the state around it
    (statements prepared and closed, cursors opened and fetched, resets, warnings), weighted so
    cursors do get fetched: the fake server numbers statements 1, 2, 3… in prepare order."""
    kind = draw(
        st.sampled_from(
            [
                *("phone", "phone", "multi", "prepare", "prepare", "execute", "cursor", "cursor"),
                *("fetch", "fetch", "fetch", "close", "reset", "warnings", "reset_conn", "other"),
            ]
        )
    )
    sid = draw(st.sampled_from([1, 1, 2, 3]))
    if kind == "phone":
        return p.ComQuery(b"SELECT phone FROM c").serialize()
    if kind == "multi":
        return p.ComQuery(MULTI_SQL.encode()).serialize()
    if kind == "prepare":
        return p.ComStmtPrepare(b"SELECT phone FROM c WHERE id = ?").serialize()
    if kind in ("execute", "cursor"):
        return execute_payload(sid, p.CURSOR_TYPE_READ_ONLY if kind == "cursor" else 0)
    if kind == "fetch":
        return p.ComStmtFetch(sid, draw(st.sampled_from([1, 2, 5]))).serialize()
    if kind == "close":
        return p.ComStmtClose(sid).serialize()
    if kind == "reset":
        return p.ComStmtReset(sid).serialize()
    if kind == "warnings":
        return p.ComQuery(b"SHOW WARNINGS").serialize()
    if kind == "reset_conn":
        return p.ComResetConnection().serialize()
    return draw(command())


@FUZZ
@given(st.data(), st.booleans())
def test_random_interleavings_never_leak_the_masked_column(data: st.DataObject, role: bool) -> None:
    """Random valid commands (refusals, unknown statement ids, cursors, resets, multi-statement
    strings, LOCAL INFILE), pipelined, with the client's and the server's bytes split at random:
    nothing closes, SECRET never reaches the client, and the session stays usable."""
    maria = FakeMaria(rows=data.draw(st.integers(0, 6)))
    s, _, _ = login(database_role="analyst" if role else None, maria=maria)
    t = Trace(s)
    start = []
    if data.draw(st.booleans()):  # a cursor open from the start: its fetches interleave with the rest
        start = [p.ComStmtPrepare(b"SELECT phone FROM c WHERE id = ?").serialize(), execute_payload(1, 1)]
    msgs = [frame_all(c) for c in start + data.draw(st.lists(reading_command(), max_size=14))]
    held = b""  # forwarded but not answered yet: the server answers when it likes
    for chunk in chunked(data.draw, b"".join(msgs)):
        held += upstream_of(t.add(s.handle(ClientData(chunk))))
        if data.draw(st.booleans()):
            pump(t, maria, held, data.draw)
            held = b""
    pump(t, maria, held, data.draw)

    t.check_close_discipline()
    assert s.phase is Phase.RELAY, t.close()
    errors_in(t.to_client())
    assert SECRET not in t.to_client()
    assert s.idle

    # Usable: a plain statement goes through and comes back masked.
    maria.rows = 1
    before = len(t.to_client())
    pump(t, maria, upstream_of(t.add(s.handle(ClientData(frame_all(b"\x03SELECT phone FROM c"))))))
    answer = t.to_client()[before:]
    assert [pk for _, pk in packets(answer)][-2] == text_row(MASKED).serialize()
    assert SECRET not in t.to_client() and s.idle


# ---------------------------------------------------------------------------------------------
# 4. A broken upstream, while a statement reading the masked column is in flight
# ---------------------------------------------------------------------------------------------

TYPES = st.sampled_from([253, 254, 15, 252, 245, 3, 8, 5, 246, 12, 10, 11, 6, 16, 247, 255]) | st.integers(
    0, 255
)
CHARSETS = st.sampled_from([45, 33, 63, 8, 28, 1]) | st.integers(0, 0xFFFF)


@st.composite
def server_payload(draw: st.DrawFn, binary: bool) -> bytes:
    kind = draw(
        st.sampled_from(
            ["count", "col", "col", "eof", "row", "row", "row", "rowbad", "ok", "err", "infile", "garbage"]
        )
    )
    if kind == "count":
        return p.ColumnCount(draw(st.sampled_from([1, 1, 2, 0xFB, 300]))).serialize() if True else b""
    if kind == "col":
        c = column(draw(st.sampled_from([b"phone", b"x"])), draw(TYPES), draw(CHARSETS))
        return c.serialize()
    if kind == "eof":
        status = draw(
            st.sampled_from(
                [
                    2,
                    2 | p.SERVER_MORE_RESULTS_EXISTS,
                    2 | p.SERVER_STATUS_CURSOR_EXISTS,
                    2 | p.SERVER_STATUS_LAST_ROW_SENT,
                ]
            )
            | st.integers(0, 0xFFFF)
        )
        return eof(status, draw(st.integers(0, 0xFFFF))).serialize()
    if kind == "row":
        first = draw(st.sampled_from([SECRET, b"call " + SECRET, SECRET + b".5", b"+86" + SECRET]))
        rest = draw(st.lists(st.none() | st.binary(max_size=6), max_size=2))
        if binary:
            cols = tuple([PHONE_COL] * (1 + len(rest)))
            return binary_row(first, *rest, cols=cols)
        return text_row(first, *rest).serialize()
    if kind == "rowbad":
        good = binary_row(SECRET) if binary else text_row(SECRET).serialize()
        how = draw(st.sampled_from(["cut", "extra", "len", "head"]))
        if how == "cut":
            return good[: draw(st.integers(0, len(good) - 1))]
        if how == "extra":
            return good + draw(st.binary(min_size=1, max_size=6))
        if how == "len":
            return bytes((draw(st.integers(0, 255)),)) + good[1:]
        return bytes((draw(st.sampled_from([0x00, 0xFB, 0xFC, 0xFE, 0xFF])),)) + good
    if kind == "ok":
        return p.OK(0, 0, draw(st.sampled_from([2, 2 | p.SERVER_MORE_RESULTS_EXISTS])), 0).serialize(
            CLIENT_CAPS
        )
    if kind == "err":
        msg = draw(st.sampled_from([f"Duplicate entry '{SECRET.decode()}'", "x", ""]))
        return p.ERR(draw(st.sampled_from([1062, 1317, 0xFFFF])), "23000", msg).serialize()
    if kind == "infile":
        return p.LocalInfileRequest(b"/etc/" + SECRET).serialize()
    return draw(st.binary(max_size=16))


@FUZZ
@given(st.data())
def test_broken_upstream_mid_statement_fails_closed(data: st.DataObject) -> None:
    """The statement in flight masks column 0 (SECRET); whatever the server answers, SECRET
    never reaches the client, and a broken answer closes with 08S01."""
    s, _, _pb = login()
    binary = data.draw(st.booleans())
    if binary:
        prep = p.ComStmtPrepare(b"SELECT phone FROM c WHERE id = ?")
        s.handle(ClientData(frame_all(prep.serialize())))
        answer = [p.StmtPrepareOK(1, 1, 1, 0), column(b"?"), eof(), PHONE_COL, eof()]
        s.handle(UpstreamData(wire(1, *answer)))
        flags = data.draw(st.sampled_from([0, p.CURSOR_TYPE_READ_ONLY]))
        s.handle(ClientData(frame_all(execute_payload(1, flags))))
    else:
        s.handle(ClientData(frame_all(b"\x03SELECT phone FROM c")))
    t = Trace(s)
    prefix = []
    if data.draw(st.booleans()):  # a valid head, so the rows are reached
        status = p.SERVER_STATUS_AUTOCOMMIT | (
            p.SERVER_STATUS_CURSOR_EXISTS if data.draw(st.booleans()) else 0
        )
        prefix = [p.ColumnCount(1).serialize(), PHONE_COL.serialize(), eof(status).serialize()]
    payloads = prefix + data.draw(st.lists(server_payload(binary), max_size=10))
    seq_mode = data.draw(st.sampled_from(["right", "random"]))
    blob = b""
    for i, payload in enumerate(payloads):
        blob += frame_all(payload, seq=i + 1 if seq_mode == "right" else data.draw(st.integers(0, 255)))
    # A fetch after the head, when a cursor was asked for: the rows come then.
    for chunk in chunked(data.draw, blob):
        t.add(s.handle(UpstreamData(chunk)))
        if data.draw(st.booleans()) and binary:
            t.add(s.handle(ClientData(frame_all(p.ComStmtFetch(1, 2).serialize()))))
    t.add(s.handle(UpstreamClosed()))

    t.check_close_discipline()
    assert s.phase is Phase.CLOSED
    check_violation_close(t, ("08S01", "42000"))
    errors_in(t.to_client(), foreign=("",))
    assert SECRET not in t.to_client()


@FUZZ
@given(st.data())
def test_broken_upstream_during_login_fails_closed(data: st.DataObject) -> None:
    s, gate = session()
    add_user(gate)
    nonce = greeting_nonce(s.greeting()[0])  # type: ignore[arg-type]
    t = Trace(s)
    t.add(s.handle(ClientData(wire(1, handshake(nonce)))))
    assert s.login.state is LoginState.UPSTREAM_CONNECTING
    early = data.draw(st.booleans())
    if not early:
        t.add(s.handle(UpstreamConnected()))
    maria = FakeMaria()
    good = [p.HandshakeV10.parse(maria.greeting()[4:]).serialize(), ok().serialize(CLIENT_CAPS)]
    auth_packets = st.sampled_from(
        [
            *good,
            p.HandshakeV10("8.0.36", 1, b"x" * 20, CLIENT_CAPS, 45, 2, SHA2).serialize(),
            p.HandshakeV10("5.0", 1, b"x" * 20, p.CLIENT_SECURE_CONNECTION, 45, 2, NATIVE).serialize(),
            p.AuthSwitchRequest(SHA2, b"y" * 20 + b"\0").serialize(),
            p.AuthSwitchRequest("dialog", b"").serialize(),
            p.AuthMoreData(b"\x03").serialize(),
            p.AuthMoreData(b"\x04").serialize(),
            p.AuthMoreData(RSA.public_pem()).serialize(),
            p.AuthMoreData(b"-----BEGIN junk").serialize(),
            b"\xfe",
            p.ERR(1045, "28000", "Access denied").serialize(),
            b"\xff\xff\xff",
        ]
    )
    payloads = data.draw(st.lists(auth_packets | st.binary(max_size=20), max_size=6))
    blob = b""
    for i, payload in enumerate(payloads):
        blob += frame_all(payload, seq=2 * i if data.draw(st.booleans()) else data.draw(st.integers(0, 255)))
    for chunk in chunked(data.draw, blob):
        t.add(s.handle(UpstreamData(chunk)))
    if early and s.phase is not Phase.CLOSED:
        t.add(s.handle(UpstreamConnected()))
    t.add(s.handle(UpstreamClosed()))

    t.check_close_discipline()
    assert s.phase is Phase.CLOSED
    check_violation_close(t, ("08S01",))
    errors_in(t.to_client(), foreign=("",))
    # The person only ever hears maskgate's OK once the server's login ended in its OK.
    oks = [pk for _, pk in packets(t.to_client()) if p.is_ok(pk)]
    assert len(oks) <= 1


@FUZZ
@given(st.data())
def test_a_client_gone_mid_stream_leaves_no_statement_unrecorded(data: st.DataObject) -> None:
    """The client goes away at a random moment of a random interleaving: nothing more reaches
    it, the upstream is drained when a statement still runs, the session ends, and every
    statement that got a write-ahead record got its end record too."""
    maria = FakeMaria(rows=data.draw(st.integers(0, 6)))
    s, gate, _ = login(maria=maria)
    t = Trace(s)
    msgs = [frame_all(c) for c in data.draw(st.lists(reading_command(), min_size=1, max_size=10))]
    chunks = chunked(data.draw, b"".join(msgs))
    gone_at = data.draw(st.integers(0, len(chunks)))
    held = b""
    for i, chunk in enumerate(chunks):
        if i == gone_at:
            break
        held += upstream_of(t.add(s.handle(ClientData(chunk))))
        if data.draw(st.booleans()):
            pump(t, maria, held, data.draw)
            held = b""
    seen = len(t.to_client())
    out = t.add(s.handle(ClientClosed()))
    pump(t, maria, held, data.draw)
    if s.phase is not Phase.CLOSED:  # the server never answered: it closes
        t.add(s.handle(UpstreamClosed()))

    t.check_close_discipline()
    assert s.phase is Phase.CLOSED
    assert len(t.to_client()) == seen, "the client got something after it was gone"
    assert not any(isinstance(c, SendClient) for c in out)
    begun = {r.id for r in gate.begun}
    ended = {r.id for r in gate.records if r.event == "end"}
    assert begun <= ended, begun - ended
    assert SECRET not in t.to_client()


OTHER_COMMANDS = [
    p.ComStmtPrepare(b"SELECT phone FROM c WHERE id = ?").serialize(),
    p.ComFieldList(b"c", b"").serialize(),
    p.ComSetOption(0).serialize(),
    p.ComPing().serialize(),
    p.ComInitDb(b"crm").serialize(),
    p.ComResetConnection().serialize(),
    p.ComStmtReset(1).serialize(),
]


@FUZZ
@given(st.data())
def test_broken_upstream_answering_any_command_fails_closed(data: st.DataObject) -> None:
    """Whatever command is in flight, a server answering with rows, garbage or the wrong packet
    never gets SECRET to the client: what is not the answer the command has is a violation."""
    s, _, _ = login(database_role=data.draw(st.sampled_from([None, "analyst"])))
    s.handle(ClientData(frame_all(OTHER_COMMANDS[0])))
    answer = [p.StmtPrepareOK(1, 1, 1, 0), column(b"?"), eof(), PHONE_COL, eof()]
    s.handle(UpstreamData(wire(1, *answer)))
    t = Trace(s)
    t.add(s.handle(ClientData(frame_all(data.draw(st.sampled_from(OTHER_COMMANDS))))))
    payloads = data.draw(st.lists(server_payload(data.draw(st.booleans())), max_size=8))
    blob = b"".join(frame_all(pk, seq=i + 1) for i, pk in enumerate(payloads))
    for chunk in chunked(data.draw, blob):
        t.add(s.handle(UpstreamData(chunk)))
    t.add(s.handle(UpstreamClosed()))

    t.check_close_discipline()
    assert s.phase is Phase.CLOSED
    check_violation_close(t, ("08S01", "42000"))
    errors_in(t.to_client(), foreign=("",))
    for _, pk in packets(t.to_client()):
        if p.is_ok(pk):
            # An OK's counters and status are numbers the server gives (a row sent in its place
            # parses as one, SECRET's digits falling across them); its free text is checked.
            assert SECRET not in p.OK.parse(pk, CLIENT_CAPS).info
        else:
            assert SECRET not in pk
