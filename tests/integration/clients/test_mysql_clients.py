"""Real MySQL clients through maskgate's MySQL listener, in front of a private MariaDB with the
demo `crm` data: the mariadb command-line client (batch and interactive), PyMySQL, both flavours
of mysql-connector-python, mysqlclient, MariaDB Connector/J and mariadb-dump.

Each client, as the demo's vendor, gets masked rows (no full 11-digit mobile anywhere in what it
prints or returns), a refusal for a write (ERR 1142, `maskgate: …`), and a working query after
the refusal on the same connection. The MariaDB starts once for the module; the tests only read,
but for the desk's batch, which sets the email of customers 4 and 17.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors
import pytest

from proxy.mysql.auth import native_hash
from proxy.pg.auth import make_verifier
from tests.conftest import start_crm_mysql
from tests.integration.clients.expect import CUSTOMERS_SQL, MOBILE, check_customer, masked_mobile
from tests.integration.harness import serve_demo

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
SVC_PW = "svc-secret-for-mysql-clients"
CUSTOMERS = 300
VENDOR = ("vendor_zhang", "vendor-pass")
DBA = ("dba_wang", "dba-pass")
DESK = ("desk_li", "desk-pass")
# A select-only role that may read whole tables (every class masked, none denied), as a
# mariadb-dump of a masked copy needs: the vendor cannot (bank_card is denied, so `SELECT *`
# of customers is refused).
ARCHIVIST = ("archive_sun", "archive-pass")
EXTRA_POLICY = f"""version: 1
roles:
  archivist:
    statements: [select]
    tables: ["crm.customers", "crm.call_records"]
    max_rows: unlimited
    see: {{mobile: mask, id_card: mask, person_name: mask, bank_card: mask, email: mask, address: mask,
          free_text: mask}}
    masked_predicates: deny
users:
  {ARCHIVIST[0]}:
    role: archivist
    password: "{make_verifier(ARCHIVIST[1])}"
    mysql_password: "{native_hash(ARCHIVIST[1])}"
"""
UPDATE = "UPDATE customers SET phone = '1' WHERE id = 1"
UPDATE_REFUSED = "maskgate: UPDATE statements are not allowed for this role"
VENDOR_CUSTOMERS = CUSTOMERS_SQL + " WHERE branch_id = 12 ORDER BY id"
CONNECTOR_J = Path(os.environ.get("MASKGATE_MARIADB_JDBC_JAR", "/usr/share/java/mariadb-java-client.jar"))
MYSQLCLIENT_MISSING = "pip install mysqlclient (apt-get install libmariadb-dev pkg-config)"
JVM_OPTS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto")


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    db = start_crm_mysql(tmp_path_factory.mktemp("mysql-clients-db"), SVC_PW, CUSTOMERS)
    try:
        yield db
    finally:
        db.destroy()


@pytest.fixture(scope="module")
def served(mariadb: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("mysql-clients-serve")
    with serve_demo(d, None, SVC_PW, mysql=mariadb, extra_policy=EXTRA_POLICY) as s:
        yield s


@pytest.fixture(scope="module")
def clear(mariadb: Any) -> Any:
    """Rows straight from the database (as root over its socket, not through the proxy)."""

    def run(sql: str) -> list[tuple[Any, ...]]:
        return mariadb.sql(sql, "crm")

    return run


def customer_4_masked(clear: Any) -> str:
    """Customer 4's phone (branch 12) as the vendor must see it."""
    return masked_mobile(clear("SELECT phone FROM customers WHERE id = 4")[0][0])


