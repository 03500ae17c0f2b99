"""Client-facing PostgreSQL errors and notices: named constructors with the right SQLSTATE.

Owns what a client is told when maskgate answers in the server's place. Every message starts
with `maskgate: ` and is short; details go to the log, never a Python exception text.
"""

from __future__ import annotations

from proxy.pg.messages import ErrorResponse, NoticeResponse


def error(code: str, message: str, *, severity: str = "ERROR", detail: str | None = None) -> ErrorResponse:
    fields = [("S", severity), ("V", severity), ("C", code), ("M", f"maskgate: {message}")]
    if detail:
        fields.append(("D", detail))
    return ErrorResponse(tuple(fields))


INSUFFICIENT_PRIVILEGE = "42501"


def insufficient_privilege(message: str) -> ErrorResponse:
    """A refused statement (42501); `message` is the decision's client-safe text."""
    return error(INSUFFICIENT_PRIVILEGE, message)


def invalid_password(user: str) -> ErrorResponse:
    """Same text for unknown users and wrong passwords, as PostgreSQL does (28P01)."""
    return error("28P01", f'password authentication failed for user "{user}"', severity="FATAL")


def invalid_authorization(message: str) -> ErrorResponse:
    return error("28000", message, severity="FATAL")


def protocol_violation(message: str = "protocol violation") -> ErrorResponse:
    return error("08P01", message, severity="FATAL")


def feature_not_supported(message: str) -> ErrorResponse:
    return error("0A000", message, severity="FATAL")


def upstream_unavailable(reason: str = "") -> ErrorResponse:
    """The database behind the proxy could not be reached or refused the service account.
    `reason` is the proxy's own account of it ("upstream closed the connection during
    startup"), never the upstream's text (see `forwarded_login_error` for that)."""
    message = (
        f"could not connect to the database: {reason}" if reason else "could not connect to the database"
    )
    return error("08006", message, severity="FATAL")


# What the upstream may tell the client about a failed login in its own words: conditions of the
# server (out of connections, memory or disk, starting up, shutting down), which name no table,
# role or value. Anything else (authentication of the service account, an unknown database) says
# something about the deployment and stays the generic 08006.
FORWARDED_LOGIN_ERRORS = frozenset(
    {"53000", "53100", "53200", "53300", "53400", "57000", "57P01", "57P02", "57P03", "57P05"}
)
_FORWARDED_TEXT_LIMIT = 200


def forwarded_login_error(code: str, message: str) -> ErrorResponse | None:
    """The upstream's login error as the client gets it, or None if it must stay generic. Only
    the code and the primary message: its detail and hint stay in the log."""
    if code not in FORWARDED_LOGIN_ERRORS:
        return None
    return error(code, f"the database says: {message[:_FORWARDED_TEXT_LIMIT]}", severity="FATAL")


def database_not_ready(database: str) -> ErrorResponse:
    """The proxy cannot decide statements for the database yet (its schema is not loaded).

    57P03 (cannot_connect_now) is what PostgreSQL itself answers while it starts up: a transient
    refusal that drivers, poolers and health checks already know to retry. 08006 would say the
    connection broke, and a 42501 would be a wrong verdict on a statement never judged."""
    return error(
        "57P03",
        f'the database system is starting up: the schema of database "{database}" is not loaded yet',
        severity="FATAL",
    )


def auth_timeout() -> ErrorResponse:
    return error("08P01", "authentication timed out", severity="FATAL")


def idle_timeout() -> ErrorResponse:
    return error("57P05", "terminating connection due to idle timeout", severity="FATAL")


def shutting_down() -> ErrorResponse:
    return error("57P01", "terminating connection: proxy is shutting down", severity="FATAL")


def truncated_notice(rows: int) -> NoticeResponse:
    """A WARNING, not a NOTICE: pg_dump and many scripts run with client_min_messages = warning
    and take a NOTICE for chatter, and a result cut short without a word would pass for the
    whole table. SQLSTATE 01000 is PostgreSQL's generic warning class."""
    return NoticeResponse(
        (
            ("S", "WARNING"),
            ("V", "WARNING"),
            ("C", "01000"),
            ("M", f"maskgate: result truncated to {rows} rows"),
        )
    )
