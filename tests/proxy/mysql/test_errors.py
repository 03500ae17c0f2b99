"""Client-facing MySQL errors: codes, SQLSTATEs, the maskgate prefix, and that each one serializes."""

from __future__ import annotations

import pytest

from proxy.mysql import errors
from proxy.mysql.packets import ERR


@pytest.mark.parametrize(
    "err,code,state",
    [
        (errors.refused("reading customers.ssn is not allowed"), 1142, "42000"),
        (errors.access_denied("bob"), 1045, "28000"),
        (errors.protocol_violation(), 1158, "08S01"),
        (errors.protocol_violation("unexpected packet"), 1158, "08S01"),
        (errors.packet_too_large(), 1153, "08S01"),
        (errors.unknown_command(0x1D), 1047, "08S01"),
        (errors.internal_error(), 1105, "HY000"),
        (errors.upstream_failed("the database closed the connection"), 1105, "08S01"),
        (errors.database_not_ready("crm"), 1105, "08S01"),
        (errors.shutting_down(), 1053, "08S01"),
        (errors.idle_timeout(), 4031, "HY000"),
        (errors.auth_timeout(), 1152, "08S01"),
        (errors.withheld(1292, "22007"), 1292, "22007"),
    ],
)
def test_codes_and_round_trip(err: ERR, code: int, state: str) -> None:
    assert (err.code, err.sqlstate) == (code, state)
    assert ERR.parse(err.serialize()) == err


def test_messages() -> None:
    assert errors.refused("no").message == "maskgate: no"
    assert (
        errors.access_denied("bob", "10.0.0.1").message
        == "Access denied for user 'bob'@'10.0.0.1' (using password: YES)"
    )
    assert errors.access_denied("bob", using_password=False).message.endswith("(using password: NO)")
    assert errors.protocol_violation().message == "maskgate: protocol violation"
    assert errors.protocol_violation("bad").message == "maskgate: protocol violation: bad"
    assert errors.unknown_command(99).message == "Unknown command"
    assert errors.upstream_failed("gone").message == "maskgate: gone"
    assert '"crm"' in errors.database_not_ready("crm").message
    assert errors.internal_error().message == "maskgate: internal error"
    assert errors.idle_timeout().message == "maskgate: the client was disconnected for inactivity"


def test_withheld_names_the_error_but_not_its_text() -> None:
    msg = errors.withheld(1366, "HY000").message
    assert msg.startswith("maskgate: the statement failed (MySQL error 1366, SQLSTATE HY000)")
    assert "withheld" in msg
