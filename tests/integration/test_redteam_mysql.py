"""Red team of the MySQL listener: the PostgreSQL red-team suites' attack classes, in MariaDB's words.

The attackers are those of tests/integration/test_redteam.py … test_redteam_v7.py,
test_concealed.py and test_statement_truth.py: `vendor_zhang` of policies/examples/demo.yaml
(select only, mobile / id_card / person_name masked, bank_card denied, no predicates on masked
classes, `branch_id = 12` on customers, 200 rows, no audit_trail, upstream as crm_vendor) and
`desk_li` (service_desk: select + update, mobile / id_card / bank_card masked, equality
predicates only, 50 rows, upstream as maskgate_svc after SET ROLE crm_desk). Here they connect to
maskgate's MySQL listener in front of a MariaDB of the module's own, with PyMySQL (text
protocol) and mysql-connector (`cursor(prepared=True)`: COM_STMT_* and binary rows).

Every test asserts the SECURE outcome: refused by maskgate (ERR 1142, "maskgate: …"), or the
value masked / one constant / never a full 11-digit mobile, 18-character id card or bank card,
or no write done. A test marked `xfail(strict=True, reason="LEAK: …")` is a leak confirmed
against the real proxy today; remove the marker once the proxy is fixed.

Confirmed today (strict xfails; the reasons say more):
- `UPDATE … ORDER BY <masked column> LIMIT 1` (MySQL-only syntax) escapes masked_predicates:
  a sort oracle for the desk on phone / id card / bank card (binary search: 14 statements).
- An UPDATE's changed-rows count (OK packet, "Changed: n") tells whether the literal the desk
  wrote equals the stored masked value, with no condition and no lookup spent.
- The desk, upstream as the service account with crm_desk set (MariaDB roles add privileges),
  writes columns crm_desk's column grant excludes (id_card, bank_card, name).
- SHOW CREATE TABLE / SHOW COLUMNS / SHOW INDEX / SHOW TABLE STATUS / DESCRIBE of tables outside
  the desk's `tables` are answered (metadata only: DDL, row count, Auto_increment, Update_time).

PostgreSQL attack classes with no MySQL form (not tested here):
- COPY in every shape (TO STDOUT, CSV digit delimiters, COPY of a writing query): MySQL has no
  COPY; its nearest forms, SELECT … INTO OUTFILE / DUMPFILE and LOAD DATA, are refused (below).
- search_path drift (SET search_path, set_config, SET LOCAL / ROLLBACK / SAVEPOINT undoing it,
  DISCARD ALL): MySQL has no search path; the default database (USE, COM_INIT_DB) is its
  nearest form and is tested.
- standard_conforming_strings / backslash_quote as startup parameters: MySQL's forms are
  sql_mode (NO_BACKSLASH_ESCAPES, ANSI_QUOTES) and SET NAMES, tested.
- Dollar quoting and U+3000 before `$$` (v2 §7, v3 §1 shape-cache smuggling): MySQL has no
  dollar quotes; the lexer disagreements it does have (`--` needing a space, `#`, `/*! */`,
  `/*M! */`, non-ASCII spaces) are tested instead.
- Table alias column lists `customers AS x(a, id)` and short alias lists on VALUES / unnest /
  WITH ORDINALITY / json_each (v2 §3, v3 §6): MariaDB 10.11 has no column lists on table or
  derived-table aliases; the CTE column list `WITH x(a, b) AS …` is its form, tested.
- LATERAL (v6), ROWS FROM, TABLESAMPLE, ONLY / `customers*` inheritance, FILTER (WHERE …),
  percentile_disc over a literal array, DISTINCT ON, composite row values (`c::text`,
  row_to_json(c), (c).phone): no such syntax in MariaDB; SUM(IF(…)) pivots stand in for FILTER.
- SQL cursors (DECLARE / FETCH / CLOSE, truncated 63-byte cursor names, v5): MySQL cursors live
  only inside stored programs, which are refused; the name-folding class is tested on
  case-insensitive prepared statement names instead.
- Writable CTEs and MERGE … RETURNING (statement_truth, v7 second half): MariaDB has neither;
  multi-table UPDATE is its form, tested.
- pg_stat_activity / pg_stat_get_activity / pg_stats / pg_stat_statements,
  pg_prepared_statements, pg_read_file, lo_import, ts_stat, query_to_xml, pg_notify, NOTIFY,
  LISTEN: their MySQL forms (PROCESSLIST, mysql.column_stats, LOAD_FILE, INTO OUTFILE,
  EXECUTE IMMEDIATE) are tested.
- Sequences (nextval / setval on audit_trail_id_seq): the MySQL demo schema has none
  (audit_trail uses AUTO_INCREMENT).
- application_name impersonation (v3 §2) and the fast-path FunctionCall message (v3 §9):
  MySQL has no session name the proxy rewrites and no function-call command.
- The extended protocol's Parse / Bind / Describe / Flush without Sync (v4 §3, v5): its MySQL
  form, COM_STMT_PREPARE without COM_STMT_EXECUTE, is tested; unnamed portals have no form.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest
from pymysql.constants import CLIENT, COMMAND

from proxy.pg.auth import make_verifier
from tests.conftest import start_crm_mysql
from tests.integration.harness import serve_demo

pytestmark = pytest.mark.integration

SVC_PW = "svc-secret-redteam-mysql"
PROBER = ("prober_qian", "prober-pass")
DESK2 = ("desk_zhou", "desk2-pass")  # more service-desk agents: a lookup budget each
DESK3 = ("desk_wu", "desk3-pass")
DESK4 = ("desk_zheng", "desk4-pass")
VENDOR = ("vendor_zhang", "vendor-pass")
DESK = ("desk_li", "desk-pass")
DBA = ("dba_wang", "dba-pass")
VENDOR_MAX_ROWS = 200
DIGITS = re.compile(r"\d+")
A_TO_0 = str.maketrans("abcdefghij", "0123456789")


def _native_hash(password: str) -> str:
    """mysql_native_password's stored form, as `maskgate passwd --mysql` writes it."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


# A role that may compute and compare freely on masked values (masked_predicates: allow), as in
# tests/integration/test_concealed.py: only the concealment of derived values stands between it
# and the digits.
EXTRA_POLICY = f"""version: 1
roles:
  prober:
    statements: [select]
    tables: ["crm.customers"]
    max_rows: 500
    see: {{mobile: mask, id_card: mask, person_name: mask, bank_card: mask}}
    masked_predicates: allow
users:
  {DESK2[0]}:
    role: service_desk
    password: "{make_verifier(DESK2[1])}"
    mysql_password: "{_native_hash(DESK2[1])}"
  {DESK3[0]}:
    role: service_desk
    password: "{make_verifier(DESK3[1])}"
    mysql_password: "{_native_hash(DESK3[1])}"
  {DESK4[0]}:
    role: service_desk
    password: "{make_verifier(DESK4[1])}"
    mysql_password: "{_native_hash(DESK4[1])}"
  {PROBER[0]}:
    role: prober
    password: "{make_verifier(PROBER[1])}"
    mysql_password: "{_native_hash(PROBER[1])}"
"""


# ---------------------------------------------------------------------------------------------
# Fixtures: one MariaDB, one App, ground truth read as root straight from MariaDB
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    db = start_crm_mysql(tmp_path_factory.mktemp("mysql-redteam"), SVC_PW, 300)
    try:
        yield db
    finally:
        db.destroy()


