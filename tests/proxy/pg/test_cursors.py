"""The cursor map alone: what each confirmed statement, error and ReadyForQuery leaves."""

from __future__ import annotations

from policies.decision import Allow, CursorEffect, TransactionEffect
from policies.engine import Engine
from policies.model import Policy, Role
from proxy.pg.cursors import Cursors


def declare(name: str, *, hold: bool = False, classes: tuple[str, ...] = ()) -> Allow:
    return Allow(kind="select", row_limit=5, classes=classes, cursor=CursorEffect("declare", name, hold))


def run(c: Cursors, allow: Allow, tag: str) -> None:
    c.completed(allow, 0, tag, sql="…", generation=0)


def tx(kind: str) -> Allow:
    return Allow(kind="transaction", transaction=TransactionEffect(kind))


def test_a_declare_replaces_the_entry_of_its_name_and_close_removes_it() -> None:
    c = Cursors()
    run(c, declare("a"), "DECLARE CURSOR")
    first = c.get("a")
    run(c, declare("a", classes=("mobile",)), "DECLARE CURSOR")
    assert c.get("a") is not first and c.get("a").allow.classes == ("mobile",)  # type: ignore[union-attr]
    assert c.get("a").rows.limit == 5  # type: ignore[union-attr]
    run(c, Allow(kind="cursor", cursor=CursorEffect("close", "a")), "CLOSE CURSOR")
    assert c.get("a") is None


def test_transaction_ends_follow_the_server_tags() -> None:
    c = Cursors()
    run(c, declare("plain"), "DECLARE CURSOR")
    run(c, declare("held", hold=True), "DECLARE CURSOR")
    run(c, tx("savepoint"), "SAVEPOINT")
    run(c, declare("later", hold=True), "DECLARE CURSOR")
    run(c, tx("rollback_to"), "ROLLBACK")  # tagged ROLLBACK, but the transaction goes on
    assert set(c.open) == {"plain", "held", "later"}
    run(c, tx("commit"), "COMMIT")
    assert set(c.open) == {"held", "later"}
    run(c, declare("lost", hold=True), "DECLARE CURSOR")
    run(c, tx("rollback"), "ROLLBACK")
    assert set(c.open) == {"held", "later"}  # committed ones outlive a later rollback
    run(c, Allow(kind="session", cursor=CursorEffect("close", None)), "DISCARD ALL")
    assert not c.open


def test_an_implicit_transaction_commits_unless_an_error_came() -> None:
    c = Cursors()
    run(c, declare("kept", hold=True), "DECLARE CURSOR")
    run(c, declare("gone"), "DECLARE CURSOR")
    c.ready(b"I")
    assert set(c.open) == {"kept"}
    run(c, declare("doomed", hold=True), "DECLARE CURSOR")
    c.failed()
    c.ready(b"E")
    assert "doomed" in c.open  # still in the failed block
    c.ready(b"I")
    assert set(c.open) == {"kept"}


def test_errors_of_fetch_move_and_commit_carry_the_cursor_classes() -> None:
    c = Cursors()
    run(c, declare("a", classes=("mobile",)), "DECLARE CURSOR")
    run(c, declare("h", hold=True, classes=("id_card",)), "DECLARE CURSOR")
    fetch = Allow(kind="cursor", cursor=CursorEffect("fetch", "a"))
    assert c.in_flight(fetch).classes == ("mobile",)  # type: ignore[union-attr]
    assert c.in_flight(Allow(kind="cursor", cursor=CursorEffect("move", "h"))).classes == ("id_card",)  # type: ignore[union-attr]
    # COMMIT (and the implicit commit at an extended Sync, nothing in flight) materialises h
    assert c.in_flight(tx("commit")).classes == ("id_card",)  # type: ignore[union-attr]
    assert c.in_flight(None).classes == ("id_card",)  # type: ignore[union-attr]
    plain = Allow(kind="select")
    assert c.in_flight(plain) is plain


def test_unknown_fetch_knows_declares_earlier_in_the_string() -> None:
    c = Cursors()
    fetch = Allow(kind="cursor", cursor=CursorEffect("fetch", "x"))
    assert c.unknown_fetch(fetch) == "x"
    both = Allow(kind="multi", statements=(declare("x"), fetch))
    assert c.unknown_fetch(both) is None
    run(c, declare("x"), "DECLARE CURSOR")
    assert c.unknown_fetch(fetch) is None
    c.drop("x")  # a protocol portal took the name
    assert c.unknown_fetch(fetch) == "x"


def test_explain_declare_declares_nothing() -> None:
    engine = Engine(Policy((), {"r": Role("r", frozenset({"all"}))}, {}, frozenset(), "rev"))
    for sql in ("EXPLAIN DECLARE c CURSOR FOR SELECT 1", "EXPLAIN ANALYZE DECLARE c CURSOR FOR SELECT 1"):
        d = engine.decide("r", sql)
        assert isinstance(d, Allow) and d.cursor is None, sql
    d = engine.decide("r", "DECLARE c CURSOR WITH HOLD FOR SELECT 1")
    assert isinstance(d, Allow) and d.cursor == CursorEffect("declare", "c", True)
