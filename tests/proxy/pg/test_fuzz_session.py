"""Property tests for the PostgreSQL session: a malformed packet closes only that connection.

Whatever bytes a client or a broken upstream sends, no exception leaves `handle(event)`, the
client never sees a Python exception text, a protocol violation is answered with a FATAL
ErrorResponse (08P01, or the documented code) and a `Close`, and nothing follows the `Close`.
A well-formed but refused statement leaves the session usable. A small fake PostgreSQL backend
answers what the proxy forwards, so pipelines run end to end without a network.
"""

from __future__ import annotations

import itertools
import struct

import scramp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.decision import Allow, ColumnMask
from proxy.core.commands import Close, Command, SendClient, SendUpstream, StartTLS
from proxy.core.events import (
    ClientClosed,
    ClientData,
    TlsEstablished,
    UpstreamClosed,
    UpstreamConnected,
    UpstreamData,
)
from proxy.pg import errors
from proxy.pg import messages as m
from proxy.pg.context import SessionConfig
from proxy.pg.framing import Framer
from proxy.pg.login import LoginState
from proxy.pg.relay import ClientPhase, Relay
from proxy.pg.session import PgSession, Phase
from tests.proxy.pg.fakegate import FakeGate
from tests.proxy.pg.transcripts import CFG, decide, login, sasl_data

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECRET = b"13912345678"  # a mobile number: every restricted result in these tests masks it
VIOLATION = m.ErrorResponse(
    (("S", "FATAL"), ("V", "FATAL"), ("C", "08P01"), ("M", "maskgate: protocol violation"))
).serialize()
I32 = struct.Struct("!i")


def is_violation(data: bytes) -> bool:
    """One FATAL 08P01 of the proxy's own (the framer's refusals say what was wrong)."""
    if data == VIOLATION:
        return True
    if data[:1] != b"E" or I32.unpack_from(data, 1)[0] + 1 != len(data):
        return False
    err = m.ErrorResponse.parse(memoryview(data)[5:])
    return err.code == "08P01" and err.message.startswith("maskgate: ")


# ---------------------------------------------------------------------------------------------
# Driving a session and checking the contract
# ---------------------------------------------------------------------------------------------


class Trace:
    """Every command list a session returned, in order."""

    def __init__(self, s: PgSession) -> None:
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


def from_client(s: PgSession, data: bytes) -> list[Command]:
    return s.handle(ClientData(data))


def from_upstream(s: PgSession, data: bytes) -> list[Command]:
    return s.handle(UpstreamData(data))


def quiet(s: PgSession) -> bool:
    """Nothing in flight and the client side not skipping until a Sync."""
    relay = s.relay
    return isinstance(relay, Relay) and not relay.queue and relay.client_phase is ClientPhase.RELAY


