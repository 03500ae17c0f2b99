"""Playbooks for the PostgreSQL session: exact events in, exact commands out, no network."""

from __future__ import annotations

import pytest
import scramp

from policies.decision import Allow, Block, ColumnMask, Decision
from proxy.pg import messages as m
from proxy.pg.session import (
    FAILING_DESCRIBE,
    FAILING_QUERY,
    Close,
    ForwardCancel,
    OpenUpstream,
    PgSession,
    RegisterCancelKey,
    SendClient,
    SendUpstream,
    SessionConfig,
    State,
)
from proxy.services.gate import Principal
from tests.proxy.pg.fakegate import FakeGate

CFG = SessionConfig(upstream_user="svc", upstream_password="svcpw", default_database="crm")
KEY = (77, b"\x00\x00\x00\x09")
PHONE = ColumnMask(0, "phone", "mobile", "mask")
DETECT = frozenset({"mobile"})


def decide(p: Principal, sql: str) -> Decision:
    if "secrets" in sql:
        return Block("table_denied", "table secrets is not allowed")
    if "phone" in sql:
        return Allow(kind="select", columns=(PHONE,), row_limit=3, detect=DETECT)
    if sql.startswith("SELECT 1; SELECT phone"):
        return Allow(kind="select")
    return Allow(kind="select", detect=DETECT)


def text_field(name: str, oid: int = 25, fmt: int = 0) -> m.FieldDescription:
    return m.FieldDescription(name, 0, 0, oid, -1, -1, fmt)


def b(*msgs: object) -> bytes:
    return b"".join(x.serialize() for x in msgs)  # type: ignore[attr-defined]


def client(data: bytes) -> SendClient:
    return SendClient(data)


def up(data: bytes) -> SendUpstream:
    return SendUpstream(data)


def login(gate: FakeGate | None = None, *, unrestricted: bool = False) -> tuple[PgSession, FakeGate]:
    gate = gate or FakeGate(decide)
    gate.add_user("alice", "pw", unrestricted=unrestricted)
    s = PgSession(gate, CFG, session_id="t", clock=lambda: 0.0, cancel_key=KEY)
    out = s.client_data(
        m.StartupMessage(m.PROTOCOL_3_0, (("user", "alice"), ("database", "crm"))).serialize()
    )
    assert out == [client(m.AuthenticationSASL(("SCRAM-SHA-256",)).serialize())]
    sc = scramp.ScramClient(["SCRAM-SHA-256"], "alice", "pw")
    out = s.client_data(m.SASLInitialResponse("SCRAM-SHA-256", sc.get_client_first().encode()).serialize())
    cont = m.parse_backend(b"R", out[0].data[5:])  # type: ignore[union-attr]
    sc.set_server_first(cont.data.decode())  # type: ignore[union-attr]
    out = s.client_data(m.SASLResponse(sc.get_client_final().encode()).serialize())
    final = m.parse_backend(b"R", out[0].data[5:])
    sc.set_server_final(final.data.decode())  # type: ignore[union-attr]
    assert out[1:] == [OpenUpstream("crm")]
    assert s.state is State.UPSTREAM_CONNECTING
    out = s.upstream_connected()
    assert out == [up(m.StartupMessage(m.PROTOCOL_3_0, (("user", "svc"), ("database", "crm"))).serialize())]
    ps = m.ParameterStatus("server_version", "17")
    out = s.upstream_data(
        b(m.AuthenticationOk(), ps, m.BackendKeyData(5, b"\x00\x00\x00\x06"), m.ReadyForQuery(b"I"))
    )
    assert out == [
        client(b(m.AuthenticationOk(), ps, m.BackendKeyData(*KEY), m.ReadyForQuery(b"I"))),
        RegisterCancelKey(KEY[0], KEY[1], 5, b"\x00\x00\x00\x06"),
    ]
    assert s.state is State.READY
    return s, gate


def test_login_success() -> None:
    s, gate = login()
    assert s.principal is not None and s.principal.user == "alice"
    assert gate.auth_failures == 0