def audited(served: dict[str, Any], user: str) -> list[dict[str, Any]]:
    """The audit records of `user`'s MySQL sessions so far."""
    lines = (served["dir"] / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [r for r in records if r.get("protocol") == "mysql" and r.get("user") == user]


def audited_until(served: dict[str, Any], user: str, skip: int, last_sql: str) -> dict[str, dict[str, Any]]:
    """The decisions on `user`'s statements after the first `skip` records, by SQL text, once
    `last_sql` is among them (the audit log is written behind the session)."""
    deadline = time.monotonic() + 10
    while True:
        asked = {r["sql"]: r for r in audited(served, user)[skip:] if "sql" in r}
        if last_sql in asked or time.monotonic() > deadline:
            return asked
        time.sleep(0.1)


def assert_no_full_mobile(text: str) -> None:
    found = MOBILE.search(text)
    if found is not None:
        raise AssertionError(
            f"a full mobile in the output: {text[max(0, found.start() - 80) : found.end() + 20]}"
        )


# --- the mariadb command-line client -------------------------------------------------------------


def cli(name: str = "mariadb") -> str:
    for candidate in (name, name.replace("mariadb", "mysql")):
        if shutil.which(candidate):
            return candidate
    pytest.skip(f"{name} not found: apt-get install mariadb-client")


def cli_env(tmp_path: Path, locale: str) -> dict[str, str]:
    """No ~/.my.cnf, no history file, and a known locale (the client's default character set
    comes from it: latin1 for C, utf8 for C.UTF-8)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL", "LC_", "LANG"))}
    env.update(HOME=str(tmp_path), MYSQL_HISTFILE="/dev/null", LC_ALL=locale, TERM="dumb")
    return env


def cli_args(served: dict[str, Any], who: tuple[str, str], *extra: str) -> list[str]:
    return [
        cli(),
        "--no-defaults",
        "-h127.0.0.1",
        f"-P{served['mysql_port']}",
        f"-u{who[0]}",
        f"--password={who[1]}",
        *extra,
    ]


def tsv_rows(block: str) -> list[list[str]]:
    return [line.split("\t") for line in block.strip().splitlines()]


@pytest.mark.parametrize("charset", ["default", "utf8mb4"])
def test_cli_batch_from_stdin(served: dict[str, Any], clear: Any, tmp_path: Path, charset: str) -> None:
    """`mariadb --batch --force < script`: masked rows, the UPDATE refused (the client reports
    the error and goes on), then a query. With the default character set under a C locale the
    client talks latin1: names cannot be shown, numbers are masked all the same."""
    forced = [f"--default-character-set={charset}"] if charset != "default" else []
    script = f"{VENDOR_CUSTOMERS};\n{UPDATE};\nSELECT 42 AS after_refusal;\nSELECT @@character_set_client;\n"
    res = subprocess.run(
        cli_args(served, VENDOR, *forced, "--batch", "--force", "crm"),
        input=script.encode(),
        capture_output=True,
        env=cli_env(tmp_path, "C"),
        timeout=60,
    )
    out, err = res.stdout.decode("utf-8", "replace"), res.stderr.decode("utf-8", "replace")
    assert res.returncode == 0, err  # --force: the error is reported, the script runs on
    assert f"ERROR 1142 (42000) at line 2: {UPDATE_REFUSED}" in err
    assert_no_full_mobile(out + err)
    rows_block, after = out.split("after_refusal\n", 1)
    assert tsv_rows(after) == [
        ["42"],
        ["@@character_set_client"],
        ["latin1" if charset == "default" else "utf8mb4"],
    ]
    got = tsv_rows(rows_block)
    assert got[0] == ["id", "name", "phone", "id_card", "branch_id"]
    truth = clear(VENDOR_CUSTOMERS)
    assert len(got) - 1 == len(truth) > 0
    for row, want in zip(got[1:], truth, strict=True):
        masked = (int(row[0]), row[1], row[2], row[3], int(row[4]))
        if charset == "default":
            assert row[2] == masked_mobile(want[2]) and row[3].count("*") == 11
        else:
            check_customer(masked, want)


def test_cli_execute_stops_at_the_refusal(served: dict[str, Any], tmp_path: Path) -> None:
    """`-e "a; b; c"`: the client stops at the first error, as it does against the server."""
    res = subprocess.run(
        [
            *cli_args(served, VENDOR, "--default-character-set=utf8mb4", "--batch", "crm"),
            "-e",
            f"SELECT phone FROM customers WHERE branch_id = 12 LIMIT 3; {UPDATE}; SELECT 42",
        ],
        capture_output=True,
        env=cli_env(tmp_path, "C.UTF-8"),
        timeout=60,
    )
    out, err = res.stdout.decode(), res.stderr.decode()
    assert res.returncode == 1
    assert err.strip().endswith(f"\nERROR 1142 (42000) at line 1: {UPDATE_REFUSED}")
    phones = tsv_rows(out)[1:]
    assert len(phones) == 3 and all(p[0].count("*") == 4 for p in phones)
    assert_no_full_mobile(out)


def run_in_terminal(cmd: list[str], typed: str, env: dict[str, str], timeout: float = 60) -> str:
    """Run `cmd` on a pseudo-terminal (so the client thinks a person is typing: it greets,
    asks @@version_comment and rehashes table names), type `typed`, return all it printed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    out = bytearray()
    try:
        os.write(master, typed.encode())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the client exited and the terminal is gone
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        else:
            raise AssertionError(f"the client did not finish in {timeout}s: {out.decode(errors='replace')}")
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)
    return out.decode("utf-8", "replace")


