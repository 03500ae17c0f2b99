"""Who is calling: HTTP Basic (over TLS), bearer tokens and a trusted gateway's identity header.

Owns only turning a request's credentials into a `Principal` of the policy, through the Gate, and
the cache that keeps Basic's PBKDF2 off every request (a check the cache cannot answer is handed
back as a `PasswordCheck`, for the caller to run off its event loop). Knows no mitmproxy type:
the addon hands it header values, the peer address and whether the connection is TLS. Must not
touch sockets.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass

from policies.passwords import verify_password

from ..services.gate import SCRAM_SHA_256, Principal

# A token is `mgt_` and 43 characters of urlsafe base64 (256 random bits): the policy stores only
# its SHA-256, which is enough for a secret nobody can guess (a password would need a slow hash).
TOKEN_PREFIX = "mgt_"
_CACHE_MAX = 10_000

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def token_digest(token: str) -> str:
    """The hex SHA-256 of a bearer token, as the policy stores it (`sha256:<hex>`)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Denied:
    """No person could be established. `why` is for the log only; the client gets one 401 for
    every cause, so a prober learns nothing about which users exist."""

    why: str


@dataclass(frozen=True)
class AuthSettings:
    trusted_header: str | None = None
    trusted_proxies: tuple[Network, ...] = ()

    @staticmethod
    def of(header: str | None, proxies: Iterable[str]) -> AuthSettings:
        return AuthSettings(header, tuple(ipaddress.ip_network(p, strict=False) for p in proxies))

    def trusts(self, peer: str) -> bool:
        try:
            ip = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack listener sees IPv4 gateways as ::ffff:a.b.c.d
        return any(ip in net for net in self.trusted_proxies)


class Authenticator:
    """Checks one request's credentials against the Gate's users.

    Basic passwords are checked against the user's SCRAM verifier, which costs a PBKDF2 of 4096
    rounds; a successful check is remembered under a keyed hash of (user, password, verifier), so
    the next request of the same person costs one HMAC, and a password changed by a policy reload
    (a new verifier) is checked afresh. Failures are not remembered: every guess pays full price.
    """

    def __init__(self, gate: object, settings: AuthSettings) -> None:
        self.gate = gate
        self.settings = settings
        self._key = os.urandom(32)  # this process's only: the cache keys mean nothing elsewhere
        self._verified: set[bytes] = set()

    def authenticate(
        self, authorization: str | None, identity: str | None, peer: str, tls: bool
    ) -> Principal | Denied:
        """`begin`, with a pending password check run here (callers off an event loop)."""
        who = self.begin(authorization, identity, peer, tls)
        return who.run() if isinstance(who, PasswordCheck) else who

    def begin(
        self, authorization: str | None, identity: str | None, peer: str, tls: bool
    ) -> Principal | Denied | PasswordCheck:
        """Who is calling, or a `PasswordCheck` still to run when a Basic password is not in the
        cache: its PBKDF2 takes milliseconds, which an event loop should spend in a thread."""
        gate = self.gate
        header = self.settings.trusted_header
        if header is not None and identity is not None:
            if not self.settings.trusts(peer):
                return Denied(f"{header} sent from {peer}, which is not a trusted proxy")
            principal = gate.lookup(identity.strip())  # type: ignore[attr-defined]
            return principal if principal is not None else Denied(f"{header} names no user of the policy")
        if not authorization:
            return Denied("no credentials")
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer":
            if not value.startswith(TOKEN_PREFIX):
                return Denied("not a maskgate token")
            principal = gate.lookup_token(token_digest(value))  # type: ignore[attr-defined]
            return principal if principal is not None else Denied("unknown token")
        if scheme == "basic":
            if not tls:
                # The password would cross the network readable by anyone on the path.
                return Denied("Basic authentication over a connection without TLS")
            try:
                user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return Denied("malformed Basic credentials")
            if not sep:
                return Denied("malformed Basic credentials")
            principal = gate.lookup(user)  # type: ignore[attr-defined]
            verifier = principal.credential(SCRAM_SHA_256) if principal is not None else None
            if principal is None or verifier is None:
                return Denied("unknown user or no password")
            key = self._cache_key(user, password, verifier)
            if key in self._verified:
                return principal
            return PasswordCheck(self, principal, password, verifier, key)
        return Denied(f"unsupported authorization scheme {scheme[:20]!r}")

    def _cache_key(self, user: str, password: str, verifier: str) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in (user, password, verifier):
            raw = part.encode("utf-8", "surrogatepass")
            mac.update(len(raw).to_bytes(4, "big") + raw)
        return mac.digest()

    def _remember(self, key: bytes) -> None:
        # Set operations are atomic under the GIL: checks running in threads may add concurrently.
        if len(self._verified) >= _CACHE_MAX:
            self._verified.clear()
        self._verified.add(key)


@dataclass(frozen=True)
class PasswordCheck:
    """A Basic password still to be checked against its SCRAM verifier (a PBKDF2 of 4096
    rounds). `run` is CPU only and thread-safe: the addon runs it in a worker thread."""

    auth: Authenticator
    principal: Principal
    password: str
    verifier: str
    key: bytes

    def run(self) -> Principal | Denied:
        if not verify_password(self.password, self.verifier):
            return Denied("wrong password")
        self.auth._remember(self.key)
        return self.principal
