"""Red team of the HTTP side (issue 13): a vendor with valid credentials for a restricted role tries
to get a full customer number out, reach a route outside the role, filter or sort on a classified
field, exceed max_rows, go unaudited, or stall the proxy for everyone.

The upstream is the honest test API plus endpoints a real internal API plausibly has (maps keyed by
id, grouped lists, HTML/XML exports, pagination cursors, redirects, error pages echoing input).
Attacks that maskgate stops are plain tests (regressions); attacks that work today are
`xfail(strict=True)` with a one-line reason, so they fail now and pass once fixed."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

import httpx
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from policies.passwords import scram_verifier
from proxy.app import App
from proxy.config import load_config
from proxy.demo.embedded_pg import free_port
from tests.integration.harness import Running, self_signed_cert
from tests.integration.http_upstream import CARDS, CLIENTS, IDS, MOBILES, make_app

pytestmark = pytest.mark.integration

SECRETS = [*MOBILES, *IDS, *CARDS]
VENDOR = ("vendor_zhang", "vendor-pass")
DESK = ("desk_li", "desk-pass")
MAX_ROWS = 20

POLICY = """
version: 1
apis:
  crm-api:
    fields:
      "**.mobile": mobile
      "**.idNo": id_card
      "**.id_no": id_card
      "**.bankAcct": bank_card
      "**.bank_card": bank_card
      "data[].contact.phone": mobile
      "**.name": person_name
roles:
  vendor:
    routes: ["GET /api/**"]
    max_rows: 20
    see: {mobile: mask, id_card: mask, bank_card: deny, person_name: mask}
    masked_predicates: deny
  desk:
    routes: ["GET /api/**", "POST /api/search"]
    see: {mobile: mask, id_card: mask, bank_card: mask, person_name: clear}
    masked_predicates: equality
users:
  vendor_zhang: {role: vendor, password: "%(vendor)s"}
  desk_li: {role: desk, password: "%(desk)s"}
"""


# ------------------------------------------------------------------------------- the upstream


def _digits_of(c: dict[str, Any]) -> str:
    return str(c["mobile"])


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers differ on duplicate keys; many (and most streaming ones) keep the first.
    out: dict[str, Any] = {}
    for k, v in pairs:
        out.setdefault(k, v)
    return out


async def by_id(request: web.Request) -> web.Response:
    """A map keyed by id, as many APIs return lookups."""
    return web.json_response({"clients": {str(c["id"]): c for c in CLIENTS}})


async def branches(request: web.Request) -> web.Response:
    """Clients grouped by branch: 15 groups of 20."""
    groups = [{"branch": b, "clients": CLIENTS[b * 20 : b * 20 + 20]} for b in range(15)]
    return web.json_response({"branches": groups})


async def clients_html(request: web.Request) -> web.Response:
    rows = "".join(f"<tr><td>{c['id']}</td><td>{c['mobile']}</td></tr>" for c in CLIENTS)
    return web.Response(text=f"<table>{rows}</table>", content_type="text/html")


async def clients_xml(request: web.Request) -> web.Response:
    rows = "".join(f"<client><id>{c['id']}</id><mobile>{c['mobile']}</mobile></client>" for c in CLIENTS)
    return web.Response(text=f"<clients>{rows}</clients>", content_type="application/xml")


async def clients_as_text(request: web.Request) -> web.Response:
    """JSON labelled text/plain, which plenty of APIs do."""
    return web.Response(text=json.dumps({"data": CLIENTS}), content_type="text/plain")


async def page(request: web.Request) -> web.Response:
    """A page with an opaque cursor: base64 of the last item's sort key, as cursor pagination does."""
    last = CLIENTS[0]
    cursor = base64.urlsafe_b64encode(json.dumps({"mobile": last["mobile"]}).encode()).decode()
    return web.json_response({"data": [{"id": last["id"]}], "next": cursor})


def _written(form: str) -> str:
    m = MOBILES[0]
    return {
        "dots": f"{m[:3]}.{m[3:7]}.{m[7:]}",
        "underscores": f"{m[:3]}_{m[3:7]}_{m[7:]}",
        "slashes": f"{m[:3]}/{m[3:7]}/{m[7:]}",
        "spaced": " ".join(m),
        "lines": f"{m[:3]}\n{m[3:7]}\n{m[7:]}",
        "hex": m.encode().hex(),
        "base64": base64.b64encode(m.encode()).decode(),
        "plain": m,
        "fullwidth": m.translate(str.maketrans("0123456789", "０１２３４５６７８９")),
        "entities": "".join(f"&#x{ord(c):x};" for c in m),
        "uescapes": "".join(f"\\u{ord(c):04x}" for c in m),
        "number": m,  # sent as a JSON number below
    }[form]