@pytest.fixture(scope="module")
def served(mariadb: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(
        tmp_path_factory.mktemp("redteam-mysql"), None, SVC_PW, mysql=mariadb, extra_policy=EXTRA_POLICY
    ) as s:
        yield s


def direct(mariadb: Any, sql: str) -> list[tuple[Any, ...]]:
    """Root straight to MariaDB (never through the proxy)."""
    conn = mariadb.connect("crm")
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def truth(mariadb: Any) -> dict[str, Any]:
    cust = direct(mariadb, "SELECT id, phone, id_card, bank_card, branch_id, name FROM customers ORDER BY id")
    notes = [r[0] for r in direct(mariadb, "SELECT notes FROM call_records") if r[0]]
    calls = direct(mariadb, "SELECT id, duration_s FROM call_records ORDER BY id")
    target = next(r for r in cust if r[4] == 12 and r[3])
    secrets: set[str] = set()
    for _, phone, idc, card, _, _ in cust:
        secrets.update(x for x in (phone, idc, card) if x)
    for n in notes:
        secrets.update(x for x in DIGITS.findall(n) if len(x) >= 11)
    return {
        "target_id": target[0],
        "phone": target[1],
        "id_card": target[2],
        "bank_card": target[3],
        "secrets": secrets,
        "cards": {r[3] for r in cust if r[3]},
        "phones": {r[1] for r in cust},
        "names": {r[5] for r in cust},
        "branch12": {r[0] for r in cust if r[4] == 12},
        "other_branches": {r[0] for r in cust if r[4] != 12},
        "customers": cust,
        "durations": dict(calls),
    }


def connect(served: dict[str, Any], who: tuple[str, str] = VENDOR, **kw: Any) -> Any:
    kw.setdefault("autocommit", True)
    return pymysql.connect(
        host="127.0.0.1",
        port=served["mysql_port"],
        user=who[0],
        password=who[1],
        database=kw.pop("database", "crm"),
        charset=kw.pop("charset", "utf8mb4"),
        **kw,
    )


def connect_binary(served: dict[str, Any], who: tuple[str, str] = VENDOR) -> Any:
    mc = pytest.importorskip("mysql.connector")
    return mc.connect(
        host="127.0.0.1",
        port=served["mysql_port"],
        user=who[0],
        password=who[1],
        database="crm",
        use_pure=True,
        ssl_disabled=True,
        autocommit=True,
    )


def run(conn: Any, sql: str | bytes) -> list[tuple[Any, ...]]:
    """Every row of every result of `sql` (text protocol)."""
    with conn.cursor() as cur:
        cur.execute(sql)
        out = list(cur.fetchall() or ())
        while cur.nextset():
            out += list(cur.fetchall() or ())
    return out


def run_binary(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    cur = conn.cursor(prepared=True)
    try:
        cur.execute(sql, params)
        got = cur.fetchall() if cur.with_rows else []
    finally:
        cur.close()
    return [tuple(v.decode() if isinstance(v, bytes | bytearray) else v for v in r) for r in got]


def by_maskgate(exc: BaseException) -> bool:
    args = getattr(exc, "args", ())
    errno = getattr(exc, "errno", args[0] if args else None)
    msg = getattr(exc, "msg", args[1] if len(args) > 1 else "")
    return errno == 1142 and str(msg).startswith("maskgate: ")


def refused(conn: Any, sql: str) -> bool:
    try:
        run(conn, sql)
    except pymysql.err.MySQLError as e:
        return by_maskgate(e)
    return False


def _decodings(text: str) -> list[str]:
    """Hex and base64 runs decoded: HEX(phone), TO_BASE64(id_card) are no disguise."""
    out = []
    for run_ in re.findall(r"[0-9A-Fa-f]{16,}", text):
        with contextlib.suppress(ValueError):
            out.append(bytes.fromhex(run_[: len(run_) // 2 * 2]).decode("utf-8", "replace"))
    for run_ in re.findall(r"[A-Za-z0-9+/]{16,}={0,2}", text):
        with contextlib.suppress(binascii.Error, ValueError):
            out.append(base64.b64decode(run_ + "=" * (-len(run_) % 4)).decode("utf-8", "replace"))
    return out


def _unscramble(text: str) -> list[str]:
    """Views of a text an attacker would try: as is, digits only, reversed, a-j mapped to 0-9,
    hex and base64 decoded."""
    views = [text, *_decodings(text)]
    out = []
    for v in views:
        digits = "".join(ch for ch in v if ch.isdigit())
        letters = v.translate(A_TO_0)
        out += [v, digits, v[::-1], letters, "".join(ch for ch in letters if ch.isdigit())]
    return out


def leaked(secrets: set[str], *values: object) -> set[str]:
    found: set[str] = set()
    for v in values:
        for view in _unscramble(repr(v)):
            found.update(s for s in secrets if s in view)
    return found


def tr(expr: str) -> str:
    """MySQL has no translate(): ten nested REPLACE map the digits 0-9 to the letters a-j."""
    for d in range(10):
        expr = f"REPLACE({expr}, '{d}', '{chr(ord('a') + d)}')"
    return expr


def audit_text(served: dict[str, Any]) -> str:
    path = served["dir"] / "audit.jsonl"
    return path.read_text(errors="replace") if path.exists() else ""


def wait_for_audit(served: dict[str, Any], marker: str, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if marker in audit_text(served):
            return True
        time.sleep(0.05)
    return marker in audit_text(served)


# ---------------------------------------------------------------------------------------------
# 1. Values stay masked through functions, casts, JSON, set operations, CTEs, windows
#    (test_redteam MASKED_OUTPUT), in text and binary results
# ---------------------------------------------------------------------------------------------

MASKED_OUTPUT = [
    "SELECT id, phone, id_card, name FROM customers",
    "SELECT JSON_OBJECT('p', phone, 'i', id_card) FROM customers",
    "SELECT JSON_ARRAY(phone, id_card) FROM customers",
    "SELECT JSON_QUOTE(phone), JSON_UNQUOTE(JSON_QUOTE(id_card)) FROM customers",
    "SELECT JSON_UNQUOTE(JSON_EXTRACT(JSON_OBJECT('a', phone), '$.a')) FROM customers",
    "SELECT JSON_VALUE(JSON_OBJECT('a', id_card), '$.a') FROM customers",
    "SELECT JSON_OBJECT('p', REVERSE(phone)) FROM customers",
    f"SELECT JSON_OBJECT('p', {tr('phone')}) FROM customers",
    "SELECT CONCAT(phone, '|', id_card) FROM customers",
    "SELECT CONCAT_WS('-', phone, id_card) FROM customers",
    "SELECT GROUP_CONCAT(phone) FROM customers",
    "SELECT GROUP_CONCAT(id_card ORDER BY id SEPARATOR ',') FROM customers",
    "SELECT JSON_ARRAYAGG(phone) FROM customers",
    "SELECT JSON_OBJECTAGG(id, phone) FROM customers",
    "SELECT REGEXP_REPLACE(phone, '(.)', '\\\\1 ') FROM customers",
    f"SELECT {tr('phone')}, {tr('id_card')} FROM customers",
    "SELECT INSERT(phone, 1, 0, 'x'), REVERSE(id_card) FROM customers",
    "SELECT LEFT(phone, 7), RIGHT(phone, 4), SUBSTRING(phone, 4, 4), MID(id_card, 7, 8) FROM customers",
    "SELECT SUBSTRING(phone FROM 1 FOR 11), SUBSTR(id_card, 1), SUBSTRING_INDEX(phone, 'x', 1) "
    "FROM customers",
    "SELECT MD5(phone), HEX(phone), TO_BASE64(id_card), SHA1(phone) FROM customers",
    "SELECT CAST(phone AS UNSIGNED), CAST(id_card AS DECIMAL(20, 0)), phone + 0 FROM customers",
    "SELECT CONVERT(phone, UNSIGNED), CONVERT(id_card USING latin1), CAST(phone AS BINARY) FROM customers",
    "SELECT QUOTE(phone), CAST(id_card AS CHAR(18)), phone COLLATE utf8mb4_bin FROM customers",
    "SELECT UNHEX(HEX(phone)), FROM_BASE64(TO_BASE64(id_card)), CONV(phone, 10, 16) FROM customers",
    "SELECT LPAD(phone, 20, '0'), RPAD(id_card, 30, 'x'), TRIM(phone), LOWER(id_card) FROM customers",
    "SELECT ASCII(SUBSTRING(phone, 4, 1)), LENGTH(phone), ORD(id_card) FROM customers",
    "SELECT IF(1, phone, id_card), IFNULL(phone, ''), COALESCE(id_card, ''), NULLIF(phone, 'x') "
    "FROM customers",
    "SELECT CASE WHEN id > 0 THEN phone ELSE id_card END FROM customers",
    "SELECT ELT(1, phone, id_card), CONCAT(phone) FROM customers",
    "SELECT phone FROM customers UNION SELECT id_card FROM customers",
    "SELECT phone FROM customers UNION ALL SELECT '1'",
    "WITH RECURSIVE r(p) AS (SELECT phone FROM customers UNION ALL SELECT p FROM r WHERE 1 = 0) "
    "SELECT * FROM r",
    "WITH x AS (SELECT phone AS p FROM customers) SELECT p, UPPER(p) FROM x",
    "WITH x(a, b) AS (SELECT id, phone FROM customers) SELECT a, b FROM x",
    "WITH x(n, p) AS (SELECT phone, name FROM customers) SELECT n, p FROM x",
    "SELECT p FROM (SELECT phone AS p FROM customers) s",
    "SELECT (SELECT phone FROM customers LIMIT 1)",
    "SELECT id, (SELECT phone) FROM customers",
    "SELECT id, LAG(phone) OVER (ORDER BY id), FIRST_VALUE(id_card) OVER () FROM customers",
    "SELECT id, LEAD(name, 1) OVER (ORDER BY id), NTH_VALUE(phone, 2) OVER () FROM customers",
    "SELECT MAX(phone), MIN(id_card) FROM customers",
    "SELECT r.caller, r.callee FROM call_records r",
    "SELECT notes FROM call_records",
    "SeLeCt/**/PHONE/* c */from\tCUSTOMERS",
    "SELECT `phone`, `id_card` FROM `customers`",
    "SELECT crm.customers.phone FROM crm.customers",
    "SELECT `crm`.`customers`.`id_card` FROM `crm`.`customers`",
    "SELECT /*!50000 phone, */ id FROM customers",
    "SELECT /*M!100000 phone, */ id FROM customers",
    "SELECT SQL_NO_CACHE phone FROM customers",
    "SELECT STRAIGHT_JOIN HIGH_PRIORITY phone FROM customers",
    "SELECT phone FROM customers USE INDEX (PRIMARY)",
    "SELECT phone, id_card FROM customers FORCE INDEX (PRIMARY) IGNORE INDEX FOR ORDER BY (PRIMARY)",
    "SELECT phone FROM customers PROCEDURE ANALYSE()",
    "(SELECT phone FROM customers) LIMIT 5",
    "SELECT * FROM (SELECT phone, id_card FROM customers) s CROSS JOIN (SELECT 1 AS seq) q",
    "SELECT c.phone, s.seq FROM customers c JOIN (SELECT 1 AS seq UNION ALL SELECT 2) s",
    "SELECT phone FROM customers WHERE branch_id = 12 LIMIT 1 OFFSET 0",
]


def _masked_output(served: dict[str, Any], truth: dict[str, Any], sql: str, mode: str) -> None:
    try:
        if mode == "text":
            with connect(served) as c:
                got: Any = run(c, sql)
        else:
            conn = connect_binary(served)
            try:
                got = run_binary(conn, sql)
            finally:
                conn.close()
    except Exception as e:
        assert not leaked(truth["secrets"], str(e)), sql
        return
    assert not leaked(truth["secrets"], got), sorted(leaked(truth["secrets"], got))[:3]


@pytest.mark.parametrize("sql", MASKED_OUTPUT)
@pytest.mark.parametrize("mode", ["text", "binary"])
def test_output_is_masked(served: dict[str, Any], truth: dict[str, Any], sql: str, mode: str) -> None:
    _masked_output(served, truth, sql, mode)


def test_names_are_masked(served: dict[str, Any], truth: dict[str, Any]) -> None:
    got: list[Any] = []
    with connect(served) as c:
        for expr in ("name", "CONCAT(name, '')", "REVERSE(name)", "JSON_OBJECT('n', name)", "UPPER(name)"):
            try:
                got += run(c, f"SELECT {expr} FROM customers")
            except pymysql.err.MySQLError as e:
                assert by_maskgate(e), e
    assert got
    flat = {v for r in got for v in r}
    assert not flat & truth["names"]
    assert not {n[::-1] for n in truth["names"]} & flat


def test_mariadb_cli_sees_masked_values(served: dict[str, Any], truth: dict[str, Any]) -> None:
    res = subprocess.run(
        [
            "mariadb",
            "-h127.0.0.1",
            f"-P{served['mysql_port']}",
            f"-u{VENDOR[0]}",
            f"-p{VENDOR[1]}",
            "--skip-ssl",
            "-N",
            "crm",
            "-e",
            "SELECT id, phone, id_card FROM customers; SELECT notes FROM call_records LIMIT 50",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if res.returncode and "unknown option" in res.stderr:
        pytest.skip("mariadb client without --skip-ssl")
    assert res.returncode == 0, res.stderr
    assert "****" in res.stdout or "*" in res.stdout
    assert not leaked(truth["secrets"], res.stdout)


def test_pipelined_commands_are_masked(served: dict[str, Any], truth: dict[str, Any]) -> None:
    """Two COM_QUERY sent back to back before any answer: each is decided and masked."""
    with connect(served) as c:
        c._execute_command(COMMAND.COM_QUERY, "SELECT id, phone FROM customers")
        c._execute_command(COMMAND.COM_QUERY, "SELECT id_card, UPPER(phone) FROM customers")
        got: list[Any] = []
        for _ in range(2):
            c._next_seq_id = 1  # each answer is numbered from 1, as if its command came alone
            result = pymysql.connections.MySQLResult(c)
            result.read()
            got += list(result.rows or ())
        c._result = None
        assert run(c, "SELECT 1") == [(1,)]
    assert got and not leaked(truth["secrets"], got)


# ---------------------------------------------------------------------------------------------
# 2. Refusals: masked values in conditions, the denied class anywhere, audit_trail, server
#    files, SQL in strings, writes, DDL, session escapes (test_redteam REFUSED)
# ---------------------------------------------------------------------------------------------

REFUSED = [
    # masked values in conditions
    "SELECT id FROM customers WHERE phone LIKE '138%'",
    "SELECT id FROM customers WHERE CAST(phone AS CHAR) = '13800000000'",
    "SELECT id FROM customers WHERE IFNULL(phone, '') = '13800000000'",
    "SELECT id FROM customers WHERE phone REGEXP '^138'",
    "SELECT id FROM customers WHERE phone RLIKE '^138'",
    "SELECT id FROM customers WHERE LOCATE('138', phone) = 1",
    "SELECT id FROM customers WHERE INSTR(id_card, '1101') > 0",
    "SELECT id FROM customers WHERE MATCH(notes) AGAINST ('138')",
    "SELECT id FROM customers WHERE phone BETWEEN '130' AND '139'",
    "SELECT id FROM customers WHERE SUBSTRING(phone, 4, 1) = '9'",
    "SELECT id FROM customers WHERE phone SOUNDS LIKE '138'",
    "SELECT id FROM customers WHERE STRCMP(phone, '138') > 0",
    "SELECT id FROM customers ORDER BY phone",
    "SELECT id FROM customers ORDER BY 2",
    "SELECT id FROM customers ORDER BY SUBSTRING(id_card, 7, 8)",
    "SELECT id FROM customers GROUP BY phone, id",
    "SELECT id, ROW_NUMBER() OVER (ORDER BY id_card) FROM customers",
    "SELECT id, RANK() OVER (PARTITION BY phone ORDER BY id) FROM customers",
    "SELECT CASE WHEN phone LIKE '138%' THEN 1 ELSE 0 END FROM customers",
    "SELECT IF(phone LIKE '138%', 1, 0) FROM customers",
    "SELECT phone LIKE '138%' FROM customers",
    "SELECT id, phone IN (SELECT '13800000000') FROM customers",
    "SELECT EXISTS (SELECT 1 FROM customers WHERE phone = '13800000000')",
    "SELECT id FROM customers JOIN (SELECT '13800000000' AS p) v ON customers.phone = v.p",
    "SELECT c.id FROM customers c JOIN seq_13000000000_to_13000000100 g ON c.phone = g.seq",
    "SELECT SUM(phone LIKE '13%') FROM customers",
    "SELECT COUNT(IF(phone LIKE '13%', 1, NULL)) FROM customers",
    "SELECT id FROM customers HAVING MAX(phone) > '1'",
    "SELECT GREATEST(phone, '0') FROM customers",
    "SELECT INTERVAL(SUBSTRING(phone, 4, 1), 1, 5) FROM customers",
    "SELECT FIELD(SUBSTRING(phone, 4, 1), '0', '1', '2') FROM customers",
    "SELECT FIND_IN_SET(SUBSTRING(phone, 4, 1), '0,1,2') FROM customers",
    "SELECT s.id FROM (SELECT id, SUBSTRING(phone, 4, 1) AS p FROM customers) s WHERE s.p = '9'",
    "WITH x AS (SELECT id, id_card p FROM customers) SELECT id FROM x WHERE p LIKE '11%'",
    "SELECT id FROM customers WHERE id = LENGTH(phone)",
    "SELECT SLEEP(IF(SUBSTRING(phone, 4, 1) = '9', 1, 0)) FROM customers",
    "SELECT BENCHMARK(IF(SUBSTRING(phone, 4, 1) = '9', 1000000, 1), MD5('x')) FROM customers",
    "SELECT id FROM call_records WHERE caller = '13800000000'",
    "EXPLAIN SELECT id FROM customers WHERE phone = '13800000000'",
    "DO SLEEP(IF(SUBSTRING((SELECT phone FROM customers LIMIT 1), 4, 1) = '9', 1, 0))",
    # denied class, in any position
    "SELECT bank_card FROM customers",
    "SELECT bank_card IS NULL FROM customers",
    "SELECT COUNT(bank_card) FROM customers",
    "SELECT id FROM customers WHERE bank_card = '6222020200112233446'",
    "SELECT REVERSE(bank_card) FROM customers",
    "SELECT JSON_OBJECT('b', bank_card) FROM customers",
    "SELECT account_no FROM accounts",
    "SELECT * FROM customers",
    "SELECT customers.* FROM customers",
    "SELECT c.* FROM customers c JOIN call_records r ON r.customer_id = c.id",
    "SELECT * FROM accounts",
    "SELECT * FROM (SELECT * FROM customers) s",
    "WITH x AS (SELECT * FROM customers) SELECT id FROM x",
    "EXPLAIN SELECT * FROM customers",
    "ANALYZE SELECT * FROM customers",
    "SELECT /*!50000 bank_card, */ id FROM customers",
    "SELECT /*M!100000 bank_card, */ id FROM customers",
    # audit_trail, however it is spelled
    "SELECT * FROM audit_trail",
    "SELECT * FROM crm.audit_trail",
    "SELECT * FROM `audit_trail`",
    "SELECT * FROM `crm`.`audit_trail`",
    "SELECT COUNT(*) FROM audit_trail",
    "SELECT (SELECT COUNT(*) FROM audit_trail)",
    "SELECT id FROM customers WHERE EXISTS (SELECT 1 FROM audit_trail)",
    "SELECT action FROM audit_trail /*!, customers */",
    "HANDLER audit_trail OPEN",
    # catalog tables that hold values or other sessions' statements
    "SELECT * FROM information_schema.PROCESSLIST",
    "SELECT INFO FROM information_schema.PROCESSLIST",
    "SHOW FULL PROCESSLIST",
    "SELECT * FROM mysql.column_stats",
    "SELECT min_value, max_value FROM mysql.column_stats WHERE column_name = 'phone'",
    "SELECT * FROM mysql.user",
    "SELECT * FROM performance_schema.events_statements_history",
    # server files, SQL in strings, other sessions
    "SELECT LOAD_FILE('/etc/passwd')",
    "SELECT phone FROM customers INTO OUTFILE '/tmp/maskgate-redteam-out'",
    "SELECT phone FROM customers INTO DUMPFILE '/tmp/maskgate-redteam-dump'",
    "LOAD DATA INFILE '/etc/passwd' INTO TABLE audit_trail (action)",
    "LOAD XML INFILE '/etc/passwd' INTO TABLE audit_trail",
    "EXECUTE IMMEDIATE 'SELECT * FROM audit_trail'",
    "EXECUTE IMMEDIATE CONCAT('SELECT bank_', 'card FROM customers')",
    "PREPARE s FROM CONCAT('SELECT * FROM audit', '_trail')",
    "KILL CONNECTION_ID()",
    "KILL QUERY 1",
    "BEGIN NOT ATOMIC SELECT phone FROM customers; END",
    "CREATE PROCEDURE p() SELECT bank_card FROM customers",
    "CALL mysql.rds_kill(1)",
    "SELECT sys_exec('id')",
    # row-by-row access that skips SELECT
    "HANDLER customers OPEN",
    "HANDLER customers READ FIRST",
    # writes, DDL, session escapes
    "DELETE FROM customers",
    "UPDATE customers SET name = name WHERE 1 = 0",
    "UPDATE customers c JOIN call_records r ON r.customer_id = c.id SET c.name = c.name WHERE 1 = 0",
    "INSERT INTO audit_trail (actor, action) VALUES ('x', 'y')",
    "INSERT INTO audit_trail (actor, action) SELECT name, phone FROM customers",
    "REPLACE INTO audit_trail (actor, action) VALUES ('x', 'y')",
    "INSERT INTO customers (id) VALUES (1) ON DUPLICATE KEY UPDATE name = name",
    "TRUNCATE TABLE audit_trail",
    "CREATE TEMPORARY TABLE customers (id int, phone text)",
    "CREATE TEMPORARY TABLE t SELECT id, phone FROM customers",
    "CREATE TABLE t AS SELECT phone FROM customers",
    "CREATE VIEW v AS SELECT phone FROM customers",
    "ALTER TABLE customers ADD COLUMN x int",
    "DROP TABLE audit_trail",
    "RENAME TABLE audit_trail TO at2",
    "GRANT SELECT ON crm.* TO crm_vendor",
    "SET ROLE NONE",
    "SET ROLE crm_desk",
    "SET DEFAULT ROLE NONE",
    "SET PASSWORD = PASSWORD('x')",
    "SELECT id FROM customers FOR UPDATE",
    "SELECT id FROM call_records LOCK IN SHARE MODE",
    "SELECT id FROM call_records FOR UPDATE NOWAIT",
    "ANALYZE TABLE customers PERSISTENT FOR ALL",
    "OPTIMIZE TABLE customers",
    "FLUSH TABLES",
    "SET GLOBAL general_log = 1",
    "SET SESSION sql_mode = 'ANSI_QUOTES'",
    "SET sql_mode = 'NO_BACKSLASH_ESCAPES'",
    "SET @@session.sql_mode = 'ANSI_QUOTES'",
    "SET STATEMENT sql_mode = 'ANSI_QUOTES' FOR SELECT \"bank_card\" FROM customers",
    "SET NAMES gbk",
    "SET character_set_client = gbk",
    "SET @@character_set_client = 'big5'",
    "XA START 'x'",
    "INSTALL SONAME 'ha_connect'",
    "SHUTDOWN",
]


@pytest.mark.parametrize("sql", REFUSED)
def test_refused(served: dict[str, Any], sql: str) -> None:
    with connect(served) as c:
        assert refused(c, sql), sql
        assert run(c, "SELECT 1") == [(1,)]


# desk_li's upstream session is the service account with crm_desk set: the database's grants
# (SELECT/INSERT/UPDATE/DELETE on crm.*) stand behind maskgate much less than crm_vendor's do.
DESK_REFUSED = [
    "SELECT actor, action FROM audit_trail",
    "SELECT account_no FROM accounts",
    "SELECT * FROM accounts",
    "LOCK TABLES customers WRITE",
    "LOCK TABLES audit_trail READ",
    "HANDLER audit_trail OPEN",
    "DELETE FROM call_records WHERE 1 = 0",
    "INSERT INTO audit_trail (actor, action) VALUES ('x', 'y')",
    "REPLACE INTO customers (id, name, phone, id_card, branch_id) VALUES (1, 'x', '1', '1', 1)",
    "INSERT INTO customers (id, name, phone, id_card, branch_id) VALUES (1, 'x', '1', '1', 1) "
    "ON DUPLICATE KEY UPDATE phone = '1'",
    "UPDATE audit_trail SET action = action WHERE 1 = 0",
    "UPDATE customers c JOIN audit_trail a ON a.id = c.id SET c.email = a.action WHERE 1 = 0",
    "UPDATE customers SET email = (SELECT MAX(action) FROM audit_trail) WHERE 1 = 0",
    "UPDATE accounts SET balance = balance WHERE 1 = 0",
    "SELECT id FROM seq_1_to_5",
    "SELECT phone FROM customers INTO OUTFILE '/tmp/maskgate-redteam-desk'",
    "SET ROLE NONE",
    "SET ROLE crm_desk",
    "SET sql_mode = 'ANSI_QUOTES'",
    "EXECUTE IMMEDIATE 'SELECT actor FROM audit_trail'",
    "DO (SELECT COUNT(*) FROM audit_trail)",
    "SELECT * FROM information_schema.PROCESSLIST",
    "CREATE TEMPORARY TABLE call_records (id int)",
    "TRUNCATE call_records",
    "ANALYZE TABLE customers",
]


@pytest.mark.parametrize("sql", DESK_REFUSED)
def test_desk_refused(served: dict[str, Any], sql: str) -> None:
    with connect(served, DESK) as c:
        assert refused(c, sql), sql
        assert run(c, "SELECT 1") == [(1,)]


@pytest.mark.parametrize(
    "sql",
    [
        "SHOW CREATE TABLE audit_trail",
        "SHOW COLUMNS FROM audit_trail",
        "SHOW INDEX FROM accounts",
        "SHOW TABLE STATUS LIKE 'audit_trail'",
        "DESCRIBE audit_trail",
    ],
)
def test_desk_sees_no_metadata_of_tables_it_may_not_read(served: dict[str, Any], sql: str) -> None:
    """maskgate decides these as `show` without a table check (as it lets catalog reads
    through); the database refuses them, since desk_li runs upstream as crm_desk's own account."""
    with connect(served, DESK) as c:
        try:
            got = run(c, sql)
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e) or e.args[0] in (1142, 1044), e
            return
        assert not got, got[:2]


@pytest.mark.parametrize(
    ("who", "sql"),
    [
        (VENDOR, "SHOW CREATE TABLE audit_trail"),
        (VENDOR, "LOCK TABLES customers READ"),
        (DESK, "LOCK TABLES customers READ"),
    ],
)
def test_refused_by_maskgate_or_the_database(served: dict[str, Any], who: tuple[str, str], sql: str) -> None:
    """maskgate lets these through (a SHOW is not checked against `tables`; LOCK TABLES … READ is
    taken for a read): the database's grants refuse them (crm_vendor has no grant on audit_trail,
    neither account has LOCK TABLES). Secure today because of the grants alone."""
    with connect(served, who) as c:
        with pytest.raises(pymysql.err.MySQLError) as exc:
            run(c, sql)
        assert by_maskgate(exc.value) or exc.value.args[0] in (1142, 1044), exc.value
        assert run(c, "SELECT 1") == [(1,)]


@pytest.mark.parametrize("sql", REFUSED[:40])
def test_refused_through_prepared_statements(served: dict[str, Any], sql: str) -> None:
    """COM_STMT_PREPARE is a door too: the same statements are refused when prepared."""
    mc = pytest.importorskip("mysql.connector")
    conn = connect_binary(served)
    try:
        with pytest.raises(mc.Error) as exc:
            run_binary(conn, sql)
        assert by_maskgate(exc.value), exc.value
        assert run_binary(conn, "SELECT 1") == [(1,)]
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# 3. Error-based echoes (test_redteam error messages, division oracle)
# ---------------------------------------------------------------------------------------------

ECHOES = [
    "SELECT EXTRACTVALUE(1, CONCAT(0x7e, phone)) FROM customers WHERE id = {t}",
    "SELECT UPDATEXML(1, CONCAT(0x7e, id_card), 1) FROM customers WHERE id = {t}",
    "SELECT EXTRACTVALUE(1, CONCAT(0x7e, REVERSE(phone))) FROM customers WHERE id = {t}",
    "SELECT EXTRACTVALUE(1, CONCAT(0x7e, " + tr("phone") + ")) FROM customers WHERE id = {t}",
    "SELECT EXTRACTVALUE(1, CONCAT(0x7e, SUBSTRING(id_card, 7, 8))) FROM customers WHERE id = {t}",
    "SELECT JSON_EXTRACT(CONCAT('{{', phone), '$') FROM customers WHERE id = {t}",
    "SELECT ST_GeomFromText(CONCAT('POINT(', phone)) FROM customers WHERE id = {t}",
    "SELECT CAST(CONCAT('x', phone) AS DATE) FROM customers WHERE id = {t}",
    "SELECT EXP(~(SELECT * FROM (SELECT phone FROM customers WHERE id = {t}) x))",
    "SELECT COUNT(*), CONCAT(phone, FLOOR(RAND(0) * 2)) x FROM customers, seq_1_to_3 GROUP BY x",
    "SELECT * FROM (SELECT NAME_CONST(phone, 1), NAME_CONST(phone, 1)) x",
    "SELECT 1 FROM customers WHERE id = {t} AND ROW(1, 1) > (SELECT COUNT(*), CONCAT(phone, 0x3a, "
    "FLOOR(RAND(0) * 2)) x FROM customers GROUP BY x LIMIT 1)",
]


@pytest.mark.parametrize("template", ECHOES)
def test_error_messages_hold_no_values(served: dict[str, Any], truth: dict[str, Any], template: str) -> None:
    sql = template.format(t=truth["target_id"])
    text: list[str] = []
    with connect(served) as c:
        try:
            text.append(repr(run(c, sql)))
        except pymysql.err.MySQLError as e:
            text.append(str(e))
        with contextlib.suppress(pymysql.err.MySQLError):
            text.append(repr(run(c, "SHOW WARNINGS")))
    phone, idc = truth["phone"], truth["id_card"]
    joined = "\n".join(text)
    assert not leaked(truth["secrets"], joined), joined[:300]
    if "SUBSTRING(id_card, 7, 8)" in template:
        assert idc[6:14] not in joined  # the date of birth
    del phone


WARNING_ECHOES = [
    "SELECT CONCAT('x', phone) + 0 FROM customers WHERE id = {t}",
    "SELECT CONCAT('x', REVERSE(phone)) + 0 FROM customers WHERE id = {t}",
    "SELECT CONCAT('x', " + tr("phone") + ") + 0 FROM customers WHERE id = {t}",
    "SELECT CAST(CONCAT('x', " + tr("id_card") + ") AS SIGNED) FROM customers WHERE id = {t}",
    "SELECT CAST(CONCAT('x', " + tr("id_card") + ") AS DATE) FROM customers WHERE id = {t}",
    "SELECT CAST(CONCAT(SUBSTRING(phone, 4, 4), 'x') AS UNSIGNED) FROM customers WHERE id = {t}",
    "SELECT CONCAT('x', " + tr("caller") + ") + 0 FROM call_records LIMIT 5",
]


@pytest.mark.parametrize("template", WARNING_ECHOES)
def test_warnings_hold_no_values(served: dict[str, Any], truth: dict[str, Any], template: str) -> None:
    """MySQL's casts warn instead of failing: 'Truncated incorrect DOUBLE value: 'x<value>''.
    SHOW WARNINGS (and the warnings of the statement itself) must not carry the value, in
    letters, reversed or in part (the middle digits the mask hides)."""
    sql = template.format(t=truth["target_id"])
    with connect(served) as c:
        try:
            got = run(c, sql)
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e) or not leaked(truth["secrets"], str(e))
            return
        warnings: list[Any] = []
        for probe in ("SHOW WARNINGS", "SHOW WARNINGS LIMIT 5", "SELECT @@warning_count", "SHOW ERRORS"):
            with contextlib.suppress(pymysql.err.MySQLError):
                warnings += run(c, probe)
    text = repr(got) + repr(warnings)
    assert not leaked(truth["secrets"], text), text[:300]
    if "SUBSTRING(phone, 4, 4)" in sql:
        assert truth["phone"][3:7] not in text


def test_division_by_zero_is_no_oracle(served: dict[str, Any], truth: dict[str, Any]) -> None:
    """MySQL answers 1/0 with NULL (and a warning) where PostgreSQL fails: the NULL, or the
    warning, would tell the digit. Refused, or one answer for every guess."""
    t, digit = truth["target_id"], int(truth["phone"][3])
    answers = []
    with connect(served) as c:
        for guess in range(10):
            sql = f"SELECT 1 / (SUBSTRING(phone, 4, 1) - {guess}) FROM customers WHERE id = {t}"
            try:
                got = run(c, sql)
                warn = run(c, "SHOW WARNINGS")
            except pymysql.err.MySQLError as e:
                if by_maskgate(e):
                    return
                got, warn = [("error", e.args[0])], []
            answers.append(repr(got) + repr(warn))
    assert answers[digit] == answers[(digit + 1) % 10], "the answer tells the hidden digit"


# ---------------------------------------------------------------------------------------------
# 4. Side channels: row counts, timing, LIMIT from user variables (test_redteam leaks)
# ---------------------------------------------------------------------------------------------

ROW_COUNT = [
    "SELECT id FROM customers c JOIN seq_1_to_9 s ON s.seq <= SUBSTRING(c.phone, 4, 1) WHERE c.id = {t}",
    "SELECT 1 FROM seq_1_to_20 WHERE seq <= (SELECT SUBSTRING(phone, 4, 1) FROM customers WHERE id = {t})",
    "SELECT 1 FROM seq_1_to_20 s, customers c WHERE c.id = {t} AND s.seq <= CAST(SUBSTRING(c.phone, 4, 1) "
    "AS UNSIGNED)",
    "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g "
    "WHERE n < (SELECT SUBSTRING(phone, 4, 1) FROM customers WHERE id = {t})) SELECT n FROM g",
    "SELECT 1 FROM JSON_TABLE(CONCAT('[', REPEAT('1,', "
    "SUBSTRING((SELECT phone FROM customers WHERE id = {t}), 4, 1)), '1]'), "
    "'$[*]' COLUMNS (x INT PATH '$')) j",
]


@pytest.mark.parametrize("template", ROW_COUNT)
def test_row_count_side_channel(served: dict[str, Any], truth: dict[str, Any], template: str) -> None:
    with connect(served) as c:
        assert refused(c, template.format(t=truth["target_id"]))


def _targets_by_digit(truth: dict[str, Any]) -> list[tuple[int, int]]:
    """Up to five branch-12 customers whose 4th phone digits differ."""
    seen: dict[int, int] = {}
    for cid, phone, *_ in truth["customers"]:
        if cid in truth["branch12"] and phone[3].isdigit() and int(phone[3]) not in seen:
            seen[int(phone[3])] = cid
    return [(d, cid) for d, cid in sorted(seen.items())][:5]


def test_limit_from_a_user_variable_counts_the_digit(served: dict[str, Any], truth: dict[str, Any]) -> None:
    """LIMIT takes no expression in MySQL, but a prepared statement's `LIMIT ?` takes a user
    variable: @d set from the hidden digit gives a row count equal to it."""
    counts = {}
    with connect(served) as c:
        with contextlib.suppress(pymysql.err.MySQLError):
            run(c, "PREPARE lim FROM 'SELECT id FROM call_records LIMIT ?'")
        for digit, cid in _targets_by_digit(truth):
            try:
                run(c, f"SET @d = (SELECT SUBSTRING(phone, 4, 1) FROM customers WHERE id = {cid})")
                counts[digit] = len(run(c, "EXECUTE lim USING @d"))
            except pymysql.err.MySQLError as e:
                if by_maskgate(e):
                    continue
                raise
    assert len(set(counts.values())) <= 1, counts


def test_timing_side_channel(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served) as c:
        for sql in (
            f"SELECT SLEEP(SUBSTRING(phone, 4, 1) * 0.001) FROM customers WHERE id = {truth['target_id']}",
            f"SELECT BENCHMARK(SUBSTRING(phone, 4, 1) * 10000, MD5('x')) FROM customers "
            f"WHERE id = {truth['target_id']}",
            f"SELECT MD5(REPEAT('x', SUBSTRING(phone, 4, 1) * 1000000)) FROM customers "
            f"WHERE id = {truth['target_id']}",
        ):
            assert refused(c, sql), sql


def _amplified(pos: int, digit: int, levels: int = 6) -> str:
    e = f"REPLACE(SUBSTRING(phone, {pos}, 1), '{digit}', 'xxxxxxxxxx')"
    for _ in range(levels - 1):
        e = f"REPLACE({e}, 'x', 'xxxxxxxxxx')"
    return f"MD5({e})"


def test_growing_replace_is_refused_not_a_timing_oracle(
    served: dict[str, Any], truth: dict[str, Any]
) -> None:
    with connect(served) as c:
        assert refused(c, f"SELECT {_amplified(4, 0)} FROM customers WHERE id = {truth['target_id']}")
        assert run(c, "SELECT 1") == [(1,)]


# ---------------------------------------------------------------------------------------------
# 5. Free text: numbers inside notes (test_redteam free-text leaks)
# ---------------------------------------------------------------------------------------------

FREE_TEXT = [
    f"SELECT {tr('notes')} FROM call_records",
    "SELECT REVERSE(notes) FROM call_records",
    "SELECT REGEXP_REPLACE(notes, '([0-9])', '\\\\1 ') FROM call_records",
    "SELECT REGEXP_SUBSTR(notes, '[0-9]{11,19}') FROM call_records",
    "SELECT CAST(REGEXP_SUBSTR(notes, '[0-9]{11,19}') AS UNSIGNED) FROM call_records",
    "SELECT HEX(notes), TO_BASE64(notes) FROM call_records",
    "SELECT CONVERT(notes USING gbk) FROM call_records",
    "SELECT JSON_OBJECT('n', notes) FROM call_records",
    "SELECT INSERT(notes, 5, 0, ' ') FROM call_records",
    "SELECT CONCAT_WS(' ', SUBSTRING(notes, 1, 20), SUBSTRING(notes, 21)) FROM call_records",
]


@pytest.mark.parametrize("sql", FREE_TEXT)
def test_free_text_numbers(served: dict[str, Any], truth: dict[str, Any], sql: str) -> None:
    with connect(served) as c:
        try:
            got = run(c, sql)
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e), e
            return
    assert not leaked(truth["secrets"], got), sorted(leaked(truth["secrets"], got))[:3]


def test_denied_bank_card_via_notes(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served) as c:
        try:
            got = run(
                c,
                "SELECT CAST(REGEXP_SUBSTR(REGEXP_SUBSTR(notes, '银行卡[0-9]+'), '[0-9]+') AS UNSIGNED) "
                "FROM call_records",
            )
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e)
            return
    assert not {str(r[0]) for r in got} & truth["cards"]


# ---------------------------------------------------------------------------------------------
# 6. The row filter (test_redteam BRANCH, v2 §8, statement_truth)
# ---------------------------------------------------------------------------------------------

BRANCH = [
    "SELECT id, branch_id FROM customers",
    "SELECT id, branch_id FROM crm.customers",
    "SELECT id, branch_id FROM `crm`.`customers` AS branch_id",
    "SELECT id, branch_id FROM customers WHERE 1 OR branch_id = 3",
    "SELECT id, branch_id FROM customers WHERE branch_id <> 12",
    "SELECT id, branch_id FROM customers WHERE branch_id = 12 OR TRUE",
    "SELECT c.id, c.branch_id FROM call_records r JOIN customers c ON c.id = r.customer_id",
    "SELECT c.id, c.branch_id FROM call_records r STRAIGHT_JOIN customers c ON c.id = r.customer_id",
    "SELECT c.id, c.branch_id FROM call_records r LEFT JOIN customers c ON c.id = r.customer_id",
    "SELECT c.id, c.branch_id FROM customers c RIGHT JOIN call_records r ON c.id = r.customer_id",
    "SELECT c.id, c.branch_id FROM customers c NATURAL JOIN customers d",
    "SELECT c.id, c.branch_id FROM customers c JOIN accounts a USING (id)",
    "SELECT id, branch_id FROM customers WHERE id IN (SELECT customer_id FROM call_records)",
    "WITH x AS (SELECT * FROM (SELECT id, branch_id FROM customers) s) SELECT * FROM x",
    "WITH RECURSIVE x AS (SELECT id, branch_id FROM customers) SELECT * FROM x",
    "SELECT id, branch_id FROM customers UNION SELECT id, branch_id FROM customers",
    "SELECT id, branch_id FROM customers INTERSECT SELECT id, branch_id FROM customers",
    "(SELECT id, branch_id FROM customers) UNION ALL (SELECT 0, 12)",
    "SELECT (SELECT MAX(branch_id) FROM customers), (SELECT MIN(branch_id) FROM customers)",
    "SELECT id, branch_id FROM customers USE INDEX (PRIMARY)",
    "SELECT id, branch_id FROM customers FORCE INDEX (PRIMARY) WHERE id > 0",
    "SELECT c.id, c.branch_id FROM (customers c CROSS JOIN (SELECT 1) x)",
    "SELECT c.id, c.branch_id FROM (customers c JOIN call_records r ON c.id = r.customer_id)",
    "SELECT c.id, c.branch_id FROM call_records r "
    "JOIN (customers c JOIN accounts a ON a.customer_id = c.id) ON r.customer_id = c.id",
    "SELECT c.id, c.branch_id FROM ((customers c CROSS JOIN (SELECT 1) x) CROSS JOIN (SELECT 2) y)",
    "SELECT id, branch_id FROM customers WHERE EXISTS (WITH customers AS (SELECT 1) SELECT 1 FROM customers)",
    "SELECT id, branch_id FROM customers, (WITH customers AS (SELECT 1 AS x) SELECT x FROM customers) s",
    "SELECT id, branch_id, (WITH customers AS (SELECT 1 AS x) SELECT x FROM customers) FROM customers",
    "WITH customers AS (SELECT 1 AS id, 12 AS branch_id) SELECT id, branch_id FROM crm.customers",
    "WITH a AS (SELECT id, branch_id FROM customers), customers AS (SELECT 1 AS id) SELECT * FROM a",
    "SELECT id, branch_id FROM customers, (SELECT 1 UNION ALL SELECT 2) s",
    "SELECT id, branch_id FROM customers PARTITION (p0)",
    "SELECT id, branch_id FROM customers LIMIT 18446744073709551615",
    "SELECT SQL_CALC_FOUND_ROWS id, branch_id FROM customers",
    "SELECT id, branch_id FROM customers WHERE branch_id = 12 UNION SELECT id, branch_id FROM crm.customers",
    "SELECT id, branch_id FROM customers GROUP BY id, branch_id WITH ROLLUP",
    "SELECT c.id, c.branch_id FROM customers AS c, customers AS d WHERE c.id = d.id",
    "SELECT /*!50000 id, branch_id */ FROM customers",
    "SELECT id, branch_id FROM customers /*!WHERE 1 = 1 */",
    "SELECT id, branch_id FROM customers /*!50000 , accounts */ LIMIT 300",
]


@pytest.mark.parametrize("sql", BRANCH)
def test_row_filter_holds(served: dict[str, Any], truth: dict[str, Any], sql: str) -> None:
    with connect(served) as c:
        try:
            got = run(c, sql)
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e) or e.args[0] in (1064, 1054, 1735, 1221, 1222, 1052), e
            return
    if sql.startswith("SELECT (SELECT"):  # branch numbers only
        assert {v for r in got for v in r} <= {12}, got
        return
    ids = {r[0] for r in got if isinstance(r[0], int)}
    assert {b for r in got for b in r[1:2] if b is not None} <= {12}, sql
    assert not ids & truth["other_branches"], sorted(ids & truth["other_branches"])[:5]


def test_found_rows_counts_only_the_branch(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served) as c:
        try:
            run(c, "SELECT SQL_CALC_FOUND_ROWS id FROM customers LIMIT 1")
            (found,) = run(c, "SELECT FOUND_ROWS()")[0]
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e)
            return
    assert found <= len(truth["branch12"])


def test_show_table_status_and_index_cardinality(served: dict[str, Any], truth: dict[str, Any]) -> None:
    """Statistics are no row filter's business, but must hold no values."""
    with connect(served) as c:
        for sql in ("SHOW TABLE STATUS LIKE 'customers'", "SHOW INDEX FROM customers"):
            try:
                got = run(c, sql)
            except pymysql.err.MySQLError as e:
                assert by_maskgate(e)
                continue
            assert not leaked(truth["secrets"], got)


# ---------------------------------------------------------------------------------------------
# 7. The row limit: records per statement, not result rows (test_redteam, v3 §4, v4 §2, v5, v6)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id FROM call_records",
        "SELECT id FROM call_records UNION ALL SELECT id FROM call_records",
        "SELECT r.id FROM call_records r, (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) s",
        "(SELECT id FROM call_records) UNION ALL (SELECT id + 100000 FROM call_records)",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1000) SELECT n FROM r",
        "SELECT 1 FROM call_records a JOIN call_records b ON b.id = a.id + 1",
    ],
)
def test_row_limit_per_statement(served: dict[str, Any], sql: str) -> None:
    with connect(served) as c:
        got = run(c, sql)
    assert len(got) <= VENDOR_MAX_ROWS


