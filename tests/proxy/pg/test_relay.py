"""Playbooks of the relay layer: statements decided and refused, answers masked, counted, hidden."""

from __future__ import annotations

import pytest

from policies.decision import Allow, Block, ColumnMask, SettingChange
from proxy.core.commands import Close
from proxy.core.playbook import Playbook
from proxy.pg import messages as m
from proxy.pg.relay import FAILING_DESCRIBE, FAILING_QUERY, ClientPhase, UpstreamPhase
from proxy.pg.session import PgSession
from tests.proxy.pg.fakegate import FakeGate
from tests.proxy.pg.transcripts import (
    DETECT,
    PHONE,
    UPSTREAM_VIOLATION,
    b,
    from_client,
    from_upstream,
    login,
    refusal,
    text_field,
    to_client,
    to_upstream,
    truncated,
)

SECRETS = refusal("table secrets is not allowed")
PHONE_RD = m.RowDescription((text_field("phone"),))


def relay_of(s: PgSession):  # type: ignore[no-untyped-def]
    assert s.relay is not None
    return s.relay


def simple(pb: Playbook, sql: str, *answer: object) -> Playbook:
    """A Query that is forwarded as it is, and whose answer reaches the client as it is."""
    return (
        pb
        >> from_client(m.Query(sql))
        << to_upstream(m.Query(sql))
        >> from_upstream(*answer)
        << to_client(*answer)
    )


def begin(pb: Playbook) -> Playbook:
    return simple(pb, "BEGIN", m.CommandComplete("BEGIN"), m.ReadyForQuery(b"T"))


def test_simple_query_masked_and_limited() -> None:
    _, gate, pb = login()
    rows = [m.DataRow((f"1380000000{i}".encode(),)) for i in range(5)]
    masked = [m.DataRow((f"138****000{i}".encode(),)) for i in range(3)]
    assert (
        pb
        >> from_client(m.Query("SELECT phone FROM customers"))
        << to_upstream(m.Query("SELECT phone FROM customers"))
        >> from_upstream(PHONE_RD, *rows, m.CommandComplete("SELECT 5"), m.ReadyForQuery(b"I"))
        << to_client(PHONE_RD, *masked, truncated(3), m.CommandComplete("SELECT 3"), m.ReadyForQuery(b"I"))
    )
    rec = gate.records[-1]
    assert (rec.rows, rec.masked, rec.truncated, rec.sql) == (3, 3, True, "SELECT phone FROM customers")


def test_detectors_on_unclassified_columns_and_errors() -> None:
    _, _, pb = login()
    rd = m.RowDescription((text_field("note"),))
    dup = (("S", "ERROR"), ("C", "23505"), ("M", "dup"))
    assert (
        pb
        >> from_client(m.Query("SELECT note FROM t"))
        << to_upstream(m.Query("SELECT note FROM t"))
        >> from_upstream(
            rd, m.DataRow((b"call 13912345678",)), m.DataRow((b"ok",)), m.CommandComplete("SELECT 2")
        )
        << to_client(
            rd, m.DataRow((b"call 139****5678",)), m.DataRow((b"ok",)), m.CommandComplete("SELECT 2")
        )
        >> from_upstream(m.ReadyForQuery(b"I"))
        << to_client(m.ReadyForQuery(b"I"))
        >> from_client(m.Query("INSERT INTO t VALUES (1)"))
        << to_upstream(m.Query("INSERT INTO t VALUES (1)"))
        >> from_upstream(
            m.ErrorResponse((*dup, ("D", "Key (x)=(13800138000) exists"))), m.ReadyForQuery(b"I")
        )
        << to_client(m.ErrorResponse((*dup, ("D", "Key (x)=(138****8000) exists"))), m.ReadyForQuery(b"I"))
    )


