"""Playbooks of the MySQL session: login, TLS, framing limits, and each command of the relay.

Every test is a transcript of events in and the exact commands out (`tests/proxy/mysql/
transcripts.py` frames the packets), so a change in what maskgate sends shows as a diff.
"""

from __future__ import annotations

import pytest

from policies.decision import Allow, Block, Decision, SettingChange
from proxy.core.commands import Close, Drain, OpenUpstream, SendClient, SendUpstream, StartTLS
from proxy.core.events import (
    AuthTimeout,
    ClientClosed,
    ClientData,
    IdleTimeout,
    Shutdown,
    TlsEstablished,
    UpstreamClosed,
    UpstreamConnected,
    UpstreamData,
)
from proxy.core.playbook import Placeholder, Playbook
from proxy.mysql import auth, errors
from proxy.mysql import packets as p
from proxy.mysql.login import NATIVE, PERFORM_FULL_AUTH, REQUEST_PUBLIC_KEY, SHA2
from proxy.mysql.relay import CHANGE_USER, CHARSET_THEN_MORE, LOCAL_INFILE, MULTI_OFF
from proxy.mysql.session import MySqlSession, Phase
from proxy.services.statement import withheld_message
from tests.proxy.mysql.transcripts import (
    CLIENT_CAPS,
    MASKED,
    MULTI_SQL,
    PHONE_COL,
    RSA,
    SECRET,
    STATUS,
    WARNING_COLS,
    FakeGate,
    FakeMaria,
    add_user,
    binary_row,
    client_bytes,
    column,
    decide,
    eof,
    finish_upstream_login,
    from_client,
    from_upstream,
    greeting_nonce,
    handshake,
    login,
    ok,
    packets_of,
    playbook,
    result,
    session,
    text_row,
    to_client,
    to_upstream,
    wire,
)

VIOLATION = errors.protocol_violation()
UPSTREAM_VIOLATION = errors.protocol_violation("upstream protocol error")


def q(sql: str) -> p.ComQuery:
    return p.ComQuery(sql.encode())


def refused(message: str) -> p.ERR:
    return errors.refused(message)


def greeted(**kw: object) -> tuple[MySqlSession, bytes, Playbook]:
    s, gate = session(**kw)  # type: ignore[arg-type]
    add_user(gate)
    add_user(gate, "nohash", native=False)
    (g,) = s.greeting()
    assert isinstance(g, SendClient)
    return s, greeting_nonce(g), playbook(s)


# ---------------------------------------------------------------------------------------------
# Login
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True])
def test_greeting(tls: bool) -> None:
    s, _ = session(tls=tls)
    (g,) = s.greeting()
    assert isinstance(g, SendClient)
    ((seq, payload),) = packets_of(g.data)
    hello = p.HandshakeV10.parse(payload)
    assert seq == 0 and hello.connection_id == 7 and hello.auth_plugin == NATIVE
    assert hello.server_version == "5.5.5-10.11.0-MariaDB-maskgate" and hello.charset == 45
    assert len(hello.auth_data) == 20 and b"\0" not in hello.auth_data
    assert hello.status == p.SERVER_STATUS_AUTOCOMMIT
    need = p.CLIENT_PROTOCOL_41 | p.CLIENT_SECURE_CONNECTION | p.CLIENT_PLUGIN_AUTH
    assert hello.capabilities & need == need
    # Never offered: a server's file request is never relayed, EOF framing is the classic one.
    assert not hello.capabilities & (p.CLIENT_LOCAL_FILES | p.CLIENT_DEPRECATE_EOF | p.CLIENT_COMPRESS)
    assert bool(hello.capabilities & p.CLIENT_SSL) is tls
    assert s.greeting() == []  # sent once


def test_native_login_logs_the_service_account_in() -> None:
    maria = FakeMaria()
    s, gate, _ = login(maria=maria)
    assert maria.user == "svc" and s.login.user == "alice"
    assert s.ctx.tracker.principal is gate.users["alice"]
    assert gate.auth_failures == 0 and gate.begun == [] and gate.records == []


def test_the_server_greeting_may_come_before_the_connection_is_handed_over() -> None:
    s, nonce, pb = greeted()
    maria = FakeMaria()
    login_packet = Placeholder(SendUpstream)
    assert (
        pb
        >> from_client(1, handshake(nonce))
        << OpenUpstream("crm", "mysql")
        >> UpstreamData(maria.greeting())
        >> UpstreamConnected()
        << login_packet
    )
    ((seq, payload),) = packets_of(login_packet().data)
    resp = p.HandshakeResponse41.parse(payload)
    assert seq == 1 and resp.user == "svc" and resp.database == "crm"
    # What the client did not get, the upstream does not either; the person's name travels along.
    assert not resp.capabilities & (p.CLIENT_SSL | p.CLIENT_LOCAL_FILES | p.CLIENT_DEPRECATE_EOF)
    assert resp.attrs == (("program_name", "maskgate:alice"),)
    out = finish_upstream_login(s, maria, [login_packet()])
    assert client_bytes(out) == wire(2, ok()) and s.phase is Phase.RELAY


