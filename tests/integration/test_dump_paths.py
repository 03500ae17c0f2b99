"""What pg_dump and scripts meet through the real proxy: the client's own LIMIT under the row
limit, the truncation warning, LOCK … IN ACCESS SHARE MODE, COPY's option list and statements
the parser does not understand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proxy.demo.embedded_pg import EmbeddedPostgres
from tests.integration.harness import connect_proxy, crm_database, serve_demo

SVC_PW = "svc-secret-for-dump-paths"


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with crm_database(tmp_path_factory, "pg-dump-paths", SVC_PW, 400) as pg:
        yield pg


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("serve-dump-paths"), crm, SVC_PW) as s:
        yield s


USERS = {
    "vendor": ("vendor_zhang", "vendor-pass"),
    "desk": ("desk_li", "desk-pass"),
    "dba": ("dba_wang", "dba-pass"),
}


def connect(served: dict[str, Any], who: str, **kw: Any) -> psycopg.Connection[Any]:
    return connect_proxy(served, USERS[who], **kw)


def warnings_of(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    conn.add_notice_handler(lambda d: got.append((d.severity_nonlocalized or "", d.message_primary or "")))
    return got


def copy_out(conn: psycopg.Connection[Any], sql: str) -> bytes:
    with conn.cursor() as cur, cur.copy(sql) as copy:
        return b"".join(bytes(b) for b in copy)


# --- the client's own LIMIT under the role's --------------------------------------------------


def test_copy_query_keeps_a_smaller_limit(served: dict[str, Any]) -> None:
    with connect(served, "vendor", autocommit=True) as c:
        notes = warnings_of(c)
        data = copy_out(c, "COPY (SELECT id FROM call_records ORDER BY id LIMIT 5) TO STDOUT")
        assert data.count(b"\n") == 5
        data = copy_out(c, "COPY (SELECT id FROM call_records ORDER BY id FETCH FIRST 7 ROWS ONLY) TO STDOUT")
        assert data.count(b"\n") == 7
        assert notes == []
        data = copy_out(c, "COPY (SELECT id FROM call_records LIMIT 5000) TO STDOUT")
        assert data.count(b"\n") == 200
        assert notes == [("WARNING", "maskgate: result truncated to 200 rows")]


def test_parameter_limit_is_the_smaller_of_the_two(served: dict[str, Any]) -> None:
    with connect(served, "vendor", autocommit=True) as c:
        notes = warnings_of(c)
        rows = c.execute("SELECT id FROM call_records ORDER BY id LIMIT %s", (9,)).fetchall()
        assert len(rows) == 9 and notes == []
        rows = c.execute("SELECT id FROM call_records ORDER BY id LIMIT %s", (None,)).fetchall()
        assert len(rows) == 200
        rows = c.execute("SELECT id FROM call_records ORDER BY id LIMIT %s", (100_000,)).fetchall()
        assert len(rows) == 200
        assert notes == [("WARNING", "maskgate: result truncated to 200 rows")] * 2
        rows = c.execute("SELECT id FROM call_records UNION SELECT id FROM call_records LIMIT 3").fetchall()
        assert len(rows) == 3


def test_truncation_is_a_warning_that_survives_client_min_messages(served: dict[str, Any]) -> None:
    with connect(served, "vendor", autocommit=True) as c:
        c.execute("SET client_min_messages = warning")
        notes = warnings_of(c)
        assert len(c.execute("SELECT id FROM call_records").fetchall()) == 200
        assert notes == [("WARNING", "maskgate: result truncated to 200 rows")]


# --- LOCK … IN ACCESS SHARE MODE (pg_dump) -----------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "LOCK TABLE public.customers, public.call_records IN ACCESS SHARE MODE",
        'LOCK TABLE "customers", Call_Records IN access share mode NOWAIT',
        "lock only public.customers in access share mode",
        "LOCK call_records * IN ACCESS SHARE MODE",
        "LOCK TABLE customers IN ACCESS SHARE MODE",
    ],
)
def test_select_role_may_take_access_share(served: dict[str, Any], sql: str) -> None:
    with connect(served, "vendor") as c:
        c.execute(sql)
        held = c.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND mode = 'AccessShareLock'"
        ).fetchone()
        assert held is not None and held[0] >= 1


@pytest.mark.parametrize(
    "sql",
    [
        "LOCK TABLE public.accounts, public.audit_trail IN ACCESS SHARE MODE",
        'LOCK TABLE accounts, "audit_trail" IN ACCESS SHARE MODE',
        "LOCK TABLE accounts IN SHARE MODE",
        "LOCK TABLE accounts IN ROW SHARE MODE",
        "LOCK TABLE accounts",
        "LOCK TABLE pg_catalog.pg_authid IN ACCESS SHARE MODE",
    ],
)
def test_other_locks_and_denied_tables_are_refused(served: dict[str, Any], sql: str) -> None:
    with connect(served, "vendor") as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute(sql)


def test_lock_follows_the_sessions_search_path(served: dict[str, Any], crm: EmbeddedPostgres) -> None:
    """`audit_trail` found through search_path is the denied table, whatever it is called."""
    with connect(served, "vendor") as c:
        c.execute("SET search_path = public")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("LOCK TABLE AUDIT_TRAIL IN ACCESS SHARE MODE")


def audit_records(served: dict[str, Any]) -> list[dict[str, Any]]:
    path = Path(served["dir"]) / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- COPY's option list --------------------------------------------------------------------


def clear_callers(served: dict[str, Any]) -> set[str]:
    with connect(served, "dba") as c:
        return {r[0] for r in c.execute("SELECT caller FROM call_records").fetchall()}


def test_vendor_copy_csv_is_masked_and_valid_csv(served: dict[str, Any]) -> None:
    import csv
    import io

    secrets = clear_callers(served)
    with connect(served, "vendor", autocommit=True) as c:
        data = copy_out(
            c,
            "COPY (SELECT id, caller, notes FROM call_records ORDER BY id LIMIT 30) "
            "TO STDOUT (FORMAT csv, HEADER)",
        ).decode()
    rows = list(csv.reader(io.StringIO(data)))
    assert rows[0] == ["id", "caller", "notes"] and len(rows) == 31
    assert all(len(r) == 3 and "****" in r[1] for r in rows[1:])
    assert not any(s in data for s in secrets)


@pytest.mark.parametrize(
    "options",
    [
        "(FORMAT csv, DELIMITER '1')",
        "(FORMAT csv, DELIMITER '3', QUOTE '8', ESCAPE '\\', FORCE_QUOTE *, NULL '0')",
        "WITH CSV HEADER DELIMITER AS ';' NULL AS 'n' QUOTE AS '''' FORCE QUOTE caller",
        "(FORMAT text, DELIMITER '|', NULL '')",
        "(DELIMITER ',')",
    ],
)
def test_vendor_copy_layouts_never_pass_a_number(served: dict[str, Any], options: str) -> None:
    secrets = clear_callers(served)
    with connect(served, "vendor", autocommit=True) as c:
        data = copy_out(
            c, f"COPY (SELECT E'a\\tb' AS x, caller, id FROM call_records) TO STDOUT {options}"
        ).decode()
    assert data.count("****") == 200  # a header is not a row of the limit
    assert not any(s in data for s in secrets)


def test_vendor_copy_binary_and_encoding_are_refused(served: dict[str, Any]) -> None:
    with connect(served, "vendor", autocommit=True) as c:
        for sql in (
            "COPY (SELECT id, caller FROM call_records) TO STDOUT (FORMAT binary)",
            "COPY call_records (id) TO STDOUT BINARY",
            "COPY (SELECT caller FROM call_records) TO STDOUT (FORMAT csv, ENCODING 'LATIN1')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                copy_out(c, sql)


def test_dba_copy_csv_with_every_option(served: dict[str, Any]) -> None:
    secrets = clear_callers(served)
    with connect(served, "dba", autocommit=True) as c:
        data = copy_out(
            c,
            "COPY (SELECT id, caller, NULL AS n FROM call_records) TO STDOUT (FORMAT csv, HEADER true, "
            "DELIMITER ';', QUOTE '\"', FORCE_QUOTE *, NULL 'x', ENCODING 'UTF8')",
        ).decode()
    lines = data.splitlines()
    assert lines[0] == "id;caller;n" and len(lines) > 400  # FORCE_QUOTE quotes values only
    assert {line.split(";")[1].strip('"') for line in lines[1:]} == secrets
    assert all(line.endswith(";x") for line in lines[1:])


# --- statements the parser does not understand -----------------------------------------------

UNPARSED = "VALUES ('data') ORDER BY 1 USING <"


def test_dba_runs_what_the_parser_does_not_understand_audited_unparsed(served: dict[str, Any]) -> None:
    import time

    with connect(served, "dba", autocommit=True) as c:
        assert c.execute(UNPARSED).fetchone() == ("data",)
        assert copy_out(c, "COPY (SELECT 1, 2) TO STDOUT (DELIMITER E'|')") == b"1|2\n"
    for _ in range(100):
        records = [r for r in audit_records(served) if r.get("kind") == "unparsed"]
        if len(records) >= 2:
            break
        time.sleep(0.05)
    assert len(records) >= 2
    assert all(r["decision"] == "allow" and r["user"] == "dba_wang" for r in records)


@pytest.mark.parametrize("who", ["vendor", "desk"])
def test_everyone_else_is_refused_what_the_parser_does_not_understand(
    served: dict[str, Any], who: str
) -> None:
    with connect(served, who, autocommit=True) as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not understood"):
            c.execute(UNPARSED)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not understood"):
            copy_out(c, "COPY (SELECT 1, 2) TO STDOUT (DELIMITER E'|')")
        assert c.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("fmt", ["text", "csv"])
def test_vendor_null_string_equal_to_a_number_passes_nothing(served: dict[str, Any], fmt: str) -> None:
    with connect(served, "dba") as c:
        row = c.execute("SELECT caller FROM call_records ORDER BY id LIMIT 1").fetchone()
    assert row is not None
    guess = row[0]
    sql = f"COPY (SELECT id, caller FROM call_records ORDER BY id) TO STDOUT (FORMAT {fmt}, NULL '{guess}')"
    with connect(served, "vendor", autocommit=True) as c:
        data = copy_out(c, sql)
    assert data and guess.encode() not in data
