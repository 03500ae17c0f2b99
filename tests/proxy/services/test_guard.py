"""The Guard: policy swap and still-valid principals, schemas per (upstream, database), masker
counting, and the policy revision each refusal is audited under."""

from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from policies import Policy, Schema, load_policy
from policies.decision import Allow, Block, Decision
from policies.schema import Table
from proxy.mysql.auth import native_hash
from proxy.services import guard as guard_module
from proxy.services.audit import AuditLog
from proxy.services.gate import MYSQL_NATIVE_PASSWORD, SCRAM_SHA_256, Principal, StatementRecord
from proxy.services.guard import ACCESS_CHANGED, AUDIT_DOWN, ENGINE_FAILED, Guard
from proxy.services.metrics import Metrics

DEMO = Path(__file__).resolve().parents[3] / "policies" / "examples" / "demo.yaml"


def bare(block: Decision) -> Decision:
    """A guard refusal without its fingerprint, which it must carry (read in the dialect)."""
    assert block.fingerprint and len(block.fingerprint) == 16
    return replace(block, fingerprint="")


def guard(**kw) -> Guard:  # type: ignore[no-untyped-def]
    kw.setdefault("default_databases", {"postgres": "crm"})
    return Guard(load_policy(DEMO), metrics=Metrics(CollectorRegistry()), **kw)


def decide(g: Guard, principal, sql: str = "SELECT 1", **kw) -> Decision:  # type: ignore[no-untyped-def]
    return g.decide(principal, sql, dialect="postgres", search_path=("public",), database="crm", **kw)


def record(principal: Principal, decision: Decision) -> StatementRecord:
    return StatementRecord("postgres", "s", principal.user, principal.role, "c", "crm", "SELECT 1", decision)


def edited(tmp_path: Path, name: str, change: str) -> Policy:
    """The demo policy with one text edit, as a reload would read it."""
    text = DEMO.read_text()
    start = text.index("  vendor_zhang:")
    end = text.index("  desk_li:")
    edits = {
        "drop vendor": (text[:start] + text[end:]).replace("see: {mobile: clear,", "see: {mobile: mask,"),
        "vendor max_rows": text.replace("max_rows: 200", "max_rows: 199"),
        "vendor database role": text.replace("database_role: crm_vendor", "database_role: crm_other"),
    }
    p = tmp_path / f"{name}.yaml"
    p.write_text(edits[change])
    return load_policy(p)


def test_dba_is_unrestricted_vendor_is_not() -> None:
    g = guard()
    dba, vendor = g.lookup("dba_wang"), g.lookup("vendor_zhang")
    assert dba is not None and dba.unrestricted
    assert vendor is not None and not vendor.unrestricted
    assert g.lookup("maskgate_svc") is None


def test_the_principal_carries_the_policys_scram_verifier_and_mysql_hash(tmp_path: Path) -> None:
    g = guard()
    vendor = g.lookup("vendor_zhang")
    assert vendor is not None
    assert vendor.credential(SCRAM_SHA_256) == g.policy.users["vendor_zhang"].password
    assert vendor.credential(MYSQL_NATIVE_PASSWORD) == native_hash("vendor-pass")
    # Without `mysql_password` the user has no MySQL credential: such logins fail, never pass.
    text = DEMO.read_text().replace(f'    mysql_password: "{native_hash("vendor-pass")}"', "    #")
    (tmp_path / "p.yaml").write_text(text)
    g2 = Guard(load_policy(tmp_path / "p.yaml"), metrics=Metrics(CollectorRegistry()), default_databases={})
    vendor2 = g2.lookup("vendor_zhang")
    assert vendor2 is not None and vendor2.credential(SCRAM_SHA_256) is not None
    assert vendor2.credential(MYSQL_NATIVE_PASSWORD) is None


def test_a_reload_that_removes_a_user_or_changes_a_role_stops_old_sessions(tmp_path: Path) -> None:
    g = guard()
    vendor, dba = g.lookup("vendor_zhang"), g.lookup("dba_wang")
    assert isinstance(decide(g, vendor), Allow) and g.generation == 0
    # vendor_zhang removed; the dba role no longer sees mobiles in clear.
    new = edited(tmp_path, "p", "drop vendor")
    g.swap_policy(new)
    assert g.generation == 1
    changed = replace(ACCESS_CHANGED, revision=new.revision)
    assert bare(decide(g, vendor)) == changed
    assert bare(decide(g, dba)) == changed  # was unrestricted: its session skips masking
    fresh = g.lookup("dba_wang")
    assert fresh is not None and not fresh.unrestricted
    assert not isinstance(decide(g, fresh), Block)


