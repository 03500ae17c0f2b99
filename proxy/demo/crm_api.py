"""The demo's CRM HTTP API: the `crm` database's customers and calls as JSON, NDJSON, CSV and
binary downloads, the upstream that maskgate's HTTP side stands in front of in `make demo`,
`make bench` and the tests.

Owns the endpoints, their response shapes and a small pool of database connections as the service
account. It is the *application* behind the proxy, so it masks nothing and knows nothing of
policies: every value it sends is clear, exactly like a real internal API would. Must not be
imported by the serving path (demo-only, like the rest of proxy/demo).

Run alone: `python -m proxy.demo.crm_api --dsn postgresql://maskgate_svc:PW@127.0.0.1:PORT/crm
--port 8000`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import io
import json
import zipfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_response import ContentCoding

DEFAULT_LIMIT = 20
# Large enough that the vendor's max_rows (200) visibly cuts a list, small enough that one
# request cannot ask the demo database for everything at once.
MAX_LIMIT = 1000
CSV_HEADER = ("id", "name", "mobile", "id_no", "bank_card")
# The API's own operator accounts, served by the route the vendor may not call at all.
ADMIN_USERS = (
    {"login": "admin", "role": "superuser", "mfa": True},
    {"login": "ops_chen", "role": "operator", "mfa": True},
    {"login": "report_bot", "role": "reader", "mfa": False},
)
# The latest call's note: agents type numbers, cards and ID numbers into it, so it is the field
# that only the detectors (not the field classification) can catch.
CLIENT_COLUMNS = """c.id, c.name, c.phone, c.id_card, c.bank_card, c.email, c.branch_id,
    (SELECT r.notes FROM call_records r WHERE r.customer_id = c.id
      ORDER BY r.started_at DESC LIMIT 1) AS note"""
CALL_COLUMNS = "id, customer_id, caller, callee, started_at, duration_s, notes"


class BadRequest(Exception):
    """A request the API answers with 400 and `{"error": <message>}`."""


@dataclass(frozen=True, slots=True)
class ClientFilter:
    """What `GET /api/clients` was asked for, validated."""

    limit: int = DEFAULT_LIMIT
    offset: int = 0
    branch: int | None = None
    mobile: str | None = None


def _opt_int(query: Mapping[str, str], name: str, lo: int, hi: int) -> int | None:
    """A whole-number parameter, None when absent or empty; BadRequest when out of [lo, hi]."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    # isdigit() alone admits digits of other scripts ("١٢"), which int() reads too.
    if not (raw.isascii() and raw.isdigit()) or not lo <= int(raw) <= hi:
        raise BadRequest(f"{name} must be a whole number from {lo} to {hi}")
    return int(raw)


