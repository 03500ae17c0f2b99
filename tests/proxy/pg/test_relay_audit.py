"""Playbooks: every statement is recorded before it is forwarded and again when it ends, however
the session ends — Terminate in the same write, a client that closes its socket mid-result, a
backend terminated upstream, shutdown — and an audit log that must be written and cannot be
refuses the statement instead of forwarding it."""

from __future__ import annotations

from proxy.core.commands import Close, Drain, SendClient
from proxy.core.events import ClientClosed, DrainTimeout, Shutdown, UpstreamClosed
from proxy.core.playbook import Placeholder
from proxy.pg import messages as m
from proxy.pg.login import ForwardCancel
from proxy.pg.relay import FAILING_DESCRIBE, FAILING_QUERY
from proxy.pg.session import Phase
from tests.proxy.pg.fakegate import FakeGate
from tests.proxy.pg.transcripts import (
    KEY,
    decide,
    from_client,
    from_upstream,
    login,
    refusal,
    text_field,
    to_client,
    to_upstream,
)

UPDATE = m.Query("UPDATE t SET x = 1")
DONE = (m.CommandComplete("UPDATE 3"), m.ReadyForQuery(b"I"))
AUDIT_DOWN = refusal("the audit log cannot be written; statements are refused until it recovers")
CANCELED = m.ErrorResponse(
    (("S", "ERROR"), ("V", "ERROR"), ("C", "57014"), ("M", "canceling statement due to user request"))
)


def ends(gate: FakeGate) -> list[tuple[str, str, str | None, bool]]:
    return [(r.id, r.outcome, r.error, r.cancelled) for r in gate.records]


def test_the_start_record_is_made_before_the_statement_is_forwarded() -> None:
    _, gate, pb = login()
    assert pb >> from_client(UPDATE) << to_upstream(UPDATE)
    (start,) = gate.begun
    assert (start.event, start.sql, start.id) == ("start", "UPDATE t SET x = 1", "t-1")
    assert gate.records == []  # not ended yet
    assert pb >> from_upstream(*DONE) << to_client(*DONE)
    assert ends(gate) == [("t-1", "ok", None, False)]


def test_a_required_audit_log_that_cannot_be_written_refuses_instead_of_forwarding() -> None:
    _, gate, pb = login(FakeGate(decide))
    gate.audit_ok = False
    assert pb >> from_client(UPDATE) << to_upstream(FAILING_QUERY)  # the statement never goes
    stand_in = m.ErrorResponse((("S", "ERROR"), ("C", "42601"), ("M", "syntax error")))
    assert (
        pb >> from_upstream(stand_in, m.ReadyForQuery(b"I")) << to_client(AUDIT_DOWN, m.ReadyForQuery(b"I"))
    )
    assert [r.decision.reason for r in gate.records] == ["audit_unavailable"]  # type: ignore[union-attr]
    # The extended protocol: Parse and Bind go (they run nothing), the Execute does not.
    batch = (m.Parse("", "UPDATE t SET x = 1"), m.Bind("", "", (), (), ()), m.Execute("", 0), m.Sync())
    assert pb >> from_client(*batch) << to_upstream(batch[0], batch[1], FAILING_DESCRIBE, batch[3])
    assert gate.begun == []


def test_terminate_in_the_same_write_drains_and_records_the_end() -> None:
    s, gate, pb = login()
    assert pb >> from_client(UPDATE, m.Terminate()) << to_upstream(UPDATE, m.Terminate()) << Drain()
    assert s.phase is Phase.DRAINING and gate.begun[0].id == "t-1"
    # The server answers what it had, then terminates: the answer is read, shown to no one.
    assert pb >> from_upstream(*DONE) << Close("drained")
    assert ends(gate) == [("t-1", "ok", None, False)]


def test_a_client_gone_mid_result_has_its_statement_cancelled_and_recorded_so() -> None:
    _, gate, pb = login()
    q = m.Query("SELECT note FROM t")
    rd = m.RowDescription((text_field("note"),))
    assert (
        pb
        >> from_client(q)
        << to_upstream(q)
        >> from_upstream(rd, m.DataRow((b"a",)))
        << Placeholder(SendClient)
    )
    assert pb >> ClientClosed() << to_upstream(m.Terminate()) << ForwardCancel(*KEY) << Drain()
    assert pb >> from_upstream(CANCELED) >> UpstreamClosed() << Close("upstream closed")
    assert ends(gate) == [("t-1", "cancelled", "57014", True)]
    assert gate.records[0].rows == 1


def test_a_backend_terminated_upstream_records_its_statement_as_failed() -> None:
    _, gate, pb = login()
    assert pb >> from_client(UPDATE) << to_upstream(UPDATE)
    killed = m.ErrorResponse(
        (
            ("S", "FATAL"),
            ("V", "FATAL"),
            ("C", "57P01"),
            ("M", "terminating connection due to administrator command"),
        )
    )
    assert pb >> from_upstream(killed) << to_client(killed)
    assert pb >> UpstreamClosed() << Placeholder(SendClient) << Close("upstream closed")
    assert ends(gate) == [("t-1", "error", "57P01", False)]


def test_a_statement_cut_at_shutdown_is_cancelled_and_recorded() -> None:
    _, gate, pb = login()
    assert pb >> from_client(UPDATE) << to_upstream(UPDATE)
    bye = m.ErrorResponse(
        (
            ("S", "FATAL"),
            ("V", "FATAL"),
            ("C", "57P01"),
            ("M", "maskgate: terminating connection: proxy is shutting down"),
        )
    )
    assert pb >> Shutdown() << to_upstream(m.Terminate()) << to_client(bye) << ForwardCancel(*KEY) << Drain()
    # The database never answered in time: the end record says it was cancelled.
    assert pb >> DrainTimeout() << Close("drain timeout")
    assert ends(gate) == [("t-1", "cancelled", None, True)]


def test_an_execute_the_server_skipped_is_recorded_as_skipped() -> None:
    _, gate, pb = login(unrestricted=True)
    batch = (
        m.Parse("", "SELECT 1/0"),
        m.Bind("", "", (), (), ()),
        m.Execute("", 0),
        m.Parse("", "UPDATE t SET x = 1"),
        m.Bind("", "", (), (), ()),
        m.Execute("", 0),
        m.Sync(),
    )
    assert pb >> from_client(*batch) << to_upstream(*batch)
    div = m.ErrorResponse((("S", "ERROR"), ("C", "22012"), ("M", "division by zero")))
    answer = (m.ParseComplete(), m.BindComplete(), div, m.ReadyForQuery(b"I"))
    assert pb >> from_upstream(*answer) << to_client(*answer)
    assert [(r.sql, r.outcome, r.error) for r in gate.records] == [
        ("SELECT 1/0", "error", "22012"),
        ("UPDATE t SET x = 1", "skipped", None),
    ]
    assert [r.id for r in gate.records] == [r.id for r in gate.begun]
