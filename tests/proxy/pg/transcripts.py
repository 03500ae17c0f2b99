"""Helpers for PostgreSQL playbooks: events and commands built from messages, a readable diff.

A transcript reads as the wire does: `>> from_client(m.Query(...))`, `<< to_upstream(...)`.
`login()` runs the whole login (person's SCRAM, upstream startup) as a transcript and hands back
the session ready to relay, with the canned decisions of `decide` below.
"""

from __future__ import annotations

import scramp

from policies.decision import Allow, Block, ColumnMask, Decision
from proxy.core.commands import OpenUpstream, SendClient, SendUpstream
from proxy.core.events import ClientData, UpstreamConnected, UpstreamData
from proxy.core.playbook import Placeholder, Playbook
from proxy.pg import messages as m
from proxy.pg.context import SessionConfig
from proxy.pg.framing import Framer, FramingError
from proxy.pg.login import RegisterCancelKey
from proxy.pg.session import PgSession, Phase
from proxy.services.gate import Principal
from tests.proxy.pg.fakegate import FakeGate

CFG = SessionConfig(upstream_user="svc", upstream_password="svcpw", default_database="crm")
KEY = (77, b"\x00\x00\x00\x09")
UPSTREAM_KEY = (5, b"\x00\x00\x00\x06")
PHONE = ColumnMask(0, "phone", "mobile", "mask")
APP = ("application_name", "maskgate:alice")  # the person's name upstream
DETECT = frozenset({"mobile"})
VIOLATION = m.ErrorResponse(
    (("S", "FATAL"), ("V", "FATAL"), ("C", "08P01"), ("M", "maskgate: protocol violation"))
)
UPSTREAM_VIOLATION = m.ErrorResponse(
    (("S", "FATAL"), ("V", "FATAL"), ("C", "08P01"), ("M", "maskgate: upstream protocol error"))
)


def decide(p: Principal, sql: str) -> Decision:
    if "secrets" in sql:
        return Block("table_denied", "table secrets is not allowed")
    if "phone" in sql:
        return Allow(kind="select", columns=(PHONE,), row_limit=3, detect=DETECT)
    if sql.startswith("SELECT 1; SELECT phone"):
        return Allow(kind="select")
    return Allow(kind="select", detect=DETECT)


def refusal(message: str) -> m.ErrorResponse:
    """The error a refused statement gets (42501)."""
    return m.ErrorResponse((("S", "ERROR"), ("V", "ERROR"), ("C", "42501"), ("M", f"maskgate: {message}")))


def truncated(rows: int) -> m.NoticeResponse:
    """A WARNING: clients that keep only warnings (client_min_messages) still see it."""
    return m.NoticeResponse(
        (
            ("S", "WARNING"),
            ("V", "WARNING"),
            ("C", "01000"),
            ("M", f"maskgate: result truncated to {rows} rows"),
        )
    )


def text_field(name: str, oid: int = 25, fmt: int = 0) -> m.FieldDescription:
    return m.FieldDescription(name, 0, 0, oid, -1, -1, fmt)


def b(*msgs: object) -> bytes:
    return b"".join(x if isinstance(x, bytes) else x.serialize() for x in msgs)  # type: ignore[attr-defined]


def from_client(*msgs: object) -> ClientData:
    return ClientData(b(*msgs))


def from_upstream(*msgs: object) -> UpstreamData:
    return UpstreamData(b(*msgs))


def to_client(*msgs: object) -> SendClient:
    return SendClient(b(*msgs))


def to_upstream(*msgs: object) -> SendUpstream:
    return SendUpstream(b(*msgs))


def backend_messages(data: bytes) -> list[object]:
    """The backend messages in `data`, parsed."""
    f = Framer(max_message=1 << 30)
    buf, frames = f.feed(data)
    return [m.parse_backend(t, buf[s + 5 : e]) for t, s, e in frames]


def sasl_data(cmd: SendClient) -> str:
    """The SCRAM text of the one Authentication message a SendClient carries."""
    (msg,) = backend_messages(cmd.data)
    return msg.data.decode()  # type: ignore[attr-defined]


def render(step: object) -> str:
    """A step of a transcript, with wire bytes shown as the messages they hold."""
    if isinstance(step, ClientData | UpstreamData | SendClient | SendUpstream):
        parse = m.parse_frontend if isinstance(step, ClientData | SendUpstream) else m.parse_backend
        try:
            f = Framer(max_message=1 << 30)
            buf, frames = f.feed(step.data)
            msgs = [repr(parse(t, buf[s + 5 : e])) for t, s, e in frames]
            if f.buffered or not msgs:
                raise FramingError("not whole typed messages")
        except (FramingError, m.MessageError):
            return repr(step)
        return f"{type(step).__name__}({', '.join(msgs)})"
    return repr(step)


def playbook(s: PgSession) -> Playbook:
    return Playbook(s, render=render)


def login(
    gate: FakeGate | None = None, *, unrestricted: bool = False
) -> tuple[PgSession, FakeGate, Playbook]:
    """A session of `alice` (password `pw`) logged in through the whole exchange, ready to relay."""
    gate = gate or FakeGate(decide)
    gate.add_user("alice", "pw", unrestricted=unrestricted)
    s = PgSession(gate, CFG, session_id="t", clock=lambda: 0.0, cancel_key=KEY)
    pb = playbook(s)
    sc = scramp.ScramClient(["SCRAM-SHA-256"], "alice", "pw")
    server_first, server_final = Placeholder(SendClient), Placeholder(SendClient)
    assert (
        pb
        >> from_client(m.StartupMessage(m.PROTOCOL_3_0, (("user", "alice"), ("database", "crm"))))
        << to_client(m.AuthenticationSASL(("SCRAM-SHA-256",)))
        >> from_client(m.SASLInitialResponse("SCRAM-SHA-256", sc.get_client_first().encode()))
        << server_first
    )
    sc.set_server_first(sasl_data(server_first()))
    assert (
        pb
        >> from_client(m.SASLResponse(sc.get_client_final().encode()))
        << server_final
        << OpenUpstream("crm", "postgres")
    )
    sc.set_server_final(sasl_data(server_final()))  # raises unless the proxy proved the password
    ps = m.ParameterStatus("server_version", "17")
    assert (
        pb
        >> UpstreamConnected()
        << to_upstream(m.StartupMessage(m.PROTOCOL_3_0, (("user", "svc"), ("database", "crm"), APP)))
        >> from_upstream(m.AuthenticationOk(), ps, m.BackendKeyData(*UPSTREAM_KEY), m.ReadyForQuery(b"I"))
        << to_client(m.AuthenticationOk(), ps, m.BackendKeyData(*KEY), m.ReadyForQuery(b"I"))
        << RegisterCancelKey(*KEY, *UPSTREAM_KEY)
    )
    assert s.phase is Phase.RELAY
    return s, gate, pb