def _denied_exchange(user: str, password: str) -> tuple[list[tuple[int, int]], p.ERR, int]:
    """The whole failed login without TLS; the (seq, header) of what the client got, the error."""
    s, nonce, pb = greeted()
    switch, full = Placeholder(SendClient), Placeholder(SendClient)
    key, denied = Placeholder(SendClient), Placeholder(SendClient)
    assert pb >> from_client(1, handshake(nonce, user=user, password=password)) << switch
    ((_, sw),) = packets_of(switch().data)
    req = p.AuthSwitchRequest.parse(sw)
    assert req.plugin == SHA2 and len(req.data) == 21 and req.data.endswith(b"\0")
    new_nonce = req.data[:20]
    assert new_nonce != nonce  # a fresh nonce for the second attempt
    assert pb >> from_client(3, auth.sha2_scramble(password.encode(), new_nonce)) << full
    assert full().data == to_client(4, p.AuthMoreData(PERFORM_FULL_AUTH)).data
    assert pb >> from_client(5, REQUEST_PUBLIC_KEY) << key
    assert key().data == to_client(6, p.AuthMoreData(RSA.public_pem())).data
    secret = auth.encrypt_password(password.encode(), new_nonce, RSA.public_pem())
    close = Placeholder(Close)
    assert pb >> from_client(7, secret) << denied << close
    assert close().reason == "authentication failed" and s.phase is Phase.CLOSED
    got = [(seq, pk[0]) for c in (switch, full, key, denied) for seq, pk in packets_of(c().data)]
    ((_, err),) = packets_of(denied().data)
    return got, p.ERR.parse(err), s.ctx.gate.auth_failures  # type: ignore[attr-defined]


def test_wrong_password_and_unknown_user_get_the_same_exchange_and_1045() -> None:
    wrong = _denied_exchange("alice", "nope")
    ghost = _denied_exchange("ghost", "nope")
    # A right password through the same switch logs in: the exchange itself is no tell.
    assert wrong[0] == ghost[0] == [(2, 0xFE), (4, 0x01), (6, 0x01), (8, 0xFF)]
    assert wrong[1] == errors.access_denied("alice", "10.0.0.9")
    assert ghost[1] == errors.access_denied("ghost", "10.0.0.9")
    assert wrong[1].code == ghost[1].code == 1045 and wrong[1].sqlstate == ghost[1].sqlstate == "28000"
    assert wrong[2] == ghost[2] == 1


def test_an_empty_password_is_denied_at_once() -> None:
    _s, nonce, pb = greeted()
    assert (
        pb
        >> from_client(1, handshake(nonce, auth_response=b""))
        << to_client(2, errors.access_denied("alice", "10.0.0.9"))
        << Close("authentication failed")
    )


def test_caching_sha2_full_auth_over_tls_reads_the_password_in_clear() -> None:
    s, nonce, pb = greeted(tls=True)
    ssl = p.SSLRequest(CLIENT_CAPS | p.CLIENT_SSL, 1 << 24, 45)
    assert pb >> from_client(1, ssl) << StartTLS(pending=b"") >> TlsEstablished()
    resp = handshake(nonce, plugin=SHA2, caps=CLIENT_CAPS | p.CLIENT_SSL)
    assert (
        pb
        >> from_client(2, resp)
        << to_client(3, p.AuthMoreData(PERFORM_FULL_AUTH))
        >> from_client(4, b"pw\0")
        << OpenUpstream("crm", "mysql")
    )
    assert s.login.tls and s.ctx.tracker.principal is not None


@pytest.mark.parametrize("user", ["alice", "nohash"])  # nohash: checked against its SCRAM verifier
def test_caching_sha2_full_auth_without_tls_uses_the_rsa_key(user: str) -> None:
    _s, nonce, pb = greeted()
    assert (
        pb
        >> from_client(1, handshake(nonce, user=user, plugin=SHA2))
        << to_client(2, p.AuthMoreData(PERFORM_FULL_AUTH))
        >> from_client(3, REQUEST_PUBLIC_KEY)
        << to_client(4, p.AuthMoreData(RSA.public_pem()))
        >> from_client(5, auth.encrypt_password(b"pw", nonce, RSA.public_pem()))
        << OpenUpstream("crm", "mysql")
    )


def test_a_native_user_without_a_hash_logs_in_through_the_switch() -> None:
    _s, nonce, pb = greeted(tls=True)
    ssl = p.SSLRequest(CLIENT_CAPS | p.CLIENT_SSL, 1 << 24, 45)
    switch = Placeholder(SendClient)
    assert pb >> from_client(1, ssl) << StartTLS(pending=b"") >> TlsEstablished()
    resp = handshake(nonce, user="nohash", caps=CLIENT_CAPS | p.CLIENT_SSL)
    assert pb >> from_client(2, resp) << switch
    new_nonce = p.AuthSwitchRequest.parse(packets_of(switch().data)[0][1]).data[:20]
    assert (
        pb
        >> from_client(4, auth.sha2_scramble(b"pw", new_nonce))
        << to_client(5, p.AuthMoreData(PERFORM_FULL_AUTH))
        >> from_client(6, b"pw\0")
        << OpenUpstream("crm", "mysql")
    )


def test_ssl_request_without_tls_offered_is_a_violation() -> None:
    _s, _, pb = greeted()
    ssl = p.SSLRequest(CLIENT_CAPS | p.CLIENT_SSL, 1 << 24, 45)
    assert (
        pb
        >> from_client(1, ssl)
        << to_client(2, VIOLATION)
        << Close("protocol violation: SSLRequest without TLS offered")
    )


@pytest.mark.parametrize("whole", [False, True])
def test_bytes_after_the_ssl_request_go_to_the_tls_layer(whole: bool) -> None:
    """A client sends its SSLRequest and its ClientHello back to back: whatever follows the
    request in the same read is handed to the TLS layer as the handshake's first bytes, never
    read as packets. Plaintext there (CVE-2021-23214's shape) fails the TLS handshake, so it is
    never taken as if it had come over TLS."""
    s, nonce, pb = greeted(tls=True)
    ssl = p.SSLRequest(CLIENT_CAPS | p.CLIENT_SSL, 1 << 24, 45)
    tail = from_client(2, handshake(nonce)).data
    tail = tail if whole else tail[:10]
    assert pb >> ClientData(from_client(1, ssl).data + tail) << StartTLS(pending=tail)
    assert s.phase is Phase.LOGIN and s._cf.buffered == 0


