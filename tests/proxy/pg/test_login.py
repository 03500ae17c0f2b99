"""Playbooks of the login layer: the person's startup, TLS and SCRAM, then the upstream login."""

from __future__ import annotations

import pytest
import scramp

from proxy.core.commands import Close, OpenUpstream, SendClient, SendUpstream, StartTLS
from proxy.core.events import ClientData, TlsEstablished, UpstreamConnected
from proxy.core.playbook import Placeholder, Playbook
from proxy.pg import messages as m
from proxy.pg.context import SessionConfig
from proxy.pg.login import ForwardCancel, LoginState, RegisterCancelKey
from proxy.pg.session import PgSession, Phase
from tests.proxy.pg.fakegate import FakeGate
from tests.proxy.pg.transcripts import (
    CFG,
    KEY,
    UPSTREAM_KEY,
    UPSTREAM_VIOLATION,
    VIOLATION,
    decide,
    from_client,
    from_upstream,
    login,
    playbook,
    sasl_data,
    to_client,
    to_upstream,
)

SASL = m.AuthenticationSASL(("SCRAM-SHA-256",))


def fatal(code: str, message: str) -> m.ErrorResponse:
    return m.ErrorResponse((("S", "FATAL"), ("V", "FATAL"), ("C", code), ("M", f"maskgate: {message}")))


def session(cfg: SessionConfig = CFG, **users: bool) -> tuple[PgSession, FakeGate]:
    gate = FakeGate(decide)
    for name, unrestricted in (users or {"alice": False}).items():
        gate.add_user(name, "pw", unrestricted=unrestricted)
    return PgSession(gate, cfg, session_id="t", clock=lambda: 0.0, cancel_key=KEY), gate


def startup(user: str = "alice", *params: tuple[str, str]) -> ClientData:
    return from_client(m.StartupMessage(m.PROTOCOL_3_0, (("user", user), *params)))


def authenticate(
    s: PgSession, user: str = "alice", password: str = "pw", *params: tuple[str, str]
) -> ClientData:
    """Startup and SCRAM up to the client's proof, which is returned for the test to send."""
    sc = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
    first = Placeholder(SendClient)
    pb = playbook(s)
    assert (
        pb
        >> startup(user, *params)
        << to_client(SASL)
        >> from_client(m.SASLInitialResponse("SCRAM-SHA-256", sc.get_client_first().encode()))
        << first
    )
    sc.set_server_first(sasl_data(first()))
    return from_client(m.SASLResponse(sc.get_client_final().encode()))


def test_login_success() -> None:
    s, gate, _ = login()
    assert s.ctx.tracker.principal is not None and s.ctx.tracker.principal.user == "alice"
    assert s.login.state is LoginState.DONE and gate.auth_failures == 0


@pytest.mark.parametrize(("user", "password"), [("alice", "wrong"), ("ghost", "pw"), ("svc", "svcpw")])
def test_login_failure_same_error(user: str, password: str) -> None:
    s, gate = session(alice=False, svc=False)  # the service account never logs in through the proxy
    proof = authenticate(s, user, password)
    err = fatal("28P01", f'password authentication failed for user "{user}"')
    # No OpenUpstream: nothing goes upstream before the person is authenticated.
    assert playbook(s) >> proof << to_client(err) << Close("authentication failed")
    assert gate.auth_failures == 1


def test_ssl_refused_without_cert_and_cancel_forwarded() -> None:
    s, _ = session()
    assert (
        playbook(s)
        >> from_client(m.SSLRequest())
        << SendClient(b"N")
        >> from_client(m.GSSENCRequest())
        << SendClient(b"N")
    )
    s2, _ = session()
    assert (
        playbook(s2) >> from_client(m.CancelRequest(*KEY)) << ForwardCancel(*KEY) << Close("cancel request")
    )


def tls_asked() -> tuple[PgSession, Playbook]:
    """A session that offers TLS, after the client asked for it."""
    s, _ = session(SessionConfig("svc", "svcpw", "crm", tls_available=True))
    pb = playbook(s)
    assert pb >> from_client(m.SSLRequest()) << SendClient(b"S") << StartTLS()
    return s, pb


def test_tls_handshake_then_startup() -> None:
    s, pb = tls_asked()
    assert pb >> TlsEstablished() >> startup() << to_client(SASL)
    assert s.login.state is LoginState.SASL_INITIAL


def test_data_after_ssl_request_is_a_violation() -> None:
    s, _ = session(SessionConfig("svc", "pw", "crm", tls_available=True))
    assert (
        playbook(s)
        >> ClientData(m.SSLRequest().serialize() + b"junk")
        << to_client(VIOLATION)
        << Close("client protocol violation: data after SSLRequest")
    )


