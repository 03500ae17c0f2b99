"""Least privilege in the database too (issue 9, class 1), and a session picture that never drifts
from the server's (class 3, the session side), through the real proxy and a real PostgreSQL.

The demo policy's vendor runs upstream as crm_vendor (logged in with its own password), the
service desk as crm_desk (SET ROLE by the proxy at login), the DBA as the service account. Each
database role holds the grants its policy role needs (proxy/demo/data.py): when the proxy is
made to allow a write here on purpose, PostgreSQL refuses it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from policies.decision import Allow
from proxy.demo.embedded_pg import EmbeddedPostgres
from proxy.pg.context import FACTS
from tests.conftest import start_crm
from tests.integration.harness import serve_demo

SVC_PW = "svc-secret-least-privilege"
USERS = {
    "vendor": ("vendor_zhang", "vendor-pass"),
    "desk": ("desk_li", "desk-pass"),
    "dba": ("dba_wang", "dba-pass"),
}


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = start_crm(tmp_path_factory.mktemp("pg-least"), SVC_PW, 300)
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("least"), crm, SVC_PW) as s:
        yield s


def connect(served: dict[str, Any], who: str, **kw: Any) -> psycopg.Connection[Any]:
    user, password = USERS[who]
    kw.setdefault("autocommit", True)
    return psycopg.connect(
        host="127.0.0.1",
        port=served["port"],
        user=user,
        password=password,
        dbname="crm",
        sslmode="disable",
        **kw,
    )


def direct(crm: EmbeddedPostgres, sql: str) -> list[tuple[Any, ...]]:
    """As the cluster's superuser, never through the proxy."""
    return [tuple(line.split("|")) for line in crm.psql(sql, "crm").splitlines()]


@pytest.mark.parametrize(
    ("who", "current", "session"),
    [
        ("vendor", "crm_vendor", "crm_vendor"),
        ("desk", "crm_desk", "maskgate_svc"),
        ("dba", "maskgate_svc", "maskgate_svc"),
    ],
)
def test_each_role_runs_as_its_database_role(
    served: dict[str, Any], who: str, current: str, session: str
) -> None:
    with connect(served, who) as c:
        assert c.execute("SELECT current_user, session_user").fetchone() == (current, session)


def test_the_database_sees_the_person_in_application_name(
    served: dict[str, Any], crm: EmbeddedPostgres
) -> None:
    with connect(served, "vendor", application_name="report-tool") as c, connect(served, "desk") as d:
        c.execute("SELECT 1")
        d.execute("SELECT 1")
        seen = direct(
            crm,
            "SELECT usename, application_name FROM pg_stat_activity "
            "WHERE application_name LIKE 'maskgate:%' ORDER BY 2",
        )
    assert ("maskgate_svc", "maskgate:desk_li") in seen
    assert ("crm_vendor", "maskgate:vendor_zhang/report-tool") in seen


@pytest.fixture()
def fooled(served: dict[str, Any]) -> Iterator[None]:
    """The proxy fooled on purpose: every statement allowed, as a parsing gap would allow it."""
    guard = served["app"].guard
    guard.decide = lambda *a, **kw: Allow(kind="unknown")
    try:
        yield
    finally:
        del guard.decide


WRITES = {
    "vendor": [
        "INSERT INTO customers (id, name, phone, id_card, branch_id) VALUES (999999, 'x', '1', '1', 12)",
        "UPDATE call_records SET notes = 'x' WHERE id = 1",
        "DELETE FROM accounts WHERE id = 1",
        "WITH u AS (UPDATE customers SET email = 'x' WHERE id = 1 RETURNING 1) SELECT * FROM u",
        "TRUNCATE call_records",
        "CREATE TABLE stash AS SELECT * FROM customers",
        "SELECT account_no FROM accounts",  # a bank_card it may not see: not granted either
        "SELECT * FROM audit_trail",
    ],
    "desk": [
        "INSERT INTO customers (id, name, phone, id_card, branch_id) VALUES (999999, 'x', '1', '1', 12)",
        "DELETE FROM customers WHERE id = 1",
        "UPDATE customers SET name = 'x' WHERE id = 1",  # only contact details may change
        "UPDATE call_records SET notes = 'x' WHERE id = 1",
        "SELECT * FROM accounts",
    ],
}


@pytest.mark.parametrize(("who", "sql"), [(w, s) for w, sqls in WRITES.items() for s in sqls])
def test_the_database_refuses_what_the_role_may_not_do_even_when_the_proxy_allows_it(
    served: dict[str, Any], crm: EmbeddedPostgres, fooled: None, who: str, sql: str
) -> None:
    before = direct(crm, "SELECT count(*), md5(string_agg(t::text, '' ORDER BY id)) FROM customers t")
    with connect(served, who) as c, pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
        c.execute(sql)
    # PostgreSQL's own refusal (the proxy allowed it): "permission denied for table …".
    assert "maskgate" not in str(info.value) and "permission denied" in str(info.value)
    assert direct(crm, "SELECT count(*), md5(string_agg(t::text, '' ORDER BY id)) FROM customers t") == before