def test_row_limit_in_binary_results(served: dict[str, Any]) -> None:
    conn = connect_binary(served)
    try:
        got = run_binary(
            conn, "SELECT r.id, c.phone FROM call_records r JOIN customers c ON c.id = r.customer_id"
        )
        got += run_binary(conn, "SELECT id FROM call_records")
    except Exception as e:
        assert by_maskgate(e), e
        return
    finally:
        conn.close()
    assert len(got) <= 2 * VENDOR_MAX_ROWS


def test_multi_statement_parts_are_each_limited_and_masked(
    served: dict[str, Any], truth: dict[str, Any]
) -> None:
    with connect(served, client_flag=CLIENT.MULTI_STATEMENTS) as c, c.cursor() as cur:
        cur.execute(
            "SELECT id FROM call_records; SELECT id, phone FROM customers; SELECT caller FROM call_records"
        )
        sets = [list(cur.fetchall())]
        while cur.nextset():
            sets.append(list(cur.fetchall()))
    assert len(sets) == 3
    assert all(len(s) <= VENDOR_MAX_ROWS for s in sets)
    assert not leaked(truth["secrets"], sets)


def _records(rows: list[tuple[Any, ...]]) -> set[int]:
    return {int(v) for r in rows for v in r if isinstance(v, int)}


