"""SCRAM on both sides: verifier format, real and mock server exchanges, upstream md5/cleartext."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from proxy.pg import messages as m
from proxy.pg.auth import AuthError, ServerScram, UpstreamAuth, make_verifier, parse_verifier


def _exchange(server: ServerScram, password: str) -> UpstreamAuth:
    client = UpstreamAuth("ignored", password)
    first = m.SASLInitialResponse.parse(client.respond(m.AuthenticationSASL(("SCRAM-SHA-256",)))[5:])  # type: ignore[index]
    final = m.SASLResponse.parse(client.respond(server.first(first))[5:])  # type: ignore[index]
    client.respond(server.final(final))
    client.respond(m.AuthenticationOk())
    return client


def test_verifier_round_trip() -> None:
    v = make_verifier("pw", salt=b"0123456789abcdef")
    assert str(parse_verifier(v)) == v
    assert v.startswith("SCRAM-SHA-256$4096:")


@pytest.mark.parametrize("bad", ["md5abc", "SCRAM-SHA-256$x:y$z:w", "", "SCRAM-SHA-1$4096:AA==$AA==:AA=="])
def test_bad_verifier(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_verifier(bad)


def test_scram_success() -> None:
    assert _exchange(ServerScram("alice", make_verifier("pw")), "pw").ok


def test_scram_wrong_password() -> None:
    with pytest.raises(AuthError):
        _exchange(ServerScram("alice", make_verifier("pw")), "nope")


def test_unknown_user_runs_full_mock_exchange() -> None:
    server = ServerScram("ghost", None)
    # Same salt each time for the same unknown name, as a real user's would be.
    client = UpstreamAuth("x", "pw")
    first = m.SASLInitialResponse.parse(client.respond(m.AuthenticationSASL(("SCRAM-SHA-256",)))[5:])  # type: ignore[index]
    cont = server.first(first)
    salt1 = dict(p.split("=", 1) for p in cont.data.decode().split(","))["s"]
    cont2 = ServerScram("ghost", None).first(first)
    assert dict(p.split("=", 1) for p in cont2.data.decode().split(","))["s"] == salt1
    with pytest.raises(AuthError):
        server.final(m.SASLResponse.parse(client.respond(cont)[5:]))  # type: ignore[index]


def test_upstream_md5_and_cleartext() -> None:
    a = UpstreamAuth("svc", "pw")
    raw = a.respond(m.AuthenticationMD5Password(b"salt"))
    inner = hashlib.md5(b"pwsvc").hexdigest().encode()
    assert raw == m.PasswordMessage(b"md5" + hashlib.md5(inner + b"salt").hexdigest().encode()).serialize()
    assert a.respond(m.AuthenticationCleartextPassword()) == m.PasswordMessage(b"pw").serialize()
    assert a.respond(m.AuthenticationOk()) is None and a.ok


def test_upstream_unsupported() -> None:
    with pytest.raises(AuthError):
        UpstreamAuth("svc", "pw").respond(m.AuthenticationOther(7))
    with pytest.raises(AuthError):
        UpstreamAuth("svc", "pw").respond(m.AuthenticationSASL(("SCRAM-SHA-256-PLUS",)))


def test_libpq_style_empty_scram_user() -> None:
    """libpq sends `n=` (empty user) in client-first; the proof must still verify."""
    import base64
    import hmac

    v = parse_verifier(make_verifier("pw"))
    server = ServerScram("alice", str(v))
    bare = "n=,r=clientnonce"
    cont = server.first(m.SASLInitialResponse("SCRAM-SHA-256", b"n,," + bare.encode()))
    attrs = dict(p.split("=", 1) for p in cont.data.decode().split(","))
    salted = hashlib.pbkdf2_hmac("sha256", b"pw", base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    without_proof = f"c=biws,r={attrs['r']}"
    auth = f"{bare},{cont.data.decode()},{without_proof}".encode()
    sig = hmac.new(hashlib.sha256(client_key).digest(), auth, hashlib.sha256).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, sig, strict=True))).decode()
    final = server.final(m.SASLResponse(f"{without_proof},p={proof}".encode()))
    assert final.data.startswith(b"v=")


def test_upstream_scram_reuses_the_salted_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """PBKDF2 runs once per (password, salt, iterations); later logins only do HMACs."""
    from proxy.pg import auth

    calls: list[int] = []
    real = hashlib.pbkdf2_hmac

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    v = make_verifier("svc-pw", salt=b"fixed-salt-16byt")
    auth._upstream_keys.clear()
    monkeypatch.setattr(auth.hashlib, "pbkdf2_hmac", counting)
    assert _exchange(ServerScram("svc", v), "svc-pw").ok
    assert _exchange(ServerScram("svc", v), "svc-pw").ok
    assert len(calls) == 1
    with pytest.raises(AuthError):  # the cache is per password: a wrong one still fails
        _exchange(ServerScram("svc", v), "other")


def test_upstream_scram_rejects_a_server_that_cannot_prove_the_key() -> None:
    server = ServerScram("svc", make_verifier("pw"))
    client = UpstreamAuth("svc", "pw")
    first = m.SASLInitialResponse.parse(client.respond(m.AuthenticationSASL(("SCRAM-SHA-256",)))[5:])  # type: ignore[index]
    client.respond(server.first(first))
    with pytest.raises(AuthError):
        client.respond(m.AuthenticationSASLFinal(b"v=" + base64.b64encode(b"\0" * 32)))
    with pytest.raises(AuthError):
        client.respond(m.AuthenticationOk())


def test_upstream_scram_rejects_a_nonce_it_did_not_start() -> None:
    client = UpstreamAuth("svc", "pw")
    client.respond(m.AuthenticationSASL(("SCRAM-SHA-256",)))
    with pytest.raises(AuthError):
        client.respond(m.AuthenticationSASLContinue(b"r=someoneelses,s=c2FsdA==,i=4096"))


@pytest.mark.parametrize("iterations", ["0", "-1", "100000000", "9" * 40])
def test_upstream_scram_rejects_absurd_iteration_counts(iterations: str) -> None:
    client = UpstreamAuth("svc", "pw")
    first = client.respond(m.AuthenticationSASL(("SCRAM-SHA-256",)))
    assert first is not None
    nonce = re.search(rb"r=([^,\x00]+)", first).group(1).decode()  # type: ignore[union-attr]
    with pytest.raises(AuthError):
        client.respond(m.AuthenticationSASLContinue(f"r={nonce}xyz,s=c2FsdA==,i={iterations}".encode()))
