"""Authentication on both sides of the proxy: SCRAM-SHA-256 server for people, client for upstream.

Owns the verifier format (`SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`, PostgreSQL's),
the sans-IO server-side SCRAM exchange (with a mock exchange for unknown users so neither flow
nor timing reveals which users exist), and the upstream login of the service account (SCRAM,
MD5, cleartext, trust). No sockets, no policy: the session feeds messages in and sends what
comes out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

import scramp
from scramp.utils import saslprep

from proxy.pg.messages import (
    Authentication,
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    PasswordMessage,
    SASLInitialResponse,
    SASLResponse,
)

MECHANISM = "SCRAM-SHA-256"
DEFAULT_ITERATIONS = 4096


class AuthError(Exception):
    """Authentication failed or a peer broke the exchange; the text is for logs only."""


@dataclass(frozen=True, slots=True)
class ScramVerifier:
    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    def __str__(self) -> str:
        b64 = base64.b64encode
        return (
            f"{MECHANISM}${self.iterations}:{b64(self.salt).decode()}"
            f"${b64(self.stored_key).decode()}:{b64(self.server_key).decode()}"
        )


def parse_verifier(text: str) -> ScramVerifier:
    """Parse PostgreSQL's SCRAM verifier; raises ValueError on anything else (e.g. md5 hashes)."""
    try:
        mech, rest = text.split("$", 1)
        iter_salt, keys = rest.split("$", 1)
        iters, salt = iter_salt.split(":", 1)
        stored, server = keys.split(":", 1)
        v = ScramVerifier(
            int(iters),
            base64.b64decode(salt, validate=True),
            base64.b64decode(stored, validate=True),
            base64.b64decode(server, validate=True),
        )
    except (ValueError, TypeError) as e:
        raise ValueError("not a SCRAM-SHA-256 verifier") from e
    if mech != MECHANISM or v.iterations < 1 or len(v.stored_key) != 32 or len(v.server_key) != 32:
        raise ValueError("not a SCRAM-SHA-256 verifier")
    return v


# PostgreSQL's default is 4096; a site that hardens to 10^6 still fits under this bound.
MAX_UPSTREAM_ITERATIONS = 10_000_000