def test_unrestricted_passes_rows_untouched() -> None:
    _, _, pb = login(unrestricted=True)
    # Row limit 3 in the canned decision is not reached; bytes pass as one slice.
    answer = (
        PHONE_RD,
        m.DataRow((b"13800000001",)),
        m.DataRow((b"13800000002",)),
        m.CommandComplete("SELECT 2"),
    )
    assert simple(pb, "SELECT phone FROM customers", *answer, m.ReadyForQuery(b"I"))


def test_multi_statement_parts() -> None:
    parts = (Allow(kind="select", detect=DETECT), Allow(kind="select", columns=(PHONE,)))
    gate = FakeGate(lambda p, sql: Allow(kind="select", statements=parts, detect=DETECT))
    _, _, pb = login(gate)
    rd = m.RowDescription((text_field("x"),))
    # First part: a clear column, but detectors still apply; second part: a column mask.
    assert (
        pb
        >> from_client(m.Query("SELECT 1; SELECT phone FROM c"))
        << to_upstream(m.Query("SELECT 1; SELECT phone FROM c"))
        >> from_upstream(rd, m.DataRow((b"13800000001",)), m.CommandComplete("SELECT 1"))
        << to_client(rd, m.DataRow((b"138****0001",)), m.CommandComplete("SELECT 1"))
        >> from_upstream(
            rd, m.DataRow((b"13800000001",)), m.CommandComplete("SELECT 1"), m.ReadyForQuery(b"I")
        )
        << to_client(rd, m.DataRow((b"138****0001",)), m.CommandComplete("SELECT 1"), m.ReadyForQuery(b"I"))
    )


@pytest.mark.parametrize("in_block", [False, True])
def test_refused_simple_query(in_block: bool) -> None:
    s, gate, pb = login()
    if in_block:
        assert begin(pb)
    after = b"E" if in_block else b"I"
    syntax = m.ErrorResponse((("S", "ERROR"), ("C", "42601"), ("M", "syntax error")))
    # The upstream runs a failing stand-in so its transaction state matches the client's.
    assert (
        pb
        >> from_client(m.Query("SELECT * FROM secrets"))
        << to_upstream(FAILING_QUERY)
        >> from_upstream(syntax, m.ReadyForQuery(after))
        << to_client(SECRETS, m.ReadyForQuery(after))
    )
    assert isinstance(gate.records[-1].decision, Block)
    assert s.ctx.txn == after and not relay_of(s).queue
    # Still usable.
    assert pb >> from_client(m.Query("SELECT 1")) << to_upstream(m.Query("SELECT 1"))


def test_extended_pipeline_with_refusal_in_the_middle() -> None:
    s, gate, pb = login()
    first = (m.Parse("", "SELECT 1"), m.Bind("", ""), m.Describe(b"P", ""), m.Execute("", 0))
    refused = (m.Parse("s2", "SELECT * FROM secrets"), m.Bind("", "s2"), m.Execute("", 0))
    ok = (
        m.ParseComplete(),
        m.BindComplete(),
        m.RowDescription((text_field("x", 23),)),
        m.DataRow((b"1",)),
        m.CommandComplete("SELECT 1"),
    )
    no_such = m.ErrorResponse((("S", "ERROR"), ("C", "26000"), ("M", "no such statement")))
    # Refused Parse -> failing Describe upstream; its Bind/Execute are discarded until Sync.
    assert (
        pb
        >> from_client(*first, *refused, m.Sync())
        << to_upstream(*first, FAILING_DESCRIBE, m.Sync())
        >> from_upstream(*ok, no_such, m.ReadyForQuery(b"I"))
        << to_client(*ok, SECRETS, m.ReadyForQuery(b"I"))
    )
    relay = relay_of(s)
    assert not relay.queue and relay.client_phase is ClientPhase.RELAY
    # The session keeps working, and the refused name was never registered.
    assert "s2" not in relay.stmts
    assert [r.decision.allowed for r in gate.records] == [False, True]