async def note(request: web.Request) -> web.Response:
    """A free-text note holding a number as staff wrote it (or as a library encoded it)."""
    form = request.match_info["form"]
    if form == "number":
        return web.json_response({"id": 1, "memo": int(MOBILES[0])})
    return web.json_response({"id": 1, "memo": f"call back on {_written(form)}"})


async def nested(request: web.Request) -> web.Response:
    """JSON inside a JSON string (an event payload), with escapes inside."""
    inner = json.dumps({"mobile": MOBILES[0], "id": IDS[0], "card": CARDS[0]})
    inner_escaped = json.dumps({"m": MOBILES[1]}, ensure_ascii=True).replace(MOBILES[1][4], "\\u0033")
    return web.json_response({"event": inner, "other": inner_escaped, "num": float(MOBILES[2])})


async def dial(request: web.Request) -> web.Response:
    """A click-to-call redirect whose target names the number, form-encoded with spaces."""
    m = MOBILES[0]
    spaced = f"{m[:3]} {m[3:7]} {m[7:]}"
    how = request.query.get("how", "plus")
    target = quote_plus(spaced) if how == "plus" else quote(spaced)
    raise web.HTTPFound(f"/api/call?to={target}")


async def reason(request: web.Request) -> web.Response:
    """An error whose reason phrase echoes the record (some frameworks put the message there)."""
    return web.Response(
        status=404, reason=f"No client {MOBILES[0]}", text="{}", content_type="application/json"
    )


async def attachment(request: web.Request) -> web.Response:
    """A legacy MIME `name` parameter on the Content-Type of a statement."""
    return web.Response(
        text="statement",
        headers={"Content-Type": f'text/plain; name="statement-{MOBILES[0]}.txt"'},
    )


async def header_name(request: web.Request) -> web.Response:
    """A per-record header whose name is built from the record's key."""
    return web.Response(text="{}", content_type="application/json", headers={f"X-Seen-{MOBILES[0]}": "1"})


async def latin1_gzip(request: web.Request) -> web.Response:
    """A stored compressed export served with a single-byte text charset and no Content-Encoding."""
    body = gzip.compress(json.dumps({"data": CLIENTS[:5]}).encode())
    return web.Response(body=body, headers={"Content-Type": "text/plain; charset=iso-8859-1"})


async def double_gzip(request: web.Request) -> web.Response:
    body = gzip.compress(gzip.compress(json.dumps(CLIENTS[:3]).encode()))
    return web.Response(
        body=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip, gzip"}
    )


async def multipart(request: web.Request) -> web.Response:
    body = f'--b\r\nContent-Type: application/json\r\n\r\n{{"mobile": "{MOBILES[0]}"}}\r\n--b--\r\n'
    return web.Response(text=body, headers={"Content-Type": "multipart/mixed; boundary=b"})


async def utf16(request: web.Request) -> web.Response:
    return web.Response(
        body=json.dumps({"memo": MOBILES[0]}).encode("utf-16"),
        headers={"Content-Type": "application/json; charset=utf-16"},
    )


async def utf7(request: web.Request) -> web.Response:
    return web.Response(
        body=f"call {MOBILES[0]}".encode("utf-7").replace(b"1", b"+ADE-"),
        headers={"Content-Type": "text/plain; charset=utf-7"},
    )


async def empty(request: web.Request) -> web.Response:
    status = int(request.match_info["status"])
    return web.Response(status=status, headers={"X-Memo": f"m={MOBILES[0]}"})


