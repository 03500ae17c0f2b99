"""Per-person budgets across replicas: two maskgate Apps in front of one PostgreSQL share a
person's budget through a real redis-server; rows read through one count against the other,
then the person is refused (row_budget) on both, and stays refused while Redis is down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from proxy.demo.embedded_pg import EmbeddedPostgres
from proxy.mysql.auth import native_hash
from proxy.pg.auth import make_verifier
from proxy.services.budgets import Budgets, user_hash
from tests.conftest import start_crm_mysql
from tests.integration.harness import connect_proxy, crm_database, serve_demo
from tests.integration.redis_server import RedisServer

pytestmark = pytest.mark.integration

SVC_PW = "svc-secret-budgets"
ANALYST = ("analyst_he", "analyst-pass")
COLLEAGUE = ("analyst_ma", "colleague-pass")
ROWS_PER_HOUR = 30
EXTRA_POLICY = f"""version: 1
customer_key: crm.customers.id
roles:
  analyst:
    statements: [select]
    tables: ["crm.customers"]
    max_rows: 20
    see: {{mobile: mask, id_card: mask, person_name: mask, bank_card: deny, free_text: mask}}
    budgets: {{rows_per_hour: {ROWS_PER_HOUR}, distinct_customers_per_day: 1000}}
users:
  {ANALYST[0]}:
    role: analyst
    password: "{make_verifier(ANALYST[1])}"
    mysql_password: "{native_hash(ANALYST[1])}"
  {COLLEAGUE[0]}:
    role: analyst
    password: "{make_verifier(COLLEAGUE[1])}"
"""


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    with crm_database(tmp_path_factory, "pg-budgets", SVC_PW, 100) as pg:
        yield pg


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


def read(served: dict[str, Any], sql: str) -> int | str:
    """Rows the analyst got for `sql` through this replica, or the refusal's message."""
    with connect_proxy(served, ANALYST) as c:
        try:
            return len(c.execute(sql).fetchall())
        except psycopg.errors.InsufficientPrivilege as e:
            return str(e)


def sample(served: dict[str, Any], name: str, **labels: str) -> float | None:
    return served["app"].metrics.registry.get_sample_value(name, labels or None)