SIDE_BY_SIDE = {
    "scalar-subqueries": "SELECT "
    + ", ".join(f"(SELECT r.id FROM call_records r WHERE r.id = g.seq * 5 + {k})" for k in range(5))
    + " FROM (WITH RECURSIVE s(seq) AS (SELECT 0 UNION ALL SELECT seq + 1 FROM s WHERE seq < 999) "
    "SELECT seq FROM s) g",
    "self-join": "SELECT a.id, b.id, c.id, d.id FROM call_records a "
    "JOIN call_records b ON b.id = a.id + 200 JOIN call_records c ON c.id = a.id + 400 "
    "JOIN call_records d ON d.id = a.id + 600",
    "lead-offsets": "SELECT id, "
    + ", ".join(f"LEAD(id, {k * VENDOR_MAX_ROWS}) OVER (ORDER BY id)" for k in range(1, 5))
    + " FROM call_records ORDER BY id",
    "derived-joins": "SELECT a.id, (SELECT b.id FROM call_records b WHERE b.id = a.id + 200 LIMIT 1), "
    "(SELECT c.id FROM call_records c WHERE c.id = a.id + 400 LIMIT 1) FROM call_records a",
}


@pytest.mark.parametrize("sql", list(SIDE_BY_SIDE.values()), ids=list(SIDE_BY_SIDE))
def test_records_side_by_side_escape_the_row_budget(served: dict[str, Any], sql: str) -> None:
    with connect(served) as c:
        try:
            got = run(c, sql)
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e), e
            return
    assert len(got) <= VENDOR_MAX_ROWS
    assert len(_records(got)) <= VENDOR_MAX_ROWS, f"{len(_records(got))} records in {len(got)} rows"


GATHERING = {
    "group-concat": "SELECT GROUP_CONCAT(id, ':', duration_s) FROM call_records",
    "group-concat-derived": "SELECT g FROM (SELECT GROUP_CONCAT(id, ':', duration_s SEPARATOR ';') g "
    "FROM call_records) s",
    "json-arrayagg": "SELECT JSON_ARRAYAGG(CONCAT(id, ':', duration_s)) FROM call_records",
    "json-objectagg": "SELECT JSON_OBJECTAGG(id, duration_s) FROM call_records",
    "pivot": "SELECT "
    + ", ".join(f"MAX(IF(id = {i}, CONCAT({i}, ':', duration_s), NULL))" for i in range(1, 401))
    + " FROM call_records",
    "sum-packing": "SELECT CAST(SUM(duration_s * POW(1000, id % 20)) AS CHAR) FROM call_records "
    "GROUP BY id DIV 20",
    "window-group-concat": "SELECT id, GROUP_CONCAT(id) OVER () FROM call_records",
}


@pytest.mark.parametrize("sql", list(GATHERING.values()), ids=list(GATHERING))
def test_collection_values_do_not_carry_more_records(
    served: dict[str, Any], truth: dict[str, Any], sql: str
) -> None:
    with connect(served) as c:
        try:
            got = run(c, sql)
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e), e
            return
    real = {f"{i}:{d}" for i, d in truth["durations"].items()}
    text = json.dumps([[str(v) for v in r] for r in got])
    pairs = set(re.findall(r"\d+:\d+", text)) & real
    if "POW" in sql:  # each row packs 20 durations
        assert len(got) * 20 <= VENDOR_MAX_ROWS or len(got) <= VENDOR_MAX_ROWS // 20
    assert len(pairs) <= VENDOR_MAX_ROWS, f"{len(pairs)} records in one statement"


def _doubling(levels: int) -> str:
    q = "SELECT id, CONCAT(id, ':', duration_s, ':', customer_id) AS x0 FROM call_records"
    for k in range(levels):
        q = (
            f"SELECT id, CONCAT(x{k}, ';', COALESCE(LEAD(x{k}, {2**k}) OVER (ORDER BY id), '')) AS x{k + 1} "
            f"FROM ({q}) t{k}"
        )
    return f"SELECT x{levels} FROM ({q}) z ORDER BY id"


def test_nested_windows_pack_records_beyond_max_rows(served: dict[str, Any]) -> None:
    with connect(served) as c:
        try:
            got = run(c, _doubling(9))
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e), e
            return
    ids = {rec.split(":")[0] for (x,) in got for rec in (x or "").split(";") if rec}
    assert len(ids) <= VENDOR_MAX_ROWS


# ---------------------------------------------------------------------------------------------
# 8. Comparisons no operator spells out: set operations and DISTINCT (test_redteam)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "SELECT '{p}' INTERSECT SELECT phone FROM customers",
        "SELECT '{p}' INTERSECT ALL SELECT phone FROM customers",
        "SELECT '{p}' EXCEPT SELECT phone FROM customers",
        "SELECT phone FROM customers UNION SELECT '{p}'",
        "WITH x AS (SELECT phone AS q FROM customers) "
        "SELECT COUNT(*) FROM (SELECT '{p}' INTERSECT SELECT q FROM x) s",
        "WITH RECURSIVE r(q) AS (SELECT '{p}' UNION SELECT phone FROM customers) SELECT COUNT(*) FROM r",
        "SELECT COUNT(*) FROM (SELECT phone FROM customers UNION SELECT '{p}') s",
    ],
)
def test_set_operation_membership_oracle(
    served: dict[str, Any], truth: dict[str, Any], template: str
) -> None:
    with connect(served) as c:
        assert refused(c, template.format(p=truth["phone"]))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT DISTINCT phone FROM customers",
        "SELECT DISTINCTROW id_card FROM customers",
        "SELECT COUNT(DISTINCT phone) FROM customers",
        "SELECT COUNT(*) FROM (SELECT DISTINCT caller FROM call_records) s",
        "SELECT GROUP_CONCAT(DISTINCT phone) FROM customers",
        "WITH RECURSIVE r(q) AS (SELECT phone FROM customers UNION SELECT q FROM r) SELECT COUNT(*) FROM r",
    ],
)
def test_distinct_counts_equal_values(served: dict[str, Any], sql: str) -> None:
    with connect(served) as c:
        assert refused(c, sql)