async def search(request: web.Request) -> web.Response:
    """A search over clients as internal APIs offer it: JSON filters in the query, OData
    `$filter`, a Lucene-ish `q`, free text, DRF's `ordering`, and a JSON body read whatever its
    Content-Type (aiohttp, Starlette, Flask's get_json(force=True)), first duplicate key winning."""
    q = request.query
    rows = list(CLIENTS)
    prefix = None
    if "filter" in q:
        prefix = json.loads(q["filter"]).get("mobile", {}).get("prefix")
    if "$filter" in q and q["$filter"].startswith("startswith(mobile,"):
        prefix = q["$filter"].split("'")[1]
    if "q" in q and q["q"].startswith("mobile:"):
        prefix = q["q"][len("mobile:") :].rstrip("*")
    if request.content_type.startswith("multipart/"):
        # request.post() reads POST bodies only; an API reading a search form on GET streams it.
        async for part in await request.multipart():
            if getattr(part, "name", None) == "mobile":
                prefix = await part.text()  # type: ignore[union-attr]
        text = ""
    else:
        text = await request.text()
    if text:
        body = json.loads(text, object_pairs_hook=_first_wins)
        prefix = (body.get("filter") or {}).get("mobile", prefix)
    if prefix is not None:
        rows = [c for c in rows if _digits_of(c).startswith(prefix)]
    if "search" in q:
        rows = [c for c in rows if q["search"] in json.dumps(c)]
    for key in ("ordering", "sort_field", "group_by"):
        if q.get(key, "").lstrip("-") == "mobile":
            rows.sort(key=_digits_of, reverse=q[key].startswith("-"))
    return web.json_response({"count": len(rows), "ids": [c["id"] for c in rows[:MAX_ROWS]]})


def red_app() -> web.Application:
    app = make_app()
    r = app.router
    r.add_get("/api/clients/by-id", by_id)
    r.add_get("/api/branches", branches)
    r.add_get("/api/export/clients.html", clients_html)
    r.add_get("/api/export/clients.xml", clients_xml)
    r.add_get("/api/export/clients.txt", clients_as_text)
    r.add_get("/api/page", page)
    r.add_get("/api/notes/{form}", note)
    r.add_get("/api/nested", nested)
    r.add_get("/api/dial", dial)
    r.add_get("/api/reason", reason)
    r.add_get("/api/attachment", attachment)
    r.add_get("/api/header-name", header_name)
    r.add_get("/api/latin1-gzip", latin1_gzip)
    r.add_get("/api/double-gzip", double_gzip)
    r.add_get("/api/multipart", multipart)
    r.add_get("/api/utf16", utf16)
    r.add_get("/api/utf7", utf7)
    r.add_get("/api/empty/{status}", empty)
    r.add_route("*", "/api/clients/search", search)
    return app


class RedUpstream:
    """The red-team API on its own loop thread; records every request line it receives."""

    def __init__(self, app: web.Application) -> None:
        self.port = free_port()
        self.seen: list[str] = []

        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            self.seen.append(f"{request.method} {request.raw_path}")
            return await handler(request)  # type: ignore[no-any-return]

        app.middlewares.append(record)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = web.AppRunner(app, access_log=None)
        self._call(self.runner.setup())
        self._call(web.TCPSite(self.runner, "127.0.0.1", self.port).start())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(30)

    def stop(self) -> None:
        self._call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Sink:
    """Another internal service on this host: records the raw bytes of whatever connects."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(2)
            try:
                self.received += conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\nsink reached"
                )
            except OSError:
                pass
            finally:
                conn.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[RedUpstream]:
    up = RedUpstream(red_app())
    try:
        yield up
    finally:
        up.stop()


class LenientUpstream:
    """An API server as lenient as many are: it takes raw non-UTF-8 bytes in the request target
    (aiohttp refuses them), answers byte ranges of any body, and echoes the headers it got."""

    TEXT = f"caller {MOBILES[0]} called back"

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.heads: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            self.heads.append(head)
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
            body, status = self.TEXT.encode(), "200 OK"
            if headers.get("range", "").startswith("bytes="):
                lo, _, hi = headers["range"][6:].partition("-")
                body, status = body[int(lo) : int(hi) + 1], "206 Partial Content"
            conn.sendall(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + body
            )
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        self.sock.close()


def serve(url: str, d: Path) -> Iterator[dict[str, Any]]:
    """`maskgate serve` with the red-team policy in front of the API at `url`."""
    (d / "policy.yaml").write_text(
        POLICY % {"vendor": scram_verifier("vendor-pass"), "desk": scram_verifier("desk-pass")}
    )
    tls = self_signed_cert(d)
    port = free_port()
    (d / "maskgate.yaml").write_text(
        f"""
policy: policy.yaml
audit_log: audit.jsonl
masking_key: test-key
http:
  listen: 127.0.0.1:{port}
  upstream: {url}
  api: crm-api
  tls: {{cert: {tls["cert"]}, key: {tls["key"]}}}
  max_body_bytes: 200000
  upstream_headers: {{X-Api-Key: service-secret}}
  trusted_header: X-Remote-User
  trusted_proxies: [10.9.8.0/24]
