"""The HTTP side as a mitmproxy addon: authenticate, decide, forward what was decided, mask the
whole buffered response.

Owns the mitmproxy hooks and what one request carries between them (`Exchange`). Who a caller is
comes from proxy/http/auth.py, decisions from the Gate (policies/http.py behind it), body masking
from proxy/http/bodies.py (in a worker thread for large bodies), head masking from heads.py;
audit and metrics go through the Gate as for SQL, with `protocol="http"`. `maskgate serve` runs it
in reverse-proxy mode (proxy/http/server.py); a stock
`mitmdump -s proxy/http/mitmdump.py --set maskgate_config=FILE` loads the same class, which then
builds its own services from the config file. Must not open sockets itself.

A body is never streamed: a value split across two chunks would escape the mask. Every path that
is not the masked response (refusals, errors, bodies maskgate cannot read) ends in a response
maskgate wrote itself, and every request ends in one audit record.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from dataclasses import dataclass, field, replace
from email.message import Message
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from mitmproxy import ctx, exceptions, http

from policies.decision import Allow, Block, Decision

from ..services.disclosure import fold
from ..services.gate import Principal, StatementRecord
from . import bodies, heads, reqbody
from .auth import Authenticator, AuthSettings, Denied, PasswordCheck

if TYPE_CHECKING:
    from ..config import HttpListener

KEY = "maskgate"
PROTOCOL = "http"
JSON = {"content-type": "application/json; charset=utf-8", "cache-control": "no-store"}
# Content encodings mitmproxy can decode and encode again: an upstream must not pick another.
DECODABLE = ("gzip", "deflate", "br", "zstd", "identity")
# Request headers that carry maskgate's credential or steer what part of a body the caller gets:
# a byte range of a body is masked as a fragment, and a number cut in two no longer looks like one.
_STRIP_REQUEST = ("authorization", "proxy-authorization", "range", "if-range")
# Request headers through which a client would steer the API past the route maskgate decided:
# front-end rewrites (Symfony/IIS/Express read X-Original-URL as the path), method overrides,
# and claims of where the request came from, which APIs use for links and allow-lists. maskgate
# is the front end here: the API hears these only from `upstream_headers`.
_STRIP_ROUTING = frozenset(
    {
        "x-original-url",
        "x-original-uri",
        "x-rewrite-url",
        "x-override-url",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-method",
        "x-http-destinationurl",
        "x-middleware-subrequest",
        "forwarded",
        "x-real-ip",
        "x-client-ip",
        "true-client-ip",
        "x-cluster-client-ip",
        "x-host",
        "x-remote-user",
        "remote-user",
        "x-authenticated-user",
        "x-webauth-user",
    }
)
_STRIP_ROUTING_PREFIX = re.compile(r"^x-(forwarded|original|rewrite|override|envoy-original|auth-request)-")
# Request bodies up to this size are read and decided on the event loop; larger ones in a
# worker thread, so that one big body does not hold up every other client.
THREAD_BODY_BYTES = 16 * 1024
# Response headers that describe the unmasked body (a digest of it, byte ranges of it) or would
# let it be fetched in pieces; the masked body gets its own length from mitmproxy.
_STRIP_RESPONSE = ("content-md5", "digest", "repr-digest", "content-digest", "accept-ranges", "content-range")
# Bodies larger than this are masked in a worker thread, so that one large body does not hold up
# every other exchange on mitmproxy's event loop; smaller ones are masked in place (a thread hop
# costs more than they do).
THREAD_BYTES = 64 * 1024
_STATUS = {"audit_unavailable": 503, "bad_request": 400}
_CHALLENGE = 'Basic realm="maskgate", charset="UTF-8", Bearer realm="maskgate"'


class RequestRefused(Exception):
    """maskgate answers this request itself: `status`, a safe message, and (for the audit and the
    metrics) the decision that refused it."""

    def __init__(self, status: int, decision: Block) -> None:
        super().__init__(decision.message)
        self.status = status
        self.decision = decision


@dataclass
class Exchange:
    """One request's state between hooks (kept in `flow.metadata`)."""

    started: float
    principal: Principal | None = None
    decision: Decision | None = None
    what: str = ""  # the audit's `sql`: "GET /api/clients?mobile=…", decoded once
    path: str = ""  # the normalised path the decision was made on
    begun: bool = False  # the write-ahead record was written
    done: bool = False  # the final record was written
    answered: bool = False  # maskgate set the response itself
    overhead: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _refusal(reason: str, message: str, revision: str = "", fingerprint: str = "") -> Block:
    return Block(reason, message, kind="http", revision=revision, fingerprint=fingerprint)


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> http.Response:
    body = json.dumps({"error": f"maskgate: {message}"}, ensure_ascii=False).encode()
    return http.Response.make(status, body, {**JSON, **(headers or {})})


