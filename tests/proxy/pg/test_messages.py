"""Round trips for every PostgreSQL wire message, and parsing of bytes captured from real peers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.pg import messages as m

FRONTEND_SAMPLES = [
    m.Query("SELECT 1"),
    m.Parse("s1", "SELECT $1::int", (23,)),
    m.Parse("", "SELECT 1"),
    m.Bind("p1", "s1", (1,), (b"\x00\x00\x00\x01", None), (1, 0)),
    m.Bind("", "", (), (), ()),
    m.Describe(b"S", "s1"),
    m.Describe(b"P", ""),
    m.Execute("p1", 100),
    m.Close(b"S", "s1"),
    m.Close(b"P", "p1"),
    m.Sync(),
    m.Flush(),
    m.Terminate(),
    m.FunctionCall(1598, (0,), (b"x", None), 1),
    m.CopyData(b"1\tfoo\n"),
    m.CopyDone(),
    m.CopyFail("client gave up"),
]

BACKEND_SAMPLES = [
    m.ParameterStatus("server_version", "17.2"),
    m.BackendKeyData(1234, b"\x01\x02\x03\x04"),
    m.ReadyForQuery(b"I"),
    m.ReadyForQuery(b"E"),
    m.RowDescription((m.FieldDescription("phone", 16384, 2, 25, -1, -1, 0),)),
    m.RowDescription(()),
    m.DataRow((b"abc", None, b"")),
    m.CommandComplete("SELECT 3"),
    m.EmptyQueryResponse(),
    m.ErrorResponse((("S", "ERROR"), ("C", "42501"), ("M", "maskgate: no"))),
    m.NoticeResponse((("S", "NOTICE"), ("M", "hi"))),
    m.NotificationResponse(7, "chan", "payload"),
    m.ParseComplete(),
    m.BindComplete(),
    m.CloseComplete(),
    m.NoData(),
    m.ParameterDescription((23, 25)),
    m.PortalSuspended(),
    m.CopyInResponse(0, (0, 0)),
    m.CopyOutResponse(1, (1,)),
    m.CopyBothResponse(0, ()),
    m.FunctionCallResponse(b"\x00"),
    m.FunctionCallResponse(None),
    m.NegotiateProtocolVersion(0, ("_pq_.foo",)),
    m.CopyData(b"x"),
    m.CopyDone(),
]

AUTH_SAMPLES = [
    m.AuthenticationOk(),
    m.AuthenticationCleartextPassword(),
    m.AuthenticationMD5Password(b"abcd"),
    m.AuthenticationSASL(("SCRAM-SHA-256", "SCRAM-SHA-256-PLUS")),
    m.AuthenticationSASLContinue(b"r=abc,s=xyz,i=4096"),
    m.AuthenticationSASLFinal(b"v=xyz"),
    m.AuthenticationOther(7),
]


def _split(raw: bytes) -> tuple[bytes, bytes]:
    assert int.from_bytes(raw[1:5], "big") == len(raw) - 1
    return raw[:1], raw[5:]


@pytest.mark.parametrize("msg", FRONTEND_SAMPLES, ids=lambda x: type(x).__name__)
def test_frontend_round_trip(msg: object) -> None:
    mtype, body = _split(msg.serialize())  # type: ignore[attr-defined]
    assert m.parse_frontend(mtype, body) == msg


@pytest.mark.parametrize("msg", BACKEND_SAMPLES + AUTH_SAMPLES, ids=lambda x: type(x).__name__)
def test_backend_round_trip(msg: object) -> None:
    mtype, body = _split(msg.serialize())  # type: ignore[attr-defined]
    assert m.parse_backend(mtype, body) == msg


@pytest.mark.parametrize(
    "msg",
    [
        m.PasswordMessage(b"secret"),
        m.SASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=abc"),
        m.SASLInitialResponse("SCRAM-SHA-256", None),
        m.SASLResponse(b"c=biws,r=abc,p=xyz"),
    ],
    ids=lambda x: type(x).__name__,
)
def test_password_family_round_trip(msg: object) -> None:
    _, body = _split(msg.serialize())  # type: ignore[attr-defined]
    assert type(msg).parse(body) == msg  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "msg",
    [
        m.StartupMessage(m.PROTOCOL_3_0, (("user", "alice"), ("database", "crm"))),
        m.SSLRequest(),
        m.GSSENCRequest(),
        m.CancelRequest(42, b"\x00\x00\x00\x07"),
    ],
    ids=lambda x: type(x).__name__,
)
def test_startup_round_trip(msg: object) -> None:
    raw = msg.serialize()  # type: ignore[attr-defined]
    assert int.from_bytes(raw[:4], "big") == len(raw)
    assert m.parse_startup(raw[4:]) == msg


def test_captured_libpq_startup() -> None:
    # psql 17 startup packet (protocol 3.0, user/database/application_name/client_encoding).
    raw = (
        b"\x00\x00\x00\x57\x00\x03\x00\x00user\x00alice\x00database\x00crm\x00"
        b"application_name\x00psql\x00client_encoding\x00UTF8\x00\x00"
    )
    raw = len(raw).to_bytes(4, "big") + raw[4:]
    msg = m.parse_startup(raw[4:])
    assert isinstance(msg, m.StartupMessage)
    assert msg.param("user") == "alice" and msg.param("client_encoding") == "UTF8"
    assert msg.serialize() == raw


def test_captured_server_messages() -> None:
    # Bytes as sent by PostgreSQL for `SELECT 1` in simple mode.
    rowdesc = (
        b"T\x00\x00\x00\x21\x00\x01?column?\x00"  # one field named ?column?
        b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00"  # int4, text format
    )
    datarow = b"D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x011"
    complete = b"C\x00\x00\x00\x0dSELECT 1\x00"
    ready = b"Z\x00\x00\x00\x05I"
    for raw in (rowdesc, datarow, complete, ready):
        msg = m.parse_backend(raw[:1], raw[5:])
        assert msg.serialize() == raw  # type: ignore[attr-defined]
    rd = m.parse_backend(rowdesc[:1], rowdesc[5:])
    assert isinstance(rd, m.RowDescription) and rd.fields[0].type_oid == 23


def test_non_utf8_strings_round_trip() -> None:
    raw = m.frame(b"Q", b"SELECT '\xe9'\x00")
    msg = m.parse_frontend(b"Q", raw[5:])
    assert msg.serialize() == raw  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("mtype", "body"),
    [
        (b"Q", b"SELECT 1"),  # no terminator
        (b"B", b"\x00\x00\x00\x01"),  # truncated counts
        (b"E", b"p\x00\x00\x00"),  # Execute truncated
        (b"S", b"x"),  # Sync with a body
        (b"D", b"X\x00"),  # bad Describe kind
        (b"?", b""),  # unknown type
    ],
)
def test_malformed_frontend(mtype: bytes, body: bytes) -> None:
    with pytest.raises(m.MessageError):
        m.parse_frontend(mtype, body)


def test_malformed_datarow() -> None:
    with pytest.raises(m.MessageError):
        m.DataRow.parse(b"\x00\x02\x00\x00\x00\x05ab")
    with pytest.raises(m.MessageError):
        m.DataRow.parse(b"\x00\x01\xff\xff\xff\xff\x00")


# -- the hot path's readers agree with `parse` on any body ---------------------------------------

_names = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=6)
_binds = st.builds(
    m.Bind,
    _names,
    _names,
    st.lists(st.integers(-2, 2), max_size=3).map(tuple),
    st.lists(st.one_of(st.none(), st.binary(max_size=5)), max_size=3).map(tuple),
    st.lists(st.integers(-(2**15), 2**15 - 1), max_size=3).map(tuple),
)


@st.composite
def _bodies(draw: st.DrawFn, valid: st.SearchStrategy[object]) -> bytes:
    """A valid body, then maybe cut short, extended or with a byte changed; or any bytes."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=24))
    body = draw(valid).serialize()[5:]  # type: ignore[attr-defined]
    how = draw(st.sampled_from(("keep", "cut", "extend", "flip")))
    if how == "cut" and body:
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif how == "extend":
        body += draw(st.binary(min_size=1, max_size=4))
    elif how == "flip" and body:
        i = draw(st.integers(0, len(body) - 1))
        body = body[:i] + bytes([draw(st.sampled_from((0, 1, 0xFF, 0x80)))]) + body[i + 1 :]
    return body