"""
    )
    app = App(load_config(d / "maskgate.yaml"), registry=CollectorRegistry())
    running = Running(app)
    try:
        yield {"url": f"https://127.0.0.1:{port}", "port": port, "dir": d}
    finally:
        running.stop()


@pytest.fixture(scope="module")
def served(upstream: RedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield from serve(upstream.url, tmp_path_factory.mktemp("redteam-http"))


@pytest.fixture(scope="module")
def lenient() -> Iterator[LenientUpstream]:
    up = LenientUpstream()
    try:
        yield up
    finally:
        up.stop()


@pytest.fixture(scope="module")
def served_lenient(
    lenient: LenientUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    yield from serve(lenient.url, tmp_path_factory.mktemp("redteam-http-lenient"))


# ------------------------------------------------------------------------------------ helpers


def get(served: dict[str, Any], path: str, who: tuple[str, str] | None = VENDOR, **kw: Any) -> httpx.Response:
    with httpx.Client(verify=False, timeout=30, follow_redirects=False) as c:
        return c.request(kw.pop("method", "GET"), served["url"] + path, auth=who, **kw)


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def audit(served: dict[str, Any]) -> list[dict[str, Any]]:
    time.sleep(0.3)  # the writer thread flushes its queue
    path = Path(served["dir"]) / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def raw(served: dict[str, Any], data: bytes, timeout: float = 10) -> bytes:
    """Bytes written as-is over TLS to the listener; everything read back until close or timeout."""
    with tls(served, timeout) as t:
        t.sendall(data)
        out = b""
        try:
            while chunk := t.recv(65536):
                out += chunk
        except (TimeoutError, ssl.SSLError, OSError):
            pass
        return out


def tls(served: dict[str, Any], timeout: float) -> ssl.SSLSocket:
    """A TLS connection to the listener that does not check its throwaway certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = socket.create_connection(("127.0.0.1", served["port"]), timeout=timeout)
    return ctx.wrap_socket(s, server_hostname="localhost")


def basic(who: tuple[str, str] = VENDOR) -> str:
    return "Basic " + base64.b64encode(f"{who[0]}:{who[1]}".encode()).decode()


def n_customers(text: str) -> int:
    """How many distinct client records a body holds (by their masked or clear mobile's last 4)."""
    return text.count('"id"') + text.count("<tr>") + text.count("<client>")


# ======================================================================= full numbers in bodies


@pytest.mark.parametrize("form", ["plain", "fullwidth", "entities", "uescapes", "number"])
def test_numbers_written_as_readers_write_them_are_masked(served: dict[str, Any], form: str) -> None:
    r = get(served, f"/api/notes/{form}")
    assert r.status_code == 200, r.text
    assert MOBILES[0][3:7] not in r.text, (form, r.text)


@pytest.mark.parametrize("form", ["dots", "underscores", "slashes", "spaced", "lines"])
def test_numbers_with_unread_separators_are_masked(served: dict[str, Any], form: str) -> None:
    r = get(served, f"/api/notes/{form}")
    memo = r.json()["memo"]
    assert MOBILES[0] not in "".join(ch for ch in memo if ch.isdigit()), memo


@pytest.mark.parametrize("form", ["hex", "base64"])
def test_numbers_in_base64_or_hex_are_masked(served: dict[str, Any], form: str) -> None:
    memo = get(served, f"/api/notes/{form}").json()["memo"].removeprefix("call back on ")
    decoded = bytes.fromhex(memo) if form == "hex" else base64.b64decode(memo)
    assert MOBILES[0].encode() not in decoded


def test_pagination_cursor_does_not_carry_a_number(served: dict[str, Any]) -> None:
    cursor = get(served, "/api/page").json()["next"]
    assert MOBILES[1].encode() not in base64.urlsafe_b64decode(cursor)


def test_json_inside_json_strings_and_floats_are_masked(served: dict[str, Any]) -> None:
    r = get(served, "/api/nested")
    assert r.status_code == 200
    assert not leaks(r.text)
    doc = r.json()
    inner = json.loads(doc["other"])
    assert MOBILES[1] not in json.dumps(inner, ensure_ascii=False)
    assert str(int(doc["num"])) != MOBILES[2]


def test_binary_under_a_single_byte_text_charset_is_not_passed(served: dict[str, Any]) -> None:
    r = get(served, "/api/latin1-gzip")
    if r.status_code == 200:
        recovered = gzip.decompress(r.text.encode("iso-8859-1")).decode()
        assert not leaks(recovered)
    assert r.status_code in (403, 502)


