"""HTTP decisions: which requests a role may send to an API, with the path read as the upstream reads it.

Owns: normalising a request path the way a typical upstream server (aiohttp, Starlette, nginx)
reads it, matching it against the role's routes, and the Allow/Block of one request (the
predicates in its parameters and body come from policies/http_predicates.py). Pure: no
sockets, no mitmproxy, no policy files, no body masking (proxy/http/bodies.py masks responses).

Paths. Every function here takes the request's path as sent on the wire (percent-encoded,
without the query), or `forward_path`'s output, which normalises to the same thing; never a path
already decoded, which would be decoded a second time. The addon forwards `forward_path(path)`,
so the route was decided on exactly the path the upstream receives.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import parse_qsl, quote

from policies.decide import MAX_LOOKUP_VALUES
from policies.decision import Allow, Block, Decision
from policies.http_predicates import (
    MAX_BODY_DEPTH,
    FormBody,
    JsonObject,
    MethodOverride,
    Scanner,
    TextBody,
    Unreadable,
    method_override,
)
from policies.model import Api, Policy, Role

__all__ = [
    "MAX_BODY_DEPTH",
    "FormBody",
    "JsonObject",
    "TextBody",
    "binary_allowed",
    "decide_request",
    "detect_classes",
    "fingerprint",
    "forward_path",
    "normalise_path",
    "split_target",
]

# Characters a path keeps unescaped when forwarded: RFC 3986 pchar without `%` (a literal `%`
# goes as %25, so the upstream's one decoding gives back exactly the path routes were matched on).
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_HEX = "0123456789abcdefABCDEF"
# Decoded bytes no route may see: `/` and `\` would cut segments the upstream may read
# differently, NUL and other controls end or split strings in some servers.
_FORBIDDEN_BYTES = frozenset([0x2F, 0x5C, 0x7F, *range(0x20)])
_ESCAPE_LEFT = re.compile(r"%[0-9A-Fa-f]{2}")
_METHOD_RE = re.compile(r"^[A-Za-z]{1,20}$")


def normalise_path(path: str) -> str | None:
    """The path as the upstream reads it, or None when no route may match it.

    Percent-decoded once; `//` collapsed; `.` and `..` segments resolved. None for: a path not
    starting with `/`, a query or fragment mark, raw backslashes, spaces or control characters,
    an invalid `%` escape, an encoded `/`, `\\`, NUL or control character, bytes that are not
    UTF-8, a `..` climbing above the root, a segment like `..;x` (which Java servers read as
    `..`), Unicode compatibility forms of `/`, `\\` or dot segments (`．．`, which servers that
    fold Unicode read as `..`), or escapes still left after the decoding (a double-encoded
    path, which servers that decode twice would read as something else).

    >>> normalise_path("/api//clients/./%31/../2/")
    '/api/clients/2/'
    >>> normalise_path("/api/clients/%2e%2e/%2e%2e/admin")
    '/admin'
    >>> normalise_path("/api/clients%2F1") is None
    True
    """
    if not isinstance(path, str) or not path.startswith("/"):
        return None
    raw = bytearray()
    i = 0
    try:
        encoded = path.encode("utf-8")  # surrogates (undecodable wire bytes) fail here
    except UnicodeEncodeError:
        return None
    n = len(encoded)
    while i < n:
        b = encoded[i]
        if b == 0x25:  # %
            pair = encoded[i + 1 : i + 3].decode("ascii", "replace")
            if len(pair) != 2 or any(ch not in _HEX for ch in pair):
                return None
            value = int(pair, 16)
            if value in _FORBIDDEN_BYTES:
                return None
            raw.append(value)
            i += 3
            continue
        if (b in _FORBIDDEN_BYTES and b != 0x2F) or b in (0x20, 0x3F, 0x23):  # space ? #
            return None
        raw.append(b)
        i += 1
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _ESCAPE_LEFT.search(decoded) or _compat_separators(decoded):
        return None
    parts = decoded.split("/")[1:]
    out: list[str] = []
    for part in parts:
        if part.split(";", 1)[0] in (".", "..") and part not in (".", ".."):
            return None
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                return None
            out.pop()
            continue
        out.append(part)
    trailing = bool(out) and parts[-1] in ("", ".", "..")
    return "/" + "/".join(out) + ("/" if trailing else "")


def _compat_separators(decoded: str) -> bool:
    """Whether Unicode compatibility forms spell a separator or dot segment (`．．`, `／`, `＼`):
    servers that fold them (IIS, some frameworks) would read a path no route was matched on."""
    folded = unicodedata.normalize("NFKC", decoded)
    if folded == decoded:
        return False
    if folded.count("/") != decoded.count("/") or "\\" in folded:
        return True
    return any(part.split(";", 1)[0] in (".", "..") for part in folded.split("/"))


def forward_path(path: str) -> str | None:
    """The normalised path encoded for the wire: what the addon sends upstream (None: refuse).

    >>> forward_path("/api/%63lients/./%E5%BC%A0/")
    '/api/clients/%E5%BC%A0/'
    """
    normal = normalise_path(path)
    return None if normal is None else quote(normal, safe=_PATH_SAFE)


def split_target(target: str) -> tuple[str, list[tuple[str, str]]]:
    """A request target (`/api/clients?mobile=138…`) as its raw path and decoded query pairs,
    for `maskgate explain --http` and policy test cases."""
    path, _, query = target.partition("?")
    path = path.partition("#")[0]
    return path, parse_qsl(query.partition("#")[0], keep_blank_values=True)


def fingerprint(method: str, path: str) -> str:
    """`METHOD /path` with every segment holding a digit replaced by `?` (ids, numbers); segments
    with `@` or non-ASCII characters too (e-mail addresses, names), so audit groups requests
    without holding a customer's value.

    >>> fingerprint("get", "/api/clients/42/calls")
    'GET /api/clients/?/calls'
    """
    m = method.upper() if _METHOD_RE.match(method or "") else "?"
    normal = normalise_path(path)
    if normal is None:
        return f"{m} (refused path)"
    segments = [
        "?" if any(ch.isdigit() or ch == "@" or not ch.isascii() for ch in seg) else seg
        for seg in normal.split("/")[1:]
    ]
    return f"{m} /" + "/".join(segments)


def detect_classes(policy: Policy, role: Role) -> frozenset[str]:
    """The classes value detectors scan for in what `role` receives: exactly the SQL engine's
    (the role's `detect`, by default every class it does not see clear)."""
    return role.detect


def binary_allowed(role: Role, method: str, path: str) -> bool:
    """Whether a route of `role` matching this request is marked `binary` (downloads of binary
    types: spreadsheets, PDF, octet streams, whose values no masker can reach)."""
    normal = normalise_path(path)
    if normal is None or not _METHOD_RE.match(method or ""):
        return False
    return any(route.binary and route.matches(method, normal) for route in role.routes)


def decide_request(
    policy: Policy,
    role: Role,
    api: str | None,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    body: object | None,
    now: datetime | None = None,
) -> Decision:
    """The decision for one HTTP request of `role` to the API named `api` (its `fields` in the
    policy classify names; None: nothing is classified).

    In order: `hours` (outside_hours); the route (route_denied); a parameter or top-level body
    field claiming another method (`_method=DELETE`: route_denied); then predicates, found by
    policies/http_predicates.py in the path, every query parameter, and the body (a parsed JSON
    document, `FormBody` pairs or a `TextBody`): classified names anywhere in a name or value,
    and classified values the detectors find. A body nested deeper than MAX_BODY_DEPTH, or a
    parameter name with an escape left after decoding, is bad_request. A `deny` class in a
    predicate is class_denied, as in SQL; otherwise the role's `masked_predicates` decides:
    `deny` refuses (masked_predicate), `equality` allows up to MAX_LOOKUP_VALUES values (each
    value counts as many as its comma, pipe or space separated items) and refuses sorting or
    grouping by a classified field, `allow` allows."""
    m = method.upper() if _METHOD_RE.match(method or "") else method
    print_ = fingerprint(method, path)

    def block(reason: str, message: str, classes: Sequence[str] = ()) -> Block:
        return Block(
            reason,
            message,
            classes=tuple(sorted(set(classes))),
            kind="http",
            revision=policy.revision,
            fingerprint=print_,
        )

    if role.hours and not role.within_hours(policy.moment(now)):
        windows = ", ".join(w.text for w in role.hours)
        return block("outside_hours", f"this role may only connect during {windows}")
    normal = normalise_path(path)
    if normal is None:
        return block(
            "route_denied",
            "this request path is not accepted (encoded separators, dot segments "
            "above the root, invalid escapes or characters)",
        )
    if not _METHOD_RE.match(method or "") or not any(route.matches(m, normal) for route in role.routes):
        return block(
            "route_denied",
            f"{m if _METHOD_RE.match(method or '') else 'this method'} on this "
            "path is not among this role's routes",
        )
    fields: Api | None = None
    if api is not None:
        fields = policy.apis.get(api)
        if fields is None:
            # A reload that dropped the API the config names: refuse rather than mask nothing.
            return block("route_denied", f"api `{api}` is not in the policy")

    written = frozenset(rule.cls for rule in policy.columns) | (fields.classes if fields else frozenset())
    scan = Scanner(fields, role, written)
    try:
        scan.path(normal)
        scan.pairs("query parameter", query, m)
        if isinstance(body, FormBody):
            scan.pairs("form field", body.pairs, m)
        elif isinstance(body, TextBody):
            scan.text(body.text, body.readable)
        elif body is not None:
            if method_override(body, m):
                raise MethodOverride("a body field asks for another method")
            scan.json(body, "the request body")
    except Unreadable as exc:
        return block("bad_request", str(exc))
    except MethodOverride as exc:
        return block("route_denied", f"{exc} than {m}; send the request with the method the role may use")
    hidden, sorted_by = scan.found.hidden, scan.found.sorted_by
    for what, cls, _ in [*hidden, *((w, c, 0) for w, c in sorted_by)]:
        if role.action_for(cls) == "deny":
            return block("class_denied", f"class {cls} ({what}) is denied for this role", [cls])
    mode = role.masked_predicates
    lookups = 0
    if mode == "deny" and (hidden or sorted_by):
        what, cls = (hidden[0][0], hidden[0][1]) if hidden else sorted_by[0]
        return block(
            "masked_predicate",
            f"{what} uses classified {cls} (no filtering or sorting on it allowed for this role)",
            [c for _, c, _ in hidden] + [c for _, c in sorted_by],
        )
    if mode == "equality":
        if sorted_by:
            what, cls = sorted_by[0]
            return block(
                "masked_predicate",
                f"{what} sorts by classified {cls} (only equality with a value allowed for this role)",
                [cls],
            )
        lookups = sum(count for _, _, count in hidden)
        if lookups > MAX_LOOKUP_VALUES:
            return block(
                "masked_predicate",
                f"this request compares classified {', '.join(sorted({c for _, c, _ in hidden}))} with "
                f"{lookups} values; at most {MAX_LOOKUP_VALUES} per request for this role",
                [c for _, c, _ in hidden],
            )
    classes = sorted(c for c in fields.classes if role.action_for(c) != "clear") if fields else []
    return Allow(
        kind="http",
        row_limit=role.max_rows,
        detect=detect_classes(policy, role),
        classes=tuple(classes),
        lookups=lookups,
        revision=policy.revision,
        fingerprint=print_,
    )