@pytest.mark.parametrize("charset", ["default", "utf8mb4"])
def test_cli_interactive_with_auto_rehash(served: dict[str, Any], tmp_path: Path, charset: str) -> None:
    """The client at a terminal: @@version_comment at start; `use crm` reads the table names
    (SHOW DATABASES, SHOW TABLES) and, with --auto-rehash, each table's columns with
    COM_FIELD_LIST, which maskgate decides as `SELECT 1 FROM t LIMIT 0` (see test_com_field_list)
    and audits. (The database itself refuses crm_vendor the accounts table: the client skips
    such errors silently.)"""
    forced = [f"--default-character-set={charset}"] if charset != "default" else []
    typed = (
        "use crm\n"
        "SELECT id, phone FROM customers WHERE branch_id = 12 ORDER BY id LIMIT 3;\n"
        f"{UPDATE};\n"
        "SELECT 40 + 2;\n"
        "quit\n"
    )
    before = len(audited(served, VENDOR[0]))
    out = run_in_terminal(
        cli_args(served, VENDOR, *forced, "--auto-rehash"), typed, cli_env(tmp_path, "C.UTF-8")
    )
    assert "Welcome to the MariaDB monitor" in out or "Welcome to the MySQL monitor" in out
    assert "Database changed" in out
    assert f"ERROR 1142 (42000): {UPDATE_REFUSED}" in out
    assert "| 40 + 2 |" in out and "|     42 |" in out
    assert "Bye" in out
    assert_no_full_mobile(out)
    phones = [
        cell.strip() for line in out.splitlines() if line.startswith("| ") for cell in line.split("|")[2:3]
    ]
    assert sum(p.count("*") == 4 and len(p) == 11 for p in phones) == 3, out

    asked = audited_until(served, VENDOR[0], before, "SELECT 40 + 2")
    assert asked["select @@version_comment limit 1"]["decision"] == "allow"
    assert asked["show databases"]["decision"] == "allow"
    assert asked["show tables"]["decision"] == "allow"
    assert asked["SELECT 1 FROM `call_records` LIMIT 0"]["decision"] == "allow"
    assert asked["SELECT 1 FROM `customers` LIMIT 0"]["decision"] == "allow"