def test_oversized_packet_before_auth_closes_from_its_header() -> None:
    s, _, pb = greeted()
    header = (65_000).to_bytes(3, "little") + b"\x01"  # no body follows: none is waited for
    assert (
        pb
        >> ClientData(header)
        << to_client(1, errors.protocol_violation("packet too large (65000 bytes, limit 10000)"))
        << Close("client protocol violation: packet too large (65000 bytes, limit 10000)")
    )
    assert s._cf.buffered == 0 and s.phase is Phase.CLOSED


def test_large_packets_are_allowed_once_logged_in() -> None:
    _s, _, pb = login()
    big = q("SELECT '" + "x" * 20_000 + "'")
    assert pb >> from_client(0, big) << to_upstream(0, big)


def test_out_of_sequence_login_packet_is_a_violation() -> None:
    _, nonce, pb = greeted()
    assert (
        pb
        >> from_client(2, handshake(nonce))
        << to_client(1, VIOLATION)
        << Close("protocol violation: packet out of sequence (2, expected 1)")
    )


def test_out_of_sequence_command_is_a_violation() -> None:
    _s, _, pb = login()
    assert (
        pb
        >> from_client(1, q("SELECT 1"))
        << to_client(3, VIOLATION)  # numbered after the login's OK: no command was accepted
        << Close("protocol violation: a command with sequence id 1")
    )
    assert pb >> from_client(0, q("SELECT 1")) >> from_upstream(1, ok())  # closed: nothing more


def test_upstream_login_failure_tells_the_client() -> None:
    _s, nonce, pb = greeted()
    maria = FakeMaria()
    err = errors.upstream_failed("the database refused maskgate's login")
    assert (
        pb
        >> from_client(1, handshake(nonce))
        << OpenUpstream("crm", "mysql")
        >> UpstreamConnected()
        >> UpstreamData(maria.greeting())
        << Placeholder(SendUpstream)
        >> from_upstream(2, p.ERR(1045, "28000", "Access denied for user 'svc'"))
        << to_client(2, err)
        << Close("upstream failed: the database refused maskgate's login")
    )


# ---------------------------------------------------------------------------------------------
# COM_QUERY
# ---------------------------------------------------------------------------------------------


def test_query_allowed_is_forwarded_and_its_result_masked() -> None:
    s, gate, pb = login()
    sql = "SELECT phone FROM c"
    assert (
        pb
        >> from_client(0, q(sql))
        << to_upstream(0, q(sql))
        >> from_upstream(1, *result([text_row(SECRET), text_row(None)]))
        << to_client(1, *result([text_row(MASKED), text_row(None)]))
    )
    assert s.idle
    (start,) = gate.begun
    (end,) = gate.records
    assert start.event == "start" and start.sql == sql and start.id == "t-1"
    assert (end.event, end.id, end.rows, end.masked, end.truncated) == ("end", "t-1", 2, 1, False)


def test_a_result_split_anywhere_is_masked_the_same() -> None:
    s, _, _pb = login()
    s.handle(from_client(0, q("SELECT phone FROM c")))
    data = from_upstream(1, *result([text_row(SECRET)] * 2)).data
    got = b""
    for i in range(len(data)):
        for c in s.handle(UpstreamData(data[i : i + 1])):
            assert isinstance(c, SendClient)
            got += c.data
    assert got == to_client(1, *result([text_row(MASKED)] * 2)).data


def test_query_refused_is_answered_in_the_server_place_and_the_session_goes_on() -> None:
    _s, gate, pb = login()
    assert (
        pb
        >> from_client(0, q("SELECT * FROM secrets"))
        << to_client(1, refused("table secrets is not allowed"))
        >> from_client(0, q("SELECT 1"))
        << to_upstream(0, q("SELECT 1"))
        >> from_upstream(1, ok())
        << to_client(1, ok())
    )
    refusal, end = gate.records
    assert refusal.event == "refused" and refusal.sql == "SELECT * FROM secrets"
    assert [r.sql for r in gate.begun] == ["SELECT 1"] and end.event == "end"


def test_row_limit_truncates_and_show_warnings_tells_why() -> None:
    _s, gate, pb = login()
    assert (
        pb
        >> from_client(0, q("SELECT phone FROM c"))
        << to_upstream(0, q("SELECT phone FROM c"))
        >> from_upstream(1, *result([text_row(SECRET)] * 5, warnings=2))
        # Rows past the limit are dropped; the EOF counts maskgate's warning with the server's.
        << to_client(1, *result([text_row(MASKED)] * 3, warnings=3))
    )
    assert gate.records[-1].truncated and gate.records[-1].rows == 3
    warning = text_row(b"Warning", b"1105", b"maskgate: result truncated to 3 rows")
    server_row = text_row(b"Note", b"1003", b"something")
    assert (
        pb
        >> from_client(0, q("SHOW WARNINGS"))
        << to_upstream(0, q("SHOW WARNINGS"))
        >> from_upstream(1, *result([server_row], cols=WARNING_COLS))
        << to_client(1, *result([warning, server_row], cols=WARNING_COLS))
    )
    # Told once.
    assert (
        pb
        >> from_client(0, q("SHOW WARNINGS"))
        << to_upstream(0, q("SHOW WARNINGS"))
        >> from_upstream(1, *result([], cols=WARNING_COLS))
        << to_client(1, *result([], cols=WARNING_COLS))
    )


def test_multi_result_is_masked_and_limited_per_part() -> None:
    s, gate, pb = login()
    more = STATUS | p.SERVER_MORE_RESULTS_EXISTS
    assert (
        pb
        >> from_client(0, q(MULTI_SQL))
        << to_upstream(0, q(MULTI_SQL))
        >> from_upstream(1, *result([text_row(b"1")], cols=(column(b"1", 8),), status=more))
        << to_client(1, *result([text_row(b"1")], cols=(column(b"1", 8),), status=more))
        >> from_upstream(6, *result([text_row(SECRET)] * 4))
        << to_client(6, *result([text_row(MASKED)] * 3, warnings=1))
    )
    assert s.idle and gate.records[-1].truncated


