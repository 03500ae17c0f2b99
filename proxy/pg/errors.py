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


def upstream_unavailable() -> ErrorResponse:
    """The database behind the proxy could not be reached or refused the service account."""
    return error("08006", "could not connect to the database", severity="FATAL")


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