def test_upstream_error_drops_pending_until_sync() -> None:
    s, _, pb = login()
    column = m.ErrorResponse((("S", "ERROR"), ("C", "42703"), ("M", "column does not exist")))
    batch = (m.Parse("a", "SELECT bad"), m.Bind("", "a"), m.Execute("", 0), m.Sync())
    assert (
        pb
        >> from_client(*batch)
        << to_upstream(batch[0], batch[1], m.Describe(b"P", ""), batch[2], batch[3])
        >> from_upstream(column, m.ReadyForQuery(b"I"))
        << to_client(column, m.ReadyForQuery(b"I"))
    )
    relay = relay_of(s)
    assert "a" not in relay.stmts and not relay.queue
    # "a" was never prepared: a restricted role cannot bind it.
    assert (
        pb
        >> from_client(m.Bind("", "a"), m.Execute("", 0), m.Sync())
        << to_upstream(FAILING_DESCRIBE, m.Sync())
        >> from_upstream(m.ErrorResponse((("S", "ERROR"), ("C", "26000"))), m.ReadyForQuery(b"I"))
        << to_client(refusal("unknown prepared statement"), m.ReadyForQuery(b"I"))
    )


def test_execute_with_row_count_across_limit() -> None:
    _, gate, pb = login()
    rows = [m.DataRow((f"1380000000{i}".encode(),)) for i in range(4)]
    masked = [m.DataRow((f"138****000{i}".encode(),)) for i in range(4)]
    prepare = (m.Parse("s", "SELECT phone FROM c"), m.Describe(b"S", "s"), m.Sync())
    described = (m.ParseComplete(), m.ParameterDescription(()), PHONE_RD, m.ReadyForQuery(b"I"))
    assert (
        pb
        >> from_client(*prepare)
        << to_upstream(*prepare)
        >> from_upstream(*described)
        << to_client(*described)
        >> from_client(m.Bind("p", "s"), m.Execute("p", 2), m.Flush())
        << to_upstream(m.Bind("p", "s"), m.Execute("p", 2), m.Flush())
        >> from_upstream(m.BindComplete(), rows[0], rows[1], m.PortalSuspended())
        << to_client(m.BindComplete(), masked[0], masked[1], m.PortalSuspended())
        >> from_client(m.Execute("p", 2), m.Flush())
        << to_upstream(m.Execute("p", 2), m.Flush())
        # The limit (3) is reached inside this call: one row, then the portal ends for the client.
        >> from_upstream(rows[2], rows[3], m.PortalSuspended())
        << to_client(masked[2], truncated(3), m.CommandComplete("SELECT 1"))
    )
    assert gate.records[-1].truncated and gate.records[-1].rows == 1


def test_hidden_describe_when_client_skips_it() -> None:
    _, _, pb = login()
    rd = m.RowDescription((text_field("phone", fmt=0),))
    # The injected Describe's RowDescription is swallowed; the row is masked.
    assert (
        pb
        >> from_client(m.Parse("", "SELECT phone FROM c"), m.Bind("", ""), m.Execute("", 0), m.Sync())
        << to_upstream(
            m.Parse("", "SELECT phone FROM c"),
            m.Bind("", ""),
            m.Describe(b"P", ""),
            m.Execute("", 0),
            m.Sync(),
        )
        >> from_upstream(m.ParseComplete(), m.BindComplete(), rd, m.DataRow((b"13800000001",)))
        << to_client(m.ParseComplete(), m.BindComplete(), m.DataRow((b"138****0001",)))
        >> from_upstream(m.CommandComplete("SELECT 1"), m.ReadyForQuery(b"I"))
        << to_client(m.CommandComplete("SELECT 1"), m.ReadyForQuery(b"I"))
    )


