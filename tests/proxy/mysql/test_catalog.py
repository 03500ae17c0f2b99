"""The live MySQL/MariaDB schema loader against a private MariaDB holding the demo crm data, and
`--schema mysql://…` in the CLI."""

from __future__ import annotations

import doctest
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from policies import Engine, Schema, load_policy
from policies.decision import Allow
from proxy.cli import main
from proxy.demo.embedded_mariadb import EmbeddedMariaDB
from proxy.mysql import catalog
from tests.conftest import CRM_VENDOR_PASSWORD, start_crm_mysql

DEMO = str(Path(__file__).parents[3] / "policies" / "examples" / "demo.yaml")
SERVICE_PASSWORD = "svc-catalog-secret"


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedMariaDB]:
    db = start_crm_mysql(tmp_path_factory.mktemp("catalog-mariadb"), SERVICE_PASSWORD, 200)
    try:
        db.sql(
            "CREATE VIEW crm.contacts AS SELECT id, upper(name) AS name, phone FROM crm.customers;"
            "CREATE FUNCTION crm.Phone_Of(i bigint) RETURNS varchar(32) READS SQL DATA"
            "  RETURN (SELECT phone FROM crm.customers WHERE id = i);"
            # Another database the service account may read, with two tables whose names differ
            # only in case (two tables on Linux).
            "CREATE DATABASE ops;"
            "CREATE TABLE ops.tickets (id int, customer_id bigint, body text);"
            "CREATE TABLE ops.Tickets (ID int, Subject varchar(200));"
            "GRANT SELECT ON ops.* TO maskgate_svc@'%';"
            # Invisible to the service account: not loaded.
            "CREATE DATABASE secret; CREATE TABLE secret.keys (k varchar(64));"
        )
        yield db
    finally:
        db.destroy()


@pytest.fixture(scope="module")
def dsn(crm: EmbeddedMariaDB) -> str:
    return crm.dsn("maskgate_svc", SERVICE_PASSWORD, "crm")


@pytest.fixture(scope="module")
def schema(dsn: str) -> Schema:
    return catalog.load_schema(dsn)


def test_doctests() -> None:
    assert doctest.testmod(catalog).failed == 0


def test_tables_columns_in_order(schema: Schema) -> None:
    assert schema.database == "crm" and schema.dialect == "mysql"
    customers = schema.tables[("crm", "customers")]
    assert customers.kind == "table"
    assert customers.columns == (
        "id",
        "name",
        "phone",
        "id_card",
        "bank_card",
        "email",
        "branch_id",
        "address",
        "created_at",
    )
    assert customers.types[0].startswith("bigint") and customers.types[2] == "varchar(32)"
    assert schema.tables[("crm", "accounts")].columns[-2:] == ("balance", "opened_at")
    # Every database the account sees, keyed as stored: case matters for table names.
    assert schema.tables[("ops", "tickets")].columns == ("id", "customer_id", "body")
    assert schema.tables[("ops", "Tickets")].columns == ("ID", "Subject")
    databases = {s for s, _ in schema.tables}
    assert databases == {"crm", "ops"}  # no system databases, nothing the account cannot see
    saved = Schema.from_json(json.loads(json.dumps(schema.to_json())))
    assert saved == schema


def test_views_and_routines(schema: Schema) -> None:
    view = schema.tables[("crm", "contacts")]
    assert view.is_view and view.columns == ("id", "name", "phone")
    assert view.definition is not None and "`crm`.`customers`" in view.definition
    assert ("crm", "phone_of") in schema.functions
    assert schema.is_user_function(None, "PHONE_OF")
    assert schema.volatility is None  # MySQL has no volatility: the dialect's lists apply


def test_account_sees_only_its_grants(crm: EmbeddedMariaDB) -> None:
    vendor = catalog.load_schema(crm.dsn("crm_vendor", CRM_VENDOR_PASSWORD, "crm"))
    assert ("crm", "audit_trail") not in vendor.tables
    assert vendor.tables[("crm", "accounts")].columns == ("id", "customer_id", "balance", "opened_at")


def test_unreadable_view_fails_the_load(crm: EmbeddedMariaDB) -> None:
    # crm_vendor may SELECT the view but not SHOW VIEW: read as a table, its phone column
    # would be unclassified, so the load fails and says what to grant.
    crm.sql("GRANT SELECT ON crm.contacts TO crm_vendor@'%'")
    try:
        with pytest.raises(catalog.UnreadableViews, match=r"crm\.contacts.*SHOW VIEW"):
            catalog.load_schema(crm.dsn("crm_vendor", CRM_VENDOR_PASSWORD, "crm"))
    finally:
        crm.sql("REVOKE SELECT ON crm.contacts FROM crm_vendor@'%'")