def test_cli_login_in_a_character_set_maskgate_cannot_read(served: dict[str, Any], tmp_path: Path) -> None:
    """SJIS reads 0x815C as one character where UTF-8 sees a backslash: a login in it is refused
    (it used to be read as UTF-8, and a quote could hide a UNION from the policy), the DBA's
    too, since maskgate has no codec to read (and audit) their statements with."""
    sql = "SELECT id FROM call_records WHERE started_at = 'Á\\\\' OR id = ' UNION SELECT 1 -- '\n;\n"
    vendor = subprocess.run(
        cli_args(served, VENDOR, "--default-character-set=sjis", "--comments", "--batch", "crm"),
        input=sql.encode("utf-8"),
        capture_output=True,
        env=cli_env(tmp_path, "C"),
        timeout=60,
    )
    assert vendor.returncode == 1
    err = vendor.stderr.decode().strip()
    # Refused from the handshake (maskgate has no codec for SJIS), before any role is known.
    assert err.startswith("ERROR 1115 (42000): maskgate: ") and "utf8mb4" in err, err
    dba = subprocess.run(
        cli_args(served, DBA, "--default-character-set=sjis", "--batch", "-N", "crm", "-e", "SELECT 7"),
        capture_output=True,
        env=cli_env(tmp_path, "C"),
        timeout=60,
    )
    # maskgate cannot read statements in SJIS at all, so nobody's are taken in it: the DBA's
    # statements are decided and audited too, and would be read as other statements.
    assert dba.returncode == 1 and dba.stderr.decode().startswith("ERROR 1115 (42000): maskgate: ")


# --- PyMySQL (the basics are in tests/integration/test_mysql_proxy.py) ---------------------------


def pymysql_connect(served: dict[str, Any], who: tuple[str, str] = VENDOR, **kw: Any) -> Any:
    return pymysql.connect(
        host="127.0.0.1",
        port=served["mysql_port"],
        user=who[0],
        password=who[1],
        database="crm",
        charset="utf8mb4",
        **kw,
    )


def test_com_field_list(served: dict[str, Any]) -> None:
    """COM_FIELD_LIST (what the mariadb client's auto-rehash and mysql_list_fields send) answers
    the column definitions of a table the vendor may read (bank_card's too: its name is no
    value), and is refused for a table it may not. Each one is audited as `SELECT 1 FROM t
    LIMIT 0`, the statement it is decided as."""
    from pymysql.constants import COMMAND

    def field_list(conn: Any, table: str) -> list[str] | tuple[int, str]:
        conn._execute_command(COMMAND.COM_FIELD_LIST, table.encode() + b"\0")
        names: list[str] = []
        while True:
            try:
                packet = conn._read_packet()
            except pymysql.err.MySQLError as e:
                return e.args
            if packet.is_eof_packet():
                return names
            names.append(pymysql.protocol.FieldDescriptorPacket(packet._data, conn.encoding).name)

    before = len(audited(served, VENDOR[0]))
    with pymysql_connect(served) as conn:
        assert field_list(conn, "call_records") == [
            "id",
            "customer_id",
            "caller",
            "callee",
            "started_at",
            "duration_s",
            "notes",
        ]
        assert field_list(conn, "customers") == [
            "id",
            "name",
            "phone",
            "id_card",
            "bank_card",
            "email",
            "branch_id",
            "address",
            "created_at",
        ]
        assert field_list(conn, "audit_trail") == (
            1142,
            "maskgate: table crm.audit_trail is not allowed for this role",
        )
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchall() == ((1,),)
    asked = audited_until(served, VENDOR[0], before, "SELECT 1")
    records = audited(served, VENDOR[0])[before:]
    listed = [r for r in records if r.get("sql") == "SELECT 1 FROM `call_records` LIMIT 0"]
    assert [(r["event"], r["decision"], r["tables"]) for r in listed] == [
        ("start", "allow", ["crm.call_records"])
    ]
    ends = [r for r in records if r.get("id") == listed[0]["id"] and r["event"] == "end"]
    assert [(r["outcome"], r["rows"]) for r in ends] == [("ok", 0)]
    assert asked["SELECT 1 FROM `audit_trail` LIMIT 0"]["reason"] == "table_denied"


