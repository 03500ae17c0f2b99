"""HTTP decisions: path normalisation as the upstream reads it, routes, field classes, predicates."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import Engine, load_policy
from policies.decide import MAX_LOOKUP_VALUES
from policies.decision import Allow, Block
from policies.http import (
    MAX_BODY_DEPTH,
    FormBody,
    JsonObject,
    TextBody,
    binary_allowed,
    decide_request,
    detect_classes,
    fingerprint,
    forward_path,
    normalise_path,
    split_target,
)
from policies.loader import _parse_hours, parse_field_pattern, parse_route
from policies.model import Api, FieldRule, Policy, Role, Route

EXAMPLES = Path(__file__).parents[2] / "policies" / "examples"
DEMO = load_policy(EXAMPLES / "demo.yaml")
VENDOR = DEMO.roles["vendor"]
DESK = DEMO.roles["service_desk"]
DBA = DEMO.roles["dba"]


def route(text: str) -> Route:
    r = parse_route(text)
    assert isinstance(r, Route), r
    return r


def api(**fields: str) -> Api:
    rules = []
    for pattern, cls in fields.items():
        parsed = parse_field_pattern(pattern.replace("__", "."))
        assert isinstance(parsed, tuple), parsed
        rules.append(FieldRule(parsed, pattern, cls))
    return Api("a", tuple(rules))


def decide(role: Role, method: str, target: str, body: object | None = None, **kw: object) -> object:
    path, query = split_target(target)
    return decide_request(DEMO, role, "crm-api", method, path, query, body, **kw)  # type: ignore[arg-type]


# --- normalise_path ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("/", "/"),
        ("/api/clients", "/api/clients"),
        ("/api/clients/", "/api/clients/"),
        ("/api//clients", "/api/clients"),
        ("//api///clients//1", "/api/clients/1"),
        ("/api/%63lients/1", "/api/clients/1"),
        ("/api/./clients/.", "/api/clients/"),
        ("/api/clients/../admin", "/api/admin"),
        ("/api/clients/%2e%2e/admin", "/api/admin"),
        ("/api/clients/%2E%2e/%2e/admin", "/api/admin"),
        ("/api/clients/1/..", "/api/clients/"),
        ("/api/%E5%BC%A0%E4%B8%89", "/api/张三"),
        ("/api/张三", "/api/张三"),
        ("/api/100%25", "/api/100%"),
        ("/api/a%3Fb%23c", "/api/a?b#c"),
        ("/api/a%20b", "/api/a b"),
        ("/api/a;b=1", "/api/a;b=1"),
    ],
)
def test_normalise_path(raw: str, normal: str) -> None:
    assert normalise_path(raw) == normal
    assert normalise_path(forward_path(raw) or "") == normal


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "api/clients",
        "/..",
        "/api/../..",
        "/api/%2e%2e/%2E%2E/x",
        "/api/clients%2F1",
        "/api/clients%2f..%2fadmin",
        "/api/clients%5C..%5Cadmin",
        "/api/clients\\..\\admin",
        "/api/clients/%00",
        "/api/clients/\x00",
        "/api/clients/%0A",
        "/api/clients/%7F",
        "/api/clients/a b",
        "/api/clients?x=1",
        "/api/clients#frag",
        "/api/clients/%",
        "/api/clients/%4",
        "/api/clients/%zz",
        "/api/clients/%C0%AE%C0%AE/admin",  # overlong UTF-8 for ".."
        "/api/clients/%FF",
        "/api/clients/\udcff",  # an undecodable wire byte, surrogate-escaped
        "/api/clients/%252e%252e/admin",  # double encoding
        "/api/clients/%252F",
        "/api/clients/..;/admin",  # Tomcat reads `..;` as `..`
        "/api/clients/.;x/admin",
        "/api/clients/%EF%BC%8E%EF%BC%8E/admin",  # fullwidth `．．`, which IIS folds to `..`
        "/api/clients/．．/admin",
        "/api/clients%EF%BC%8Fadmin",  # fullwidth solidus
        "/api/clients/%EF%BC%BCadmin",  # fullwidth reverse solidus
    ],
)
def test_paths_no_route_may_match(raw: str) -> None:
    assert normalise_path(raw) is None
    assert forward_path(raw) is None
    d = decide_request(DEMO, DBA, "crm-api", "GET", raw, (), None)
    assert isinstance(d, Block) and d.reason == "route_denied"


def test_a_path_with_a_query_mark_is_refused_not_split() -> None:
    # The caller passes the path alone; a `?` in it means the query was not split off.
    d = decide_request(DEMO, DBA, "crm-api", "GET", "/api/clients?x=1", (), None)
    assert isinstance(d, Block) and d.reason == "route_denied"


@pytest.mark.parametrize(
    ("variant", "allowed"),
    [
        ("/api/%63lients/1", True),  # the same resource, read as the upstream reads it
        ("/api//clients", True),
        ("/api/clients/./1", True),
        ("/API/clients", False),  # paths are case-sensitive upstream
        ("/api/Clients/1", False),
        ("/api/clients/../admin", False),
        ("/api/clients/%2e%2e/admin", False),
        ("/api/clients/1/../../admin", False),
        ("/api/clients%2F..%2Fadmin", False),
        ("/api/clients/..%2Fadmin", False),
        ("/api/clients/..;/admin", False),
        ("/api/clientsX", False),
        ("/api/client", False),
    ],
)
def test_encoded_variants_grant_nothing_more(variant: str, allowed: bool) -> None:
    d = decide(VENDOR, "GET", variant)
    assert d.allowed is allowed, d


_SEGMENT = st.sampled_from(["api", "clients", "calls", "admin", "1", "42", "张", "a;b", "x y"])


def _encode_some(draw: st.DrawFn, text: str) -> str:
    out = []
    for ch in text:
        how = draw(st.sampled_from(["plain", "plain", "lower", "upper"]))
        if how == "plain" or (ch == "/" and how != "upper"):
            out.append(ch)
        else:
            hexed = "".join(f"%{b:02X}" for b in ch.encode())
            out.append(hexed.lower() if how == "lower" else hexed)
    return "".join(out)


@st.composite
def variants(draw: st.DrawFn) -> tuple[str, str]:
    """A plain path and a variant of it: percent-encoded characters, doubled slashes, `.`
    segments and `x/..` detours, all of which the upstream reads as the plain path."""
    segments = draw(st.lists(_SEGMENT, min_size=0, max_size=5))
    plain = "/" + "/".join(segments)
    parts: list[str] = []
    for seg in segments:
        if draw(st.booleans()):
            parts.append(draw(st.sampled_from([".", "", "%2e", "%2E"])))
        if draw(st.booleans()):
            detour = draw(_SEGMENT).replace(" ", "%20")
            parts += [detour, draw(st.sampled_from(["..", "%2e%2e", ".%2E"]))]
        parts.append(_encode_some(draw, seg).replace(" ", "%20"))
    variant = "/" + "/".join(parts)
    return plain.replace(" ", "%20"), variant


@given(variants())
def test_property_encoded_variants_read_as_the_plain_path(pair: tuple[str, str]) -> None:
    plain, variant = pair
    assert normalise_path(variant) == normalise_path(plain)
    for role in (VENDOR, DESK, DBA):
        assert decide(role, "GET", variant).allowed == decide(role, "GET", plain).allowed


_RAW_TOKENS = ["%2e", "%2f", "%2F", "%5c", "%00", "%25", "api", "clients", "..", "%C0%AE"]
_RAW_CHARS = st.sampled_from([*"/.%;\\?#aAcC2eEfF5 0", *_RAW_TOKENS])


@given(st.lists(_RAW_CHARS, max_size=20).map(lambda xs: "/" + "".join(xs)))
def test_property_the_route_is_decided_on_the_forwarded_path(raw: str) -> None:
    """Whatever the raw path, a grant holds for the path the upstream receives: decoding the
    forwarded path once gives a path under the granted prefix, with no dot segment left."""
    normal = normalise_path(raw)
    allowed = decide_request(DEMO, VENDOR, "crm-api", "GET", raw, (), None).allowed
    if normal is None:
        assert not allowed
        return
    sent = forward_path(raw)
    assert sent is not None
    assert normalise_path(sent) == normal  # idempotent: the addon may re-decide on what it sends
    upstream_reads = unquote(sent)
    assert upstream_reads == normal
    segments = upstream_reads.split("/")[1:]
    assert "." not in segments and ".." not in segments and "" not in segments[:-1]
    if allowed:
        assert segments[:2] in (["api", "clients"], ["api", "calls"])


# --- routes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "method", "path", "expected"),
    [
        ("GET /api/clients/**", "GET", "/api/clients", True),  # `**` matches zero segments
        ("GET /api/clients/**", "GET", "/api/clients/", True),
        ("GET /api/clients/**", "GET", "/api/clients/4/calls", True),
        ("GET /api/clients/**", "GET", "/api/clientsX", False),
        ("GET /api/clients/**", "HEAD", "/api/clients/4", True),  # GET admits HEAD
        ("GET /api/clients/**", "get", "/api/clients/4", True),
        ("GET /api/clients/**", "POST", "/api/clients/4", False),
        ("HEAD /api/x", "GET", "/api/x", False),
        ("GET /api/clients/*", "GET", "/api/clients", False),  # `*` is exactly one segment
        ("GET /api/clients/*", "GET", "/api/clients/4", True),
        ("GET /api/clients/*", "GET", "/api/clients/4/calls", False),
        ("GET /api/v*/clients", "GET", "/api/v2/clients", True),
        ("GET /api/v*/clients", "GET", "/api/x2/clients", False),
        ("GET /api/**/calls", "GET", "/api/calls", True),
        ("GET /api/**/calls", "GET", "/api/clients/4/calls", True),
        ("GET /api/**/calls", "GET", "/api/clients/4/callsX", False),
        ("* /**", "DELETE", "/", True),
        ("* /**", "PROPFIND", "/x", True),
        ("GET /", "GET", "/", True),
        ("GET /", "GET", "/x", False),
        ("GET /api/clients/", "GET", "/api/clients", True),  # a trailing slash names the same resource
        ("GET /api/Clients", "GET", "/api/clients", False),
    ],
)
def test_route_matches(text: str, method: str, path: str, expected: bool) -> None:
    assert route(text).matches(method, path) is expected


def test_binary_routes() -> None:
    role = Role("r", routes=(route("GET /api/clients/**"), route("GET /api/reports/** binary")))
    assert binary_allowed(role, "GET", "/api/reports/2024.xlsx")
    assert binary_allowed(role, "GET", "/api/clients/../reports/x.pdf")
    assert not binary_allowed(role, "GET", "/api/clients/4")
    assert not binary_allowed(role, "POST", "/api/reports/x")
    assert not binary_allowed(role, "GET", "/api/reports%2Fx")
    assert not binary_allowed(VENDOR, "GET", "/api/clients/4")


def test_a_role_without_routes_is_refused_every_request() -> None:
    policy = load_policy(EXAMPLES / "outsourced_vendor.yaml")
    role = next(iter(policy.roles.values()))
    monday = datetime(2026, 11, 30, 12, 0)  # inside the vendor's working hours, whenever this runs
    d = decide_request(policy, role, None, "GET", "/", (), None, now=monday)
    assert isinstance(d, Block) and d.reason == "route_denied" and d.kind == "http"


# --- field classes -----------------------------------------------------------------------------


def test_field_class_paths() -> None:
    a = api(**{"**__mobile": "mobile", "data[]__contact__phone": "landline", "**__contact": "address"})
    assert a.field_class(("mobile",)) == "mobile"
    assert a.field_class(("data", 3, "Mobile")) == "mobile"  # keys match case-insensitively
    assert a.field_class(("data", 0, "contact", "phone")) == "landline"  # first rule in file order
    assert a.field_class(("data", "x", "contact", "phone")) == "address"  # `[]` is a list index
    assert a.field_class(("x", "contact", "lines", 0)) == "address"  # inside a classified object
    assert a.field_class(("mobile", 0)) == "mobile"  # a list of mobiles
    assert a.field_class(("id",)) is None
    assert a.field_class(()) is None
    assert a.field_class(("data", 0, "contact", "phone")) == "landline"  # cached


def test_field_globs_and_lists() -> None:
    a = api(**{"*phone*": "mobile", "[]__idNo": "id_card", "rows[][]": "free_text"})
    assert a.field_class(("homePhone",)) == "mobile"
    assert a.field_class(("x", "homePhone")) is None  # no `**`: top level only
    assert a.field_class((0, "IDNO")) == "id_card"
    assert a.field_class(("idNo",)) is None
    assert a.field_class(("rows", 1, 2)) == "free_text"
    assert a.field_class(("rows", 1)) is None


def test_name_class_uses_the_last_key() -> None:
    a = api(**{"data[]__contact__phone": "mobile", "**__idNo": "id_card", "bank*": "bank_card"})
    assert a.name_class("phone") == "mobile"
    assert a.name_class("IDNO") == "id_card"
    assert a.name_class("bankAcct") == "bank_card"
    assert a.name_class("contact") is None
    assert a.name_class("id") is None
    assert api(**{"data[]": "free_text"}).name_class("data") == "free_text"


def test_http_unrestricted() -> None:
    assert DEMO.http_unrestricted(DBA)
    assert not DEMO.http_unrestricted(VENDOR)
    # Every column clear, but an API field class masked: restricted for HTTP, not for SQL.
    fields = Api("a", (FieldRule(("**", "passport"), "**.passport", "passport"),))
    sees = {r.cls: "clear" for r in DEMO.columns}
    role = Role("r", statements=frozenset({"all"}), see=sees)
    policy = Policy(DEMO.columns, {"r": role}, {}, DEMO.classes, "x", apis={"a": fields})
    assert policy.unrestricted(role) and not policy.http_unrestricted(role)


# --- decide_request ----------------------------------------------------------------------------


def test_allow_carries_what_the_addon_needs() -> None:
    d = decide(VENDOR, "GET", "/api/clients/4")
    assert isinstance(d, Allow)
    assert d.kind == "http" and d.row_limit == 200 and d.lookups == 0
    assert d.classes == ("bank_card", "email", "id_card", "mobile", "person_name")
    assert d.detect == VENDOR.detect == detect_classes(DEMO, VENDOR)
    assert d.revision == DEMO.revision and d.fingerprint == "GET /api/clients/?"
    dba = decide(DBA, "DELETE", "/api/clients/4")
    assert isinstance(dba, Allow) and dba.classes == () and dba.row_limit is None and not dba.detect


def test_detect_classes_are_the_sql_engines() -> None:
    engine = Engine(DEMO)
    for name, role in DEMO.roles.items():
        sql = engine.decide(name, "SELECT 1")
        assert isinstance(sql, Allow)
        assert detect_classes(DEMO, role) == sql.detect


def test_route_denied() -> None:
    for target in ("/api/admin", "/api/clients%2F4", "/", "/api/calls/../admin/x"):
        d = decide(VENDOR, "GET", target)
        assert isinstance(d, Block) and d.reason == "route_denied", target
        assert d.kind == "http" and d.revision == DEMO.revision
    d = decide(VENDOR, "POST", "/api/clients")
    assert isinstance(d, Block) and d.reason == "route_denied" and d.fingerprint == "POST /api/clients"
    d = decide(VENDOR, "GET\r\nX", "/api/clients")
    assert isinstance(d, Block) and d.reason == "route_denied" and d.fingerprint.startswith("? ")


def test_unknown_api_is_refused() -> None:
    d = decide_request(DEMO, VENDOR, "nope", "GET", "/api/clients", (), None)
    assert isinstance(d, Block) and d.reason == "route_denied"


def test_hours_come_first() -> None:
    windowed = load_policy(EXAMPLES / "demo.yaml")
    window = _parse_hours("Mon-Fri 09:00-18:00")
    assert not isinstance(window, str)
    role = Role("r", hours=(window,), routes=())
    sunday = datetime(2026, 11, 29, 12, 0)
    d = decide_request(windowed, role, None, "GET", "/x", (), None, now=sunday)
    assert isinstance(d, Block) and d.reason == "outside_hours"
    monday = datetime(2026, 11, 30, 12, 0)
    d = decide_request(windowed, role, None, "GET", "/x", (), None, now=monday)
    assert isinstance(d, Block) and d.reason == "route_denied"


@pytest.mark.parametrize(
    "target",
    [
        "/api/clients?mobile=13812345678",
        "/api/clients?Mobile=138",
        "/api/clients?filter[mobile]=138",
        "/api/clients?contact.phone=138",
        "/api/clients?contact__phone__startswith=138",
        "/api/clients?name=%E5%BC%A0",
        "/api/clients?sort=-mobile",
        "/api/clients?orderBy=name%20desc",
        # Arrives as `%6Dobile`: an API decoding twice reads mobile. A name with an escape left is
        # refused outright, as paths are (bad_request), whatever it would spell.
        "/api/clients?%256Dobile=138",
        "/api/clients?%25256Dobile=138",
    ],
)
def test_masked_predicates_deny(target: str) -> None:
    d = decide(VENDOR, "GET", target)
    expected = "bad_request" if "%25" in target else "masked_predicate"
    assert isinstance(d, Block) and d.reason == expected, d
    assert "138" not in d.message and "张" not in d.message  # values never reach a message


def test_unclassified_parameters_pass() -> None:
    d = decide(VENDOR, "GET", "/api/clients?page=2&branch=12&sort=id&order=desc")
    assert isinstance(d, Allow) and d.lookups == 0


def test_denied_class_in_a_predicate_is_class_denied() -> None:
    for target in ("/api/clients?bankAcct=6222", "/api/clients?sort=bank_card"):
        d = decide(VENDOR, "GET", target)
        assert isinstance(d, Block) and d.reason == "class_denied" and d.classes == ("bank_card",)


def test_masked_predicates_equality_counts_lookups() -> None:
    d = decide(DESK, "GET", "/api/clients?mobile=13812345678&name=x")
    assert isinstance(d, Allow) and d.lookups == 1  # name is clear for the desk
    d = decide(DESK, "GET", "/api/clients?mobile=138,139,137&idNo=1")
    assert isinstance(d, Allow) and d.lookups == 4
    many = ",".join(str(i) for i in range(MAX_LOOKUP_VALUES + 1))
    d = decide(DESK, "GET", f"/api/clients?mobile={many}")
    assert isinstance(d, Block) and d.reason == "masked_predicate"
    d = decide(DESK, "GET", "/api/clients?sort=mobile")
    assert isinstance(d, Block) and d.reason == "masked_predicate" and "sorts" in d.message


def test_masked_predicates_allow() -> None:
    role = Role("r", masked_predicates="allow", routes=(route("* /**"),))
    d = decide(role, "GET", "/api/clients?mobile=138&sort=mobile")
    assert isinstance(d, Allow) and d.lookups == 0


def test_request_bodies_are_predicates() -> None:
    role = Role("r", masked_predicates="equality", routes=(route("POST /api/search"),))
    d = decide(role, "POST", "/api/search", {"filter": {"mobile": "138", "page": 1}})
    assert isinstance(d, Allow) and d.lookups == 1
    d = decide(role, "POST", "/api/search", {"any": [{"PHONE": "1"}, {"phone": "2"}], "idNo": None})
    assert isinstance(d, Allow) and d.lookups == 3
    d = decide(role, "POST", "/api/search", {"page": 1, "q": "x"})
    assert isinstance(d, Allow) and d.lookups == 0
    d = decide(role, "POST", "/api/search", {"mobile": [str(i) for i in range(MAX_LOOKUP_VALUES + 1)]})
    assert isinstance(d, Block) and d.reason == "masked_predicate"
    d = decide(VENDOR, "GET", "/api/clients", {"mobile": "138"})
    assert isinstance(d, Block) and d.reason == "masked_predicate" and "body field `mobile`" in d.message
    d = decide(role, "POST", "/api/search", {"filter": {"mobile": "1,2,3"}})
    assert isinstance(d, Allow) and d.lookups == 3  # a comma list in a body counts each item
    many = ",".join(str(i) for i in range(MAX_LOOKUP_VALUES + 1))
    d = decide(role, "POST", "/api/search", {"filter": {"mobile": many}})
    assert isinstance(d, Block) and d.reason == "masked_predicate"
    # Form fields: a dict of names (with lists for repeated ones).
    d = decide(role, "POST", "/api/search", {"mobile": ["1", "2"], "x": "y"})
    assert isinstance(d, Allow) and d.lookups == 2


def test_deeply_nested_bodies_are_refused_quickly() -> None:
    role = Role("r", masked_predicates="equality", routes=(route("POST /x"),))
    body: object = {"mobile": "1"}
    for _ in range(MAX_BODY_DEPTH - 1):
        body = [body]
    d = decide(role, "POST", "/x", body)
    assert isinstance(d, Allow) and d.lookups == 1
    for _ in range(50_000):
        body = [body]
    d = decide(role, "POST", "/x", body)
    assert isinstance(d, Block) and d.reason == "bad_request"


def test_matching_is_linear_in_the_path() -> None:
    many = "/a" * 20_000
    r = route("GET /**/a/**/a/**/a/**/b")
    assert not r.matches("GET", many)
    a = api(**{"**__a__**__a__**__b": "mobile"})
    assert a.field_class(("a",) * 20_000) is None


def test_fingerprint() -> None:
    assert fingerprint("get", "/api/clients/42") == "GET /api/clients/?"
    assert fingerprint("GET", "/api/clients/%E5%BC%A0/calls") == "GET /api/clients/?/calls"
    assert fingerprint("GET", "/api/users/a@b.example") == "GET /api/users/?"
    assert fingerprint("GET", "/api/%63lients//v2/") == "GET /api/clients/?/"
    assert fingerprint("GET", "/api/%2F13812345678") == "GET (refused path)"


def test_split_target() -> None:
    assert split_target("/api/clients?mobile=138%20&a=&b#x") == (
        "/api/clients",
        [("mobile", "138 "), ("a", ""), ("b", "")],
    )


# --- the value scan: predicates inside values, full numbers as values ---------------------------


@pytest.mark.parametrize(
    "target",
    [
        '/api/clients?filter={"mobile":{"prefix":"1381"}}',
        '/api/clients?filter={"\\u006dobile":"1381"}',  # JSON escapes are read as JSON
        "/api/clients?$filter=startswith(mobile,'1381')",
        "/api/clients?q=mobile:1381*",
        "/api/clients?where=contact.phone%20like%20'138%25'",
        "/api/clients?f=mobileStartsWith",
        "/api/clients?f=%EF%BD%8D%EF%BD%8F%EF%BD%82%EF%BD%89%EF%BD%8C%EF%BD%85",  # full-width
        "/api/clients?search=13812345678",
        "/api/clients?search=%2531%2533%2538%2531%2532%2533%2534%2535%2536%2537%2538",  # twice
        "/api/clients?f=%256Dobile",
        "/api/clients/by-mobile/13812345678",
    ],
)
def test_predicates_inside_values_are_masked_predicates(target: str) -> None:
    d = decide(VENDOR, "GET", target)
    assert isinstance(d, Block) and d.reason == "masked_predicate", (target, d)
    assert "13812345678" not in d.message


@pytest.mark.parametrize(
    "query", ["ordering=mobile", "sort_field=-mobile", "group_by=mobile", "sort[mobile]=asc", "sortBy=phone"]
)
def test_sort_and_group_aliases_are_sorting(query: str) -> None:
    for role in (VENDOR, DESK):
        d = decide(role, "GET", f"/api/clients?{query}")
        assert isinstance(d, Block) and d.reason == "masked_predicate", (query, role.name, d)


def test_sorting_inside_a_json_body() -> None:
    d = decide(DESK, "GET", "/api/clients", {"orderBy": [{"mobile": "asc"}]})
    assert isinstance(d, Block) and d.reason == "masked_predicate" and "sorts" in d.message


def test_equality_counts_each_value_of_a_list() -> None:
    many = ",".join(["13812345678"] * (MAX_LOOKUP_VALUES + 1))
    for body in ({"filter": {"mobile": many}}, {"q": many}, {"mobile": "1|2|3|4|5|6|7|8|9|10|11"}):
        d = decide(DESK, "POST", "/api/clients", body)
        assert isinstance(d, Block) and d.reason in ("masked_predicate", "route_denied"), (body, d)
    role = Role("r", masked_predicates="equality", routes=(route("* /**"),))
    d = decide(role, "POST", "/x", {"filter": {"mobile": "138 139 137"}})
    assert isinstance(d, Allow) and d.lookups == 3
    d = decide(role, "GET", "/x?search=13812345678")
    assert isinstance(d, Allow) and d.lookups == 1
    d = decide(role, "POST", "/x", {"note": "call 13812345678 or 13912345678"})
    assert isinstance(d, Allow) and d.lookups == 2
    many = ",".join(["13812345678"] * (MAX_LOOKUP_VALUES + 1))
    d = decide(role, "POST", "/x", {"filter": {"mobile": many}})
    assert isinstance(d, Block) and d.reason == "masked_predicate"


def test_form_and_text_bodies_are_scanned() -> None:
    role = Role("r", masked_predicates="equality", routes=(route("* /**"),))
    d = decide(role, "POST", "/x", FormBody((("a", "1"), ("mobile", "138"), ("mobile", "139"))))
    assert isinstance(d, Allow) and d.lookups == 2  # every duplicate pair is checked
    d = decide(VENDOR, "GET", "/api/clients", FormBody((("q", "mobile:138*"),)))
    assert isinstance(d, Block) and d.reason == "masked_predicate"
    text = '--b\r\nContent-Disposition: form-data; name="mobile"\r\n\r\n1381\r\n--b--\r\n'
    d = decide(VENDOR, "GET", "/api/clients", TextBody(text))
    assert isinstance(d, Block) and d.reason == "masked_predicate"
    d = decide(VENDOR, "GET", "/api/clients", TextBody("<q><id>4</id></q>"))
    assert isinstance(d, Allow)


def test_shadowed_duplicate_json_keys_are_checked() -> None:
    import json

    doc = json.loads('{"filter": {"mobile": "1381"}, "filter": {}}', object_pairs_hook=JsonObject.from_pairs)
    assert doc == {"filter": {}}  # what is forwarded
    d = decide(VENDOR, "GET", "/api/clients", doc)
    assert isinstance(d, Block) and d.reason == "masked_predicate"


def test_json_keys_and_numbers_are_scanned() -> None:
    for body in ({"13812345678": True}, {"q": 13812345678}, {"q": 13812345678.0}, {"q": "mobile"}):
        d = decide(VENDOR, "GET", "/api/clients", body)
        assert isinstance(d, Block) and d.reason == "masked_predicate", body


def test_method_override_parameters_are_refused() -> None:
    for target, body in (
        ("/api/clients?_method=DELETE", None),
        ("/api/clients?X-HTTP-Method-Override=put", None),
        ("/api/clients", FormBody((("_method", "DELETE"),))),
        ("/api/clients", {"_method": "PATCH"}),
    ):
        d = decide(VENDOR, "GET", target, body)
        assert isinstance(d, Block) and d.reason == "route_denied", (target, body, d)
    d = decide(VENDOR, "GET", "/api/clients?_method=get")
    assert isinstance(d, Allow)


def test_query_names_with_escapes_left_are_bad_requests() -> None:
    d = decide(VENDOR, "GET", "/api/clients?%256Dobile=1")
    assert isinstance(d, Block) and d.reason == "bad_request"


def test_json_inside_values_counts_towards_the_depth_bound() -> None:
    inner = "[" * (MAX_BODY_DEPTH + 1) + "]" * (MAX_BODY_DEPTH + 1)
    d = decide(VENDOR, "GET", "/api/clients", {"q": inner})
    assert isinstance(d, Block) and d.reason == "bad_request"


def test_ordinary_values_pass() -> None:
    for target in (
        "/api/clients?page=2&branch=12&sort=id&order=desc&q=zhang&since=2024-01-31",
        "/api/clients/4/calls?fields=id,started&limit=20",
    ):
        d = decide(VENDOR, "GET", target)
        assert isinstance(d, Allow), (target, d)
    d = decide(VENDOR, "GET", "/api/clients", {"page": 2, "q": "open tickets", "ids": [1, 2, 3]})
    assert isinstance(d, Allow), d


def test_the_body_walk_is_linear() -> None:
    import time

    role = Role("r", masked_predicates="equality", routes=(route("* /**"),))
    body: object = [{"a": i, "b": "x y"} for i in range(20_000)]
    for _ in range(MAX_BODY_DEPTH - 2):
        body = [body]
    t0 = time.perf_counter()
    d = decide(role, "POST", "/x", body)
    assert isinstance(d, Allow)
    assert time.perf_counter() - t0 < 10


_WORDS = st.sampled_from(["id", "page", "desc", "x", "mobile", "Mobile", "phone", "name", "1381", "a.b"])


@given(st.lists(_WORDS, min_size=1, max_size=6), st.sampled_from([",", " ", "|", ".", ":", "(", "[", '"']))
def test_property_a_classified_word_anywhere_in_a_value_is_a_predicate(ws: list[str], sep: str) -> None:
    value = sep.join(ws)
    d = decide(VENDOR, "GET", "/api/clients?" + "q=" + quote(value))
    named = any(w.lower() in ("mobile", "phone", "name") for w in ws)
    assert (isinstance(d, Block) and d.reason == "masked_predicate") is named, (value, d)


def test_unreadable_text_bodies_are_refused_where_predicates_matter() -> None:
    body = TextBody("\x00\xff", readable=False)
    d = decide(VENDOR, "GET", "/api/clients", body)
    assert isinstance(d, Block) and d.reason == "bad_request"
    assert isinstance(decide(DBA, "POST", "/api/clients", body), Allow)
    role = Role("r", masked_predicates="allow", routes=(route("* /**"),))
    assert isinstance(decide(role, "POST", "/x", body), Allow)
