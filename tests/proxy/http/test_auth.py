"""Who an HTTP caller is: Basic over TLS against the SCRAM verifier, bearer tokens by their hash,
a gateway's identity header only from trusted networks; one answer for every failure."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.passwords import scram_verifier
from proxy.http.auth import Authenticator, AuthSettings, Denied, token_digest
from proxy.services.gate import SCRAM_SHA_256, Principal

VERIFIER = scram_verifier("s3cret", iterations=64)
TOKEN = "mgt_" + "a" * 43


class Gate:
    def __init__(self) -> None:
        self.users = {"zhang": Principal("zhang", "vendor", credentials=((SCRAM_SHA_256, VERIFIER),))}
        self.lookups = 0

    def lookup(self, user: str) -> Principal | None:
        self.lookups += 1
        return self.users.get(user)

    def lookup_token(self, digest: str) -> Principal | None:
        return self.users["zhang"] if digest == token_digest(TOKEN) else None


def basic(user: str, pw: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def auth(**kw: object) -> Authenticator:
    return Authenticator(Gate(), AuthSettings.of(kw.get("header"), kw.get("proxies", ())))  # type: ignore[arg-type]


def test_basic_over_tls() -> None:
    a = auth()
    who = a.authenticate(basic("zhang", "s3cret"), None, "127.0.0.1", True)
    assert isinstance(who, Principal) and who.user == "zhang"
    # The cached success is keyed by the password too.
    assert isinstance(a.authenticate(basic("zhang", "s3cret"), None, "127.0.0.1", True), Principal)
    assert isinstance(a.authenticate(basic("zhang", "wrong"), None, "127.0.0.1", True), Denied)


def test_basic_without_tls_is_refused() -> None:
    assert isinstance(auth().authenticate(basic("zhang", "s3cret"), None, "127.0.0.1", False), Denied)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic",
        "Basic !!!",
        "Basic " + base64.b64encode(b"nocolon").decode(),
        "Digest x",
        "Bearer x",
    ],
)
def test_malformed_credentials(header: str | None) -> None:
    assert isinstance(auth().authenticate(header, None, "127.0.0.1", True), Denied)


def test_bearer() -> None:
    a = auth()
    assert isinstance(a.authenticate(f"Bearer {TOKEN}", None, "1.2.3.4", False), Principal)
    assert isinstance(a.authenticate(f"bearer  {TOKEN} ", None, "1.2.3.4", False), Principal)
    assert isinstance(a.authenticate(f"Bearer {TOKEN}x", None, "1.2.3.4", False), Denied)


def test_trusted_header_only_from_trusted_networks() -> None:
    a = auth(header="X-Remote-User", proxies=["10.0.0.0/8"])
    assert isinstance(a.authenticate(None, "zhang", "10.1.2.3", False), Principal)
    assert isinstance(a.authenticate(None, "zhang", "::ffff:10.1.2.3", False), Principal)
    assert isinstance(a.authenticate(None, "zhang", "192.168.1.1", False), Denied)
    # A header from outside is refused even with valid credentials beside it: it is an attack.
    assert isinstance(a.authenticate(basic("zhang", "s3cret"), "zhang", "192.168.1.1", True), Denied)
    assert isinstance(a.authenticate(None, "ghost", "10.1.2.3", False), Denied)
    assert isinstance(a.authenticate(None, "zhang", "not-an-ip", False), Denied)


@given(st.text(max_size=40), st.text(max_size=40))
def test_no_password_but_the_right_one(user: str, pw: str) -> None:
    who = auth().authenticate(basic(user, pw), None, "127.0.0.1", True)
    assert isinstance(who, Denied) or (user == "zhang" and pw == "s3cret")