def make_verifier(password: str, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    m = scramp.ScramMechanism(MECHANISM)
    salt_b, stored, server, it = m.make_auth_info(password, iteration_count=iterations, salt=salt)
    return str(ScramVerifier(it, salt_b, stored, server))


# A per-process secret for mock salts: stable within a run (a retrying attacker sees the same salt
# for the same unknown name, as for a real user) but not predictable across runs.
_MOCK_SECRET = os.urandom(32)


def _mock_verifier(user: str) -> ScramVerifier:
    salt = hmac.new(
        _MOCK_SECRET, b"salt:" + user.encode("utf-8", "surrogateescape"), hashlib.sha256
    ).digest()[:16]
    # Random keys: no password can match, but the exchange runs the same steps as for a real user.
    return ScramVerifier(DEFAULT_ITERATIONS, salt, os.urandom(32), os.urandom(32))


def _attrs(msg: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in msg.split(","):
        if len(part) < 2 or part[1] != "=":
            raise AuthError("malformed SCRAM attribute")
        out.setdefault(part[0], part[2:])
    return out


class ServerScram:
    """Server side of SCRAM-SHA-256 (RFC 5802/7677, no channel binding) for one login attempt.

    Written out rather than taken from scramp's ScramServer because PostgreSQL clients send an
    empty SCRAM user name (the startup packet names the user) and scramp rejects that.
    `verifier=None` (unknown user, or a user without a usable verifier) runs a mock exchange that
    always fails at the proof check, exactly where a wrong password fails.
    """

    def __init__(self, user: str, verifier: str | None) -> None:
        self.user = user
        v: ScramVerifier | None = None
        if verifier:
            try:
                v = parse_verifier(verifier)
            except ValueError:
                v = None
        self.real = v is not None
        self._v = v or _mock_verifier(user)
        self._gs2 = ""
        self._bare = ""
        self._server_first = ""
        self._nonce = ""

    @staticmethod
    def mechanisms() -> AuthenticationSASL:
        return AuthenticationSASL((MECHANISM,))

    def first(self, msg: SASLInitialResponse) -> AuthenticationSASLContinue:
        if msg.mechanism != MECHANISM or msg.data is None:
            raise AuthError(f"unsupported SASL mechanism {msg.mechanism!r}")
        try:
            text = msg.data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise AuthError("client-first is not UTF-8") from e
        parts = text.split(",", 2)
        if len(parts) != 3 or parts[0] not in ("n", "y") or parts[1] != "":
            # 'p=' would ask for channel binding, which maskgate does not offer; authzid unsupported.
            raise AuthError("unsupported SCRAM gs2 header")
        self._gs2 = f"{parts[0]},,"
        self._bare = parts[2]
        attrs = _attrs(self._bare)
        if "m" in attrs or "r" not in attrs or not attrs["r"]:
            raise AuthError("malformed SCRAM client-first")
        self._nonce = attrs["r"] + base64.b64encode(os.urandom(18)).decode()
        salt = base64.b64encode(self._v.salt).decode()
        self._server_first = f"r={self._nonce},s={salt},i={self._v.iterations}"
        return AuthenticationSASLContinue(self._server_first.encode())

    def final(self, msg: SASLResponse) -> AuthenticationSASLFinal:
        """Verify the proof; raises AuthError for a wrong password or an unknown user."""
        if not self._nonce:
            raise AuthError("SCRAM final before first")
        try:
            text = msg.data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise AuthError("client-final is not UTF-8") from e
        cut = text.rfind(",p=")
        if cut < 0:
            raise AuthError("SCRAM client-final without proof")
        without_proof = text[:cut]
        attrs = _attrs(without_proof)
        try:
            proof = base64.b64decode(text[cut + 3 :], validate=True)
            cbind = base64.b64decode(attrs.get("c", ""), validate=True)
        except ValueError as e:
            raise AuthError("malformed SCRAM client-final") from e
        if cbind != self._gs2.encode() or attrs.get("r") != self._nonce or len(proof) != 32:
            raise AuthError("SCRAM client-final does not match the exchange")
        auth_message = f"{self._bare},{self._server_first},{without_proof}".encode()
        client_sig = hmac.new(self._v.stored_key, auth_message, hashlib.sha256).digest()
        client_key = bytes(a ^ b for a, b in zip(proof, client_sig, strict=True))
        ok = hmac.compare_digest(hashlib.sha256(client_key).digest(), self._v.stored_key)
        if not ok or not self.real:
            raise AuthError("SCRAM proof rejected" if self.real else "unknown user")
        server_sig = hmac.new(self._v.server_key, auth_message, hashlib.sha256).digest()
        return AuthenticationSASLFinal(b"v=" + base64.b64encode(server_sig))


# SaltedPassword-derived keys of the service account per (password, salt, iterations). The
# upstream's verifier does not change between logins, so PBKDF2 (4096 rounds by default, the
# dominant cost of a new connection) runs once per process instead of once per connection.
_upstream_keys: dict[tuple[str, bytes, int], tuple[bytes, bytes]] = {}


def _client_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """(ClientKey, ServerKey) for SCRAM-SHA-256 (RFC 5802 §3), cached."""
    key = (password, salt, iterations)
    keys = _upstream_keys.get(key)
    if keys is None:
        try:
            prepared = saslprep(password)
        except ValueError:
            prepared = password  # as libpq: a password SASLprep rejects is used as it is
        salted = hashlib.pbkdf2_hmac("sha256", prepared.encode(), salt, iterations)
        keys = (
            hmac.new(salted, b"Client Key", hashlib.sha256).digest(),
            hmac.new(salted, b"Server Key", hashlib.sha256).digest(),
        )
        if len(_upstream_keys) >= 16:
            _upstream_keys.clear()
        _upstream_keys[key] = keys
    return keys


class UpstreamScram:
    """Client side of SCRAM-SHA-256 without channel binding, for the service account.

    Written out (instead of scramp's ScramClient) so the PBKDF2 result can be reused across
    connections; the exchange and its checks are the same: the server nonce must extend ours,
    and the server must prove it knows the ServerKey before the login counts.
    """

    def __init__(self, password: str) -> None:
        self.password = password
        self._nonce = base64.b64encode(os.urandom(18)).decode()
        self._first_bare = f"n=,r={self._nonce}"
        self._server_sig: bytes | None = None
        self.verified = False

    def client_first(self) -> str:
        return "n,," + self._first_bare

    def client_final(self, server_first: str) -> str:
        try:
            attrs = _attrs(server_first)
            nonce, salt, iterations = attrs["r"], base64.b64decode(attrs["s"], validate=True), int(attrs["i"])
        except (KeyError, ValueError) as e:
            raise AuthError("malformed SCRAM server-first") from e
        if "m" in attrs or not nonce.startswith(self._nonce) or len(nonce) <= len(self._nonce):
            raise AuthError("SCRAM server nonce does not extend the client nonce")
        # A broken or hostile upstream could otherwise pin a core for minutes per login.
        if not 1 <= iterations <= MAX_UPSTREAM_ITERATIONS:
            raise AuthError("bad SCRAM iteration count")
        client_key, server_key = _client_keys(self.password, salt, iterations)
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self._first_bare},{server_first},{without_proof}".encode()
        stored_key = hashlib.sha256(client_key).digest()
        client_sig = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, client_sig, strict=True))
        self._server_sig = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}"

    def server_final(self, message: str) -> None:
        if self._server_sig is None:
            raise AuthError("SCRAM server-final before client-final")
        attrs = _attrs(message)
        if "e" in attrs:
            raise AuthError(f"upstream SCRAM error: {attrs['e']}")
        try:
            sig = base64.b64decode(attrs.get("v", ""), validate=True)
        except ValueError as e:
            raise AuthError("malformed SCRAM server-final") from e
        if not hmac.compare_digest(sig, self._server_sig):
            raise AuthError("upstream SCRAM server signature does not match")
        self.verified = True


