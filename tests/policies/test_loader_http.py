"""Loading the HTTP parts of a policy: apis, routes and tokens, with file:line:col errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from policies import PolicyError, load_policy
from policies.model import Route
from policies.passwords import scram_verifier

PW = scram_verifier("pw", b"0123456789abcdef")
DIGEST = hashlib.sha256(b"mgt_x").hexdigest()


def _write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _errors(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    return exc.value.errors


def test_apis_routes_tokens_load(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "version: 1\n"
        "apis:\n"
        "  crm-api:\n"
        "    description: the CRM\n"
        "    fields:\n"
        '      "**.mobile": mobile\n'
        '      "data[].contact.phone": landline\n'
        '      "[].idNo": id_card\n'
        "roles:\n"
        "  r:\n"
        '    routes: ["GET /api/clients/**", "get /api/reports/** binary", "* /api/ping", "GET /"]\n'
        "users:\n"
        f"  u: {{role: r, password: '{PW}', tokens: ['sha256:{DIGEST.upper()}']}}\n",
    )
    policy = load_policy(path)
    api = policy.apis["crm-api"]
    assert [r.pattern for r in api.fields] == [
        ("**", "mobile"),
        ("data", "[]", "contact", "phone"),
        ("[]", "idNo"),
    ]
    assert api.field_class(("data", 0, "contact", "phone")) == "landline"
    routes = policy.roles["r"].routes
    assert routes[0] == Route("GET", ("api", "clients", "**"), False, "GET /api/clients/**")
    assert routes[1].method == "GET" and routes[1].binary and routes[1].text == "get /api/reports/** binary"
    assert routes[2].method == "*" and routes[3].pattern == ()
    assert policy.users["u"].tokens == (DIGEST,)  # stored lower case


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\napis: [x]\n", ":2:7: `apis` must map an API name to its `fields`"),
        ("version: 1\napis:\n  a: {}\n", ":3:6: api `a` must be a mapping with `fields`"),
        ("version: 1\napis:\n  a b: {fields: {}}\n", ":3:3: bad api name `a b`"),
        (
            "version: 1\napis:\n  a: {fields: {x: mobile}, feilds: {}}\n",
            ":3:28: unknown key `feilds` in api `a` (did you mean `fields`?)",
        ),
        ("version: 1\napis:\n  a: {fields: [x]}\n", ":3:15: api `a`: `fields` must map"),
        (
            "version: 1\napis:\n  a:\n    fields: {x: mobil}\n",
            ":4:17: unknown class `mobil` (did you mean `mobile`?)",
        ),
        (
            "version: 1\napis:\n  a:\n    fields: {a..b: mobile}\n",
            ":4:14: bad field pattern `a..b`: empty step",
        ),
        ("version: 1\napis:\n  a:\n    fields: {.b: mobile}\n", ":4:14: bad field pattern `.b`: empty step"),
        ("version: 1\napis:\n  a:\n    fields: {'**[]': mobile}\n", ":4:14: bad field pattern `**[]`: `**`"),
        (
            "version: 1\napis:\n  a:\n    fields: {'a**.b': mobile}\n",
            ":4:14: bad field pattern `a**.b`: `**` must be",
        ),
        (
            "version: 1\napis:\n  a:\n    fields: {'a[x': mobile}\n",
            ":4:14: bad field pattern `a[x`: unbalanced `[`",
        ),
        ("version: 1\napis:\n  a:\n    fields: {'a b': mobile}\n", ":4:14: bad field pattern `a b`: spaces"),
        (
            "version: 1\napis:\n  a:\n    fields: {'**.mobile': mobile, '**.Mobile': landline}\n",
            ":4:35: field pattern `**.Mobile` repeats `**.mobile` in api `a`",
        ),
        (
            'version: 1\nroles:\n  r:\n    routes: ["GETT /x"]\n',
            ":4:14: bad method `GETT` in route `GETT /x`",
        ),
        ('version: 1\nroles:\n  r:\n    routes: ["GETT /x"]\n', "(did you mean `GET`?)"),
        ('version: 1\nroles:\n  r:\n    routes: ["/x"]\n', ":4:14: bad route `/x`: expected `METHOD /path`"),
        ('version: 1\nroles:\n  r:\n    routes: ["GET /x cheap"]\n', ":4:14: bad route `GET /x cheap`"),
        (
            'version: 1\nroles:\n  r:\n    routes: ["GET api/x"]\n',
            ":4:14: bad path `api/x` in route `GET api/x`: a path",
        ),
        (
            'version: 1\nroles:\n  r:\n    routes: ["GET /a//b"]\n',
            ":4:14: bad path `/a//b` in route `GET /a//b`: empty",
        ),
        (
            'version: 1\nroles:\n  r:\n    routes: ["GET /a/../b"]\n',
            ":4:14: bad path `/a/../b` in route `GET /a/../b`: `..`",
        ),
        ('version: 1\nroles:\n  r:\n    routes: ["GET /a%2Fb"]\n', "`%` is not allowed"),
        ('version: 1\nroles:\n  r:\n    routes: ["GET /a?x=1"]\n', "`?` is not allowed"),
        ('version: 1\nroles:\n  r:\n    routes: ["GET /a**"]\n', "`**` must be a whole segment"),
        ('version: 1\nroles:\n  r:\n    routes: ["GET /a[b"]\n', "unbalanced `[`"),
        ("version: 1\nroles:\n  r:\n    routes: [GET /x, 3]\n", ":4:22: `routes` entries must be strings"),
        (
            'version: 1\nroles:\n  r:\n    routes: ["GET /x/**", "get /x/**/ binary"]\n',
            ":4:27: route `get /x/**/ binary` repeats `GET /x/**` in role `r`",
        ),
        (
            "version: 1\nroles:\n  r:\n    rotues: []\n",
            ":4:5: unknown key `rotues` in role `r` (did you mean `routes`?)",
        ),
        (
            f"version: 1\nroles: {{r: {{}}}}\nusers:\n  u: {{role: r, password: '{PW}', tokens: [abc]}}\n",
            ':4:{col}: user `u`: a token must be "sha256:" and 64 hex digits',
        ),
        (
            "version: 1\nroles: {r: {}}\nusers:\n"
            f"  u: {{role: r, password: '{PW}', tokens: ['sha256:{'g' * 64}']}}\n",
            'user `u`: a token must be "sha256:"',
        ),
        (
            f"version: 1\nroles: {{r: {{}}}}\nusers:\n  u: {{role: r, password: '{PW}', token: []}}\n",
            "unknown key `token` in user `u` (did you mean `tokens`?)",
        ),
    ],
)
def test_error_locations(tmp_path: Path, text: str, expected: str) -> None:
    if "{col}" in expected:
        expected = expected.replace("{col}", str(text.splitlines()[3].index("[abc]") + 2))
    path = _write(tmp_path, text)
    errors = _errors(path)
    assert any(e.startswith(str(path)) and expected in e for e in errors), errors


def test_one_token_for_two_users_is_an_error(tmp_path: Path) -> None:
    token = f"sha256:{DIGEST}"
    path = _write(
        tmp_path,
        "version: 1\nroles: {r: {}}\nusers:\n"
        f"  a: {{role: r, password: '{PW}', tokens: ['{token}']}}\n"
        f"  b: {{role: r, password: '{PW}', tokens: ['{token.upper().replace('SHA256', 'sha256')}']}}\n",
    )
    errors = _errors(path)
    assert any(":5:" in e and "token already given to user `a`" in e for e in errors), errors


def test_apis_merge_across_files(tmp_path: Path) -> None:
    d = tmp_path / "pol"
    d.mkdir()
    _write(d, "version: 1\napis:\n  a: {fields: {'**.mobile': mobile}}\n", "a.yaml")
    _write(
        d,
        "version: 1\napis:\n  b: {fields: {'**.idNo': id_card}}\nroles: {r: {routes: ['* /**']}}\n",
        "b.yaml",
    )
    policy = load_policy(d)
    assert set(policy.apis) == {"a", "b"}
    _write(d, "version: 1\napis:\n  a: {fields: {'**.phone': mobile}}\n", "c.yaml")
    errors = _errors(d)
    assert any("c.yaml:3:3: api `a` is defined twice" in e for e in errors), errors


def test_custom_classes_in_fields(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "version: 1\nclasses: [member_no]\napis:\n  a: {fields: {'**.memberNo': member_no}}\n"
    )
    assert load_policy(path).apis["a"].field_class(("memberNo",)) == "member_no"


def test_revision_covers_the_http_parts(tmp_path: Path) -> None:
    base = "version: 1\nroles:\n  r: {max_rows: 5}\nusers:\n  u: {role: r, password: '" + PW + "'}\n"
    plain = load_policy(_write(tmp_path, base, "plain.yaml")).revision
    variants = [
        base.replace("{max_rows: 5}", "{max_rows: 5, routes: ['GET /x']}"),
        base.replace("{max_rows: 5}", "{max_rows: 5, routes: ['GET /x binary']}"),
        base.replace("{max_rows: 5}", "{max_rows: 5, routes: ['GET /y']}"),
        base.replace("'}\n", f"', tokens: ['sha256:{DIGEST}']}}\n"),
        base + "apis: {a: {fields: {'**.mobile': mobile}}}\n",
        base + "apis: {a: {fields: {'**.mobile': id_card}}}\n",
        base + "apis: {a: {fields: {'**.mobile': mobile, '**.idNo': id_card}}}\n",
        base + "apis: {a: {fields: {'**.idNo': id_card, '**.mobile': mobile}}}\n",  # order matters
    ]
    revisions = [load_policy(_write(tmp_path, v, f"v{i}.yaml")).revision for i, v in enumerate(variants)]
    assert len({plain, *revisions}) == len(variants) + 1
    # Spelling that does not change the meaning keeps the revision.
    same = base.replace("{max_rows: 5}", "{max_rows: 5, routes: ['get   /x/']}")
    assert load_policy(_write(tmp_path, same, "same.yaml")).revision == revisions[0]
