"""Body masking with the real maskers and detectors: kinds, JSON paths, NDJSON, CSV, text, and
property tests that a planted number never comes out whole, however the request made it look."""

from __future__ import annotations

import base64
import csv
import fnmatch
import gzip
import html
import io
import json
import re
import unicodedata
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import masking
from proxy.http.bodies import (
    CHUNK,
    MAX_DEPTH,
    BinaryBody,
    BodyError,
    BodyPlan,
    MaskedBody,
    kind_of,
    mask_body,
)
from tests.masking.strategies import FULLWIDTH, bank_cards, id18s, mobiles

KEY = b"k" * 32
MOBILE = "13812345678"
ID18 = "11010519491231002X"
CARD = "6222020200112345679"


class Source:
    """A MaskerSource on the masking library, as the guard builds it (without metrics)."""

    def value_masker(self, cls: str | None, action: str) -> Callable[[Any], Any]:
        return masking.make_masker(cls if cls in masking.CLASSES else None, action, key=KEY)

    def text_masker(self, classes: frozenset[str]) -> Callable[[str], str]:
        return masking.make_text_masker(classes & frozenset(masking.CLASSES), "mask", key=KEY)


SRC = Source()


def _match(pat: tuple[str, ...], path: tuple[str | int, ...]) -> bool:
    """A test double of Api.field_class's patterns: keys (case-insensitive globs), `k[]`, `**`."""
    if not pat:
        return not path
    head, rest = pat[0], pat[1:]
    if head == "**":
        return any(_match(rest, path[i:]) for i in range(len(path) + 1))
    if not path or not isinstance(path[0], str):
        return False
    if head.endswith("[]"):
        return (
            fnmatch.fnmatchcase(path[0].lower(), head[:-2].lower())
            and len(path) > 1
            and isinstance(path[1], int)
            and _match(rest, path[2:])
        )
    return fnmatch.fnmatchcase(path[0].lower(), head.lower()) and _match(rest, path[1:])


FIELDS = {
    "**.mobile": "mobile",
    "**.idNo": "id_card",
    "**.bankAcct": "bank_card",
    "data[].contact.phone": "mobile",
    "**.owner": "person_name",
    "**.owner.phone": "mobile",
    "**.balance": "bank_card",
    "**.public": "email",
}


def plan(
    see: dict[str, str] | None = None,
    max_rows: int | None = None,
    detect: frozenset[str] | None = None,
    fields: dict[str, str] | None = None,
) -> BodyPlan:
    rules = [(tuple(p.split(".")), c) for p, c in (FIELDS if fields is None else fields).items()]
    see = {"email": "clear", "bank_card": "deny"} if see is None else see
    if detect is None:  # as the policy computes it: every class the role does not see clear
        detect = frozenset(c for c in masking.PERSONAL_CLASSES if see.get(c) != "clear")

    def field_class(path: tuple[str | int, ...]) -> str | None:
        return next((c for pat, c in rules if _match(pat, path)), None)

    def name_class(name: str) -> str | None:
        return next((c for pat, c in rules if _match(pat[-1:], (name,))), None)

    return BodyPlan(field_class, name_class, lambda c: see.get(c, "mask"), detect, max_rows)


def run(kind: str, body: bytes | str, p: BodyPlan | None = None, charset: str | None = None) -> MaskedBody:
    raw = body.encode() if isinstance(body, str) else body
    return mask_body(kind, raw, charset, p or plan(), SRC)


def jrun(doc: Any, p: BodyPlan | None = None) -> tuple[Any, MaskedBody]:
    out = run("json", json.dumps(doc, ensure_ascii=False), p)
    return json.loads(out.body), out


# ------------------------------------------------------------------------------------- kinds


@pytest.mark.parametrize(
    ("ctype", "kind"),
    [
        ("application/json", "json"),
        ("Application/JSON; charset=utf-8", "json"),
        ("application/problem+json", "json"),
        ("application/vnd.api+json", "json"),
        ("application/x-ndjson", "ndjson"),
        ("application/jsonl", "ndjson"),
        ("application/json-seq", "ndjson"),
        ("text/csv; charset=gbk; header=present", "csv"),
        ("text/plain", "text"),
        ("text/html; charset=utf-8", "text"),
        ("text/xml", "text"),
        ("text/javascript", "text"),
        ("text/event-stream", "text"),
        ("application/xml", "text"),
        ("application/atom+xml", "text"),
        ("application/javascript", "text"),
        ("application/x-www-form-urlencoded", "text"),
        (None, "text"),
        ("", "text"),
        ("application/octet-stream", "binary"),
        ("application/pdf", "binary"),
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "binary"),
        ("application/vnd.ms-excel", "binary"),
        ("application/zip", "binary"),
        ("image/png", "binary"),
        ("image/svg+xml", "binary"),
        ("audio/mpeg", "binary"),
        ("video/mp4", "binary"),
        ("application/msgpack", "binary"),
        ("application/x-protobuf", "binary"),
        ("multipart/form-data; boundary=x", "binary"),
        ("multipart/mixed", "binary"),
        ("application/x-unknown", "binary"),
    ],
)
def test_kind_of(ctype: str | None, kind: str) -> None:
    assert kind_of(ctype) == kind