@pytest.mark.parametrize(("user", "password"), [("alice", "wrong"), ("ghost", "pw"), ("svc", "svcpw")])
def test_login_failure_same_error(user: str, password: str) -> None:
    gate = FakeGate(decide)
    gate.add_user("alice", "pw")
    gate.add_user("svc", "svcpw")  # the service account never logs in through the proxy
    s = PgSession(gate, CFG, session_id="t", clock=lambda: 0.0)
    s.client_data(m.StartupMessage(m.PROTOCOL_3_0, (("user", user),)).serialize())
    sc = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
    out = s.client_data(m.SASLInitialResponse("SCRAM-SHA-256", sc.get_client_first().encode()).serialize())
    sc.set_server_first(m.parse_backend(b"R", out[0].data[5:]).data.decode())  # type: ignore[union-attr]
    out = s.client_data(m.SASLResponse(sc.get_client_final().encode()).serialize())
    err = m.ErrorResponse.parse(out[0].data[5:])  # type: ignore[union-attr]
    assert (
        err.code == "28P01" and err.message == f'maskgate: password authentication failed for user "{user}"'
    )
    assert out[1:] == [Close("authentication failed")]
    assert gate.auth_failures == 1
    assert not any(isinstance(c, OpenUpstream) for c in out)  # no upstream before authentication


def test_ssl_refused_without_cert_and_cancel_forwarded() -> None:
    s = PgSession(FakeGate(), CFG, session_id="t")
    assert s.client_data(m.SSLRequest().serialize()) == [client(b"N")]
    assert s.client_data(m.GSSENCRequest().serialize()) == [client(b"N")]
    s2 = PgSession(FakeGate(), CFG, session_id="t")
    assert s2.client_data(m.CancelRequest(77, b"\x00\x00\x00\x09").serialize()) == [
        ForwardCancel(77, b"\x00\x00\x00\x09"),
        Close("cancel request"),
    ]


def test_data_after_ssl_request_is_a_violation() -> None:
    s = PgSession(FakeGate(), SessionConfig("svc", "pw", "crm", tls_available=True), session_id="t")
    out = s.client_data(m.SSLRequest().serialize() + b"junk")
    assert m.ErrorResponse.parse(out[0].data[5:]).code == "08P01"  # type: ignore[union-attr]
    assert isinstance(out[-1], Close)


def test_simple_query_masked_and_limited() -> None:
    s, gate = login()
    q = m.Query("SELECT phone FROM customers")
    assert s.client_data(q.serialize()) == [up(q.serialize())]
    rows = [m.DataRow((f"1380000000{i}".encode(),)) for i in range(5)]
    out = s.upstream_data(
        b(
            m.RowDescription((text_field("phone"),)),
            *rows,
            m.CommandComplete("SELECT 5"),
            m.ReadyForQuery(b"I"),
        )
    )
    masked = [m.DataRow((f"138****000{i}".encode(),)) for i in range(3)]
    assert out == [
        client(
            b(
                m.RowDescription((text_field("phone"),)),
                *masked,
                m.NoticeResponse(
                    (
                        ("S", "NOTICE"),
                        ("V", "NOTICE"),
                        ("C", "01000"),
                        ("M", "maskgate: result truncated to 3 rows"),
                    )
                ),
                m.CommandComplete("SELECT 3"),
                m.ReadyForQuery(b"I"),
            )
        )
    ]
    rec = gate.records[-1]
    assert (rec.rows, rec.masked, rec.truncated, rec.sql) == (3, 3, True, q.sql)


def test_detectors_on_unclassified_columns_and_errors() -> None:
    s, _ = login()
    s.client_data(m.Query("SELECT note FROM t").serialize())
    err = m.ErrorResponse(
        (("S", "ERROR"), ("C", "23505"), ("M", "dup"), ("D", "Key (x)=(13800138000) exists"))
    )
    out = s.upstream_data(
        b(m.RowDescription((text_field("note"),)), m.DataRow((b"call 13912345678",)), m.DataRow((b"ok",)))
        + b(m.CommandComplete("SELECT 2"), m.ReadyForQuery(b"I"))
    )
    assert b"139****5678" in out[0].data and b"13912345678" not in out[0].data  # type: ignore[union-attr]
    s.client_data(m.Query("INSERT INTO t VALUES (1)").serialize())
    out = s.upstream_data(b(err, m.ReadyForQuery(b"I")))
    assert b"138****8000" in out[0].data and b"13800138000" not in out[0].data  # type: ignore[union-attr]


def test_unrestricted_passes_rows_untouched() -> None:
    s, _ = login(unrestricted=True)
    s.client_data(m.Query("SELECT phone FROM customers").serialize())
    raw = b(
        m.RowDescription((text_field("phone"),)), m.DataRow((b"13800000001",)), m.DataRow((b"13800000002",))
    )
    raw += b(m.CommandComplete("SELECT 2"), m.ReadyForQuery(b"I"))
    # Row limit 3 in the canned decision is not reached; bytes pass as one slice.
    assert s.upstream_data(raw) == [client(raw)]