def test_a_reload_that_changes_the_database_role_stops_old_sessions(tmp_path: Path) -> None:
    g = guard()
    vendor, desk = g.lookup("vendor_zhang"), g.lookup("desk_li")
    assert vendor is not None and vendor.database_role == "crm_vendor"
    assert desk is not None and desk.database_role == "crm_desk"
    assert g.lookup("dba_wang").database_role is None  # type: ignore[union-attr]
    new = edited(tmp_path, "p", "vendor database role")
    g.swap_policy(new)
    # The session logged in upstream as crm_vendor: it cannot go on as another database role.
    assert bare(decide(g, vendor)) == replace(ACCESS_CHANGED, revision=new.revision)
    assert not isinstance(decide(g, desk), Block)
    fresh = g.lookup("vendor_zhang")
    assert fresh is not None and fresh.database_role == "crm_other"
    assert not isinstance(decide(g, fresh), Block)


def test_masked_values_are_counted_by_class() -> None:
    g = guard()
    g.value_masker("mobile", "mask")("13812345678")
    g.value_masker("mobile", "mask")("not a number at all")
    g.text_masker(frozenset({"mobile"}))("call 13812345678")
    g.text_masker(frozenset({"mobile"}))("nothing here")
    vendor = g.lookup("vendor_zhang")
    assert vendor is not None
    g.record(record(vendor, Allow(kind="select")))
    reg = g.metrics.registry
    assert reg.get_sample_value("maskgate_masked_values_total", {"class": "mobile"}) == 2
    assert reg.get_sample_value("maskgate_masked_values_total", {"class": "detected"}) == 1


# -- schemas and engines per (upstream, database) ----------------------------------------------


def crm(*columns: str) -> Schema:
    return Schema("crm", "postgres", {("public", "customers"): Table("public", "customers", columns)})


def test_the_same_database_name_on_two_upstreams_is_two_schemas() -> None:
    loads: list[tuple[str, str]] = []

    def loader(upstream: str, schema: Schema):  # type: ignore[no-untyped-def]
        def load(database: str) -> Schema:
            loads.append((upstream, database))
            return schema

        return load

    g = guard(
        schema_loaders={
            "postgres": loader("postgres", crm("id", "phone")),
            "mysql": loader("mysql", crm("id", "name")),
        },
        default_databases={"postgres": "crm", "mysql": "crm"},
    )
    vendor = g.lookup("vendor_zhang")
    on_pg = decide(g, vendor, "SELECT * FROM customers")
    on_mysql = decide(g, vendor, "SELECT * FROM customers", upstream="mysql")
    assert isinstance(on_pg, Allow) and isinstance(on_mysql, Allow)
    assert [(c.name, c.action) for c in on_pg.columns] == [("id", "clear"), ("phone", "mask")]
    assert [(c.name, c.action) for c in on_mysql.columns] == [("id", "clear"), ("name", "mask")]
    assert loads == [("postgres", "crm"), ("mysql", "crm")]
    assert g.schema("crm").tables != g.schema("crm", "mysql").tables
    # A session that names no database gets its own upstream's default.
    assert g.schema("", "mysql") is g.schema("crm", "mysql")
    g.prepare("crm", "mysql")
    assert loads == [("postgres", "crm"), ("mysql", "crm")]  # prepared already: not read again


def test_an_upstream_without_a_loader_decides_on_an_empty_schema() -> None:
    g = guard(schema_loaders={"postgres": lambda database: crm("id", "phone")})
    vendor = g.lookup("vendor_zhang")
    assert g.schema("crm", "mysql").tables == {}
    on_mysql = decide(g, vendor, "SELECT * FROM customers", upstream="mysql")
    assert on_mysql != decide(g, vendor, "SELECT * FROM customers")


