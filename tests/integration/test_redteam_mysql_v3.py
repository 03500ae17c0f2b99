"""Red team v3 of the MySQL listener: new attack classes by the demo's vendor and desk on
maskgate in front of a real MariaDB (after test_redteam_mysql.py, _v1.py and _v2.py).

Each test asserts the SAFE outcome (a refusal, error 1142, or a masked value both count as safe).
One class worked when this round ran, and is refused since (policies/sql/parser.py
`_no_star_over_right_using`): `SELECT *` over
`… RIGHT JOIN … USING (…)` / `NATURAL RIGHT JOIN`. MariaDB lays the columns out as the common
ones, then the RIGHT side's, then the left side's; maskgate's star expansion (sqlglot's qualify,
policies/sql/analysis.py) keeps the left side first, so the masks, which apply by position, land
on the wrong columns: full mobiles, ID cards (vendor) and bank cards (desk) come out in clear,
text and binary protocol alike. The server's column definitions name each column's table and
column; maskgate does not compare them with its own layout.

Unmarked tests are attempts that are stopped today and guard against regressions: column names
that MariaDB folds by accent (utf8mb3_general_ci), casts of masked columns to binary-protocol
types, server functions that re-encode a value, MariaDB-only statements (CHECKSUM TABLE, HELP,
SHOW ENGINE, SHOW EXPLAIN FOR, GET_LOCK), compound statements (IF/CASE/FOR/WHILE/REPEAT/LOOP),
SET of a session variable from a subquery, the desk's equality through a hex literal, and deep
nesting that could stall the analyser for other sessions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import start_crm_mysql
from tests.integration.harness import serve_demo
from tests.integration.test_redteam_mysql_v2 import (
    DESK,
    REFUSED,
    VENDOR,
    Raw,
    connect,
    leaks_number,
    run_all,
    texts,
)

pytestmark = pytest.mark.integration

SERVICE_PASSWORD = "svc-redteam-mysql-v3"


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    db = start_crm_mysql(tmp_path_factory.mktemp("redteam3-mysql"), SERVICE_PASSWORD, 300)
    try:
        yield db
    finally:
        db.destroy()


@pytest.fixture(scope="module")
def served(mariadb: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("redteam3-serve"), None, SERVICE_PASSWORD, mysql=mariadb) as s:
        yield s


# ---------------------------------------------------------------- attempts that are stopped today
@pytest.mark.parametrize(
    "sql",
    [
        # MariaDB compares column names with utf8mb3_general_ci, where ó = o: maskgate must not
        # take them for unknown (and so unclassified) columns.
        "SELECT phóne FROM customers LIMIT 2",
        "SELECT PHÒNE, id_cárd FROM customers LIMIT 2",
        "SELECT `phoné` FROM customers LIMIT 2",
        "SELECT customers.phóne FROM customers LIMIT 2",
        # Values re-encoded by a server function the lineage must follow.
        "SELECT COLUMN_JSON(COLUMN_CREATE('a', phone)) FROM customers LIMIT 2",
        "SELECT JSON_DETAILED(JSON_OBJECT('p', phone)) FROM customers LIMIT 2",
        "SELECT phone COLLATE utf8mb4_bin FROM customers LIMIT 2",
        "SELECT CHARSET(phone), LENGTH(phone) FROM customers LIMIT 2",
        "SELECT VALUE(phone) FROM customers LIMIT 2",
        "SELECT phone + 1 FROM customers LIMIT 2",
        # MariaDB-only statements and doors.
        "CHECKSUM TABLE customers",
        "CHECKSUM TABLE customers EXTENDED",
        "HELP 'SELECT'",
        "SHOW ENGINE INNODB STATUS",
        "SHOW EXPLAIN FOR 1",
        "SHOW BINLOG EVENTS",
        "SELECT GET_LOCK('x', 1)",
        "SELECT * FROM information_schema.INNODB_TRX",
        "SELECT id FROM customers LIMIT 1 ROWS EXAMINED 5",
        "SELECT count(*) FROM {oj customers LEFT OUTER JOIN call_records ON 1}",
        "SELECT 1 FROM DUAL WHERE 0 UNION SELECT phone FROM customers LIMIT 2",
    ],
)
def test_vendor_stopped(served: dict[str, Any], sql: str) -> None:
    with connect(served, VENDOR) as c:
        assert run_all(c, sql) == REFUSED
        assert run_all(c, "SELECT 1") == [(1,)]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT CRC32(phone) FROM customers LIMIT 2",
        "SELECT REVERSE(phone) FROM customers LIMIT 2",
        "SELECT LAG(phone) OVER (ORDER BY id) FROM customers LIMIT 2",
        "SELECT CONCAT_WS('-', LEFT(phone, 3), MID(phone, 4, 4), RIGHT(phone, 4)) FROM customers LIMIT 2",
        "SELECT (SELECT phone), (SELECT id_card) FROM customers LIMIT 2",
        "WITH t(a, b) AS (SELECT phone, id_card FROM customers) SELECT b, a FROM t LIMIT 2",
        "SELECT * FROM (SELECT phone, id_card FROM customers) x LIMIT 2",
        "SELECT phone FROM customers FOR SYSTEM_TIME ALL LIMIT 2",
        "SELECT * FROM (SELECT id, phone FROM customers) AS x(a, b) LIMIT 2",
    ],
)
def test_vendor_sees_no_full_number(served: dict[str, Any], sql: str) -> None:
    with connect(served, VENDOR) as c:
        got = run_all(c, sql)
    assert not leaks_number(texts(got)), got


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM customers WHERE 1 OR 1",
        "SELECT count(*) FROM customers WHERE 1 || 1",
        "SELECT count(*) FROM (customers)",
        "SELECT count(*) FROM crm . customers",
        "SELECT count(*) FROM crm.`customers` AS `customers`",
        "SELECT count(*) FROM customers AS _maskgate",
    ],
)
def test_row_filter_survives_the_rendering(served: dict[str, Any], sql: str) -> None:
    """The filter is ANDed into a derived table maskgate renders itself: an OR, a parenthesised
    table, spaced or quoted names and maskgate's own wrapper alias do not drop it."""
    with connect(served, VENDOR) as c:
        assert run_all(c, sql) == run_all(c, "SELECT count(*) FROM customers WHERE branch_id = 12")