def test_multi_statement_parts() -> None:
    parts = (Allow(kind="select", detect=DETECT), Allow(kind="select", columns=(PHONE,)))
    gate = FakeGate(lambda p, sql: Allow(kind="select", statements=parts, detect=DETECT))
    s, _ = login(gate)
    s.client_data(m.Query("SELECT 1; SELECT phone FROM c").serialize())
    rd = m.RowDescription((text_field("x"),))
    out = s.upstream_data(
        b(rd, m.DataRow((b"13800000001",)), m.CommandComplete("SELECT 1"))
        + b(rd, m.DataRow((b"13800000001",)), m.CommandComplete("SELECT 1"), m.ReadyForQuery(b"I"))
    )
    data = out[0].data  # type: ignore[union-attr]
    # First part: clear column but detectors still apply; second part: column mask.
    assert data.count(b"138****0001") == 2


@pytest.mark.parametrize("status", [b"I", b"T"])
def test_refused_simple_query(status: bytes) -> None:
    s, gate = login()
    s.txn = status
    out = s.client_data(m.Query("SELECT * FROM secrets").serialize())
    # The upstream runs a failing stand-in so its transaction state matches the client's.
    assert out == [up(FAILING_QUERY)]
    upstream_err = m.ErrorResponse((("S", "ERROR"), ("C", "42601"), ("M", "syntax error")))
    after = b"E" if status == b"T" else b"I"
    out = s.upstream_data(b(upstream_err, m.ReadyForQuery(after)))
    assert out == [
        client(
            b(
                m.ErrorResponse(
                    (
                        ("S", "ERROR"),
                        ("V", "ERROR"),
                        ("C", "42501"),
                        ("M", "maskgate: table secrets is not allowed"),
                    )
                ),
                m.ReadyForQuery(after),
            )
        )
    ]
    assert isinstance(gate.records[-1].decision, Block)
    assert s.txn == after and not s.queue
    # Still usable.
    assert s.client_data(m.Query("SELECT 1").serialize()) == [up(m.Query("SELECT 1").serialize())]


def test_extended_pipeline_with_refusal_in_the_middle() -> None:
    s, gate = login()
    batch = b(
        m.Parse("", "SELECT 1"),
        m.Bind("", ""),
        m.Describe(b"P", ""),
        m.Execute("", 0),
        m.Parse("s2", "SELECT * FROM secrets"),
        m.Bind("", "s2"),
        m.Execute("", 0),
        m.Sync(),
    )
    out = s.client_data(batch)
    first = b(m.Parse("", "SELECT 1"), m.Bind("", ""), m.Describe(b"P", ""), m.Execute("", 0))
    # Refused Parse -> failing Describe upstream; its Bind/Execute are discarded until Sync.
    assert out == [up(first + FAILING_DESCRIBE + m.Sync().serialize())]
    ok = b(
        m.ParseComplete(),
        m.BindComplete(),
        m.RowDescription((text_field("x", 23),)),
        m.DataRow((b"1",)),
        m.CommandComplete("SELECT 1"),
    )
    upstream_err = m.ErrorResponse((("S", "ERROR"), ("C", "26000"), ("M", "no such statement")))
    out = s.upstream_data(ok + b(upstream_err, m.ReadyForQuery(b"I")))
    refusal = m.ErrorResponse(
        (("S", "ERROR"), ("V", "ERROR"), ("C", "42501"), ("M", "maskgate: table secrets is not allowed"))
    )
    assert out == [client(ok + b(refusal, m.ReadyForQuery(b"I")))]
    assert not s.queue and not s.discarding
    # The session keeps working, and the refused name was never registered.
    assert "s2" not in s.stmts
    assert [r.decision.allowed for r in gate.records] == [False, True]


def test_upstream_error_drops_pending_until_sync() -> None:
    s, _ = login()
    s.client_data(b(m.Parse("a", "SELECT bad"), m.Bind("", "a"), m.Execute("", 0), m.Sync()))
    err = m.ErrorResponse((("S", "ERROR"), ("C", "42703"), ("M", "column does not exist")))
    out = s.upstream_data(b(err, m.ReadyForQuery(b"I")))
    assert out == [client(b(err, m.ReadyForQuery(b"I")))]
    assert "a" not in s.stmts and not s._stmts_inflight and not s.queue