def test_binary_format_masking_and_unmaskable_refusal() -> None:
    gate = FakeGate(
        lambda p, sql: Allow(
            kind="select",
            columns=(ColumnMask(0, "n", "mobile", "mask"), ColumnMask(1, "d", "birthday", "mask")),
            detect=DETECT,
        )
    )
    s, _, pb = login(gate)
    assert begin(pb)
    batch = (m.Parse("", "SELECT n, d"), m.Bind("", "", (), (), (1,)), m.Describe(b"P", ""), m.Execute("", 0))
    rd = m.RowDescription((text_field("n", 20, 1), text_field("d", 1082, 1)))
    # Binary results whose types are not known yet: the Execute (and what follows it) waits
    # for the Describe's answer; the server is asked to flush it now.
    assert pb >> from_client(*batch) << to_upstream(*batch[:3], m.Flush()) >> from_client(m.Sync())
    # A date column cannot be masked in binary: the Execute is refused before it runs, with a
    # failing stand-in that fails the upstream block too, as the client is told.
    assert (
        pb
        >> from_upstream(m.ParseComplete(), m.BindComplete(), rd)
        << to_upstream(FAILING_DESCRIBE, m.Sync())
        << to_client(m.ParseComplete(), m.BindComplete(), rd)
        >> from_upstream(m.ErrorResponse((("S", "ERROR"), ("C", "26000"))), m.ReadyForQuery(b"E"))
        << to_client(refusal('column "d" cannot be masked in binary format'), m.ReadyForQuery(b"E"))
    )
    assert s.ctx.txn == b"E" and relay_of(s).upstream_phase is UpstreamPhase.RELAY


def test_what_follows_a_result_that_cannot_be_masked_never_runs() -> None:
    # Outside a transaction block too: the refused Execute and the rest of its batch never reach
    # the server, so nothing runs and commits while the client is told the batch failed.
    gate = FakeGate(
        lambda p, sql: (
            Allow(kind="select", columns=(ColumnMask(0, "d", "birthday", "mask"),))
            if "d" in sql
            else Allow(kind="update")
        )
    )
    s, gate, pb = login(gate)
    rd = m.RowDescription((text_field("d", 1082, 1),))
    bad = (m.Parse("", "SELECT d"), m.Bind("", "", (), (), (1,)), m.Execute("", 0))
    then = (m.Parse("", "UPDATE t SET x = 1"), m.Bind("", ""), m.Execute("", 0), m.Sync())
    assert (
        pb
        >> from_client(*bad, *then)
        << to_upstream(*bad[:2], m.Describe(b"P", ""), m.Flush())
        >> from_upstream(m.ParseComplete(), m.BindComplete(), rd)
        << to_upstream(FAILING_DESCRIBE, m.Sync())
        << to_client(m.ParseComplete(), m.BindComplete())
        >> from_upstream(m.ErrorResponse((("S", "ERROR"), ("C", "26000"))), m.ReadyForQuery(b"I"))
        << to_client(refusal('column "d" cannot be masked in binary format'), m.ReadyForQuery(b"I"))
    )
    relay = relay_of(s)
    assert relay.upstream_phase is UpstreamPhase.RELAY and not relay.queue and relay.held is None
    assert [r.decision.allowed for r in gate.records] == [False]
    assert gate.begun == []  # nothing was forwarded to run


