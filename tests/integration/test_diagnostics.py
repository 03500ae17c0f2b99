"""What a vendor needs to diagnose a database, safely (issue 9, items 6, 7 and 11), through the real
proxy (App) in front of a real PostgreSQL with pg_stat_statements loaded.

- Functions are judged by what they do: volatile ones need the right their effect implies.
- pg_stat_activity and pg_stat_statements are readable; other sessions' SQL is free text (numbers
  masked in place). pg_stats only shows the rows of columns the role reads in clear.
- A column the policy does not classify but that holds phone numbers is found when the schema
  loads and masked as what it holds.
"""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from proxy.demo.embedded_pg import EmbeddedPostgres, bin_dir
from proxy.pg import messages as m
from tests.conftest import start_crm
from tests.integration.harness import serve_demo
from tests.integration.test_redteam import VENDOR, Wire, errors_of, leaked, refused, rows

SVC_PW = "svc-secret-diagnostics"
MARKER = "diag_marker_4711"


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = start_crm(
        tmp_path_factory.mktemp("pg-diag"),
        SVC_PW,
        300,
        settings="shared_preload_libraries = 'pg_stat_statements'",
    )
    try:
        pg.psql(
            "CREATE EXTENSION pg_stat_statements; GRANT pg_read_all_stats TO maskgate_svc;"
            # item 11: a note column nobody classified, holding the customers' phone numbers
            "ALTER TABLE call_records ADD COLUMN remark text;"
            "UPDATE call_records r SET remark = c.phone FROM customers c WHERE c.id = r.customer_id;"
            "ANALYZE;",
            "crm",
        )
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("diag"), crm, SVC_PW) as s:
        yield s


@pytest.fixture(scope="module")
def secrets(crm: EmbeddedPostgres) -> set[str]:
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as c:
        found = c.execute("SELECT phone, id_card, bank_card FROM customers").fetchall()
    return {x for row in found for x in row if x}


@pytest.fixture(scope="module")
def phone(crm: EmbeddedPostgres) -> str:
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as c:
        return c.execute("SELECT phone FROM customers ORDER BY id LIMIT 1").fetchone()[0]


def vendor(served: dict[str, Any], **kw: Any) -> psycopg.Connection[Any]:
    kw.setdefault("autocommit", True)
    return psycopg.connect(
        host="127.0.0.1",
        port=served["port"],
        user=VENDOR[0],
        password=VENDOR[1],
        dbname="crm",
        sslmode="disable",
        **kw,
    )


# ---------------------------------------------------------------------------------------------
# Item 6: functions by what they do
# ---------------------------------------------------------------------------------------------

VOLATILE = [
    "SELECT pg_stat_reset_single_table_counters('customers'::regclass)",
    "SELECT txid_current()",
    "SELECT pg_current_xact_id()",
    "SELECT pg_stat_reset()",
    "SELECT pg_backup_start('x')",
    "SELECT lo_truncate(0, 0)",
    "SELECT Pg_Catalog.PG_STAT_RESET()",
    'SELECT "pg_stat_reset"()',
    "SELECT * FROM pg_stat_reset()",
    "SELECT id FROM customers ORDER BY pg_stat_reset() LIMIT 1",
    "WITH x AS (SELECT pg_stat_reset()) SELECT 1",
    "SELECT query FROM pg_stat_get_activity(NULL)",
    "SELECT pg_stat_get_backend_activity(1)",
    "SELECT no_such_function(1)",
]


def _resets(crm: EmbeddedPostgres) -> str:
    return crm.psql("SELECT stats_reset FROM pg_stat_database WHERE datname = 'crm'", "crm").strip()


@pytest.mark.parametrize("sql", VOLATILE)
def test_volatile_and_unknown_functions_are_refused(
    served: dict[str, Any], crm: EmbeddedPostgres, sql: str
) -> None:
    before = _resets(crm)
    with vendor(served) as c:
        assert refused(c, sql), sql
    assert _resets(crm) == before


