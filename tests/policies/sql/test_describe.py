"""describe: one walk of the tree, typed facts as fields (no notes strings, no text prefix)."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import Schema
from policies.decision import PreparedEffect
from policies.names import TableName
from policies.sql.analysis import Analyzer
from policies.sql.describe import Described, Describer
from policies.sql.dialects import POSTGRES
from policies.sql.parser import Unparsable, parse_one

EXAMPLES = Path(__file__).resolve().parents[3] / "policies" / "examples"


@pytest.fixture(scope="module")
def describer() -> Describer:
    return Describer(Analyzer(Schema.load(EXAMPLES / "demo_schema.json"), POSTGRES, ("public",), "crm"))


def _d(describer: Describer, sql: str) -> Described:
    return describer.describe(parse_one(sql, POSTGRES))


def test_explain_is_a_field_of_the_inner_statement(describer: Describer) -> None:
    d = _d(describer, "EXPLAIN (ANALYZE, FORMAT JSON) UPDATE customers SET email = 'x'")
    assert d.kind == "update" and d.required == {"update"}
    assert d.explain and d.explain_analyze and not d.result_rows and not d.limit_rows
    assert d.notes() == ("explain", "explain analyze")
    d = _d(describer, "EXPLAIN SELECT id FROM customers")
    assert d.explain and not d.explain_analyze


def test_prepare_call_copy_locks_identity(describer: Describer) -> None:
    d = _d(describer, "PREPARE q (int) AS SELECT phone FROM customers WHERE id = $1")
    assert d.prepared == "q" and d.kind == "select" and d.limit_rows
    d = _d(describer, "CALL Stats.Refresh(1, (SELECT phone FROM customers LIMIT 1))")
    assert d.call == "stats.refresh" and d.needs_all is not None
    assert [f.target for f in d.flows] == ["CALL stats.refresh"] * 2
    assert _d(describer, "COPY customers TO STDOUT CSV").copy_options
    assert not _d(describer, "COPY customers TO STDOUT").copy_options
    assert _d(describer, "SELECT id FROM customers FOR UPDATE").row_locks
    assert _d(describer, "RESET ROLE").identity_reset
    assert not _d(describer, "RESET statement_timeout").identity_reset


def test_writes_in_with_are_writes(describer: Describer) -> None:
    d = _d(
        describer,
        "WITH d AS (DELETE FROM call_records WHERE id = 1 RETURNING caller), "
        "u AS (UPDATE customers SET email = 'x' WHERE id = 2 RETURNING phone) "
        "SELECT d.caller, u.phone FROM d, u",
    )
    assert d.kind == "delete" and d.required == {"select", "delete", "update"}
    assert d.written == {TableName("crm", "public", "call_records"), TableName("crm", "public", "customers")}
    assert d.query is not None and d.query.outputs is not None
    assert [sorted(map(str, o.sources)) for o in d.query.outputs] == [
        ["public.call_records.caller"],
        ["public.customers.phone"],
    ]
    d = _d(describer, "WITH i AS (INSERT INTO branches (id, name) SELECT id, name FROM customers) SELECT 1")
    assert d.filtered_writes == {TableName("crm", "public", "branches")}
    assert [f.target for f in d.flows] == ["INSERT INTO public.branches"] * 2


def test_a_write_outside_with_is_not_understood(describer: Describer) -> None:
    with pytest.raises(Unparsable):
        _d(describer, "COPY (DELETE FROM customers RETURNING id) TO STDOUT")


@pytest.mark.parametrize(
    ("sql", "action", "name"),
    [
        ('PREPARE "S1" AS SELECT id FROM customers', "prepare", "S1"),
        ("PREPARE S1 (int) AS SELECT id FROM customers WHERE id = $1", "prepare", "s1"),
        ('EXECUTE "S1"', "execute", "S1"),
        ("EXECUTE S1 (1, 'a')", "execute", "s1"),
        ("DEALLOCATE S1", "deallocate", "s1"),
        ('DEALLOCATE PREPARE "S1"', "deallocate", "S1"),
        ("DEALLOCATE ALL", "deallocate_all", ""),
        ("DEALLOCATE PREPARE ALL", "deallocate_all", ""),
        ("DISCARD ALL", "deallocate_all", ""),
    ],
)
def test_prepared_statement_effects_fold_names_as_the_server(
    describer: Describer, sql: str, action: str, name: str
) -> None:
    assert _d(describer, sql).prepared_effect == PreparedEffect(action, name)


def test_what_touches_no_prepared_statement_says_so(describer: Describer) -> None:
    for sql in ("DISCARD PLANS", "DISCARD TEMP", "SELECT 1", "EXPLAIN SELECT id FROM customers"):
        assert _d(describer, sql).prepared_effect is None, sql


def test_execute_reads_its_arguments_and_refuses_what_it_cannot_decide(describer: Describer) -> None:
    d = _d(describer, "EXECUTE s(upper('a'), 2)")
    assert d.kind == "execute" and d.needs_all is None and not d.required
    assert len(d.reads) == 1
    for sql in ("EXECUTE s((SELECT phone FROM customers LIMIT 1))", "EXECUTE s(phone)"):
        with pytest.raises(Unparsable):
            _d(describer, sql)
    for sql in ("EXPLAIN EXECUTE s", "EXPLAIN ANALYZE EXECUTE s", "CREATE TABLE t AS EXECUTE s"):
        assert _d(describer, sql).needs_all is not None, sql


def test_a_prepared_statement_name_the_server_may_shorten_is_refused(describer: Describer) -> None:
    # The server cuts SQL identifiers to 63 bytes of its encoding: two spellings, one statement.
    assert _d(describer, f"DEALLOCATE {'a' * 63}").prepared_effect == PreparedEffect("deallocate", "a" * 63)
    assert _d(describer, f"EXECUTE {'é' * 15}").prepared_effect == PreparedEffect("execute", "é" * 15)
    for sql in (f"DEALLOCATE {'a' * 64}", f'PREPARE "{"A" * 70}" AS SELECT 1', f"EXECUTE {'é' * 16}"):
        with pytest.raises(Unparsable):
            _d(describer, sql)