def test_nothing_may_follow_a_copy_in_its_string_or_batch() -> None:
    # COPY rows may be refused part-way, after the server started the COPY: nothing may be left
    # to run and commit behind one.
    gate = FakeGate(lambda p, sql: Allow(kind="copy") if sql.startswith("COPY") else Allow(kind="update"))
    _, gate, pb = login(gate)
    multi = m.Query("COPY t TO STDOUT; UPDATE t SET x = 1")
    gate._decide = lambda p, sql: Allow(  # type: ignore[method-assign]
        kind="multi", statements=(Allow(kind="copy"), Allow(kind="update"))
    )
    assert pb >> from_client(multi) << to_upstream(FAILING_QUERY)
    stand_in = m.ErrorResponse((("S", "ERROR"), ("C", "42601")))
    alone = refusal("COPY must be sent on its own for this role (its rows are masked as they stream)")
    assert pb >> from_upstream(stand_in, m.ReadyForQuery(b"I")) << to_client(alone, m.ReadyForQuery(b"I"))
    gate._decide = lambda p, sql: Allow(kind="copy") if sql.startswith("COPY") else Allow(kind="update")  # type: ignore[method-assign]
    copy = (m.Parse("", "COPY t TO STDOUT"), m.Bind("", ""), m.Execute("", 0))
    then = (m.Parse("", "UPDATE t SET x = 1"), m.Bind("", ""), m.Execute("", 0), m.Sync())
    assert (
        pb
        >> from_client(*copy, *then)
        << to_upstream(*copy[:2], m.Describe(b"P", ""), copy[2], FAILING_DESCRIBE, m.Sync())
    )


def test_a_query_refused_after_it_started_in_a_block_fails_the_block_upstream() -> None:
    s, gate, pb = login()
    assert begin(pb)
    copy_out = m.CopyOutResponse(1, (1,))
    assert (
        pb
        >> from_client(m.Query("COPY (SELECT phone FROM c) TO STDOUT (FORMAT binary)"))
        << to_upstream(m.Query("COPY (SELECT phone FROM c) TO STDOUT (FORMAT binary)"))
        >> from_upstream(copy_out, m.CopyData(b"PGCOPY\n..."), m.CopyDone(), m.CommandComplete("COPY 1"))
        << to_client(refusal("binary COPY is not allowed for this role"))
    )
    assert relay_of(s).upstream_phase is UpstreamPhase.QUERY_REFUSED
    assert (
        pb
        >> from_upstream(m.NoticeResponse((("M", "hidden"),)), m.ReadyForQuery(b"T"))
        << to_upstream(FAILING_QUERY)
        >> from_upstream(m.ErrorResponse((("S", "ERROR"), ("C", "42601"))), m.ReadyForQuery(b"E"))
        << to_client(m.ReadyForQuery(b"E"))
    )
    assert s.ctx.txn == b"E" and gate.records[-1].error == "42501"


def test_copy_to_masked_and_binary_refused() -> None:
    _, _, pb = login()
    assert (
        pb
        >> from_client(m.Query("COPY (SELECT phone FROM c) TO STDOUT"))
        << to_upstream(m.Query("COPY (SELECT phone FROM c) TO STDOUT"))
        >> from_upstream(m.CopyOutResponse(0, (0,)), m.CopyData(b"13800000001\n"), m.CopyData(b"\\N\n"))
        << to_client(m.CopyOutResponse(0, (0,)), m.CopyData(b"138****0001\n"), m.CopyData(b"\\N\n"))
        >> from_upstream(m.CopyDone(), m.CommandComplete("COPY 2"), m.ReadyForQuery(b"I"))
        << to_client(m.CopyDone(), m.CommandComplete("COPY 2"), m.ReadyForQuery(b"I"))
        >> from_client(m.Query("COPY (SELECT phone FROM c) TO STDOUT (FORMAT binary)"))
        << to_upstream(m.Query("COPY (SELECT phone FROM c) TO STDOUT (FORMAT binary)"))
        >> from_upstream(m.CopyOutResponse(1, (1,)), m.CopyData(b"PGCOPY\n..."), m.CopyDone())
        >> from_upstream(m.CommandComplete("COPY 1"), m.ReadyForQuery(b"I"))
        << to_client(refusal("binary COPY is not allowed for this role"), m.ReadyForQuery(b"I"))
    )


def test_copy_data_outside_copy_out_fails_closed() -> None:
    _, _, pb = login()
    assert (
        pb
        >> from_client(m.Query("SELECT phone FROM c"))
        << to_upstream(m.Query("SELECT phone FROM c"))
        >> from_upstream(m.CopyData(b"13800000001\n"))
        << to_client(UPSTREAM_VIOLATION)
        << Close("upstream protocol violation: CopyData outside COPY TO STDOUT")
    )