def test_ddl_reloads_only_that_upstreams_schema() -> None:
    versions = {"postgres": [crm("id"), crm("id", "phone")], "mysql": [crm("id", "name")]}
    g = guard(
        schema_loaders={up: (lambda database, up=up: versions[up].pop(0)) for up in versions},
        default_databases={"postgres": "crm", "mysql": "crm"},
    )
    vendor = g.lookup("vendor_zhang")
    assert len(decide(g, vendor, "SELECT * FROM customers").columns) == 1
    mysql_before = decide(g, vendor, "SELECT * FROM customers", upstream="mysql")
    g.schema_changed("crm", "postgres")
    deadline = time.monotonic() + 5
    while g.schema("crm").tables[("public", "customers")].columns == ("id",):
        assert time.monotonic() < deadline, "the schema reload did not land"
        time.sleep(0.01)
    # The new schema brought a new engine: the new column is seen, and masked.
    after = decide(g, vendor, "SELECT * FROM customers")
    assert [(c.name, c.action) for c in after.columns] == [("id", "clear"), ("phone", "mask")]
    assert decide(g, vendor, "SELECT * FROM customers", upstream="mysql") == mysql_before


def test_a_failed_schema_load_keeps_the_last_good_schema() -> None:
    calls = 0

    def flaky(database: str) -> Schema:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError("upstream down")
        return crm("id", "phone")

    g = guard(schema_loaders={"postgres": flaky})
    first = g.schema("crm")
    g.refresh_schemas()
    assert g.schema("crm") is first
    reg = g.metrics.registry
    assert reg.get_sample_value("maskgate_schema_reloads_total", {"result": "failure"}) == 1


def test_discovered_columns_are_classified_for_restricted_roles_and_counted(tmp_path: Path) -> None:
    """A loader may report columns whose sample held personal data (serve's discovery): they are
    classified for restricted roles until the policy names them, and counted per class."""
    schema = replace(
        crm("id", "remark", "memo"),
        discovered={
            ("public", "customers", "remark"): "mobile",
            ("public", "customers", "memo"): "free_text",
        },
    )
    g = guard(schema_loaders={"postgres": lambda database: schema})
    vendor, dba = g.lookup("vendor_zhang"), g.lookup("dba_wang")
    d = decide(g, vendor, "SELECT id, remark, memo, reverse(remark) AS r FROM customers")
    assert isinstance(d, Allow)
    assert [(c.name, c.cls, c.action) for c in d.columns] == [
        ("id", None, "clear"),
        ("remark", "mobile", "mask"),
        ("memo", "free_text", "mask"),
        ("r", "mobile", "redact"),
    ]
    assert decide(g, vendor, "SELECT id FROM customers WHERE remark LIKE '1%'").reason == "masked_predicate"
    # the DBA (statements: all) reads unclassified columns as they are
    assert [c.action for c in decide(g, dba, "SELECT remark FROM customers").columns] == ["clear"]
    reg = g.metrics.registry
    assert reg.get_sample_value("maskgate_discovered_columns", {"class": "mobile"}) == 1
    assert reg.get_sample_value("maskgate_discovered_columns", {"class": "free_text"}) == 1
    # Once the policy names a column, the policy's class wins and it is no longer pending.
    phone = "  crm.customers.phone: mobile\n"
    text = DEMO.read_text().replace(phone, phone + "  crm.customers.remark: person_name\n")
    (tmp_path / "named.yaml").write_text(text)
    g.swap_policy(load_policy(tmp_path / "named.yaml"))
    assert reg.get_sample_value("maskgate_discovered_columns", {"class": "mobile"}) == 0
    vendor = g.lookup("vendor_zhang")
    assert [c.cls for c in decide(g, vendor, "SELECT remark FROM customers").columns] == ["person_name"]


# -- the revision a decision is audited under --------------------------------------------------


class DownAudit(AuditLog):
    """An audit log that cannot write and keeps what it was handed."""

    def __init__(self) -> None:
        super().__init__(None)
        self.healthy = False
        self.handed: list[tuple[StatementRecord, str]] = []

    def submit(self, rec: StatementRecord, revision: str) -> None:
        self.handed.append((rec, revision))


def audited_revision(rec: StatementRecord, revision: str) -> str:
    stream = io.StringIO()
    log = AuditLog(None, stream=stream)
    log.submit(rec, revision)
    log.close()
    return json.loads(stream.getvalue())["policy_revision"]