@pytest.mark.parametrize(
    "cast",
    ["UNSIGNED", "DOUBLE", "DECIMAL(20,0)", "DATE", "TIME", "FLOAT", "YEAR", "SIGNED"],
)
def test_binary_protocol_casts_are_refused(served: dict[str, Any], cast: str) -> None:
    """A masked value cast to a binary-protocol type (fixed-width integers, doubles, dates) could
    not be masked in place: maskgate refuses the statement at COM_STMT_PREPARE."""
    r = Raw(served, VENDOR)
    try:
        r.send(b"\x16" + f"SELECT CAST(phone AS {cast}), CAST(id_card AS {cast}) FROM customers".encode())
        head = r.read()
        assert head[:1] == b"\xff" and int.from_bytes(head[1:3], "little") == REFUSED, head
    finally:
        r.close()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE customers SET email = 'q' WHERE phone = 0x3136363833363930303630",
        "UPDATE customers SET address = phone WHERE id = 1",
        "UPDATE customers c JOIN call_records r ON r.customer_id = c.id "
        "SET c.address = r.notes WHERE c.id = 1",
        "UPDATE customers SET email = (SELECT notes FROM call_records WHERE id = 6) WHERE id = 1",
        "UPDATE IGNORE customers SET id = 2 WHERE id = 1",
        "UPDATE LOW_PRIORITY customers SET email = 'b' WHERE id = 1",
        "REPLACE INTO customer_contacts VALUES (1)",
    ],
)
def test_desk_stopped(served: dict[str, Any], sql: str) -> None:
    """A hex literal is a string the server compares as a number or text: not an equality with a
    value the desk may look up; classified values never flow into a written column."""
    with connect(served, DESK) as c:
        assert run_all(c, sql) == REFUSED


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT " + "(" * 3000 + "1" + ")" * 3000,
        "SELECT " + "-" * 5000 + "1",
        "SELECT " + "NOT " * 5000 + "1",
        "SELECT " + "(SELECT " * 500 + "1" + ")" * 500,
        "SELECT " + "CONCAT(" * 2000 + "'a'" + ")" * 2000,
        "SELECT " + "CASE WHEN 1 THEN " * 1000 + "1" + " END" * 1000,
        "SELECT 1" + " UNION SELECT 1" * 2000,
    ],
    ids=["parens", "minus", "not", "subqueries", "concat", "case", "union"],
)
def test_deep_nesting_does_not_stall_other_sessions(served: dict[str, Any], sql: str) -> None:
    """The analyser must refuse (or finish) a deeply nested statement fast, and other sessions
    must be served meanwhile."""
    result: dict[str, Any] = {}

    def attack() -> None:
        with connect(served, VENDOR) as c:
            result["got"] = run_all(c, sql)

    t = threading.Thread(target=attack)
    started = time.monotonic()
    t.start()
    time.sleep(0.2)
    with connect(served, DESK) as other:
        other_started = time.monotonic()
        assert run_all(other, "SELECT 1") == [(1,)]
        assert time.monotonic() - other_started < 3
    t.join(30)
    assert not t.is_alive()
    assert time.monotonic() - started < 10
    assert result["got"] == REFUSED or isinstance(result["got"], list)


