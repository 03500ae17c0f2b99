"""The MySQL/MariaDB authentication computations, on both sides of the proxy; pure functions only.

Owns the arithmetic of `mysql_native_password` (the "*HEX" stored hash, the client scramble and
its server-side check), of `caching_sha2_password` (the fast-auth scramble and the RSA-wrapped
cleartext password of full auth) and the check of a cleartext password against the policy's
credentials (native "*HEX" or PostgreSQL's SCRAM-SHA-256 verifier). No sockets, no packets, no
login states: the session's state machine calls these with bytes it has already framed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import threading

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from scramp.utils import saslprep

# Both plugins scramble with exactly 20 bytes of server nonce ("auth plugin data"); handshakes
# carry it NUL-terminated, and clients (libmysqlclient, PyMySQL) use only the first 20 bytes.
NONCE_LENGTH = 20

NATIVE_HASH_RE = re.compile(r"^\*[0-9A-Fa-f]{40}$")

# MySQL clients pad RSA with OAEP (MGF1 and hash SHA-1) when the server says it is 8.0.5 or later,
# and with PKCS#1 v1.5 before that. Only OAEP is accepted here: v1.5 decryption is a padding
# oracle (Bleichenbacher), so the server version the proxy announces must be >= 8.0.5.
_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
RSA_BITS = 2048

# Bounds for a SCRAM verifier's iteration count: PostgreSQL's default is 4096; a site hardened to
# 10^6 still fits. Outside them the verifier is treated as unusable rather than run.
_SCRAM_MAX_ITERATIONS = 10_000_000
_SCRAM_MOCK_ITERATIONS = 4096


def new_nonce() -> bytes:
    """A fresh 20-byte server nonce for a handshake.

    As MySQL's own generate_user_salt: 7-bit bytes without NUL or '$', because clients read the
    second half of the handshake's nonce as a NUL-terminated string.
    """
    out = bytearray(b & 0x7F for b in os.urandom(NONCE_LENGTH))
    for i, b in enumerate(out):
        if b in (0, 0x24):  # NUL, '$'
            out[i] = b + 1
    return bytes(out)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _sha1(data: bytes) -> bytes:
    return hashlib.sha1(data).digest()


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _as_bytes(password: str | bytes) -> bytes:
    return password.encode("utf-8") if isinstance(password, str) else password


# --- mysql_native_password -------------------------------------------------------------------


def native_hash(password: str | bytes) -> str:
    """The stored form MariaDB's PASSWORD('x') prints: "*" + hex(SHA1(SHA1(password))), upper case.

    An empty password has no hash (MySQL stores ""; a policy user must have a real one).
    """
    pw = _as_bytes(password)
    if not pw:
        raise ValueError("empty password")
    return "*" + _sha1(_sha1(pw)).hex().upper()


def _native_stage2(stored_hash: str) -> bytes | None:
    """SHA1(SHA1(password)) out of "*HEX", or None for anything that is not one."""
    if not isinstance(stored_hash, str) or not NATIVE_HASH_RE.match(stored_hash):
        return None
    return bytes.fromhex(stored_hash[1:])


def native_scramble(password: bytes, nonce: bytes) -> bytes:
    """Client side, for logging in upstream: SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw))).

    An empty password answers with an empty response, as MySQL clients do.
    """
    if not password:
        return b""
    stage1 = _sha1(password)
    return _xor(stage1, _sha1(nonce[:NONCE_LENGTH] + _sha1(stage1)))


def native_verify(stored_hash: str, nonce: bytes, response: bytes) -> bool:
    """Server side: does a client's 20-byte `response` to our `nonce` prove the password of "*HEX"?

    The response XOR SHA1(nonce + stage2) gives back the client's SHA1(password), whose SHA1 must
    be the stored stage2. An empty response (a client claiming no password), a malformed hash or
    a nonce that is not ours-sized all fail.
    """
    stage2 = _native_stage2(stored_hash)
    if stage2 is None or len(nonce) != NONCE_LENGTH or len(response) != 20:
        return False
    stage1 = _xor(response, _sha1(nonce + stage2))
    return hmac.compare_digest(_sha1(stage1), stage2)


def native_password_verify(stored_hash: str, password: str | bytes) -> bool:
    """Whether a cleartext password (caching_sha2_password full auth, clear_password) is "*HEX"'s."""
    stage2 = _native_stage2(stored_hash)
    pw = _as_bytes(password)
    if stage2 is None or not pw:
        return False
    return hmac.compare_digest(_sha1(_sha1(pw)), stage2)


# --- caching_sha2_password -------------------------------------------------------------------


def sha2_scramble(password: bytes, nonce: bytes) -> bytes:
    """Client side fast-auth scramble, for an upstream MySQL 8:
    SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce). Empty password: empty response."""
    if not password:
        return b""
    p1 = _sha256(password)
    return _xor(p1, _sha256(_sha256(p1) + nonce[:NONCE_LENGTH]))


def sha2_digest(password: str | bytes) -> bytes:
    """SHA256(SHA256(password)): what a caching_sha2_password server keeps in its fast-auth cache
    after a successful full authentication. A password equivalent for fast auth: memory only."""
    return _sha256(_sha256(_as_bytes(password)))


def sha2_verify(digest: bytes, nonce: bytes, response: bytes) -> bool:
    """Server side fast auth against a cached `sha2_digest`: the response XOR
    SHA256(digest + nonce) gives SHA256(password), whose SHA256 must be the digest."""
    if len(digest) != 32 or len(nonce) != NONCE_LENGTH or len(response) != 32:
        return False
    p1 = _xor(response, _sha256(digest + nonce))
    return hmac.compare_digest(_sha256(p1), digest)


