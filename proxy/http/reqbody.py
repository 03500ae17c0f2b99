"""Request bodies: what policies/http.py decides on, and the bytes forwarded, rebuilt from it.

Owns reading a request body (already decoded from its Content-Encoding) of any content type into
a parsed JSON document, `FormBody` pairs or a `TextBody`, and the body sent upstream in its place.
Knows no mitmproxy type and must not touch sockets or mask responses (proxy/http/bodies.py).

APIs read bodies more loosely than their Content-Type says (aiohttp's and Starlette's
`request.json()`, Flask's `get_json(force=True)` parse JSON under text/plain or none), so a body
that parses as JSON is checked as JSON whatever its type, and forwarded re-serialised from the
parsed document: duplicate keys collapse to the last one, the upstream reads nothing maskgate did
not check (every duplicate was checked too). A form body is forwarded re-encoded from its pairs
(duplicates kept). Anything else is forwarded unchanged and checked as text.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from policies.http import FormBody, JsonObject, TextBody

FORM = "application/x-www-form-urlencoded"
_MAX_FIELDS = 10_000


class BodyRefused(Exception):
    """The body cannot be read safely: answered 400 (`bad_request`) with this message."""


class BodyTooLarge(Exception):
    """The body decodes to more than the limit: answered 413."""


def decode(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body without its Content-Encoding, refused (BodyTooLarge) past `limit` bytes while
    decoding: a 200 KB gzip body inflates to 200 MB, which must not be held to be checked.

    Only gzip and deflate are read (zlib stops at a given output size); br and zstd request
    bodies, and stacked encodings, are refused (BodyRefused): clients hardly send them and their
    decoders here cannot stop at a size."""
    enc = (content_encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        if len(raw) > limit:
            raise BodyTooLarge
        return raw
    if enc in ("gzip", "x-gzip"):
        return _inflate(raw, 16 + zlib.MAX_WBITS, limit)
    if enc == "deflate":
        try:
            return _inflate(raw, zlib.MAX_WBITS, limit)
        except BodyRefused:  # deflate as many clients send it: raw, without the zlib wrapper
            return _inflate(raw, -zlib.MAX_WBITS, limit)
    raise BodyRefused(f"request bodies in content encoding {enc[:20]!r} are not accepted")


def _inflate(raw: bytes, wbits: int, limit: int) -> bytes:
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(raw, limit + 1)
    except zlib.error:
        raise BodyRefused("the request body's content encoding is invalid") from None
    if len(out) > limit or d.unconsumed_tail:
        raise BodyTooLarge
    if not d.eof or d.unused_data:
        raise BodyRefused("the request body's content encoding is invalid")
    return out


@dataclass(frozen=True)
class RequestBody:
    """What the decision reads (`decided`) and what goes upstream (`forward`; None: unchanged)."""

    decided: object
    forward: bytes | None = None


def _is_json_type(base: str) -> bool:
    return base == "application/json" or base.endswith("+json")


def _reject_constant(name: str) -> object:
    # NaN and Infinity are not JSON; parsers differ on them, so nobody gets to read them.
    raise ValueError(f"{name} is not JSON")


def read(raw: bytes, content_type: str | None) -> RequestBody | None:
    """`raw` (never empty) read for the decision. A body that is neither JSON, a form nor UTF-8
    text is read as latin-1 text, marked unreadable when it holds NUL bytes (UTF-16 text or
    binary data hide numbers from a text scan): the decision refuses it for roles whose
    predicates matter."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    if base == FORM:
        try:
            pairs = parse_qsl(
                raw.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=_MAX_FIELDS
            )
        except (UnicodeDecodeError, ValueError):
            raise BodyRefused("the form body is not valid") from None
        return RequestBody(FormBody(tuple(pairs)), urlencode(pairs).encode("ascii"))
    doc, encoding = _json(raw)
    if encoding is not None:
        return RequestBody(doc, _serialise(doc, encoding))
    if _is_json_type(base):
        raise BodyRefused("the request body is not valid JSON")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return RequestBody(TextBody(raw.decode("latin-1"), readable=b"\x00" not in raw))
    return RequestBody(TextBody(text))


def _json(raw: bytes) -> tuple[object, str | None]:
    """The parsed document and the encoding it was written in, or (None, None)."""
    head = raw.lstrip()[:1]
    if not head:
        return None, None
    try:
        encoding = json.detect_encoding(raw)
        text = raw.decode(encoding)
        doc = json.loads(text, object_pairs_hook=JsonObject.from_pairs, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError):
        return None, None
    except RecursionError:
        raise BodyRefused("the request body is nested too deeply") from None
    return doc, encoding


def _serialise(doc: object, encoding: str) -> bytes:
    try:
        return json.dumps(doc, ensure_ascii=False, allow_nan=False).encode(encoding)
    except UnicodeEncodeError:  # a lone surrogate (`"\ud800"`): keep it escaped, as it came
        return json.dumps(doc, ensure_ascii=True, allow_nan=False).encode(encoding)
    except (ValueError, RecursionError):
        raise BodyRefused("the request body cannot be forwarded as JSON") from None