def test_server_error_with_classified_data_in_flight_is_withheld() -> None:
    _s, _, pb = login()
    sql = "SELECT boom FROM phone_book"
    leak = p.ERR(1292, "22007", f"Truncated incorrect DOUBLE value: '{SECRET.decode()}'")
    assert (
        pb
        >> from_client(0, q(sql))
        << to_upstream(0, q(sql))
        >> from_upstream(1, leak)
        << to_client(1, p.ERR(1292, "22007", withheld_message("22007")))
    )
    # Reading nothing classified, the message is kept with the detectors' masks applied.
    assert (
        pb
        >> from_client(0, q("SELECT boom"))
        << to_upstream(0, q("SELECT boom"))
        >> from_upstream(1, leak)
        << to_client(1, p.ERR(1292, "22007", "Truncated incorrect DOUBLE value: '139****5678'"))
    )


def test_server_error_mid_rows_ends_the_statement() -> None:
    s, gate, pb = login()
    head = [p.ColumnCount(1), PHONE_COL, eof()]
    err = p.ERR(1317, "70100", "Query execution was interrupted")
    assert (
        pb
        >> from_client(0, q("SELECT phone FROM c"))
        << to_upstream(0, q("SELECT phone FROM c"))
        >> from_upstream(1, *head, text_row(SECRET), err)
        << to_client(1, *head, text_row(MASKED), p.ERR(1317, "70100", withheld_message("70100")))
    )
    assert s.idle and gate.records[-1].error == "70100" and gate.records[-1].outcome == "error"


def test_local_infile_request_never_reaches_the_client() -> None:
    s, gate, pb = login()
    sql = "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t"
    assert (
        pb
        >> from_client(0, q(sql))
        << to_upstream(0, q(sql))
        # The server gets an empty file (an empty packet numbered after its request).
        >> from_upstream(1, p.LocalInfileRequest(b"/etc/passwd"))
        << to_upstream(2, b"")
        >> from_upstream(3, p.ERR(1148, "42000", "The used command is not allowed"))
        << to_client(1, refused(LOCAL_INFILE.message))
    )
    assert s.idle and gate.records[-1].outcome == "refused"
    # An OK (the server loaded nothing) is refused the same.
    assert (
        pb
        >> from_client(0, q(sql))
        << to_upstream(0, q(sql))
        >> from_upstream(1, p.LocalInfileRequest(b"/etc/passwd"))
        << to_upstream(2, b"")
        >> from_upstream(3, ok())
        << to_client(1, refused(LOCAL_INFILE.message))
    )


# ---------------------------------------------------------------------------------------------
# Prepared statements
# ---------------------------------------------------------------------------------------------

PREP_SQL = "SELECT phone FROM c WHERE id = ?"
PARAM = column(b"?", 253)


def execute(stmt_id: int, flags: int = 0) -> p.ComStmtExecute:
    return p.ComStmtExecute(stmt_id, flags, 1, b"\x00", True, ((3, 0),), (b"\x01\x00\x00\x00",))


def prepared(pb: Playbook, stmt_id: int = 1) -> Playbook:
    prep = p.ComStmtPrepare(PREP_SQL.encode())
    answer = [p.StmtPrepareOK(stmt_id, 1, 1, 0), PARAM, eof(), PHONE_COL, eof()]
    assert (
        pb
        >> from_client(0, prep)
        << to_upstream(0, prep)
        >> from_upstream(1, *answer)
        << to_client(1, *answer)
    )
    return pb


def test_prepare_and_execute_mask_binary_rows() -> None:
    _s, gate, pb = login()
    prepared(pb)
    assert gate.records[-1].outcome == "prepared"
    head = [p.ColumnCount(1), PHONE_COL, eof()]
    assert (
        pb
        >> from_client(0, execute(1))
        << to_upstream(0, execute(1))
        >> from_upstream(1, *head, *[binary_row(SECRET)] * 4, binary_row(None), eof())
        << to_client(1, *head, *[binary_row(MASKED)] * 3, eof(warnings=1))
    )
    end = gate.records[-1]
    assert (end.event, end.rows, end.masked, end.truncated) == ("end", 3, 3, True)


def test_cursor_fetches_share_the_row_limit() -> None:
    s, gate, pb = login()
    prepared(pb)
    cursor_status = STATUS | p.SERVER_STATUS_CURSOR_EXISTS
    head = [p.ColumnCount(1), PHONE_COL, eof(cursor_status)]
    ex = execute(1, p.CURSOR_TYPE_READ_ONLY)
    assert pb >> from_client(0, ex) << to_upstream(0, ex) >> from_upstream(1, *head) << to_client(1, *head)
    assert s.idle
    fetch = p.ComStmtFetch(1, 2)
    assert (
        pb
        >> from_client(0, fetch)
        << to_upstream(0, fetch)
        >> from_upstream(1, binary_row(SECRET), binary_row(SECRET), eof(cursor_status))
        << to_client(1, binary_row(MASKED), binary_row(MASKED), eof(cursor_status))
        >> from_client(0, fetch)
        << to_upstream(0, fetch)
        >> from_upstream(1, binary_row(SECRET), binary_row(SECRET), eof(cursor_status))
        # The third row is the last the client may have: its cursor is told it has ended.
        << to_client(1, binary_row(MASKED), eof(cursor_status | p.SERVER_STATUS_LAST_ROW_SENT, 1))
        >> from_client(0, fetch)
        << to_client(1, p.ERR(1421, "HY000", "The statement has no open cursor"))
    )
    end = gate.records[-1]
    assert (end.event, end.rows, end.truncated) == ("end", 3, True)
    assert SECRET not in b"".join(c.data for c in pb.actual if isinstance(c, SendClient))