def frames(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split a typed stream into (type, body); the proxy only ever sends whole messages."""
    f = Framer(max_message=1 << 30)
    buf, it = f.feed(data)
    out = [(t, buf[s + 5 : e]) for t, s, e in it]
    assert f.buffered == 0, "a partial message was sent"
    return out


def check_client_stream(data: bytes, *, foreign_prefixes: tuple[str, ...] = ()) -> list[tuple[bytes, bytes]]:
    """The client stream is well framed and every error or notice the proxy wrote is short and
    its own (`maskgate: ...`), never a Python exception text."""
    msgs = frames(data)
    for t, body in msgs:
        if t in (b"E", b"N"):
            err = m.ErrorResponse.parse(body)
            assert err.message.startswith(("maskgate: ", *foreign_prefixes)), err
            text = " ".join(v for _, v in err.fields)
            for marker in ("Traceback", "Error(", "struct.error", "invalid literal", "unpack"):
                assert marker not in text, err
    return msgs


def check_violation_close(t: Trace, codes: tuple[str, ...] = ("08P01",)) -> None:
    """If the session closed for anything but an orderly end, the client was told why, last."""
    close = t.close()
    if close is None or close.reason in ("client terminated", "client closed", "cancel request"):
        return
    msgs = frames(t.to_client())
    assert msgs, f"closed ({close.reason}) without telling the client"
    kind, body = msgs[-1]
    assert kind == b"E", f"closed ({close.reason}) but the last message is {kind!r}"
    err = m.ErrorResponse.parse(body)
    assert err.get("S") == "FATAL" and err.code in codes, (close.reason, err)


def chunked(draw: st.DrawFn, blob: bytes) -> list[bytes]:
    cuts = sorted(set(draw(st.lists(st.integers(0, len(blob)), max_size=6))))
    bounds = [0, *cuts, len(blob)]
    return [blob[a:b] for a, b in itertools.pairwise(bounds) if b > a] or [b""]


# ---------------------------------------------------------------------------------------------
# A fake PostgreSQL backend: enough of the protocol to answer what the proxy forwards
# ---------------------------------------------------------------------------------------------


def _err(code: str, severity: str = "ERROR") -> bytes:
    return m.ErrorResponse((("S", severity), ("C", code), ("M", f"fake: {code}"))).serialize()


class FakePg:
    """Every statement returns one text column `x` holding SECRET, one row."""

    def __init__(self) -> None:
        self.framer = Framer()
        self.txn = b"I"
        self.failed = False  # extended protocol: skip until Sync
        self.stmts: dict[str, int] = {}  # name -> parameter count
        self.portals: dict[str, list[int]] = {}  # name -> [result format, rows left]

    def feed(self, data: bytes) -> bytes:
        buf, it = self.framer.feed(data)
        return b"".join(self._one(t, buf[s + 5 : e]) for t, s, e in it)

    def _rd(self, fmt: int = 0) -> bytes:
        return m.RowDescription((m.FieldDescription("x", 0, 0, 25, -1, -1, fmt),)).serialize()

    def _row(self) -> bytes:
        return m.DataRow((SECRET,)).serialize()

    def _fail(self, code: str, *, extended: bool = True) -> bytes:
        if self.txn == b"T":
            self.txn = b"E"
        self.failed = extended  # a simple Query or FunctionCall error does not skip to Sync
        return _err(code)

    def _end_txn_if_idle(self) -> None:
        if self.txn == b"I":
            self.portals.clear()

    def _one(self, t: bytes, body: bytes) -> bytes:
        if self.failed and t != b"S":
            return b""  # after an extended-protocol error everything is skipped until Sync
        if t == b"Q":
            out = self._query(m.Query.parse(body).sql.strip())
            self.failed = False
            self._end_txn_if_idle()
            return out + m.ReadyForQuery(self.txn).serialize()
        if t == b"F":
            out = (
                self._fail("25P02", extended=False)
                if self.txn == b"E"
                else m.FunctionCallResponse(None).serialize()
            )
            return out + m.ReadyForQuery(self.txn).serialize()
        if t == b"S":
            self.failed = False
            self._end_txn_if_idle()
            return m.ReadyForQuery(self.txn).serialize()
        if t in (b"H", b"d", b"c", b"f", b"X"):
            return b""  # Flush; COPY messages outside COPY are ignored, as PostgreSQL does
        if t == b"P":
            p = m.Parse.parse(body)
            if self.txn == b"E":
                return self._fail("25P02")
            if p.name and p.name in self.stmts:
                return self._fail("42P05")
            self.stmts[p.name] = len(p.param_types)
            return m.ParseComplete().serialize()
        if t == b"B":
            bd = m.Bind.parse(body)
            if bd.statement not in self.stmts:
                return self._fail("26000")
            if self.txn == b"E":
                return self._fail("25P02")
            if len(bd.param_formats) not in (0, 1, len(bd.params)) or len(bd.result_formats) > 1:
                return self._fail("08P01")
            if len(bd.params) != self.stmts[bd.statement]:
                return self._fail("08P01")
            if any(f not in (0, 1) for f in bd.param_formats + bd.result_formats):
                return self._fail("22023")
            if bd.portal and bd.portal in self.portals:
                return self._fail("42P03")
            self.portals[bd.portal] = [bd.result_formats[0] if bd.result_formats else 0, 1]
            return m.BindComplete().serialize()
        if t == b"D":
            d = m.Describe.parse(body)
            if d.kind == b"S":
                if d.name not in self.stmts:
                    return self._fail("26000")
                if self.txn == b"E":
                    return self._fail("25P02")
                n = self.stmts[d.name]
                return m.ParameterDescription((25,) * n).serialize() + self._rd()
            if d.name not in self.portals:
                return self._fail("34000")
            if self.txn == b"E":
                return self._fail("25P02")
            return self._rd(self.portals[d.name][0])
        if t == b"E":
            e = m.Execute.parse(body)
            if e.portal not in self.portals:
                return self._fail("34000")
            if self.txn == b"E":
                return self._fail("25P02")
            portal = self.portals[e.portal]
            if 0 < e.max_rows <= portal[1]:
                portal[1] -= e.max_rows
                return self._row() * e.max_rows + m.PortalSuspended().serialize()
            n, portal[1] = portal[1], 0
            return self._row() * n + m.CommandComplete(f"SELECT {n}").serialize()
        if t == b"C":
            c = m.Close.parse(body)
            (self.stmts if c.kind == b"S" else self.portals).pop(c.name, None)
            return m.CloseComplete().serialize()
        raise AssertionError(f"the proxy forwarded an unknown message {t!r}")

    def _query(self, sql: str) -> bytes:
        word = sql.rstrip(";").strip().upper()
        if self.txn == b"E" and word not in ("ROLLBACK", "COMMIT"):
            return self._fail("25P02")
        if sql.startswith("maskgate_refused"):
            return self._fail("42601")
        if not sql.strip(" ;"):
            return m.EmptyQueryResponse().serialize()
        if word == "BEGIN":
            self.txn = b"T"
            return m.CommandComplete("BEGIN").serialize()
        if word in ("COMMIT", "ROLLBACK"):
            tag = "ROLLBACK" if self.txn == b"E" else word
            self.txn = b"I"
            return m.CommandComplete(tag).serialize()
        return self._rd() + self._row() + m.CommandComplete("SELECT 1").serialize()


def upstream_bytes(out: list[Command]) -> bytes:
    return b"".join(c.data for c in out if isinstance(c, SendUpstream))


def pump(t: Trace, pg: FakePg, data: bytes) -> None:
    """Let the backend answer what the proxy sent upstream, until nothing more is sent."""
    while data and t.s.phase is not Phase.CLOSED:
        reply = pg.feed(data)
        if not reply:
            return
        data = upstream_bytes(t.add(from_upstream(t.s, reply)))


# ---------------------------------------------------------------------------------------------
# Frontend messages: well formed with random fields, and broken ones
# ---------------------------------------------------------------------------------------------

NAMES = st.sampled_from(["", "s1", "s2", "p1"])
NUL_FREE = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20)
SQLS = (
    st.sampled_from(
        [
            "SELECT x FROM t",
            "SELECT phone FROM c",
            "SELECT * FROM secrets",
            "",
            " ; ",
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
        ]
    )
    | NUL_FREE
)
I16 = st.integers(-(2**15), 2**15 - 1)
FORMATS = st.sampled_from([0, 1, 0, 1, -1, 7]) | I16
VALUE = st.none() | st.binary(max_size=8)


def frontend(sqls: st.SearchStrategy[str] = SQLS) -> st.SearchStrategy[bytes]:
    """One well-formed frontend message (after login, Terminate excluded)."""
    msgs = st.one_of(
        st.builds(m.Query, sqls),
        st.builds(m.Parse, NAMES, sqls, st.lists(st.integers(0, 2**32 - 1), max_size=3).map(tuple)),
        st.builds(
            m.Bind,
            NAMES,
            NAMES,
            st.lists(FORMATS, max_size=3).map(tuple),
            st.lists(VALUE, max_size=3).map(tuple),
            st.lists(FORMATS, max_size=3).map(tuple),
        ),
        st.builds(m.Describe, st.sampled_from([b"S", b"P"]), NAMES),
        st.builds(
            m.Execute, NAMES, st.sampled_from([0, 1, 2, -1, 2**31 - 1]) | st.integers(-(2**31), 2**31 - 1)
        ),
        st.builds(m.Close, st.sampled_from([b"S", b"P"]), NAMES),
        st.just(m.Sync()),
        st.just(m.Flush()),
        st.builds(m.CopyData, st.binary(max_size=16)),
        st.just(m.CopyDone()),
        st.builds(m.CopyFail, NUL_FREE),
        st.builds(
            m.FunctionCall,
            st.integers(0, 2**32 - 1),
            st.lists(FORMATS, max_size=2).map(tuple),
            st.lists(VALUE, max_size=2).map(tuple),
            FORMATS,
        ),
    )
    return msgs.map(lambda msg: msg.serialize())


@st.composite
def broken(draw: st.DrawFn) -> bytes:
    """A frontend message with one thing wrong, or plain garbage."""
    raw = draw(frontend())
    how = draw(
        st.sampled_from(
            ["length", "truncate", "no-nul", "type", "junk", "garbage", "huge", "zero", "negative"]
        )
    )
    if how == "length":
        return raw[:1] + I32.pack(draw(st.integers(-(2**31), 2**31 - 1))) + raw[5:]
    if how == "huge":
        return raw[:1] + I32.pack(draw(st.integers(2**26, 2**31 - 1))) + raw[5:]
    if how == "zero":
        return raw[:1] + I32.pack(draw(st.integers(0, 3))) + raw[5:]
    if how == "negative":
        return raw[:1] + I32.pack(draw(st.integers(-(2**31), -1))) + raw[5:]
    if how == "truncate" and len(raw) > 5:
        body = raw[5 : draw(st.integers(5, len(raw) - 1))]
        return raw[:1] + I32.pack(len(body) + 4) + body
    if how == "no-nul" and raw.endswith(b"\0"):
        body = raw[5:-1]
        return raw[:1] + I32.pack(len(body) + 4) + body
    if how == "type":
        return draw(st.binary(min_size=1, max_size=1)) + raw[1:]
    if how == "junk":
        body = raw[5:] + draw(st.binary(min_size=1, max_size=8))
        return raw[:1] + I32.pack(len(body) + 4) + body
    return draw(st.binary(max_size=24))


# ---------------------------------------------------------------------------------------------
# 1. After login: the client sends anything
# ---------------------------------------------------------------------------------------------


@FUZZ
@given(st.data())
def test_client_garbage_after_login_closes_cleanly(data: st.DataObject) -> None:
    s, _, _ = login()
    t = Trace(s)
    msgs = data.draw(st.lists(frontend() | broken() | st.just(m.Terminate().serialize()), max_size=12))
    for chunk in chunked(data.draw, b"".join(msgs)):
        t.add(from_client(s, chunk))
    t.check_close_discipline()
    # No upstream answered, so everything the client got is the proxy's own: one 08P01 at most.
    close = t.close()
    # None: all valid, discarded until Sync, or a message still incomplete.
    if close is None or close.reason == "client terminated":
        assert t.to_client() == b""
    else:
        assert close.reason.startswith("client protocol violation"), close
        assert is_violation(t.to_client())
    frames(t.to_upstream())  # only whole messages ever go upstream
    if close is not None:
        assert from_client(s, b"Q") == [] and from_upstream(s, b"Z\x00\x00\x00\x05I") == []


@FUZZ
@given(st.data())
def test_well_formed_pipelines_keep_the_session_usable(data: st.DataObject) -> None:
    """Random valid messages (refusals, unknown names, bad counts, COPY outside COPY, Sync and
    Flush storms), pipelined in random chunks: every Query, FunctionCall and Sync gets exactly
    one ReadyForQuery, nothing closes, no SECRET reaches the client, the session stays usable."""
    s, _, _ = login()
    t = Trace(s)
    pg = FakePg()
    msgs = [*data.draw(st.lists(frontend(), max_size=14)), m.Sync().serialize()]
    held = b""  # forwarded but not answered yet: the backend answers when it likes
    for chunk in chunked(data.draw, b"".join(msgs)):
        held += upstream_bytes(t.add(from_client(s, chunk)))
        if data.draw(st.booleans()):
            pump(t, pg, held)
            held = b""
    pump(t, pg, held)

    t.check_close_discipline()
    assert s.phase is Phase.RELAY, t.close()
    client = check_client_stream(t.to_client(), foreign_prefixes=("fake: ",))
    # One ReadyForQuery per Sync, plus one per Query or FunctionCall not skipped after an
    # extended-protocol error (PostgreSQL skips those until Sync too); the last word is one.
    syncs = sum(1 for raw in msgs if raw[:1] == b"S")
    ready = sum(1 for k, _ in client if k == b"Z")
    assert syncs <= ready <= sum(1 for raw in msgs if raw[:1] in (b"Q", b"F", b"S"))
    assert client[-1][0] == b"Z"
    assert SECRET not in t.to_client()
    assert quiet(s) and s.ctx.txn == pg.txn

    # Usable: a plain statement goes through and comes back masked.
    pump(t, pg, upstream_bytes(t.add(from_client(s, m.Query("ROLLBACK").serialize()))))
    before = len(t.to_client())
    pump(t, pg, upstream_bytes(t.add(from_client(s, m.Query("SELECT x FROM t").serialize()))))
    answer = [k for k, _ in frames(t.to_client()[before:])]
    assert answer == [b"T", b"D", b"C", b"Z"] and SECRET not in t.to_client()


# ---------------------------------------------------------------------------------------------
# 2. A broken upstream, while a statement is in flight
# ---------------------------------------------------------------------------------------------

OIDS = st.sampled_from([25, 1043, 20, 23, 21, 1700, 17, 16, 3802, 114, 1082, 2950]) | st.integers(
    0, 2**32 - 1
)


@st.composite
def backend_message(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(
            ["T", "D", "D", "D", "Dbad", "C", "Z", "E", "N", "S", "misc", "copy", "unknown", "garbage"]
        )
    )
    if kind == "T":
        fields = draw(
            st.lists(
                st.builds(
                    m.FieldDescription,
                    st.sampled_from(["phone", "x", ""]),
                    st.integers(0, 2**32 - 1),
                    I16,
                    OIDS,
                    I16,
                    st.integers(-(2**31), 2**31 - 1),
                    st.sampled_from([0, 1]) | I16,
                ),
                max_size=3,
            )
        )
        return m.RowDescription(tuple(fields)).serialize()
    if kind == "D":
        first = draw(st.sampled_from([SECRET, b"call " + SECRET, SECRET + b".5", b"\\x" + SECRET]))
        rest = draw(st.lists(st.none() | st.binary(max_size=6), max_size=3))
        return m.DataRow((first, *rest)).serialize()
    if kind == "Dbad":
        good = m.DataRow((SECRET, *draw(st.lists(st.binary(max_size=4), max_size=2)))).serialize()[5:]
        how = draw(st.sampled_from(["count", "cut", "len", "extra"]))
        if how == "count":
            body = struct.pack("!h", draw(I16)) + good[2:]
        elif how == "cut":
            body = good[: draw(st.integers(0, len(good) - 1))]
        elif how == "len":
            body = good[:2] + I32.pack(draw(st.integers(-(2**31), 2**31 - 1))) + good[6:]
        else:
            body = good + draw(st.binary(min_size=1, max_size=6))
        return m.frame(b"D", body)
    if kind == "C":
        return m.CommandComplete(
            draw(st.sampled_from(["SELECT 1", "SELECT 99", "COPY 1", "x", ""]))
        ).serialize()
    if kind == "Z":
        return m.frame(b"Z", draw(st.sampled_from([b"I", b"T", b"E", b"", b"Q", b"II"])))
    if kind in ("E", "N"):
        fields = draw(st.lists(st.tuples(st.sampled_from("SVCMDHWqP"), NUL_FREE), max_size=4))
        return (m.ErrorResponse if kind == "E" else m.NoticeResponse)(tuple(fields)).serialize()
    if kind == "S":
        return m.ParameterStatus(
            draw(st.sampled_from(["search_path", "TimeZone", "x"])), draw(NUL_FREE)
        ).serialize()
    if kind == "misc":
        return draw(st.sampled_from([b"1", b"2", b"3", b"n", b"s", b"I", b"t", b"V", b"G", b"c"])) + I32.pack(
            4
        )
    if kind == "copy":
        return draw(
            st.sampled_from(
                [
                    m.CopyOutResponse(0, (0,)).serialize(),
                    m.CopyOutResponse(0, ()).serialize(),
                    m.CopyOutResponse(1, (1,)).serialize(),
                    m.CopyData(SECRET + b"\n").serialize(),
                    m.CopyData(SECRET + b"\tx\n").serialize(),
                    m.CopyDone().serialize(),
                ]
            )
        )
    if kind == "unknown":
        return m.frame(draw(st.binary(min_size=1, max_size=1)), draw(st.binary(max_size=8)))
    return draw(st.binary(max_size=16))


QUERIES = [
    m.Query("SELECT phone FROM c").serialize(),
    (m.Parse("", "SELECT phone FROM c").serialize() + m.Bind("", "").serialize())
    + (m.Execute("", 0).serialize() + m.Sync().serialize()),
]
EXTENDED_PREFIX = m.ParseComplete().serialize() + m.BindComplete().serialize()


@FUZZ
@given(st.data())
def test_broken_upstream_mid_query_fails_closed(data: st.DataObject) -> None:
    """The statement in flight masks column 0 (SECRET); whatever the upstream answers, SECRET
    never reaches the client and no DataRow the client gets is malformed or has extra columns."""
    s, _, _ = login()
    t = Trace(s)
    extended = data.draw(st.booleans())
    t.add(from_client(s, QUERIES[extended]))
    msgs = data.draw(st.lists(backend_message(), max_size=10))
    blob = (EXTENDED_PREFIX if extended and data.draw(st.booleans()) else b"") + b"".join(msgs)
    for chunk in chunked(data.draw, blob):
        t.add(from_upstream(s, chunk))
    t.add(s.handle(UpstreamClosed()))

    t.check_close_discipline()
    assert s.phase is Phase.CLOSED
    check_violation_close(t, ("08P01", "57P01", "42501"))
    client = check_client_stream(t.to_client(), foreign_prefixes=("",))
    assert SECRET not in t.to_client()
    ncols: int | None = None
    for k, body in client:
        if k == b"T":
            ncols = len(m.RowDescription.parse(body).fields)
        elif k == b"D":
            values = m.DataRow.parse(body).values  # every forwarded row parses
            if not extended:
                assert ncols is not None and len(values) == ncols


@FUZZ
@given(st.data())
def test_broken_upstream_during_login_fails_closed(data: st.DataObject) -> None:
    s = authenticated()
    t = Trace(s)
    t.add(s.handle(UpstreamConnected()))
    auth = st.sampled_from(
        [
            m.frame(b"R", I32.pack(0)),
            m.frame(b"R", I32.pack(3)),
            m.frame(b"R", I32.pack(5) + b"salt"),
            m.frame(b"R", I32.pack(10) + b"SCRAM-SHA-256\0\0"),
            m.frame(b"R", I32.pack(11) + b"r=x,s=!!,i=1"),
            m.frame(b"R", I32.pack(12) + b"v=AAAA"),
            m.frame(b"R", I32.pack(99)),
            m.frame(b"R", b"\x00"),
            m.BackendKeyData(1, b"\0\0\0\1").serialize(),
            m.frame(b"K", b"\0"),
            m.ReadyForQuery(b"I").serialize(),
            m.ParameterStatus("server_version", "17").serialize(),
            m.ParameterStatus("client_encoding", "SJIS").serialize(),
            _err("28P01", "FATAL"),
            m.NoticeResponse((("M", "hi"),)).serialize(),
        ]
    )
    blob = b"".join(data.draw(st.lists(auth | backend_message(), max_size=8)))
    for chunk in chunked(data.draw, blob):
        t.add(from_upstream(s, chunk))
    t.add(s.handle(UpstreamClosed()))

    t.check_close_discipline()
    assert s.phase is Phase.CLOSED
    check_violation_close(t, ("08P01", "08006", "57P01", "42501"))
    check_client_stream(t.to_client(), foreign_prefixes=("",))


# ---------------------------------------------------------------------------------------------
# 3. Before login: startup packets, SSLRequest, SASL messages and garbage
# ---------------------------------------------------------------------------------------------


def authenticated() -> PgSession:
    """A session whose person has logged in, waiting for the upstream (as in `login`)."""
    gate = FakeGate(decide)
    gate.add_user("alice", "pw")
    s = PgSession(gate, CFG, session_id="t", clock=lambda: 0.0)
    from_client(s, m.StartupMessage(m.PROTOCOL_3_0, (("user", "alice"),)).serialize())
    sc = scramp.ScramClient(["SCRAM-SHA-256"], "alice", "pw")
    out = from_client(s, m.SASLInitialResponse("SCRAM-SHA-256", sc.get_client_first().encode()).serialize())
    sc.set_server_first(sasl_data(out[0]))  # type: ignore[arg-type]
    from_client(s, m.SASLResponse(sc.get_client_final().encode()).serialize())
    assert s.login.state is LoginState.UPSTREAM_CONNECTING
    return s


PARAM_KEYS = st.sampled_from(
    ["user", "database", "replication", "client_encoding", "options", "_pq_.x", "application_name", ""]
)
PARAM_VALUES = st.sampled_from(["alice", "ghost", "svc", "crm", "true", "SJIS", "UTF8", ""]) | NUL_FREE


@st.composite
def startup_packet(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["startup", "startup", "ssl", "gss", "cancel", "untyped", "garbage"]))
    if kind == "startup":
        proto = draw(st.sampled_from([m.PROTOCOL_3_0, (3 << 16) | 2, (3 << 16) | 0xFFFF, 2 << 16, 0]))
        params = draw(st.lists(st.tuples(PARAM_KEYS.filter(bool), PARAM_VALUES), max_size=4))
        return m.StartupMessage(proto, tuple(params)).serialize()
    if kind == "ssl":
        return m.SSLRequest().serialize()
    if kind == "gss":
        return m.GSSENCRequest().serialize()
    if kind == "cancel":
        return m.CancelRequest(
            draw(st.integers(-(2**31), 2**31 - 1)), draw(st.binary(max_size=300))
        ).serialize()
    if kind == "untyped":
        body = draw(st.binary(max_size=20))
        return I32.pack(draw(st.sampled_from([len(body) + 4, 0, 7, 8, 10_001, -1]))) + body
    return draw(st.binary(max_size=20))


SASL = st.one_of(
    st.builds(
        m.SASLInitialResponse,
        st.sampled_from(["SCRAM-SHA-256", "PLAIN", ""]),
        st.none() | st.binary(max_size=40),
    ),
    st.builds(
        m.SASLInitialResponse,
        st.just("SCRAM-SHA-256"),
        st.sampled_from([b"n,,n=,r=abc", b"y,,r=x", b"p=tls,,r=x", b"n,,m=1,r=x", b"n,,r=", b"n,,\xff"]),
    ),
    st.builds(m.SASLResponse, st.binary(max_size=40)),
    st.builds(m.SASLResponse, st.sampled_from([b"c=biws,r=abc,p=AAAA", b"c=!!,p=", b",p=", b"\xff"])),
).map(lambda msg: msg.serialize())


@FUZZ
@given(st.data(), st.booleans())
def test_client_garbage_before_login_closes_cleanly(data: st.DataObject, tls: bool) -> None:
    gate = FakeGate(decide)
    gate.add_user("alice", "pw")
    cfg = SessionConfig("svc", "svcpw", "crm", tls_available=tls)
    s = PgSession(gate, cfg, session_id="t", clock=lambda: 0.0)
    t = Trace(s)
    msgs = data.draw(st.lists(startup_packet(), min_size=1, max_size=3))
    msgs += data.draw(st.lists(SASL | broken() | st.just(m.Terminate().serialize()), max_size=4))
    for chunk in chunked(data.draw, b"".join(msgs)):
        out = t.add(from_client(s, chunk))
        if any(isinstance(c, StartTLS) for c in out):
            t.add(s.handle(TlsEstablished()))
    t.add(s.handle(ClientClosed()))

    t.check_close_discipline()
    assert s.phase is Phase.CLOSED
    # Strip the one-byte SSL answers ('N' / 'S'), which are whole commands of their own.
    typed = b"".join(c.data for c in t.commands() if isinstance(c, SendClient) and c.data not in (b"N", b"S"))
    check_client_stream(typed)
    close = t.close()
    assert close is not None
    if close.reason not in ("client terminated", "client closed", "cancel request"):
        kind, body = frames(typed)[-1]
        err = m.ErrorResponse.parse(body)
        assert kind == b"E" and err.get("S") == "FATAL", close
        assert err.code in ("08P01", "0A000", "28000", "28P01", "22023"), (close.reason, err)
    assert not any(isinstance(c, SendUpstream) for c in t.commands())  # nothing upstream before login


# ---------------------------------------------------------------------------------------------
# Regressions the properties found
# ---------------------------------------------------------------------------------------------


def test_upstream_login_failure_tells_the_client_and_closes() -> None:
    # The failure flushed its own commands in the middle of the event, and they were lost.
    for reply in (_err("28P01", "FATAL"), m.frame(b"R", I32.pack(11) + b"r=x,s=!!,i=1")):
        s = authenticated()
        s.handle(UpstreamConnected())
        out = from_upstream(s, reply)
        assert out[0] == SendClient(errors.upstream_unavailable().serialize())
        assert len(out) == 2 and isinstance(out[1], Close) and s.phase is Phase.CLOSED


def masked_int_session() -> PgSession:
    gate = FakeGate(lambda p, sql: Allow(kind="select", columns=(ColumnMask(0, "n", "mobile", "mask"),)))
    s, _, _ = login(gate)
    from_client(s, m.Query("SELECT n FROM t").serialize())
    return s


def test_value_not_of_its_type_closes_with_08p01() -> None:
    # int("call 139...") raised ValueError out of upstream_data.
    for oid, fmt, value in (
        (20, 0, b"call " + SECRET),
        (23, 1, SECRET),
        (1700, 1, b"\x00"),
        (17, 0, b"\\xzz"),
    ):
        s = masked_int_session()
        rd = m.RowDescription((m.FieldDescription("n", 0, 0, oid, -1, -1, fmt),))
        out = from_upstream(s, rd.serialize() + m.DataRow((value,)).serialize())
        assert out == [
            SendClient(errors.protocol_violation("upstream protocol error").serialize()),
            Close("upstream protocol violation: column 0 value does not match its type"),
        ]


def test_datarow_with_undescribed_columns_is_not_passed_on() -> None:
    # No plan (no columns described) or a column beyond the description: passed unmasked.
    for fields in ((), (m.FieldDescription("n", 0, 0, 25, -1, -1, 0),)):
        s = masked_int_session()
        out = from_upstream(s, m.RowDescription(fields).serialize() + m.DataRow((SECRET, SECRET)).serialize())
        assert SECRET not in b"".join(c.data for c in out if isinstance(c, SendClient))
        # Refused as soon as the description has another number of columns than the decision
        # (rows are then swallowed), else closed when a row does not match its description.
        if fields:
            assert isinstance(out[-1], Close) and out[-1].reason.endswith("does not match its RowDescription")
        else:
            assert not any(isinstance(c, SendClient) and c.data.startswith(b"D") for c in out)


def test_copydata_without_copyoutresponse_is_not_passed_on() -> None:
    s = masked_int_session()
    out = from_upstream(s, m.CopyData(SECRET + b"\n").serialize())
    assert out == [
        SendClient(errors.protocol_violation("upstream protocol error").serialize()),
        Close("upstream protocol violation: CopyData outside COPY TO STDOUT"),
    ]


def test_simple_query_skipped_after_an_extended_error_keeps_the_queue_in_step() -> None:
    # PostgreSQL skips a Query after an extended-protocol error until Sync, ReadyForQuery too; the
    # proxy kept waiting for it, and the next statement's answers met a stale Sync and closed.
    for split in (False, True):
        s, _, _ = login()
        t = Trace(s)
        pg = FakePg()
        first = m.Describe(b"S", "nope").serialize() + m.Query("SELECT x FROM t").serialize()
        rest = m.Sync().serialize()
        if split:  # the error arrives before the Query is even sent
            first, rest = m.Describe(b"S", "nope").serialize(), m.Query("SELECT x FROM t").serialize() + rest
        pump(t, pg, upstream_bytes(t.add(from_client(s, first))))
        pump(t, pg, upstream_bytes(t.add(from_client(s, rest))))
        assert [k for k, _ in frames(t.to_client())] == [b"E", b"Z"]
        assert quiet(s)
        pump(t, pg, upstream_bytes(t.add(from_client(s, m.Query("SELECT x FROM t").serialize()))))
        assert [k for k, _ in frames(t.to_client())][2:] == [b"T", b"D", b"C", b"Z"]
        assert s.phase is Phase.RELAY