def test_mysql_decisions_with_the_loaded_schema(schema: Schema) -> None:
    engine = Engine(load_policy(DEMO), schema)
    d = engine.decide("vendor", "SELECT id, phone FROM customers", dialect="mysql", database="crm")
    assert isinstance(d, Allow), d
    assert [c.action for c in d.columns] == ["clear", "mask"]
    d = engine.decide("vendor", "SELECT id, Phone FROM crm.customers", dialect="mysql", database="ops")
    assert isinstance(d, Allow) and [c.action for c in d.columns] == ["clear", "mask"]
    # The star expands from the loaded columns, and bank_card is refused to the vendor.
    d = engine.decide("vendor", "SELECT * FROM customers", dialect="mysql", database="crm")
    assert not d.allowed and d.reason == "class_denied"
    no_schema = Engine(load_policy(DEMO), Schema(None, "mysql"))
    assert no_schema.decide("vendor", "SELECT * FROM customers", dialect="mysql", database="crm").reason == (
        "whole_row"
    )
    # Lineage follows the view's definition to customers, whose row filter binds the vendor.
    d = engine.decide("vendor", "SELECT id, phone FROM contacts", dialect="mysql", database="crm")
    assert d.reason == "table_denied" and "reads crm.customers" in d.message
    d = engine.decide("vendor", "SELECT phone_of(1)", dialect="mysql", database="crm")
    assert not d.allowed and d.reason == "function_denied"


def test_loader_discovers_and_remembers(dsn: str) -> None:
    now = [1000.0]
    loader = catalog.SchemaLoader(lambda database: dsn, clock=lambda: now[0])
    first = loader("crm")
    assert first.discovered[("crm", "customers", "phone")] == "mobile"
    assert first.discovered[("crm", "call_records", "caller")] == "mobile"
    assert ("crm", "contacts", "phone") not in first.discovered  # views read their tables
    # Nothing is due an hour later minus a second: the findings stand without a new sample.
    now[0] += catalog.RESAMPLE_S - 1
    assert loader._due(first, loader._seen["crm"], now[0]) == []
    assert loader("crm").discovered == first.discovered
    plain = catalog.SchemaLoader(lambda database: dsn, discover=False)("crm")
    assert plain.discovered == {} and plain.tables == first.tables


def test_sample_skips_a_table_it_cannot_read(crm: EmbeddedMariaDB, schema: Schema) -> None:
    conn = catalog.connect(crm.dsn("crm_vendor", CRM_VENDOR_PASSWORD, "crm"))
    try:
        run = catalog.sample(conn, schema, rows=50, tables=[("crm", "customers"), ("crm", "audit_trail")])
    finally:
        conn.close()
    assert run.sampled == (("crm", "customers"),)
    assert run.skipped and run.skipped[0].startswith("crm.audit_trail:")


def test_dsn_parameters_fail_closed() -> None:
    with pytest.raises(ValueError, match="ssl-mode"):
        catalog.connect_args("mysql://u:p@h/crm?ssl-mode=REQUIRED")
    with pytest.raises(ValueError):
        catalog.connect_args("postgresql://u:p@h/crm")
    assert catalog.is_dsn("mysql://u@h/crm") and not catalog.is_dsn("schema.json")
    assert "database" not in catalog.connect_args("mysql://u@h")


def test_cli_explain_and_check(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "explain",
            "--policy",
            DEMO,
            "--user",
            "vendor_zhang",
            "--schema",
            dsn,
            "SELECT id, phone FROM customers",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["decision"] == "allow", out
    # The dialect and the current database come from the mysql:// schema.
    assert [c["action"] for c in out["columns"]] == ["clear", "mask"]
    # MariaDB has no row-level security: the vendor's branch filter is the rewrite's.
    assert "`crm`.customers" in out["rewritten_sql"] and "branch_id = 12" in out["rewritten_sql"]
    assert main(["check", DEMO, "--schema", dsn]) == 0
    out = capsys.readouterr().out
    assert "not checked on MySQL" in out and out.strip().splitlines()[-1].startswith("ok:")


def test_app_wires_the_mysql_loader(tmp_path: Path) -> None:
    from proxy.app import schema_loaders
    from proxy.config import Config, Endpoint, Listener, Upstream

    upstream = Upstream("mysql", "127.0.0.1", 3307, "maskgate_svc", "pw", "crm")
    config = Config(tmp_path / "c.yaml", Path(DEMO), mysql=Listener(Endpoint("127.0.0.1", 0), upstream))
    loaders, defaults = schema_loaders(config)
    assert isinstance(loaders["mysql"], catalog.SchemaLoader) and defaults["mysql"] == "crm"
    assert loaders["mysql"].dsn_for("ops") == "mysql://maskgate_svc:pw@127.0.0.1:3307/ops"