def test_stmt_close_and_reset() -> None:
    s, _gate, pb = login()
    prepared(pb)
    reset = p.ComStmtReset(1)
    close = p.ComStmtClose(1)
    assert (
        pb
        >> from_client(0, reset)
        << to_upstream(0, reset)
        >> from_upstream(1, ok())
        << to_client(1, ok())
        >> from_client(0, close)
        << to_upstream(0, close)  # no answer either way
        >> from_client(0, execute(1))
        << to_client(
            1, p.ERR(1243, "HY000", "Unknown prepared statement handler given to mysqld_stmt_execute")
        )
        >> from_client(0, reset)
        << to_client(1, p.ERR(1243, "HY000", "Unknown prepared statement handler given to mysqld_stmt_reset"))
        >> from_client(0, close)  # an unknown id: nothing, as the server does
    )
    assert s.idle


def test_prepare_refused() -> None:
    s, gate, pb = login()
    prep = p.ComStmtPrepare(b"SELECT * FROM secrets WHERE id = ?")
    assert pb >> from_client(0, prep) << to_client(1, refused("table secrets is not allowed"))
    assert gate.records[-1].event == "refused" and not s.relay.stmts  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# The other commands
# ---------------------------------------------------------------------------------------------


def test_init_db_refused_and_allowed() -> None:
    _s, gate, pb = login()
    allowed = p.ComInitDb(b"crm")
    assert (
        pb
        >> from_client(0, p.ComInitDb(b"secrets"))
        << to_client(1, refused("table secrets is not allowed"))
        >> from_client(0, allowed)
        << to_upstream(0, allowed)
        >> from_upstream(1, ok())
        << to_client(1, ok())
    )
    assert [(r.event, r.sql) for r in gate.records] == [("refused", "USE `secrets`"), ("end", "USE `crm`")]
    assert [r.sql for r in gate.begun] == ["USE `crm`"]


def test_field_list() -> None:
    _s, _gate, pb = login()
    fl = p.ComFieldList(b"c", b"")
    col = p.ColumnDefinition41(b"crm", b"c", b"c", b"phone", b"phone", 45, 80, 253, 0, 0, has_default=True)
    assert (
        pb
        >> from_client(0, fl)
        << to_upstream(0, fl)
        >> from_upstream(1, col, eof())
        << to_client(1, col, eof())
        >> from_client(0, p.ComFieldList(b"secrets", b""))
        << to_client(1, refused("table secrets is not allowed"))
    )


def test_change_user_refused_and_the_session_goes_on() -> None:
    s, gate, pb = login()
    cu = p.ComChangeUser("root", b"", "mysql", 45, NATIVE, ())
    assert (
        pb
        >> from_client(0, cu.serialize(CLIENT_CAPS))
        << to_client(1, refused(CHANGE_USER.message))
        >> from_client(0, p.ComPing())
        << to_upstream(0, p.ComPing())
        >> from_upstream(1, ok())
        << to_client(1, ok())
    )
    assert gate.records[-1].event == "refused" and s.ctx.tracker.principal is gate.users["alice"]


def test_reset_connection_takes_the_role_back_before_the_client_ok() -> None:
    s, _gate, pb = login(database_role="analyst")
    reset = p.ComResetConnection()
    set_role = q("SET ROLE `analyst`")
    assert (
        pb
        >> from_client(0, reset)
        << to_upstream(0, reset)
        >> from_client(0, q("SELECT 1"))  # sent early: waits until the role is back
        >> from_upstream(1, ok())
        << to_upstream(0, set_role)
        >> from_upstream(1, ok())
        << to_upstream(0, q("SELECT 1"))
        << to_client(1, ok())
        >> from_upstream(1, ok())
        << to_client(1, ok())
    )
    assert s.idle


def test_reset_connection_whose_role_cannot_be_restored_closes() -> None:
    _s, _gate, pb = login(database_role="analyst")
    reset = p.ComResetConnection()
    assert (
        pb
        >> from_client(0, reset)
        << to_upstream(0, reset)
        >> from_upstream(1, ok())
        << to_upstream(0, q("SET ROLE `analyst`"))
        >> from_upstream(1, p.ERR(1959, "OP000", "Invalid role specification"))
        << to_client(1, errors.upstream_failed("restoring the role failed"))
        << Close("SET ROLE failed after a reset")
    )


def test_quit_is_forwarded_and_closes() -> None:
    s, _, pb = login()
    assert pb >> from_client(0, p.ComQuit()) << to_upstream(0, p.ComQuit()) << Close("client quit")
    assert s.phase is Phase.CLOSED


@pytest.mark.parametrize("cmd", [p.COM_SHUTDOWN, p.COM_BINLOG_DUMP, p.COM_PROCESS_KILL, p.COM_DEBUG, 0x99])
def test_unknown_and_unsafe_commands_are_refused(cmd: int) -> None:
    _s, gate, pb = login()
    raw = bytes((cmd,)) + b"\x01\x00\x00\x00"
    assert (
        pb
        >> from_client(0, raw)
        << to_client(1, refused(f"command {cmd} is not allowed through maskgate"))
        >> from_client(0, p.ComPing())
        << to_upstream(0, p.ComPing())
    )
    assert gate.records[-1].event == "refused"


