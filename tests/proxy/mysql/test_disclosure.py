"""Disclosures on the MySQL row path: classified values a person received, one batch per run."""

from __future__ import annotations

import pytest

from policies.decision import Allow, ColumnMask, Decision
from proxy.mysql import packets as p
from proxy.services.gate import Disclosed, Principal
from tests.proxy.mysql.transcripts import (
    MASKED,
    SECRET,
    FakeGate,
    column,
    from_client,
    from_upstream,
    login,
    result,
    text_row,
    to_client,
    to_upstream,
)

COLS = (column(b"phone"), column(b"id", 3))
ACTION = {True: "clear", False: "mask"}


def decision(pr: Principal, sql: str) -> Decision:
    return Allow(
        kind="select",
        columns=(
            ColumnMask(0, "phone", "mobile", ACTION[pr.unrestricted], sources=("crm.c.phone",)),
            ColumnMask(1, "id", None, "clear", sources=("crm.c.id",)),
        ),
        classes=("mobile",),
    )


@pytest.mark.parametrize("unrestricted", [False, True])
def test_classified_values_and_customer_keys_are_noted(unrestricted: bool) -> None:
    gate = FakeGate(decision)
    gate.observing = True
    gate.customer_key_column = "crm.c.id"
    _s, gate, pb = login(gate, unrestricted=unrestricted)
    shown = SECRET if unrestricted else MASKED
    assert (
        pb
        >> from_client(0, p.ComQuery(b"SELECT phone, id FROM c"))
        << to_upstream(0, p.ComQuery(b"SELECT phone, id FROM c"))
        >> from_upstream(1, *result([text_row(SECRET, b"7")], cols=COLS))
        << to_client(1, *result([text_row(shown, b"7")], cols=COLS))
    )
    ((user, _sid, values),) = gate.disclosed
    assert user == "alice"
    assert values == (
        Disclosed("mobile", "crm.c.phone", SECRET.decode(), unrestricted),
        Disclosed("customer_key", "crm.c.id", "7", True),
    )
