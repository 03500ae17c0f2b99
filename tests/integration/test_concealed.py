"""A value derived from a classified column reveals nothing of it (issue 9, class 5), through the
real proxy in front of a real PostgreSQL.

Redacted values used to keep the length of what they replaced, and NULL stayed NULL: a chain of
`replace(substr(phone, k, 1), '0', 'xx')…` with one column per digit position spelled the number
in star lengths, and `nullif(substr(phone, 4, 1), '8')` told the digit by its NULLs. Every value
derived from a masked class is now one constant of its type, whatever the input, NULL included,
in text and binary results and in COPY.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from proxy.demo.embedded_pg import EmbeddedPostgres
from proxy.pg.auth import make_verifier
from tests.conftest import start_crm
from tests.integration.harness import serve_demo

SVC_PW = "svc-secret-concealed"
VENDOR = ("vendor_zhang", "vendor-pass")
PROBER = ("prober_qian", "prober-pass")
# A role that may compute and compare freely on masked values (masked_predicates: allow): the
# engine lets nullif/CASE through, so only the concealment stands between it and the digits.
EXTRA_POLICY = f"""version: 1
roles:
  prober:
    statements: [select]
    tables: ["crm.customers"]
    max_rows: 500
    see: {{mobile: mask, id_card: mask, person_name: mask, bank_card: mask}}
    masked_predicates: allow
users:
  {PROBER[0]}:
    role: prober
    password: "{make_verifier(PROBER[1])}"
"""


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = start_crm(tmp_path_factory.mktemp("pg-concealed"), SVC_PW, 300)
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def served(crm: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve_demo(tmp_path_factory.mktemp("concealed"), crm, SVC_PW, extra_policy=EXTRA_POLICY) as s:
        yield s


def connect(served: dict[str, Any], who: tuple[str, str]) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1",
        port=served["port"],
        user=who[0],
        password=who[1],
        dbname="crm",
        sslmode="disable",
        autocommit=True,
    )


def digit_chain(k: int, grow: bool = False) -> str:
    """One column whose length depends on the digit at position k.

    With grow, digit d becomes d+1 characters (a replace() that grows its input, which the engine
    refuses since it is also a timing oracle); without, digits 0-4 vanish and 5-9 become one 'x',
    which no rule refuses, so only the concealment stands in the way.
    """
    expr = f"substr(phone, {k}, 1)"
    for d in range(10):
        into = "x" * (d + 1) if grow else ("" if d < 5 else "x")
        expr = f"replace({expr}, '{d}', '{into}')"
    return expr


@pytest.mark.parametrize("mode", ["text", "binary"])
def test_digit_position_chains_return_one_constant_for_every_row(served: dict[str, Any], mode: str) -> None:
    columns = ", ".join(f"{digit_chain(k)} AS d{k}" for k in range(1, 12))
    with connect(served, VENDOR) as c, c.cursor(binary=mode == "binary") as cur:
        rows = cur.execute(f"SELECT id, {columns} FROM customers ORDER BY id").fetchall()
    assert rows
    assert {v for r in rows for v in r[1:]} == {"****"}


@pytest.mark.parametrize("mode", ["text", "binary"])
def test_growing_digit_chains_are_refused_and_the_session_goes_on(served: dict[str, Any], mode: str) -> None:
    with connect(served, VENDOR) as c, c.cursor(binary=mode == "binary") as cur:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            cur.execute(f"SELECT id, {digit_chain(4, grow=True)} FROM customers")
        assert cur.execute("SELECT 1").fetchone() == (1,)


def test_digit_position_chains_in_copy(served: dict[str, Any]) -> None:
    sql = f"COPY (SELECT id, {digit_chain(4)}, {digit_chain(11)} FROM customers) TO STDOUT"
    with connect(served, VENDOR) as c, c.cursor() as cur, cur.copy(sql) as copy:
        lines = b"".join(bytes(chunk) for chunk in copy).decode().splitlines()
    assert lines
    assert {tuple(line.split("\t")[1:]) for line in lines} == {("****", "****")}


NULL_TRICKS = [
    "nullif(substr(phone, 4, 1), '8')",
    "CASE WHEN substr(phone, 4, 1) = '8' THEN NULL ELSE 'x' END",
    "CASE WHEN substr(phone, 4, 1) = '8' THEN NULL ELSE 1 END",
    "nullif(length(phone) - 11 + ascii(substr(phone, 4, 1)), 56)",
    "nullif(substr(bank_card, 16, 1), '5')",  # bank_card is NULL for about a tenth of the rows
    "bank_card || ''",
    "length(bank_card)",
]


@pytest.mark.parametrize("expr", NULL_TRICKS)
@pytest.mark.parametrize("mode", ["text", "binary"])
def test_nullif_tricks_return_no_nulls(served: dict[str, Any], expr: str, mode: str) -> None:
    with connect(served, PROBER) as c, c.cursor(binary=mode == "binary") as cur:
        values = [r[0] for r in cur.execute(f"SELECT {expr} FROM customers ORDER BY id").fetchall()]
    # The same expression straight from the database has NULLs (so the test means something).
    with psycopg.connect(served["pg"].dsn("maskgate_svc", SVC_PW, "crm")) as direct:
        truth = [r[0] for r in direct.execute(f"SELECT {expr} FROM customers ORDER BY id").fetchall()]
    assert None in truth and len(set(truth)) > 1
    assert len(values) == len(truth)
    assert None not in values and len(set(values)) == 1


# A derived value of each type comes back as that type's constant, in both formats.
TYPED = [
    ("length(phone)", 0),
    ("length(phone)::int8", 0),
    ("length(phone)::numeric", Decimal(0)),
    ("length(phone)::float8", 0.0),
    ("phone IS NULL", False),
    ("to_jsonb(upper(phone))", "****"),
    ("array[upper(phone)]", []),
    ("md5(phone)::uuid", uuid.UUID(int=0)),
    ("date '2020-01-01' + length(phone)", dt.date(2000, 1, 1)),
    ("convert_to(phone, 'UTF8')", b"****"),
]


@pytest.mark.parametrize(("expr", "want"), TYPED, ids=[e for e, _ in TYPED])
@pytest.mark.parametrize("mode", ["text", "binary"])
def test_derived_values_keep_their_type(served: dict[str, Any], expr: str, want: object, mode: str) -> None:
    with connect(served, PROBER) as c, c.cursor(binary=mode == "binary") as cur:
        values = [
            v if not isinstance(v, memoryview) else bytes(v)
            for (v,) in cur.execute(f"SELECT {expr} FROM customers").fetchall()
        ]
    assert values and all(type(v) is type(want) and v == want for v in values)