def test_empty_bodies_pass_as_they_are_and_binary_is_never_masked() -> None:
    for kind in ("json", "ndjson", "csv", "text", "binary", "empty"):
        assert run(kind, b"") == MaskedBody(b"", 0, 0, 0, frozenset())
    with pytest.raises(BodyError):
        run("binary", b"\x89PNG")
    with pytest.raises(BodyError):
        run("yaml", b"a: 1")
    # A body under "empty" is not passed unread.
    assert MOBILE not in run("empty", f"tel {MOBILE}").body.decode()


# -------------------------------------------------------------------------------------- JSON


def test_classified_fields_keep_their_type() -> None:
    doc = {
        "mobile": MOBILE,
        "idNo": ID18,
        "x": {"mobile": int(MOBILE)},
        "bankAcct": CARD,
        "public": "a@qq.com",
    }
    out, res = jrun(doc)
    assert out == {
        "mobile": "138****5678",
        "idNo": "110***********002X",
        "x": {"mobile": 13800005678},
        "bankAcct": None,  # deny
        "public": "a@qq.com",  # e-mail is seen clear
    }
    assert res.masked == 4 and res.classes == {"mobile", "id_card", "bank_card"}
    assert res.items == 1 and res.truncated == 0 and res.content_type_charset == "utf-8"


def test_clear_classes_still_pass_the_detectors() -> None:
    out, _ = jrun({"public": f"a@qq.com {MOBILE}"})
    assert out == {"public": "a@qq.com 138****5678"}


def test_booleans_and_nulls_stay_and_floats_keep_their_shape() -> None:
    out, res = jrun({"mobile": [True, None, 13812345678.75, -5.0], "bankAcct": [True, None]})
    assert out == {"mobile": [True, None, 13800005678.0, -0.0], "bankAcct": [None, None]}
    assert res.masked == 3  # the float twice, the denied boolean once; -5.0 -> -0.0 is equal


def test_actions_hash_fake_redact_null_on_numbers_and_text() -> None:
    for action in ("hash", "fake", "redact"):
        out, _ = jrun({"mobile": [MOBILE, int(MOBILE)]}, plan(see={"mobile": action}))
        s, n = out["mobile"]
        assert MOBILE not in s and type(n) is int and n != int(MOBILE), action
        assert len(str(n)) == 11 or (action == "redact" and n == 0)
    out, _ = jrun({"mobile": [MOBILE, int(MOBILE), 1.5, True]}, plan(see={"mobile": "null"}))
    assert out == {"mobile": [None, None, None, True]}


def test_a_classified_container_passes_its_class_down_unless_a_leaf_has_its_own() -> None:
    doc = {"owner": {"name": "张三丰", "aliases": ["李四"], "phone": MOBILE, "age": 40}}
    out, res = jrun(doc)
    assert out == {"owner": {"name": "张*丰", "aliases": ["李*"], "phone": "138****5678", "age": 0}}
    assert res.classes == {"person_name", "mobile"}
    # Keys of a classified object are not values: only the detectors read them.
    out, _ = jrun({"owner": {MOBILE: "张三"}})
    assert out == {"owner": {"138****5678": "张*"}}


def test_path_classes_with_list_indexes() -> None:
    doc = {
        "data": [{"contact": {"phone": MOBILE}}, {"contact": {"phone": "13912345678"}}],
        "contact": {"phone": "x"},
    }
    out, _ = jrun(doc, plan(fields={"data[].contact.phone": "mobile"}, detect=frozenset()))
    assert out["data"] == [{"contact": {"phone": "138****5678"}}, {"contact": {"phone": "139****5678"}}]
    assert out["contact"] == {"phone": "x"}


def test_unclassified_values_numbers_and_keys_go_through_the_detectors() -> None:
    doc = {
        "note": f"客户 {MOBILE} 身份证{ID18}",
        "n": int(MOBILE),
        "neg": -int(MOBILE),
        "f": float(MOBILE),
        "big": int(CARD),
        "e": 1.3812345678e20,
        "point": 1381234.5678,
        "small_f": 0.13812345678,
        MOBILE: {"k": 1},
        "small": 123,
        "id": 1234567,
    }
    out, res = jrun(doc)
    assert out["note"] == "客户 138****5678 身份证110***********002X"
    assert out["n"] == 13800005678 and out["neg"] == -13800005678
    assert out["f"] == 13800005678.0
    assert out["big"] == 6222020000000005679
    for k in ("e", "point", "small_f"):
        assert MOBILE not in repr(out[k]).replace(".", ""), k
    assert out["138****5678"] == {"k": 1}
    assert out["small"] == 123 and out["id"] == 1234567
    assert res.masked == 10
    assert {"mobile", "id_card", "bank_card"} <= res.classes