def test_stacked_or_unknown_encodings_are_502(served: dict[str, Any]) -> None:
    r = get(served, "/api/double-gzip")
    assert r.status_code == 502 and not leaks(r.text)


def test_multipart_response_is_refused_as_binary(served: dict[str, Any]) -> None:
    r = get(served, "/api/multipart")
    assert r.status_code == 403 and not leaks(r.text)


@pytest.mark.parametrize("path", ["/api/utf16", "/api/utf7"])
def test_other_charsets_are_decoded_and_masked(served: dict[str, Any], path: str) -> None:
    r = get(served, path)
    assert r.status_code == 200, r.text
    assert MOBILES[0] not in r.text
    assert "utf-8" in r.headers["content-type"].lower()


@pytest.mark.parametrize("status", [204, 304, 200])
def test_bodiless_responses_still_have_headers_scanned(served: dict[str, Any], status: int) -> None:
    r = get(served, f"/api/empty/{status}")
    assert MOBILES[0] not in str(r.headers)
    r = get(served, "/api/clients/1", method="HEAD")
    assert r.status_code == 200 and not leaks(str(r.headers)) and r.content == b""


# ================================================================== full numbers in the head


@pytest.mark.parametrize("how", ["plus", "pct"])
def test_redirect_location_is_masked(served: dict[str, Any], how: str) -> None:
    r = get(served, f"/api/dial?how={how}")
    assert r.status_code == 302
    target = unquote_plus(r.headers["location"])
    assert MOBILES[0] not in target.replace(" ", ""), target


def test_reason_phrase_is_masked(served: dict[str, Any]) -> None:
    r = get(served, "/api/reason")
    assert MOBILES[0] not in r.reason_phrase


def test_content_type_parameters_are_masked(served: dict[str, Any]) -> None:
    r = get(served, "/api/attachment")
    assert MOBILES[0] not in r.headers["content-type"]


def test_response_header_names_are_masked(served: dict[str, Any]) -> None:
    r = get(served, "/api/header-name")
    assert MOBILES[0] not in " ".join(r.headers.keys())


# ====================================================================================== max_rows


def test_map_keyed_by_id_is_bounded(served: dict[str, Any]) -> None:
    r = get(served, "/api/clients/by-id")
    assert r.status_code == 200 and not leaks(r.text)
    assert len(r.json()["clients"]) <= MAX_ROWS


def test_nested_groups_are_bounded(served: dict[str, Any]) -> None:
    r = get(served, "/api/branches")
    assert r.status_code == 200 and not leaks(r.text)
    assert sum(len(g["clients"]) for g in r.json()["branches"]) <= MAX_ROWS


@pytest.mark.parametrize("path", ["clients.html", "clients.xml", "clients.txt"])
def test_text_exports_are_bounded(served: dict[str, Any], path: str) -> None:
    r = get(served, f"/api/export/{path}")
    assert r.status_code == 200 and not leaks(r.text)
    assert n_customers(r.text) <= MAX_ROWS, n_customers(r.text)


def test_arrays_and_limit_parameters_are_bounded(served: dict[str, Any]) -> None:
    r = get(served, "/api/clients?limit=300")
    assert len(r.json()["data"]) == MAX_ROWS
    assert r.headers["x-maskgate-truncated"] == str(MAX_ROWS)
    r = get(served, "/api/clients.ndjson")
    assert len(r.text.strip().splitlines()) == MAX_ROWS


# ============================================================================ masked predicates


@pytest.mark.parametrize(
    "query",
    [
        f"mobile={MOBILES[0]}",
        f"Mobile={MOBILES[0]}",
        f"MOBILE={MOBILES[0]}",
        f"%6Dobile={MOBILES[0]}",
        f"mobile[]={MOBILES[0]}",
        f"filter[mobile]={MOBILES[0]}",
        f"filter.contact.phone={MOBILES[0]}",
        "mobile__startswith=138",
        "a=1&mobile=138&mobile=139",
        "sort=-mobile",
        "sort=id,mobile",
        "$orderby=mobile%20desc",
        "sortBy=mobile",
        "order_by=Mobile",
        f"bankAcct={CARDS[0]}",
    ],
)
def test_classified_query_names_are_refused(served: dict[str, Any], query: str) -> None:
    r = get(served, f"/api/clients/search?{query}")
    assert r.status_code == 403, (query, r.text)
    assert "maskgate:" in r.json()["error"]