# ---------------------------------------------------------------- attacks that work today
def direct(served: dict[str, Any], sql: str) -> list[tuple[Any, ...]]:
    """The rows of `sql` over the test's own root connection to the private MariaDB."""
    conn = served["mysql"].connect("crm", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def _pieces_rejoin(rows: Any, truth: dict[int, str]) -> bool:
    """Whether some row's values, joined in order, hold a customer's full number in clear."""
    for row in rows if isinstance(rows, list) else []:
        joined = "".join(str(v) for v in row[1:])
        if any(value in joined for value in truth.values()):
            return True
    return False


# MariaDB lays out `SELECT *` over `y RIGHT JOIN x USING (id)` as id, then x's other columns,
# then y's; maskgate's star expansion puts y's before x's, so x's masks land on y's columns.
RIGHT_JOIN_HALVES = (
    "SELECT * FROM (SELECT 'z' b, 'w' c, id FROM customers) y "
    "{join} (SELECT SUBSTR({col}, 1, 6) a, SUBSTR({col}, 7) a2, id FROM customers) x {using} LIMIT 300"
)


@pytest.mark.parametrize(
    ("join", "using"),
    [("RIGHT JOIN", "USING (id)"), ("NATURAL RIGHT JOIN", ""), ("RIGHT OUTER JOIN", "USING (id)")],
)
@pytest.mark.parametrize("col", ["phone", "id_card"])
def test_right_join_using_star_moves_the_masks(
    served: dict[str, Any], join: str, using: str, col: str
) -> None:
    truth = {r[0]: r[1] for r in direct(served, f"SELECT id, {col} FROM customers")}
    with connect(served, VENDOR) as c:
        got = run_all(c, RIGHT_JOIN_HALVES.format(join=join, using=using, col=col))
    assert got == REFUSED or not _pieces_rejoin(got, truth), got


def test_right_join_using_star_whole_id_card(served: dict[str, Any]) -> None:
    truth = {r[0]: r[1] for r in direct(served, "SELECT id, id_card FROM customers")}
    sql = (
        "SELECT * FROM (SELECT 'z' b, id FROM customers) y "
        "RIGHT JOIN (SELECT CONCAT(id_card, 'x') a, id FROM customers) x USING (id) LIMIT 300"
    )
    with connect(served, VENDOR) as c:
        got = run_all(c, sql)
    assert got == REFUSED or not _pieces_rejoin(got, truth), got


def test_desk_right_join_using_star_bank_card(served: dict[str, Any]) -> None:
    truth = {
        r[0]: r[1] for r in direct(served, "SELECT id, bank_card FROM customers WHERE bank_card IS NOT NULL")
    }
    with connect(served, DESK) as c:
        got = run_all(c, RIGHT_JOIN_HALVES.format(join="RIGHT JOIN", using="USING (id)", col="bank_card"))
    assert got == REFUSED or not _pieces_rejoin(got, truth), got


def test_left_join_using_star_keeps_the_masks(served: dict[str, Any]) -> None:
    """LEFT JOIN … USING and NATURAL JOIN lay out `*` as maskgate expects (common, left, right)."""
    truth = {r[0]: r[1] for r in direct(served, "SELECT id, phone FROM customers")}
    with connect(served, VENDOR) as c:
        for join, using in [("LEFT JOIN", "USING (id)"), ("NATURAL JOIN", ""), ("JOIN", "USING (id)")]:
            got = run_all(c, RIGHT_JOIN_HALVES.format(join=join, using=using, col="phone"))
            assert got == REFUSED or not _pieces_rejoin(got, truth), got


@pytest.mark.parametrize(
    "sql",
    [
        "WITH x AS (SELECT SUBSTR(bank_card, 1, 8) a, SUBSTR(bank_card, 9) a2, id FROM customers), "
        "y AS (SELECT 'z' b, 'w' c, id FROM customers) SELECT * FROM y RIGHT JOIN x USING (id) LIMIT 300",
    ],
    ids=["cte"],
)
def test_desk_right_join_star_other_sources(served: dict[str, Any], sql: str) -> None:
    truth = {
        r[0]: r[1] for r in direct(served, "SELECT id, bank_card FROM customers WHERE bank_card IS NOT NULL")
    }
    with connect(served, DESK) as c:
        got = run_all(c, sql)
    assert got == REFUSED or not any(
        isinstance(row[1], str) and isinstance(row[2], str) and truth.get(row[0]) == row[1] + row[2]
        for row in (got if isinstance(got, list) else [])
    ), got


@pytest.mark.parametrize(
    "sql",
    [
        # Compound statements run several statements (results) as one part; maskgate's split
        # would misalign the masks of the parts: they are refused whole.
        "IF 1 THEN SELECT SUBSTR(phone, 1, 6) FROM customers LIMIT 1; END IF",
        "CASE WHEN 1 THEN SELECT 1; END CASE",
        "FOR i IN 1..3 DO SELECT id FROM customers LIMIT 1; END FOR",
        "WHILE 0 DO SELECT 1; END WHILE",
        "REPEAT SELECT 1; UNTIL 1 END REPEAT",
        "lbl: LOOP SELECT 1; LEAVE lbl; END LOOP",
        "CALL sys.ps_setup_show_enabled()",
        "DO (SELECT phone FROM customers LIMIT 1)",
        # A session variable set from a masked value would be read back in clear.
        "SET max_join_size = (SELECT phone FROM customers LIMIT 1)",
        "SET last_insert_id = (SELECT phone FROM customers LIMIT 1)",
        "SET SESSION sql_select_limit = (SELECT phone FROM customers LIMIT 1)",
        "SET @@session.max_join_size = (SELECT id_card FROM customers LIMIT 1)",
        "SET insert_id = (SELECT phone FROM customers LIMIT 1)",
    ],
)
def test_vendor_compound_and_variable_doors(served: dict[str, Any], sql: str) -> None:
    with connect(served, VENDOR) as c:
        assert run_all(c, sql) == REFUSED
        assert run_all(c, "SELECT 1") == [(1,)]


def test_right_join_using_star_through_the_binary_protocol(served: dict[str, Any]) -> None:
    truth = {r[1] for r in direct(served, "SELECT id, phone FROM customers")}
    r = Raw(served, VENDOR)
    try:
        r.send(
            b"\x16" + RIGHT_JOIN_HALVES.format(join="RIGHT JOIN", using="USING (id)", col="phone").encode()
        )
        head = r.read()
        if head[:1] == b"\xff":
            return  # refused: safe
        sid = int.from_bytes(head[1:5], "little")
        ncols = int.from_bytes(head[5:7], "little")
        for _ in range(ncols + 1):
            r.read()
        rows = r.execute(sid)
    finally:
        r.close()
    # Binary rows: header, NULL bitmap (1 byte for 5 columns), the BIGINT id, then the strings.
    leaked = False
    for row in rows:
        if row[:1] != b"\x00" or len(row) < 11:
            continue
        rest = row[10:]
        parts = []
        while rest:
            n = rest[0]
            parts.append(rest[1 : 1 + n].decode("utf-8", "replace"))
            rest = rest[1 + n :]
        leaked = leaked or any(v in "".join(parts) for v in truth)
    assert not leaked, rows[:4]