def test_keys_that_mask_alike_are_both_kept() -> None:
    other = "13899995678"  # masks to the same 138****5678
    out, _ = jrun({MOBILE: 1, other: 2, "138****5678": 3})
    assert out == {"138****5678": 1, "138****5678#2": 2, "138****5678#3": 3}


def test_max_rows_bounds_every_list_anywhere() -> None:
    doc = {"data": [{"calls": list(range(5))} for _ in range(4)], "tags": [[1, 2, 3]], "n": 5}
    out, res = jrun(doc, plan(max_rows=2))
    assert out == {"data": [{"calls": [0, 1]}, {"calls": [0, 1]}], "tags": [[1, 2]], "n": 5}
    assert res.truncated == 2 + 3 + 3 + 1
    assert res.items == 2
    out, res = jrun(list(range(10)), plan(max_rows=3))
    assert out == [0, 1, 2] and res.items == 3 and res.truncated == 7


def _client(i: int) -> dict[str, Any]:
    return {"id": i, "mobile": MOBILE, "contact": {"mobile": MOBILE, "email": "a@b.c"}}


def test_max_rows_bounds_records_in_maps_and_groups_not_only_arrays() -> None:
    # A map keyed by id: entries past max_rows leave the map.
    out, res = jrun({"clients": {str(i): _client(i) for i in range(5)}}, plan(max_rows=2))
    assert list(out["clients"]) == ["0", "1"] and res.truncated == 3 and res.items == 2
    # Groups of lists: the records of the whole body, in document order.
    groups = {"branches": [{"branch": b, "clients": [_client(i) for i in range(2)]} for b in range(3)]}
    out, res = jrun(groups, plan(max_rows=3))
    assert [len(g["clients"]) for g in out["branches"]] == [2, 1, 0] and res.truncated == 3
    # A record's own sub-object is part of it; a collection inside it is not.
    out, res = jrun([{"mobile": MOBILE, "calls": [{"mobile": MOBILE}] * 3}] * 2, plan(max_rows=3))
    # (one call and the second element cut)
    assert out == [{"mobile": "138****5678", "calls": [{"mobile": "138****5678"}] * 2}] and res.truncated == 2
    # A map keyed by a detected number: each entry is a record.
    out, res = jrun({"by_mobile": {MOBILE: 1, "13912345670": 2, "15012345671": 3}}, plan(max_rows=2))
    assert len(out["by_mobile"]) == 2 and res.truncated == 1
    # Objects without a classified or detected value are not records.
    out, res = jrun({"a": {"x": {"n": 1}, "y": {"n": 2}, "z": {"n": 3}}}, plan(max_rows=1))
    assert len(out["a"]) == 3 and res.truncated == 0


def test_text_records_are_lines_or_markup_rows() -> None:
    lines = "".join(f"client {i} {MOBILE}\nno number here\n" for i in range(4))
    res = run("text", lines, plan(max_rows=2))
    assert res.body.decode().count("138****5678") == 2 and res.body.decode().count("no number") == 4
    assert res.truncated == 2
    table = "<table>" + "".join(f"<tr><td>{i}</td><td>{MOBILE}</td></tr>" for i in range(5)) + "</table>"
    res = run("text", table, plan(max_rows=2))
    assert (
        res.body.decode()
        == "<table><tr><td>0</td><td>138****5678</td></tr><tr><td>1</td><td>138****5678</td></tr></table>"
    )
    xml = "<cs>" + "".join(f"<c><id>{i}</id><m>{MOBILE}</m></c>" for i in range(5)) + "</cs>"
    res = run("text", xml, plan(max_rows=3))
    assert res.body.decode().count("<c>") == 3 and res.body.decode().endswith("</c></cs>")


@pytest.mark.parametrize("kind", ["text", "csv", "ndjson"])
def test_text_that_holds_control_characters_is_binary(kind: str) -> None:
    packed = gzip.compress(json.dumps({"mobile": MOBILE}).encode())
    with pytest.raises(BinaryBody):
        run(kind, packed, charset="iso-8859-1")
    with pytest.raises(BinaryBody):
        run(kind, "a\x00b")
    with pytest.raises(BinaryBody):
        run(kind, "\x85\x86\x87\x88 text", charset="iso-8859-1")
    assert run(kind, "a\tb\fc\r\n" if kind != "ndjson" else "{}\r\n").body