def test_a_command_sent_while_another_is_in_flight_waits_its_turn() -> None:
    s, gate, pb = login()
    assert (
        pb
        >> from_client(0, q("SELECT phone FROM c"))
        << to_upstream(0, q("SELECT phone FROM c"))
        >> ClientData(from_client(0, q("SELECT 2")).data + from_client(0, q("SELECT * FROM secrets")).data)
        >> from_upstream(1, *result([text_row(SECRET)]))
        << to_upstream(0, q("SELECT 2"))
        << to_client(1, *result([text_row(MASKED)]))
        >> from_upstream(1, ok())
        # The refusal comes after SELECT 2's answer, in the order the client sent them.
        << SendClient(wire(1, ok()) + wire(1, refused("table secrets is not allowed")))
    )
    assert s.idle and [r.sql for r in gate.begun] == ["SELECT phone FROM c", "SELECT 2"]


# ---------------------------------------------------------------------------------------------
# Session events
# ---------------------------------------------------------------------------------------------


def test_auth_timeout_only_during_login() -> None:
    _, _, pb = greeted()
    assert pb >> AuthTimeout() << to_client(1, errors.auth_timeout()) << Close("authentication timeout")
    s, _, pb2 = login()
    assert pb2 >> AuthTimeout()
    assert s.idle


def test_shutdown_idle_and_upstream_closed() -> None:
    # Unsolicited: numbered after the last packet the client got (the login's OK, 2).
    _, _, pb = login()
    assert pb >> Shutdown() << to_client(3, errors.shutting_down()) << Close("shutdown")
    _, _, pb = login()
    assert pb >> IdleTimeout() << to_client(3, errors.idle_timeout()) << Close("idle timeout")
    _, _, pb = login()
    err = errors.upstream_failed("the database closed the connection")
    assert pb >> UpstreamClosed() << to_client(3, err) << Close("upstream closed")


def test_client_gone_mid_statement_drains_the_upstream() -> None:
    s, gate, pb = login()
    assert (
        pb
        >> from_client(0, q("SELECT phone FROM c"))
        << to_upstream(0, q("SELECT phone FROM c"))
        >> ClientClosed()
        << Drain()
        >> from_upstream(1, *result([text_row(SECRET)]))
        << Close("drained")
    )
    assert gate.records[-1].event == "end" and s.phase is Phase.CLOSED


def test_server_packet_with_nothing_in_flight_is_an_upstream_violation() -> None:
    _, _, pb = login()
    assert (
        pb
        >> from_upstream(1, ok())
        << to_client(3, UPSTREAM_VIOLATION)
        << Close("upstream protocol violation: a server packet with no command in flight")
    )


def test_ok_info_text_never_reaches_a_restricted_client() -> None:
    """Without CLIENT_SESSION_TRACK an OK's info is free text: a server (or anything posing as
    one) could put row values there (found by the fuzz tests), and "Changed: 0" says whether an
    UPDATE wrote the value already stored (the MySQL red-team twin): a restricted session gets none."""
    _s, _, pb = login()
    info = b"Rows matched: 1 Changed: 1 (" + SECRET + b")"
    sql = "UPDATE c SET phone = '0' WHERE id = 1"  # reads classified data: withheld whole
    assert (
        pb
        >> from_client(0, q(sql))
        << to_upstream(0, q(sql))
        >> from_upstream(1, p.OK(1, 0, STATUS, 0, info))
        << to_client(1, ok(affected=1))
        >> from_client(0, q("UPDATE t SET x = 1"))  # detectors only
        << to_upstream(0, q("UPDATE t SET x = 1"))
        >> from_upstream(1, p.OK(1, 0, STATUS, 0, info))
        << to_client(1, ok(affected=1))
        >> from_client(0, p.ComInitDb(b"crm"))
        << to_upstream(0, p.ComInitDb(b"crm"))
        >> from_upstream(1, p.OK(0, 0, STATUS, 0, SECRET))
        << to_client(1, ok())
    )


def test_a_broken_early_greeting_is_an_upstream_violation() -> None:
    """Found by the fuzz tests: a greeting read once the connection was handed over raised
    PacketError out of handle(). And the server speaks once before it hears from maskgate."""
    _, nonce, pb = greeted()
    assert (
        pb
        >> from_client(1, handshake(nonce))
        << OpenUpstream("crm", "mysql")
        >> from_upstream(0, b"\x09not a greeting")
        >> UpstreamConnected()
        << to_client(2, UPSTREAM_VIOLATION)
        << Close("upstream protocol violation: not a protocol 10 handshake")
    )
    _s, nonce, pb = greeted()
    maria = FakeMaria()
    assert (
        pb
        >> from_client(1, handshake(nonce))
        << OpenUpstream("crm", "mysql")
        >> UpstreamData(maria.greeting() + wire(2, ok()))
        << to_client(2, UPSTREAM_VIOLATION)
        << Close("upstream protocol violation: the server sent more than its greeting")
    )


def _upstream_sha2(pem: bytes) -> bytes:
    """Logged in as a person; the upstream (MySQL 8) asks for caching_sha2 full auth and sends
    `pem` as its key. The payload maskgate answers with: the encrypted password."""
    s, nonce, pb = greeted()
    server_nonce = b"N" * 20
    hello = p.HandshakeV10("8.0.36", 9, server_nonce, p.CLIENT_LONG_PASSWORD | CLIENT_CAPS, 45, STATUS, SHA2)
    response = Placeholder(SendUpstream)
    assert (
        pb
        >> from_client(1, handshake(nonce))
        << OpenUpstream("crm", "mysql")
        >> UpstreamConnected()
        >> from_upstream(0, hello)
        << response
        >> from_upstream(2, p.AuthMoreData(PERFORM_FULL_AUTH))
        << to_upstream(3, REQUEST_PUBLIC_KEY)
    )
    ((_, first),) = packets_of(response().data)
    assert p.HandshakeResponse41.parse(first).auth_response == auth.sha2_scramble(b"svcpw", server_nonce)
    (sent,) = s.handle(from_upstream(4, p.AuthMoreData(pem)))
    assert isinstance(sent, SendUpstream)
    ((seq, secret),) = packets_of(sent.data)
    assert seq == 5
    return secret


