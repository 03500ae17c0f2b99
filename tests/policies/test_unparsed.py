"""Statements the parser does not understand: run as written only for a role that nothing
restricts (all statements, every class clear, no detectors, no row limit, no row filter, every
table), audited as `unparsed`; a refusal for every other role."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import Allow, Block, Engine, load_policy

UNPARSABLE = [
    "COPY customers TO STDOUT (DELIMITER E'\\t')",
    'SELECT U&"x" FROM customers',
    "CREATE STATISTICS s ON a, b FROM customers",
]

POLICY = """
version: 1
columns:
  crm.customers.phone: mobile
roles:
  dba:       {statements: [all], tables: ['*.*'], max_rows: unlimited, see: {mobile: clear}, detect: []}
  limited:   {statements: [all], tables: ['*.*'], max_rows: 100, see: {mobile: clear}, detect: []}
  masked:    {statements: [all], tables: ['*.*'], max_rows: unlimited, see: {mobile: mask}, detect: []}
  scanning:  {statements: [all], tables: ['*.*'], max_rows: unlimited, see: {mobile: clear}}
  filtered:  {statements: [all], tables: ['*.*'], max_rows: unlimited, see: {mobile: clear}, detect: [],
              row_filters: {crm.customers: "id > 0"}}
  some:      {statements: [all], tables: ['crm.*'], max_rows: unlimited, see: {mobile: clear}, detect: []}
  denying:   {statements: [all], tables: ['*.*', '!crm.secrets'], max_rows: unlimited, see: {mobile: clear},
              detect: []}
  reader:    {statements: [select], tables: ['*.*'], max_rows: unlimited, see: {mobile: clear}, detect: []}
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    p = Path(tmp_path_factory.mktemp("policy")) / "p.yaml"
    p.write_text(POLICY)
    return Engine(load_policy(p))


@pytest.mark.parametrize("sql", UNPARSABLE)
def test_a_role_nothing_restricts_runs_it_as_written(engine: Engine, sql: str) -> None:
    d = engine.decide("dba", sql)
    assert isinstance(d, Allow) and d.kind == "unparsed"
    assert d.rewritten_sql is None and d.row_limit is None and not d.detect
    assert d.revision and d.fingerprint  # audited like any other decision


@pytest.mark.parametrize("role", ["limited", "masked", "scanning", "filtered", "some", "denying", "reader"])
@pytest.mark.parametrize("sql", UNPARSABLE)
def test_every_other_role_is_refused(engine: Engine, role: str, sql: str) -> None:
    d = engine.decide(role, sql)
    assert isinstance(d, Block) and d.reason == "unparsable"


def test_understood_statements_are_still_judged(engine: Engine) -> None:
    assert engine.decide("dba", "SELECT 1").kind == "select"
    assert engine.decide("dba", "COPY customers TO STDOUT (FORMAT csv, HEADER)").kind == "copy"