@pytest.mark.parametrize(
    "encode",
    [
        lambda b: b.hex(),
        lambda b: b.hex().upper(),
        lambda b: base64.b64encode(b).decode(),
        lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="),
    ],
)
def test_numbers_in_base64_or_hex_tokens_are_masked_and_stay_decodable(
    encode: Callable[[bytes], str],
) -> None:
    payload = json.dumps({"mobile": MOBILE, "after": 7}).encode()
    tok = encode(payload)
    out, res = jrun({"next": tok, "memo": f"call {encode(MOBILE.encode())} now"})
    assert out["next"] != tok and res.masked >= 2
    for s in (out["next"], out["memo"].split()[1]):
        try:
            raw = bytes.fromhex(s)
        except ValueError:
            raw = base64.urlsafe_b64decode(s.replace("+", "-").replace("/", "_") + "=" * (-len(s) % 4))
        assert MOBILE.encode() not in raw and b"138****5678" in raw
    # Words and ids of the same alphabet that decode to no number stay as they are.
    doc = {
        "a": "internationalization",
        "b": "0123456789abcdef",
        "c": base64.b64encode(b"hello world").decode(),
    }
    assert jrun(doc)[0] == doc


def test_serialisation_is_compact_ordered_exact_and_unicode() -> None:
    raw = '{ "z": 1, "a": [ 1 , 2 ], "名": "值", "big": 123456789012345678901234567890, "nan": NaN }'
    res = run("json", raw)
    assert res.body.decode() == '{"z":1,"a":[1,2],"名":"值","big":123456789012345678901234567890,"nan":NaN}'


def test_json_encodings_and_bom() -> None:
    doc = {"note": f"tel {MOBILE}"}
    for enc in ("utf-8-sig", "utf-16", "utf-16-le", "utf-32"):
        out = run("json", json.dumps(doc).encode(enc))
        assert json.loads(out.body) == {"note": "tel 138****5678"}, enc
    # A declared legacy charset is honoured; the output is UTF-8 either way.
    out = run("json", json.dumps({"名": MOBILE}, ensure_ascii=False).encode("gbk"), charset="GBK")
    assert json.loads(out.body.decode("utf-8")) == {"名": "138****5678"}


def test_unicode_escapes_are_read_before_the_detectors() -> None:
    escaped = "".join(f"\\u{ord(c):04x}" for c in MOBILE)
    out = run("json", '{"a": "' + escaped + '", "b": "' + MOBILE.translate(FULLWIDTH) + '"}')
    assert MOBILE not in out.body.decode()
    assert json.loads(out.body) == {"a": "138****5678", "b": "１３８****５６７８"}


def test_duplicate_keys_never_pass_their_first_value() -> None:
    out = run("json", '{"x": "13812345678", "x": "ok"}')
    assert out.body == b'{"x":"ok"}'


def test_lone_surrogates_come_out_escaped_and_valid() -> None:
    out = run("json", '{"a": "\\ud800 x"}')
    assert json.loads(out.body) == {"a": "\ud800 x"}


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"{'a': 1}",
        b"[1, 2,]",
        b'{"a": "\xff"}',
        b"  ",
        b"1" * 5000,  # beyond Python's int-conversion limit
        b"[" * (MAX_DEPTH + 5) + b"]" * (MAX_DEPTH + 5),
        b"[" * 100_000,
    ],
)
def test_unreadable_json_is_an_error_never_passed(raw: bytes) -> None:
    with pytest.raises(BodyError) as exc:
        run("json", raw)
    assert "13812345678" not in str(exc.value)


def test_unknown_charset_is_an_error() -> None:
    with pytest.raises(BodyError):
        run("json", b"{}", charset="x-klingon")
    with pytest.raises(BodyError):
        run("text", b"hello", charset="base64")


def test_no_detect_classes_leave_unclassified_values_alone() -> None:
    out, res = jrun({"note": MOBILE, "mobile": MOBILE}, plan(detect=frozenset()))
    assert out == {"note": MOBILE, "mobile": "138****5678"} and res.masked == 1


# ------------------------------------------------------------------------------------ NDJSON


def test_ndjson_records_are_masked_and_bounded() -> None:
    lines = [json.dumps({"mobile": MOBILE, "calls": [1, 2, 3], "i": i}) for i in range(4)]
    res = run("ndjson", "\r\n".join(lines) + "\n\n", plan(max_rows=2))
    assert res.body.decode().splitlines() == [
        '{"mobile":"138****5678","calls":[1,2],"i":0}',
        '{"mobile":"138****5678","calls":[1,2],"i":1}',
    ]
    assert res.items == 2 and res.truncated == 2 + 2  # two records, one element of each kept list


def test_json_text_sequences_keep_their_separators() -> None:
    res = run("ndjson", f'\x1e{{"a": "{MOBILE}"}}\n\x1e[1]\n')
    assert res.body == b'\x1e{"a":"138****5678"}\n\x1e[1]\n'


def test_an_invalid_ndjson_record_is_an_error() -> None:
    with pytest.raises(BodyError):
        run("ndjson", '{"a": 1}\n{"b": \n')


# --------------------------------------------------------------------------------------- CSV


def _rows(body: bytes, **kw: Any) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline=""), **kw))


