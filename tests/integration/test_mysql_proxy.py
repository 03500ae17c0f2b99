"""maskgate serve in front of a real MariaDB, driven by PyMySQL: the demo's people through the
MySQL listener get what they get through the PostgreSQL one.

Each test logs in as a person of the demo policy and checks what a vendor, a desk and a DBA
receive (masked, refused, truncated, clear), that a refusal leaves the connection usable, and
that every statement is audited.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from tests.conftest import start_crm_mysql
from tests.integration.harness import audit_values, serve_demo

pytestmark = pytest.mark.integration

SERVICE_PASSWORD = "svc-mysql-secret"
VENDOR = ("vendor_zhang", "vendor-pass")
DBA = ("dba_wang", "dba-pass")
FULL_MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    db = start_crm_mysql(tmp_path_factory.mktemp("mysql-proxy"), SERVICE_PASSWORD, 300)
    try:
        yield db
    finally:
        db.destroy()


@pytest.fixture(scope="module")
def served(mariadb: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("mysql-serve"), None, SERVICE_PASSWORD, mysql=mariadb) as s:
        yield s


def connect(served: dict[str, Any], who: tuple[str, str], **kw: Any) -> pymysql.connections.Connection:
    return pymysql.connect(
        host="127.0.0.1",
        port=served["mysql_port"],
        user=who[0],
        password=who[1],
        database=kw.pop("database", "crm"),
        charset="utf8mb4",
        **kw,
    )


def test_vendor_sees_masked_phone(served: dict[str, Any]) -> None:
    with connect(served, VENDOR) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, name, phone FROM customers WHERE branch_id = 12 ORDER BY id LIMIT 5")
        rows = cur.fetchall()
    assert rows
    for _, _, phone in rows:
        assert not FULL_MOBILE.search(phone), phone
        assert "*" in phone


def test_dba_sees_clear_phone(served: dict[str, Any]) -> None:
    with connect(served, DBA) as conn, conn.cursor() as cur:
        cur.execute("SELECT phone FROM customers ORDER BY id LIMIT 3")
        rows = cur.fetchall()
    assert all(FULL_MOBILE.fullmatch(r[0]) for r in rows)


def test_refusal_keeps_connection_usable(served: dict[str, Any]) -> None:
    with connect(served, VENDOR) as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError) as exc:
            cur.execute("UPDATE customers SET phone = '1' WHERE id = 1")
        assert exc.value.args[0] == 1142
        assert "maskgate:" in exc.value.args[1]
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


def test_wrong_password_and_unknown_user_look_the_same(served: dict[str, Any]) -> None:
    errors = []
    for who in (("vendor_zhang", "wrong"), ("nobody_here", "wrong")):
        with pytest.raises(pymysql.err.OperationalError) as exc:
            connect(served, who)
        errors.append((exc.value.args[0], re.sub(r"'[^']*'@", "'?'@", exc.value.args[1])))
    assert errors[0] == errors[1]
    assert errors[0][0] == 1045


def test_prepared_binary_rows_masked(served: dict[str, Any]) -> None:
    """PyMySQL has no server-side prepare; drive COM_STMT_* with mysql-connector if present."""
    mc = pytest.importorskip("mysql.connector")
    conn = mc.connect(
        host="127.0.0.1",
        port=served["mysql_port"],
        user=VENDOR[0],
        password=VENDOR[1],
        database="crm",
        use_pure=True,
        ssl_disabled=True,
    )
    try:
        cur = conn.cursor(prepared=True)
        cur.execute("SELECT phone, id FROM customers WHERE branch_id = ? ORDER BY id", (12,))
        rows = cur.fetchall()
        assert rows
        for phone, _ in rows:
            text = phone.decode() if isinstance(phone, bytes | bytearray) else phone
            assert not FULL_MOBILE.search(text)
    finally:
        conn.close()


def test_row_limit_truncates_with_warning(served: dict[str, Any]) -> None:
    with connect(served, VENDOR) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM call_records")
        rows = cur.fetchall()
        warnings = conn.show_warnings()
    assert len(rows) <= 200
    if len(rows) == 200:
        assert any("maskgate: result truncated to 200 rows" in str(w) for w in warnings)


def test_multi_statement_each_part_decided(served: dict[str, Any]) -> None:
    with (
        connect(served, VENDOR, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS) as conn,
        conn.cursor() as cur,
    ):
        with pytest.raises(pymysql.err.OperationalError):
            cur.execute("SELECT 1; UPDATE customers SET phone = '1' WHERE id = 1")
        cur.execute("SELECT 1; SELECT phone FROM customers WHERE branch_id = 12 LIMIT 1")
        assert cur.fetchall() == ((1,),)
        assert cur.nextset()
        (phone,) = cur.fetchone()
        assert not FULL_MOBILE.search(phone)


def test_init_db_and_use(served: dict[str, Any]) -> None:
    with connect(served, VENDOR) as conn, conn.cursor() as cur:
        conn.select_db("crm")
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone() == ("crm",)
        conn.ping()


def test_local_infile_never_served(served: dict[str, Any], tmp_path: Any) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    with connect(served, DBA, local_infile=True) as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.MySQLError):
            cur.execute(f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE audit_trail (actor)")
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


def test_statements_audited(served: dict[str, Any]) -> None:
    with connect(served, VENDOR) as conn, conn.cursor() as cur:
        cur.execute("SELECT phone FROM customers WHERE branch_id = 12 LIMIT 1")
        cur.fetchall()
    audit = served["dir"] / "audit.jsonl"
    served["app"].audit.flush() if hasattr(served["app"].audit, "flush") else None
    lines = [json.loads(line) for line in audit.read_text().splitlines() if line.strip()]
    mine = [r for r in lines if r.get("protocol") == "mysql" and r.get("user") == "vendor_zhang"]
    assert mine
    assert not FULL_MOBILE.search(audit_values(lines))


def test_sql_prepare_execute_masked_by_the_prepared_decision(served: dict[str, Any]) -> None:
    """PREPARE s FROM '…' keeps its body's decision; EXECUTE s returns rows masked by it, and an
    EXECUTE of a name maskgate never saw prepared is refused."""
    with connect(served, VENDOR) as conn, conn.cursor() as cur:
        cur.execute(
            "PREPARE s1 FROM 'SELECT id, phone FROM customers WHERE branch_id = ? ORDER BY id LIMIT 3'"
        )
        cur.execute("SET @b = 12")
        cur.execute("EXECUTE s1 USING @b")
        rows = cur.fetchall()
        assert rows and all("*" in phone for _, phone in rows)
        assert not any(FULL_MOBILE.search(phone) for _, phone in rows)
        cur.execute("DEALLOCATE PREPARE s1")
        with pytest.raises(pymysql.err.OperationalError) as exc:
            cur.execute("EXECUTE s1 USING @b")
        assert exc.value.args[0] == 1142
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


def test_warnings_reach_restricted_roles_without_their_text(served: dict[str, Any]) -> None:
    """The server's warnings quote values (a truncated CAST of HEX(phone)), whatever statement
    raised them: a restricted role reads their level and code, never their text, in the same
    string or later; maskgate's own truncation warning comes through."""
    with connect(served, VENDOR) as conn, conn.cursor() as cur:
        cur.execute("SELECT CAST(HEX(phone) AS CHAR(1)) FROM customers WHERE branch_id = 12 LIMIT 1")
        cur.fetchall()
        cur.execute("SHOW WARNINGS")
        rows = cur.fetchall()
        assert rows, "the server raised a truncation warning"
        assert all(r[0] == "Warning" and r[2].startswith("maskgate: the message is withheld") for r in rows)
        cur.execute("SELECT id FROM call_records")
        cur.fetchall()
        cur.execute("SHOW WARNINGS")
        assert cur.fetchall()[0][2] == "maskgate: result truncated to 200 rows"