def test_pymysql_sscursor_streams_masked_rows_to_the_row_limit(served: dict[str, Any], clear: Any) -> None:
    truth = dict(clear("SELECT id, caller FROM call_records"))
    with pymysql_connect(served) as conn:
        with conn.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute("SELECT id, caller FROM call_records ORDER BY id")
            rows = list(cur)
        assert [r[0] for r in rows] == list(range(1, 201))
        assert all(caller == masked_mobile(truth[i]) for i, caller in rows)
        assert [w[2] for w in conn.show_warnings()] == ["maskgate: result truncated to 200 rows"]
        with conn.cursor(pymysql.cursors.SSCursor) as cur:
            with pytest.raises(pymysql.err.OperationalError) as exc:
                cur.execute(UPDATE)
            assert exc.value.args == (1142, UPDATE_REFUSED)
            cur.execute("SELECT phone FROM customers WHERE id = 4")
            assert list(cur.fetchall()) == [(customer_4_masked(clear),)]


def test_pymysql_executemany(served: dict[str, Any]) -> None:
    """executemany folds an INSERT into one multi-row statement (refused); a SELECT runs once per
    parameter set, each masked."""
    with pymysql_connect(served) as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError) as exc:
            cur.executemany("INSERT INTO customers (id, phone) VALUES (%s, %s)", [(9001, "1"), (9002, "2")])
        assert exc.value.args == (1142, "maskgate: INSERT statements are not allowed for this role")
        cur.executemany("SELECT phone FROM customers WHERE branch_id = 12 AND id = %s", [(4,), (17,)])
        (phone,) = cur.fetchone()
        assert phone.count("*") == 4
        cur.execute("SELECT 1")
        assert cur.fetchall() == ((1,),)


def test_pymysql_callproc_refused(served: dict[str, Any]) -> None:
    """callproc sets @_p_n user variables, then CALLs: a procedure not allow-listed is refused."""
    with pymysql_connect(served) as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError) as exc:
            cur.callproc("export_customers", (12, 100))
        assert exc.value.args == (1142, "maskgate: procedure export_customers is not allow-listed")
        cur.execute("SELECT 1")
        assert cur.fetchall() == ((1,),)


# --- mysql-connector-python ------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[True, False], ids=["pure", "cext"])
def connector(request: pytest.FixtureRequest) -> tuple[Any, bool]:
    mc = pytest.importorskip("mysql.connector", reason="pip install mysql-connector-python")
    use_pure: bool = request.param
    if not use_pure:
        try:
            import _mysql_connector  # noqa: F401  (the C extension of the installed wheel)
        except ImportError as e:
            pytest.skip(f"mysql-connector-python's C extension does not load here: {e}")
    return mc, use_pure