def test_the_database_applies_the_vendors_row_filter_too(
    served: dict[str, Any], crm: EmbeddedPostgres, fooled: None
) -> None:
    # With the proxy's own row filter out of the way, row-level security still shows branch 12 only.
    with connect(served, "vendor") as c:
        branches = {b for (b,) in c.execute("SELECT DISTINCT branch_id FROM customers").fetchall()}
    assert branches == {12}
    assert len(direct(crm, "SELECT DISTINCT branch_id FROM customers")) > 1


def test_the_desk_may_still_fix_contact_details(served: dict[str, Any], crm: EmbeddedPostgres) -> None:
    with connect(served, "desk") as c:
        c.execute("UPDATE customers SET email = 'fixed@example.com' WHERE id = 1")
    assert direct(crm, "SELECT email FROM customers WHERE id = 1") == [("fixed@example.com",)]


IDENTITY_CHANGES = [
    "RESET ROLE",
    "SET ROLE maskgate_svc",
    "SET ROLE NONE",
    "SET SESSION AUTHORIZATION DEFAULT",
    "SELECT set_config('role', 'maskgate_svc', false)",
    "DISCARD ALL",
    "UPDATE pg_settings SET setting = 'maskgate_svc' WHERE name = 'role'",
    "SET application_name = 'maskgate:dba_wang/psql'",  # another person's name
]


@pytest.mark.parametrize("sql", IDENTITY_CHANGES)
@pytest.mark.parametrize("who", ["vendor", "desk"])
def test_a_session_cannot_change_who_it_is_upstream(served: dict[str, Any], who: str, sql: str) -> None:
    with connect(served, who, autocommit=False) as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="maskgate: "):
            c.execute(sql)
        c.rollback()
        current = c.execute("SELECT current_user").fetchone()
        app = c.execute("SHOW application_name").fetchone()
    assert current == ({"vendor": "crm_vendor", "desk": "crm_desk"}[who],)
    assert app == (f"maskgate:{USERS[who][0]}",)


@pytest.mark.parametrize(
    ("sql", "client"),
    [
        ("SET application_name = 'PostgreSQL JDBC Driver'", "PostgreSQL JDBC Driver"),  # pgjdbc
        ("SELECT set_config('application_name', 'it''s me', false)", "it's me"),
    ],
)
@pytest.mark.parametrize("who", ["vendor", "desk"])
def test_a_renamed_session_still_names_the_person(
    served: dict[str, Any], who: str, sql: str, client: str
) -> None:
    # Drivers rename their session (pgjdbc at connect): allowed, and the proxy puts the person's
    # maskgate:<user>/ back in front of the new name before the next statement runs.
    with connect(served, who) as c:
        c.execute(sql)
        app = c.execute("SHOW application_name").fetchone()
        c.execute("RESET application_name")
        reset = c.execute("SHOW application_name").fetchone()
    assert app == (f"maskgate:{USERS[who][0]}/{client}",)
    assert reset == (f"maskgate:{USERS[who][0]}",)


DRIFT = [
    "SET SCHEMA 'information_schema'",
    "SELECT set_config('search_path', 'information_schema', false)",
    "BEGIN; SET search_path = information_schema; ROLLBACK",
    "BEGIN; SET LOCAL search_path = information_schema; COMMIT",
    "BEGIN; SAVEPOINT s; SET search_path = information_schema; ROLLBACK TO s; COMMIT",
    "SET search_path = information_schema; SELECT 1/0",
]


def tracked_path(served: dict[str, Any]) -> tuple[str, ...]:
    """The search_path the proxy decides the (only) open vendor session's statements under."""
    (server,) = served["app"].servers
    paths = [
        c.session.ctx.tracker.search_path
        for c in list(server.connections)
        if c.session.ctx.tracker.principal is not None
        and c.session.ctx.tracker.principal.user == "vendor_zhang"
    ]
    assert len(paths) == 1
    return paths[0]


@pytest.mark.parametrize("sql", DRIFT)
def test_the_proxy_follows_the_servers_search_path(served: dict[str, Any], sql: str) -> None:
    with connect(served, "vendor") as c:
        with contextlib.suppress(psycopg.Error):
            c.execute(sql)
        (shown,) = c.execute("SHOW search_path").fetchone()  # type: ignore[misc]
        assert tracked_path(served) == FACTS.search_path_from_setting(shown)