def test_guard_refusals_are_audited_under_the_revision_that_made_them(tmp_path: Path) -> None:
    audit = DownAudit()
    g = guard(audit=audit, audit_required=True)
    vendor = g.lookup("vendor_zhang")
    first = g.policy.revision
    down = decide(g, vendor)
    assert bare(down) == replace(AUDIT_DOWN, revision=first)
    # A reload lands between the decision and its record: the record keeps the first revision.
    g.swap_policy(edited(tmp_path, "a", "vendor max_rows"))
    assert g.policy.revision != first
    g.record(record(vendor, down))
    assert audited_revision(*audit.handed[-1]) == first

    audit.healthy = True
    second = g.policy.revision
    g.swap_policy(edited(tmp_path, "b", "drop vendor"))
    third = g.policy.revision
    changed = decide(g, vendor)
    assert bare(changed) == replace(ACCESS_CHANGED, revision=third)
    g.swap_policy(load_policy(DEMO))
    g.record(record(vendor, changed))
    assert audited_revision(*audit.handed[-1]) == third != second


def test_an_engine_failure_is_a_refusal_stamped_with_its_revision(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from policies import Engine

    def broken(*args, **kw):  # type: ignore[no-untyped-def]
        raise RuntimeError("engine bug")

    monkeypatch.setattr(Engine, "decide", broken)
    g = guard()
    vendor = g.lookup("vendor_zhang")
    failed = decide(g, vendor)
    assert bare(failed) == replace(ENGINE_FAILED, revision=g.policy.revision)
    revision = g.policy.revision
    g.swap_policy(edited(tmp_path, "p", "vendor max_rows"))
    assert audited_revision(record(vendor, failed), g.policy.revision) == revision


def test_a_decision_no_policy_made_is_audited_under_the_revision_in_force() -> None:
    audit = DownAudit()
    audit.healthy = True
    g = guard(audit=audit)
    vendor = g.lookup("vendor_zhang")
    # e.g. the session's own refusal of a fast-path function call: no engine, no revision.
    g.record(record(vendor, Block("function_denied", "no")))
    assert audited_revision(*audit.handed[-1]) == g.policy.revision


def test_a_hanging_schema_load_blocks_no_other_database() -> None:
    """One database's load hangs (its upstream accepts and says nothing): sessions of another
    database load and decide meanwhile; no lock is held while a loader runs."""
    release = threading.Event()

    def loader(database: str) -> Schema:
        if database == "slow":
            release.wait(10)
        return Schema(database, "postgres", {("public", "t"): Table("public", "t", ("id",))})

    g = guard(schema_loaders={"postgres": loader})
    threading.Thread(target=g.prepare, args=("slow",), daemon=True).start()
    time.sleep(0.1)  # the slow load is under way
    other = threading.Thread(target=g.schema, args=("crm",), daemon=True)
    other.start()
    other.join(2)
    try:
        assert not other.is_alive(), "the crm load waited for the slow database's"
        assert ("public", "t") in g.schema("crm").tables
        pending_load = g.prepare("slow")
        assert pending_load is not None and not pending_load.done()  # never blocks the caller
    finally:
        release.set()
    assert pending_load.result(5) is True and g.prepare("slow") is None


def test_a_failed_first_load_is_not_served_as_an_empty_schema() -> None:
    """Upstream down at start: the database is not ready (its sessions get 57P03 at connect,
    `decide` refuses as unavailable), never an empty schema refusing real tables as unknown.
    Sessions are refused at once during the backoff, then a load is tried again."""
    now = [0.0]
    calls = []

    def loader(database: str) -> Schema:
        calls.append(database)
        if len(calls) == 1:
            raise OSError("connection refused")
        if len(calls) == 2:
            return Schema(database, "postgres", {})  # an empty answer is a failure too
        return crm("id", "phone")

    g = guard(schema_loaders={"postgres": loader}, clock=lambda: now[0])
    vendor = g.lookup("vendor_zhang")
    first = g.prepare("crm")
    assert first is not None and first.result(5) is False
    refused = decide(g, vendor, "SELECT id FROM customers")
    assert isinstance(refused, Block) and refused.reason == "schema_unavailable"
    assert "not loaded" in refused.message and len(calls) == 1  # within the backoff: no new load
    now[0] += 1.0
    assert g.prepare("crm").result(5) is False  # type: ignore[union-attr]
    now[0] += 0.9  # the backoff doubled to 1 s: still refused without a load
    assert g.prepare("crm").result(5) is False and len(calls) == 2  # type: ignore[union-attr]
    now[0] += 0.2
    assert g.prepare("crm").result(5) is True  # type: ignore[union-attr]
    assert isinstance(decide(g, vendor, "SELECT id FROM customers"), Allow)
    reg = g.metrics.registry
    assert reg.get_sample_value("maskgate_schema_reloads_total", {"result": "failure"}) == 2


def test_a_start_up_load_that_fails_is_retried_in_the_background(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard_module, "SCHEMA_RETRY_MIN_S", 0.01)
    calls = []

    def loader(database: str) -> Schema:
        calls.append(database)
        if len(calls) < 3:
            raise OSError("the database system is starting up")
        return crm("id")

    g = guard(schema_loaders={"postgres": loader})
    assert g.load_schema("crm") is False
    deadline = time.monotonic() + 5
    while g.prepare("crm") is not None:
        assert time.monotonic() < deadline, "no retry loaded the schema"
        time.sleep(0.01)
    assert len(calls) == 3


def test_a_load_hung_past_its_timeout_counts_as_failed_and_is_tried_afresh() -> None:
    now = [0.0]
    release = threading.Event()
    calls = []

    def loader(database: str) -> Schema:
        calls.append(database)
        if len(calls) == 1:
            release.wait(10)
        return crm("id")

    g = guard(schema_loaders={"postgres": loader}, clock=lambda: now[0], schema_timeout_s=5.0)
    hung = g.prepare("crm")
    assert hung is not None and g.prepare("crm") is hung  # one load shared by every session
    now[0] += 5.0
    assert g.prepare("crm").result(1) is False  # type: ignore[union-attr]  # in backoff now
    assert hung.result(1) is False
    now[0] += 1.0
    assert g.prepare("crm").result(5) is True and len(calls) == 2  # type: ignore[union-attr]
    release.set()


def test_lookups_of_masked_values_are_budgeted_per_person_and_hour(monkeypatch: pytest.MonkeyPatch) -> None:
    import proxy.services.guard as guard_module

    g = guard()
    desk, vendor = g.lookup("desk_li"), g.lookup("vendor_zhang")
    assert desk is not None and vendor is not None
    now = [1000.0]
    monkeypatch.setattr(guard_module.time, "monotonic", lambda: now[0])
    assert g.spend_lookups(desk, 295)
    assert g.spend_lookups(desk, 5)  # the demo role's default: 300 an hour
    assert not g.spend_lookups(desk, 1)
    assert g.spend_lookups(vendor, 10)  # per person
    now[0] += 3601
    assert g.spend_lookups(desk, 300)  # an hour later the window has moved on


def test_observers_get_each_batch_and_a_failing_one_harms_no_other() -> None:
    from proxy.services.gate import Disclosed

    g = Guard(load_policy(DEMO), metrics=Metrics(CollectorRegistry()))
    assert g.observing is False and g.customer_key() is None
    got: list[tuple[str, str, int]] = []

    def broken(*_: object) -> None:
        raise RuntimeError("observer bug")

    g.add_observer(broken)
    g.add_observer(lambda p, sid, values: got.append((p.user, sid, len(values))))
    assert g.observing is True
    principal = g.lookup("dba_wang")
    assert principal is not None
    g.disclose(principal, "t-1", [Disclosed("mobile", "public.customers.phone", "13812345678", True)])
    assert got == [("dba_wang", "t-1", 1)]


def test_new_canary_key_columns_renew_the_plans() -> None:
    g = guard()
    dba = g.lookup("dba_wang")
    assert g.row_keys() == ()
    g.set_row_keys(("crm.public.customers.id",))
    # A new generation and state: row plans cached by the old decisions' masks are built anew.
    assert g.generation == 1 and g.row_keys() == ("crm.public.customers.id",)
    g.set_row_keys(("crm.public.customers.id",))
    assert g.generation == 1  # unchanged: every reload sets them, most change nothing
    assert isinstance(decide(g, dba), Allow)  # the same policy decides on