def test_csv_columns_by_header_and_detectors_everywhere() -> None:
    text = (
        f"id,mobile,bankAcct,note,{MOBILE}\r\n"
        f'1,{MOBILE},{CARD},"tel {MOBILE}, ""quoted""\nsecond line",x\r\n'
        f"2,13912345678,,plain,y,{ID18}\r\n"
    )
    res = run("csv", text)
    assert res.body.decode().count("\r\n") == 3
    assert _rows(res.body) == [
        ["id", "mobile", "bankAcct", "note", "138****5678"],
        ["1", "138****5678", "", 'tel 138****5678, "quoted"\nsecond line', "x"],
        ["2", "139****5678", "", "plain", "y", "110***********002X"],
    ]
    assert res.items == 2 and res.classes >= {"mobile", "id_card", "bank_card"}


def test_csv_bom_dialects_line_ends_and_max_rows() -> None:
    res = run("csv", f"\ufeffmobile;note\n{MOBILE};a\n{MOBILE};b\n{MOBILE};c\n", plan(max_rows=2))
    assert res.body.decode() == "\ufeffmobile;note\n138****5678;a\n138****5678;b\n"
    assert res.items == 2 and res.truncated == 1
    res = run("csv", f"mobile\tnote\r\n{MOBILE}\tx {MOBILE}")
    assert res.body.decode() == "mobile\tnote\r\n138****5678\tx 138****5678"


def test_csv_in_a_legacy_charset_comes_out_utf8() -> None:
    res = run("csv", f"手机,备注\n{MOBILE},张三\n".encode("gbk"), charset="gbk")
    assert res.body.decode("utf-8") == "手机,备注\n138****5678,张三\n"


def test_malformed_csv_is_an_error() -> None:
    with pytest.raises(BodyError):
        run("csv", f'a,b\n"{MOBILE},x\n')
    with pytest.raises(BodyError):
        run("csv", b"a,b\n\xff,1\n")


# -------------------------------------------------------------------------------------- text


def test_json_served_as_text_is_masked_as_json() -> None:
    doc = {"data": [{"owner": "张三丰", "mobile": MOBILE}] * 3}
    res = run("text", json.dumps(doc, ensure_ascii=False, indent=2), plan(max_rows=2))
    assert json.loads(res.body) == {"data": [{"owner": "张*丰", "mobile": "138****5678"}] * 2}
    assert res.items == 2 and res.truncated == 1
    # Text that only looks like JSON stays text.
    assert run("text", "[not json] " + MOBILE).body.decode() == "[not json] 138****5678"


def test_text_detectors_and_charsets() -> None:
    res = run("text", f"客户手机 {MOBILE}，身份证 {ID18}".encode("gb18030"), charset="gb18030")
    assert res.body.decode() == "客户手机 138****5678，身份证 110***********002X"
    assert res.masked == 2 and res.classes == {"mobile", "id_card"} and res.items == 0
    with pytest.raises(BodyError):
        run("text", b"\xff\xfe\xfa not utf-8")


def _utf16(ch: str) -> list[int]:
    b = ch.encode("utf-16-be")
    return [int.from_bytes(b[i : i + 2], "big") for i in range(0, len(b), 2)]


HIDDEN = [
    "".join(f"&#{ord(c)};" for c in MOBILE),
    "".join(f"&#x{ord(c):x};" for c in MOBILE),
    "".join(f"&#X{ord(c):04X}" for c in MOBILE[:-1]) + "&#56;",
    "".join(f"%{ord(c):02X}" for c in MOBILE),
    "138" + "".join(f"%{ord(c):02x}" for c in MOBILE[3:]),
    "".join(f"\\u{ord(c):04x}" for c in MOBILE),
    "".join(f"\\x{ord(c):02x}" for c in MOBILE),
    "".join(f"\\u{{{ord(c):x}}}" for c in MOBILE),
    "".join("%" + "%".join(f"{b:02X}" for b in c.encode()) for c in MOBILE.translate(FULLWIDTH)),
    "".join(f"\\u{u:04x}" for c in MOBILE for u in _utf16(chr(0x1D7CE + int(c)))),
    "&#49;&#51;&#56;%20&#49;&#50;&#51;&#52;%20&#53;&#54;&#55;&#56;",
    "138+1234+5678",
    "1&#8203;3812345678",
    "&#0000000049;&#x00033;" + MOBILE[2:],
    "138<em>1234</em>5678",
    '<b class="hit">138</b><i>1234</i><!-- x -->5678',
    "<td>138</td><td>1234</td><td>5678</td>",
    "138&ZeroWidthSpace;1234&nbsp;5678",
    "138&hyphen;1234&minus;5678",
]


def _reader_digits(text: str) -> str:
    """What a reader of the decoded text sees as digits, in order: entities, %-encoding (with + as a
    space) and \\u, \\u{}, \\x escapes decoded, surrogate pairs joined, every script's digits read."""
    t = html.unescape(re.sub(r"<[^<>]*>", "", text))
    t = urllib.parse.unquote(t.replace("+", " "))
    t = re.sub(r"\\u\{([0-9a-fA-F]+)\}|\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})", _unescape, t)
    t = t.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return "".join(str(unicodedata.digit(c)) for c in t if unicodedata.digit(c, None) is not None)