def test_union_all_is_still_served_masked(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served) as c:
        got = run(c, "SELECT phone FROM customers UNION ALL SELECT caller FROM call_records")
    assert got and not leaked(truth["secrets"], got)


# ---------------------------------------------------------------------------------------------
# 9. Lexer disagreements: comments, executable comments, backslashes, quotes (v2 §2, v2 §7,
#    test_redteam standard_conforming_strings / GBK)
# ---------------------------------------------------------------------------------------------


def _smuggled(got: list[tuple[Any, ...]], truth: dict[str, Any]) -> list[str]:
    bad = []
    for r in got:
        if any(isinstance(v, str) and v.startswith("demo database") for v in r):
            bad.append("audit_trail read")
        if leaked(truth["secrets"], r):
            bad.append("full number")
        # (1 is what `SELECT 1 … FROM customers` returns for every row, not an id)
        if any(isinstance(v, int) and v > 1 and v in truth["other_branches"] for v in r[:1]):
            bad.append("row outside branch 12")
    return bad


SMUGGLES = [
    # `--` is a comment in MySQL only when whitespace follows: `--1` is minus minus one
    "SELECT 1 --1, REVERSE(bank_card) AS r, id FROM customers",
    "SELECT 1 --\u00a0x\n, REVERSE(bank_card) FROM customers",
    "SELECT 1 --\u3000x\n, REVERSE(bank_card) FROM customers",
    "SELECT id --'\n, REVERSE(bank_card) FROM customers -- '",
    # `#` comments
    "SELECT 'a' # ' , REVERSE(bank_card), id FROM customers\n",
    "SELECT 1 AS x#\n, REVERSE(bank_card) FROM customers",
    # executable comments: versions the server runs, versions it skips, MariaDB's own
    "SELECT 1 /*!, REVERSE(bank_card) */ FROM customers",
    "SELECT 1 /*!99999 , 2 */ /*!10000, REVERSE(bank_card) */ FROM customers",
    "SELECT 1 /*M!, REVERSE(bank_card) */ FROM customers",
    "SELECT 1 /*M!999999 , REVERSE(bank_card) */ FROM customers",
    "SELECT 1 /*!50000 /* nested */ , REVERSE(bank_card) */ FROM customers",
    "SELECT 1 /*+ , REVERSE(bank_card) */ FROM customers",
    "SELECT actor, action FROM /*!audit_trail*/ /*! #*/ customers",
    # backslashes: default sql_mode escapes with them
    "SELECT 'x\\' , REVERSE(bank_card), id, ' ' FROM customers",
    "SELECT 'x\\\\' , REVERSE(bank_card), id, ' ' FROM customers",
    "SELECT 'x\\'' , REVERSE(bank_card), id FROM customers #'",
    'SELECT "x\\" , REVERSE(bank_card), id, " " FROM customers',
    "SELECT _latin1'x\\' , REVERSE(bank_card) , ' ' FROM customers",
    "SELECT N'x\\' , REVERSE(bank_card) , ' ' FROM customers",
    # quoted names: double quotes are strings, backticks names
    'SELECT "bank_card" FROM customers',
    "SELECT `bank``card` FROM customers",
    "SELECT `x` FROM (SELECT REVERSE(bank_card) AS `x` FROM customers) `s`",
    "SELECT x'41', REVERSE(bank_card) FROM customers",
    "SELECT b'1', 0x41 AS `REVERSE(bank_card)` FROM customers",
    "SELECT 1 FROM customers WHERE 1 = 1 /*!AND 1 = 0*/ UNION ALL SELECT REVERSE(bank_card) FROM customers",
]


@pytest.mark.parametrize("sql", SMUGGLES)
def test_lexer_smuggling(served: dict[str, Any], truth: dict[str, Any], sql: str) -> None:
    with connect(served, client_flag=CLIENT.MULTI_STATEMENTS) as c:
        try:
            got = run(c, sql)
        except pymysql.err.MySQLError as e:
            assert not leaked(truth["secrets"], str(e))
            return
    assert not _smuggled(got, truth), (_smuggled(got, truth), got[:3])


MULTI_SMUGGLES = [
    "SELECT 1 --1\n; SELECT REVERSE(bank_card) FROM customers",
    "SELECT 1 -- c\n; SELECT 'x\n , REVERSE(bank_card), id FROM customers #' AS z; SELECT id FROM customers",
    "SELECT 1 /*!; SELECT REVERSE(bank_card) FROM customers */",
    "SELECT 1 /*M!; SELECT actor, action FROM audit_trail */",
    "SELECT 'a\\'; SELECT REVERSE(bank_card), id FROM customers; SELECT '",
    "SELECT 1; SELECT id, branch_id FROM customers; SELECT REVERSE(bank_card) FROM customers",
    "SELECT 1 #\n; SELECT actor, action FROM audit_trail",
    "SELECT id -- */ ; SELECT CAST(phone AS UNSIGNED) FROM customers; /*\nFROM customers",
]


@pytest.mark.parametrize("sql", MULTI_SMUGGLES)
def test_multi_statement_smuggling(served: dict[str, Any], truth: dict[str, Any], sql: str) -> None:
    with connect(served, client_flag=CLIENT.MULTI_STATEMENTS) as c:
        try:
            got = run(c, sql)
        except pymysql.err.MySQLError as e:
            assert not leaked(truth["secrets"], str(e))
            return
        assert run(c, "SELECT 1") == [(1,)]
    assert not _smuggled(got, truth), (_smuggled(got, truth), got[:3])


def test_multi_statement_write_is_refused(served: dict[str, Any], mariadb: Any) -> None:
    before = direct(mariadb, "SELECT COUNT(*) FROM audit_trail")
    with connect(served, client_flag=CLIENT.MULTI_STATEMENTS) as c:
        for sql in (
            "SELECT 1; INSERT INTO audit_trail (actor, action) VALUES ('rt', 'x')",
            "SELECT 1 --1\n; INSERT INTO audit_trail (actor, action) VALUES ('rt', 'x')",
            "SELECT 1 /*!; INSERT INTO audit_trail (actor, action) VALUES ('rt', 'x') */",
            "SELECT 'a\\'; INSERT INTO audit_trail (actor, action) VALUES ('rt', 'x'); SELECT '",
            "SELECT 1 -- c\n; SELECT 'x\n ; DELETE FROM call_records WHERE 1 = 0 #' AS z; "
            "SELECT id FROM customers",
        ):
            with contextlib.suppress(pymysql.err.MySQLError):
                run(c, sql)
    assert direct(mariadb, "SELECT COUNT(*) FROM audit_trail") == before


LEXING_SETUPS = [
    "SET sql_mode = 'ANSI_QUOTES'",
    "SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'",
    "SET @@sql_mode := CONCAT(@@sql_mode, ',ANSI_QUOTES')",
    "SET sql_mode = (SELECT 'ANSI_QUOTES')",
    "SET @m = 'ANSI_QUOTES'; SET sql_mode = @m",
    "SET NAMES gbk",
    "SET CHARACTER SET gbk",
    "SET character_set_client = 'gbk'",
    "SET @@session.character_set_client = 'sjis'",
    "SET NAMES big5 COLLATE big5_chinese_ci",
]


@pytest.mark.parametrize("setup", LEXING_SETUPS)
def test_settings_that_change_lexing(served: dict[str, Any], truth: dict[str, Any], setup: str) -> None:
    """The session's sql_mode and character set decide how the server reads a statement: a
    change is refused, or followed so the smuggles below mean to maskgate what they mean to the
    server."""
    with connect(served, client_flag=CLIENT.MULTI_STATEMENTS) as c:
        with contextlib.suppress(pymysql.err.MySQLError):
            run(c, setup)
        bad: list[str] = []
        for sql in (
            b'SELECT "bank_card" AS x FROM customers',
            b"SELECT 'x\\' , REVERSE(bank_card), id FROM customers #'",
            b"SELECT 'x\\' AS a, ''' AS b, id, REVERSE(bank_card), branch_id FROM customers #'",
            b"SELECT '\x95\\' , REVERSE(bank_card), id FROM customers #'",
            b"SELECT '\xbf\\' , REVERSE(bank_card), id FROM customers #'",
        ):
            try:
                c.query(sql)
                got = list(c._result.rows or ())
            except (pymysql.err.MySQLError, UnicodeDecodeError):
                continue
            bad += _smuggled(got, truth)
    assert not bad, bad


def test_set_statement_for_is_refused_or_masked(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served) as c:
        for sql in (
            "SET STATEMENT sql_mode = 'ANSI_QUOTES' FOR SELECT \"bank_card\" FROM customers",
            "SET STATEMENT sql_mode = 'NO_BACKSLASH_ESCAPES' FOR "
            "SELECT 'x\\' , REVERSE(bank_card), id FROM customers #'",
        ):
            try:
                got = run(c, sql)
            except pymysql.err.MySQLError:
                continue
            assert not _smuggled(got, truth)


def test_gbk_connection_charset(served: dict[str, Any], truth: dict[str, Any]) -> None:
    """A client that logs in with a GBK collation: refused for a restricted role, or its
    backslash-in-a-multibyte-character smuggle is read as the server reads it."""
    try:
        c = connect(served, charset="gbk")
    except pymysql.err.MySQLError:
        return
    with c:
        try:
            c.query(b"SELECT '\x95\\' , REVERSE(bank_card), id FROM customers #'")
            got = list(c._result.rows or ())
        except (pymysql.err.MySQLError, UnicodeDecodeError):
            return
    assert not _smuggled(got, truth)


@pytest.mark.parametrize(
    ("harmless", "changed"),
    [
        ("SET sql_mode = 'STRICT_TRANS_TABLES'", "SET sql_mode = 'ANSI_QUOTES'"),
        ("SET @@session.sql_mode = 'STRICT_ALL_TABLES'", "SET @@session.sql_mode = 'NO_BACKSLASH_ESCAPES'"),
        ("SET NAMES utf8mb4", "SET NAMES gbk"),
        ("SET character_set_client = 'utf8mb4'", "SET character_set_client = 'sjis'"),
        (
            "SET SESSION sql_mode = 'STRICT_TRANS_TABLES'",
            "SET SESSION sql_mode = 'ANSI_QUOTES,STRICT_TRANS_TABLES'",
        ),
    ],
)
def test_a_cached_decision_is_not_reused_for_a_literal_that_changes_it(
    served: dict[str, Any], harmless: str, changed: str
) -> None:
    """The statement-shape cache (statement_truth item 9): two harmless statements teach a shape,
    the third of the same shape sets what changes lexing."""
    with connect(served) as c:
        for _ in range(2):
            with contextlib.suppress(pymysql.err.MySQLError):
                run(c, harmless)
        assert refused(c, changed)
        (mode,) = run(c, "SELECT @@sql_mode")[0]
        (charset,) = run(c, "SELECT @@character_set_client")[0]
    assert "ANSI_QUOTES" not in mode and "NO_BACKSLASH_ESCAPES" not in mode
    assert charset.startswith("utf8")


# ---------------------------------------------------------------------------------------------
# 10. User variables launder values out of a statement's decision
# ---------------------------------------------------------------------------------------------

VARIABLE_LAUNDERING = [
    ("SELECT phone INTO @p FROM customers LIMIT 1", "SELECT @p, REVERSE(@p)"),
    ("SET @p = (SELECT phone FROM customers LIMIT 1)", "SELECT @p, REVERSE(@p)"),
    ("SELECT @p := phone FROM customers LIMIT 1", "SELECT @p, REVERSE(@p)"),
    ("SET @p := (SELECT id_card FROM customers LIMIT 1)", "SELECT CONCAT('x', @p)"),
    ("SELECT bank_card INTO @p FROM customers WHERE bank_card IS NOT NULL LIMIT 1", "SELECT @p"),
    ("SET @p = (SELECT MAX(bank_card) FROM customers)", "SELECT @p"),
    ("SELECT @p := notes FROM call_records LIMIT 1", f"SELECT {tr('@p')}"),
    ("SELECT @p := GROUP_CONCAT(phone) FROM customers", f"SELECT {tr('@p')}"),
    ("SELECT phone, id_card INTO @p, @q FROM customers LIMIT 1", "SELECT @p, @q"),
    ("SELECT phone FROM customers LIMIT 1 INTO @p", "SELECT @p, REVERSE(@p)"),
    ("SET @p = (SELECT phone FROM customers LIMIT 1)", "SELECT @p LIKE CONCAT(LEFT(@p, 3), '%')"),
    ("SET @p = (SELECT phone FROM customers LIMIT 1)", "SELECT id FROM call_records WHERE caller = @p"),
]


@pytest.mark.parametrize(("setup", "read"), VARIABLE_LAUNDERING)
def test_user_variables_do_not_launder(
    served: dict[str, Any], truth: dict[str, Any], setup: str, read: str
) -> None:
    with connect(served) as c:
        try:
            run(c, setup)
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e), e
            return
        try:
            got = run(c, read)
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e), e
            return
        # A variable of a masked value compared in the open is an oracle too.
        if "LIKE" in read or "WHERE" in read:
            pytest.fail(f"a comparison of a laundered value was served: {got[:3]}")
    assert not leaked(truth["secrets"], got), got[:3]


def test_user_variable_into_execute_using(served: dict[str, Any], truth: dict[str, Any]) -> None:
    """`EXECUTE s USING @p` where s is `SELECT ?`: the parameter comes back as it was set."""
    with connect(served) as c:
        try:
            run(c, "SET @p = (SELECT phone FROM customers LIMIT 1)")
            run(c, "PREPARE echo FROM 'SELECT ?, REVERSE(?)'")
            got = run(c, "EXECUTE echo USING @p, @p")
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e), e
            return
    assert not leaked(truth["secrets"], got)


# ---------------------------------------------------------------------------------------------
# 11. Prepared statements: COM_STMT_* and SQL-level PREPARE / EXECUTE (test_redteam, v2 §5, v5)
# ---------------------------------------------------------------------------------------------


def test_prepared_protocol_masks_and_binds(served: dict[str, Any], truth: dict[str, Any]) -> None:
    conn = connect_binary(served)
    try:
        got = run_binary(conn, "SELECT id, phone FROM customers WHERE id = ?", (truth["target_id"],))
        got += run_binary(conn, "SELECT id_card, UPPER(phone) FROM customers")
        for _ in range(3):
            got += run_binary(conn, "SELECT phone, id_card FROM customers WHERE branch_id = ?", (12,))
    finally:
        conn.close()
    assert got and not leaked(truth["secrets"], got)