class UpstreamAuth:
    """Client side of the upstream login: answers each Authentication request of the server."""

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self.password = password
        self._scram: UpstreamScram | None = None
        self.ok = False

    def respond(self, req: Authentication) -> bytes | None:
        """The message to send upstream for this request (None when nothing is to be sent)."""
        if isinstance(req, AuthenticationOk):
            if self._scram is not None and not self._scram.verified:
                # A server that skips the final SCRAM message has not proven it knows the key.
                raise AuthError("upstream ended SCRAM without proving its identity")
            self.ok = True
            return None
        if isinstance(req, AuthenticationCleartextPassword):
            return PasswordMessage(self.password.encode()).serialize()
        if isinstance(req, AuthenticationMD5Password):
            inner = hashlib.md5((self.password + self.user).encode()).hexdigest()
            outer = hashlib.md5(inner.encode() + req.salt).hexdigest()
            return PasswordMessage(b"md5" + outer.encode()).serialize()
        if isinstance(req, AuthenticationSASL):
            if MECHANISM not in req.mechanisms:
                raise AuthError(f"upstream offers no supported SASL mechanism: {req.mechanisms}")
            self._scram = UpstreamScram(self.password)
            return SASLInitialResponse(MECHANISM, self._scram.client_first().encode()).serialize()
        if isinstance(req, AuthenticationSASLContinue) and self._scram is not None:
            try:
                return SASLResponse(self._scram.client_final(req.data.decode()).encode()).serialize()
            except UnicodeDecodeError as e:
                raise AuthError(f"upstream SCRAM: {e}") from e
        if isinstance(req, AuthenticationSASLFinal) and self._scram is not None:
            try:
                self._scram.server_final(req.data.decode())
            except UnicodeDecodeError as e:
                raise AuthError(f"upstream SCRAM server signature: {e}") from e
            return None
        raise AuthError(f"unsupported upstream authentication request {type(req).__name__}")