def test_upstream_caching_sha2_full_auth_encrypts_the_password_once_terminated() -> None:
    """The password went out as `svcpw\\0\\0` (encrypt_password adds the NUL itself)."""
    secret = _upstream_sha2(RSA.public_pem())
    assert RSA.decrypt_password(secret, b"N" * 20) == b"svcpw"


def test_an_unusable_upstream_public_key_is_an_upstream_violation() -> None:
    """Found by the fuzz tests: the PEM parser's ValueError escaped handle()."""
    _s, nonce, pb = greeted()
    hello = p.HandshakeV10("8.0.36", 9, b"N" * 20, p.CLIENT_LONG_PASSWORD | CLIENT_CAPS, 45, STATUS, SHA2)
    close = Placeholder(Close)
    assert (
        pb
        >> from_client(1, handshake(nonce))
        << OpenUpstream("crm", "mysql")
        >> UpstreamConnected()
        >> from_upstream(0, hello)
        << Placeholder(SendUpstream)
        >> from_upstream(2, p.AuthMoreData(b"-----BEGIN junk"))
        << to_client(2, UPSTREAM_VIOLATION)
        << close
    )
    assert close().reason.startswith("upstream protocol violation: the server's public key is unusable")


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        (p.ComFieldList(b"c", b""), [text_row(SECRET)]),
        (p.ComStmtPrepare(PREP_SQL.encode()), [p.StmtPrepareOK(1, 1, 1, 0), text_row(SECRET)]),
        (p.ComStmtPrepare(PREP_SQL.encode()), [p.StmtPrepareOK(1, 1, 1, 0), PARAM, text_row(SECRET)]),
        (p.ComSetOption(0), [text_row(SECRET)]),
    ],
)
def test_answers_relayed_as_they_come_must_be_what_they_claim(command: object, answer: list[object]) -> None:
    """Found by the fuzz tests: column definitions (COM_FIELD_LIST, prepare) and EOFs were
    relayed unread, so a row sent in their place reached the client unmasked."""
    s, _, _ = login()
    assert s.handle(from_client(0, command)) == [to_upstream(0, command)]
    out = s.handle(from_upstream(1, *answer))  # the definitions before the row may be relayed
    assert isinstance(out[-1], Close) and out[-1].reason.startswith("upstream protocol violation")
    sent = b"".join(c.data for c in out if isinstance(c, SendClient))
    assert SECRET not in sent and sent.endswith(to_client(0, UPSTREAM_VIOLATION).data[4:])


def test_an_ok_to_a_command_that_is_no_statement_has_no_info() -> None:
    _, _, pb = login()
    assert (
        pb
        >> from_client(0, p.ComPing())
        << to_upstream(0, p.ComPing())
        >> from_upstream(1, p.OK(0, 0, STATUS, 0, b"call " + SECRET))
        << to_client(1, ok())
    )


def test_several_statements_need_the_client_to_have_enabled_them() -> None:
    """maskgate's upstream connection always has CLIENT_MULTI_STATEMENTS; a client that did not
    ask for it (PyMySQL's default) relies on the server refusing `1; DROP …` stacked behind an
    injection. ctx.multi_statements was tracked and never read: the string went through."""
    _, gate, pb = login(caps=CLIENT_CAPS & ~p.CLIENT_MULTI_STATEMENTS)
    on = p.ComSetOption(p.MYSQL_OPTION_MULTI_STATEMENTS_ON)
    assert (
        pb
        >> from_client(0, q(MULTI_SQL))
        << to_client(1, refused(MULTI_OFF.message))
        >> from_client(0, on)
        << to_upstream(0, on)
        >> from_upstream(1, eof())
        << to_client(1, eof())
        >> from_client(0, q(MULTI_SQL))
        << to_upstream(0, q(MULTI_SQL))
    )
    assert gate.records[0].event == "refused"


@pytest.mark.parametrize("charset", [13, 95, 0])  # sjis, cp932, none
def test_a_client_charset_maskgate_cannot_read_is_refused(charset: int) -> None:
    """Statements were decoded as UTF-8 whatever the client's charset: in SJIS `\\xc2\\x81\\\\'`
    is two characters and a quote that ends the string, in UTF-8 a character, an escaped quote
    and no end, so maskgate judged another statement than the server ran."""
    s, nonce, pb = greeted()
    resp = handshake(nonce)
    resp = p.HandshakeResponse41(
        resp.capabilities, resp.max_packet, charset, "alice", resp.auth_response, "crm", NATIVE, ()
    )
    assert (
        pb
        >> from_client(1, resp)
        << to_client(2, errors.unknown_charset(charset))
        << Close("unknown client charset")
    )
    assert s.ctx.tracker.principal is None


def _charset_decide(principal: object, sql: str) -> Decision:
    name = sql.split()[-1] if sql.upper().startswith("SET NAMES") else None
    if name is not None:
        return Allow(kind="set", settings=(SettingChange("client_encoding", (name,)),))
    return decide(principal, sql)  # type: ignore[arg-type]


def test_set_names_changes_the_charset_statements_are_read_in() -> None:
    """A gbk connection that switched to utf8mb4 was still read as gbk: `'中\\\\'` then ends its
    string for the server (utf8) while, read as gbk, 中's last byte swallows one backslash and
    the other escapes the quote: what follows it was judged a string, and ran as SQL."""
    gate = FakeGate(_charset_decide)
    s, gate, pb = login(gate, charset=8)
    assert s.ctx.encoding == "cp1252"
    names = q("SET NAMES utf8mb4")
    attack = p.ComQuery("SELECT '中\\\\' UNION SELECT 1 -- '".encode())
    assert (
        pb
        >> from_client(0, names)
        << to_upstream(0, names)
        >> from_upstream(1, ok())
        << to_client(1, ok())
        >> from_client(0, attack)
        << to_upstream(0, attack)
    )
    assert gate.decisions[-1][1] == "SELECT '中\\\\' UNION SELECT 1 -- '"  # what the server reads
    # COM_RESET_CONNECTION brings the handshake's charset back.
    assert pb >> from_upstream(1, ok()) << to_client(1, ok())
    reset = p.ComResetConnection()
    assert (
        pb >> from_client(0, reset) << to_upstream(0, reset) >> from_upstream(1, ok()) << to_client(1, ok())
    )
    assert s.ctx.encoding == "cp1252"