def test_semicolon_is_not_a_query_separator_upstream(served: dict[str, Any], upstream: RedUpstream) -> None:
    # Forwarded re-encoded: the API cannot read `b` out of what maskgate saw as one value.
    r = get(served, "/api/echo?a=1;b=2")
    assert r.status_code == 200
    assert [k for k, _ in r.json()["query"]] == ["a"]
    # A value naming a classified field (and holding a full number) is a predicate in itself.
    r = get(served, "/api/echo?a=1;mobile=13812345678")
    assert r.status_code == 403


@pytest.mark.parametrize(
    "query",
    [
        "filter=" + quote(json.dumps({"mobile": {"prefix": "1381"}})),
        "$filter=" + quote("startswith(mobile,'1381')"),
        "q=" + quote("mobile:1381*"),
    ],
)
def test_predicates_inside_parameter_values_are_refused(served: dict[str, Any], query: str) -> None:
    r = get(served, f"/api/clients/search?{query}")
    assert r.status_code == 403, r.text


@pytest.mark.parametrize("query", ["ordering=mobile", "sort_field=mobile", "group_by=mobile"])
def test_sorting_aliases_on_a_classified_field_are_refused(served: dict[str, Any], query: str) -> None:
    r = get(served, f"/api/clients/search?{query}")
    assert r.status_code == 403, r.text


def test_a_full_number_as_a_search_value_counts_as_a_predicate(served: dict[str, Any]) -> None:
    r = get(served, f"/api/clients/search?search={MOBILES[1]}")
    assert r.status_code == 403, r.text


@pytest.mark.parametrize(
    "body",
    [
        {"filter": {"mobile": {"prefix": "138"}}},
        {"filter": {"mob\u0069le": "138"}},
        {"Filter": {"MOBILE": "138"}},
        {"where": [{"contact": {"phone": "138"}}]},
    ],
)
def test_classified_json_body_keys_are_refused(served: dict[str, Any], body: dict[str, Any]) -> None:
    r = get(served, "/api/clients/search", json=body)
    assert r.status_code == 403, r.text


