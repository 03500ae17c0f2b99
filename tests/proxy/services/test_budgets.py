"""Per-person budgets with a fake clock: rows per hour, distinct customers per day, the
refusal, the shared counts of two replicas (an in-memory stand-in for Redis), and what happens
while the store is down. tests/integration/test_budgets.py runs the same against a real Redis."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry

from policies import Policy, load_policy
from policies.decision import Allow, Block
from proxy.services.budgets import Budgets, crossed, observes, reads_data, user_hash, value_key
from proxy.services.gate import Principal, StatementRecord
from proxy.services.guard import Guard
from proxy.services.metrics import Metrics
from proxy.services.statement import StatementTracker

try:
    from proxy.services.gate import Disclosed  # the observation hook's record, once it lands
except ImportError:  # until then, the same fields

    @dataclass(frozen=True, slots=True)
    class Disclosed:  # type: ignore[no-redef]
        cls: str
        column: str
        value: str
        clear: bool


DEMO = Path(__file__).resolve().parents[3] / "policies" / "examples" / "demo.yaml"
KEY = b"k" * 32
ZHANG = Principal("vendor_zhang", "vendor")
LI = Principal("desk_li", "service_desk")
READ = Allow(kind="select", tables=("public.customers",))
# 2026-11-30 10:00 in Shanghai (UTC+8): a day there starts at 16:00 UTC the day before.
T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def policy(tmp_path: Path, *, rows: int | None = 10, customers: int | None = 3, key: bool = True) -> Policy:
    """The demo policy with budgets on the vendor role (and, with `key`, a customer_key)."""
    limits = {"rows_per_hour": rows, "distinct_customers_per_day": customers}
    budgets = ", ".join(f"{k}: {v}" for k, v in limits.items() if v is not None)
    text = DEMO.read_text().replace(
        "    max_rows: 200\n", f"    max_rows: 200\n    budgets: {{{budgets}}}\n", 1
    )
    if key:
        text = text.replace("version: 1\n", "version: 1\ncustomer_key: crm.customers.id\n", 1)
    p = tmp_path / "policy.yaml"
    p.write_text(text)
    return load_policy(p)


def budgets(clock: Clock, **kw: Any) -> Budgets:
    kw.setdefault("timezone", ZoneInfo("Asia/Shanghai"))
    return Budgets(masking_key=KEY, clock=clock, **kw)


def ids(*values: str) -> list[Disclosed]:
    return [Disclosed("customer_key", "public.customers.id", v, True) for v in values]


def end(principal: Principal, rows: int, decision: Any = READ, event: str = "end") -> StatementRecord:
    rec = StatementRecord("postgres", "s", principal.user, principal.role, "c", "crm", "SELECT", decision)
    rec.rows, rec.event = rows, event
    return rec


class FakeRedis:
    """What the budgets ask of redis-py: a pipeline of INCRBY, EXPIRE, PFADD, PFCOUNT, GET,
    with exact distinct counts. `down` makes every round trip fail as a lost connection does."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.ttl: dict[str, int] = {}
        self.down = False
        self.trips = 0

    def pipeline(self, transaction: bool = True) -> FakePipe:
        return FakePipe(self)


class FakePipe:
    def __init__(self, server: FakeRedis) -> None:
        self.server = server
        self.ops: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.ops.append((name, args))

    def execute(self) -> list[Any]:
        s = self.server
        s.trips += 1
        if s.down:
            raise ConnectionError("Connection refused")
        out: list[Any] = []
        for name, args in self.ops:
            k = args[0]
            if name == "incrby":
                s.data[k] = s.data.get(k, 0) + args[1]
                out.append(s.data[k])
            elif name == "expire":
                s.ttl[k] = args[1]
                out.append(True)
            elif name == "pfadd":
                before = len(s.data.setdefault(k, set()))
                s.data[k].update(args[1:])
                out.append(int(len(s.data[k]) > before))
            elif name == "pfcount":
                out.append(len(s.data.get(k, ())))
            elif name == "get":
                v = s.data.get(k)
                out.append(None if v is None else str(v).encode())
        return out


