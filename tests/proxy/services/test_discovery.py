"""The discovery bookkeeping both schema loaders share, without a database: the sampling loop's
order, deadline and skips, and the loader's memory of what each table's last sample found."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from policies.schema import Schema, Table
from proxy.services import discovery
from proxy.services.discovery import DiscoveringLoader, SampleRun, sample_tables

PHONES = [(f"1381234{i:04d}", "x") for i in range(50)]


def _schema(*tables: Table) -> Schema:
    return Schema("db", "postgres", {(t.schema, t.name): t for t in tables})


def _cols(table: Table) -> list[str]:
    return [] if table.kind != "table" else list(table.columns)


CUSTOMERS = Table("s", "customers", ("phone", "note"))
ORDERS = Table("s", "orders", ("ref", "memo"))
VIEW = Table("s", "v", ("phone",), kind="view", definition="SELECT phone FROM s.customers")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_sample_tables_judges_skips_errors_and_stops_at_the_deadline() -> None:
    clock = Clock()
    asked: list[tuple[str, float]] = []

    def read(table: Table, cols: list[str], time_left: Callable[[], float]) -> Sequence[Sequence[Any]]:
        asked.append((table.name, time_left()))
        clock.now += 4.0
        if table.name == "orders":
            raise KeyError("a driver error (its text may quote a value)")
        return PHONES

    schema = _schema(CUSTOMERS, ORDERS, VIEW, Table("s", "z", ("a",)))
    run = sample_tables(
        schema,
        read,
        sampled_columns=_cols,
        errors=KeyError,
        table_timeout_s=5.0,
        deadline_s=7.0,
        clock=clock,
        tables=None,
    )
    # By name; the view has nothing to sample; the table timeout, then what is left of the run.
    assert asked == [("customers", 5.0), ("orders", 3.0)]
    assert run.sampled == (("s", "customers"),) and run.tables == 1
    assert run.skipped == ("s.orders: KeyError", "s.z: deadline")
    assert [(f.table, f.column, f.cls) for f in run.findings] == [("customers", "phone", "mobile")]


def test_sample_tables_follows_the_order_given() -> None:
    seen: list[str] = []

    def read(table: Table, cols: list[str], time_left: Callable[[], float]) -> Sequence[Sequence[Any]]:
        seen.append(table.name)
        return []

    schema = _schema(CUSTOMERS, ORDERS)
    sample_tables(
        schema,
        read,
        sampled_columns=_cols,
        errors=(),
        table_timeout_s=1.0,
        deadline_s=10.0,
        clock=Clock(),
        tables=[("s", "orders"), ("s", "gone"), ("s", "customers")],
    )
    assert seen == ["orders", "customers"]


class Loader(DiscoveringLoader):
    sampled_columns = staticmethod(_cols)


def test_loader_samples_new_tables_first_remembers_and_resamples(capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    loader = Loader(lambda database: "unused", clock=clock)
    dues: list[list[tuple[str, str]]] = []

    def first_only(schema: Schema, **kw: Any) -> SampleRun:
        due = list(kw["tables"])
        dues.append(due)
        if not due:
            return SampleRun((), 0, ())
        f = sample_tables(
            schema,
            lambda t, c, left: [(p, *["x"] * (len(c) - 1)) for p, _ in PHONES],
            sampled_columns=_cols,
            errors=(),
            table_timeout_s=kw["table_timeout_s"],
            deadline_s=kw["deadline_s"],
            clock=kw["clock"],
            tables=due[:1],
        )
        return SampleRun(f.findings, f.tables, tuple(f"{k[0]}.{k[1]}: deadline" for k in due[1:]), f.sampled)

    schema = _schema(CUSTOMERS, ORDERS, VIEW)
    first = loader.discovered("db", schema, first_only)
    assert dues[-1] == [("s", "customers"), ("s", "orders")]
    assert first.discovered == {("s", "customers", "phone"): "mobile"}
    assert "discovery in database 'db' did not sample s.orders: deadline" in capsys.readouterr().err
    second = loader.discovered("db", schema, first_only)
    assert dues[-1] == [("s", "orders")]  # the one not seen yet
    assert set(second.discovered) == {("s", "customers", "phone"), ("s", "orders", "ref")}
    assert loader.discovered("db", schema, first_only).discovered == second.discovered
    assert dues[-1] == []  # all sampled a moment ago: findings kept
    clock.now += discovery.RESAMPLE_S
    loader.discovered("db", schema, first_only)
    assert dues[-1] == [("s", "customers"), ("s", "orders")]  # the oldest sample first
    # A table whose columns changed is due again at once; a dropped one is forgotten.
    changed = _schema(Table("s", "customers", ("phone", "note", "memo")))
    assert loader._due(changed, loader._seen["db"], clock.now) == [("s", "customers")]
    assert loader.discovered("db", changed, first_only).discovered == {("s", "customers", "phone"): "mobile"}
    assert set(loader._seen["db"]) == {("s", "customers")}
    assert loader.discovered("other", schema, first_only).discovered == first.discovered  # per database