def test_every_protocol_door_refuses_them(served: dict[str, Any], crm: EmbeddedPostgres) -> None:
    before = _resets(crm)
    w = Wire(served["port"])
    try:
        # simple Query, and two statements in one
        assert [e[0] for e in errors_of(w.query("SELECT pg_stat_reset()"))] == ["42501"]
        assert [e[0] for e in errors_of(w.query("SELECT 1; SELECT pg_stat_reset()"))] == ["42501"]
        # Parse / Bind / Execute
        out = w.run(m.Parse("", "SELECT txid_current()", ()), m.Bind("", ""), m.Execute(""), m.Sync())
        assert [e[0] for e in errors_of(out)] == ["42501"] and not rows(out)
        # COPY, SQL-level PREPARE, a cursor
        for sql in (
            "COPY (SELECT pg_stat_reset()) TO STDOUT",
            "PREPARE p AS SELECT pg_stat_reset()",
            "BEGIN; DECLARE c CURSOR FOR SELECT txid_current(); FETCH c; COMMIT",
        ):
            assert errors_of(w.query(sql)), sql
            w.query("ROLLBACK")
    finally:
        w.close()
    # In pipeline mode psycopg raises the refusal wherever its result is read: at execute when it
    # came back already, at fetch, or when the pipeline syncs.
    with vendor(served) as c, pytest.raises(psycopg.errors.InsufficientPrivilege), c.pipeline():
        cur = c.execute("SELECT pg_stat_reset()", prepare=True)
        cur.fetchall()
    assert _resets(crm) == before


def test_harmless_and_stable_functions_pass(served: dict[str, Any]) -> None:
    with vendor(served) as c:
        row = c.execute(
            "SELECT random() < 2, clock_timestamp() IS NOT NULL, now() IS NOT NULL, "
            "gen_random_uuid() IS NOT NULL, pg_total_relation_size('customers') > 0, "
            "pg_database_size(current_database()) > 0, pg_is_in_recovery(), "
            "pg_get_viewdef('pg_stat_activity'::regclass) IS NOT NULL, current_setting('server_version_num')"
        ).fetchone()
    assert row[:7] == (True, True, True, True, True, True, False)


PSQL_COMMANDS = [
    r"\d",
    r"\dt+",
    r"\d+ customers",
    r"\d call_records",
    r"\di",
    r"\dv",
    r"\ds",
    r"\dn+",
    r"\df",
    r"\du",
    r"\dx",
    r"\l+",
    r"\dp customers",
    r"\d pg_stat_activity",
    r"\sv pg_stat_activity",
]