def _int(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    value = _opt_int(query, name, lo, hi)
    return default if value is None else value


def page(query: Mapping[str, str]) -> tuple[int, int]:
    """(limit, offset) of a list request; BadRequest when either is out of range."""
    return _int(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT), _int(query, "offset", 0, 0, 10**9)


def client_filter(query: Mapping[str, str]) -> ClientFilter:
    """The filter of a `GET /api/clients` query string. A malformed mobile is echoed back in the
    error on purpose: real APIs do, and the demo shows maskgate masking it in an error body."""
    limit, offset = page(query)
    branch = _opt_int(query, "branch", 0, 10**6)
    mobile = query.get("mobile") or None
    if mobile is not None and not (
        len(mobile) == 11 and mobile.isascii() and mobile.isdigit() and mobile[0] == "1"
    ):
        raise BadRequest(f"bad mobile {mobile}: expected 11 digits starting with 1")
    return ClientFilter(limit, offset, branch, mobile)


def contact_phone(client_id: int) -> str:
    """The client's alternate contact mobile. The schema keeps one phone per customer; this
    derives a second, valid-looking one from the id so `contact.phone` is a real number to mask."""
    return f"139{(client_id * 7_919_113 + 20_261_122) % 10**8:08d}"


def client_item(row: Sequence[Any]) -> dict[str, Any]:
    """One customer row (CLIENT_COLUMNS) as the API's JSON object."""
    cid, name, phone, id_card, bank_card, email, branch, note = row
    return {
        "id": cid,
        "name": name,
        "mobile": phone,
        "idNo": id_card,
        "bankAcct": bank_card,
        "email": email,
        "branch": branch,
        "contact": {"phone": contact_phone(cid), "email": email},
        "note": note,
    }


def call_item(row: Sequence[Any]) -> dict[str, Any]:
    """One call_records row (CALL_COLUMNS) as the API's JSON object."""
    cid, client, caller, callee, started, duration, notes = row
    return {
        "id": cid,
        "client": client,
        "caller": caller,
        "callee": callee,
        "startedAt": started.isoformat() if isinstance(started, dt.datetime) else started,
        "durationS": duration,
        "note": notes,
    }


def clients_csv(items: Sequence[Mapping[str, Any]]) -> str:
    """Customers as CSV with the export's own column names (CSV_HEADER)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(CSV_HEADER)
    for it in items:
        w.writerow([it["id"], it["name"], it["mobile"], it["idNo"], it["bankAcct"] or ""])
    return out.getvalue()


def ndjson(items: Sequence[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items)


def wants(accept: str | None, media: str) -> bool:
    """Whether an Accept header names `media` (content negotiation on the list routes, so a
    client may ask `/api/clients` itself for CSV or NDJSON)."""
    return bool(accept) and any(p.split(";")[0].strip() == media for p in (accept or "").split(","))


def xlsx(items: Sequence[Mapping[str, Any]]) -> bytes:
    """A minimal but valid spreadsheet (OOXML, inline strings) of the customers: a download no
    masker can read, which maskgate must refuse to roles without a binary route."""

    def cell(ref: str, value: object) -> str:
        text = "" if value is None else str(value)
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return f'<c r="{ref}" t="inlineStr"><is><t>{text}</t></is></c>'

    rows = [list(CSV_HEADER)] + [
        [it["id"], it["name"], it["mobile"], it["idNo"], it["bankAcct"]] for it in items
    ]
    sheet = "".join(
        f'<row r="{n}">' + "".join(cell(f"{'ABCDE'[i]}{n}", v) for i, v in enumerate(r)) + "</row>"
        for n, r in enumerate(rows, 1)
    )
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    pkg = "http://schemas.openxmlformats.org/package/2006/relationships"
    ct = "application/vnd.openxmlformats-officedocument.spreadsheetml"
    files = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
            'package/2006/content-types"><Default Extension="rels" ContentType="application/'
            'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
            'ContentType="application/xml"/><Override PartName="/xl/workbook.xml" '
            f'ContentType="{ct}.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" '
            f'ContentType="{ct}.worksheet+xml"/></Types>'
        ),
        "_rels/.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{pkg}"><Relationship '
            f'Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{main}" xmlns:r="{rel}">'
            '<sheets><sheet name="clients" sheetId="1" r:id="rId1"/></sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{pkg}"><Relationship '
            f'Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>'
        ),
        "xl/worksheets/sheet1.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{main}"><sheetData>{sheet}'
            "</sheetData></worksheet>"
        ),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


def pdf(lines: Sequence[str]) -> bytes:
    """A one-page PDF report listing `lines` (ASCII; Helvetica has no CJK glyphs)."""

    def esc(s: str) -> str:
        return (
            s.encode("ascii", "replace")
            .decode()
            .replace("\\", "\\\\")
            .replace("(", "\\(")
            .replace(")", "\\)")
        )

    text = "BT /F1 10 Tf 50 800 Td 14 TL " + " ".join(f"({esc(s)}) '" for s in lines) + " ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text.encode()),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (n, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _json(data: object, status: int = 200) -> web.Response:
    body = json.dumps(data, ensure_ascii=False)
    return web.Response(text=body, status=status, content_type="application/json", charset="utf-8")


def _error(status: int, message: str, **extra: object) -> web.Response:
    return _json({"error": message, "status": status, **extra}, status)


class Pool:
    """A fixed set of async psycopg connections handed out one request at a time (the demo needs
    no pool library; a handful of connections keeps the API from being the bench's bottleneck)."""

    def __init__(self, dsn: str, size: int) -> None:
        self.dsn, self.size = dsn, size
        self._free: asyncio.Queue[Any] = asyncio.Queue()
        self._all: list[Any] = []

    async def open(self) -> None:
        import psycopg

        for _ in range(self.size):
            conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
            self._all.append(conn)
            self._free.put_nowait(conn)

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()
        self._all.clear()

    @asynccontextmanager
    async def conn(self) -> AsyncIterator[Any]:
        c = await self._free.get()
        try:
            yield c
        finally:
            self._free.put_nowait(c)

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        async with self.conn() as c:
            cur = await c.execute(sql, params)
            return list(await cur.fetchall())


POOL_KEY = web.AppKey("pool", Pool)


def _pool(request: web.Request) -> Pool:
    return request.app[POOL_KEY]


async def _clients(pool: Pool, f: ClientFilter) -> tuple[list[dict[str, Any]], int]:
    where, params = ["TRUE"], []
    if f.branch is not None:
        where.append("c.branch_id = %s")
        params.append(f.branch)
    if f.mobile is not None:
        where.append("c.phone = %s")
        params.append(f.mobile)
    cond = " AND ".join(where)
    rows = await pool.fetch(
        f"SELECT {CLIENT_COLUMNS} FROM customers c WHERE {cond} ORDER BY c.id LIMIT %s OFFSET %s",
        [*params, f.limit, f.offset],
    )
    total = (await pool.fetch(f"SELECT count(*) FROM customers c WHERE {cond}", params))[0][0]
    return [client_item(r) for r in rows], int(total)


async def list_clients(request: web.Request) -> web.StreamResponse:
    try:
        f = client_filter(request.query)
    except BadRequest as e:
        return _error(400, str(e))
    items, total = await _clients(_pool(request), f)
    if f.mobile is not None and not items:
        return _error(404, f"no client with mobile {f.mobile}", mobile=f.mobile)
    if wants(request.headers.get("Accept"), "text/csv"):
        return web.Response(text=clients_csv(items), content_type="text/csv", charset="utf-8")
    return _json({"data": items, "total": total, "limit": f.limit, "offset": f.offset})


async def clients_csv_route(request: web.Request) -> web.StreamResponse:
    try:
        f = client_filter(request.query)
    except BadRequest as e:
        return _error(400, str(e))
    items, _ = await _clients(_pool(request), f)
    resp = web.Response(text=clients_csv(items), content_type="text/csv", charset="utf-8")
    resp.headers["Content-Disposition"] = 'inline; filename="clients.csv"'
    return resp


async def get_client(request: web.Request) -> web.StreamResponse:
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return _error(400, f"bad client id {raw}")
    rows = await _pool(request).fetch(f"SELECT {CLIENT_COLUMNS} FROM customers c WHERE c.id = %s", [int(raw)])
    if not rows:
        # The id is echoed: a number typed in the wrong field (a mobile as an id) comes back in
        # the error body, which maskgate must mask like any other body.
        return _error(404, f"client {raw} not found", id=raw)
    return _json(client_item(rows[0]))


async def _calls(request: web.Request) -> list[dict[str, Any]] | web.Response:
    try:
        limit, offset = page(request.query)
        client = _opt_int(request.query, "client", 1, 10**17)
    except BadRequest as e:
        return _error(400, str(e))
    where, params = ("customer_id = %s", [client]) if client is not None else ("TRUE", [])
    rows = await _pool(request).fetch(
        f"SELECT {CALL_COLUMNS} FROM call_records WHERE {where} ORDER BY id LIMIT %s OFFSET %s",
        [*params, limit, offset],
    )
    return [call_item(r) for r in rows]


async def list_calls(request: web.Request) -> web.StreamResponse:
    items = await _calls(request)
    if isinstance(items, web.Response):
        return items
    if wants(request.headers.get("Accept"), "application/x-ndjson"):
        return web.Response(text=ndjson(items), content_type="application/x-ndjson", charset="utf-8")
    return _json({"data": items})


async def calls_ndjson(request: web.Request) -> web.StreamResponse:
    items = await _calls(request)
    if isinstance(items, web.Response):
        return items
    return web.Response(text=ndjson(items), content_type="application/x-ndjson", charset="utf-8")


async def export_xlsx(request: web.Request) -> web.StreamResponse:
    items, _ = await _clients(_pool(request), ClientFilter(limit=100))
    return web.Response(
        body=xlsx(items),
        content_type="application/octet-stream",
        headers={"Content-Disposition": 'attachment; filename="clients.xlsx"'},
    )


async def report_pdf(request: web.Request) -> web.StreamResponse:
    items, total = await _clients(_pool(request), ClientFilter(limit=20))
    lines = [f"CRM clients report: {total} clients", ""] + [
        f"{it['id']}  {it['mobile']}  {it['idNo']}  {it['bankAcct'] or '-'}" for it in items
    ]
    return web.Response(body=pdf(lines), content_type="application/pdf")


async def admin_users(request: web.Request) -> web.StreamResponse:
    return _json({"data": list(ADMIN_USERS)})


async def health(request: web.Request) -> web.StreamResponse:
    return _json({"ok": True})


@web.middleware
async def compress(request: web.Request, handler: Any) -> web.StreamResponse:
    """gzip/deflate every response the client accepts compressed, so compressed bodies are what
    maskgate has to decode, mask and re-encode (as in front of most real APIs)."""
    resp = await handler(request)
    accepted = request.headers.get("Accept-Encoding", "").lower()
    if isinstance(resp, web.Response) and accepted:
        # gzip first when offered, as nginx and most API gateways do (aiohttp alone would pick
        # deflate from curl's and httpx's "gzip, deflate").
        resp.enable_compression(ContentCoding.gzip if "gzip" in accepted else None)
    return resp


def make_app(dsn: str, pool_size: int = 4) -> web.Application:
    app = web.Application(middlewares=[compress])
    pool = Pool(dsn, pool_size)
    app[POOL_KEY] = pool

    async def open_pool(_: web.Application) -> None:
        await pool.open()

    async def close_pool(_: web.Application) -> None:
        await pool.close()

    app.on_startup.append(open_pool)
    app.on_cleanup.append(close_pool)
    # Fixed names before `{id}`: aiohttp tries routes in the order they are added.
    app.router.add_get("/api/clients", list_clients)
    app.router.add_get("/api/clients.csv", clients_csv_route)
    app.router.add_get("/api/clients/export.xlsx", export_xlsx)
    app.router.add_get("/api/clients/{id}", get_client)
    app.router.add_get("/api/calls", list_calls)
    app.router.add_get("/api/calls.ndjson", calls_ndjson)
    app.router.add_get("/api/reports/clients.pdf", report_pdf)
    app.router.add_get("/api/admin/users", admin_users)
    app.router.add_get("/api/health", health)
    return app


@dataclass
class RunningApi:
    """The API serving in the current event loop; `stop()` closes it and its connections."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start(dsn: str, host: str = "127.0.0.1", port: int = 0, pool_size: int = 4) -> RunningApi:
    """Serve the API in the running event loop (port 0: a free one) and return where."""
    runner = web.AppRunner(make_app(dsn, pool_size), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port or next(int(a[1]) for a in runner.addresses if isinstance(a, tuple))
    return RunningApi(runner, host, bound)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m proxy.demo.crm_api", description=__doc__.split("\n")[0])
    ap.add_argument("--dsn", required=True, help="postgresql://USER:PASSWORD@HOST:PORT/crm")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--pool", type=int, default=4, help="database connections")
    args = ap.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # the same event loop maskgate serve uses, where it is installed
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(make_app(args.dsn, args.pool), host=args.host, port=args.port, access_log=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