# -- pure pieces ----------------------------------------------------------------------------------


def test_value_key_is_one_per_value_whatever_its_spelling() -> None:
    same = ["13812345678", "138 1234 5678", "138-1234-5678", "１３８１２３４５６７８"]
    assert len({value_key(KEY, "mobile", v) for v in same}) == 1
    assert value_key(KEY, "id_card", "11010519491231002x") == value_key(KEY, "id_card", "11010519491231002X")
    assert value_key(KEY, "mobile", "13812345678") != value_key(KEY, "mobile", "13812345679")
    assert value_key(b"other" * 8, "mobile", "13812345678") != value_key(KEY, "mobile", "13812345678")


def test_a_budget_is_used_up_when_its_count_reaches_it(tmp_path: Path) -> None:
    limits = policy(tmp_path).roles["vendor"].budgets
    assert limits is not None
    assert crossed(limits, 9, 2) is None
    assert crossed(limits, 10, 0) == "rows_per_hour"
    assert crossed(limits, 0, 3) == "distinct_customers_per_day"


def test_what_the_budget_applies_to() -> None:
    assert reads_data(READ)
    assert reads_data(Allow(kind="select", tables=("crm.public.customers", "pg_catalog.pg_class")))
    assert reads_data(Allow(kind="http"))
    # The person can still end their transaction, change a setting, read the catalog.
    assert not reads_data(Allow(kind="transaction"))
    assert not reads_data(Allow(kind="set"))
    assert not reads_data(Allow(kind="select", tables=("pg_catalog.pg_class", "information_schema.tables")))


def test_values_are_observed_only_for_a_distinct_customers_budget(tmp_path: Path) -> None:
    assert observes(policy(tmp_path))
    assert not observes(policy(tmp_path, customers=None))
    assert not observes(load_policy(DEMO))


def test_shared_keys_name_the_person_by_a_hash() -> None:
    k = Budgets.key("vendor", "vendor_zhang", "rows-h1")
    assert k == f"maskgate:budget:vendor:{user_hash('vendor_zhang')}:rows-h1"
    assert "zhang" not in k


# -- one process -----------------------------------------------------------------------------------


def test_rows_per_hour(tmp_path: Path) -> None:
    p, clock = policy(tmp_path), Clock()
    b = budgets(clock)
    b.record(p, end(ZHANG, 6))
    b.record(p, end(ZHANG, 6, event="start"))  # a write-ahead record has no rows yet: not counted
    b.record(p, end(ZHANG, 50, Block("table_denied", "no")))
    b.record(p, end(ZHANG, 50, Allow(kind="select", tables=("pg_catalog.pg_class",))))
    b.pump()  # the rows stand in for their customers until the worker counted their values
    assert b.counts("vendor", "vendor_zhang") == (6, 0)
    assert b.refusal(p, ZHANG, READ) is None
    b.record(p, end(ZHANG, 4))
    b.pump()
    refused = b.refusal(p, ZHANG, replace_fingerprint(READ))
    assert isinstance(refused, Block) and refused.reason == "row_budget"
    assert (
        refused.message == "this person has read the 10 rows per hour their role allows; try again next hour"
    )
    assert refused.tables == READ.tables and refused.fingerprint == "f" * 16
    assert b.refusal(p, ZHANG, Allow(kind="transaction")) is None  # COMMIT still goes through
    assert b.refusal(p, LI, READ) is None  # per person, and the desk role has no budgets
    b.record(p, end(LI, 1000))
    assert b.counts("service_desk", "desk_li") == (0, 0)  # a role without budgets is not counted
    clock.t += 3600  # the next clock hour
    assert b.refusal(p, ZHANG, READ) is None
    assert b.counts("vendor", "vendor_zhang") == (0, 0)


