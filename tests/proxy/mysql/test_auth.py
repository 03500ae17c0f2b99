"""MySQL auth computations against independent implementations (PyMySQL's, scramp's) and MariaDB's
own PASSWORD() value; both directions of each exchange, and the ways a check must fail."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from pymysql import _auth as pymysql_auth

from policies.passwords import scram_verifier
from proxy.mysql import auth
from proxy.pg.auth import make_verifier

NONCE = bytes(range(1, 21))

# MariaDB: SELECT PASSWORD('secret');
SECRET_HASH = "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"

passwords = st.binary(min_size=1, max_size=64)
nonces = st.binary(min_size=20, max_size=20)


# --- native --------------------------------------------------------------------------------------


def test_native_hash_matches_mariadb() -> None:
    assert auth.native_hash("secret") == SECRET_HASH
    assert auth.native_hash(b"secret") == SECRET_HASH


def test_native_hash_refuses_empty() -> None:
    with pytest.raises(ValueError):
        auth.native_hash("")


@settings(max_examples=50)
@given(passwords, nonces)
def test_native_scramble_matches_pymysql(password: bytes, nonce: bytes) -> None:
    assert auth.native_scramble(password, nonce) == pymysql_auth.scramble_native_password(password, nonce)


def test_native_scramble_cuts_a_trailing_nul_like_clients() -> None:
    assert auth.native_scramble(b"pw", NONCE + b"\0") == auth.native_scramble(b"pw", NONCE)
    assert auth.native_scramble(b"", NONCE) == b""


@settings(max_examples=50)
@given(passwords, nonces)
def test_native_verify_accepts_the_clients_scramble(password: bytes, nonce: bytes) -> None:
    response = pymysql_auth.scramble_native_password(password, nonce)
    assert auth.native_verify(auth.native_hash(password), nonce, response)


def test_native_verify_lower_case_hash() -> None:
    response = pymysql_auth.scramble_native_password(b"secret", NONCE)
    assert auth.native_verify(SECRET_HASH.lower(), NONCE, response)


@pytest.mark.parametrize(
    ("stored", "nonce", "response"),
    [
        (SECRET_HASH, NONCE, pymysql_auth.scramble_native_password(b"other", NONCE)),  # wrong password
        (SECRET_HASH, bytes(20), pymysql_auth.scramble_native_password(b"secret", NONCE)),  # other nonce
        (SECRET_HASH, NONCE, b""),  # client claims no password
        ("", NONCE, pymysql_auth.scramble_native_password(b"secret", NONCE)),  # user has no hash
        (SECRET_HASH[1:], NONCE, pymysql_auth.scramble_native_password(b"secret", NONCE)),  # no '*'
        ("*" + "G" * 40, NONCE, bytes(20)),  # not hex
        (SECRET_HASH, NONCE[:19], pymysql_auth.scramble_native_password(b"secret", NONCE)),  # short nonce
        (SECRET_HASH, NONCE, pymysql_auth.scramble_native_password(b"secret", NONCE)[:19]),
    ],
)
def test_native_verify_refuses(stored: str, nonce: bytes, response: bytes) -> None:
    assert not auth.native_verify(stored, nonce, response)


def test_native_verify_does_not_accept_the_hash_itself_as_proof() -> None:
    # Someone holding only the stored hash cannot answer without SHA1(password).
    stage2 = bytes.fromhex(SECRET_HASH[1:])
    assert not auth.native_verify(SECRET_HASH, NONCE, stage2)


def test_native_password_verify() -> None:
    assert auth.native_password_verify(SECRET_HASH, "secret")
    assert auth.native_password_verify(SECRET_HASH, b"secret")
    assert auth.native_password_verify(SECRET_HASH.lower(), "secret")
    assert not auth.native_password_verify(SECRET_HASH, "Secret")
    assert not auth.native_password_verify(SECRET_HASH, "")
    assert not auth.native_password_verify("", "secret")
    assert not auth.native_password_verify("*" + "0" * 39, "secret")


def test_new_nonce_is_what_clients_can_read() -> None:
    seen = set()
    for _ in range(200):
        n = auth.new_nonce()
        assert len(n) == auth.NONCE_LENGTH
        assert all(0 < b < 0x80 and b != ord("$") for b in n)
        seen.add(n)
    assert len(seen) == 200


# --- caching_sha2 ------------------------------------------------------------------------------


@settings(max_examples=50)
@given(passwords, nonces)
def test_sha2_scramble_matches_pymysql(password: bytes, nonce: bytes) -> None:
    assert auth.sha2_scramble(password, nonce) == pymysql_auth.scramble_caching_sha2(password, nonce)


def test_sha2_scramble_empty_password() -> None:
    assert auth.sha2_scramble(b"", NONCE) == b""


def test_sha2_fast_verify() -> None:
    digest = auth.sha2_digest("secret")
    assert digest == hashlib.sha256(hashlib.sha256(b"secret").digest()).digest()
    good = pymysql_auth.scramble_caching_sha2(b"secret", NONCE)
    assert auth.sha2_verify(digest, NONCE, good)
    assert not auth.sha2_verify(digest, NONCE, pymysql_auth.scramble_caching_sha2(b"other", NONCE))
    assert not auth.sha2_verify(digest, bytes(20), good)
    assert not auth.sha2_verify(digest, NONCE, b"")
    assert not auth.sha2_verify(b"", NONCE, good)


# --- RSA ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> auth.RsaKey:
    return auth.RsaKey()


def test_rsa_public_pem_is_a_2048_bit_rsa_key_made_once(key: auth.RsaKey) -> None:
    pem = key.public_pem()
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    public = serialization.load_pem_public_key(pem)
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    assert key.public_pem() is pem


def test_rsa_key_is_lazy() -> None:
    k = auth.RsaKey()
    assert k._key is None  # no 2048-bit generation until a client asks
    assert auth.RSA_KEY.public_pem() == auth.RSA_KEY.public_pem()


@pytest.mark.parametrize("password", [b"secret", b"p", "密码-пароль".encode(), b"x" * 200])
def test_rsa_decrypts_what_pymysql_encrypts(key: auth.RsaKey, password: bytes) -> None:
    ciphertext = pymysql_auth.sha2_rsa_encrypt(password, NONCE, key.public_pem())
    assert key.decrypt_password(ciphertext, NONCE) == password


def test_rsa_client_side_round_trip(key: auth.RsaKey) -> None:
    ciphertext = auth.encrypt_password(b"upstream-pw", NONCE + b"\0", key.public_pem())
    assert len(ciphertext) == 256
    assert key.decrypt_password(ciphertext, NONCE) == b"upstream-pw"


def test_rsa_client_side_agrees_with_pymysql(key: auth.RsaKey) -> None:
    # OAEP is randomised: compare by decrypting both with the same key.
    ours = auth.encrypt_password(b"pw", NONCE, key.public_pem())
    theirs = pymysql_auth.sha2_rsa_encrypt(b"pw", NONCE, key.public_pem())
    assert ours != theirs
    assert key.decrypt_password(ours, NONCE) == key.decrypt_password(theirs, NONCE) == b"pw"


def test_rsa_refuses_garbage_and_other_nonces(key: auth.RsaKey) -> None:
    ciphertext = pymysql_auth.sha2_rsa_encrypt(b"secret", NONCE, key.public_pem())
    with pytest.raises(ValueError):
        key.decrypt_password(b"\x00" * 256, NONCE)
    with pytest.raises(ValueError):
        key.decrypt_password(ciphertext[:-1], NONCE)
    with pytest.raises(ValueError):
        key.decrypt_password(ciphertext, NONCE[:10])
    # A ciphertext made for another key never decrypts as an empty or any password.
    other = auth.RsaKey()
    with pytest.raises(ValueError):
        other.decrypt_password(ciphertext, NONCE)


def test_rsa_refuses_a_plaintext_without_its_nul(key: auth.RsaKey) -> None:
    public = serialization.load_pem_public_key(key.public_pem())
    assert isinstance(public, rsa.RSAPublicKey)
    no_nul = public.encrypt(auth._xor_repeated(b"secret", NONCE), auth._OAEP)
    with pytest.raises(ValueError):
        key.decrypt_password(no_nul, NONCE)
    # Some other nonce leaves the last byte non-NUL: refused, not a garbled password.
    ciphertext = pymysql_auth.sha2_rsa_encrypt(b"secret", NONCE, key.public_pem())
    with pytest.raises(ValueError):
        key.decrypt_password(ciphertext, bytes(range(101, 121)))


def test_encrypt_password_wants_an_rsa_key() -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError):
        auth.encrypt_password(b"pw", NONCE, ec_pem)


# --- cleartext against the policy's SCRAM verifier ---------------------------------------------


def test_scram_verify_against_maskgate_passwd_and_scramp() -> None:
    for verifier in (scram_verifier("vendor-pass"), make_verifier("vendor-pass")):
        assert auth.scram_verify(verifier, "vendor-pass")
        assert auth.scram_verify(verifier, b"vendor-pass")
        assert not auth.scram_verify(verifier, "vendor-Pass")
        assert not auth.scram_verify(verifier, "")


def test_scram_verify_demo_policy_verifier() -> None:
    # policies/examples/demo.yaml, vendor_zhang / vendor-pass
    v = (
        "SCRAM-SHA-256$4096:jQCtBsEbVsRls4c+5FR39g==$/A9nnUAyAQzY+Or7iQMUxSM6Mm767gkSQ/Llx3Fd0wE="
        ":gzUHMj2XjvB6niwbVNROJnXqSq7rXpqIUm+FqzWJUU4="
    )
    assert auth.scram_verify(v, "vendor-pass")
    assert not auth.scram_verify(v, "desk-pass")


def test_scram_verify_accepts_the_saslprep_form_a_postgres_verifier_holds() -> None:
    # PostgreSQL and its clients hash SASLprep(password); a MySQL client sends it as typed.
    fullwidth = "Ｐａｓｓ"
    assert auth.scram_verify(make_verifier("Pass"), fullwidth)  # scramp applies SASLprep
    assert auth.scram_verify(scram_verifier(fullwidth), fullwidth)  # maskgate passwd does not


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "md5" + "0" * 32,
        "SCRAM-SHA-256$0:AAAA$" + "A" * 44 + ":" + "A" * 44,  # zero iterations
        "SCRAM-SHA-256$4096:AAAA$AAAA:AAAA",  # keys too short
        "SCRAM-SHA-256$4096:!!!!$" + "A" * 43 + "=:" + "A" * 43 + "=",  # not base64
        "SCRAM-SHA-1$4096:AAAA$" + "A" * 43 + "=:" + "A" * 43 + "=",
    ],
)
def test_scram_verify_refuses_unusable_verifiers(bad: str) -> None:
    assert not auth.scram_verify(bad, "pw")


def test_scram_verify_refuses_non_utf8_bytes() -> None:
    assert not auth.scram_verify(scram_verifier("pw"), b"\xff\xfe")