def test_execute_with_row_count_across_limit() -> None:
    s, gate = login()
    rd = m.RowDescription((text_field("phone"),))
    out = s.client_data(b(m.Parse("s", "SELECT phone FROM c"), m.Describe(b"S", "s"), m.Sync()))
    s.upstream_data(b(m.ParseComplete(), m.ParameterDescription(()), rd, m.ReadyForQuery(b"I")))
    s.client_data(b(m.Bind("p", "s"), m.Execute("p", 2), m.Flush()))
    rows = [m.DataRow((f"1380000000{i}".encode(),)) for i in range(4)]
    out = s.upstream_data(b(m.BindComplete(), rows[0], rows[1], m.PortalSuspended()))
    masked = [m.DataRow((f"138****000{i}".encode(),)) for i in range(4)]
    assert out == [client(b(m.BindComplete(), masked[0], masked[1], m.PortalSuspended()))]
    s.client_data(b(m.Execute("p", 2), m.Flush()))
    out = s.upstream_data(b(rows[2], rows[3], m.PortalSuspended()))
    # The limit (3) is reached inside this call: one row, then the portal ends for the client.
    assert out == [
        client(
            masked[2].serialize()
            + m.NoticeResponse(
                (
                    ("S", "NOTICE"),
                    ("V", "NOTICE"),
                    ("C", "01000"),
                    ("M", "maskgate: result truncated to 3 rows"),
                )
            ).serialize()
            + m.CommandComplete("SELECT 1").serialize()
        )
    ]
    assert gate.records[-1].truncated and gate.records[-1].rows == 1


def test_hidden_describe_when_client_skips_it() -> None:
    s, _ = login()
    out = s.client_data(b(m.Parse("", "SELECT phone FROM c"), m.Bind("", ""), m.Execute("", 0), m.Sync()))
    assert out == [
        up(
            b(m.Parse("", "SELECT phone FROM c"), m.Bind("", ""), m.Describe(b"P", ""))
            + b(m.Execute("", 0), m.Sync())
        )
    ]
    rd = m.RowDescription((text_field("phone", fmt=0),))
    out = s.upstream_data(
        b(
            m.ParseComplete(),
            m.BindComplete(),
            rd,
            m.DataRow((b"13800000001",)),
            m.CommandComplete("SELECT 1"),
        )
        + m.ReadyForQuery(b"I").serialize()
    )
    # The injected RowDescription is swallowed; the row is masked.
    assert out == [
        client(
            b(
                m.ParseComplete(),
                m.BindComplete(),
                m.DataRow((b"138****0001",)),
                m.CommandComplete("SELECT 1"),
            )
            + m.ReadyForQuery(b"I").serialize()
        )
    ]


def test_binary_format_masking_and_unmaskable_refusal() -> None:
    gate = FakeGate(
        lambda p, sql: Allow(
            kind="select",
            columns=(ColumnMask(0, "n", "mobile", "mask"), ColumnMask(1, "d", "birthday", "mask")),
            detect=DETECT,
        )
    )
    s, _ = login(gate)
    s.client_data(
        b(m.Parse("", "SELECT n, d"), m.Bind("", "", (), (), (1,)), m.Describe(b"P", ""), m.Execute("", 0))
    )
    s.client_data(m.Sync().serialize())
    rd = m.RowDescription((text_field("n", 20, 1), text_field("d", 1082, 1)))
    out = s.upstream_data(
        b(m.ParseComplete(), m.BindComplete(), rd, m.DataRow(((13800138000).to_bytes(8, "big"), b"\0\0\0\1")))
        + b(m.CommandComplete("SELECT 1"), m.ReadyForQuery(b"T"))
    )
    # A date column cannot be masked in binary: refused, never passed; the upstream block is failed too.
    data = out[1].data  # type: ignore[union-attr]
    assert b"42501" in data and (13800138000).to_bytes(8, "big") not in data
    assert out == [
        up(FAILING_QUERY),
        client(
            b(m.ParseComplete(), m.BindComplete(), rd)
            + m.ErrorResponse(
                (
                    ("S", "ERROR"),
                    ("V", "ERROR"),
                    ("C", "42501"),
                    ("M", 'maskgate: column "d" cannot be masked in binary format'),
                )
            ).serialize()
        ),
    ]
    out = s.upstream_data(b(m.ErrorResponse((("S", "ERROR"), ("C", "25P02"))), m.ReadyForQuery(b"E")))
    assert out == [client(m.ReadyForQuery(b"E").serialize())]


