"""Sampling the demo database: the unclassified note column is found, nothing is printed in clear."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from policies.schema import Table
from proxy.cli import main
from proxy.demo.embedded_pg import EmbeddedPostgres
from proxy.pg import catalog
from proxy.pg.catalog import SchemaLoader, load_schema
from proxy.pg.sampling import _sample_sql, sample, sampled_type
from tests.conftest import start_crm

pytestmark = pytest.mark.integration
SVC = "svc-sampling"


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = start_crm(tmp_path_factory.mktemp("pg-sampling"), SVC, 300)
    try:
        yield pg
    finally:
        pg.destroy()


def test_sampled_types() -> None:
    assert sampled_type("character varying(20)") and sampled_type("bigint") and sampled_type("jsonb")
    assert sampled_type("text[]") and sampled_type("numeric(20,0)")
    assert not sampled_type("integer") and not sampled_type("timestamp with time zone")


def test_sample_sql_quotes_names_and_samples_large_tables() -> None:
    t = Table('we"ird', "Clients", ("a",))
    assert _sample_sql(t, ["Mobile"], 100, 50) == 'SELECT "Mobile"::text FROM "we""ird"."Clients" LIMIT 100'
    assert "TABLESAMPLE SYSTEM (2.000000)" in _sample_sql(t, ["a"], 100, 10_000)


def test_demo_columns_found(crm: EmbeddedPostgres) -> None:
    with psycopg.connect(crm.dsn("maskgate_svc", SVC, "crm"), autocommit=True) as conn:
        schema = load_schema(conn)
        run = sample(conn, schema, rows=500)
    by = {(f.table, f.column): f for f in run.findings}
    assert by[("customers", "phone")].cls == "mobile"
    assert by[("customers", "id_card")].cls == "id_card"
    assert by[("call_records", "notes")].cls == "free_text"
    assert run.tables >= 3 and not run.skipped


def test_discover_command_prints_a_snippet(crm: EmbeddedPostgres, capsys: pytest.CaptureFixture[str]) -> None:
    policy = Path(__file__).parents[3] / "policies" / "examples" / "demo.yaml"
    dsn = crm.dsn("maskgate_svc", SVC, "crm")
    assert main(["discover", "--schema", dsn, "--rows", "300"]) == 0
    out = capsys.readouterr().out
    assert "  crm.customers.phone: mobile  # " in out
    assert "  crm.call_records.notes: free_text  # " in out
    with psycopg.connect(dsn) as c:
        phones = [r[0] for r in c.execute("SELECT phone FROM customers").fetchall()]
    assert not any(p in out for p in phones)
    # With the demo policy, what it classifies already is left out.
    assert main(["discover", "--schema", dsn, "--rows", "300", "--policy", str(policy)]) == 0
    out = capsys.readouterr().out
    assert "customers.phone" not in out and "call_records.notes" not in out


class Clock:
    """A clock a test moves by hand (sampling's deadline and the loader's memory read it)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_serve_loader_records_discovered_columns(crm: EmbeddedPostgres) -> None:
    dsn = crm.dsn("maskgate_svc", SVC, "crm")
    schema = SchemaLoader(lambda database: dsn)("crm")
    assert schema.discovered[("public", "customers", "phone")] == "mobile"
    assert schema.discovered[("public", "call_records", "notes")] == "free_text"
    assert ("public", "customers", "branch_id") not in schema.discovered
    assert SchemaLoader(lambda database: dsn, discover=False)("crm").discovered == {}


def test_serve_loader_samples_new_tables_first_and_remembers_the_rest(
    crm: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each load samples within its time bound: tables it has not seen first, then the oldest
    samples; what it did not reach this time keeps its last findings."""
    dsn = crm.dsn("maskgate_svc", SVC, "crm")
    clock = Clock()
    loader = SchemaLoader(lambda database: dsn, clock=clock)
    orders: list[list[tuple[str, str]]] = []
    real = catalog.sample

    def one_table(conn, schema, **kw):  # type: ignore[no-untyped-def]
        orders.append(list(kw["tables"]))
        return real(conn, schema, **{**kw, "tables": kw["tables"][:1]})  # as if the deadline hit

    monkeypatch.setattr(catalog, "sample", one_table)
    first = loader("crm")
    assert orders[-1][0] == ("public", "accounts")  # never sampled: by name
    assert {k[1] for k in first.discovered} == {"accounts"}
    loader("crm")
    assert orders[-1][0] == ("public", "audit_trail")  # the next one not seen yet
    third = loader("crm")
    assert orders[-1][0] == ("public", "call_records")
    assert {k[1] for k in third.discovered} == {"accounts", "call_records"}  # accounts remembered
    assert {k[1] for k in loader("crm").discovered} == {"accounts", "call_records", "customers"}
    assert orders[-1] == [("public", "customers")]
    fifth = loader("crm")
    assert orders[-1] == []  # all sampled a moment ago: nothing to do, findings kept
    assert {k[1] for k in fifth.discovered} == {"accounts", "call_records", "customers"}
    clock.now += catalog.RESAMPLE_S
    loader("crm")
    assert orders[-1][0] == ("public", "accounts")  # everything seen: the oldest sample first
    crm.psql("ALTER TABLE accounts ADD COLUMN memo text", "crm")
    try:
        loader("crm")
        assert orders[-1][0] == ("public", "accounts")  # its columns changed
    finally:
        crm.psql("ALTER TABLE accounts DROP COLUMN memo", "crm")


def test_serve_loader_says_what_it_did_not_sample(
    crm: EmbeddedPostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = crm.dsn("maskgate_svc", SVC, "crm")
    schema = SchemaLoader(lambda database: dsn, deadline_s=0)("crm")
    assert schema.discovered == {} and schema.tables
    err = capsys.readouterr().err
    assert "maskgate: discovery in database 'crm' did not sample public.accounts: deadline" in err
