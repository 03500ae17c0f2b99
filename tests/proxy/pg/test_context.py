"""The settings both layers follow, judged by the same dialect facts as SET and set_config()."""

from __future__ import annotations

import pytest

from proxy.core.commands import Close, SendClient
from proxy.pg import messages as m
from proxy.pg.context import FACTS, Context
from proxy.services.gate import Principal
from tests.proxy.pg.fakegate import FakeGate
from tests.proxy.pg.transcripts import CFG


@pytest.mark.parametrize(
    ("name", "value", "unsafe"),
    [
        ("client_encoding", "UTF8", False),
        ("client_encoding", "utf-8", False),
        # One allow-list for every route (startup, SET, set_config, ParameterStatus): LATIN1 was
        # accepted at startup while SET refused it.
        ("client_encoding", "SQL_ASCII", True),
        ("client_encoding", "LATIN1", True),
        ("client_encoding", "GBK", True),
        ("client_encoding", "gb18030", True),
        ("client_encoding", "Shift_JIS", True),
        ("client_encoding", "win-936", True),
        ("client_encoding", "BIG5", True),
        ("standard_conforming_strings", "on", False),
        ("standard_conforming_strings", "off", True),
        ("STANDARD_CONFORMING_STRINGS", "false", True),
        ("application_name", "GBK", False),
    ],
)
def test_settings_that_change_how_sql_is_read(name: str, value: str, unsafe: bool) -> None:
    assert FACTS.unsafe_setting(name, value) is unsafe


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("x, public", ("x", "public")),
        ('"$user", public', ("$user", "public")),
        ("", ()),
        ("a,,b", ("a", "b")),
        ('"Sales", public', ("Sales", "public")),
        ("Sales", ("sales",)),
    ],
)
def test_search_path_as_the_server_reports_it(value: str, path: tuple[str, ...]) -> None:
    assert FACTS.search_path_from_setting(value) == path


def test_tracked_parameters() -> None:
    ctx = Context(FakeGate(), CFG, session_id="t")
    ctx.tracker.principal = Principal("root", "dba", unrestricted=True)
    ctx.track_parameter(m.ParameterStatus("client_encoding", "LATIN1"))
    ctx.track_parameter(m.ParameterStatus("search_path", '"App", x'))
    assert ctx.encoding == "latin-1" and ctx.tracker.search_path == ("App", "x")
    assert not ctx.out.closed


def test_an_unsafe_parameter_closes_a_restricted_session_only() -> None:
    ctx = Context(FakeGate(), CFG, session_id="t")
    ctx.tracker.principal = Principal("alice", "vendor", unrestricted=True)
    ctx.track_parameter(m.ParameterStatus("client_encoding", "SJIS"))
    assert not ctx.out.closed
    ctx.tracker.principal = Principal("bob", "vendor")
    ctx.track_parameter(m.ParameterStatus("standard_conforming_strings", "off"))
    out = ctx.out.flush()
    assert isinstance(out[0], SendClient) and b"42501" in out[0].data
    assert out[1] == Close("unsafe session setting standard_conforming_strings=off")