def test_psql_describe_commands_work_for_the_vendor(served: dict[str, Any]) -> None:
    args = [str(bin_dir() / "psql"), "-X", "-h", "127.0.0.1", "-p", str(served["port"])]
    args += ["-U", VENDOR[0], "-d", "crm", "-v", "ON_ERROR_STOP=1"]
    for command in PSQL_COMMANDS:
        args += ["-c", command]
    res = subprocess.run(
        args,
        env={"PGPASSWORD": VENDOR[1], "PGSSLMODE": "disable", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and "maskgate" not in res.stderr, res.stderr
    assert "customers" in res.stdout and "pg_stat_statements" in res.stdout


def test_pg_dump_schema_only_works_for_the_vendor(served: dict[str, Any]) -> None:
    args = [str(bin_dir() / "pg_dump"), "-h", "127.0.0.1", "-p", str(served["port"]), "-U", VENDOR[0]]
    # accounts is left out: the vendor's database role reads it by column (not account_no), and
    # pg_dump locks every table it dumps, which needs a table-level grant.
    args += ["--schema-only", "-t", "customers", "-t", "call_records", "crm"]
    res = subprocess.run(
        args,
        env={"PGPASSWORD": VENDOR[1], "PGSSLMODE": "disable", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "CREATE TABLE public.customers" in res.stdout


# ---------------------------------------------------------------------------------------------
# Item 7: pg_stat_activity, pg_stat_statements, pg_stats
# ---------------------------------------------------------------------------------------------


def _busy_session(crm: EmbeddedPostgres, phone: str, started: threading.Event) -> threading.Thread:
    """Another session (straight to PostgreSQL) running a query that holds a customer number."""

    def run() -> None:
        with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm"), autocommit=True) as c:
            started.set()
            c.execute(
                f"SELECT /* {MARKER} */ id, pg_sleep(3) FROM customers WHERE phone = '{phone}'"
            ).fetchall()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT pid, state, query FROM pg_stat_activity",
        "SELECT * FROM pg_catalog.pg_stat_activity",
        "SELECT a.pid, a.query, d.datname FROM pg_stat_activity a JOIN pg_database d ON d.oid = a.datid",
    ],
)
def test_pg_stat_activity_masks_other_sessions_numbers(
    served: dict[str, Any], crm: EmbeddedPostgres, phone: str, sql: str
) -> None:
    started = threading.Event()
    busy = _busy_session(crm, phone, started)
    try:
        assert started.wait(10)
        got: list[Any] = []
        # The raw wire: a masked client_addr (inet) is text no driver would parse back.
        w = Wire(served["port"])
        try:
            for _ in range(50):
                out = w.query(sql)
                assert not errors_of(out), out
                got = [[v.decode() if v is not None else None for v in r] for r in rows(out)]
                if any(MARKER in str(r) for r in got):
                    break
                time.sleep(0.05)
        finally:
            w.close()
    finally:
        busy.join(10)
    seen = [r for r in got if MARKER in str(r)]
    assert seen, "the other session's statement is not visible"
    assert not leaked({phone}, got)
    assert "*" in str(seen)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT pid FROM pg_stat_activity WHERE query LIKE '%138%'",
        "SELECT pid FROM pg_stat_activity ORDER BY query",
        "SELECT count(*) FROM pg_stat_statements WHERE query ~ '1[0-9]{10}'",
    ],
)
def test_no_conditions_on_other_sessions_sql(served: dict[str, Any], sql: str) -> None:
    with vendor(served) as c:
        assert refused(c, sql)


def test_derived_values_of_other_sessions_sql_are_redacted(
    served: dict[str, Any], crm: EmbeddedPostgres, phone: str
) -> None:
    started = threading.Event()
    busy = _busy_session(crm, phone, started)
    try:
        assert started.wait(10)
        time.sleep(0.3)
        with vendor(served) as c:
            got = c.execute(
                "SELECT reverse(query), translate(query, '0123456789', 'abcdefghij') FROM pg_stat_activity"
            ).fetchall()
    finally:
        busy.join(10)
    assert got and not leaked({phone}, got)


def test_pg_stat_statements_masks_numbers(served: dict[str, Any], crm: EmbeddedPostgres, phone: str) -> None:
    # Utility statements are kept with their text (constants are not normalised away).
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm"), autocommit=True) as c:
        c.execute(f"DO $$ BEGIN PERFORM '{MARKER} {phone}'; END $$")
        c.execute(f"COMMENT ON TABLE audit_trail IS 'call back {phone}'")
        truth = c.execute("SELECT query FROM pg_stat_statements").fetchall()
    assert leaked({phone}, truth)  # the extension holds the number
    with vendor(served) as c:
        got = c.execute("SELECT queryid, calls, query FROM pg_stat_statements").fetchall()
        star = c.execute("SELECT * FROM pg_stat_statements").fetchall()
    assert any(MARKER in str(r) for r in got)
    assert not leaked({phone}, got, star)