@pytest.mark.parametrize("prepared", [False, True], ids=["text", "prepared"])
def test_mysql_connector(
    served: dict[str, Any], clear: Any, connector: tuple[Any, bool], prepared: bool
) -> None:
    """Plain cursors (COM_QUERY, text rows) and cursor(prepared=True) (COM_STMT_PREPARE and
    EXECUTE, binary rows); the refused UPDATE is refused at prepare in the second case. Run in a
    process of its own: the C extension holds the GIL while it waits on the network."""
    _, use_pure = connector
    res = subprocess.run(
        [
            sys.executable,
            str(HERE / "connector_scenario.py"),
            str(served["mysql_port"]),
            *VENDOR,
            CUSTOMERS_SQL,
            "pure" if use_pure else "cext",
            "prepared" if prepared else "text",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert out["driver"] == ("MySQLConnection" if use_pure else "CMySQLConnection")
    truth = clear(VENDOR_CUSTOMERS)
    rows = out["rows"]
    assert len(rows) == len(truth) > 0
    for row, want in zip(rows, truth, strict=True):
        check_customer(tuple(row), want)
    assert_no_full_mobile(repr(rows))
    # The C extension's prepared cursor reports the server's message with errno -1 (its own
    # quirk: the ERR packet maskgate sends carries 1142, as the other three forms show).
    codes = (1142, -1) if (not use_pure and prepared) else (1142,)
    assert out["refusal"][1] == UPDATE_REFUSED and out["refusal"][0] in codes, out["refusal"]
    assert out["phone4"] == customer_4_masked(clear)


# --- mysqlclient (MySQLdb) -------------------------------------------------------------------------


def test_mysqlclient(served: dict[str, Any], clear: Any) -> None:
    pytest.importorskip("MySQLdb", reason=MYSQLCLIENT_MISSING)
    import MySQLdb
    import MySQLdb.cursors

    conn = MySQLdb.connect(
        host="127.0.0.1",
        port=served["mysql_port"],
        user=VENDOR[0],
        password=VENDOR[1],
        database="crm",
        charset="utf8mb4",
    )
    try:
        cur = conn.cursor()
        cur.execute(f"{CUSTOMERS_SQL} WHERE branch_id = %s ORDER BY id", (12,))
        rows = cur.fetchall()
        truth = clear(VENDOR_CUSTOMERS)
        assert len(rows) == len(truth) > 0
        for row, want in zip(rows, truth, strict=True):
            check_customer(row, want)
        with pytest.raises(MySQLdb.OperationalError) as exc:
            cur.execute(UPDATE)
        assert exc.value.args == (1142, UPDATE_REFUSED)
        cur.execute("SELECT 1")
        assert cur.fetchall() == ((1,),)
        # mysql_use_result: rows read off the socket one by one.
        stream = conn.cursor(MySQLdb.cursors.SSCursor)
        stream.execute("SELECT id, caller FROM call_records ORDER BY id")
        streamed = list(stream)
        stream.close()
        callers = dict(clear("SELECT id, caller FROM call_records"))
        assert [r[0] for r in streamed] == list(range(1, 201))
        assert all(caller == masked_mobile(callers[i]) for i, caller in streamed)
        assert [w[2] for w in conn.show_warnings()] == ["maskgate: result truncated to 200 rows"]
    finally:
        conn.close()


# --- MariaDB Connector/J ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def connector_j(served: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """java/MaskgateMariaJdbc.java compiled once; run(scenario, params, arg) through the proxy."""
    if not (shutil.which("java") and shutil.which("javac")):
        pytest.skip("java/javac not found: apt-get install openjdk-17-jdk-headless")
    if not CONNECTOR_J.is_file():
        pytest.skip(f"MariaDB Connector/J not found at {CONNECTOR_J}: apt-get install libmariadb-java")
    classes = tmp_path_factory.mktemp("mariadb-jdbc-classes")
    res = subprocess.run(
        ["javac", "-d", str(classes), "-cp", str(CONNECTOR_J), str(HERE / "java" / "MaskgateMariaJdbc.java")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr

    def run(scenario: str, params: str, arg: str = "", who: tuple[str, str] = VENDOR) -> dict[str, Any]:
        url = f"jdbc:mariadb://127.0.0.1:{served['mysql_port']}/crm?connectTimeout=10000{params}"
        cmd = [
            "java",
            *JVM_OPTS,
            "-cp",
            f"{classes}{os.pathsep}{CONNECTOR_J}",
            "MaskgateMariaJdbc",
            scenario,
            url,
        ]
        res = subprocess.run([*cmd, *who, arg], capture_output=True, text=True, timeout=120)

        assert res.returncode == 0, res.stderr
        assert_no_full_mobile(res.stdout)
        result: dict[str, Any] = json.loads(res.stdout)
        assert "uncaught" not in result, result["uncaught"]
        return result

    return run


def refusal(step: dict[str, Any]) -> tuple[int, str, bool]:
    """(vendor code, SQLSTATE, whether the message carries maskgate's refusal) of an error step;
    Connector/J prefixes messages with `(conn=N) `."""
    e = step["error"]
    return e["code"], e["sqlstate"], e["message"].split(") ", 1)[-1] == UPDATE_REFUSED


@pytest.mark.parametrize("params", ["", "&useServerPrepStmts=true"], ids=["client-prepare", "server-prepare"])
def test_connector_j_masks_refuses_and_goes_on(connector_j: Any, clear: Any, params: str) -> None:
    """On connect Connector/J sends `set autocommit=1, sql_mode = concat(@@sql_mode,
    ',STRICT_TRANS_TABLES')` (allowed: the session's own modes plus a harmless flag). Then a
    Statement and a PreparedStatement (COM_STMT_PREPARE/EXECUTE with useServerPrepStmts), an
    UPDATE refused both ways, and queries after each refusal."""
    got = connector_j("session", params, f"{CUSTOMERS_SQL} WHERE branch_id = ? ORDER BY id")
    assert got["product"] == "MariaDB"
    plain, prepared, update, after, prepared_update, after_prepared = got["steps"]
    truth = clear(VENDOR_CUSTOMERS)
    for result in (plain, prepared):
        assert len(result["rows"]) == len(truth) > 0
        for row, want in zip(result["rows"], truth, strict=True):
            check_customer(tuple(row), want)
    assert refusal(update) == (1142, "42000", True)
    assert after == {"rows": [[1]]}
    assert refusal(prepared_update) == (1142, "42000", True)
    assert after_prepared == {"rows": [[customer_4_masked(clear)]]}


@pytest.mark.parametrize(
    "fetch_size,params",
    [("-2147483648", ""), ("-2147483648", "&useServerPrepStmts=true"), ("50", "&useServerPrepStmts=true")],
    ids=["streaming", "streaming-binary", "fetch-50-binary"],
)
def test_connector_j_streaming(connector_j: Any, clear: Any, fetch_size: str, params: str) -> None:
    """setFetchSize(Integer.MIN_VALUE) (row-by-row streaming) and setFetchSize(50): the rows stop
    at the role's 200 with maskgate's warning, and the connection serves the next query.
    Connector/J 2.7 has no server-side cursor fetch (it never sends COM_STMT_FETCH)."""
    got = connector_j("stream", params, fetch_size)
    truth = dict(clear("SELECT id, caller FROM call_records"))
    assert [r[0] for r in got["rows"]] == list(range(1, 201))
    assert all(caller == masked_mobile(truth[i]) for i, caller in got["rows"])
    assert got["warnings"] == ["maskgate: result truncated to 200 rows"]
    assert got["after"] == {"rows": [[1]]}


@pytest.mark.parametrize("params", ["", "&useServerPrepStmts=true"], ids=["client-prepare", "server-prepare"])
def test_connector_j_batch_of_updates_by_the_desk(
    served: dict[str, Any], connector_j: Any, clear: Any, params: str
) -> None:
    """The service desk may fix contact details: a PreparedStatement batch of two UPDATEs runs
    (with server prepares: one COM_STMT_PREPARE, an EXECUTE per row), and the audit log holds
    the statements with their literals masked."""
    before = len(audited(served, DESK[0]))
    got = connector_j("batch", params, who=DESK)
    assert got["batch"] == {"counts": [1, 1]}
    assert got["after"] == {"rows": [["c4@example.com"], ["c17@example.com"]]}
    assert clear("SELECT email FROM customers WHERE id IN (4, 17) ORDER BY id") == [
        ("c4@example.com",),
        ("c17@example.com",),
    ]
    last = "SELECT email FROM customers WHERE id IN (4, 17) ORDER BY id"
    asked = audited_until(served, DESK[0], before, last)

    updates = [sql for sql, r in asked.items() if sql.startswith("UPDATE") and r["decision"] == "allow"]
    assert updates, asked.keys()
    assert "c4@example.com" not in json.dumps(audited(served, DESK[0])[before:])


# --- mariadb-dump ----------------------------------------------------------------------------------


def dump(
    served: dict[str, Any], who: tuple[str, str], tmp_path: Path, *tables: str
) -> subprocess.CompletedProcess[str]:
    args = cli_args(served, who, "--single-transaction", "--default-character-set=utf8mb4", "crm", *tables)
    args[0] = cli("mariadb-dump")
    res = subprocess.run(args, capture_output=True, env=cli_env(tmp_path, "C.UTF-8"), timeout=120)
    return subprocess.CompletedProcess(
        res.args, res.returncode, res.stdout.decode("utf-8", "replace"), res.stderr.decode("utf-8", "replace")
    )


def dumped_rows(text: str, table: str) -> list[str]:
    """The value tuples of `table`'s INSERT statements (mariadb-dump writes one tuple a line)."""
    body = text.split(f"INSERT INTO `{table}` VALUES\n", 1)[1].split(";\n", 1)[0]
    return [line.rstrip(",") for line in body.splitlines()]


def test_dump_of_whole_tables_by_a_select_only_role(
    served: dict[str, Any], clear: Any, tmp_path: Path
) -> None:
    """mariadb-dump --single-transaction (SET @@SQL_MODE, START TRANSACTION WITH CONSISTENT
    SNAPSHOT, SAVEPOINT, SHOW CREATE TABLE, SELECT /*!40001 SQL_NO_CACHE */ …, ROLLBACK TO
    SAVEPOINT) by a select-only role whose classes are all masked: complete, every row, masked."""
    res = dump(served, ARCHIVIST, tmp_path, "customers", "call_records")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert "CREATE TABLE `customers`" in res.stdout and "CREATE TABLE `call_records`" in res.stdout
    assert res.stdout.rstrip().splitlines()[-1].startswith("-- Dump completed")
    assert_no_full_mobile(res.stdout)
    customers = dumped_rows(res.stdout, "customers")
    calls = dumped_rows(res.stdout, "call_records")
    assert len(customers) == CUSTOMERS
    assert len(calls) == clear("SELECT count(*) FROM call_records")[0][0]
    phones = dict(clear("SELECT id, phone FROM customers"))
    for line in customers[:20]:
        cid = int(line[1:].split(",", 1)[0])
        assert f"'{masked_mobile(phones[cid])}'" in line


def test_dump_by_the_vendor(served: dict[str, Any], tmp_path: Path) -> None:
    """The vendor dumps call_records (masked, cut at its 200 rows: mariadb-dump does not read
    warnings, so the dump looks complete); customers is refused (`SELECT *` with bank_card)."""
    res = dump(served, VENDOR, tmp_path, "call_records")
    assert res.returncode == 0, res.stderr
    assert len(dumped_rows(res.stdout, "call_records")) == 200
    assert_no_full_mobile(res.stdout)
    refused = dump(served, VENDOR, tmp_path, "customers")
    assert refused.returncode == 2
    assert (
        "maskgate: class bank_card (crm.customers.bank_card) is denied for this role (1142)" in refused.stderr
    )
    assert_no_full_mobile(refused.stdout + refused.stderr)


def test_dump_to_server_files_is_refused(served: dict[str, Any], tmp_path: Path) -> None:
    """`mariadb-dump --tab` has the server write each table with SELECT … INTO OUTFILE, past
    the masking: refused, even for the role that may dump whole tables."""
    tab = tmp_path / "tab"
    tab.mkdir()
    res = dump(served, ARCHIVIST, tmp_path, f"--tab={tab}", "customers")
    assert res.returncode == 2
    assert 'Got error: 1142: "maskgate: ' in res.stderr
    assert "when executing 'SELECT INTO OUTFILE'" in res.stderr

    assert not list(tab.glob("*.txt"))
