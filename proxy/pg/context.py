"""What the login and relay layers of one PostgreSQL session share, and the dialect facts they read.

Owns the session's configuration, its outbox, its statement tracker and the server settings both
layers follow (client encoding, search path, transaction status). The facts about settings
(which ones make the server read SQL text differently, how it spells its search_path) are the
decision engine's DialectFacts, so a setting is judged by one rule whatever route it takes. Owns
no state machine and no message handling: `login.py` and `relay.py` do, `session.py` composes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from policies.sql.dialects import POSTGRES
from proxy.core.commands import Outbox
from proxy.pg import errors
from proxy.pg import messages as m
from proxy.pg.framing import DEFAULT_MAX_MESSAGE
from proxy.pg.types import codec
from proxy.services.gate import Gate
from proxy.services.settings import SEARCH_PATH
from proxy.services.statement import StatementTracker

log = logging.getLogger("maskgate.pg")


@dataclass(frozen=True, slots=True)
class SessionConfig:
    upstream_user: str
    upstream_password: str = field(repr=False)
    default_database: str
    tls_available: bool = False
    max_message: int = DEFAULT_MAX_MESSAGE
    client_addr: str = ""
    upstream: str = "postgres"  # the configuration's name for the upstream server
    # (database role, password) for the database roles maskgate logs in as (`database_role` of a
    # policy role); a database role without a password is taken with SET ROLE.
    database_roles: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def password_for(self, database_role: str) -> str | None:
        for name, password in self.database_roles:
            if name == database_role:
                return password
        return None


# Which settings make the server read SQL text differently from maskgate's parser, and how the
# server spells its search_path: the same facts the decision engine uses for SET and set_config().
FACTS = POSTGRES

# Reported settings that say who a session is upstream: whether it has superuser rights and its
# session user. Only the proxy sets them, at login; a restricted session (or one with a database
# role) in which the server reports another value is closed, whatever route changed it.
IDENTITY = ("is_superuser", "session_authorization")
# The application_name names the person: `maskgate:<user>/<the client's own name>`. A client may
# rename its session (drivers do: pgjdbc sends SET application_name at connect); the proxy then
# puts the prefix back in front of the new name (proxy/pg/relay.py).
APPLICATION_NAME = "application_name"
APPLICATION_PREFIX = "maskgate:"
NAMEDATALEN = 64  # PostgreSQL keeps names, application_name included, to NAMEDATALEN - 1 bytes


def application_name(user: str, client: str | None) -> str:
    """The upstream application_name of a person's session: `maskgate:<user>`, then `/` and the
    client's own application_name, so pg_stat_activity, the server log and pgaudit tie every
    backend to a person. Kept as PostgreSQL keeps it: printable ASCII only (anything else becomes
    `?`) and at most 63 bytes, cut from the client's part.

    >>> application_name("vendor_zhang", "psql")
    'maskgate:vendor_zhang/psql'
    >>> application_name("vendor_zhang", "")
    'maskgate:vendor_zhang'
    >>> application_name("li", "报表 tool")
    'maskgate:li/?? tool'
    """
    name = APPLICATION_PREFIX + user
    if client:
        name += "/" + "".join(ch if " " <= ch <= "~" else "?" for ch in client)
    return name[: NAMEDATALEN - 1]


def names_the_person(value: str, user: str) -> bool:
    """Whether a reported application_name still starts with the person's `maskgate:<user>`.

    >>> names_the_person("maskgate:li/psql", "li"), names_the_person("maskgate:lisa", "li")
    (True, False)
    """
    own = application_name(user, None)
    return value == own or value.startswith(own + "/") or (len(own) >= NAMEDATALEN - 1 and value == own)


# ---------------------------------------------------------------------------------------------
# The shared context
# ---------------------------------------------------------------------------------------------


class Context:
    """One session's shared state; each layer holds the same instance."""

    __slots__ = ("cfg", "encoding", "fixed", "gate", "identity", "out", "rename", "tracker", "txn")

    def __init__(
        self, gate: Gate, cfg: SessionConfig, *, session_id: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.gate = gate
        self.cfg = cfg
        self.out = Outbox()
        self.tracker = StatementTracker(
            gate,
            protocol="postgres",
            dialect="postgres",
            upstream=cfg.upstream,
            database=cfg.default_database,
            search_path=("$user", "public"),
            session_id=session_id,
            client=cfg.client_addr,
            clock=clock,
        )
        self.encoding = "utf-8"  # the Python codec of the client_encoding: row values travel in it
        self.txn = b"I"  # the transaction status of the latest ReadyForQuery
        self.identity: dict[str, str] = {}  # the server's reports of IDENTITY and application_name
        self.fixed: frozenset[str] = frozenset()  # those of them no statement may change
        # The application_name to give the server back when the session renamed itself.
        self.rename: str | None = None

    @property
    def session_id(self) -> str:
        return self.tracker.session_id

    @property
    def clock(self) -> Callable[[], float]:
        return self.tracker.clock

    def close(self, reason: str, err: m.ErrorResponse | None = None) -> None:
        """Close the session, telling the client `err` last."""
        self.out.close(reason, err.serialize() if err is not None else b"")

    def upstream_failed(
        self, reason: str, *, detail: str = "", tell: bool = False, err: m.ErrorResponse | None = None
    ) -> None:
        """The upstream could not be reached or logged in to. The client learns `reason` only
        with `tell` (the driver's own words), or gets `err` (an upstream error it may see)."""
        log.warning(
            "session %s: upstream connection failed: %s%s",
            self.session_id,
            reason,
            f" ({detail})" if detail else "",
        )
        if err is None:
            err = errors.upstream_unavailable(reason if tell else "")
        self.close(f"upstream failed: {reason}", err)

    def fix_identity(self, database_role: str | None) -> None:
        """The login is done: from now on the identity the server reported is the session's.
        A restricted session, and one with a database role whatever its role may run, keeps its
        superuser status and session user."""
        if self.tracker.restricted or database_role is not None:
            self.fixed = frozenset(IDENTITY)

    def track_parameter(self, ps: m.ParameterStatus, *, login: bool = False) -> None:
        """Follow a setting the server reports (at login, then whenever it changes)."""
        if ps.name in self.fixed and self.identity.get(ps.name) != ps.value:
            # Backstop behind the refusal of SET ROLE, RESET ROLE, SET SESSION AUTHORIZATION,
            # DISCARD ALL, set_config('role', …) and SET application_name: a change the proxy did
            # not make ends the session before it can send another statement.
            self.close(
                f"{ps.name} changed to {ps.value}",
                errors.error(
                    "42501", f"the session's {ps.name} changed; the session is closed", severity="FATAL"
                ),
            )
            return
        if ps.name in IDENTITY or ps.name == APPLICATION_NAME:
            self.identity[ps.name] = ps.value
        principal = self.tracker.principal
        if ps.name == APPLICATION_NAME and not login and principal is not None:
            if names_the_person(ps.value, principal.user):
                self.rename = None
            elif ps.value.strip().lower().startswith(APPLICATION_PREFIX):
                # Someone else's maskgate name, by a route the engine's refusal did not see: the
                # session would pass for another person's in pg_stat_activity until renamed back.
                self.close(
                    f"application_name changed to {ps.value}",
                    errors.error(
                        "42501",
                        "the session's application_name changed; the session is closed",
                        severity="FATAL",
                    ),
                )
                return
            else:
                self.rename = application_name(principal.user, ps.value)
        # Backstop behind the engine's refusal of such SETs: whatever route changed the setting,
        # a restricted session that reaches it is closed before it can send another statement.
        if self.tracker.restricted and FACTS.unsafe_setting(ps.name, ps.value):
            self.close(
                f"unsafe session setting {ps.name}={ps.value}",
                errors.error(
                    "42501",
                    f"session setting {ps.name} = {ps.value} is not allowed for this role",
                    severity="FATAL",
                ),
            )
            return
        if ps.name == "client_encoding":
            self.encoding = codec(ps.value)
        elif ps.name == "search_path":
            path = FACTS.search_path_from_setting(ps.value)
            if login:
                self.tracker.settings.started_with(SEARCH_PATH, path)
            self.tracker.settings.reported(SEARCH_PATH, path)