def test_prepared_parameter_in_masked_predicate_is_refused(
    served: dict[str, Any], truth: dict[str, Any]
) -> None:
    mc = pytest.importorskip("mysql.connector")
    conn = connect_binary(served)
    try:
        for sql, params in (
            ("SELECT id FROM customers WHERE phone = ?", (truth["phone"],)),
            ("SELECT id FROM customers WHERE phone LIKE ?", ("138%",)),
            ("SELECT ? = phone FROM customers", (truth["phone"],)),
            ("SELECT id FROM customers WHERE SUBSTRING(phone, 4, ?) = '1'", (1,)),
        ):
            with pytest.raises(mc.Error) as exc:
                run_binary(conn, sql, params)
            assert by_maskgate(exc.value), (sql, exc.value)
        assert run_binary(conn, "SELECT 1") == [(1,)]
    finally:
        conn.close()


def test_unknown_statement_id_is_refused(served: dict[str, Any]) -> None:
    """COM_STMT_EXECUTE of an id maskgate never saw prepared: refused, never sent on."""
    with connect(served) as c:
        with pytest.raises(pymysql.err.MySQLError) as exc:
            c._execute_command(COMMAND.COM_STMT_EXECUTE, struct.pack("<IBI", 1, 0, 1))
            c._read_ok_packet() if hasattr(c, "_read_ok_packet") else c._read_packet()
        assert exc.value.args[0] in (1142, 1243), exc.value
        assert run(c, "SELECT 1") == [(1,)]


def test_com_stmt_prepare_without_execute_is_audited(served: dict[str, Any]) -> None:
    marker = f"rtmy_prepared_{time.time_ns()}"
    with connect(served) as c:
        c._execute_command(COMMAND.COM_STMT_PREPARE, f"SELECT id AS {marker} FROM call_records")
        c._read_packet()
        c._sock.close()
    assert wait_for_audit(served, marker), "a statement the server prepared has no audit record"


def test_sql_level_prepare_is_executed_with_its_own_decision(
    served: dict[str, Any], truth: dict[str, Any]
) -> None:
    with connect(served) as c:
        run(c, "PREPARE p FROM 'SELECT phone, id_card FROM customers'")
        got = run(c, "EXECUTE p")
        assert got and not leaked(truth["secrets"], got)
        run(c, "SET @q = 'SELECT phone FROM customers'")
        assert refused(c, "PREPARE p2 FROM @q")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("PREPARE s", "PREPARE S"),
        ("PREPARE s", "PREPARE `s`"),
        ("PREPARE `S`", "PREPARE s"),
        ("PREPARE s", "PREPARE /**/ s"),
    ],
    ids=["case", "backticks", "backticks-case", "comment"],
)
def test_statement_names_fold_as_the_server_folds_them(
    served: dict[str, Any], truth: dict[str, Any], first: str, second: str
) -> None:
    """MySQL's prepared statement names ignore case: `PREPARE S` replaces `s` on the server. If
    maskgate kept two names, `EXECUTE s` would run the phone query under the literal's decision."""
    name = first.split()[-1].strip("`")
    with connect(served) as c:
        run(c, f"{first} FROM 'SELECT ''hello'' AS t'")
        got: list[Any] = []
        try:
            body = f"SELECT {tr('phone')} AS t FROM customers".replace("'", "''")
            run(c, f"{second} FROM '{body}'")
            got = run(c, f"EXECUTE {name}")
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e), e
    texts = {str(r[0]).translate(A_TO_0) for r in got}
    assert not texts & truth["phones"]


def test_refused_prepare_keeps_the_old_statement_and_decision(
    served: dict[str, Any], truth: dict[str, Any]
) -> None:
    """A PREPARE maskgate refuses never reaches the server, which keeps the old statement; the
    next EXECUTE runs that one under its own decision."""
    with connect(served) as c:
        run(c, "PREPARE k FROM 'SELECT phone FROM customers WHERE branch_id = 12'")
        assert refused(c, "PREPARE k FROM 'SELECT bank_card FROM customers'")
        try:
            got = run(c, "EXECUTE k")
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e)
            return
    assert not leaked(truth["secrets"], got)
    assert not {str(r[0]) for r in got} & truth["cards"]


def test_prepared_write_is_refused_through_every_door(served: dict[str, Any], mariadb: Any) -> None:
    mc = pytest.importorskip("mysql.connector")
    before = direct(mariadb, "SELECT COUNT(*), MAX(id) FROM audit_trail")
    write = "INSERT INTO audit_trail (actor, action) VALUES ('rt', 'x')"
    with connect(served, client_flag=CLIENT.MULTI_STATEMENTS) as c:
        for sql in (
            write,
            f"PREPARE w FROM '{write.replace(chr(39), chr(39) * 2)}'",
            "EXECUTE w",
            f"EXECUTE IMMEDIATE '{write.replace(chr(39), chr(39) * 2)}'",
            f"SET @w = '{write.replace(chr(39), chr(39) * 2)}'; PREPARE w2 FROM @w; EXECUTE w2",
            "CREATE TABLE rt_copy AS SELECT id FROM call_records",
            "SELECT id FROM call_records INTO OUTFILE '/tmp/rt_mysql_out'",
        ):
            with contextlib.suppress(pymysql.err.MySQLError):
                run(c, sql)
    conn = connect_binary(served)
    try:
        with contextlib.suppress(mc.Error):
            run_binary(conn, write)
    finally:
        conn.close()
    assert direct(mariadb, "SELECT COUNT(*), MAX(id) FROM audit_trail") == before
    assert direct(mariadb, "SHOW TABLES LIKE 'rt_copy'") == []


# ---------------------------------------------------------------------------------------------
# 12. The default database: COM_INIT_DB and USE (the search_path class)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("db", ["information_schema", "mysql", "performance_schema", "test", "CRM"])
def test_default_database_drift(served: dict[str, Any], truth: dict[str, Any], db: str) -> None:
    """Wherever the default database moves (COM_INIT_DB or USE), qualified reads stay masked and
    filtered, and unqualified names never reach a table maskgate did not judge."""
    with connect(served) as c:
        for move in (lambda: c.select_db(db), lambda: run(c, f"USE `{db}`")):
            with contextlib.suppress(pymysql.err.MySQLError):
                move()
            for sql in (
                "SELECT id, phone FROM crm.customers",
                "SELECT id, phone FROM customers",
                "SELECT actor, action FROM audit_trail",
                "SELECT * FROM user",
            ):
                try:
                    got = run(c, sql)
                except pymysql.err.MySQLError:
                    continue
                assert not _smuggled(got, truth), (db, sql, got[:3])
                assert not any(isinstance(v, str) and "demo database" in v for r in got for v in r)
        with contextlib.suppress(pymysql.err.MySQLError):
            c.select_db("crm")


def test_use_inside_a_multi_statement_string(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served, client_flag=CLIENT.MULTI_STATEMENTS) as c:
        for sql in (
            "USE information_schema; SELECT id, phone FROM crm.customers; USE crm; "
            "SELECT id, phone FROM customers",
            "USE mysql; SELECT * FROM user; USE crm",
            "USE crm; SELECT actor, action FROM audit_trail",
        ):
            try:
                got = run(c, sql)
            except pymysql.err.MySQLError:
                with contextlib.suppress(pymysql.err.MySQLError):
                    c.select_db("crm")
                continue
            assert not _smuggled(got, truth), (sql, got[:3])
            assert len(got) <= 2 * VENDOR_MAX_ROWS


