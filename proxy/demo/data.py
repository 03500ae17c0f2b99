"""The demo/bench `crm` database: its tables and a deterministic faker zh_CN seed.

Owns the DDL, the database roles the demo policy runs as with their grants, and the generated
rows (through a psycopg connection or SQL it hands out). Used by `make demo`, `make bench` and the
integration tests, so all three see the same shape of data and the same least-privileged roles.
"""

from __future__ import annotations

import datetime as dt
import io
import random
from collections.abc import Iterator

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS customers (
    id          bigint PRIMARY KEY,
    name        text NOT NULL,
    phone       text NOT NULL,
    id_card     text NOT NULL,
    bank_card   text,
    email       text,
    branch_id   integer NOT NULL,
    address     text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS call_records (
    id           bigint PRIMARY KEY,
    customer_id  bigint REFERENCES customers(id),
    caller       text NOT NULL,
    callee       text NOT NULL,
    started_at   timestamptz NOT NULL,
    duration_s   integer NOT NULL,
    notes        text
);
CREATE TABLE IF NOT EXISTS accounts (
    id           bigint PRIMARY KEY,
    customer_id  bigint REFERENCES customers(id),
    account_no   text NOT NULL,
    balance      numeric(14, 2) NOT NULL,
    opened_at    date NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_trail (
    id      bigserial PRIMARY KEY,
    actor   text NOT NULL,
    action  text NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS call_records_customer ON call_records (customer_id);
"""

# The database roles the demo policy's roles run as (policies/examples/demo.yaml, `database_role`),
# each with the rights its policy role needs and nothing more, so the database refuses a write
# (or another branch's customers) even if maskgate were fooled. This is the setup a DBA does once.
VENDOR_ROLE, DESK_ROLE = "crm_vendor", "crm_desk"


def database_roles_sql(service_account: str, vendor_password: str) -> str:
    """Cluster-wide, as a superuser (idempotent): crm_vendor logs in with its own password (maskgate
    has it in its config); crm_desk cannot log in, and the service account may SET ROLE to it."""
    quoted = vendor_password.replace("'", "''")
    return f"""
DO $$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{VENDOR_ROLE}') THEN
    CREATE ROLE {VENDOR_ROLE};
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{DESK_ROLE}') THEN
    CREATE ROLE {DESK_ROLE};
  END IF;
END$$;
ALTER ROLE {VENDOR_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD '{quoted}';
ALTER ROLE {DESK_ROLE} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
GRANT {DESK_ROLE} TO {service_account};
-- diagnosis: other sessions' SQL in pg_stat_activity and pg_stat_statements, which maskgate
-- serves with the customer numbers in it masked (the query column is free_text)
GRANT pg_read_all_stats TO {VENDOR_ROLE}, {DESK_ROLE};
"""


# In the crm database, as the tables' owner (idempotent). vendor: SELECT on the tables it may read
# (not audit_trail; accounts without account_no, a bank_card it may not see), and only branch 12
# of customers, its row filter, as a row-level security policy. customers is granted whole: the
# row filter's rewrite reads `SELECT * FROM customers`, and bank_card is refused by maskgate.
# desk: reads customers and call_records and updates contact details.
GRANTS_SQL = f"""
REVOKE ALL ON customers, call_records, accounts, audit_trail FROM {VENDOR_ROLE}, {DESK_ROLE};
GRANT SELECT ON customers, call_records TO {VENDOR_ROLE}, {DESK_ROLE};
GRANT SELECT (id, customer_id, balance, opened_at) ON accounts TO {VENDOR_ROLE};
GRANT UPDATE (phone, email, address) ON customers TO {DESK_ROLE};
-- vendor may read every table of crm but audit_trail: tables created later are readable too.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {VENDOR_ROLE};
ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS vendor_branch ON customers;
CREATE POLICY vendor_branch ON customers FOR SELECT TO {VENDOR_ROLE} USING (branch_id = 12);
DROP POLICY IF EXISTS desk_customers ON customers;
CREATE POLICY desk_customers ON customers TO {DESK_ROLE} USING (true) WITH CHECK (true);
"""

HOTLINE = "95588"  # the brokerage hotline whose callers the insider case was about
# Faker's zh_CN numbers stop at the 2010s segments; newer ones must be in the data too.
_NEW_SEGMENTS = ("166", "173", "177", "191", "192", "193", "195", "196", "198", "199")

_NOTES = (
    "客户来电咨询开户进度，回拨号码{phone}。",
    "客户要求修改预留手机号为{phone2}，已核实身份证{id_card}。",
    "客户反映银行卡{card}转账失败，已转二线。",
    "客户咨询理财产品，无异常。",
    "客户称收到陌生来电推荐股票，来电号码{phone2}，已提醒防骗。",
    "常规回访，客户满意。",
)


def _mobile(fake: object, rnd: random.Random) -> str:
    if rnd.random() < 0.3:
        return rnd.choice(_NEW_SEGMENTS) + f"{rnd.randrange(10**8):08d}"
    return fake.phone_number()  # type: ignore[attr-defined]


def _tsv(value: object) -> str:
    if value is None:
        return "\\N"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def generate(customers: int, seed: int = 20261122) -> Iterator[tuple[str, list[tuple[object, ...]]]]:
    """Rows per table, deterministic for a seed."""
    from faker import Faker

    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    rnd = random.Random(seed)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cust: list[tuple[object, ...]] = []
    phones: list[str] = []
    for i in range(1, customers + 1):
        phone = _mobile(fake, rnd)
        phones.append(phone)
        cust.append(
            (
                i,
                fake.name(),
                phone,
                fake.ssn(),
                fake.credit_card_number("unionpay") if rnd.random() < 0.9 else None,
                fake.free_email(),
                rnd.randrange(1, 21),
                fake.address(),
                (base + dt.timedelta(minutes=i)).isoformat(),
            )
        )
    yield "customers", cust
    calls: list[tuple[object, ...]] = []
    for i in range(1, customers * 2 + 1):
        c = cust[rnd.randrange(customers)]
        template = rnd.choice(_NOTES)
        notes = template.format(phone=c[2], phone2=_mobile(fake, rnd), id_card=c[3], card=c[4] or "")
        calls.append(
            (
                i,
                c[0],
                c[2],
                HOTLINE,
                (base + dt.timedelta(seconds=37 * i)).isoformat(),
                rnd.randrange(5, 900),
                notes,
            )
        )
    yield "call_records", calls
    accounts = [
        (
            i,
            i,
            f"A{rnd.randrange(10**11):011d}",
            f"{rnd.randrange(0, 10**8) / 100:.2f}",
            (base.date() - dt.timedelta(days=rnd.randrange(3000))).isoformat(),
        )
        for i in range(1, customers + 1)
    ]
    yield "accounts", accounts


def seed(conn: object, customers: int = 10_000) -> int:
    """Create the tables, grant the database roles (`database_roles_sql` must have run) and fill
    the tables when empty. Returns the number of customers present."""
    cur = conn.cursor()  # type: ignore[attr-defined]
    cur.execute(SCHEMA_SQL)
    cur.execute(GRANTS_SQL)
    cur.execute("SELECT count(*) FROM customers")
    present = cur.fetchone()[0]
    if present:
        conn.commit()  # type: ignore[attr-defined]
        return int(present)
    for table, rows in generate(customers):
        buf = io.StringIO()
        for row in rows:
            buf.write("\t".join(_tsv(v) for v in row))
            buf.write("\n")
        with cur.copy(f"COPY {table} FROM STDIN") as copy:
            copy.write(buf.getvalue())
    cur.execute("INSERT INTO audit_trail (actor, action) VALUES ('system', 'demo database seeded')")
    cur.execute("ANALYZE")
    conn.commit()  # type: ignore[attr-defined]
    return customers
