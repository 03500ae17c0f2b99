"""The addon's request side: bodies of any type read and forwarded as decided, routing-override
headers stripped, CPU work over a threshold (and the PBKDF2 of Basic) off the event loop."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from mitmproxy.test import taddons

from proxy.http import addon as addon_module
from proxy.http.addon import THREAD_BODY_BYTES, MaskGate
from tests.proxy.http.test_addon import MOBILE, SETTINGS, Recording, flow
from tests.proxy.http.test_addon import gate as gate  # the fixture, by explicit re-export


def send(addon: MaskGate, f: Any, body: bytes = b"", ctype: str | None = None) -> Any:
    if ctype is not None:
        f.request.headers["content-type"] = ctype
    f.request.content = body
    asyncio.run(addon.requestheaders(f))
    if f.response is None:
        asyncio.run(addon.request(f))
    return f


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the callables the addon hands to a worker thread."""
    seen: list[str] = []
    real = asyncio.to_thread

    async def to_thread(fn: Any, *a: Any, **kw: Any) -> Any:
        seen.append(getattr(fn, "__qualname__", repr(fn)))
        return await real(fn, *a, **kw)

    monkeypatch.setattr(addon_module.asyncio, "to_thread", to_thread)
    return seen


def test_routing_override_headers_are_stripped(gate: Recording) -> None:
    addon = MaskGate(gate, SETTINGS)
    sent = {
        "X-Original-URL": "/admin",
        "X-Rewrite-URL": "/admin",
        "X-HTTP-Method-Override": "DELETE",
        "X-Method-Override": "DELETE",
        "X-Forwarded-Prefix": "/admin",
        "X-Forwarded-For": "10.0.0.1",
        "Forwarded": "for=10.0.0.1",
        "X-Middleware-Subrequest": "middleware",
        "X-Keep": "1",
    }
    with taddons.context(addon):
        f = send(addon, flow("/api/x", **{k.lower(): v for k, v in sent.items()}))
    assert f.response is None
    kept = {k.lower() for k in f.request.headers}
    assert kept & {k.lower() for k in sent} == {"x-keep"}
    assert f.request.headers["x-api-key"] == "svc"


@pytest.mark.parametrize("ctype", ["text/plain", None, "application/x-json", "application/json"])
def test_json_under_any_content_type_is_checked(gate: Recording, ctype: str | None) -> None:
    addon = MaskGate(gate, SETTINGS)
    with taddons.context(addon):
        f = send(addon, flow("/api/x"), json.dumps({"filter": {"mobile": "138"}}).encode(), ctype)
    assert f.response is not None and f.response.status_code == 403


def test_json_is_forwarded_as_decided(gate: Recording) -> None:
    addon = MaskGate(gate, SETTINGS)
    with taddons.context(addon):
        f = send(addon, flow("/api/x", who="wang", method="POST"), b'{"a": 1, "a": 2}', "text/plain")
    assert f.response is None
    assert json.loads(f.request.content) == {"a": 2}
    assert f.request.headers["content-length"] == str(len(f.request.raw_content))


def test_forms_are_forwarded_re_encoded_with_every_pair(gate: Recording) -> None:
    addon = MaskGate(gate, SETTINGS)
    form = "application/x-www-form-urlencoded"
    with taddons.context(addon):
        f = send(addon, flow("/api/x", who="wang", method="POST"), b"a=1&a=2&b=%41;c=3", form)
        assert f.response is None and f.request.content == b"a=1&a=2&b=A%3Bc%3D3"
        f = send(addon, flow("/api/x"), b"a=1&mobile=2&a=3", form)
        assert f.response is not None and f.response.status_code == 403


def test_other_bodies_are_scanned_as_text(gate: Recording) -> None:
    addon = MaskGate(gate, SETTINGS)
    multipart = b'--b\r\nContent-Disposition: form-data; name="mobile"\r\n\r\n1381\r\n--b--\r\n'
    with taddons.context(addon):
        f = send(addon, flow("/api/x"), multipart, "multipart/form-data; boundary=b")
        assert f.response is not None and f.response.status_code == 403
        f = send(addon, flow("/api/x"), f"<q>{MOBILE}</q>".encode(), "application/xml")
        assert f.response is not None and f.response.status_code == 403
        f = send(addon, flow("/api/x"), b"<q>4</q>", "application/xml")
        assert f.response is None and f.request.content == b"<q>4</q>"


def test_unreadable_bodies_are_refused_for_restricted_roles(gate: Recording) -> None:
    addon = MaskGate(gate, SETTINGS)
    utf16 = f"mobile {MOBILE}".encode("utf-16")
    with taddons.context(addon):
        f = send(addon, flow("/api/x"), utf16, "text/plain")
        assert f.response is not None and f.response.status_code == 400
        f = send(addon, flow("/api/x", who="wang", method="POST"), utf16, "text/plain")
        assert f.response is None and f.request.content == utf16
        f = send(addon, flow("/api/x"), b"[" * 100 + b"]" * 100, "application/json")
        assert f.response is not None and f.response.status_code == 400
        assert gate.records[-1].decision.reason == "bad_request"


def test_large_bodies_are_decided_in_a_thread(gate: Recording, threads: list[str]) -> None:
    addon = MaskGate(gate, SETTINGS)
    small = json.dumps({"q": "x"}).encode()
    large = json.dumps({"q": ["x"] * THREAD_BODY_BYTES, "mobile": "1"}).encode()
    with taddons.context(addon):
        f = send(addon, flow("/api/x"), small, "application/json")  # the first Basic check
        assert f.response is None
        assert threads == ["PasswordCheck.run"]
        send(addon, flow("/api/x"), small, "application/json")
        assert threads == ["PasswordCheck.run"]  # cached: no thread, and small: none either
        f = send(addon, flow("/api/x"), large, "application/json")
    assert threads == ["PasswordCheck.run", "MaskGate._read_and_decide"]
    assert f.response is not None and f.response.status_code == 403