def test_pg_stats_shows_only_columns_the_role_reads_in_clear(
    served: dict[str, Any], crm: EmbeddedPostgres, secrets: set[str]
) -> None:
    sql = "SELECT tablename, attname, most_common_vals::text, histogram_bounds::text FROM pg_stats"
    truth = crm.psql(sql + " WHERE schemaname = 'public'", "crm")
    assert leaked(secrets, truth)  # the statistics hold phone and id card numbers
    with vendor(served) as c:
        got = c.execute(sql + " WHERE schemaname = 'public'").fetchall()
        star = c.execute("SELECT * FROM pg_stats").fetchall()
        direct = c.execute("SELECT most_common_vals::text FROM pg_stats WHERE attname = 'phone'").fetchall()
    assert not leaked(secrets, got, star, direct)
    attnames = {(t, a) for t, a, _, _ in got}
    # Unclassified columns keep their statistics. (customers has none for the vendor at all: its
    # database role reads it under row-level security, and PostgreSQL hides those statistics.)
    assert ("call_records", "duration_s") in attnames
    assert not {a for _, a in attnames} & {"phone", "id_card", "bank_card", "name", "caller", "remark"}
    assert not {t for t, _ in attnames} & {"audit_trail"}  # a table the vendor may not read
    assert direct == []


# ---------------------------------------------------------------------------------------------
# Item 11: a column nobody classified, found at schema load
# ---------------------------------------------------------------------------------------------


def test_discovered_column_is_masked(served: dict[str, Any], secrets: set[str]) -> None:
    with vendor(served) as c:
        plain = c.execute("SELECT id, remark FROM call_records WHERE remark IS NOT NULL").fetchall()
        derived = c.execute("SELECT reverse(remark), remark || '' FROM call_records").fetchall()
        assert refused(c, "SELECT id FROM call_records WHERE remark LIKE '138%'")
    assert plain and all("*" in r[1] for r in plain)
    assert not leaked(secrets, plain, derived)


def test_discovered_columns_are_counted(served: dict[str, Any]) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{served['metrics']}/metrics", timeout=10) as r:
        text = r.read().decode()
    lines = [ln for ln in text.splitlines() if ln.startswith("maskgate_discovered_columns{")]
    assert any('class="mobile"' in ln and float(ln.rsplit(" ", 1)[1]) >= 1 for ln in lines), lines


def test_explain_against_the_database_shows_the_discovered_class(
    crm: EmbeddedPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    from proxy.cli import main
    from tests.integration.harness import DEMO_POLICY

    dsn = crm.dsn("maskgate_svc", SVC_PW, "crm")
    sql = "SELECT id, remark FROM call_records"
    args = ["explain", "--policy", str(DEMO_POLICY), "--user", VENDOR[0], "--schema", dsn]
    assert main([*args, "--format", "table", sql]) == 0
    assert "col 2 remark ← public.call_records.remark [mobile, discovered] → mask" in capsys.readouterr().out


DESK = ("desk_li", "desk-pass")


def test_pg_dump_data_of_readable_tables_is_masked_and_says_it_was_cut(
    served: dict[str, Any], crm: EmbeddedPostgres
) -> None:
    """The README's command: the desk dumps the tables it may read, denied ones excluded. Its rows
    arrive masked, cut at its max_rows, and pg_dump hears of the cut (a WARNING, which pg_dump's
    client_min_messages = warning keeps)."""
    args = [str(bin_dir() / "pg_dump"), "-h", "127.0.0.1", "-p", str(served["port"]), "-U", DESK[0]]
    # Denied tables and the sequences (a sequence is a relation the role's tables do not name).
    args += ["--verbose", "--exclude-table=audit_trail", "--exclude-table=accounts"]
    # The database's row-level security binds the desk's role: pg_dump must not turn it off.
    args += ["--exclude-table=branches", "--exclude-table=*_seq", "--enable-row-security", "crm"]
    res = subprocess.run(
        args,
        env={"PGPASSWORD": DESK[1], "PGSSLMODE": "disable", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "COPY public.customers" in res.stdout
    assert "maskgate: result truncated" in res.stderr
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as direct:
        phones = [r[0] for r in direct.execute("SELECT phone FROM customers").fetchall()]
    assert not [p for p in phones if p in res.stdout]
    assert "****" in res.stdout
