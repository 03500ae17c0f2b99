"""The statement tracker with a fake gate: fail-closed decisions, re-decisions, records, budgets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from policies.decision import Allow, Block, ColumnMask, Decision, SettingChange
from proxy.services.gate import Principal, StatementRecord
from proxy.services.statement import (
    EMPTY,
    STALE,
    PlanCache,
    RowCount,
    StatementTracker,
    part,
    withheld_message,
)

ALICE = Principal("alice", "vendor")
ROOT = Principal("root", "dba", unrestricted=True)


class Gate:
    """Just what the tracker asks of a Gate."""

    masking_key = b"k" * 32

    def __init__(self, decide: Callable[[str], Decision] | None = None) -> None:
        self.generation = 0
        self.calls: list[dict[str, Any]] = []
        self.records: list[StatementRecord] = []
        self.schema_changes: list[tuple[str, str]] = []
        self._decide = decide or (lambda sql: Allow(kind="select"))

    def decide(self, principal: Principal, sql: str, **kw: Any) -> Decision:
        self.calls.append({"principal": principal, "sql": sql, **kw})
        return self._decide(sql)

    def record(self, rec: StatementRecord) -> None:
        self.records.append(rec)

    def schema_changed(self, database: str, upstream: str = "postgres") -> None:
        self.schema_changes.append((upstream, database))

    def text_masker(self, classes: frozenset[str]) -> Callable[[str], str]:
        return lambda s: f"{sorted(classes)}:{s}"

    over: Block | None = None  # what `over_budget` answers

    def over_budget(self, principal: Principal, allow: Allow) -> Block | None:
        return self.over

    def spend_lookups(self, principal: Principal, n: int) -> bool:
        self.spent = getattr(self, "spent", 0) + n
        return True


def tracker(
    gate: Gate, principal: Principal | None = ALICE, now: list[float] | None = None
) -> StatementTracker:
    clock = now or [10.0]
    t = StatementTracker(
        gate,  # type: ignore[arg-type]
        protocol="mysql",
        dialect="mysql",
        upstream="shop",
        database="crm",
        search_path=("crm",),
        session_id="s1",
        client="10.0.0.1:5000",
        clock=lambda: clock[0],
    )
    t.principal = principal
    return t


def test_decide_passes_the_sessions_context_to_the_gate() -> None:
    gate = Gate()
    d, overhead = tracker(gate).decide("SELECT 1")
    assert d == Allow(kind="select") and overhead >= 0.0
    assert gate.calls == [
        {
            "principal": ALICE,
            "sql": "SELECT 1",
            "dialect": "mysql",
            "search_path": ("crm",),
            "database": "crm",
            "upstream": "shop",
        }
    ]


def test_decide_fails_closed() -> None:
    def boom(sql: str) -> Decision:
        raise RuntimeError("engine bug")

    d, _ = tracker(Gate(boom)).decide("SELECT 1")
    assert isinstance(d, Block) and d.reason == "unparsable"
    # No principal (not logged in): nothing is decided, nothing reaches the gate.
    gate = Gate()
    d, _ = tracker(gate, principal=None).decide("SELECT 1")
    assert isinstance(d, Block) and gate.calls == []


@pytest.mark.parametrize("sql", ["", " ; ", "\n\t;;"])
def test_an_empty_statement_reads_nothing_and_is_not_asked_about(sql: str) -> None:
    gate = Gate()
    assert tracker(gate).decide(sql) == (EMPTY, 0.0) and gate.calls == []


def test_last_detect_follows_the_latest_decision_with_detectors() -> None:
    answers = {"a": Allow(kind="select", detect=frozenset({"mobile"})), "b": Allow(kind="select")}
    t = tracker(Gate(lambda sql: answers[sql]))
    t.decide("a")
    t.decide("b")  # no detectors: the last ones still apply to stray errors
    assert t.last_detect == {"mobile"}


def test_redecide_after_a_reload() -> None:
    prepared = Allow(kind="select", rewritten_sql="SELECT x LIMIT 5")
    same = Allow(kind="select", rewritten_sql="SELECT x LIMIT 5", detect=frozenset({"mobile"}))
    other = Allow(kind="select", rewritten_sql="SELECT x LIMIT 1")
    block = Block("table_denied", "no")
    for answer, expected in ((same, same), (other, STALE), (block, block)):
        assert tracker(Gate(lambda sql, a=answer: a)).redecide("SELECT x", prepared) == expected


def test_record_and_success_effects() -> None:
    gate = Gate()
    now = [10.0]
    t = tracker(gate, now=now)
    path = ("app", "public")
    allow = Allow(kind="ddl", settings=(SettingChange("search_path", path),), schema_changed=True)
    now[0] = 12.5
    t.record("SET x", allow, started=10.0, rows=3, masked=2, truncated=True, overhead=0.1, error="X")
    t.succeeded(allow)
    rec = gate.records[0]
    assert (rec.protocol, rec.session, rec.user, rec.role, rec.client, rec.database) == (
        "mysql",
        "s1",
        "alice",
        "vendor",
        "10.0.0.1:5000",
        "crm",
    )
    assert (rec.sql, rec.rows, rec.masked, rec.truncated, rec.duration_s, rec.overhead_s, rec.error) == (
        "SET x",
        3,
        2,
        True,
        2.5,
        0.1,
        "X",
    )
    assert t.search_path == ("app", "public") and gate.schema_changes == [("shop", "crm")]


def test_error_text_while_classified_data_is_in_flight() -> None:
    t = tracker(Gate())
    reads_phone = Allow(kind="select", classes=("mobile",), detect=frozenset({"mobile"}))
    assert t.withholds_errors(reads_phone)
    assert not t.withholds_errors(Allow(kind="select")) and not t.withholds_errors(None)
    assert not tracker(Gate(), ROOT).withholds_errors(reads_phone)  # sees everything clear anyway
    assert "SQLSTATE 22P02" in withheld_message("22P02")


def test_text_masker_uses_the_statement_in_flight_else_the_last_detectors() -> None:
    t = tracker(Gate())
    assert t.text_masker(None) is None  # nothing decided yet
    t.last_detect = frozenset({"email"})
    tm = t.text_masker(None)
    assert tm is not None and tm("x") == "['email']:x"
    tm = t.text_masker(Allow(kind="select", detect=frozenset({"mobile"})))
    assert tm is not None and tm("x") == "['mobile']:x"
    assert t.text_masker(Allow(kind="select")) is None  # the statement in flight scans nothing
    assert tracker(Gate(), ROOT).text_masker(Allow(kind="select", detect=frozenset({"mobile"}))) is None


def test_parts_of_a_multi_statement_string() -> None:
    a, b = Allow(kind="select"), Allow(kind="insert")
    whole = Allow(kind="select", statements=(a, b), detect=frozenset({"mobile"}), row_limit=5)
    assert part(whole, 0) is a and part(whole, 1) is b
    assert part(whole, 2) == Allow(kind="unknown", detect=frozenset({"mobile"}), row_limit=5)
    assert part(a, 0) is a


@pytest.mark.parametrize(
    ("limit", "rows", "sent", "truncated"),
    [(None, 5, 5, False), (3, 5, 3, True), (3, 3, 3, False), (0, 1, 0, True)],
)
def test_row_budget(limit: int | None, rows: int, sent: int, truncated: bool) -> None:
    c = RowCount(limit)
    admitted = sum(c.admit() for _ in range(rows))
    assert (admitted, c.sent, c.truncated) == (sent, sent, truncated)
    assert c.exhausted is (limit is not None and sent >= limit)


def test_row_budget_spans_calls_and_notices_once() -> None:
    c = RowCount(3)
    c.admit(), c.admit()
    c.masked = 2
    assert c.end_call() == (2, 2) and (c.sent_call, c.masked) == (0, 0)
    assert [c.admit(), c.admit()] == [True, False]
    assert c.end_call() == (1, 0) and c.sent == 3
    assert c.notice_once() and not c.notice_once()


def test_plan_cache_by_what_masks() -> None:
    cache: PlanCache[tuple[str, ...], tuple[int, ...] | None, str] = PlanCache(size=2)
    fields, allow = ("f",), Allow(kind="select")
    built: list[tuple[object, ...]] = []

    def build(fields: tuple[str, ...], formats: tuple[int, ...] | None, allow: Allow, enc: str) -> str:
        built.append((fields, formats, allow, enc))
        return f"plan{len(built)}"

    assert cache.get(fields, None, allow, "utf-8", build) == "plan1"
    assert cache.get(fields, None, allow, "utf-8", build) == "plan1"
    # Another decision with the same masks (every simple query's literals make a new Allow): the
    # same plan, whatever else of it differs.
    other = Allow(kind="select", rewritten_sql="x", fingerprint="f", row_limit=3, tables=("t",))
    assert cache.get(("f",), None, other, "utf-8", build) == "plan1"
    # Masks, detectors or classes that differ: a plan of their own.
    masked = Allow(kind="select", columns=(ColumnMask(0, "f", "mobile", "mask"),))
    assert cache.get(fields, None, masked, "utf-8", build) == "plan2"
    assert (
        cache.get(fields, None, Allow(kind="select", detect=frozenset({"mobile"})), "utf-8", build) == "plan3"
    )
    assert cache.get(fields, None, Allow(kind="select", classes=("mobile",)), "utf-8", build) == "plan4"
    assert cache.get(fields, (1,), allow, "utf-8", build) == "plan5"  # other formats
    assert cache.get(fields, None, allow, "gbk", build) == "plan6"  # another encoding
    assert len(built) == 6 and built[4] == (fields, (1,), allow, "utf-8")


def test_plan_cache_does_not_keep_a_failed_build() -> None:
    cache: PlanCache[tuple[str, ...], None, str] = PlanCache()
    allow = Allow(kind="select")

    def fail(*args: object) -> str:
        raise ValueError("unmaskable")

    with pytest.raises(ValueError):
        cache.get((), None, allow, "utf-8", fail)
    assert cache.get((), None, allow, "utf-8", lambda *args: "ok") == "ok"


def test_spend_refuses_a_person_over_budget_at_every_run_before_charging_lookups() -> None:
    gate = Gate()
    t = tracker(gate)
    allow = Allow(kind="select", tables=("public.customers",), lookups=2)
    assert t.spend(allow) is None and gate.spent == 2
    gate.over = Block("row_budget", "spent")
    assert t.spend(allow) == Block("row_budget", "spent")
    assert gate.spent == 2  # a refused run charges no lookups