def test_set_names_to_a_charset_maskgate_cannot_read_closes() -> None:
    gate = FakeGate(_charset_decide)
    _, gate, pb = login(gate)
    names = q("SET NAMES sjis")
    assert (
        pb
        >> from_client(0, names)
        << to_upstream(0, names)
        >> from_upstream(1, ok())
        << to_client(1, errors.unknown_charset_name("sjis"))
        << Close("client charset changed to one maskgate cannot read")
    )


def test_a_charset_change_must_end_its_multi_statement_string() -> None:
    """The server reads the statements after a SET NAMES of the same string in the new charset;
    maskgate decoded the whole string in the old one."""

    def decide_multi(principal: object, sql: str) -> Decision:
        names = Allow(kind="set", settings=(SettingChange("client_encoding", ("utf8mb4",)),))
        return Allow(kind="multi", statements=(names, Allow(kind="select")))

    _, gate, pb = login(FakeGate(decide_multi), charset=8)
    sql = q("SET NAMES utf8mb4; SELECT 1")
    assert pb >> from_client(0, sql) << to_client(1, refused(CHARSET_THEN_MORE.message))
    assert gate.records[-1].event == "refused"


def test_the_held_reset_ok_has_no_info_either() -> None:
    """Found by the fuzz tests: the OK held while the role is restored went out as it came."""
    _, _, pb = login(database_role="analyst")
    reset = p.ComResetConnection()
    assert (
        pb
        >> from_client(0, reset)
        << to_upstream(0, reset)
        >> from_upstream(1, p.OK(0, 0, STATUS, 0, b"call " + SECRET))
        << to_upstream(0, q("SET ROLE `analyst`"))
        >> from_upstream(1, ok())
        << to_client(1, ok())
    )


def test_quit_sent_while_a_statement_runs_waits_for_its_answer() -> None:
    _s, gate, pb = login()
    assert (
        pb
        >> from_client(0, q("SELECT phone FROM c"))
        << to_upstream(0, q("SELECT phone FROM c"))
        >> ClientData(wire(0, p.ComQuit()) + wire(0, q("SELECT 2")))  # nothing runs after QUIT
        >> from_upstream(1, *result([text_row(SECRET)]))
        << to_upstream(0, p.ComQuit())
        << to_client(1, *result([text_row(MASKED)]))
        << Close("client quit")
    )
    assert [r.sql for r in gate.begun] == ["SELECT phone FROM c"] and gate.records[-1].event == "end"


def test_a_prepared_statement_is_decided_again_after_a_policy_reload() -> None:
    s, gate, pb = login()
    prepared(pb)
    gate.generation = 1  # the policy was reloaded: phone is now refused
    gate._decide = lambda principal, sql: Block("class_denied", "class mobile is not allowed")
    assert pb >> from_client(0, execute(1)) << to_client(1, refused("class mobile is not allowed"))
    assert gate.records[-1].event == "refused" and s.idle


# ---------------------------------------------------------------------------------------------
# The hot path's shortcuts (plan cache, runs of packets, a query forwarded as sent)
# ---------------------------------------------------------------------------------------------


def test_a_row_in_place_of_a_known_definition_is_still_a_violation() -> None:
    """A cached plan stands for definitions parsed before: other bytes are parsed again."""
    s, _, pb = login()
    sql = "SELECT phone FROM c"
    for _ in range(2):
        assert (
            pb
            >> from_client(0, q(sql))
            << to_upstream(0, q(sql))
            >> from_upstream(1, *result([text_row(SECRET)]))
            << to_client(1, *result([text_row(MASKED)]))
        )
    s.handle(from_client(0, q(sql)))
    out = s.handle(from_upstream(1, p.ColumnCount(1), text_row(SECRET), eof(), text_row(SECRET), eof()))
    assert SECRET not in client_bytes(out)
    assert any(isinstance(c, Close) for c in out)


def test_rows_over_several_reads_keep_one_limit() -> None:
    s, gate, _ = login()
    s.handle(from_client(0, q("SELECT phone FROM c")))
    data = from_upstream(1, *result([text_row(SECRET)] * 5)).data
    cut = len(from_upstream(1, *result([text_row(SECRET)] * 2)).data) - 9  # two rows, no EOF
    got = client_bytes(s.handle(UpstreamData(data[:cut]))) + client_bytes(s.handle(UpstreamData(data[cut:])))
    want = to_client(1, *result([text_row(MASKED)] * 3, warnings=1)).data
    assert got == want
    assert gate.records[-1].rows == 3 and gate.records[-1].truncated


def test_a_query_is_forwarded_as_sent_unless_the_server_reads_it_otherwise() -> None:
    _, _, pb = login()
    plain = p.ComQuery("SELECT phone FROM c WHERE name = '张三'".encode())
    assert pb >> from_client(0, plain) << to_upstream(0, plain)
    pb >> from_upstream(1, *result([])) << to_client(1, *result([]))
    # An executable comment is sent expanded, as it was decided.
    sql = "SELECT /*!50000 phone */ FROM c"
    expanded = "SELECT   phone   FROM c"
    assert pb >> from_client(0, q(sql)) << to_upstream(0, q(expanded))
