"""`maskgate canary plant` against a real PostgreSQL: what it inserts and which keys it records,
the row's key value among them (the policy's customer_key, else the table's primary key)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from proxy.cli import main
from proxy.demo.embedded_pg import EmbeddedPostgres
from proxy.services import canaries
from proxy.services.disclosure import value_key

KEY = "plant-test-key"
POLICY = """\
version: 1
{key}columns:
  public.customers.phone: mobile
  public.customers.email: email
  public.customers.name: person_name
roles:
  dba:
    statements: [select]
    tables: ["*"]
"""


@pytest.fixture
def database(embedded_pg: EmbeddedPostgres) -> Iterator[str]:
    """A database of its own (the session cluster is shared), owned by a login role: its DSN."""
    name = f"plant_{secrets.token_hex(4)}"
    embedded_pg.psql(f"CREATE ROLE {name} LOGIN PASSWORD 'pw'")
    embedded_pg.psql(f"CREATE DATABASE {name} OWNER {name}")
    dsn = embedded_pg.dsn(name, "pw", name)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE TABLE customers (id serial PRIMARY KEY, name text, phone text NOT NULL,"
            " email text, branch_id integer NOT NULL)"
        )
        conn.execute(
            "CREATE TABLE visits (customer_id integer, day date, phone text, PRIMARY KEY (customer_id, day))"
        )
    yield dsn
    embedded_pg.psql(f"DROP DATABASE {name}")
    embedded_pg.psql(f"DROP ROLE {name}")


def plant(
    tmp_path: Path, dsn: str, table: str, capsys: pytest.CaptureFixture[str], *, key: bool
) -> list[str]:
    """Plant 2 canaries under a policy with or without a customer_key: the printed rows."""
    (tmp_path / "policy.yaml").write_text(
        POLICY.format(key="customer_key: public.customers.id\n" if key else "")
    )
    (tmp_path / "maskgate.yaml").write_text(f"policy: policy.yaml\nmasking_key: {KEY}\n")
    capsys.readouterr()
    args = ["canary", "plant", "--schema", dsn, "--table", table, "--count", "2"]
    assert main([*args, "--config", str(tmp_path / "maskgate.yaml")]) == 0
    return capsys.readouterr().out.splitlines()


def keyed(value: str) -> bytes:
    return value_key(KEY.encode(), "", value)


@pytest.mark.parametrize(("key", "cls"), [(True, "customer_key"), (False, "row_key")])
def test_a_canary_row_records_its_key_and_e_mail(
    tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str], key: bool, cls: str
) -> None:
    lines = plant(tmp_path, database, "public.customers", capsys, key=key)
    rows = [dict(kv.split("=", 1) for kv in line.split("  ")) for line in lines]
    assert [sorted(r) for r in rows] == [["email", "id", "phone"]] * 2
    with psycopg.connect(database) as conn:
        stored = {str(i): (p, e) for i, p, e in conn.execute("SELECT id, phone, email FROM customers")}
    assert {r["id"]: (r["phone"], r["email"]) for r in rows} == stored
    planted = canaries.load(tmp_path / canaries.FILE_NAME)
    for r in rows:
        # The id read back with RETURNING: a read of the row by its key alone trips the canary.
        by_key = planted[keyed(r["id"])]
        assert (by_key.cls, by_key.table) == (cls, "public.customers")
        assert by_key.column == f"{database.rsplit('/', 1)[1]}.public.customers.id"
        assert planted[keyed(r["email"])].cls == "email"
        assert planted[keyed(r["phone"])].cls == "mobile"
    text = (tmp_path / canaries.FILE_NAME).read_text()
    assert not any(r["phone"] in text or r["email"] in text for r in rows)
    assert canaries.key_columns(planted) == (f"{database.rsplit('/', 1)[1]}.public.customers.id",)


def test_a_table_without_a_one_column_key_plants_its_numbers_only(
    tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = plant(tmp_path, database, "public.visits", capsys, key=False)
    assert len(lines) == 2 and all(line.startswith("phone=") for line in lines)
    planted = json.loads((tmp_path / canaries.FILE_NAME).read_text())["canaries"]
    assert [c["class"] for c in planted] == ["mobile", "mobile"]


def test_a_canary_row_looks_like_any_customer(
    tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dump that skips odd-looking rows must not be able to skip the canaries: their plain
    columns are a real row's and their name and e-mail ordinary ones."""
    with psycopg.connect(database) as conn:
        conn.execute(
            "INSERT INTO customers (name, phone, email, branch_id)"
            " VALUES ('王芳', '13912345670', 'wf@qq.com', 7)"
        )
    lines = plant(tmp_path, database, "public.customers", capsys, key=True)
    phones = [dict(kv.split("=", 1) for kv in line.split("  "))["phone"] for line in lines]
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT name, email, branch_id FROM customers WHERE phone = ANY(%s)", (phones,)
        ).fetchall()
    assert len(rows) == 2
    for name, email, branch in rows:
        assert branch == 7  # copied from the real row
        assert "canary" not in f"{name}{email}".lower() and "金丝雀" not in name
        assert not email.endswith(".invalid")