def test_client_data_during_the_tls_handshake_is_a_violation() -> None:
    _, pb = tls_asked()
    assert (
        pb
        >> startup()
        << to_client(VIOLATION)
        << Close("client protocol violation: unexpected message b'' in TLS_HANDSHAKE")
    )


def test_protocol_3_2_is_negotiated_down() -> None:
    s, _ = session()
    assert (
        playbook(s)
        >> from_client(m.StartupMessage((3 << 16) | 2, (("user", "alice"), ("_pq_.x", "1"))))
        << to_client(m.NegotiateProtocolVersion(0, ("_pq_.x",)), SASL)
    )


@pytest.mark.parametrize(
    ("params", "code", "message", "reason"),
    [
        ((("user", ""),), "28000", "no user name given", "no user"),
        (
            (("user", "alice"), ("replication", "database")),
            "0A000",
            "replication connections are not supported",
            "replication",
        ),
    ],
)
def test_startup_refusals(params: tuple[tuple[str, str], ...], code: str, message: str, reason: str) -> None:
    s, _ = session()
    assert (
        playbook(s)
        >> from_client(m.StartupMessage(m.PROTOCOL_3_0, params))
        << to_client(fatal(code, message))
        << Close(reason)
    )


def test_unsafe_client_encoding_closes_a_restricted_login() -> None:
    s, _ = session()
    proof = authenticate(s, "alice", "pw", ("client_encoding", "SJIS"))
    final = Placeholder(SendClient)
    err = fatal("22023", "client_encoding SJIS is not allowed for this role; use UTF8")
    assert playbook(s) >> proof << final << Close("unsafe client_encoding")
    assert final().data.endswith(err.serialize())


def test_startup_parameters_are_filtered_for_the_upstream() -> None:
    # `options` and unknown parameters stay with the proxy; an unrestricted role keeps SJIS.
    s, _ = session(alice=True)
    params = (("options", "-c search_path=evil"), ("application_name", "app"), ("client_encoding", "SJIS"))
    proof = authenticate(s, "alice", "pw", *params)
    final = Placeholder(SendClient)
    assert (
        playbook(s)
        >> proof
        << final
        << OpenUpstream("crm", "postgres")
        >> UpstreamConnected()
        << to_upstream(
            m.StartupMessage(
                m.PROTOCOL_3_0,
                (
                    ("user", "svc"),
                    ("database", "crm"),
                    ("client_encoding", "SJIS"),
                    ("application_name", "maskgate:alice/app"),
                ),
            )
        )
    )


def upstream_connected() -> tuple[PgSession, Playbook]:
    """A session whose person logged in, with the upstream connected and its startup sent."""
    s, _ = session()
    proof = authenticate(s)
    pb = playbook(s)
    assert (
        pb
        >> proof
        << Placeholder(SendClient)
        << OpenUpstream("crm", "postgres")
        >> UpstreamConnected()
        << Placeholder(SendUpstream)
    )
    return s, pb


def test_upstream_login_failure_tells_the_client_and_closes() -> None:
    _, pb = upstream_connected()
    upstream_err = m.ErrorResponse((("S", "FATAL"), ("C", "28P01"), ("M", "bad password")))
    assert (
        pb
        >> from_upstream(upstream_err)
        << to_client(fatal("08006", "could not connect to the database"))
        << Close("upstream failed: 28P01 bad password")
    )


@pytest.mark.parametrize(
    ("code", "text"),
    [
        ("53300", "sorry, too many clients already"),
        ("57P03", "the database system is starting up"),
        ("57P01", "terminating connection due to administrator command"),
    ],
)
def test_an_upstream_condition_at_login_reaches_the_client_with_its_code(code: str, text: str) -> None:
    """Conditions of the server say nothing about data: the client gets their SQLSTATE and
    words, so it knows to retry (a pooler backs off on 53300, waits on 57P03)."""
    _, pb = upstream_connected()
    upstream_err = m.ErrorResponse((("S", "FATAL"), ("C", code), ("M", text), ("D", "detail stays")))
    assert (
        pb
        >> from_upstream(upstream_err)
        << to_client(fatal(code, f"the database says: {text}"))
        << Close(f"upstream failed: {code} {text}")
    )


def test_upstream_ready_before_authentication_is_a_violation() -> None:
    _, pb = upstream_connected()
    assert (
        pb
        >> from_upstream(m.ReadyForQuery(b"I"))
        << to_client(UPSTREAM_VIOLATION)
        << Close("upstream protocol violation: upstream ready before authentication")
    )


