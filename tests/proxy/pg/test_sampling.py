"""Sampling the demo database: the unclassified note column is found, nothing is printed in clear."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from policies.schema import Table
from proxy.cli import main
from proxy.demo.embedded_pg import EmbeddedPostgres
from proxy.pg.catalog import load_schema
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