def replace_fingerprint(allow: Allow) -> Allow:
    from dataclasses import replace

    return replace(allow, fingerprint="f" * 16, revision="r1")


def test_distinct_customers_per_day_by_the_customer_key(tmp_path: Path) -> None:
    p, clock = policy(tmp_path), Clock()
    b = budgets(clock)
    observe = b.observer(lambda: p)
    phones = [Disclosed("mobile", "public.customers.phone", f"1380000000{i}", True) for i in (1, 2, 1)]
    observe(ZHANG, "s-1", ids("1001", "1002", "1001") + phones)  # two customers by key and by phone
    b.pump()
    assert b.counts("vendor", "vendor_zhang") == (0, 2)
    assert b.refusal(p, ZHANG, READ) is None
    observe(ZHANG, "s-2", ids("1002", "1003"))
    b.pump()
    refused = b.refusal(p, ZHANG, READ)
    assert refused is not None and refused.reason == "row_budget"
    assert "3 distinct customers per day" in refused.message
    observe(LI, "s-3", ids("1", "2", "3", "4"))  # the desk role has no budget: nothing counted
    b.pump()
    assert b.counts("service_desk", "desk_li") == (0, 0)
    # The day ends at midnight in the configured time zone (Shanghai: 16:00 UTC).
    clock.t = datetime(2026, 11, 30, 15, 59, tzinfo=UTC).timestamp()
    assert b.refusal(p, ZHANG, READ) is not None
    clock.t = datetime(2026, 11, 30, 16, 0, tzinfo=UTC).timestamp()
    assert b.refusal(p, ZHANG, READ) is None


def test_without_a_customer_key_every_classified_value_is_one(tmp_path: Path) -> None:
    p, clock = policy(tmp_path, key=False), Clock()
    b = budgets(clock)
    observe = b.observer(lambda: p)
    observe(
        ZHANG,
        "s-1",
        [
            Disclosed("mobile", "public.customers.phone", "13800000001", False),
            Disclosed("mobile", "", "138 0000 0001", False),  # found by a detector: the same number
            Disclosed("id_card", "public.customers.id_card", "11010519491231002X", False),
        ],
    )
    b.pump()
    # One row's phone and ID card are one customer: a batch counts the class it holds most of.
    assert b.counts("vendor", "vendor_zhang") == (0, 1)
    observe(
        ZHANG,
        "s-2",
        [
            Disclosed("mobile", "public.customers.phone", "13800000002", False),
            Disclosed("*", "", "call 13800000003 or 13800000004", True),  # numbers in a note
        ],
    )
    b.pump()
    assert b.counts("vendor", "vendor_zhang") == (0, 4)


def test_canary_row_keys_name_no_customer(tmp_path: Path) -> None:
    p, clock = policy(tmp_path, key=False), Clock()
    b = budgets(clock)
    observe = b.observer(lambda: p)
    # The key column of a table canaries were planted in is noted for them alone.
    observe(ZHANG, "s-1", [Disclosed("row_key", "public.customers.id", str(i), True) for i in range(5)])
    b.pump()
    assert b.counts("vendor", "vendor_zhang") == (0, 0)


def test_a_process_keeps_no_more_customers_than_it_needs_to_refuse(tmp_path: Path) -> None:
    p, clock = policy(tmp_path), Clock()
    b = budgets(clock)
    b.observer(lambda: p)(ZHANG, "s", ids(*(str(i) for i in range(10_000))))
    b.pump()
    assert b.counts("vendor", "vendor_zhang") == (0, 4)  # the limit (3) and one: refused either way
    assert b.refusal(p, ZHANG, READ) is not None


# -- replicas sharing one store ---------------------------------------------------------------------


