"""The MySQL side against servers configured otherwise than the demo's: TLS required upstream,
and a server whose sql_mode makes it read SQL text differently from maskgate's parser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.conftest import start_crm_mysql
from tests.integration.harness import self_signed_cert, serve_demo

pytestmark = pytest.mark.integration

SERVICE_PASSWORD = "svc-mysql-faults"
VENDOR = ("vendor_zhang", "vendor-pass")
DBA = ("dba_wang", "dba-pass")


def _connect(served: dict[str, Any], who: tuple[str, str]) -> Any:
    return pymysql.connect(
        host="127.0.0.1", port=served["mysql_port"], user=who[0], password=who[1], database="crm"
    )


def test_upstream_tls_required(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The server takes TLS connections only: maskgate (and its schema loader) reach it over TLS
    when the upstream URL names a CA, and sessions work as before."""
    certs = tmp_path_factory.mktemp("mysql-certs")
    tls = self_signed_cert(certs)
    options = (f"--ssl-cert={tls['cert']}", f"--ssl-key={tls['key']}", "--require-secure-transport=ON")
    db = start_crm_mysql(tmp_path_factory.mktemp("mysql-tls"), SERVICE_PASSWORD, 50, options)
    try:
        params = f"?ssl_ca={tls['cert']}"
        with serve_demo(
            tmp_path_factory.mktemp("serve-tls"), None, SERVICE_PASSWORD, mysql=db, mysql_params=params
        ) as s:
            with _connect(s, VENDOR) as conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT @@ssl_cipher IS NOT NULL, phone FROM customers WHERE branch_id = 12 LIMIT 1"
                )
                rows = cur.fetchall()
            assert all("*" in r[1] for r in rows)
            with _connect(s, DBA) as conn, conn.cursor() as cur:
                cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
                (_, version) = cur.fetchone()
                assert version.startswith("TLS")
    finally:
        db.destroy()


def test_server_sql_mode_that_changes_lexing_refuses_restricted(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """ANSI_QUOTES on the server makes "x" a name where maskgate's parser reads a string: a
    restricted person is refused at login with a reason; a DBA (sees all clear) logs in."""
    db = start_crm_mysql(
        tmp_path_factory.mktemp("mysql-ansi"),
        SERVICE_PASSWORD,
        20,
        ("--sql-mode=ANSI_QUOTES,STRICT_TRANS_TABLES",),
    )
    try:
        with serve_demo(tmp_path_factory.mktemp("serve-ansi"), None, SERVICE_PASSWORD, mysql=db) as s:
            with pytest.raises(pymysql.err.MySQLError) as exc:
                _connect(s, VENDOR)
            assert "sql_mode" in str(exc.value)
            with _connect(s, DBA) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
                assert cur.fetchone() == (1,)
    finally:
        db.destroy()


def test_tls_from_client(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The listener's own TLS: a client asking for it gets it, and caching_sha2_password's full
    authentication sends the password inside it."""
    db = start_crm_mysql(tmp_path_factory.mktemp("mysql-ctls"), SERVICE_PASSWORD, 20)
    try:
        with serve_demo(
            tmp_path_factory.mktemp("serve-ctls"), None, SERVICE_PASSWORD, mysql=db, tls=True
        ) as s:
            conn = pymysql.connect(
                host="127.0.0.1",
                port=s["mysql_port"],
                user=VENDOR[0],
                password=VENDOR[1],
                database="crm",
                ssl={"ca": s["cert"], "check_hostname": False},
            )
            with conn, conn.cursor() as cur:
                cur.execute("SELECT phone FROM customers WHERE branch_id = 12 LIMIT 1")
                cur.fetchall()
    finally:
        db.destroy()