def test_function_call_refused() -> None:
    _, gate, pb = login()
    assert (
        pb
        >> from_client(m.FunctionCall(1598, (), (), 0))
        << to_upstream(FAILING_QUERY)
        >> from_upstream(m.ErrorResponse((("S", "ERROR"), ("C", "42601"))), m.ReadyForQuery(b"I"))
        << to_client(
            refusal("function calls over the fast-path protocol are not allowed"), m.ReadyForQuery(b"I")
        )
    )
    assert gate.records[-1].sql == "<fast-path function call: oid 1598, 0 arguments>"


def test_function_call_of_an_unrestricted_role_is_forwarded() -> None:
    _, gate, pb = login(unrestricted=True)
    call = m.FunctionCall(1598, (), (), 0)
    answer = (m.FunctionCallResponse(b"1"), m.ReadyForQuery(b"I"))
    assert pb >> from_client(call) << to_upstream(call) >> from_upstream(*answer) << to_client(*answer)
    assert gate.records[-1].decision == Allow(kind="function_call")


def test_search_path_and_schema_changes_tracked() -> None:
    app = (SettingChange("search_path", ("app",)),)
    gate = FakeGate(lambda p, sql: Allow(kind="ddl", settings=app, schema_changed=True))
    s, _, pb = login(gate)
    assert simple(pb, "SET search_path = app", m.CommandComplete("SET"), m.ReadyForQuery(b"I"))
    assert s.ctx.tracker.search_path == ("app",) and gate.schema_changes == ["crm"]
    assert gate.schema_upstreams == ["postgres"]
    ps = m.ParameterStatus("search_path", "x, public")
    assert pb >> from_upstream(ps) << to_client(ps)
    assert s.ctx.tracker.search_path == ("x", "public")
    assert pb >> from_client(m.Query("SELECT 1")) << to_upstream(m.Query("SELECT 1"))
    assert gate.decisions[-1][2:] == (("x", "public"), "crm", "postgres")


def test_an_unsafe_setting_reported_by_the_server_closes_a_restricted_session() -> None:
    _, _, pb = login()
    ps = m.ParameterStatus("client_encoding", "SJIS")
    err = m.ErrorResponse(
        (
            ("S", "FATAL"),
            ("V", "FATAL"),
            ("C", "42501"),
            ("M", "maskgate: session setting client_encoding = SJIS is not allowed for this role"),
        )
    )
    assert (
        pb
        >> from_client(m.Query("SELECT phone FROM c"))
        << to_upstream(m.Query("SELECT phone FROM c"))
        >> from_upstream(PHONE_RD, m.DataRow((b"13800000001",)), ps, m.ReadyForQuery(b"I"))
        << to_client(PHONE_RD, m.DataRow((b"138****0001",)), err)
        << Close("unsafe session setting client_encoding=SJIS")
    )


def test_a_prepared_statement_is_decided_again_after_a_reload() -> None:
    limits = {"sql": "SELECT x FROM t LIMIT 5"}
    gate = FakeGate(lambda p, sql: Allow(kind="select", rewritten_sql=limits["sql"]))
    _, gate, pb = login(gate)
    assert (
        pb
        >> from_client(m.Parse("s", "SELECT x FROM t"), m.Sync())
        << to_upstream(m.Parse("s", "SELECT x FROM t LIMIT 5"), m.Sync())
        >> from_upstream(m.ParseComplete(), m.ReadyForQuery(b"I"))
        << to_client(m.ParseComplete(), m.ReadyForQuery(b"I"))
    )
    # A reload that keeps the SQL the server holds: the Bind goes on under the new decision.
    gate.generation += 1
    assert pb >> from_client(m.Bind("", "s")) << to_upstream(m.Bind("", "s"))
    assert len(gate.decisions) == 2
    # One that would need other SQL upstream: refused until the client prepares it again.
    gate.generation += 1
    limits["sql"] = "SELECT x FROM t LIMIT 1"
    assert (
        pb
        >> from_client(m.Bind("", "s"), m.Execute("", 0), m.Sync())
        << to_upstream(FAILING_DESCRIBE, m.Sync())
    )
    assert gate.records[-1].decision == Block(
        "statement_not_allowed", "the policy changed since this statement was prepared; prepare it again"
    )


