"""The statement parser: one typed tree per statement, rendered back as SQL, and the lexical
refusals that keep maskgate and the server reading the same statement."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlglot import exp

from policies import Block, Engine, Policy, Role
from policies.sql import nodes
from policies.sql.dialects import MYSQL, POSTGRES, DialectFacts
from policies.sql.nodes import render
from policies.sql.parser import Unparsable, parse_one, split, tokenize


def _parse(sql: str, facts: DialectFacts = POSTGRES) -> nodes.Statement:
    return parse_one(sql, facts)


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ('SET search_path = "Sales", public', nodes.Set),
        ("SET LOCAL statement_timeout = '5s'", nodes.Set),
        ("SET SESSION AUTHORIZATION postgres", nodes.Set),
        ("SET TIME ZONE INTERVAL '+05:30' HOUR TO MINUTE", nodes.Set),
        ("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", nodes.Set),
        ("RESET ALL", nodes.Reset),
        ("SHOW search_path", nodes.Show),
        ("LOCK TABLE ONLY public.branches, customers IN ROW SHARE MODE NOWAIT", nodes.Lock),
        ("EXPLAIN (ANALYZE false, FORMAT JSON) SELECT 1", nodes.Explain),
        ("EXPLAIN ANALYZE VERBOSE SELECT 1", nodes.Explain),
        ("PREPARE q (int, text) AS SELECT $1", nodes.Prepare),
        ("PREPARE TRANSACTION 'x'", nodes.TwoPhaseCommit),
        ("EXECUTE q(1, 'a')", nodes.Execute),
        ("DEALLOCATE ALL", nodes.Deallocate),
        ("DO $$ BEGIN PERFORM 1; END $$", nodes.Do),
        ("CALL s.refresh_stats(1, (SELECT 2))", nodes.Call),
        ("DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT 1", nodes.Cursor),
        ("FETCH FORWARD 10 FROM c", nodes.Cursor),
        ("MOVE NEXT IN c", nodes.Cursor),
        ("CLOSE c", nodes.Cursor),
        ("LISTEN ch", nodes.Notification),
        ("NOTIFY ch, 'x'", nodes.Notification),
        ("DISCARD ALL", nodes.Discard),
        ("VACUUM ANALYZE customers", nodes.Maintenance),
        ("CHECKPOINT", nodes.Maintenance),
        ("REINDEX TABLE customers", nodes.Maintenance),
        ("CLUSTER customers", nodes.Maintenance),
        ("REFRESH MATERIALIZED VIEW v", nodes.Maintenance),
        ("ALTER SYSTEM SET a = 'b'", nodes.Maintenance),
        ("BEGIN", nodes.TransactionControl),
        ("START TRANSACTION READ ONLY", nodes.TransactionControl),
        ("ROLLBACK TO SAVEPOINT s1", nodes.TransactionControl),
        ("RELEASE SAVEPOINT s1", nodes.TransactionControl),
        ("COMMIT PREPARED 'x'", nodes.TwoPhaseCommit),
        ("GRANT SELECT ON customers TO public", nodes.AccessControl),
        ("CREATE ROLE evil LOGIN", nodes.AccessControl),
        ("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO x", nodes.AccessControl),
        ("DROP OWNED BY x", nodes.AccessControl),
        ("CREATE OR REPLACE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql", nodes.RoutineDefinition),
        (
            "CREATE CONSTRAINT TRIGGER t AFTER INSERT ON x FOR EACH ROW EXECUTE FUNCTION f()",
            nodes.RoutineDefinition,
        ),
        ("CREATE EXTENSION dblink", nodes.RoutineDefinition),
        ("SELECT 1", exp.Select),
        ("COPY customers TO STDOUT", exp.Copy),
        ("CREATE TABLE t AS SELECT 1", exp.Create),
        ("TRUNCATE branches", exp.TruncateTable),
    ],
)
def test_postgres_statements_are_typed(sql: str, kind: type) -> None:
    assert isinstance(_parse(sql), kind)


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("SET NAMES utf8mb4 COLLATE utf8mb4_bin", nodes.Set),
        ("SET autocommit = 1, @@session.sql_mode = 'ANSI'", nodes.Set),
        ("SET PASSWORD = 'x'", nodes.AccessControl),
        ("LOCK TABLES customers READ, branches AS b LOW_PRIORITY WRITE", nodes.Lock),
        ("UNLOCK TABLES", nodes.UnlockTables),
        ("USE crm", nodes.Use),
        ("SHOW PROCESSLIST", nodes.Show),
        ("EXPLAIN FOR CONNECTION 5", nodes.Show),
        ("SHOW TABLES", nodes.Show),
        ("DESCRIBE customers", nodes.DescribeRelation),
        ("EXPLAIN FORMAT=JSON SELECT 1", nodes.Explain),
        ("PREPARE s FROM 'select 1'", nodes.Prepare),
        ("PREPARE s FROM @q", nodes.PrepareFrom),
        ("EXECUTE s USING @a, @b", nodes.Execute),
        ("DEALLOCATE PREPARE s", nodes.Deallocate),
        ("KILL 5", nodes.Maintenance),
        ("RENAME USER a TO b", nodes.AccessControl),
    ],
)
def test_mysql_statements_are_typed(sql: str, kind: type) -> None:
    assert isinstance(_parse(sql, MYSQL), kind)


@pytest.mark.parametrize(
    ("sql", "facts"),
    [
        ('SET search_path = "Sales", public', POSTGRES),
        ("SET LOCAL statement_timeout = -1", POSTGRES),
        ("SET TIME ZONE 'UTC'", POSTGRES),
        ("SET SESSION AUTHORIZATION DEFAULT", POSTGRES),
        ("RESET search_path", POSTGRES),
        ('LOCK TABLE ONLY public."Branches", customers IN ROW SHARE MODE NOWAIT', POSTGRES),
        ("EXPLAIN (ANALYZE false, FORMAT JSON) SELECT phone FROM customers", POSTGRES),
        ("EXPLAIN ANALYZE VERBOSE SELECT 1", POSTGRES),
        ('PREPARE q (INT, TEXT) AS SELECT $1 FROM "T"', POSTGRES),
        ("EXECUTE q(1, 'a')", POSTGRES),
        ("DEALLOCATE q", POSTGRES),
        ("CALL s.\"Refresh\"(1, 'x')", POSTGRES),
        ("DECLARE c NO SCROLL CURSOR FOR SELECT 1", POSTGRES),
        ('DECLARE "C" BINARY INSENSITIVE SCROLL CURSOR WITH HOLD FOR SELECT 1', POSTGRES),
        ("FETCH FORWARD 10 FROM c", POSTGRES),
        ("FETCH ABSOLUTE -3 IN c", POSTGRES),
        ("MOVE BACKWARD ALL c", POSTGRES),
        ("FETCH c", POSTGRES),
        ("CLOSE ALL", POSTGRES),
        ("SET NAMES utf8mb4 COLLATE utf8mb4_bin", MYSQL),
        ("SET autocommit = 1, @@session.sql_mode = 'ANSI'", MYSQL),
        ("LOCK TABLES customers READ, branches LOW_PRIORITY WRITE", MYSQL),
        ("EXPLAIN FORMAT = JSON SELECT 1", MYSQL),
        ("EXECUTE s USING @a, @b", MYSQL),
        ("USE `Crm`", MYSQL),
    ],
)
def test_nodes_render_back_to_the_same_tree(sql: str, facts: DialectFacts) -> None:
    tree = _parse(sql, facts)
    assert isinstance(tree, nodes.Node)
    again = _parse(render(tree, facts.sqlglot), facts)
    assert again == tree


def test_cursor_options_and_names() -> None:
    declare = _parse('declare "Big" binary no scroll cursor with hold for select 1')
    assert isinstance(declare, nodes.Cursor) and declare.hold and declare.name is not None
    assert (declare.name.name, declare.options) == ("Big", "BINARY NO SCROLL CURSOR WITH HOLD")
    assert not _parse("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1").hold  # type: ignore[union-attr]
    fetch = _parse("fetch relative - 2 from Cur")
    assert isinstance(fetch, nodes.Cursor) and fetch.name is not None
    assert (fetch.action, fetch.options, fetch.name.name) == ("FETCH", "RELATIVE -2 FROM", "cur")


def test_explain_and_prepare_hold_the_inner_tree() -> None:
    explain = _parse('EXPLAIN (ANALYZE false) SELECT Phone FROM "Customers"')
    assert isinstance(explain, nodes.Explain) and explain.analyze
    inner = explain.statement
    assert isinstance(inner, exp.Select)
    # Identifiers are folded inside the wrapper too: Phone is phone, "Customers" stays.
    assert inner.selects[0].name == "phone"
    assert inner.find(exp.Table).name == "Customers"
    prepare = _parse("PREPARE q AS UPDATE t SET a = $1")
    assert isinstance(prepare, nodes.Prepare) and isinstance(prepare.statement, exp.Update)


@pytest.mark.parametrize(
    "sql",
    [
        "EXPLAIN SET x = 1",  # only plannable statements
        "PREPARE q AS SHOW x",
        "PREPARE q",
        "BEGIN foo",
        "START",
        "DISCARD everything",
        "LOCK customers IN SOME MODE",
        "SET x",
        "DECLARE x int",
        "DECLARE c CURSOR WITH RETURN FOR SELECT 1",  # cursor options outside the grammar
        "DECLARE c CURSOR FOR VALUES (1)",  # VALUES is not a statement maskgate decides
        "DECLARE c CURSOR FOR UPDATE t SET a = 1",
        "FETCH $1 FROM c",
        "FETCH 1.5 FROM c",
        "FETCH FORWARD 1 2 FROM c",
        "FETCH 1 FROM c, d",
        "MOVE",
        "UNLOCK",  # MySQL only
        "FROBNICATE customers",  # sqlglot reads `frobnicate AS customers`, no statement
        "SELEC id FROM customers",
        "CREATE TABLE t (LIKE u) PARTITION OF",
        "RENAME TABLE a TO b",
    ],
)
def test_statements_not_understood_are_refused(sql: str) -> None:
    engine = Engine(Policy((), {"r": Role("r", frozenset({"all"}))}, {}, frozenset(), "rev"))
    decision = engine.decide("r", sql)
    assert isinstance(decision, Block) and decision.reason == "unparsable", decision


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT U&"ph\\006fne" FROM customers',
        "SELECT 'x' UESCAPE '!'",
        'SELECT "UPPER"(phone) FROM customers',  # a function named UPPER, not upper()
    ],
)
def test_lexical_refusals(sql: str) -> None:
    with pytest.raises(Unparsable):
        tokenize(sql, POSTGRES)


def test_quoted_lower_case_builtin_is_the_builtin() -> None:
    tree = _parse('SELECT "upper"(phone) FROM customers')
    assert isinstance(tree, exp.Select) and isinstance(tree.selects[0], exp.Upper)


def test_pyformat_placeholders_become_parameters() -> None:
    tree = _parse("SELECT id FROM customers WHERE id = %s AND name = %s", MYSQL)
    assert isinstance(tree, exp.Select) and len(list(tree.find_all(exp.Placeholder))) == 2
    # `%` followed by a separate `s` is the modulo operator.
    tree = _parse("SELECT id % s FROM t", MYSQL)
    assert isinstance(tree, exp.Select) and tree.find(exp.Placeholder) is None


def test_command_bodies_are_real_tokens() -> None:
    tokens = tokenize("EXPLAIN SELECT 1; LOCK t", POSTGRES)
    assert [t.text.upper() for t in tokens] == ["EXPLAIN", "SELECT", "1", ";", "LOCK", "T"]


def test_split_honours_quotes_dollar_quotes_and_comments() -> None:
    sql = "SELECT ';'; DO $$ BEGIN; END $$ ; -- trailing; comment\n SELECT 2 /* ; */"
    assert [c.text for c in split(sql, POSTGRES)] == [
        "SELECT ';'",
        "DO $$ BEGIN; END $$",
        "SELECT 2 /* ; */",
    ]
    assert split(" ; -- nothing", POSTGRES) == []


# Every character Python takes for whitespace that PostgreSQL does not (it reads any non-ASCII
# character as part of a name).
_FOREIGN_SPACES = [chr(c) for c in range(0x80, 0x10000) if chr(c).isspace()]


@pytest.mark.parametrize("space", _FOREIGN_SPACES, ids=[f"U+{ord(c):04X}" for c in _FOREIGN_SPACES])
@pytest.mark.parametrize(
    "template",
    [
        "LISTEN x{s}$$; SELECT 1; --$$",  # the server reads one name `x<s>$$`, not a dollar quote
        "SELECT{s}phone FROM customers",
        "SELECT phone FROM customers{s}",
        "SELECT 1 /* c */{s}",
    ],
)
def test_characters_the_server_reads_as_part_of_a_name_are_refused(template: str, space: str) -> None:
    with pytest.raises(Unparsable):
        tokenize(template.format(s=space), POSTGRES)


@given(
    st.lists(
        st.sampled_from([" ", "\t", "\n", "\r", "\f", "\v", "/* c /* nested */ */", "-- line\n"]),
        min_size=1,
        max_size=4,
    )
)
def test_the_servers_own_whitespace_and_comments_are_accepted(gaps: list[str]) -> None:
    gap = "".join(gaps)
    tokens = tokenize(f"SELECT{gap}phone{gap}FROM{gap}customers{gap}", POSTGRES)
    assert [t.text for t in tokens] == ["SELECT", "phone", "FROM", "customers"]


@pytest.mark.parametrize(
    ("sql", "word"),
    [
        ("SELECT$1 FROM t", "SELECT$1"),  # `$` continues an unquoted name for PostgreSQL
        ("SELECT phone FROM customers$x", "customers$x"),
        ("LISTEN x\u200b$$; SELECT 1; --$$", "x\u200b$$"),  # zero-width: part of the name
        ("SELECT\ufeffphone FROM t", "SELECT\ufeffphone"),
    ],
)
def test_words_are_cut_where_the_server_cuts_them(sql: str, word: str) -> None:
    assert word in [t.text for t in tokenize(sql, POSTGRES)]


@pytest.mark.parametrize(
    "sql", ["SELECT 1 /*!50000 UNION SELECT 2 */", "SELECT 1 /*+ BKA(t) */", "SELECT 1 /*M! 2 */"]
)
def test_mysql_comments_the_server_executes_are_refused(sql: str) -> None:
    with pytest.raises(Unparsable, match="executes"):
        tokenize(sql, MYSQL)