def test_what_follows_the_upstreams_ready_for_query_goes_to_the_relay() -> None:
    # A ParameterStatus the server sends right after ReadyForQuery, in the same read, is the
    # relay's: it reaches the client and is tracked.
    s, pb = upstream_connected()
    path = m.ParameterStatus("search_path", "app, public")
    assert (
        pb
        >> from_upstream(m.AuthenticationOk(), m.BackendKeyData(*UPSTREAM_KEY), m.ReadyForQuery(b"I"), path)
        << to_client(m.AuthenticationOk(), m.BackendKeyData(*KEY), m.ReadyForQuery(b"I"), path)
        << RegisterCancelKey(*KEY, *UPSTREAM_KEY)
    )
    assert s.phase is Phase.RELAY and s.ctx.tracker.search_path == ("app", "public")


# -- the person's database role ------------------------------------------------------------------


def with_database_role(
    role: str,
    cfg: SessionConfig = CFG,
    *,
    unrestricted: bool = False,
    params: tuple[tuple[str, str], ...] = (),
) -> tuple[PgSession, Playbook]:
    """alice, whose role runs as database role `role`, logged in; the upstream startup awaited."""
    gate = FakeGate(decide)
    gate.add_user("alice", "pw", unrestricted=unrestricted, database_role=role)
    s = PgSession(gate, cfg, session_id="t", clock=lambda: 0.0, cancel_key=KEY)
    proof = authenticate(s, "alice", "pw", *params)
    pb = playbook(s)
    assert pb >> proof << Placeholder(SendClient) << OpenUpstream("crm", "postgres")
    return s, pb


APP = ("application_name", "maskgate:alice")
SUPERUSER_OFF = m.ParameterStatus("is_superuser", "off")
AUTH_SVC = m.ParameterStatus("session_authorization", "svc")


def test_a_database_role_with_a_password_logs_in_as_itself() -> None:
    cfg = SessionConfig("svc", "svcpw", "crm", database_roles=(("crm_vendor", "vendor-db-pw"),))
    _, pb = with_database_role("crm_vendor", cfg)
    assert (
        pb
        >> UpstreamConnected()
        << to_upstream(m.StartupMessage(m.PROTOCOL_3_0, (("user", "crm_vendor"), ("database", "crm"), APP)))
        >> from_upstream(m.AuthenticationCleartextPassword())
        << to_upstream(m.PasswordMessage(b"vendor-db-pw"))
    )
    assert "vendor-db-pw" not in repr(cfg)  # never in a log line or a traceback


def test_a_database_role_without_a_password_is_taken_with_set_role_before_the_client_starts() -> None:
    s, pb = with_database_role("crm_desk")
    login_answer = (m.AuthenticationOk(), SUPERUSER_OFF, AUTH_SVC, m.BackendKeyData(*UPSTREAM_KEY))
    assert (
        pb
        >> UpstreamConnected()
        << to_upstream(m.StartupMessage(m.PROTOCOL_3_0, (("user", "svc"), ("database", "crm"), APP)))
        >> from_upstream(*login_answer, m.ReadyForQuery(b"I"))
        << to_upstream(m.Query('SET ROLE "crm_desk"'))
        << RegisterCancelKey(*KEY, *UPSTREAM_KEY)
    )
    assert s.phase is Phase.LOGIN  # nothing reached the client yet
    assert (
        pb
        >> from_upstream(m.CommandComplete("SET"), m.ReadyForQuery(b"I"))
        << to_client(
            m.AuthenticationOk(), SUPERUSER_OFF, AUTH_SVC, m.BackendKeyData(*KEY), m.ReadyForQuery(b"I")
        )
    )
    assert s.phase is Phase.RELAY and s.ctx.tracker.settings.value("role") == ("crm_desk",)


def test_a_database_role_that_cannot_be_taken_ends_the_login() -> None:
    _, pb = with_database_role("crm_desk")
    denied = m.ErrorResponse(
        (("S", "ERROR"), ("C", "42501"), ("M", 'permission denied to set role "crm_desk"'))
    )
    assert (
        pb
        >> UpstreamConnected()
        << Placeholder(SendUpstream)
        >> from_upstream(m.AuthenticationOk(), m.BackendKeyData(*UPSTREAM_KEY), m.ReadyForQuery(b"I"))
        << Placeholder(SendUpstream)
        << RegisterCancelKey(*KEY, *UPSTREAM_KEY)
        >> from_upstream(denied, m.ReadyForQuery(b"I"))
        << to_client(fatal("28000", "this role's database role cannot be taken; ask the DBA"))
        << Close("cannot assume database role crm_desk: 42501")
    )


def test_a_restricted_role_never_runs_as_a_superuser_database_role() -> None:
    cfg = SessionConfig("svc", "svcpw", "crm", database_roles=(("crm_vendor", "x"),))
    _, pb = with_database_role("crm_vendor", cfg)
    superuser = m.ParameterStatus("is_superuser", "on")
    assert (
        pb
        >> UpstreamConnected()
        << Placeholder(SendUpstream)
        >> from_upstream(
            m.AuthenticationOk(), superuser, m.BackendKeyData(*UPSTREAM_KEY), m.ReadyForQuery(b"I")
        )
        << to_client(fatal("28000", "this role's database role is a superuser; ask the DBA"))
        << RegisterCancelKey(*KEY, *UPSTREAM_KEY)
        << Close("restricted database role is a superuser")
    )