def test_database_name_never_redirects_the_schema_loader(served: dict[str, Any]) -> None:
    """The database a client names (handshake or COM_INIT_DB) is a name, never part of a URL or
    DSN: nothing connects to the address smuggled in it."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(4)
    port = srv.getsockname()[1]
    evil = f"crm?host=127.0.0.1&port={port}"
    with contextlib.suppress(pymysql.err.MySQLError):
        connect(served, database=evil).close()
    with connect(served) as c, contextlib.suppress(pymysql.err.MySQLError):
        c.select_db(f"crm@127.0.0.1:{port}/crm")
    with contextlib.suppress(pymysql.err.MySQLError):
        connect(served, database=f"x:y@127.0.0.1:{port}/crm").close()
    accepted = False
    try:
        conn, _ = srv.accept()
        conn.close()
        accepted = True
    except OSError:
        pass
    finally:
        srv.close()
    assert not accepted, "maskgate connected to an address named in a database name"


# ---------------------------------------------------------------------------------------------
# 13. Identity: roles, COM_CHANGE_USER, COM_RESET_CONNECTION (v3 SET ROLE / RESET ROLE)
# ---------------------------------------------------------------------------------------------

ROLE_ESCAPES = [
    "SET ROLE NONE",
    "SET ROLE DEFAULT",
    "SET ROLE crm_vendor",
    "SET ROLE NONE; SELECT 1",
    "SELECT 1; SET ROLE NONE",
    "SELECT 1 /*!; SET ROLE NONE */",
    "SELECT 1 --1\n; SET ROLE NONE",
    "EXECUTE IMMEDIATE 'SET ROLE NONE'",
    "PREPARE r FROM 'SET ROLE NONE'; EXECUTE r",
    "SET STATEMENT max_statement_time = 10 FOR SET ROLE NONE",
    "BEGIN NOT ATOMIC SET ROLE NONE; END",
    "SET DEFAULT ROLE NONE",
]


# Who the desk's session is upstream: crm_desk's own account (the harness logs it in as itself),
# or the service account with the crm_desk role set.
WHO_UPSTREAM = "SELECT COALESCE(CURRENT_ROLE(), SUBSTRING_INDEX(CURRENT_USER(), '@', 1))"


@pytest.mark.parametrize("sql", ROLE_ESCAPES)
def test_desk_stays_crm_desk(served: dict[str, Any], sql: str) -> None:
    with connect(served, DESK, client_flag=CLIENT.MULTI_STATEMENTS) as c:
        with contextlib.suppress(pymysql.err.MySQLError):
            run(c, sql)
        try:
            role = run(c, WHO_UPSTREAM)
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e)
            role = None
        if role is not None:
            assert role == [("crm_desk",)], role
        # What the role would have opened: the service account may read audit_trail.
        assert refused(c, "SELECT actor FROM audit_trail")


def test_reset_connection_keeps_the_role_and_the_masks(served: dict[str, Any], truth: dict[str, Any]) -> None:
    mc = pytest.importorskip("mysql.connector")
    conn = connect_binary(served, DESK)
    try:
        with contextlib.suppress(mc.Error):
            conn.cmd_reset_connection()
        cur = conn.cursor()
        cur.execute("SELECT phone, id_card FROM customers")
        got = cur.fetchall()
        try:
            cur.execute(WHO_UPSTREAM)
            role = [tuple(r) for r in cur.fetchall()]
        except mc.Error as e:
            assert by_maskgate(e)
            role = [("crm_desk",)]
    finally:
        conn.close()
    assert role == [("crm_desk",)], role
    assert got and not leaked(truth["secrets"], got)


def test_change_user_is_refused(served: dict[str, Any], truth: dict[str, Any]) -> None:
    mc = pytest.importorskip("mysql.connector")
    conn = connect_binary(served, VENDOR)
    try:
        with pytest.raises(mc.Error):
            conn.cmd_change_user(username=DBA[0], password=DBA[1], database="crm")
    finally:
        with contextlib.suppress(Exception):
            conn.close()


# ---------------------------------------------------------------------------------------------
# 14. Derived values are one constant (test_concealed): digit chains, NULL tricks, types
# ---------------------------------------------------------------------------------------------


def digit_chain(k: int, column: str = "phone") -> str:
    """One column whose length depends on the digit at position k: digits 0-4 vanish, 5-9 become
    one 'x'."""
    expr = f"SUBSTRING({column}, {k}, 1)"
    for d in range(10):
        expr = f"REPLACE({expr}, '{d}', '{'' if d < 5 else 'x'}')"
    return expr


@pytest.mark.parametrize("mode", ["text", "binary"])
@pytest.mark.parametrize("who", [VENDOR, PROBER], ids=["vendor", "prober"])
def test_digit_position_chains_return_one_constant(
    served: dict[str, Any], mode: str, who: tuple[str, str]
) -> None:
    columns = ", ".join(f"{digit_chain(k)} AS d{k}" for k in range(1, 12))
    sql = f"SELECT id, {columns} FROM customers ORDER BY id"
    if mode == "text":
        with connect(served, who) as c:
            got = run(c, sql)
    else:
        conn = connect_binary(served, who)
        try:
            got = run_binary(conn, sql)
        finally:
            conn.close()
    assert got
    assert len({v for r in got for v in r[1:]}) == 1, {v for r in got for v in r[1:]}


NULL_TRICKS = [
    "NULLIF(SUBSTRING(phone, 4, 1), '8')",
    "CASE WHEN SUBSTRING(phone, 4, 1) = '8' THEN NULL ELSE 'x' END",
    "IF(SUBSTRING(phone, 4, 1) = '8', NULL, 1)",
    "NULLIF(LENGTH(phone) - 11 + ASCII(SUBSTRING(phone, 4, 1)), 56)",
    "JSON_EXTRACT('[0, 1, 2, 3, 4]', CONCAT('$[', SUBSTRING(phone, 4, 1), ']'))",
    "ELT(SUBSTRING(phone, 4, 1), 'a', 'b', 'c')",
    "CAST(NULLIF(SUBSTRING(id_card, 7, 1), '1') AS UNSIGNED)",
    "1 / (SUBSTRING(phone, 4, 1) - 8)",
    "STR_TO_DATE(SUBSTRING(id_card, 7, 8), '%Y%m%d') > '1980-01-01'",
]


@pytest.mark.parametrize("expr", NULL_TRICKS)
@pytest.mark.parametrize("mode", ["text", "binary"])
def test_null_tricks_return_one_constant(served: dict[str, Any], mariadb: Any, expr: str, mode: str) -> None:
    sql = f"SELECT {expr} FROM customers WHERE branch_id = 12 ORDER BY id"
    try:
        if mode == "text":
            with connect(served, PROBER) as c:
                values = [r[0] for r in run(c, sql)]
        else:
            conn = connect_binary(served, PROBER)
            try:
                values = [r[0] for r in run_binary(conn, sql)]
            finally:
                conn.close()
    except Exception as e:
        assert by_maskgate(e), e
        return
    real = [r[0] for r in direct(mariadb, sql)]
    assert len(set(real)) > 1, "the expression tells rows apart straight from the database"
    assert len(values) == len(real)
    assert len(set(values)) == 1 and None not in values, sorted(set(map(repr, values)))[:5]


# ---------------------------------------------------------------------------------------------
# 15. service_desk: equality lookups, IN-list bit oracles, candidates written and joined
#     (v4 §1, v5, v6, v7)
# ---------------------------------------------------------------------------------------------


def test_desk_in_list_bit_oracle(served: dict[str, Any], truth: dict[str, Any]) -> None:
    cid, phone = next((r[0], r[1]) for r in truth["customers"] if len(r[1]) == 11 and r[1].isdigit())
    head, tail = phone[:3], phone[-4:]
    subs = []
    for bit in range(14):
        cands = ",".join(f"'{head}{g:04d}{tail}'" for g in range(10_000) if g >> bit & 1)
        subs.append(f"(SELECT COUNT(*) FROM customers WHERE id = {cid} AND phone IN ({cands}))")
    try:
        with connect(served, DESK) as c:
            bits = run(c, "SELECT " + ", ".join(subs))[0]
    except pymysql.err.MySQLError:
        return
    middle = sum(int(b) << k for k, b in enumerate(bits))
    assert f"{head}{middle:04d}{tail}" != phone, "the desk read a full mobile number in one statement"


def test_desk_equality_candidates_in_one_multi_statement_string(
    served: dict[str, Any], truth: dict[str, Any]
) -> None:
    with connect(served, DESK, client_flag=CLIENT.MULTI_STATEMENTS) as c:
        cid, masked = run(c, "SELECT id, phone FROM customers ORDER BY id LIMIT 1")[0]
        pre, suf = masked[:3], masked[-4:]
        candidates = [f"{pre}{i:04d}{suf}" for i in range(10000)]
        blocks = [candidates[j : j + 10] for j in range(0, 10000, 10)]
        sql = " ".join(
            f"SELECT {k} FROM customers WHERE id = {cid} AND phone IN ({','.join(repr(v) for v in g)});"
            for k, g in enumerate(blocks)
        )
        try:
            hits = [r[0] for r in run(c, sql)]
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e), e
            return
    found = {v for k in hits for v in blocks[k]}
    assert not found & truth["phones"] or len(found) > 10


def test_desk_lookup_budget(served: dict[str, Any], mariadb: Any) -> None:
    real = direct(mariadb, "SELECT phone FROM customers WHERE id = 27")[0][0]
    tested = 0
    found = None
    with connect(served, DESK) as c:
        masked = run(c, "SELECT phone FROM customers WHERE id = 27")[0][0]
        head, tail = masked[:3], masked[-4:]
        candidates = [f"{head}{i:04d}{tail}" for i in range(10_000)]
        with pytest.raises(pymysql.err.MySQLError) as exc:
            for k in range(0, len(candidates), 10):
                batch = candidates[k : k + 10]
                inlist = ",".join(f"'{x}'" for x in batch)
                hit = run(c, f"SELECT 1 FROM customers WHERE id = 27 AND phone IN ({inlist})")
                tested += len(batch)
                if hit:
                    found = next(x for x in batch if x == real)
        assert by_maskgate(exc.value)
        assert run(c, "SELECT 1") == [(1,)]
    assert tested <= 300
    assert found is None or candidates.index(real) < 300


def test_desk_searches_mobile_by_writing_candidates_and_joining(served: dict[str, Any], mariadb: Any) -> None:
    """An equality between two mobile columns costs no lookup: in a transaction, set the other
    customers' phones to candidates computed from their ids (no literal compared), self-join,
    roll back."""
    real = direct(mariadb, "SELECT phone FROM customers WHERE id = 27")[0][0]
    others = [r[0] for r in direct(mariadb, "SELECT id FROM customers WHERE id <> 27 ORDER BY id")]
    found = None
    with connect(served, DESK) as c:
        masked = run(c, "SELECT phone FROM customers WHERE id = 27")[0][0]
        head, tail = masked[:3], masked[-4:]
        for base in range(0, 10_000, len(others)):
            try:
                c.begin()
                run(
                    c,
                    f"UPDATE customers c JOIN (SELECT id AS rid, ROW_NUMBER() OVER (ORDER BY id) - 1 AS n "
                    f"FROM customers WHERE id <> 27) r ON c.id = r.rid "
                    f"SET c.phone = CONCAT('{head}', LPAD(r.n + {base}, 4, '0'), '{tail}')",
                )
                hit = run(
                    c,
                    "SELECT b.id FROM customers a JOIN customers b ON a.phone = b.phone "
                    "WHERE a.id = 27 AND b.id <> 27",
                )
            except pymysql.err.MySQLError:
                c.rollback()
                break
            c.rollback()
            if hit:
                found = f"{head}{base + others.index(int(hit[0][0])):04d}{tail}"
                break
    assert direct(mariadb, "SELECT phone FROM customers WHERE id = 27")[0][0] == real
    assert found != real, f"found customer 27's mobile ({found}) without spending lookups"


def test_desk_update_launders_a_masked_value_into_a_clear_column(
    served: dict[str, Any], mariadb: Any, truth: dict[str, Any]
) -> None:
    """email is clear to the desk: copying a (transformed) phone or id card into it would read
    it back in full."""
    target = 9
    with connect(served, DESK) as c:
        for sql in (
            f"UPDATE customers SET email = {tr('id_card')} WHERE id = {target}",
            f"UPDATE customers SET email = REVERSE(phone) WHERE id = {target}",
            f"UPDATE customers a JOIN customers b ON b.id = {target} SET a.email = {tr('b.bank_card')} "
            f"WHERE a.id = {target}",
            f"UPDATE customers SET address = CONCAT('x', phone) WHERE id = {target}",
        ):
            c.begin()
            with contextlib.suppress(pymysql.err.MySQLError):
                run(c, sql)
            try:
                got = run(c, f"SELECT email, address FROM customers WHERE id = {target}")
            finally:
                c.rollback()
            assert not leaked(truth["secrets"], got), (sql, got)


def test_desk_bank_card_is_masked(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served, DESK) as c:
        got = run(c, f"SELECT bank_card, {tr('bank_card')}, REVERSE(bank_card) FROM customers")
    assert got and not leaked(truth["cards"], got)


# ---------------------------------------------------------------------------------------------
# 16. Unknown result shapes: * over sources the analysis cannot list (v3 §5)
# ---------------------------------------------------------------------------------------------

UNKNOWN_SHAPE = [
    "JSON_TABLE('[1]', '$[*]' COLUMNS (x INT PATH '$')) j",
    "information_schema.COLLATIONS q WHERE q.ID = 1",
    "(VALUES (1, 2)) v",
    "information_schema.ENGINES e WHERE e.ENGINE = 'InnoDB'",
]


@pytest.mark.parametrize("other", UNKNOWN_SHAPE)
@pytest.mark.parametrize("order", ["after", "before"])
def test_star_over_a_source_of_unknown_shape(
    served: dict[str, Any], truth: dict[str, Any], other: str, order: str
) -> None:
    inner = f"(SELECT id, name, {tr('phone')} AS p, {tr('id_card')} AS i FROM customers) s"
    where = ""
    if " WHERE " in other:
        other, where = other.split(" WHERE ")
        where = f" WHERE {where}"
    sql = (
        f"SELECT * FROM {inner}, {other}{where}"
        if order == "after"
        else f"SELECT * FROM {other}, {inner}{where}"
    )
    with connect(served) as c:
        try:
            got = run(c, sql)
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e) or e.args[0] in (1064, 1248), e
            return
    flat = [v for r in got for v in r]
    names = {v for v in flat if isinstance(v, str)} & truth["names"]
    numbers = leaked(truth["secrets"], [str(v).translate(A_TO_0) for v in flat])
    assert not names and not numbers, (sorted(names)[:3], sorted(numbers)[:3])


# ---------------------------------------------------------------------------------------------
# 17. Audit: no full numbers, non-UTF-8 bytes, writes then disconnect (test_redteam, v2 §6)
# ---------------------------------------------------------------------------------------------


def test_audit_log_holds_no_full_numbers(served: dict[str, Any], truth: dict[str, Any]) -> None:
    phone, idc, card = truth["phone"], truth["id_card"], truth["bank_card"]
    with connect(served, DESK) as c:
        with contextlib.suppress(pymysql.err.MySQLError):
            run(c, f"SELECT id FROM customers WHERE phone = '{phone}'")
        with contextlib.suppress(pymysql.err.MySQLError):
            run(c, f"SELECT id FROM customers WHERE id_card = '{idc}' OR bank_card = '{card}'")
    with connect(served) as c, contextlib.suppress(pymysql.err.MySQLError):
        run(c, f"SELECT id FROM customers WHERE phone = '{phone}'")
    text = audit_text(served)
    assert text
    for s in (phone, idc, card):
        assert s not in text


def test_non_utf8_sql_is_refused_and_audited(served: dict[str, Any]) -> None:
    """Bytes that are not valid in the connection's character set (the GBK trick's raw material)
    are refused by maskgate, and the refusal is recorded."""
    before = audit_text(served).count("undecodable")
    marker = f"rtmy{time.time_ns()}"
    with connect(served) as c:
        with pytest.raises(pymysql.err.MySQLError) as exc:
            c.query(f"SELECT id, phone, '{marker}' FROM customers /* ".encode() + b"\x95\x40 */")
        assert by_maskgate(exc.value), exc.value
        assert run(c, "SELECT 1") == [(1,)]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and audit_text(served).count("undecodable") <= before:
        time.sleep(0.05)
    assert audit_text(served).count("undecodable") > before or marker in audit_text(served)


def test_write_then_disconnect_is_audited(served: dict[str, Any], mariadb: Any) -> None:
    tag = "rtmark" + "".join(chr(ord("a") + int(d)) for d in str(time.time_ns()))
    target = 7
    c = connect(served, DESK)
    c._execute_command(
        COMMAND.COM_QUERY,
        f"UPDATE customers SET address = '{tag}' WHERE id = {target} AND '{tag}' <> ''",
    )
    c._sock.close()
    changed = False
    deadline = time.time() + 5
    while time.time() < deadline and not changed:
        changed = direct(mariadb, f"SELECT address FROM customers WHERE id = {target}")[0][0] == tag
        time.sleep(0.05)
    probe = f"probe{tag}"
    with connect(served, DESK) as d:
        run(d, f"SELECT '{probe}'")
    assert wait_for_audit(served, probe)
    assert not (changed and tag not in audit_text(served)), "unaudited write"


# ---------------------------------------------------------------------------------------------
# 18. Other sessions' statements (v2 §4) and denial of service (v4 §4, §5)
# ---------------------------------------------------------------------------------------------


def test_other_sessions_sql_through_processlist(served: dict[str, Any], truth: dict[str, Any]) -> None:
    phone, idc = truth["phone"], truth["id_card"]
    marker = f"rt{time.time_ns()}"

    def dba_busy() -> None:
        with connect(served, DBA) as d, contextlib.suppress(pymysql.err.MySQLError):
            run(d, f"SELECT SLEEP(3), '{marker}' FROM customers WHERE phone = '{phone}' OR id_card = '{idc}'")

    t = threading.Thread(target=dba_busy, daemon=True)
    t.start()
    time.sleep(1)
    got: list[Any] = []
    with connect(served) as c:
        for sql in (
            f"SELECT {tr('INFO')} FROM information_schema.PROCESSLIST",
            "SHOW FULL PROCESSLIST",
            "SHOW PROCESSLIST",
        ):
            with contextlib.suppress(pymysql.err.MySQLError):
                got += run(c, sql)
    t.join(10)
    assert not leaked({phone, idc}, got), got[:3]


def test_one_heavy_statement_does_not_stall_other_sessions(served: dict[str, Any]) -> None:
    n = 400
    sql = (
        "SELECT " + "CASE WHEN id = 1 THEN " * n + "1" + " END" * n + " AS rt_stall FROM call_records LIMIT 1"
    )
    with connect(served, DESK) as victim:
        run(victim, "SELECT 1")

        def attack() -> None:
            with contextlib.suppress(pymysql.err.MySQLError), connect(served) as c:
                run(c, sql)

        t = threading.Thread(target=attack, daemon=True)
        t.start()
        time.sleep(0.5)
        started = time.monotonic()
        run(victim, "SELECT 1")
        waited = time.monotonic() - started
        t.join(120)
    assert waited < 3.0, f"another session's SELECT 1 waited {waited:.1f}s"


def test_a_value_full_of_numbers_does_not_stall_other_sessions(served: dict[str, Any]) -> None:
    sql = "SELECT REPEAT('13812345678 ', 10000) AS rt_numbers"
    with connect(served, DESK) as victim:
        run(victim, "SELECT 1")

        def attack() -> None:
            with contextlib.suppress(pymysql.err.MySQLError), connect(served) as c:
                run(c, sql)

        t = threading.Thread(target=attack, daemon=True)
        t.start()
        time.sleep(0.3)
        started = time.monotonic()
        run(victim, "SELECT 1")
        waited = time.monotonic() - started
        t.join(120)
    assert waited < 3.0, f"another session's SELECT 1 waited {waited:.1f}s"


# ---------------------------------------------------------------------------------------------
# 19. service_desk writes as oracles: affected rows, ORDER BY … LIMIT, variables in UPDATE
# ---------------------------------------------------------------------------------------------

DESK_WRITE_ORACLES = [
    "UPDATE customers SET email = email WHERE id = 27 AND SUBSTRING(phone, 4, 1) = '{d}'",
    "UPDATE customers SET email = email WHERE id = 27 AND phone LIKE '___{d}%'",
    "UPDATE customers SET address = IF(SUBSTRING(phone, 4, 1) = '{d}', 'yes', 'no') WHERE id = 27",
    "UPDATE customers SET address = CASE SUBSTRING(phone, 4, 1) WHEN '{d}' THEN 'yes' END WHERE id = 27",
    "UPDATE customers SET email = CONCAT(email, '') WHERE id IN (27, 28) ORDER BY phone LIMIT 1",
    "UPDATE customers SET email = email WHERE id = 27 AND (@p := phone) IS NOT NULL",
    "UPDATE customers SET phone = (@p := phone) WHERE id = 27",
    "UPDATE customers SET email = email WHERE id = 27 AND phone REGEXP '^...{d}'",
    "UPDATE customers SET address = LEFT(REVERSE(phone), 4) WHERE id = 27",
    "UPDATE customers SET email = email WHERE id = 27 AND INSTR(phone, '{d}') = 4",
]


@pytest.mark.parametrize("template", DESK_WRITE_ORACLES)
def test_desk_write_is_no_oracle(served: dict[str, Any], mariadb: Any, template: str) -> None:
    """An UPDATE tells how many rows it matched (the OK packet's affected rows and its info
    "Rows matched: n"), writes what a condition on a masked value computed into a clear column,
    or leaves a value in a user variable: each would read the digit the mask hides."""
    phone = direct(mariadb, "SELECT phone FROM customers WHERE id = 27")[0][0]
    digit = phone[3]
    seen = []
    with connect(served, DESK, client_flag=CLIENT.FOUND_ROWS) as c:
        for d in (digit, str((int(digit) + 1) % 10)):
            c.begin()
            try:
                with c.cursor() as cur:
                    affected = cur.execute(template.format(d=d))
                info = c._result.message if c._result else b""
                after = run(c, "SELECT email, address FROM customers WHERE id IN (27, 28) ORDER BY id")
                var = run(c, "SELECT @p")
            except pymysql.err.MySQLError as e:
                assert by_maskgate(e), e
                return
            finally:
                c.rollback()
            seen.append((affected, info, after, var))
    assert seen[0] == seen[1], f"the desk's UPDATE answers differently for the right digit: {seen}"
    assert not leaked({phone}, seen)
    assert direct(mariadb, "SELECT phone FROM customers WHERE id = 27")[0][0] == phone


def test_prepared_body_into_a_variable(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served) as c:
        for body in (
            "SELECT phone INTO @p FROM customers LIMIT 1",
            "SELECT @p := phone FROM customers LIMIT 1",
            "SET @p = (SELECT phone FROM customers LIMIT 1)",
        ):
            try:
                run(c, f"PREPARE v FROM '{body}'")
                run(c, "EXECUTE v")
            except pymysql.err.MySQLError as e:
                assert by_maskgate(e), e
                continue
            got = run(c, "SELECT @p, REVERSE(@p)")
            assert not leaked(truth["secrets"], got), (body, got)


# ---------------------------------------------------------------------------------------------
# 20. Server-side cursors: COM_STMT_EXECUTE with a cursor, rows fetched in chunks
#     (test_redteam: the row limit across Execute calls of one portal)
# ---------------------------------------------------------------------------------------------


def _read_until_eof(c: Any) -> list[Any]:
    """Packets up to the next EOF (kept), raising on ERR."""
    out = []
    while True:
        pkt = c._read_packet()
        out.append(pkt)
        if pkt.is_eof_packet():
            return out


def _cursor_rows(c: Any, sql: str, chunk: int, fetches: int) -> tuple[int, bytes]:
    """Prepare `sql`, execute it with a read-only cursor, fetch `chunk` rows `fetches` times:
    the number of rows received and their raw bytes."""
    c._execute_command(COMMAND.COM_STMT_PREPARE, sql)
    ok = c._read_packet()
    stmt_id, ncols, nparams = struct.unpack("<xIHH", ok.get_all_data()[:9])
    for _ in range(int(nparams > 0) + int(ncols > 0)):
        _read_until_eof(c)
    c._execute_command(COMMAND.COM_STMT_EXECUTE, struct.pack("<IBI", stmt_id, 1, 1))
    first = c._read_packet()
    if first.is_ok_packet():
        return 0, b""
    _read_until_eof(c)  # column definitions; the cursor is open
    rows, data = 0, b""
    for _ in range(fetches):
        c._execute_command(COMMAND.COM_STMT_FETCH, struct.pack("<II", stmt_id, chunk))
        for pkt in _read_until_eof(c):
            if not pkt.is_eof_packet():
                rows += 1
                data += pkt.get_all_data()
        if pkt.get_all_data()[3:5] and struct.unpack("<H", pkt.get_all_data()[3:5])[0] & 0x80:
            break  # SERVER_STATUS_LAST_ROW_SENT
    return rows, data


def test_cursor_fetches_hold_the_row_limit_and_masks(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served) as c:
        try:
            rows, _ = _cursor_rows(c, "SELECT id FROM call_records", 150, 10)
            masked_rows, data = _cursor_rows(
                c,
                "SELECT phone, id_card, notes FROM customers c JOIN call_records r ON r.customer_id = c.id",
                7,
                50,
            )
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e), e
            return
    assert rows <= VENDOR_MAX_ROWS
    assert masked_rows <= VENDOR_MAX_ROWS
    assert not leaked(truth["secrets"], data.decode("utf-8", "replace"))


# ---------------------------------------------------------------------------------------------
# 21. Other commands: COM_FIELD_LIST, deprecated and replication commands
# ---------------------------------------------------------------------------------------------


def test_field_list_of_a_table_the_desk_may_not_read(served: dict[str, Any]) -> None:
    with connect(served, DESK) as c:
        c._execute_command(COMMAND.COM_FIELD_LIST, b"audit_trail\0")
        try:
            packets = _read_until_eof(c)
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e) or e.args[0] in (1142, 1146), e
            return
        assert len(packets) <= 1, f"{len(packets) - 1} column definitions of audit_trail"


@pytest.mark.parametrize(
    "command",
    [
        (0x0A, b""),  # COM_PROCESS_INFO: the process list
        (0x0C, struct.pack("<I", 1)),  # COM_PROCESS_KILL
        (0x0D, b""),  # COM_DEBUG
        (0x12, struct.pack("<IHI", 4, 0, 1)),  # COM_BINLOG_DUMP: row events
        (0x13, b"\x03crm\x0baudit_trail"),  # COM_TABLE_DUMP
        (0x08, b""),  # COM_SHUTDOWN
        (0x07, b"\x00"),  # COM_REFRESH
    ],
    ids=["process-info", "process-kill", "debug", "binlog-dump", "table-dump", "shutdown", "refresh"],
)
def test_other_commands_are_refused(served: dict[str, Any], command: tuple[int, bytes]) -> None:
    cmd, arg = command
    with connect(served) as c:
        c._execute_command(cmd, arg)
        with pytest.raises(pymysql.err.MySQLError):
            pkt = c._read_packet()
            pytest.fail(f"command {cmd:#x} answered: {pkt.get_all_data()[:40]!r}")
    with connect(served) as c:  # and the listener goes on
        assert run(c, "SELECT 1") == [(1,)]


def _update_order_oracle(c: Any, target: int, other: int, candidate: str) -> bool:
    """Whether the target's phone sorts no later than `candidate`: written into another customer's phone
    (the desk may update phones), then `UPDATE … ORDER BY phone LIMIT 1` marks the first of the
    two in a clear column. Rolled back: nothing stays written."""
    c.begin()
    try:
        run(c, f"UPDATE customers SET phone = '{candidate}' WHERE id = {other}")
        run(
            c,
            "UPDATE customers SET email = CONCAT(email, '.') "
            f"WHERE id IN ({target}, {other}) ORDER BY phone LIMIT 1",
        )
        emails = dict(run(c, f"SELECT id, email FROM customers WHERE id IN ({target}, {other})"))
    finally:
        c.rollback()
    return str(emails[target]).endswith(".")


def test_desk_update_order_by_limit_is_no_sort_oracle(served: dict[str, Any], mariadb: Any) -> None:
    real = direct(mariadb, "SELECT phone FROM customers WHERE id = 27")[0][0]
    found = None
    with connect(served, DESK) as c:
        masked = run(c, "SELECT phone FROM customers WHERE id = 27")[0][0]
        head, tail = masked[:3], masked[-4:]
        lo, hi = 0, 9999  # the hidden middle lies in [lo, hi]
        try:
            while lo < hi:
                mid = (lo + hi) // 2
                # Equal phones keep the primary key's order: 27 comes first on a tie.
                if _update_order_oracle(c, 27, 28, f"{head}{mid:04d}{tail}"):
                    hi = mid  # the target's phone <= the candidate
                else:
                    lo = mid + 1
            found = f"{head}{lo:04d}{tail}"
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e), e
    assert direct(mariadb, "SELECT phone FROM customers WHERE id = 27")[0][0] == real
    assert found != real, f"the desk sorted its way to customer 27's mobile ({found})"


@pytest.mark.parametrize(
    "order",
    [
        "phone",
        "id_card",
        "bank_card",
        "SUBSTRING(phone, 4, 1) DESC",
        "REVERSE(id_card)",
    ],
)
def test_desk_update_order_by_a_masked_value_is_refused(served: dict[str, Any], order: str) -> None:
    with connect(served, DESK) as c:
        c.begin()
        try:
            assert refused(
                c,
                "UPDATE customers SET email = CONCAT(email, '.') WHERE id IN (27, 28) "
                f"ORDER BY {order} LIMIT 1",
            )
        finally:
            c.rollback()


# ---------------------------------------------------------------------------------------------
# 22. Result character sets the masker must read (the client_encoding class, for results)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setup",
    [
        "SET character_set_results = 'utf16'",
        "SET SESSION character_set_results = utf32",
        "SET character_set_results = ucs2",
        "SET character_set_results = NULL",
        "SET character_set_results = binary",
        "SET character_set_results = gbk",
        "SET character_set_connection = utf16",
        "SET collation_connection = utf16_general_ci",
    ],
)
def test_result_character_sets_stay_masked(served: dict[str, Any], truth: dict[str, Any], setup: str) -> None:
    """character_set_results decides the encoding of the values the server sends: the masker and
    the free-text detectors must read them in it, or refuse the result."""
    got: list[Any] = []
    with connect(served, use_unicode=False) as c:  # raw bytes: read below in every encoding
        with contextlib.suppress(pymysql.err.MySQLError):
            run(c, setup)
        for sql in (
            "SELECT phone, id_card, name FROM customers",
            "SELECT notes, caller FROM call_records",
            "SELECT CONCAT(phone, ''), UPPER(id_card) FROM customers",
        ):
            try:
                got += run(c, sql)
            except pymysql.err.MySQLError as e:
                assert by_maskgate(e), e
    views = [
        [v.decode(enc, "replace") for v in r if isinstance(v, bytes)]
        for enc in ("utf-8", "utf-16-be", "utf-32-be", "gbk")
        for r in got
    ]
    assert not leaked(truth["secrets"], views)


# ---------------------------------------------------------------------------------------------
# 23. The lookup budget counts equalities in UPDATE too (v6, through the write door)
# ---------------------------------------------------------------------------------------------


def test_desk_lookup_budget_counts_update_equalities(served: dict[str, Any], mariadb: Any) -> None:
    """`UPDATE … WHERE id = 27 AND phone IN (10 candidates)` answers with the rows it matched
    (CLIENT_FOUND_ROWS): a lookup like the SELECT's, and counted the same."""
    real = direct(mariadb, "SELECT phone FROM customers WHERE id = 27")[0][0]
    tested = 0
    found = None
    with connect(served, DESK2, client_flag=CLIENT.FOUND_ROWS) as c:
        masked = run(c, "SELECT phone FROM customers WHERE id = 27")[0][0]
        head, tail = masked[:3], masked[-4:]
        candidates = [f"{head}{i:04d}{tail}" for i in range(10_000)]
        try:
            for k in range(0, len(candidates), 10):
                batch = candidates[k : k + 10]
                inlist = ",".join(f"'{x}'" for x in batch)
                with c.cursor() as cur:
                    hit = cur.execute(
                        f"UPDATE customers SET email = email WHERE id = 27 AND phone IN ({inlist})"
                    )
                tested += len(batch)
                if hit:
                    found = next(x for x in batch if x == real)
                    break
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e), e
        assert run(c, "SELECT 1") == [(1,)]
    assert tested <= 300, f"{tested} candidates tested through UPDATE"
    assert found is None or candidates.index(real) < 300


