"""SQLAlchemy 2 (psycopg 3 dialect) and pandas through the real proxy with the demo policy: what a
data analyst's notebook does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.integration.clients.expect import CUSTOMERS_SQL, check_customer, masked_mobile

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine(served: dict[str, Any]) -> Iterator[sa.Engine]:
    eng = sa.create_engine(
        f"postgresql+psycopg://vendor_zhang:vendor-pass@127.0.0.1:{served['port']}/crm?sslmode=disable"
    )
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture(scope="module")
def dba_engine(served: dict[str, Any]) -> Iterator[sa.Engine]:
    eng = sa.create_engine(
        f"postgresql+psycopg://dba_wang:dba-pass@127.0.0.1:{served['port']}/crm?sslmode=disable"
    )
    try:
        yield eng
    finally:
        eng.dispose()


def test_read_sql_of_a_masked_table(engine, clear) -> None:
    df = pd.read_sql(sa.text(CUSTOMERS_SQL + " ORDER BY id"), engine)
    truth = clear(CUSTOMERS_SQL + " WHERE branch_id = 12 ORDER BY id")
    assert list(df.columns) == ["id", "name", "phone", "id_card", "branch_id"]
    assert len(df) == len(truth) > 0
    for masked, row in zip(df.itertuples(index=False), truth, strict=True):
        check_customer(tuple(masked), row)


def test_read_sql_table_stops_at_the_row_limit(engine, clear) -> None:
    df = pd.read_sql_table("call_records", engine)
    assert len(df) == 200
    truth = dict(clear("SELECT id, caller FROM call_records"))
    assert all(c == masked_mobile(truth[i]) for i, c in zip(df["id"], df["caller"], strict=True))
    assert df["started_at"].dtype.kind == "M"  # timestamps still parse as timestamps


def test_read_sql_chunksize_without_streaming(engine) -> None:
    """chunksize alone: the whole (limited) result is fetched, pandas only slices it."""
    with engine.connect() as conn:
        chunks = list(
            pd.read_sql(sa.text("SELECT id, caller FROM call_records ORDER BY id"), conn, chunksize=64)
        )
    assert [len(c) for c in chunks] == [64, 64, 64, 8]


def test_read_sql_chunksize_with_stream_results(engine, clear) -> None:
    truth = dict(clear("SELECT id, caller FROM call_records WHERE id <= 200"))
    with engine.connect().execution_options(stream_results=True, max_row_buffer=64) as conn:
        chunks = list(
            pd.read_sql(sa.text("SELECT id, caller FROM call_records ORDER BY id"), conn, chunksize=64)
        )
    assert [len(c) for c in chunks] == [64, 64, 64, 8]
    df = pd.concat(chunks)
    assert list(df["id"]) == list(range(1, 201))
    assert all(c == masked_mobile(truth[i]) for i, c in zip(df["id"], df["caller"], strict=True))


def test_stream_results_for_an_unrestricted_role(dba_engine, clear) -> None:
    with dba_engine.connect().execution_options(stream_results=True) as conn:
        chunks = list(
            pd.read_sql(sa.text("SELECT id, caller FROM call_records ORDER BY id"), conn, chunksize=300)
        )
    assert [len(c) for c in chunks] == [300, 300, 200]
    assert list(pd.concat(chunks).itertuples(index=False, name=None)) == clear(
        "SELECT id, caller FROM call_records ORDER BY id"
    )


def test_inspection(engine) -> None:
    insp = sa.inspect(engine)
    assert sorted(insp.get_table_names()) == ["accounts", "audit_trail", "call_records", "customers"]
    cols = {c["name"]: c for c in insp.get_columns("customers")}
    assert list(cols) == [
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
    assert isinstance(cols["id"]["type"], sa.BigInteger)
    assert isinstance(cols["phone"]["type"], sa.Text)
    assert cols["phone"]["nullable"] is False
    assert insp.get_pk_constraint("customers")["constrained_columns"] == ["id"]
    [fk] = insp.get_foreign_keys("call_records")
    assert (fk["constrained_columns"], fk["referred_table"]) == (["customer_id"], "customers")
    assert [i["name"] for i in insp.get_indexes("call_records")] == ["call_records_customer"]


def test_orm_style_select_and_refusal(engine) -> None:
    """A Core select() compiles to a bound, parameterized statement; a refusal is a ProgrammingError
    subclass carrying SQLSTATE 42501, and the pooled connection goes on working."""
    meta = sa.MetaData()
    customers = sa.Table("customers", meta, autoload_with=engine)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(customers.c.id, customers.c.phone).where(customers.c.id > 0).limit(5)
        ).all()
        assert len(rows) == 5 and all("****" in p for _, p in rows)
        with pytest.raises(sa.exc.ProgrammingError) as info:
            conn.execute(sa.select(customers.c.bank_card).limit(1))
        assert info.value.orig.sqlstate == "42501"
        conn.rollback()
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