def relay_with(role: str | None, *, unrestricted: bool = False) -> tuple[PgSession, Playbook]:
    cfg = SessionConfig("svc", "svcpw", "crm", database_roles=(("crm_vendor", "x"),))
    gate = FakeGate(decide)
    gate.add_user("alice", "pw", unrestricted=unrestricted, database_role=role)
    s = PgSession(gate, cfg, session_id="t", clock=lambda: 0.0, cancel_key=KEY)
    proof = authenticate(s)
    pb = playbook(s)
    app = m.ParameterStatus("application_name", "maskgate:alice")
    assert (
        pb
        >> proof
        << Placeholder(SendClient)
        << OpenUpstream("crm", "postgres")
        >> UpstreamConnected()
        << Placeholder(SendUpstream)
        >> from_upstream(m.AuthenticationOk(), SUPERUSER_OFF, AUTH_SVC, app, m.BackendKeyData(*UPSTREAM_KEY))
        << RegisterCancelKey(*KEY, *UPSTREAM_KEY)
        >> from_upstream(m.ReadyForQuery(b"I"))
        << Placeholder(SendClient)
    )
    assert s.phase is Phase.RELAY
    return s, pb


CHANGED = [
    m.ParameterStatus("is_superuser", "on"),  # RESET ROLE back to a superuser service account
    m.ParameterStatus("session_authorization", "postgres"),  # SET SESSION AUTHORIZATION
]
RENAMED = m.ParameterStatus("application_name", "report tool")  # renamed: put back at ReadyForQuery
IMPERSONATED = m.ParameterStatus("application_name", "maskgate:dba_wang/psql")  # someone else's name


@pytest.mark.parametrize("report", [*CHANGED, IMPERSONATED], ids=lambda r: r.name)
def test_an_identity_change_the_proxy_did_not_make_closes_a_restricted_session(
    report: m.ParameterStatus,
) -> None:
    _, pb = relay_with(None)
    err = m.ErrorResponse(
        (
            ("S", "FATAL"),
            ("V", "FATAL"),
            ("C", "42501"),
            ("M", f"maskgate: the session's {report.name} changed; the session is closed"),
        )
    )
    assert pb >> from_upstream(report) << to_client(err) << Close(f"{report.name} changed to {report.value}")


def test_a_session_with_a_database_role_keeps_its_identity_even_when_unrestricted() -> None:
    _, pb = relay_with("crm_vendor", unrestricted=True)
    assert pb >> from_upstream(RENAMED) << to_client(RENAMED)  # renamed back at ReadyForQuery
    assert pb >> from_upstream(CHANGED[0]) << Placeholder(SendClient) << Close("is_superuser changed to on")
    # Without a database role, an unrestricted role may change who it is (a DBA's SET ROLE).
    _, pb = relay_with(None, unrestricted=True)
    assert pb >> from_upstream(CHANGED[0]) << to_client(CHANGED[0])


def test_the_upstream_application_name_names_the_person_within_63_bytes() -> None:
    from proxy.pg.login import application_name

    long = application_name("alice", "x" * 100)
    assert long.startswith("maskgate:alice/xxx") and len(long.encode()) == 63
    assert application_name("alice", "t\u00e9\x01l") == "maskgate:alice/t??l"
    _, pb = with_database_role("crm_desk", params=(("application_name", "psql"),))
    want = m.StartupMessage(
        m.PROTOCOL_3_0, (("user", "svc"), ("database", "crm"), ("application_name", "maskgate:alice/psql"))
    )
    assert pb >> UpstreamConnected() << to_upstream(want)


@pytest.mark.parametrize("length", [10_001, 60_000_000])
def test_a_large_message_before_authentication_is_refused_from_its_header(length: int) -> None:
    """Before the person is authenticated every message is small (SCRAM's are a few hundred
    bytes): a large length header is refused at once, its body never awaited nor buffered."""
    s, _ = session()
    header = b"p" + length.to_bytes(4, "big")
    err = fatal("08P01", f"message too large ({length} bytes, limit 10000)")
    assert (
        playbook(s)
        >> startup()
        << to_client(SASL)
        >> ClientData(header)
        << to_client(err)
        << Close(f"client protocol violation: message too large ({length} bytes, limit 10000)")
    )
    assert s._cf.buffered == 0


def test_the_configured_message_limit_applies_once_logged_in() -> None:
    s, _, _ = login()
    assert s._cf.max_message == s.ctx.cfg.max_message > 10_000