def _unescape(m: re.Match[str]) -> str:
    return chr(int(next(g for g in m.groups() if g), 16))


@pytest.mark.parametrize("hidden", HIDDEN)
def test_numbers_hidden_by_encodings_are_masked(hidden: str) -> None:
    assert MOBILE in _reader_digits(hidden)  # the test's own premise
    for kind, wrap in (("text", "<p>tel: {}</p>"), ("json", '{{"q": "{}"}}'), ("csv", "a,b\n1,{}\n")):
        body = wrap.format(json.dumps(hidden)[1:-1] if kind == "json" else hidden)
        out = run(kind, body).body.decode()
        if kind == "json":
            out = json.loads(out)["q"]
        assert MOBILE not in _reader_digits(out), (kind, out)


def test_encoded_digits_stay_encoded_unless_masked_and_tags_stay() -> None:
    hidden = "".join(f"&#{ord(c)};" for c in MOBILE)
    assert run("text", hidden).body.decode() == "&#49;&#51;&#56;****&#53;&#54;&#55;&#56;"
    assert run("text", "<td>138<em>1234</em>5678</td>").body.decode() == "<td>138<em>****</em>5678</td>"
    out = run("json", json.dumps({"hl": f"客户 138<em>{MOBILE[3:7]}</em>{MOBILE[7:]}"})).body
    assert json.loads(out) == {"hl": "客户 138<em>****</em>5678"}


def test_escaped_markup_stays_escaped_next_to_a_masked_number() -> None:
    hidden = "".join(f"&#{ord(c)};" for c in MOBILE)
    out = run("text", f"&#60;script&#62;{hidden}&#60;/script&#62; %3C{hidden}").body.decode()
    assert "<" not in out and "&#60;script&#62;" in out and "%3C" in out
    assert out.count("****") == 2 and MOBILE not in _reader_digits(out)


def test_plain_percent_and_entities_are_left_alone() -> None:
    body = "100% done &amp; 50%20off &#169; a+b 1+1=2 x%2Fy"
    res = run("text", body)
    assert res.body.decode() == body and res.masked == 0


def test_long_text_is_scanned_in_pieces_without_missing_a_number() -> None:
    # Numbers around every position a cut could fall on, long lines and one long line without newlines.
    filler = "x" * (CHUNK - 5)
    body = "\n".join(
        [filler + f" {MOBILE} " + filler, f"卡号 {CARD}", ("a," * 50_000) + MOBILE + ",b" * 40_000]
    )
    out = run("text", body).body.decode()
    assert MOBILE not in out and CARD not in out
    assert len(out) == len(body)
    assert out.count("138****5678") == 2


def test_context_words_carry_over_a_cut() -> None:
    weak = "1800001234567897"  # Luhn-valid, no card prefix: a card only after a context word
    body = "x" * (CHUNK - 10) + "卡号," + weak + ",y" * 40_000
    out = run("text", body).body.decode()
    assert weak not in out and len(out) == len(body)


def test_long_text_is_never_cut_inside_a_tag() -> None:
    tag = '<em data-x="' + "," * 40 + '">'
    body = "x" * (CHUNK - 20) + "138" + tag + "1234</em>5678" + ",y" * 40_000
    out = run("text", body).body.decode()
    assert MOBILE not in _reader_digits(out)


def test_a_huge_text_without_any_cut_is_hidden_whole() -> None:
    body = ("7" * (300 * 1024)) + MOBILE
    out = run("text", body).body.decode()
    assert MOBILE not in out


# ------------------------------------------------------------------------------- properties

PROFILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Filler without any character that reads as a digit, so a planted number is the only one.
_FILLER = st.text(
    st.characters(blacklist_categories=("Cs", "Nd", "No", "Nl", "Cc")).filter(
        lambda c: (
            not unicodedata.digit(c, None)
            and not unicodedata.numeric(c, None)
            and all(not ch.isdigit() for ch in unicodedata.normalize("NFKC", c))
        )
    ),
    max_size=6,
)
_NUMBERS = st.one_of(mobiles(), id18s(), bank_cards())


@st.composite
def disguise(draw: st.DrawFn, number: str) -> str:
    """The number as a string a reader still reads: plain, grouped, full-width, or mixed."""
    style = draw(st.sampled_from(["plain", "grouped", "fullwidth", "mixed"]))
    if style == "grouped":
        spans = masking.detect(number)
        cls = spans[0].cls if spans else ""
        # The groups people write: 3-4-4 phones, 6-8-4 IDs, cards by fours.
        groups = {"mobile": (3, 4, 4), "id_card": (6, 8, 4)}.get(cls, (4, 4, 4, 4, 3))
        parts, i = [], 0
        for g in groups:
            parts.append(number[i : i + g])
            i += g
        parts.append(number[i:])
        return draw(st.sampled_from([" ", "-"])).join(p for p in parts if p)
    if style == "fullwidth":
        return number.translate(FULLWIDTH)
    if style == "mixed":
        return "".join(c.translate(FULLWIDTH) if draw(st.booleans()) else c for c in number)
    return number