def test_the_database_error_text_is_withheld_while_classified_data_is_read() -> None:
    gate = FakeGate(lambda p, sql: Allow(kind="select", classes=("mobile",), detect=DETECT))
    s, _, pb = login(gate)
    bad = m.ErrorResponse((("S", "ERROR"), ("V", "ERROR"), ("C", "22P02"), ("M", 'invalid input: "x7950"')))
    withheld = m.ErrorResponse(
        (
            ("S", "ERROR"),
            ("V", "ERROR"),
            ("C", "22P02"),
            (
                "M",
                "maskgate: the statement failed (SQLSTATE 22P02); the database's message is withheld "
                "because the statement reads classified data",
            ),
        )
    )
    assert (
        pb
        >> from_client(m.Query("SELECT phone::int FROM c"))
        << to_upstream(m.Query("SELECT phone::int FROM c"))
        >> from_upstream(bad, m.ReadyForQuery(b"I"))
        << to_client(withheld, m.ReadyForQuery(b"I"))
    )
    assert relay_of(s).upstream_phase is UpstreamPhase.RELAY


def test_a_failed_query_hides_its_notices_until_ready_for_query() -> None:
    s, gate, pb = login()
    err = m.ErrorResponse((("S", "ERROR"), ("C", "42P01"), ("M", "no such table")))
    assert (
        pb
        >> from_client(m.Query("SELECT x FROM nope"))
        << to_upstream(m.Query("SELECT x FROM nope"))
        >> from_upstream(err)
        << to_client(err)
    )
    assert relay_of(s).upstream_phase is UpstreamPhase.QUERY_FAILED
    notice = m.NoticeResponse((("M", "later"),))
    assert pb >> from_upstream(notice, m.ReadyForQuery(b"I")) << to_client(m.ReadyForQuery(b"I"))
    assert relay_of(s).upstream_phase is UpstreamPhase.RELAY and gate.records[-1].error == "42P01"


def test_notifications_are_scanned_by_the_detectors() -> None:
    _, _, pb = login()
    assert simple(pb, "LISTEN c", m.CommandComplete("LISTEN"), m.ReadyForQuery(b"I"))
    assert (
        pb
        >> from_upstream(m.NotificationResponse(9, "c", "call 13912345678"))
        << to_client(m.NotificationResponse(9, "c", "call 139****5678"))
    )


def test_a_ready_for_query_nobody_asked_for_is_a_violation() -> None:
    _, _, pb = login()
    assert (
        pb
        >> from_upstream(m.ReadyForQuery(b"I"))
        << to_client(UPSTREAM_VIOLATION)
        << Close("upstream protocol violation: unexpected ReadyForQuery")
    )


def test_client_messages_are_skipped_until_sync_after_an_error_without_one() -> None:
    s, _, pb = login()
    err = m.ErrorResponse((("S", "ERROR"), ("C", "26000"), ("M", "no such statement")))
    assert (
        pb
        >> from_client(m.Describe(b"S", "nope"), m.Flush())
        << to_upstream(m.Describe(b"S", "nope"), m.Flush())
        >> from_upstream(err)
        << to_client(err)
    )
    assert relay_of(s).client_phase is ClientPhase.SKIP_UNTIL_SYNC
    # The server skips these too: the proxy forwards nothing until the Sync.
    assert (
        pb
        >> from_client(m.Query("SELECT 1"), m.Parse("", "SELECT 2"), m.Sync())
        << to_upstream(m.Sync())
        >> from_upstream(m.ReadyForQuery(b"I"))
        << to_client(m.ReadyForQuery(b"I"))
    )
    assert relay_of(s).client_phase is ClientPhase.RELAY