def test_unicode_escaped_key_in_raw_body_is_refused(served: dict[str, Any]) -> None:
    r = get(
        served,
        "/api/clients/search",
        content=b'{"filter": {"\\u006dobile": "138"}}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 403


def test_form_body_predicates_are_refused(served: dict[str, Any]) -> None:
    r = get(served, "/api/clients/search", data={"mobile": "138"})
    assert r.status_code == 403
    r = get(
        served,
        "/api/clients/search",
        content=b"a=1&mob%69le=138",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 403


@pytest.mark.parametrize("ctype", ["text/plain", None, "application/x-json"])
def test_json_body_under_another_content_type_is_checked(served: dict[str, Any], ctype: str | None) -> None:
    headers = {"content-type": ctype} if ctype else {}
    r = get(
        served,
        "/api/clients/search",
        content=json.dumps({"filter": {"mobile": "1381"}}).encode(),
        headers=headers,
    )
    assert r.status_code in (400, 403), r.text


def test_multipart_body_predicates_are_refused(served: dict[str, Any]) -> None:
    r = get(served, "/api/clients/search", files={"mobile": (None, "1381")})
    assert r.status_code in (400, 403), r.text


def test_duplicate_json_keys_cannot_hide_a_predicate(served: dict[str, Any]) -> None:
    body = b'{"filter": {"mobile": "1381"}, "filter": {}}'
    r = get(served, "/api/clients/search", content=body, headers={"content-type": "application/json"})
    assert r.status_code in (400, 403), r.text


def test_equality_role_comma_lists_count_each_value(served: dict[str, Any]) -> None:
    r = get(served, "/api/clients?mobile=" + ",".join(MOBILES * 10), DESK)
    assert r.status_code == 403


def test_equality_role_comma_lists_in_a_body_count_each_value(served: dict[str, Any]) -> None:
    body = {"filter": {"mobile": ",".join(MOBILES * 10)}}
    r = get(served, "/api/clients/search", DESK, json=body)
    assert r.status_code == 403, r.text


def test_double_encoded_query_names_are_refused(served: dict[str, Any]) -> None:
    r = get(served, "/api/clients/search?%256Dobile=1381")
    assert r.status_code in (400, 403), r.text


# ======================================================================================== routes


@pytest.mark.parametrize(
    "path",
    [
        "/admin/users",
        "/api/../admin/users",
        "/api/%2e%2e/admin/users",
        "/api/%2E%2E%2Fadmin/users",
        "/api/..;/admin/users",
        "/api/.;/../../admin/users",
        "/api%2f..%2fadmin/users",
        "/api/%252e%252e/admin/users",
        "/api\\..\\admin/users",
        "/api/%5c..%5cadmin/users",
        "/api/%00/../../admin/users",
        "/API/../admin/users",
        "//admin/users",
        "/./admin/users",
    ],
)
def test_path_tricks_stay_inside_the_routes(served: dict[str, Any], path: str) -> None:
    out = raw(
        served,
        f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\nConnection: close\r\n\r\n".encode(),
    )
    assert b"root" not in out, (path, out[:200])
    assert out.startswith((b"HTTP/1.1 403", b"HTTP/1.1 400", b"HTTP/1.1 404")), (path, out[:120])


@pytest.mark.parametrize(
    "method", ["DELETE", "delete", "Delete", "POST", "PUT", "OPTIONS", "TRACE", "PROPFIND"]
)
def test_methods_outside_the_role_are_refused(served: dict[str, Any], method: str) -> None:
    out = raw(
        served,
        f"{method} /api/clients/1 HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n".encode(),
    )
    assert out.startswith((b"HTTP/1.1 403", b"HTTP/1.1 400")), (method, out[:120])


def test_absolute_form_target_does_not_leave_the_upstream(served: dict[str, Any]) -> None:
    sink = Sink()
    out = raw(
        served,
        f"GET http://127.0.0.1:{sink.port}/api/clients/1 HTTP/1.1\r\nHost: 127.0.0.1:{sink.port}\r\n"
        f"Authorization: {basic()}\r\nConnection: close\r\n\r\n".encode(),
    )
    assert b"sink reached" not in out
    assert b"service-secret" not in sink.received


def test_host_header_does_not_pick_the_upstream(served: dict[str, Any]) -> None:
    sink = Sink()
    r = get(served, "/api/clients/1", headers={"host": f"127.0.0.1:{sink.port}"})
    assert r.status_code == 200 and not leaks(r.text)
    assert sink.received == b""


@pytest.mark.parametrize(
    "header",
    ["X-Original-URL", "X-Rewrite-URL", "X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"],
)
def test_routing_override_headers_do_not_reach_the_api(served: dict[str, Any], header: str) -> None:
    value = "DELETE" if "Method" in header else "/admin/users"
    r = get(served, "/api/echo", headers={header: value})
    assert r.status_code == 403 or header.lower() not in r.json()["headers"], r.text


def test_method_override_parameter_does_not_reach_the_api(served: dict[str, Any]) -> None:
    r = get(served, "/api/echo?_method=DELETE")
    assert r.status_code == 403 or "_method" not in dict(r.json()["query"]), r.text


def test_upgrades_and_connect_are_refused(served: dict[str, Any]) -> None:
    r = get(served, "/api/clients/1", headers={"upgrade": "h2c", "connection": "upgrade, http2-settings"})
    assert r.status_code == 403
    out = raw(
        served,
        f"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\nAuthorization: {basic()}\r\n\r\n".encode(),
        timeout=3,
    )
    assert not out.startswith(b"HTTP/1.1 200")


def test_gateway_header_variants_are_not_believed(served: dict[str, Any]) -> None:
    for name in ("X-Remote-User", "x-remote-user", "X_Remote_User"):
        assert get(served, "/api/clients/1", None, headers={name: "desk_li"}).status_code == 401


# ================================================================ framing: smuggling, pipelining


def test_content_length_with_chunked_cannot_smuggle_a_request(
    served: dict[str, Any], upstream: RedUpstream
) -> None:
    smuggled = f"GET /admin/users HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\n\r\n"
    body = f"0\r\n\r\n{smuggled}"
    before = len(upstream.seen)
    out = raw(
        served,
        (
            f"GET /api/echo HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\n"
            f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        ).encode(),
        timeout=3,
    )
    assert b"root" not in out
    assert not any("/admin" in s for s in upstream.seen[before:])


def test_pipelined_requests_are_each_decided(served: dict[str, Any]) -> None:
    one = f"GET /api/clients/1 HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\n\r\n"
    two = f"GET /admin/users HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\nConnection: close\r\n\r\n"
    out = raw(served, (one + two).encode())
    assert out.count(b"HTTP/1.1 200") == 1 and b"HTTP/1.1 403" in out, out[:300]
    assert b"root" not in out and not leaks(out.decode(errors="replace"))


def test_expect_continue_is_decided_and_audited(served: dict[str, Any]) -> None:
    body = json.dumps({"filter": {"mobile": "138"}})
    out = raw(
        served,
        (
            f"GET /api/clients/search HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\n"
            f"Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n{body}"
        ).encode(),
    )
    assert b"403" in out.split(b"\r\n\r\n")[-2] or b"HTTP/1.1 403" in out, out[:300]


def test_huge_headers_are_refused_and_others_are_served(served: dict[str, Any]) -> None:
    out = raw(
        served,
        f"GET /api/clients/1 HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\nX-Pad: {'a' * 2_000_000}\r\n"
        "Connection: close\r\n\r\n".encode(),
        timeout=5,
    )
    assert not out.startswith(b"HTTP/1.1 200")
    assert get(served, "/api/clients/1").status_code == 200


def test_a_stalled_client_does_not_hold_up_others(served: dict[str, Any]) -> None:
    with tls(served, 5) as t:
        t.sendall(b"GET /api/clients/1 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        t0 = time.monotonic()
        assert get(served, "/api/clients/1").status_code == 200
        assert time.monotonic() - t0 < 3


def test_a_query_maskgate_cannot_reencode_is_refused_not_forwarded_raw(
    served_lenient: dict[str, Any], lenient: LenientUpstream
) -> None:
    # Two byte ranges of a text body: each half scans clean, together they are the number.
    halves = []
    for lo, hi in ((7, 12), (13, 17)):
        out = raw(
            served_lenient,
            f"GET /api/notes?x=\xff HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\n"
            f"Range: bytes={lo}-{hi}\r\nConnection: close\r\n\r\n".encode("latin-1"),
        )
        halves.append(out.split(b"\r\n\r\n", 1)[-1].decode(errors="replace"))
    seen = b"".join(lenient.heads).lower()
    assert MOBILES[0] not in "".join(halves), halves
    assert b"authorization: basic" not in seen, "the vendor's password went to the API"


# ================================================================== resources: stall or blow up


def test_a_deeply_nested_request_body_does_not_stall_others(served: dict[str, Any]) -> None:
    depth, width = 130, 100
    body = ("[" * depth + ",".join(["1"] * width) + "]" * depth).encode()
    attack = threading.Thread(
        target=lambda: get(
            served, "/api/clients/search", content=body, headers={"content-type": "application/json"}
        ),
        daemon=True,
    )
    attack.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    r = get(served, "/api/clients/1")
    waited = time.monotonic() - t0
    attack.join(120)
    assert r.status_code == 200
    assert waited < 1.5, f"a normal request waited {waited:.1f}s behind a {len(body)}-byte body"


def test_reflected_bodies_do_not_stall_others(served: dict[str, Any]) -> None:
    body = b"1+" * 95_000
    attacks = [
        threading.Thread(
            target=lambda: get(served, "/api/echo", content=body, headers={"content-type": "text/plain"}),
            daemon=True,
        )
        for _ in range(3)
    ]
    for t in attacks:
        t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    r = get(served, "/api/clients/1")
    waited = time.monotonic() - t0
    for t in attacks:
        t.join(60)
    assert r.status_code == 200
    assert waited < 1.5, f"a normal request waited {waited:.1f}s behind three echoed bodies"


def test_a_compressed_request_body_is_bounded_when_decoded(served: dict[str, Any]) -> None:
    inflated = b'{"a": 1}' + b" " * 20_000_000
    packed = gzip.compress(inflated, 9)
    assert len(packed) < 200_000
    r = get(
        served,
        "/api/echo",
        content=packed,
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert r.status_code == 413, (r.status_code, len(packed))


# ========================================================================================= audit


def test_every_attack_is_audited_without_a_full_number(served: dict[str, Any]) -> None:
    get(served, "/api/clients/search?mobile=13812345678")
    get(served, "/admin/users")
    get(served, "/api/clients/2")
    records = [r for r in audit(served) if r.get("protocol") == "http"]
    assert any(r["event"] == "refused" and r["reason"] == "masked_predicate" for r in records)
    assert any(r["event"] == "refused" and r["reason"] == "route_denied" for r in records)
    text = (Path(served["dir"]) / "audit.jsonl").read_text()
    assert not leaks(text)