def test_copy_to_masked_and_binary_refused() -> None:
    s, _ = login()
    s.client_data(m.Query("COPY (SELECT phone FROM c) TO STDOUT").serialize())
    out = s.upstream_data(
        b(m.CopyOutResponse(0, (0,)), m.CopyData(b"13800000001\n"), m.CopyData(b"\\N\n"), m.CopyDone())
        + b(m.CommandComplete("COPY 2"), m.ReadyForQuery(b"I"))
    )
    assert out == [
        client(
            b(m.CopyOutResponse(0, (0,)), m.CopyData(b"138****0001\n"), m.CopyData(b"\\N\n"), m.CopyDone())
            + b(m.CommandComplete("COPY 2"), m.ReadyForQuery(b"I"))
        )
    ]
    s.client_data(m.Query("COPY (SELECT phone FROM c) TO STDOUT (FORMAT binary)").serialize())
    out = s.upstream_data(
        b(m.CopyOutResponse(1, (1,)), m.CopyData(b"PGCOPY\n..."), m.CopyDone(), m.CommandComplete("COPY 1"))
        + m.ReadyForQuery(b"I").serialize()
    )
    err = m.ErrorResponse(
        (
            ("S", "ERROR"),
            ("V", "ERROR"),
            ("C", "42501"),
            ("M", "maskgate: binary COPY is not allowed for this role"),
        )
    )
    assert out == [client(b(err, m.ReadyForQuery(b"I")))]


def test_function_call_refused() -> None:
    s, _ = login()
    out = s.client_data(m.FunctionCall(1598, (), (), 0).serialize())
    assert out == [up(FAILING_QUERY)]
    out = s.upstream_data(b(m.ErrorResponse((("S", "ERROR"), ("C", "42601"))), m.ReadyForQuery(b"I")))
    data = out[0].data  # type: ignore[union-attr]
    err = m.ErrorResponse.parse(data[5 : 1 + int.from_bytes(data[1:5], "big")])
    assert err.code == "42501" and data.endswith(m.ReadyForQuery(b"I").serialize())


@pytest.mark.parametrize(
    "raw",
    [
        b"Q\x00\x00\x00\x09SELECT",  # missing terminator
        b"?\x00\x00\x00\x04",  # unknown type
        b"Q\x7f\xff\xff\xff",  # oversized
        b"p\x00\x00\x00\x05x",  # password message after login
    ],
)
def test_malformed_message_closes_with_08p01(raw: bytes) -> None:
    s, _ = login()
    out = s.client_data(raw)
    assert m.ErrorResponse.parse(out[0].data[5:]).code == "08P01"  # type: ignore[union-attr]
    assert isinstance(out[-1], Close) and s.state is State.CLOSED


def test_search_path_and_schema_changes_tracked() -> None:
    gate = FakeGate(lambda p, sql: Allow(kind="ddl", search_path=("app",), schema_changed=True))
    s, _ = login(gate)
    s.client_data(m.Query("SET search_path = app").serialize())
    s.upstream_data(b(m.CommandComplete("SET"), m.ReadyForQuery(b"I")))
    assert s.search_path == ("app",) and gate.schema_changes == ["crm"]
    s.upstream_data(m.ParameterStatus("search_path", "x, public").serialize())
    assert s.search_path == ("x", "public")
    s.client_data(m.Query("SELECT 1").serialize())
    assert gate.decisions[-1][2] == ("x", "public")


def test_auth_timeout_and_shutdown() -> None:
    s = PgSession(FakeGate(), CFG, session_id="t")
    s.client_data(m.StartupMessage(m.PROTOCOL_3_0, (("user", "alice"),)).serialize())
    out = s.auth_timeout()
    assert m.ErrorResponse.parse(out[0].data[5:]).code == "08P01"  # type: ignore[union-attr]
    assert out[1:] == [Close("authentication timeout")]
    s2, _ = login()
    assert s2.auth_timeout() == [] and s2.idle
    out = s2.shutdown()
    assert m.ErrorResponse.parse(out[0].data[5:]).code == "57P01"  # type: ignore[union-attr]


def test_protocol_3_2_is_negotiated_down() -> None:
    gate = FakeGate()
    gate.add_user("alice", "pw")
    s = PgSession(gate, CFG, session_id="t")
    out = s.client_data(m.StartupMessage((3 << 16) | 2, (("user", "alice"), ("_pq_.x", "1"))).serialize())
    assert out == [
        client(b(m.NegotiateProtocolVersion(0, ("_pq_.x",)), m.AuthenticationSASL(("SCRAM-SHA-256",))))
    ]