def _same(fast, reference, body: bytes) -> None:  # type: ignore[no-untyped-def]
    try:
        expected = reference(body)
    except m.MessageError as e:
        with pytest.raises(m.MessageError) as got:
            fast(memoryview(body))
        assert str(got.value) == str(e)
        return
    assert fast(memoryview(body)) == expected
    assert fast(body) == expected


@settings(max_examples=400, deadline=None)
@given(_bodies(_binds))
def test_bind_head_is_bind_parse(body: bytes) -> None:
    _same(m.bind_head, lambda b: (lambda x: (x.portal, x.statement, x.result_formats))(m.Bind.parse(b)), body)


@settings(max_examples=200, deadline=None)
@given(_bodies(st.builds(m.Execute, _names, st.integers(-(2**31), 2**31 - 1))))
def test_execute_portal_is_execute_parse(body: bytes) -> None:
    _same(m.execute_portal, lambda b: m.Execute.parse(b).portal, body)


@settings(max_examples=200, deadline=None)
@given(_bodies(st.builds(m.Query, _names)))
def test_query_sql_and_command_tag_are_their_parse(body: bytes) -> None:
    _same(m.query_sql, lambda b: m.Query.parse(b).sql, body)
    _same(m.command_tag, lambda b: m.CommandComplete.parse(b).tag, body)


@settings(max_examples=200, deadline=None)
@given(_bodies(st.builds(m.ReadyForQuery, st.sampled_from((b"I", b"T", b"E", b"X")))))
def test_ready_status_is_ready_for_query_parse(body: bytes) -> None:
    _same(m.ready_status, lambda b: m.ReadyForQuery.parse(b).status, body)