def _xor_repeated(data: bytes, nonce: bytes) -> bytes:
    key = nonce[:NONCE_LENGTH]
    if not key:
        raise ValueError("empty nonce")
    return bytes(b ^ key[i % len(key)] for i, b in enumerate(data))


def encrypt_password(password: bytes, nonce: bytes, public_pem: bytes) -> bytes:
    """Client side full auth without TLS, for the upstream: RSA-OAEP(SHA-1) of
    (password + NUL) XOR the nonce repeated, with the server's PEM public key."""
    key = serialization.load_pem_public_key(public_pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the server's public key is not an RSA key")
    return key.encrypt(_xor_repeated(password + b"\0", nonce), _OAEP)


class RsaKey:
    """The proxy's RSA key pair for caching_sha2_password full auth over a connection without TLS.

    Generated on first use (2048 bits takes a noticeable moment; processes that never see such a
    login never pay it) and then kept for the life of the process: clients may cache the public
    key, and nothing of it is ever written to disk.
    """

    def __init__(self, bits: int = RSA_BITS) -> None:
        self._bits = bits
        self._lock = threading.Lock()
        self._key: rsa.RSAPrivateKey | None = None
        self._pem: bytes | None = None

    def _private(self) -> rsa.RSAPrivateKey:
        key = self._key
        if key is None:
            with self._lock:  # once, even when two sessions ask at the same moment
                if self._key is None:
                    self._key = rsa.generate_private_key(public_exponent=65537, key_size=self._bits)
                key = self._key
        return key

    def public_pem(self) -> bytes:
        """The public key as clients expect it after a public-key request (PEM, SubjectPublicKeyInfo)."""
        if self._pem is None:
            self._pem = (
                self._private()
                .public_key()
                .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            )
        return self._pem

    def decrypt_password(self, ciphertext: bytes, nonce: bytes) -> bytes:
        """The cleartext password a client RSA-encrypted for `nonce` (without its trailing NUL).

        Raises ValueError for anything that does not decrypt, or decrypts without the NUL the
        client appends: the caller answers that as a failed login, never as an empty password.
        """
        try:
            plain = self._private().decrypt(ciphertext, _OAEP)
        except ValueError:
            raise ValueError("RSA-encrypted password does not decrypt") from None
        if len(nonce) != NONCE_LENGTH:
            raise ValueError("nonce is not 20 bytes")
        clear = _xor_repeated(plain, nonce)
        if not clear.endswith(b"\0"):
            raise ValueError("RSA-encrypted password lacks its terminating NUL")
        return clear[:-1]


# One key per process, shared by every session.
RSA_KEY = RsaKey()


# --- cleartext against the policy's SCRAM-SHA-256 verifier -----------------------------------


def _parse_scram(verifier: str) -> tuple[int, bytes, bytes, bytes] | None:
    """(iterations, salt, StoredKey, ServerKey) out of PostgreSQL's verifier, or None."""
    try:
        mech, rest = verifier.split("$", 1)
        head, keys = rest.split("$", 1)
        iters_s, salt_b64 = head.split(":", 1)
        stored_b64, server_b64 = keys.split(":", 1)
        if mech != "SCRAM-SHA-256" or not iters_s.isdigit():
            return None
        iterations = int(iters_s)
        salt = base64.b64decode(salt_b64, validate=True)
        stored = base64.b64decode(stored_b64, validate=True)
        server = base64.b64decode(server_b64, validate=True)
    except (ValueError, TypeError, AttributeError):
        return None
    if not 1 <= iterations <= _SCRAM_MAX_ITERATIONS or not salt or len(stored) != 32 or len(server) != 32:
        return None
    return iterations, salt, stored, server


def _scram_keys(password: bytes, salt: bytes, iterations: int) -> bytes:
    salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
    stored = _sha256(hmac.new(salted, b"Client Key", hashlib.sha256).digest())
    server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return stored + server


def _scram_candidates(password: str | bytes) -> list[bytes]:
    """The byte forms of a cleartext password a SCRAM verifier may have been made from.

    `maskgate passwd` hashes the password as typed; PostgreSQL (a verifier copied from pg_authid)
    and PostgreSQL clients hash its SASLprep form. Both are the same password to its owner, so
    both are tried (they differ only for some non-ASCII passwords).
    """
    if isinstance(password, bytes):
        try:
            password = password.decode("utf-8")
        except UnicodeDecodeError:
            return []
    if not password:
        return []
    out = [password.encode("utf-8")]
    try:
        prepped = saslprep(password)
    except ValueError:  # prohibited characters: PostgreSQL then uses the password as it is
        prepped = password
    if prepped and prepped != password:
        out.append(prepped.encode("utf-8"))
    return out


def scram_verify(verifier: str, password: str | bytes) -> bool:
    """Whether a cleartext password matches the policy's SCRAM-SHA-256 verifier
    (`SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`, PostgreSQL's format).

    Constant-time comparison of both keys. A verifier that does not parse (or an unknown user's
    missing one, passed as "") still costs the same PBKDF2 work against a random one, so the
    time to fail does not tell which user names exist.
    """
    candidates = _scram_candidates(password)
    parsed = _parse_scram(verifier) if isinstance(verifier, str) else None
    if parsed is None:
        iterations, salt, expected = _SCRAM_MOCK_ITERATIONS, os.urandom(16), os.urandom(64)
    else:
        iterations, salt, stored, server = parsed
        expected = stored + server
    ok = False
    for pw in candidates or [b"\0"]:  # no candidate: still do the work, then fail
        ok |= hmac.compare_digest(_scram_keys(pw, salt, iterations), expected)
    return ok and parsed is not None and bool(candidates)
