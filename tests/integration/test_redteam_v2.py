"""Red team, second round: new ways past the restructured proxy (sessions, parser, folding).

Same attacker as tests/integration/test_redteam.py: `vendor_zhang` of policies/examples/demo.yaml
(select only, mobile / id_card / person_name masked, bank_card denied, no predicates on masked
classes, `branch_id = 12` on customers, 200 rows, no audit_trail). Every test asserts the SECURE
behaviour. A test marked `xfail(strict=True, reason="LEAK: ...")` is a leak confirmed today
against the real proxy in front of a real PostgreSQL: it fails because the data gets out (or the
write happens). Remove the marker once the proxy is fixed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from proxy.demo.embedded_pg import EmbeddedPostgres
from proxy.pg import messages as m
from tests.conftest import start_crm
from tests.integration.harness import serve_demo
from tests.integration.test_redteam import Wire, errors_of, leaked, refused, rows, tags

SVC_PW = "svc-secret-redteam-v2"
VENDOR = ("vendor_zhang", "vendor-pass")
DBA = ("dba_wang", "dba-pass")
A_TO_0 = str.maketrans("abcdefghij", "0123456789")


# ---------------------------------------------------------------------------------------------
# Fixtures: one cluster, one App, ground truth read directly from PostgreSQL
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = start_crm(tmp_path_factory.mktemp("pg-redteam-v2"), SVC_PW, 400)
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("redteam-v2"), crm, SVC_PW) as s:
        yield s


@pytest.fixture(scope="module")
def truth(crm: EmbeddedPostgres) -> dict[str, Any]:
    """The secrets, read as the service account straight from PostgreSQL (never via the proxy)."""
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm")) as c:
        cust = c.execute(
            "SELECT id, name, phone, id_card, bank_card, branch_id FROM customers ORDER BY id"
        ).fetchall()
    target = next(r for r in cust if r[5] == 12)
    secrets: set[str] = set()
    for r in cust:
        secrets.update(x for x in r[2:5] if x)
    return {
        "target_id": target[0],
        "phone": target[2],
        "id_card": target[3],
        "secrets": secrets,
        "names": {r[1] for r in cust},
        "cards": {r[4] for r in cust if r[4]},
        "other_branches": {r[0] for r in cust if r[5] != 12},
        "all_ids": {r[0] for r in cust},
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


@pytest.fixture()
def wire(served: dict[str, Any]) -> Iterator[Wire]:
    w = Wire(served["port"])
    try:
        yield w
    finally:
        w.close()


def _decoded(out: list[tuple[Any, ...]]) -> list[list[str | None]]:
    return [[None if v is None else bytes(v).decode() for v in r] for r in rows(out)]


# ---------------------------------------------------------------------------------------------
# 1. search_path: the proxy's idea of it and the server's drift apart
# ---------------------------------------------------------------------------------------------
#
# An unqualified name that the schema does not list in any schema of the proxy's search_path is
# taken for a relation of search_path[0]; with `pg_catalog` first that is a *catalog* relation:
# no `tables` pattern needed, no class on any column, no row filter, no row limit, computations
# and predicates allowed. It only takes the server to be back on `public` at that moment.


def _catalog_shadow_leaks(out: list[tuple[Any, ...]], truth: dict[str, Any]) -> list[str]:
    bad = []
    got = _decoded(out)
    if leaked(truth["secrets"], got):
        bad.append("full numbers")
    if any(r and r[0] is not None and r[0].isdigit() and int(r[0]) in truth["other_branches"] for r in got):
        bad.append("rows outside branch 12")
    if len(got) > 200:
        bad.append(f"{len(got)} rows (max_rows 200)")
    return bad


def test_pipelined_search_path_change_is_seen_by_the_next_statement(
    wire: Wire, truth: dict[str, Any]
) -> None:
    assert not errors_of(wire.query("SET search_path = pg_catalog"))
    # Both messages in one write: the second is decided while the first is still running.
    out = wire.run(
        m.Query("SET search_path = public"),
        m.Query("SELECT id, branch_id, phone::bigint, bank_card FROM customers"),
        syncs=2,
    )
    assert not _catalog_shadow_leaks(out, truth), _catalog_shadow_leaks(out, truth)


def test_pipelined_extended_search_path_change(wire: Wire, truth: dict[str, Any]) -> None:
    assert not errors_of(wire.query("SET search_path = pg_catalog"))
    out = wire.run(
        m.Parse("", "SET search_path = public"),
        m.Bind("", ""),
        m.Execute(""),
        m.Parse(
            "",
            "SELECT id, branch_id, phone::bigint, translate(id_card, '0123456789', 'abcdefghij') "
            "FROM customers WHERE phone LIKE '1%'",
        ),
        m.Bind("", ""),
        m.Execute(""),
        m.Sync(),
    )
    got = [[v.translate(A_TO_0) if v else v for v in r] for r in _decoded(out)]
    bad = _catalog_shadow_leaks(out, truth) + (["id cards"] if leaked(truth["secrets"], got) else [])
    assert not bad, bad


@pytest.mark.parametrize(
    "setup",
    [
        "SET search_path = pg_catalog; SELECT set_config('search_path', 'public', false)",
        "BEGIN; SET search_path = pg_catalog; ROLLBACK",
        "BEGIN; SET LOCAL search_path = pg_catalog; COMMIT",
        "BEGIN; SAVEPOINT a; SET search_path = pg_catalog; ROLLBACK TO a",
    ],
    ids=["set_config", "rollback", "set-local-commit", "rollback-to-savepoint"],
)
def test_search_path_undone_within_one_string(
    served: dict[str, Any], truth: dict[str, Any], setup: str
) -> None:
    got: list[Any] = []
    # Judged under the path the server will have (public): bank_card is denied there.
    with (
        connect(served) as c,
        c.cursor() as cur,
        contextlib.suppress(psycopg.errors.InsufficientPrivilege),
    ):
        cur.execute(f"{setup}; SELECT id, branch_id, phone::bigint, bank_card::numeric FROM customers")
        while cur.nextset():
            pass
        got = cur.fetchall()
    bad = []
    if leaked(truth["secrets"], got):
        bad.append("full phones / denied bank cards")
    if {r[0] for r in got} & truth["other_branches"]:
        bad.append("rows outside branch 12")
    if len(got) > 200:
        bad.append(f"{len(got)} rows")
    assert not bad, bad


def test_search_path_drift_reads_a_denied_table(served: dict[str, Any]) -> None:
    with connect(served) as c:
        assert refused(c, "SELECT actor, action FROM audit_trail")
        drift = "BEGIN; SET search_path = pg_catalog; ROLLBACK"
        assert refused(c, f"{drift}; SELECT actor, action FROM audit_trail")


def test_search_path_changes_that_hold(served: dict[str, Any], truth: dict[str, Any]) -> None:
    # What is followed correctly today: SET, RESET, SET SCHEMA, one string, separate messages.
    with connect(served) as c:
        for setup in (
            "SET search_path = pg_catalog; RESET search_path",
            "SET search_path = pg_catalog; SET search_path = public",
            "SET search_path = pg_catalog; SET SCHEMA 'public'",
        ):
            c.execute(setup)
            assert refused(c, "SELECT bank_card FROM customers"), setup
            got = c.execute("SELECT id, phone FROM customers").fetchall()
            assert not leaked(truth["secrets"], got)
            assert not {r[0] for r in got} & truth["other_branches"]
        c.execute("SET search_path = pg_catalog")
        c.execute("SELECT set_config('search_path', 'public', false)")  # reported: followed
        assert refused(c, "SELECT bank_card FROM customers")
        c.execute("BEGIN")
        c.execute("SET LOCAL search_path = pg_catalog")
        c.execute("COMMIT")  # reverts, and the server says so
        assert refused(c, "SELECT bank_card FROM customers")


# ---------------------------------------------------------------------------------------------
# 2. Several statements in one string: the rewritten string is the parts joined with "; "
# ---------------------------------------------------------------------------------------------
#
# When any part is rewritten (row filter, LIMIT), the upstream SQL is the parts' texts joined
# with "; ". A part that is sent as written and ends in a `--` comment (the client put its `;`
# on the next line) now comments out the separator and the next part's first line. What the
# proxy judged as a string literal on that line's continuation becomes SQL for the server.


def _joined(first: str, smuggled: str) -> str:
    # Proxy's view: `first` ; SELECT '<a string>' AS z ; SELECT id FROM customers (rewritten)
    # Server's view: `first` <smuggled>          (the rest is inside comments)
    assert "'" not in smuggled and "\n" not in smuggled
    return f"{first} -- c\n; SELECT 'x\n {smuggled} --' AS z; SELECT id FROM customers"


def test_line_comment_before_semicolon_smuggles_sql(wire: Wire, truth: dict[str, Any]) -> None:
    out = wire.query(
        _joined(
            "SELECT relname::text AS t FROM pg_class WHERE false",
            "UNION ALL SELECT translate(concat_ws($$|$$, id, branch_id, phone, id_card, bank_card), "
            "$$0123456789$$, $$abcdefghij$$) FROM customers",
        )
    )
    got = [r[0].translate(A_TO_0) for r in _decoded(out) if r and r[0]]
    bad = []
    if leaked(truth["secrets"], got):
        bad.append("full phones / id cards / denied bank cards")
    if {int(r.split("|")[0]) for r in got if r.split("|")[0].isdigit()} & truth["other_branches"]:
        bad.append("rows outside branch 12")
    if len(got) > 200:
        bad.append(f"{len(got)} rows")
    assert not bad, bad


def test_line_comment_before_semicolon_smuggles_a_write(wire: Wire) -> None:
    out = wire.query(_joined("SHOW search_path", "; UPDATE customers SET address = address WHERE false"))
    assert not any(t.startswith("UPDATE") for t in tags(out)), tags(out)


def test_comment_inside_a_rewritten_part_holds(wire: Wire, truth: dict[str, Any]) -> None:
    # A comment inside a rewritten part is re-rendered as /* … */ with `*/` defused.
    out = wire.query("SELECT id -- */ ; SELECT phone::bigint FROM customers; /*\nFROM customers")
    assert not leaked(truth["secrets"], rows(out))
    assert len(rows(out)) <= 200


# ---------------------------------------------------------------------------------------------
# 3. Column alias lists on a table: `customers AS x(a, id)` renames by position
# ---------------------------------------------------------------------------------------------


def test_table_alias_column_list_renames_a_classified_column(
    served: dict[str, Any], truth: dict[str, Any]
) -> None:
    with connect(served) as c:
        names = {r[0] for r in c.execute("SELECT x.id FROM customers AS x(a, id)").fetchall()}
    assert not names & truth["names"], sorted(names & truth["names"])[:3]


def test_table_alias_column_list_reads_phone_and_denied_bank_card(
    served: dict[str, Any], truth: dict[str, Any]
) -> None:
    tr = "'0123456789', 'abcdefghij'"
    got: list[str] = []
    with connect(served) as c:
        for sql in (
            f"SELECT translate(x.id, {tr}) FROM customers AS x(a, b, id)",  # phone
            f"SELECT translate(x.id, {tr}) FROM customers AS x(a, b, c, d, id)",  # bank_card
        ):
            with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
                got += [r[0].translate(A_TO_0) for r in c.execute(sql).fetchall() if r[0]]
    assert not leaked(truth["secrets"], got)


def test_table_alias_column_list_launders_a_write_flow(served: dict[str, Any], truth: dict[str, Any]) -> None:
    target = 9
    with connect(served, ("desk_li", "desk-pass")) as c:
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            c.execute(
                "UPDATE customers SET email = translate(x.id, '0123456789', 'abcdefghij') "
                "FROM customers AS x(a, b, id) "
                f"WHERE x.id_card = customers.id_card AND customers.id = {target}"
            )
        email = c.execute("SELECT email FROM customers WHERE id = %s", (target,)).fetchone()[0]
    assert not leaked(truth["secrets"], (email or "").translate(A_TO_0))


# ---------------------------------------------------------------------------------------------
# 4. Other sessions' SQL through the functions behind pg_stat_activity
# ---------------------------------------------------------------------------------------------


def test_other_sessions_sql_through_stat_functions(served: dict[str, Any], truth: dict[str, Any]) -> None:
    phone, idc = truth["phone"], truth["id_card"]
    marker = f"rt{time.time_ns()}"
    got: list[str] = []
    with connect(served, DBA) as dba:
        # The DBA's connection stays open: its last statement stays in pg_stat_activity.
        dba.execute(f"SELECT id, '{marker}' FROM customers WHERE phone = '{phone}' OR id_card = '{idc}'")
        with connect(served) as c:
            for sql in (
                "SELECT translate(query, '0123456789', 'abcdefghij') FROM pg_stat_get_activity(NULL)",
                "SELECT translate(pg_stat_get_backend_activity(s), '0123456789', 'abcdefghij') "
                "FROM pg_stat_get_backend_idset() s",
            ):
                with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
                    got += [r[0] for r in c.execute(sql).fetchall() if r[0]]
    tagged = marker.translate(str.maketrans("0123456789", "abcdefghij"))
    seen = [q.translate(A_TO_0) for q in got if tagged in q]
    assert not leaked({phone, idc}, seen), seen


# ---------------------------------------------------------------------------------------------
# 5. Prepared statements: SQL-level DEALLOCATE / DISCARD / PREPARE reuse a protocol-level name
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("drop", ["DEALLOCATE s1", "DEALLOCATE ALL", "DISCARD ALL"])
def test_sql_level_prepare_takes_over_a_protocol_statement_name(
    wire: Wire, truth: dict[str, Any], drop: str
) -> None:
    out = wire.run(m.Parse("s1", "SELECT 'x'::text AS a, 'y'::text AS b, 'z'::text AS c"), m.Sync())
    assert not errors_of(out)
    dropped = errors_of(wire.query(drop))
    # DISCARD ALL also resets the session authorization: refused for a role with a database_role
    # (the vendor's); then s1 stays, PREPARE s1 fails as a duplicate, and nothing may leak either.
    assert not dropped or (drop == "DISCARD ALL" and dropped[0][0] == "42501"), dropped
    if dropped:
        assert errors_of(wire.query("PREPARE s1 AS SELECT name FROM customers"))
    # Allowed on its own: every output is masked or redacted when it is decided as itself.
    out = wire.query(
        "PREPARE s1 AS SELECT name, translate(phone, '0123456789', 'abcdefghij'), "
        "translate(id_card, '0123456789', 'abcdefghij') FROM customers"
    )
    assert bool(errors_of(out)) == bool(dropped)
    out = wire.run(m.Bind("", "s1"), m.Execute(""), m.Sync())
    got = _decoded(out)
    bad = []
    if {r[0] for r in got} & truth["names"]:
        bad.append("full names")
    if leaked(truth["secrets"], [[v.translate(A_TO_0) for v in r[1:] if v] for r in got]):
        bad.append("full phones and id cards")
    assert not bad, bad


# ---------------------------------------------------------------------------------------------
# 6. Audit: a statement still in flight when the client goes away is never recorded
# ---------------------------------------------------------------------------------------------


def _audit_text(served: dict[str, Any]) -> str:
    audit = served["dir"] / "audit.jsonl"
    return audit.read_text(errors="replace") if audit.exists() else ""


def test_write_then_disconnect_is_audited(served: dict[str, Any], crm: EmbeddedPostgres) -> None:
    marker = f"rt{time.time_ns()}"
    # The audit log masks what detectors find (the e-mail address): the record is found by a
    # letters-only literal of the same statement, which no detector touches.
    tag = "rtmark" + "".join(chr(ord("a") + int(d)) for d in str(time.time_ns()))
    target = 7
    desk = _wire_as(served, ("desk_li", "desk-pass"))
    desk.s.sendall(
        m.Query(
            f"UPDATE customers SET email = '{marker}@example.com' WHERE id = {target} AND '{tag}' <> ''"
        ).serialize()
        + m.Terminate().serialize()
    )
    desk.s.close()
    changed = False
    with psycopg.connect(crm.dsn("maskgate_svc", SVC_PW, "crm"), autocommit=True) as c:
        deadline = time.time() + 5
        while time.time() < deadline and not changed:
            row = c.execute("SELECT email FROM customers WHERE id = %s", (target,)).fetchone()
            changed = bool(row and row[0] == f"{marker}@example.com")
            time.sleep(0.05)
    # A later statement of another session is audited: once it is in the file, so would be ours.
    probe = f"probe{marker}"
    with connect(served, ("desk_li", "desk-pass")) as c:
        c.execute(f"SELECT '{probe}'").fetchall()
    deadline = time.time() + 5
    while time.time() < deadline and probe not in _audit_text(served):
        time.sleep(0.05)
    assert probe in _audit_text(served)
    assert not (changed and tag not in _audit_text(served)), "unaudited write"


def _wire_as(served: dict[str, Any], who: tuple[str, str]) -> Wire:
    import tests.integration.test_redteam as base

    saved = base.VENDOR
    base.VENDOR = who
    try:
        return Wire(served["port"])
    finally:
        base.VENDOR = saved


# ---------------------------------------------------------------------------------------------
# 7. Unicode spaces: whitespace to sqlglot, identifier characters to PostgreSQL
# ---------------------------------------------------------------------------------------------
#
# PostgreSQL's lexer takes every non-ASCII character (any byte >= 0x80) as an identifier
# character, and `$` continues an identifier. sqlglot's tokenizer takes U+3000 (the ideographic
# space of Chinese input methods) and U+00A0 for whitespace. So `x<U+3000>$$` is one identifier
# to the server but `x` followed by the start of a dollar-quoted string to maskgate: whatever
# follows, up to the next `$$`, is a string literal to maskgate and SQL to the server. LISTEN
# takes any name and is session plumbing, so the string is judged as `LISTEN x` alone.


@pytest.mark.parametrize("space", ["\u3000", "\u00a0"], ids=["ideographic", "nbsp"])
def test_unicode_space_dollar_quote_smuggles_a_read(wire: Wire, truth: dict[str, Any], space: str) -> None:
    out = wire.query(
        f"LISTEN x{space}$$; SELECT id, branch_id, phone::bigint, "
        "translate(bank_card, $q$0123456789$q$, $q$abcdefghij$q$) FROM customers; --$$"
    )
    got = _decoded(out)
    bad = []
    if leaked(truth["secrets"], [[v.translate(A_TO_0) for v in r if v] for r in got]):
        bad.append("full phones / denied bank cards")
    if {int(r[0]) for r in got if r[0] and r[0].isdigit()} & truth["other_branches"]:
        bad.append("rows outside branch 12")
    assert not bad, bad


def test_unicode_space_dollar_quote_smuggles_a_write(wire: Wire) -> None:
    out = wire.query("LISTEN x\u3000$$; UPDATE customers SET address = address WHERE false; --$$")
    assert not any(t.startswith("UPDATE") for t in tags(out)), tags(out)


# ---------------------------------------------------------------------------------------------
# 8. Row filter: places the rewriter does not look
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        # the table inside a parenthesized join: its parent is not a FROM / JOIN
        "SELECT c.id, c.branch_id FROM (customers c CROSS JOIN (SELECT 1) x)",
        "SELECT c.id, c.branch_id FROM (customers c JOIN call_records r ON c.id = r.customer_id)",
        "SELECT c.id, c.branch_id FROM call_records r "
        "JOIN (customers c JOIN accounts a ON a.customer_id = c.id) ON r.customer_id = c.id",
    ],
    ids=["paren-cross-join", "paren-join", "nested-paren-join"],
)
def test_row_filter_inside_parenthesized_join(
    served: dict[str, Any], truth: dict[str, Any], sql: str
) -> None:
    with connect(served) as c:
        got = c.execute(sql).fetchall()
    assert not {r[0] for r in got} & truth["other_branches"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id, branch_id FROM customers "
        "WHERE EXISTS (WITH customers AS (SELECT 1) SELECT 1 FROM customers)",
        "SELECT id, branch_id FROM customers, (WITH customers AS (SELECT 1 AS x) SELECT x FROM customers) s",
        "SELECT id, branch_id, (WITH customers AS (SELECT 1 AS x) SELECT x FROM customers) FROM customers",
    ],
    ids=["exists", "derived-table", "scalar-subquery"],
)
def test_row_filter_with_cte_of_the_same_name_in_another_scope(
    served: dict[str, Any], truth: dict[str, Any], sql: str
) -> None:
    with connect(served) as c:
        got = c.execute(sql).fetchall()
    assert not {r[0] for r in got} & truth["other_branches"]


def test_row_filter_where_it_holds(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served) as c:
        for sql in (
            "WITH customers AS (SELECT 1 AS id, 12 AS branch_id) SELECT id, branch_id FROM public.customers",
            "SELECT c.id FROM call_records r LEFT JOIN LATERAL (SELECT id FROM customers) c ON true",
            "SELECT c.id FROM call_records r NATURAL JOIN customers c",
            "SELECT id FROM ROWS FROM (generate_series(1, 2)) g, customers",
        ):
            got = c.execute(sql).fetchall()
            assert not {r[0] for r in got} & truth["other_branches"], sql


# ---------------------------------------------------------------------------------------------
# 9. Redaction keeps the length of a derived value: total functions encode digits into it
# ---------------------------------------------------------------------------------------------
#
# A value derived from a masked column is "redacted whole": every character becomes `*`. The
# number of characters stays. `replace` and `substr` are total functions (allowed on masked
# values even under masked_predicates: deny), and nested `replace` maps digit d of one position
# to d+1 letters: the length of the redacted output is the digit plus one.


def _length_coded(column: str, positions: int) -> str:
    cols = []
    for p in range(1, positions + 1):
        expr = f"substr({column}, {p}, 1)"
        for d in range(10):
            expr = f"replace({expr}, '{d}', '{chr(97 + d) * (d + 1)}')"
        cols.append(f"replace({expr}, 'X', '{'k' * 11}')")  # the ID check character
    return ", ".join(cols)


def test_redacted_length_encodes_digits(served: dict[str, Any], truth: dict[str, Any]) -> None:
    with connect(served) as c:
        try:
            phones = c.execute(f"SELECT {_length_coded('phone', 11)} FROM customers").fetchall()
            ids = c.execute(f"SELECT {_length_coded('id_card', 18)} FROM customers").fetchall()
        except psycopg.errors.InsufficientPrivilege:
            return  # refused (a replacement longer than its search string grows the value)
    assert all(set(v) <= {"*"} for r in phones for v in r if v)  # it *is* redacted...
    decoded = ["".join("0123456789X"[len(v) - 1] for v in r) for r in phones + ids]
    assert not leaked(truth["secrets"], decoded)  # ...yet the lengths spell the numbers
