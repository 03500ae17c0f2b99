"""Request bodies read for the decision and rebuilt for the upstream (proxy/http/reqbody.py)."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.http import FormBody, JsonObject, TextBody
from proxy.http import reqbody


def test_json_is_read_under_any_type_and_forwarded_re_serialised() -> None:
    for ctype in ("application/json", "text/plain", None, "application/x-json; charset=utf-8"):
        body = reqbody.read(b'{"a": 1, "a": {"mobile": "1"}, "b": "\\u5f20"}', ctype)
        assert body is not None and isinstance(body.decided, JsonObject)
        assert body.decided == {"a": {"mobile": "1"}, "b": "张"}
        assert body.decided.shadowed == [("a", 1)]
        assert body.forward is not None and json.loads(body.forward) == body.decided
    utf16 = json.dumps({"q": "x"}).encode("utf-16")
    body = reqbody.read(utf16, "application/json")
    assert (
        body is not None
        and body.forward is not None
        and json.loads(body.forward.decode("utf-16")) == {"q": "x"}
    )


@pytest.mark.parametrize("raw", [b"{", b'{"a": NaN}', b"[Infinity]", b"[" * 5000 + b"]" * 5000])
def test_invalid_json_under_a_json_type_is_refused(raw: bytes) -> None:
    with pytest.raises(reqbody.BodyRefused):
        reqbody.read(raw, "application/json")


def test_forms_keep_every_pair() -> None:
    body = reqbody.read(b"a=1&a=2&m%6Fbile=3", "application/x-www-form-urlencoded")
    assert body is not None and body.decided == FormBody((("a", "1"), ("a", "2"), ("mobile", "3")))
    assert body.forward == b"a=1&a=2&mobile=3"
    with pytest.raises(reqbody.BodyRefused):
        reqbody.read(b"a=%FF", "application/x-www-form-urlencoded")


def test_other_bodies_are_text() -> None:
    body = reqbody.read(b"<a>mobile</a>", "application/xml")
    assert body is not None and body.decided == TextBody("<a>mobile</a>") and body.forward is None
    body = reqbody.read(b"caf\xe9", "text/plain")
    assert body is not None and body.decided == TextBody("café")
    body = reqbody.read("call 13812345678".encode("utf-16"), "text/plain")
    assert body is not None and isinstance(body.decided, TextBody) and not body.decided.readable


def test_decoding_stops_at_the_limit() -> None:
    bomb = gzip.compress(b" " * 5_000_000)
    with pytest.raises(reqbody.BodyTooLarge):
        reqbody.decode(bomb, "gzip", 100_000)
    assert reqbody.decode(gzip.compress(b"abc"), "GZIP", 10) == b"abc"
    assert reqbody.decode(zlib.compress(b"abc"), "deflate", 10) == b"abc"
    raw_deflate = zlib.compressobj(wbits=-15)
    packed = raw_deflate.compress(b"abc") + raw_deflate.flush()
    assert reqbody.decode(packed, "deflate", 10) == b"abc"
    with pytest.raises(reqbody.BodyTooLarge):
        reqbody.decode(b"x" * 11, None, 10)
    for enc, raw in (
        ("gzip", b"not gzip"),
        ("br", b"x"),
        ("gzip, gzip", b"x"),
        ("gzip", gzip.compress(b"a")[:-4]),
    ):
        with pytest.raises(reqbody.BodyRefused):
            reqbody.decode(raw, enc, 100)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_property_forwarded_json_reads_back_as_what_was_decided(doc: object) -> None:
    raw = json.dumps(doc).encode()
    body = reqbody.read(raw, "application/json")
    assert body is not None and body.forward is not None
    assert json.loads(body.forward) == body.decided == doc