def _changed_by_writing(c: Any, cid: int, column: str, value: str) -> tuple[int, bytes]:
    """Write `value` into the row's `column` and roll back: MySQL's OK packet counts the rows
    changed (without CLIENT_FOUND_ROWS) and its info says "Rows matched: 1  Changed: n"."""
    c.begin()
    try:
        with c.cursor() as cur:
            affected = cur.execute(f"UPDATE customers SET {column} = '{value}' WHERE id = {cid}")
        info = c._result.message if c._result else b""
    finally:
        c.rollback()
    return affected, info


@pytest.mark.parametrize("column", ["phone", "id_card", "bank_card"])
def test_desk_changed_rows_count_is_no_equality_oracle(
    served: dict[str, Any], mariadb: Any, column: str
) -> None:
    real = direct(mariadb, f"SELECT {column} FROM customers WHERE id = 27")[0][0]
    wrong = real[:-1] + ("1" if real[-1] == "0" else "0")
    with connect(served, DESK2) as c:
        try:
            right_answer = _changed_by_writing(c, 27, column, real)
            wrong_answer = _changed_by_writing(c, 27, column, wrong)
        except pymysql.err.MySQLError as e:
            # Refused by maskgate, or by the database (crm_desk may update phone, email, address)
            assert by_maskgate(e) or e.args[0] in (1142, 1143), e
            return
    assert direct(mariadb, f"SELECT {column} FROM customers WHERE id = 27")[0][0] == real
    assert right_answer == wrong_answer, (
        f"the right number answers {right_answer}, a wrong one {wrong_answer}"
    )


@pytest.mark.parametrize("column", ["id_card", "bank_card", "name"])
def test_desk_writes_only_what_crm_desk_may(served: dict[str, Any], column: str) -> None:
    """The database backs maskgate up: desk_li runs upstream as crm_desk's own account (a MariaDB
    role taken with SET ROLE would add its rights to the service account's), whose column grant
    allows phone, email and address only."""
    with connect(served, DESK) as c:
        c.begin()
        try:
            with pytest.raises(pymysql.err.MySQLError) as exc:
                run(c, f"UPDATE customers SET {column} = 'x' WHERE id = 27")
        finally:
            c.rollback()
    assert by_maskgate(exc.value) or exc.value.args[0] in (1142, 1143), exc.value


# ---------------------------------------------------------------------------------------------
# 24. The lookup budget and prepared statements: one PREPARE, many executions
# ---------------------------------------------------------------------------------------------


def test_desk_lookup_budget_counts_each_protocol_execution(served: dict[str, Any], mariadb: Any) -> None:
    """COM_STMT_PREPARE of `… phone IN (?, …, ?)` once, COM_STMT_EXECUTE with new candidates each
    time: every execution is a lookup of 10 values."""
    mc = pytest.importorskip("mysql.connector")
    real = direct(mariadb, "SELECT phone FROM customers WHERE id = 27")[0][0]
    tested = 0
    found = None
    conn = connect_binary(served, DESK3)
    try:
        masked = run_binary(conn, "SELECT phone FROM customers WHERE id = 27")[0][0]
        head, tail = masked[:3], masked[-4:]
        candidates = [f"{head}{i:04d}{tail}" for i in range(10_000)]
        cur = conn.cursor(prepared=True)
        sql = "SELECT 1 FROM customers WHERE id = 27 AND phone IN (" + ", ".join(["?"] * 10) + ")"
        try:
            for k in range(0, len(candidates), 10):
                batch = candidates[k : k + 10]
                cur.execute(sql, tuple(batch))
                hit = cur.fetchall()
                tested += len(batch)
                if hit:
                    found = next(x for x in batch if x == real)
                    break
        except mc.Error as e:
            assert by_maskgate(e), e
    finally:
        conn.close()
    assert tested <= 300, f"{tested} candidates tested through one prepared statement"
    assert found is None or candidates.index(real) < 300


def test_desk_lookup_budget_counts_each_sql_level_execute(served: dict[str, Any], mariadb: Any) -> None:
    real = direct(mariadb, "SELECT phone FROM customers WHERE id = 27")[0][0]
    tested = 0
    found = None
    with connect(served, DESK4) as c:
        masked = run(c, "SELECT phone FROM customers WHERE id = 27")[0][0]
        head, tail = masked[:3], masked[-4:]
        candidates = [f"{head}{i:04d}{tail}" for i in range(10_000)]
        try:
            run(c, "PREPARE look FROM 'SELECT 1 FROM customers WHERE id = 27 AND phone = ?'")
            for cand in candidates:
                run(c, f"SET @c = '{cand}'")
                hit = run(c, "EXECUTE look USING @c")
                tested += 1
                if hit:
                    found = cand
                    break
        except pymysql.err.MySQLError as e:
            assert by_maskgate(e), e
        assert run(c, "SELECT 1") == [(1,)]
    assert tested <= 300, f"{tested} candidates tested through one SQL-level PREPARE"
    assert found is None or candidates.index(real) < 300