def test_terminate_is_forwarded_and_closes() -> None:
    _, _, pb = login()
    assert pb >> from_client(m.Terminate()) << to_upstream(m.Terminate()) << Close("client terminated")


def test_statements_are_recorded_with_their_outcome() -> None:
    _, gate, pb = login()
    answer = (PHONE_RD, m.DataRow((b"13800000001",)), m.CommandComplete("SELECT 1"), m.ReadyForQuery(b"I"))
    assert (
        pb
        >> from_client(m.Query("SELECT phone FROM c"))
        << to_upstream(m.Query("SELECT phone FROM c"))
        >> from_upstream(*answer)
        << to_client(
            b(PHONE_RD, m.DataRow((b"138****0001",))), m.CommandComplete("SELECT 1"), m.ReadyForQuery(b"I")
        )
    )
    (rec,) = gate.records
    assert (rec.protocol, rec.user, rec.role, rec.database, rec.rows, rec.masked, rec.error) == (
        "postgres",
        "alice",
        "vendor",
        "crm",
        1,
        1,
        None,
    )


def test_a_held_execute_is_released_when_its_describe_is_skipped() -> None:
    # The server fails an earlier message of the batch and skips the proxy's Describe: what was
    # held is handled then (skipped too, up to the Sync), not kept waiting for ever.
    gate = FakeGate(lambda p, sql: Allow(kind="select", columns=(ColumnMask(0, "d", "birthday", "mask"),)))
    s, _, pb = login(gate)
    batch = (m.Parse("", "SELEC d"), m.Bind("", "", (), (), (1,)), m.Execute("", 0), m.Sync())
    syntax = m.ErrorResponse((("S", "ERROR"), ("C", "42601"), ("M", "syntax error")))
    assert (
        pb
        >> from_client(*batch)
        << to_upstream(*batch[:2], m.Describe(b"P", ""), m.Flush())
        >> from_upstream(syntax)
        << to_upstream(m.Sync())
        << to_client(syntax)
        >> from_upstream(m.ReadyForQuery(b"I"))
        << to_client(m.ReadyForQuery(b"I"))
    )
    relay = relay_of(s)
    assert relay.held is None and not relay.queue


def test_the_row_plan_reads_only_what_the_plan_cache_is_keyed_on() -> None:
    """The relay's plan cache (services/statement.py PlanCache) keys a plan on the decision's
    column masks, detector classes and classes: plan_rows must read nothing else of it, or two
    decisions with equal keys could be given one plan that is right for only one of them."""
    import contextlib
    from types import SimpleNamespace

    from proxy.pg.rowmask import plan_rows
    from proxy.services.rows import Unmaskable

    gate = FakeGate()
    fields = (text_field("a"), text_field("b", 20), text_field("c", 1082), text_field("d", 3802, 1))
    derived = ColumnMask(2, "c", "mobile", "redact", derived=True)
    cases = [
        (
            (PHONE, ColumnMask(1, "b", "id_card", "mask"), derived, ColumnMask(3, "d", None, "clear")),
            DETECT,
            (),
        ),
        ((), DETECT, ()),
        ((), frozenset(), ("mobile",)),  # another shape than decided: refused
        ((PHONE,), frozenset(), ()),
    ]
    for columns, detect, classes in cases:
        only = SimpleNamespace(columns=columns, detect=detect, classes=classes)
        for formats in (None, (), (1,), (0, 1, 0, 1)):
            with contextlib.suppress(Unmaskable):
                plan_rows(fields, formats, only, gate)  # type: ignore[arg-type]
