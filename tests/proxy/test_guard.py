from pathlib import Path

from prometheus_client import CollectorRegistry

from policies import load_policy
from policies.decision import Allow, Block
from proxy.guard import ACCESS_CHANGED, Guard
from proxy.services.metrics import Metrics

DEMO = Path(__file__).resolve().parents[2] / "policies" / "examples" / "demo.yaml"


def guard() -> Guard:
    return Guard(load_policy(DEMO), metrics=Metrics(CollectorRegistry()), default_database="crm")


def decide(g: Guard, principal, sql: str = "SELECT 1"):  # type: ignore[no-untyped-def]
    return g.decide(principal, sql, dialect="postgres", search_path=("public",), database="crm")


def test_dba_is_unrestricted_vendor_is_not() -> None:
    g = guard()
    dba, vendor = g.lookup("dba_wang"), g.lookup("vendor_zhang")
    assert dba is not None and dba.unrestricted
    assert vendor is not None and not vendor.unrestricted
    assert g.lookup("maskgate_svc") is None


def test_a_reload_that_removes_a_user_or_changes_a_role_stops_old_sessions(tmp_path: Path) -> None:
    g = guard()
    vendor, dba = g.lookup("vendor_zhang"), g.lookup("dba_wang")
    assert isinstance(decide(g, vendor), Allow) and g.generation == 0
    text = DEMO.read_text()
    # vendor_zhang removed; the dba role no longer sees mobiles in clear.
    start = text.index("  vendor_zhang:")
    end = text.index("  desk_li:")
    changed = (text[:start] + text[end:]).replace("see: {mobile: clear,", "see: {mobile: mask,")
    p = tmp_path / "p.yaml"
    p.write_text(changed)
    g.swap_policy(load_policy(p))
    assert g.generation == 1
    assert decide(g, vendor) is ACCESS_CHANGED
    assert decide(g, dba) is ACCESS_CHANGED  # was unrestricted: its session skips masking
    fresh = g.lookup("dba_wang")
    assert fresh is not None and not fresh.unrestricted
    assert not isinstance(decide(g, fresh), Block)


def test_masked_values_are_counted_by_class() -> None:
    g = guard()
    g.value_masker("mobile", "mask")("13812345678")
    g.value_masker("mobile", "mask")("not a number at all")
    g.text_masker(frozenset({"mobile"}))("call 13812345678")
    g.text_masker(frozenset({"mobile"}))("nothing here")
    vendor = g.lookup("vendor_zhang")
    assert vendor is not None
    from proxy.services.gate import StatementRecord

    g.record(
        StatementRecord(
            "postgres", "s", "vendor_zhang", "vendor", "c", "crm", "SELECT 1", Allow(kind="select")
        )
    )
    reg = g.metrics.registry
    assert reg.get_sample_value("maskgate_masked_values_total", {"class": "mobile"}) == 2
    assert reg.get_sample_value("maskgate_masked_values_total", {"class": "detected"}) == 1