def _header_bytes(s: str) -> bytes:
    # mitmproxy's own str <-> bytes mapping of header fields, so bytes it read come back unchanged.
    return s.encode("utf-8", "surrogateescape")


def _charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    msg = Message()
    msg["content-type"] = content_type
    cs = msg.get_param("charset")
    return cs if isinstance(cs, str) else None


class MaskGate:
    """The addon. With a Gate (maskgate serve) it uses the process's guard, audit and metrics;
    without one (mitmdump -s) it builds them from the `maskgate_config` option's file."""

    def __init__(self, gate: Any = None, settings: HttpListener | None = None) -> None:
        self.gate = gate
        self.settings = settings
        self.auth: Authenticator | None = None
        self.app: Any = None  # standalone: the services built from maskgate_config
        if gate is not None and settings is not None:
            self._use(gate, settings)

    def _use(self, gate: Any, settings: HttpListener) -> None:
        self.gate = gate
        self.settings = settings
        self.auth = Authenticator(gate, AuthSettings.of(settings.trusted_header, settings.trusted_proxies))

    # ------------------------------------------------------------------ options

    def load(self, loader: Any) -> None:
        loader.add_option(
            "maskgate_config",
            str | None,  # type: ignore[arg-type]
            None,
            "maskgate config file (its policy, audit_log, metrics, masking_key and http section); "
            "needed when this addon runs in mitmdump -s, ignored under maskgate serve",
        )

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if getattr(opts, "stream_large_bodies", None):
            raise exceptions.OptionsError(
                "maskgate: stream_large_bodies would pass bodies to clients unmasked; unset it"
            )
        if "maskgate_config" in updated and self.gate is None and opts.maskgate_config:
            from ..config import ConfigError, load_config

            try:
                config = load_config(opts.maskgate_config)
            except ConfigError as exc:
                raise exceptions.OptionsError(f"maskgate: {exc}") from None
            if config.http is None:
                raise exceptions.OptionsError(f"maskgate: {opts.maskgate_config} has no http section")
            self._pending = config
        settings = self.settings or getattr(getattr(self, "_pending", None), "http", None)
        if settings is not None:
            limit = settings.max_body_bytes
            current = opts.body_size_limit
            from mitmproxy.utils import human

            if current is None or (human.parse_size(current) or 0) > limit or human.parse_size(current) == 0:
                # Bodies are held whole to be masked: mitmproxy refuses larger ones (502 / 413).
                opts.update(body_size_limit=str(limit))

    async def running(self) -> None:
        config = getattr(self, "_pending", None)
        if config is None or self.gate is not None:
            return
        from ..app import App

        app = App(config)
        await app.start_services()
        self.app = app
        self._use(app.guard, config.http)
        print(f"maskgate: HTTP addon ready (policy {app.guard.policy.revision})", file=sys.stderr)

    async def done(self) -> None:
        if self.app is not None:
            await self.app.stop()
            self.app = None

    # ------------------------------------------------------------------ hooks, fail-closed
    #
    # mitmproxy logs an exception raised by an addon and carries on with the flow as it is: a
    # request would go upstream unchecked, a response reach the client unmasked. Every hook that
    # decides or masks therefore answers the flow itself when anything goes wrong.

    #
    # The request hooks are coroutines, which mitmproxy awaits: the PBKDF2 of a Basic password the
    # cache does not know, and reading and deciding a large request body, run in a worker thread
    # instead of on the loop every client shares.

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        try:
            await self._requestheaders(flow)
        except Exception as exc:
            self._internal_error(flow, "request headers", exc)

    async def request(self, flow: http.HTTPFlow) -> None:
        try:
            await self._request(flow)
        except Exception as exc:
            self._internal_error(flow, "request", exc)

    async def response(self, flow: http.HTTPFlow) -> None:
        try:
            await self._response(flow)
        except Exception as exc:
            self._internal_error(flow, "response", exc)

    def _internal_error(self, flow: http.HTTPFlow, stage: str, exc: Exception) -> None:
        print(f"maskgate: HTTP {stage} failed: {exc!r}", file=sys.stderr)
        flow.response = _json_error(502, "the request could not be handled")
        ex = flow.metadata.get(KEY)
        if not isinstance(ex, Exchange):
            return
        ex.answered = True
        if ex.done or ex.principal is None or self.gate is None:
            return
        block = _refusal("unparsable", "the request could not be handled")
        try:
            self._finish(flow, ex, block, outcome="error", error="internal")
        except Exception as again:  # the record itself failed: say so, the client has its 502
            print(f"maskgate: HTTP record failed: {again!r}", file=sys.stderr)

    # ------------------------------------------------------------------ connections

    def client_connected(self, client: Any) -> None:
        if self.gate is not None:
            self.gate.connection_opened(PROTOCOL)

    def client_disconnected(self, client: Any) -> None:
        if self.gate is not None:
            self.gate.connection_closed(PROTOCOL)

    # ------------------------------------------------------------------ request

    async def _requestheaders(self, flow: http.HTTPFlow) -> None:
        ex = Exchange(started=time.perf_counter())
        flow.metadata[KEY] = ex
        gate = self.gate
        if gate is None or self.auth is None or self.settings is None:
            ex.answered = True
            flow.response = _json_error(503, "the proxy is starting; try again shortly")
            return
        req = flow.request
        header = self.settings.trusted_header
        who = self.auth.begin(
            req.headers.get("authorization"),
            req.headers.get(header) if header else None,
            flow.client_conn.peername[0] if flow.client_conn.peername else "",
            bool(flow.client_conn.tls_established),
        )
        if isinstance(who, PasswordCheck):
            who = await asyncio.to_thread(who.run)
        if isinstance(who, Denied):
            gate.auth_failed(PROTOCOL)
            ex.answered = ex.done = True
            flow.response = _json_error(401, "authentication required", {"www-authenticate": _CHALLENGE})
            return
        ex.principal = who
        try:
            self._admit(flow, ex, None, early=True)
        except RequestRefused as r:
            self._refuse(flow, ex, r)

    async def _request(self, flow: http.HTTPFlow) -> None:
        ex = flow.metadata.get(KEY)
        if not isinstance(ex, Exchange):
            # Not seen by requestheaders (another addon answered?): nothing unvetted goes upstream.
            flow.response = _json_error(502, "the request was not checked")
            return
        if ex.answered or ex.principal is None:
            return
        t0 = time.perf_counter()
        try:
            req = flow.request
            limit = self.settings.max_body_bytes if self.settings else 0
            try:
                raw = reqbody.decode(req.raw_content or b"", req.headers.get("content-encoding"), limit)
            except reqbody.BodyRefused as exc:
                raise RequestRefused(400, _refusal("bad_request", str(exc))) from None
            except reqbody.BodyTooLarge:
                raise RequestRefused(
                    413, _refusal("bad_request", "the request body is larger than maskgate accepts")
                ) from None
            ctype = req.headers.get("content-type")
            if len(raw) > THREAD_BODY_BYTES:
                body, d = await asyncio.to_thread(self._read_and_decide, ex, req.method.upper(), raw, ctype)
            else:
                body, d = self._read_and_decide(ex, req.method.upper(), raw, ctype)
            if body is not None and body.forward is not None and body.forward != raw:
                # The API reads exactly what was decided on (Content-Length follows).
                req.set_content(body.forward)
            self._admit(flow, ex, d, early=False)
        except RequestRefused as r:
            self._refuse(flow, ex, r)
        finally:
            ex.overhead += time.perf_counter() - t0

    def _read_and_decide(
        self, ex: Exchange, method: str, raw: bytes, ctype: str | None
    ) -> tuple[reqbody.RequestBody | None, Decision]:
        """The body read for the decision, and the decision on it. CPU only, touches no flow:
        run in a worker thread for large bodies."""
        gate, principal = self.gate, ex.principal
        assert gate is not None and principal is not None and self.settings is not None
        body = None
        if raw:
            try:
                body = reqbody.read(raw, ctype)
            except reqbody.BodyRefused as exc:
                raise RequestRefused(400, _refusal("bad_request", str(exc))) from None
        d = gate.decide_request(
            principal, method, ex.path, ex.extra["query"], body.decided if body else None, self.settings.api
        )
        return body, d

    def _admit(self, flow: http.HTTPFlow, ex: Exchange, decided: Decision | None, *, early: bool) -> None:
        """Decide the request on its headers (`early`), or act on the decision made with its body,
        and rewrite what goes upstream to exactly what was decided."""
        gate, req, principal = self.gate, flow.request, ex.principal
        assert gate is not None and principal is not None and self.settings is not None
        if early:
            # A tunnel carries bytes maskgate cannot mask once the handshake is done.
            if req.method.upper() == "CONNECT" or "upgrade" in req.headers:
                raise RequestRefused(
                    403, _refusal("route_denied", "protocol upgrades and tunnels are not allowed")
                )
            from policies.http import forward_path, normalise_path

            raw_path, _, raw_query = req.path.partition("?")
            # The route is decided on exactly the path the API receives: normalised, re-encoded.
            fwd = forward_path(raw_path)
            if fwd is None:
                raise RequestRefused(403, _refusal("route_denied", "the request path is not valid"))
            # Decoded once, as the API will read it; forwarded re-encoded from what was decided,
            # so the API cannot read a parameter maskgate did not see.
            try:
                query = (
                    parse_qsl(raw_query, keep_blank_values=True, errors="strict", max_num_fields=1000)
                    if raw_query
                    else []
                )
            except (UnicodeDecodeError, ValueError):
                raise RequestRefused(400, _refusal("bad_request", "the query string is not valid")) from None
            ex.path = fwd
            ex.extra["query"] = query
            shown = normalise_path(fwd) or fwd
            ex.what = f"{req.method} {shown}" + (
                "?" + "&".join(f"{k}={v}" for k, v in query) if query else ""
            )
            req.path = fwd + ("?" + urlencode(query) if query else "")
        d = decided
        if d is None:
            d = gate.decide_request(
                principal, req.method.upper(), ex.path, ex.extra["query"], None, self.settings.api
            )
        if isinstance(d, Block):
            raise RequestRefused(_STATUS.get(d.reason, 403), d)
        ex.decision = d
        if early:
            self._rewrite_headers(flow, d)
            return
        if d.lookups and not gate.spend_lookups(principal, d.lookups):
            raise RequestRefused(
                403,
                replace(
                    _refusal("row_budget", "lookup budget of masked values exhausted for this hour"),
                    revision=d.revision,
                    fingerprint=d.fingerprint,
                ),
            )
        rec = self._record(flow, ex, d, event="start")
        if not gate.begin(rec):
            raise RequestRefused(
                503, _refusal("audit_unavailable", "the audit log cannot be written; try again later")
            )
        ex.begun = True

    def _rewrite_headers(self, flow: http.HTTPFlow, d: Allow) -> None:
        headers = flow.request.headers
        for name in _STRIP_REQUEST:
            headers.pop(name, None)
        for name in {n.lower() for n in headers}:
            if name in _STRIP_ROUTING or _STRIP_ROUTING_PREFIX.match(name):
                headers.pop(name, None)
        if self.settings and self.settings.trusted_header:
            headers.pop(self.settings.trusted_header, None)
        accept = headers.get("accept-encoding")
        if accept is not None:
            wanted = [
                part.strip()
                for part in accept.split(",")
                if part.split(";", 1)[0].strip().lower() in DECODABLE
            ]
            if wanted:
                headers["accept-encoding"] = ", ".join(wanted)
            else:
                headers.pop("accept-encoding")
        for name, value in (self.settings.upstream_headers if self.settings else {}).items():
            headers[name] = value

    # ------------------------------------------------------------------ response

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        # Whoever set it (an option, another addon), a streamed body would reach the client unmasked.
        if flow.response is not None:
            flow.response.stream = False

    async def _response(self, flow: http.HTTPFlow) -> None:
        ex = flow.metadata.get(KEY)
        resp = flow.response
        if resp is None:
            return
        if not isinstance(ex, Exchange):
            flow.response = _json_error(502, "the request was not checked")
            return
        if ex.answered:
            return
        d = ex.decision
        if not isinstance(d, Allow) or ex.principal is None or not ex.begun:
            flow.response = _json_error(502, "the request was not checked")
            return
        t0 = time.perf_counter()
        rows = masked = 0
        truncated = False
        outcome, error = "ok", None
        try:
            rows, masked, truncated = await self._mask(flow, ex, d)
            if resp.status_code >= 400:
                outcome, error = "error", str(resp.status_code)
        except RequestRefused as r:
            outcome, error = ("refused" if r.status == 403 else "error"), r.decision.reason
            flow.response = _json_error(r.status, r.decision.message)
            if r.status == 403:
                d = replace(r.decision, revision=d.revision, fingerprint=d.fingerprint)
        ex.overhead += time.perf_counter() - t0
        self._finish(flow, ex, d, rows=rows, masked=masked, truncated=truncated, outcome=outcome, error=error)

    async def _mask(self, flow: http.HTTPFlow, ex: Exchange, d: Allow) -> tuple[int, int, bool]:
        gate, resp, principal = self.gate, flow.response, ex.principal
        assert gate is not None and resp is not None and principal is not None and self.settings is not None
        resp.trailers = None
        observing = getattr(gate, "observing", False)
        if (
            not d.detect
            and d.row_limit is None
            and not d.classes
            and principal.unrestricted
            and not observing
        ):
            return 0, 0, False
        rules = gate.http_rules(principal, self.settings.api)
        if rules is None:
            raise RequestRefused(
                403, _refusal("statement_not_allowed", "your access was changed; sign in again")
            )
        for name in _STRIP_RESPONSE:
            resp.headers.pop(name, None)
        masked = self._mask_headers(resp, d)
        ctype = resp.headers.get("content-type")
        kind = bodies.kind_of(ctype)
        enc = (resp.headers.get("content-encoding") or "identity").strip().lower()
        if enc not in DECODABLE:
            raise RequestRefused(
                502, _refusal("bad_upstream", "the API answered in a content encoding maskgate cannot read")
            )
        try:
            raw = resp.get_content(strict=True) or b""
        except ValueError:
            raise RequestRefused(
                502, _refusal("bad_upstream", "the API's response body has an invalid content encoding")
            ) from None
        if not raw:
            return 0, masked, False
        binary = RequestRefused(
            403,
            _refusal(
                "route_denied",
                f"downloads of {(ctype or 'this type').split(';')[0][:60]} are not allowed for your role",
            ),
        )
        binary_ok = rules.binary_ok(flow.request.method.upper(), ex.path)
        if kind == "binary":
            if binary_ok:
                await self._observe_download(flow, principal, raw, observing)
                return 0, masked, False
            raise binary
        if kind == "empty":
            kind = "text"
        plan = bodies.BodyPlan(
            field_class=rules.field_class,
            name_class=rules.name_class,
            action_for=rules.action_for,
            detect=d.detect,
            max_rows=d.row_limit,
            seen=[] if observing else None,
        )
        try:
            if len(raw) > THREAD_BYTES:
                out = await asyncio.to_thread(bodies.mask_body, kind, raw, _charset(ctype), plan, gate)
            else:
                out = bodies.mask_body(kind, raw, _charset(ctype), plan, gate)
        except bodies.BinaryBody:
            # Bytes under a text label (a gzip file as Latin-1): the binary rule, whatever the label.
            if binary_ok:
                await self._observe_download(flow, principal, raw, observing)
                return 0, masked, False
            raise binary from None
        except bodies.BodyError:
            raise RequestRefused(
                502, _refusal("bad_upstream", f"the API's {kind} response could not be read")
            ) from None
        if plan.seen is not None:
            # What the person receives is read for numbers too: a number in a free-text field,
            # an HTML cell or a header is theirs as much as one in a classified field (the
            # fields' own notes above say which were masked).
            head = "\n".join(v for _n, v in resp.headers.items(multi=True))
            charset = getattr(out, "content_type_charset", None) or _charset(ctype)
            if len(out.body) > THREAD_BYTES:
                found = await asyncio.to_thread(bodies.numbers_in, out.body, charset, head)
            else:
                found = bodies.numbers_in(out.body, charset, head)
            # A classified field already noted in clear is not noted twice.
            clear = {(d.cls, fold(d.value)) for d in plan.seen if d.clear}
            plan.seen.extend(d for d in found if (d.cls, fold(d.value)) not in clear)
        if plan.seen:
            # One batch per response, with the id its audit records carry.
            gate.disclose(principal, flow.id[:16], plan.seen)
        charset = getattr(out, "content_type_charset", None)
        if charset and ctype and (_charset(ctype) or "").lower() != charset.lower():
            base = ctype.split(";", 1)[0].strip()
            resp.headers["content-type"] = f"{base}; charset={charset}"
        resp.set_content(out.body)
        if out.truncated:
            resp.headers["x-maskgate-truncated"] = str(d.row_limit)
        return out.items, masked + out.masked, out.truncated > 0

    async def _observe_download(
        self, flow: http.HTTPFlow, principal: Principal, raw: bytes, observing: bool
    ) -> None:
        """A download a route allows passes as it is; while disclosures are observed, its bytes
        are read for numbers as text (a PDF's or octet stream's uncompressed text; compressed
        streams hold none that can be read without decoding the format)."""
        if not observing or self.gate is None:
            return
        if len(raw) > THREAD_BYTES:
            found = await asyncio.to_thread(bodies.numbers_in, raw, "latin-1")
        else:
            found = bodies.numbers_in(raw, "latin-1")
        if found:
            self.gate.disclose(principal, flow.id[:16], found)

    def _mask_headers(self, resp: http.Response, d: Allow) -> int:
        """The response head masked (heads.py): reason phrase, header names and values."""
        # The reason phrase is free text an API may fill with a record: the standard one replaces it.
        resp.reason = heads.standard_reason(resp.status_code)
        if not d.detect:
            return 0
        assert self.gate is not None
        scan = heads.text_scanner(self.gate.text_masker(d.detect))
        fields, changed = heads.mask_headers(list(resp.headers.items(multi=True)), scan)
        if changed:
            resp.headers = http.Headers([(_header_bytes(n), _header_bytes(v)) for n, v in fields])
        return changed

    def error(self, flow: http.HTTPFlow) -> None:
        """The exchange failed in mitmproxy (upstream unreachable, a body over the limit, the
        client went away): mitmproxy answers with its own error page, which holds no body of
        the API; the record says so."""
        ex = flow.metadata.get(KEY)
        if not isinstance(ex, Exchange) or ex.done or ex.principal is None:
            return
        msg = flow.error.msg if flow.error is not None else "error"
        d = ex.decision
        if not ex.begun or not isinstance(d, Allow):
            block = _refusal("bad_request", "the request could not be read")
            self._finish(flow, ex, block, outcome="refused", error=msg[:120])
            return
        cancelled = "disconnect" in msg.lower() or "client" in msg.lower()
        self._finish(flow, ex, d, outcome="cancelled" if cancelled else "error", error=msg[:120])

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        # Upgrades are refused before they reach the API; one that got through anyway is cut.
        flow.kill()

    # ------------------------------------------------------------------ records

    def _refuse(self, flow: http.HTTPFlow, ex: Exchange, r: RequestRefused) -> None:
        ex.answered = True
        flow.response = _json_error(r.status, r.decision.message)
        self._finish(flow, ex, r.decision)

    def _record(
        self, flow: http.HTTPFlow, ex: Exchange, d: Decision, *, event: str, **kw: Any
    ) -> StatementRecord:
        p = ex.principal
        assert p is not None and self.settings is not None
        peer = flow.client_conn.peername
        return StatementRecord(
            protocol=PROTOCOL,
            session=flow.client_conn.id[:8],
            user=p.user,
            role=p.role,
            client=f"{peer[0]}:{peer[1]}" if peer else "",
            database=self.settings.api or "",
            sql=ex.what or f"{flow.request.method} {flow.request.path}",
            decision=d,
            id=flow.id[:16],
            event=event,
            **kw,
        )

    def _finish(self, flow: http.HTTPFlow, ex: Exchange, d: Decision, **kw: Any) -> None:
        if ex.done or self.gate is None or ex.principal is None:
            return
        ex.done = True
        duration = time.perf_counter() - ex.started
        if isinstance(d, Block) and ex.begun:
            # Refused after the write-ahead record (a download the role may not take): an end
            # record, whose decision is the refusal so that metrics count it as one.
            kw.setdefault("outcome", "refused")
            rec = self._record(flow, ex, d, event="end", duration_s=duration, overhead_s=ex.overhead, **kw)
        elif isinstance(d, Block):
            rec = self._record(flow, ex, d, event="", duration_s=duration, overhead_s=ex.overhead)
        else:
            rec = self._record(flow, ex, d, event="end", duration_s=duration, overhead_s=ex.overhead, **kw)
        self.gate.record(rec)
