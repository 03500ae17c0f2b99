"""expand_executable_comments: MySQL's and MariaDB's `/*!…*/` as each server expands them, and
the decisions of the expanded text (the analysis refuses the unexpanded one)."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import Allow, Block, Engine, Schema, load_policy
from policies.sql import executable_comments
from policies.sql.dialects import MYSQL
from policies.sql.executable_comments import (
    ExecutableCommentError,
    ServerVersion,
    expand_executable_comments,
)
from policies.sql.parser import Unparsable, tokenize

ROOT = Path(__file__).parents[3]
MYSQL_8 = ServerVersion("mysql", 80036)
MARIADB_10 = ServerVersion("mariadb", 101119)


def test_doctests() -> None:
    assert doctest.testmod(executable_comments).failed == 0


@pytest.mark.parametrize(
    ("greeting", "flavor", "version"),
    [
        ("10.11.19-MariaDB-0+deb12u1", "mariadb", 101119),
        ("5.5.5-10.11.19-MariaDB-log", "mariadb", 101119),
        ("11.4.2-MariaDB", "mariadb", 110402),
        ("8.0.36", "mysql", 80036),
        ("8.0.36-0ubuntu0.22.04.1", "mysql", 80036),
        ("8.4.0", "mysql", 80400),
        ("5.7.44-log", "mysql", 50744),
    ],
)
def test_server_version(greeting: str, flavor: str, version: int) -> None:
    assert ServerVersion.parse(greeting) == ServerVersion(flavor, version)  # type: ignore[arg-type]


@pytest.mark.parametrize("greeting", ["", "MariaDB", "x.y.z", "8.100.1"])
def test_server_version_refuses_nonsense(greeting: str) -> None:
    with pytest.raises(ValueError):
        ServerVersion.parse(greeting)


def _words(sql: str) -> str:
    return " ".join(sql.split())


@pytest.mark.parametrize(
    ("sql", "server", "want"),
    [
        # mysqldump's own
        ("SELECT /*!40001 SQL_NO_CACHE */ * FROM t", MYSQL_8, "SELECT SQL_NO_CACHE * FROM t"),
        ("/*!40100 SET @@SQL_MODE='' */", MARIADB_10, "SET @@SQL_MODE=''"),
        (
            "START TRANSACTION /*!40100 WITH CONSISTENT SNAPSHOT */",
            MYSQL_8,
            "START TRANSACTION WITH CONSISTENT SNAPSHOT",
        ),
        # versions above the server's are dropped
        ("SELECT 1 /*!80037 , 2 */", MYSQL_8, "SELECT 1"),
        ("SELECT 1 /*!80036 , 2 */", MYSQL_8, "SELECT 1 , 2"),
        ("SELECT 1 /*!101120 , 2 */", MARIADB_10, "SELECT 1"),
        ("SELECT 1 /*!101119 , 2 */", MARIADB_10, "SELECT 1 , 2"),
        ("SELECT 1 /*M!101119 , 2 */", MARIADB_10, "SELECT 1 , 2"),
        # MariaDB skips MySQL 5.7+ versions unless written /*M!
        ("SELECT 1 /*!50700 , 2 */", MARIADB_10, "SELECT 1"),
        ("SELECT 1 /*M!50700 , 2 */", MARIADB_10, "SELECT 1 , 2"),
        ("SELECT 1 /*!50699 , 2 */", MARIADB_10, "SELECT 1 , 2"),
        # /*M! is a plain comment to MySQL
        ("SELECT 1 /*M!50000 , 2 */", MYSQL_8, "SELECT 1"),
        # no version: always run; fewer than five digits are content
        ("SELECT 1 /*! , 2 */", MYSQL_8, "SELECT 1 , 2"),
        ("SELECT /*!1234 AS x */", MYSQL_8, "SELECT 1234 AS x"),
        # markers end tokens
        ("SELECT id/*!50000,bank_card*/FROM t", MYSQL_8, "SELECT id ,bank_card FROM t"),
        # quotes: inside a string or name it is no comment; inside the comment a string may hold */
        ("SELECT '/*!50000 x */'", MYSQL_8, "SELECT '/*!50000 x */'"),
        ("SELECT `/*!50000 x */`", MYSQL_8, "SELECT `/*!50000 x */`"),
        ("SELECT 'a\\'/*!50000 x */'", MYSQL_8, "SELECT 'a\\'/*!50000 x */'"),
        ("SELECT /*!50000 '*/' */ AS s", MYSQL_8, "SELECT '*/' AS s"),
        ("SELECT 1 -- /*!50000 , 2 */\n", MYSQL_8, "SELECT 1 -- /*!50000 , 2 */"),
        ("SELECT 1 # /*!50000 , 2 */\n", MYSQL_8, "SELECT 1 # /*!50000 , 2 */"),
        ("SELECT 1 --/*!50000 , 2 */", MYSQL_8, "SELECT 1 -- , 2"),  # `--x` is two minuses
        ("SELECT 1 /* /*!50000 , 2 */", MYSQL_8, "SELECT 1 /* /*!50000 , 2 */"),  # plain comment
        # a skipped comment ends at the first */, quotes or not
        ("SELECT 1 /*!90000 '*/ , 2 -- ' */", MYSQL_8, "SELECT 1 , 2 -- ' */"),
    ],
)
def test_expansion(sql: str, server: ServerVersion, want: str) -> None:
    assert _words(expand_executable_comments(sql, server)) == want


def test_sql_mode_changes_the_quotes() -> None:
    sql = 'SELECT "a\\" /*!50000 , 2 */ "'
    assert _words(expand_executable_comments(sql, MYSQL_8)) == sql
    assert _words(expand_executable_comments(sql, MYSQL_8, ansi_quotes=True)) == 'SELECT "a\\" , 2 "'
    sql = "SELECT 'a\\' /*!50000 , 2 */ '"
    assert _words(expand_executable_comments(sql, MYSQL_8, backslash_escapes=False)) == "SELECT 'a\\' , 2 '"


@pytest.mark.parametrize(
    ("sql", "server"),
    [
        ("SELECT /*!50000 1 /* x */ */", MYSQL_8),  # a comment inside
        ("SELECT /*!50000 1 /*!50000 2 */ */", MARIADB_10),
        ("SELECT /*!50000 1 # */, 2\n */", MYSQL_8),  # `#` would swallow the end
        ("SELECT /*!50000 1 -- */\n */", MYSQL_8),
        ("SELECT /*!90000 1 /* x */ */", MYSQL_8),  # one nested comment in a skipped one
        ("SELECT /*!50000 1", MYSQL_8),  # unterminated
        ("SELECT /*!90000 1", MARIADB_10),
        ("SELECT /*!50000 '*/", MYSQL_8),
        ("SELECT /*!500001 x */", MYSQL_8),  # five or six digits: depends on the MySQL release
    ],
)
def test_refused(sql: str, server: ServerVersion) -> None:
    with pytest.raises(ExecutableCommentError):
        expand_executable_comments(sql, server)


SERVERS = st.sampled_from([MYSQL_8, ServerVersion("mysql", 50744), MARIADB_10])
_WORDS = st.sampled_from(
    ["SELECT", "id", ",", "phone", "FROM", "t", "1", "(", ")", "=", "@a", "*", "/", "-", "!"]
)
_STRINGS = st.builds(
    lambda q, body: q + body.replace("\\", "").replace(q, q + q) + q,
    st.sampled_from(["'", '"', "`"]),
    st.text(alphabet="ab */!#-\n", max_size=8),
)
_COMMENTS = st.one_of(
    st.builds(lambda b: "/*" + b.replace("*/", "") + "*/", st.text(alphabet="ab !M", max_size=6)),
    st.just("# x\n"),
    st.just("-- x\n"),
)
_EXECUTABLE = st.builds(
    lambda marker, version, body: f"{marker}{version} {body} */",
    st.sampled_from(["/*!", "/*M!"]),
    st.sampled_from(["", "40001", "50700", "80036", "90000", "100100", "101119"]),
    st.lists(st.one_of(_WORDS, _STRINGS), max_size=4).map(" ".join),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_WORDS, _STRINGS, _COMMENTS), max_size=12).map(" ".join), SERVERS)
def test_identity_without_executable_comments(sql: str, server: ServerVersion) -> None:
    if "/*!" in sql or "/*M!" in sql:
        return
    assert expand_executable_comments(sql, server) == sql


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_WORDS, _STRINGS, _COMMENTS, _EXECUTABLE), max_size=12).map(" ".join), SERVERS)
def test_expanded_text_holds_no_executable_comment(sql: str, server: ServerVersion) -> None:
    """Whatever expands, the result expands to itself and the parser's lexer finds no
    executable comment left in it (outside strings and names)."""
    try:
        out = expand_executable_comments(sql, server)
    except ExecutableCommentError:
        return
    assert expand_executable_comments(out, server) == out
    try:
        tokenize(out, MYSQL)
    except Unparsable as e:
        assert "executes" not in str(e), (sql, out)


# --- decisions of expanded text ------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Engine:
    policy = load_policy(ROOT / "policies/examples/demo.yaml")
    return Engine(policy, Schema.load(ROOT / "tests/policies/data/demo_schema_mysql.json"))


def _decide(engine: Engine, role: str, sql: str, server: ServerVersion = MYSQL_8):
    return engine.decide(role, expand_executable_comments(sql, server), dialect="mysql", database="crm")


def test_unexpanded_is_refused(engine: Engine) -> None:
    for sql in ("SELECT /*!50000 phone */ FROM customers", "/*!40100 SET @@SQL_MODE='' */"):
        d = engine.decide("vendor", sql, dialect="mysql", database="crm")
        assert isinstance(d, Block) and d.reason == "unparsable"


def test_mysqldump_select_is_masked(engine: Engine) -> None:
    d = _decide(engine, "vendor", "SELECT /*!40001 SQL_NO_CACHE */ id, phone FROM customers")
    assert isinstance(d, Allow), d
    assert [c.action for c in d.columns] == ["clear", "mask"]
    d = _decide(engine, "vendor", "SELECT /*!40001 SQL_NO_CACHE */ * FROM customers")
    assert isinstance(d, Block) and d.reason == "class_denied"  # bank_card


def test_versioned_column_is_masked(engine: Engine) -> None:
    d = _decide(engine, "vendor", "SELECT /*!50000 phone */ FROM customers")
    assert isinstance(d, Allow) and [c.action for c in d.columns] == ["mask"]


def test_dropped_version_reads_nothing(engine: Engine) -> None:
    d = _decide(engine, "vendor", "SELECT id /*!90000 , bank_card */ FROM customers")
    assert isinstance(d, Allow) and [c.name for c in d.columns] == ["id"]
    d = _decide(engine, "vendor", "SELECT id /*!80000 , bank_card */ FROM customers")
    assert isinstance(d, Block) and d.reason == "class_denied"


def test_mysqldump_sql_mode_reset_is_allowed(engine: Engine) -> None:
    """`SET @@SQL_MODE=''` clears ANSI_QUOTES and NO_BACKSLASH_ESCAPES: the session is then
    read the way maskgate reads it, so a select-only role may do it (the setting is tracked)."""
    d = _decide(engine, "vendor", "/*!40100 SET @@SQL_MODE='' */", MARIADB_10)
    assert isinstance(d, Allow), d
    d = _decide(engine, "vendor", "/*!40100 SET @@SQL_MODE='ANSI_QUOTES' */", MARIADB_10)
    assert isinstance(d, Block) and d.reason == "statement_not_allowed"