def test_two_replicas_share_one_budget_through_redis(
    crm: EmbeddedPostgres, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = f"redis: {redis_server.url}\n"
    store = redis_server.client()
    hour = int(time.time() // 3600)
    key = Budgets.key("analyst", ANALYST[0], f"rows-h{hour}")
    assert ANALYST[0] not in key and user_hash(ANALYST[0]) in key
    with (
        serve_demo(
            tmp_path_factory.mktemp("one"), crm, SVC_PW, extra_policy=EXTRA_POLICY, config_lines=config
        ) as one,
        serve_demo(
            tmp_path_factory.mktemp("two"), crm, SVC_PW, extra_policy=EXTRA_POLICY, config_lines=config
        ) as two,
    ):
        # 20 + 10 rows through replica one: its own count reaches the budget.
        assert read(one, "SELECT id, phone FROM customers ORDER BY id LIMIT 20") == 20
        assert read(one, "SELECT id, phone FROM customers ORDER BY id LIMIT 10 OFFSET 20") == 10
        refused = read(one, "SELECT id FROM customers LIMIT 1")
        assert isinstance(refused, str) and refused.startswith("maskgate: this person has read the 30 rows")
        deadline = time.monotonic() + 10
        while int(store.get(key) or 0) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert int(store.get(key)) == 30  # shared: INCRBY from replica one's worker thread
        assert 7000 < store.ttl(key) <= 7200

        # Replica two never served this person: their reads through replica one refuse them
        # here too, at the latest once its first check has fetched the shared totals.
        admitted, outcome = 0, read(two, "SELECT id FROM customers LIMIT 1")
        while not isinstance(outcome, str) and time.monotonic() < deadline:
            admitted += 1
            time.sleep(0.2)
            outcome = read(two, "SELECT id FROM customers LIMIT 1")
        assert isinstance(outcome, str) and "30 rows per hour" in outcome
        assert admitted <= 1  # one statement decided before the totals arrived: the overshoot
        # Over budget, the person can still talk to the database about nothing in it.
        with connect_proxy(two, ANALYST) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
        assert sample(two, "maskgate_budget_refusals_total", role="analyst", budget="rows_per_hour") >= 1
        assert sample(
            two, "maskgate_blocked_queries_total", protocol="postgres", role="analyst", reason="row_budget"
        )
        assert sample(two, "maskgate_budget_usage_ratio", role="analyst", budget="rows_per_hour") >= 1.0
        assert sample(two, "maskgate_budget_store_up") == 1.0
        # Another person of the same role has a budget of their own.
        with connect_proxy(two, COLLEAGUE) as c:
            assert len(c.execute("SELECT id FROM customers LIMIT 20").fetchall()) == 20

        # Redis goes away: replica two keeps refusing (the last totals are kept) and says so.
        redis_server.stop()
        time.sleep(1.1)  # past the refresh interval: the next check asks the store again
        assert isinstance(read(two, "SELECT id FROM customers LIMIT 1"), str)
        deadline = time.monotonic() + 10
        while sample(two, "maskgate_budget_store_up") != 0.0 and time.monotonic() < deadline:
            time.sleep(0.05)
            read(two, "SELECT id FROM customers LIMIT 1")
        assert sample(two, "maskgate_budget_store_up") == 0.0
        assert sample(two, "maskgate_budget_store_errors_total") >= 1
        assert isinstance(read(two, "SELECT id FROM customers LIMIT 1"), str)


def test_rows_read_over_postgresql_refuse_the_person_over_mysql(
    crm: EmbeddedPostgres, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """One person, two replicas, two protocols: the budget is the person's, not the wire's."""
    import pymysql

    mariadb = start_crm_mysql(tmp_path_factory.mktemp("mysql-budgets"), SVC_PW, 100)
    config = f"redis: {redis_server.url}\n"
    try:
        with (
            serve_demo(
                tmp_path_factory.mktemp("pg"), crm, SVC_PW, extra_policy=EXTRA_POLICY, config_lines=config
            ) as pg_side,
            serve_demo(
                tmp_path_factory.mktemp("my"),
                None,
                SVC_PW,
                mysql=mariadb,
                extra_policy=EXTRA_POLICY,
                config_lines=config,
            ) as my_side,
        ):

            def mysql_read() -> int | str:
                conn = pymysql.connect(
                    host="127.0.0.1",
                    port=my_side["mysql_port"],
                    user=ANALYST[0],
                    password=ANALYST[1],
                    database="crm",
                    charset="utf8mb4",
                )
                try:
                    with conn.cursor() as cur:
                        cur.execute("SELECT id, phone FROM customers ORDER BY id LIMIT 5")
                        return len(cur.fetchall())
                except pymysql.err.OperationalError as e:
                    return str(e.args[1])
                finally:
                    conn.close()

            assert mysql_read() == 5  # 5 of 30 through MySQL on one replica
            assert read(pg_side, "SELECT id FROM customers ORDER BY id LIMIT 20") == 20
            assert read(pg_side, "SELECT id FROM customers ORDER BY id LIMIT 5") == 5  # 30
            # Counting alone, the MySQL replica would admit five more reads of 5 rows.
            deadline = time.monotonic() + 10
            admitted, outcome = 0, mysql_read()
            while not isinstance(outcome, str) and time.monotonic() < deadline:
                admitted += 1
                time.sleep(0.2)
                outcome = mysql_read()
            assert isinstance(outcome, str) and "30 rows per hour" in outcome
            assert admitted <= 1
            blocked = my_side["app"].metrics.registry.get_sample_value(
                "maskgate_blocked_queries_total",
                {"protocol": "mysql", "role": "analyst", "reason": "row_budget"},
            )
            assert blocked and blocked >= 1
    finally:
        mariadb.destroy()
