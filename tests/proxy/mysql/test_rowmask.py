"""The per-session plan cache: a plan is reused only for what determines it, and a hit never
stands for column definitions that were not parsed."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest

from policies.decision import Allow, ColumnMask
from proxy.mysql import packets as p
from proxy.mysql import rowmask
from proxy.mysql.rowmask import PLAN_CACHE_ENTRIES, PlanCache
from proxy.services.rows import Unmaskable
from tests.proxy.mysql.transcripts import DETECT, MASKED, PHONE, SECRET, FakeGate, column, decide

PHONE_HEAD = column().serialize()


def allow(*columns: ColumnMask, detect: frozenset[str] = DETECT) -> Allow:
    return Allow(kind="select", columns=columns, detect=detect, classes=("mobile",))


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    counted: list[int] = []
    real = rowmask.build_plan

    def counting(*a: object, **kw: object) -> object:
        counted.append(1)
        return real(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(rowmask, "build_plan", counting)
    return counted


def test_the_same_shape_under_a_new_decision_reuses_its_plan(builds: list[int]) -> None:
    cache = PlanCache(FakeGate(decide))
    first = cache.plan([PHONE_HEAD], allow(PHONE), False, 0)
    # A new Allow with equal masks (every simple query gets one): the plan stands.
    again = cache.plan([bytes(PHONE_HEAD)], allow(dataclasses.replace(PHONE)), False, 0)
    assert first is again and len(builds) == 1
    assert first is not None
    assert first.apply(p.TextRow((SECRET,)).serialize())[0] == p.TextRow((MASKED,)).serialize()


@pytest.mark.parametrize(
    "change",
    [
        {"masks": (dataclasses.replace(PHONE, action="null"),)},
        {"masks": (dataclasses.replace(PHONE, cls="id_card"),)},
        {"masks": (dataclasses.replace(PHONE, derived=True, action="redact"),)},
        {"detect": frozenset()},
        {"binary": True},
        {"generation": 1},
        {"head": column(charset=63).serialize()},
        {"head": column(ftype=3).serialize()},
    ],
)
def test_whatever_determines_a_plan_gets_its_own(builds: list[int], change: dict[str, object]) -> None:
    cache = PlanCache(FakeGate(decide))
    cache.plan([PHONE_HEAD], allow(PHONE), False, 0)
    masks = change.get("masks", (PHONE,))
    detect = change.get("detect", DETECT)
    head = change.get("head", PHONE_HEAD)
    with_change = allow(*masks, detect=detect)  # type: ignore[misc,arg-type]
    generation = int(change.get("generation", 0))  # type: ignore[call-overload]
    with contextlib.suppress(Unmaskable):  # refused is a plan of its own too
        cache.plan([head], with_change, bool(change.get("binary")), generation)  # type: ignore[list-item]
    assert len(builds) == 2


def test_unparsable_definitions_are_refused_every_time() -> None:
    cache = PlanCache(FakeGate(decide))
    row = p.TextRow((SECRET,)).serialize()  # a row where a definition belongs
    for _ in range(2):
        with pytest.raises(p.PacketError):
            cache.plan([row], allow(PHONE), False, 0)
        with pytest.raises(p.PacketError):
            cache.plan([row], None, False, 0)


def test_an_unmaskable_result_is_refused_every_time(builds: list[int]) -> None:
    cache = PlanCache(FakeGate(decide))
    bits = column(ftype=16, charset=63).serialize()  # a BIT column has no constant to conceal it
    redact = dataclasses.replace(PHONE, derived=True, action="redact")
    for _ in range(2):
        with pytest.raises(Unmaskable):
            cache.plan([bits], allow(redact), True, 0)
    assert len(builds) == 2


def test_the_cache_is_bounded() -> None:
    cache = PlanCache(FakeGate(decide))
    for i in range(3 * PLAN_CACHE_ENTRIES):
        cache.plan([column(name=f"c{i}".encode()).serialize()], allow(PHONE), False, 0)
        assert len(cache._plans) <= PLAN_CACHE_ENTRIES
    huge = [column(name=b"x" * 250).serialize()] * 40
    cache.plan(huge, None, False, 0)
    assert all(key[-1] != tuple(huge) for key in cache._plans)