@st.composite
def planted(draw: st.DrawFn) -> tuple[Any, list[str]]:
    """(a JSON document holding numbers anywhere, the numbers' digit strings)."""
    numbers: list[str] = []

    def leaf() -> st.SearchStrategy[Any]:
        @st.composite
        def one(d: st.DrawFn) -> Any:
            n = d(_NUMBERS)
            where = d(st.sampled_from(["text", "int", "filler", "plain"]))
            if where == "filler" or (where == "int" and not n.isdigit()):
                return d(_FILLER)
            if where == "plain":
                return d(
                    st.one_of(
                        st.none(), st.booleans(), st.integers(-10_000, 10_000), st.floats(allow_nan=False)
                    )
                )
            numbers.append(n)
            if where == "int":
                return int(n)
            # Detectors take a number glued to letters for a code (masking's rule): filler is apart.
            return d(_FILLER) + " " + d(disguise(n)) + " " + d(_FILLER)

        return one()

    @st.composite
    def key(d: st.DrawFn) -> str:
        if d(st.integers(0, 4)) == 0:
            n = d(_NUMBERS)
            numbers.append(n)
            return d(disguise(n))
        return d(
            st.sampled_from(["mobile", "idNo", "bankAcct", "note", "data", "contact", "phone", "x", "名"])
        )

    tree = draw(
        st.recursive(
            leaf(),
            lambda kids: st.one_of(st.lists(kids, max_size=6), st.dictionaries(key(), kids, max_size=5)),
            max_leaves=20,
        )
    )
    return tree, numbers


def _escape_some(raw: str, data: st.DataObject) -> str:
    """Write some of the document's digits (inside strings, outside escapes) as \\u escapes."""
    out, in_str, i = [], False, 0
    while i < len(raw):
        c = raw[i]
        if in_str and c == "\\":
            n = 6 if raw[i + 1] == "u" else 2  # copy the escape whole
            out.append(raw[i : i + n])
            i += n
            continue
        if in_str and c.isdigit() and data.draw(st.booleans()):
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
            if c == '"':
                in_str = not in_str
        i += 1
    return "".join(out)


def _all_text(doc: Any) -> str:
    """Every key, string and number of a document, as a reader sees them, one per line."""
    if isinstance(doc, dict):
        return "\n".join(k + "\n" + _all_text(v) for k, v in doc.items())
    if isinstance(doc, list):
        return "\n".join(_all_text(v) for v in doc)
    if isinstance(doc, float):
        return repr(doc) + "\n" + format(doc, "f") + "\n" + repr(doc).split("e")[0].replace(".", "")
    return str(doc)


def _readable_digits(text: str) -> list[str]:
    """Digit runs a reader sees (full-width folded, separators between groups ignored)."""
    folded = "".join(str(unicodedata.digit(c)) if unicodedata.digit(c, None) is not None else c for c in text)
    return re.findall(r"[0-9Xx](?:[0-9Xx]|[ -](?=[0-9]))*", folded)


@PROFILE
@given(planted(), st.sampled_from([None, 0, 1, 3]), st.data())
def test_planted_numbers_never_come_out_whole(
    case: tuple[Any, list[str]], max_rows: int | None, data: st.DataObject
) -> None:
    doc, numbers = case
    raw = _escape_some(json.dumps(doc, ensure_ascii=data.draw(st.booleans())), data)
    p = plan(max_rows=max_rows, see={"email": "clear"})
    res = mask_body("json", raw.encode(), None, p, SRC)
    out = json.loads(res.body)  # valid JSON
    runs = [r.replace(" ", "").replace("-", "") for r in _readable_digits(_all_text(out))]
    for n in numbers:
        if masking.mask_text(n).replace("*", "0") == n:
            continue  # its hidden digits were zeros: a masked integer looks the same
        assert not any(n in r for r in runs), (n, res.body)

    def bounded(v: Any) -> bool:
        if isinstance(v, list):
            return (max_rows is None or len(v) <= max_rows) and all(bounded(x) for x in v)
        if isinstance(v, dict):
            return all(bounded(x) for x in v.values())
        return True

    assert bounded(out)