def test_two_replicas_share_one_budget(tmp_path: Path) -> None:
    p, clock, store = policy(tmp_path), Clock(), FakeRedis()
    one, two = budgets(clock, client=store), budgets(clock, client=store)
    one.record(p, end(ZHANG, 7))
    one.observer(lambda: p)(ZHANG, "s-1", ids("1001", "1002"))
    one.pump()
    hour = int(clock.t // 3600)
    assert store.data[Budgets.key("vendor", "vendor_zhang", f"rows-h{hour}")] == 7
    assert store.ttl[Budgets.key("vendor", "vendor_zhang", f"rows-h{hour}")] == 7200
    assert len(store.data[Budgets.key("vendor", "vendor_zhang", "customers-d20261130")]) == 2
    # Replica two has not read the totals yet: its first check asks for them, without waiting.
    assert two.refusal(p, ZHANG, READ) is None
    two.pump()
    assert two.counts("vendor", "vendor_zhang") == (7, 2)
    two.record(p, end(ZHANG, 3))  # 10 over both replicas: used up
    assert two.refusal(p, ZHANG, READ) is not None
    two.pump()
    # Replica one learns it at its next refresh (at most refresh_s later).
    assert one.refusal(p, ZHANG, READ) is None
    clock.t += 1.0
    one.refusal(p, ZHANG, READ)
    one.pump()
    assert one.counts("vendor", "vendor_zhang") == (10, 2)
    assert one.refusal(p, ZHANG, READ) is not None


def test_totals_are_refreshed_at_most_once_per_refresh_interval(tmp_path: Path) -> None:
    p, clock, store = policy(tmp_path), Clock(), FakeRedis()
    b = budgets(clock, client=store)
    for _ in range(100):
        b.refusal(p, ZHANG, READ)
    b.pump()
    assert store.trips == 1
    for _ in range(100):
        b.refusal(p, ZHANG, READ)
    b.pump()
    assert store.trips == 1
    clock.t += 1.0
    b.refusal(p, ZHANG, READ)
    b.pump()
    assert store.trips == 2


def test_store_down_counts_locally_on_top_of_the_last_totals_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p, clock, store = policy(tmp_path), Clock(), FakeRedis()
    metrics = Metrics(CollectorRegistry())
    other = budgets(clock, client=store)
    b = budgets(clock, client=store, metrics=metrics)
    other.record(p, end(ZHANG, 6))  # another replica's reads
    other.pump()
    b.refusal(p, ZHANG, READ)
    b.pump()
    assert b.counts("vendor", "vendor_zhang") == (6, 0)
    assert metrics.registry.get_sample_value("maskgate_budget_store_up") == 1.0
    store.down = True
    b.record(p, end(ZHANG, 4))
    b.pump()
    # Not forgotten, not reset: the last shared total plus what this replica counted since.
    assert b.counts("vendor", "vendor_zhang") == (10, 0)
    assert b.refusal(p, ZHANG, READ) is not None
    assert metrics.registry.get_sample_value("maskgate_budget_store_up") == 0.0
    assert metrics.registry.get_sample_value("maskgate_budget_store_errors_total") == 1.0
    err = capsys.readouterr().err
    assert "counted by this replica alone" in err and "redis" in err
    # While waiting to retry, batches are counted locally without a round trip each.
    trips = store.trips
    b.record(p, end(ZHANG, 1))
    b.pump()
    assert store.trips == trips and b.counts("vendor", "vendor_zhang") == (11, 0)
    store.down = False
    clock.t += 1.0
    b.refusal(p, ZHANG, READ)
    b.pump()
    assert metrics.registry.get_sample_value("maskgate_budget_store_up") == 1.0
    assert "answers again" in capsys.readouterr().err
    # What this replica counted during the outage stays counted here (Redis never got it).
    assert b.counts("vendor", "vendor_zhang") == (11, 0)


def test_an_unreachable_redis_url_fails_closed_to_local_counting(tmp_path: Path) -> None:
    p, clock = policy(tmp_path), Clock()
    metrics = Metrics(CollectorRegistry())
    # A port nothing listens on: the real client's connection is refused at once.
    b = budgets(clock, redis_url="redis://127.0.0.1:9/0", metrics=metrics)
    b.record(p, end(ZHANG, 10))
    b.pump()
    assert b.refusal(p, ZHANG, READ) is not None
    assert metrics.registry.get_sample_value("maskgate_budget_store_up") == 0.0


def test_the_worker_thread(tmp_path: Path) -> None:
    p, store = policy(tmp_path), FakeRedis()
    b = Budgets(masking_key=KEY, client=store)
    b.start()
    b.observer(lambda: p)(ZHANG, "s-1", ids("1", "2", "3"))
    b.close()
    assert b.counts("vendor", "vendor_zhang") == (0, 3)


# -- through the guard --------------------------------------------------------------------------------


def test_guard_refuses_sql_and_http_and_prepared_runs(tmp_path: Path) -> None:
    p, clock = policy(tmp_path), Clock()
    metrics = Metrics(CollectorRegistry())
    b = budgets(clock, metrics=metrics)
    g = Guard(p, metrics=metrics, default_databases={"postgres": "crm"}, budgets=b)
    zhang = g.lookup("vendor_zhang")
    assert zhang is not None

    def decide(sql: str) -> Any:
        return g.decide(zhang, sql, dialect="postgres", search_path=("public",), database="crm")

    prepared = decide("SELECT name FROM customers")
    assert isinstance(prepared, Allow)
    g.record(end(zhang, 10, prepared))
    refused = decide("SELECT name FROM customers")
    assert isinstance(refused, Block) and refused.reason == "row_budget" and refused.fingerprint
    assert isinstance(decide("SELECT 1"), Allow)  # reads no table
    assert isinstance(decide("COMMIT"), Allow)
    http = g.decide_request(zhang, "GET", "/api/clients/1", [], None, None)
    assert isinstance(http, Block) and http.reason == "row_budget"
    # A statement prepared before the budget was used up is refused at its next run.
    t = StatementTracker(
        g,
        protocol="postgres",
        dialect="postgres",
        upstream="postgres",
        database="crm",
        search_path=("public",),
    )
    t.principal = zhang
    spent = t.spend(prepared)
    assert spent is not None and spent.reason == "row_budget"
    r = metrics.registry
    assert (
        r.get_sample_value("maskgate_budget_refusals_total", {"role": "vendor", "budget": "rows_per_hour"})
        == 3
    )
    assert (
        r.get_sample_value("maskgate_budget_usage_ratio", {"role": "vendor", "budget": "rows_per_hour"})
        == 1.0
    )
    assert (
        r.get_sample_value(
            "maskgate_budget_usage_ratio", {"role": "vendor", "budget": "distinct_customers_per_day"}
        )
        == 0.0
    )
    # No store configured: no store series (and no alert about it).
    assert r.get_sample_value("maskgate_budget_store_up") is None
    # A reload that lifts the budget applies at once.
    b.pump()
    (tmp_path / "lifted").mkdir()
    lifted = policy(tmp_path / "lifted", rows=None)
    g.swap_policy(lifted)
    zhang = g.lookup("vendor_zhang")
    assert isinstance(decide("SELECT name FROM customers"), Allow)


def test_the_guard_observes_for_budgets_only_while_a_role_counts_customers(tmp_path: Path) -> None:
    p, clock = policy(tmp_path), Clock()
    b = budgets(clock)
    g = Guard(p, metrics=Metrics(CollectorRegistry()), budgets=b)
    assert g.observing == observes(p)
    g.disclose(ZHANG, "s-1", ids("1", "2", "3"))
    b.pump()
    assert observes(p) and b.counts("vendor", "vendor_zhang") == (0, 3)
    # A policy without a distinct-customers budget leaves the row paths' fast paths alone.
    (tmp_path / "rows-only").mkdir()
    g.swap_policy(policy(tmp_path / "rows-only", customers=None))
    assert not g.observing


def test_statements_running_together_hold_what_they_may_send(tmp_path: Path) -> None:
    """A pipeline, a multi-statement string or a second session: statements admitted before the
    first one's customers are counted hold their max_rows of the budget until they end, so the
    next ones are refused instead of all running past it."""
    from dataclasses import replace

    p, clock = policy(tmp_path), Clock()
    b = budgets(clock)
    capped = replace(READ, row_limit=20)
    assert b.refusal(p, ZHANG, capped, reserve=True) is None  # the first runs, holding 20
    refused = b.refusal(p, ZHANG, capped, reserve=True)  # sent before the first ended
    assert isinstance(refused, Block) and refused.reason == "row_budget"
    b.record(p, end(ZHANG, 1, capped))  # the first ended with one row: it holds that row
    assert b.refusal(p, ZHANG, capped) is None  # 1 of 3 customers: the next may run
    b.pump()
    assert b.refusal(p, ZHANG, capped) is None
    # One string of many statements: all but one must fit in what is left.
    many = replace(READ, statements=(capped,) * 40)
    assert isinstance(b.refusal(p, ZHANG, many, reserve=True), Block)
    # A reservation whose statement never ended is not held forever.
    assert b.refusal(p, ZHANG, capped, reserve=True) is None
    assert isinstance(b.refusal(p, ZHANG, capped, reserve=True), Block)
    clock.t += 61
    assert b.refusal(p, ZHANG, capped, reserve=True) is None


def test_a_batch_counts_the_class_it_holds_most_of_the_key_included(tmp_path: Path) -> None:
    """One customer's id beside other customers' phones (a join, `id * 0`) names every phone's
    customer: the key does not hide them."""
    p, clock = policy(tmp_path), Clock()
    b = budgets(clock)
    phones = [Disclosed("mobile", "public.customers.phone", f"1380000000{i}", True) for i in range(5)]
    b.observer(lambda: p)(ZHANG, "s-1", ids("0", "0", "0", "0", "0") + phones)
    b.pump()
    assert b.counts("vendor", "vendor_zhang")[1] > 3  # (kept up to the budget + 1)
    assert b.refusal(p, ZHANG, READ) is not None


def test_column_statistics_are_not_for_a_role_with_budgets(tmp_path: Path) -> None:
    """pg_stats' histogram holds a hundred customers' numbers in one row: past max_rows and any
    budget, so a budgeted role does not read statistics at all (other catalog reads stay)."""
    p, clock = policy(tmp_path), Clock()
    b = budgets(clock)
    stats = Allow(kind="select", tables=("pg_catalog.pg_stats",))
    refused = b.refusal(p, ZHANG, stats)
    assert isinstance(refused, Block) and "column statistics" in refused.message
    assert b.refusal(p, ZHANG, Allow(kind="select", tables=("pg_catalog.pg_class",))) is None
    assert b.refusal(p, LI, stats) is None  # a role without budgets


def test_rows_of_values_computed_from_classified_columns_count_as_customers(tmp_path: Path) -> None:
    """A digit cipher of each phone reads as no number: the statement's rows count instead."""
    from dataclasses import replace

    from policies.decision import ColumnMask

    p, clock = policy(tmp_path), Clock()
    b = budgets(clock)
    cipher = ColumnMask(0, "t", "mobile", "clear", ("public.customers.phone",), derived=True)
    computed = replace(READ, columns=(cipher,))
    b.record(p, end(ZHANG, 2, computed))
    b.pump()
    assert b.counts("vendor", "vendor_zhang")[1] == 2
    b.record(p, end(ZHANG, 2, READ))  # plain reads: counted by what they disclose (nothing here)
    b.pump()
    assert b.counts("vendor", "vendor_zhang")[1] == 2
    b.record(p, end(ZHANG, 5, computed))
    b.pump()
    assert b.refusal(p, ZHANG, READ) is not None