@PROFILE
@given(
    st.lists(st.tuples(_NUMBERS, _FILLER), min_size=1, max_size=5),
    st.sampled_from(["plain", "entity", "percent"]),
)
def test_text_numbers_never_come_out_whole(pairs: list[tuple[str, str]], style: str) -> None:
    def enc(n: str) -> str:
        if style == "entity":
            return "".join(f"&#{ord(c)};" for c in n)
        if style == "percent":
            return "".join(f"%{ord(c):02X}" for c in n)
        return n

    body = " ".join(f + " " + enc(n) for n, f in pairs)
    digits = _reader_digits(run("text", body).body.decode())
    for n, _ in pairs:
        assert n.rstrip("Xx") not in digits


# ------------------------------------------------------------------------------ architecture


def test_body_masking_imports_no_protocol_io_or_sql() -> None:
    import ast
    from pathlib import Path

    allowed = {
        "masking",
        "html.entities",
        "proxy.services.gate",
        "proxy.services.rows",
        "masking.encoded",
        "proxy.http.heads",
        "proxy.services.disclosure",  # found_in: the numbers observers are told of (pure)
        "masking.normalize",
    }
    root = Path(__file__).parents[3]
    for name, path in (
        ("bodies", root / "proxy" / "http" / "bodies.py"),
        ("encoded", root / "masking" / "encoded.py"),
        ("heads", root / "proxy" / "http" / "heads.py"),
    ):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                mod = "proxy.http." + (node.module or "") if node.level else node.module or ""
                assert mod in allowed | _STDLIB, (name, mod)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    assert a.name in allowed or a.name in _STDLIB, (name, a.name)


_STDLIB = {
    "__future__",
    "base64",
    "binascii",
    "http",
    "codecs",
    "functools",
    "csv",
    "io",
    "json",
    "re",
    "collections.abc",
    "dataclasses",
    "decimal",
    "typing",
    "urllib.parse",  # percent-encoding only: pure string functions
}


@PROFILE
@given(
    st.lists(
        st.lists(st.tuples(_NUMBERS, _FILLER, st.sampled_from(["", '"', "\n", ","])), max_size=4), max_size=6
    ),
    st.sampled_from([",", "\t", ";"]),
)
def test_csv_numbers_never_come_out_whole(rows: list[list[tuple[str, str, str]]], sep: str) -> None:
    header = sep.join(["mobile", "note", "x", "y"])
    cells = [[f"{f}{q} {n} {q}{f}" for n, f, q in row] for row in rows]
    buf = io.StringIO(newline="")
    dialect = {"\t": csv.excel_tab}.get(sep, csv.excel)
    w = csv.writer(buf, dialect, delimiter=sep)
    for row in cells:
        w.writerow(row)
    res = run("csv", header + "\r\n" + buf.getvalue(), plan(max_rows=3))
    out = res.body.decode()
    digits = _readable_digits(out)
    runs = [r.replace(" ", "").replace("-", "") for r in digits]
    for row in rows[:3]:
        for n, _, _ in row:
            if masking.mask_text(n).replace("*", "0") != n:
                assert not any(n in r for r in runs), (n, out)
    assert res.items == min(3, len(rows))


# ------------------------------------------------------------------------------- disclosures


def test_classified_fields_and_columns_are_noted_when_observed() -> None:
    from dataclasses import replace

    from proxy.services.gate import Disclosed

    p = replace(plan(see={"email": "clear", "bank_card": "deny"}), seen=[])
    doc = {"data": [{"mobile": "13812345678", "public": "a@b.cn", "bankAcct": "6222020200112233445"}]}
    jrun(doc, p)
    assert p.seen == [Disclosed("mobile", "", "13812345678", False), Disclosed("email", "", "a@b.cn", True)]
    p = replace(plan(see={"email": "clear"}), seen=[])
    run("csv", "mobile,public,note\n13812345678,a@b.cn,x\n", p)
    assert p.seen == [Disclosed("mobile", "", "13812345678", False), Disclosed("email", "", "a@b.cn", True)]
    p = plan()
    jrun(doc, p)
    assert p.seen is None


def test_numbers_in_reads_what_a_client_reads() -> None:
    """The observers get the numbers of a body as sent, however it is written: references,
    markup, base64, a JSON number, a header."""
    from proxy.http.bodies import numbers_in

    got = numbers_in(
        b'<td>&#49;38 1234 5678</td>{"n": 13912345670, "b": "MTM3MDAwMDExMTE="}',
        None,
        "Location: /c/13500001111",
    )
    assert {d.value.replace(" ", "") for d in got if d.cls == "mobile"} == {
        "13812345678",
        "13912345670",
        "13700001111",
        "13500001111",
    }
    assert all(d.clear and d.column == "" for d in got)
    assert numbers_in(b"no numbers here", "utf-8") == []


def test_a_mobile_glued_to_other_digits_in_a_json_string_is_masked() -> None:
    """`"00" + phone` in a free field, or a doubly escaped character before it."""
    doc, _ = jrun({"note": "call 0013812345678", "q": "a%252213812345678", "n": 2213812345678})
    assert "13812345678" not in json.dumps(doc)
    text = run("text", "ref 0013812345678 and 13812345678001").body.decode()
    assert "13812345678" not in text
