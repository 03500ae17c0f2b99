"""Owns masking of HTTP bodies by media type (JSON, NDJSON, CSV, text): bytes and a plan in, masked
UTF-8 bytes out. Pure: must not touch sockets, mitmproxy, headers, policy files or sqlglot.

What a person may see is decided elsewhere (policies/http.py fills a `BodyPlan`); this module
applies it to one buffered body, fail closed: a body that cannot be read as its type raises
`BodyError` (the caller answers 502 and never passes it on), and every body is re-serialised from
what was scanned, so bytes the scan did not read (a duplicate JSON key's first value, text after a
parser stopped) never reach the client.

- JSON: a value at a classified path is masked type-preserving by its class (strings by the class
  display rule, integers with hidden digits zeroed, floats as decimals with the fraction zeroed;
  booleans and nulls stay), `deny` becomes null; a classified object or array passes its class
  down to every leaf without a class of its own. Everything else goes through the detectors:
  strings, the decimal text of numbers (a hit keeps the number a number, its hidden digits
  zeroed) and object keys. Every array longer than `max_rows` is cut, and the body's records
  (`_Walker.obj`: objects carrying a classified or detected value) are bounded by it in total,
  in document order: a map keyed by id or groups of groups hold no more than a list would.
- NDJSON / JSON text sequences: each record is a JSON document; `max_rows` bounds the records.
- CSV: header names are classified like flat names; classified columns masked, detectors on
  every other cell (header and ragged cells too); rows past `max_rows` cut.
- Text: the detectors over the whole text, in pieces cut where no number can straddle the cut. A
  text that is a JSON object or array (an API that labels JSON text/plain, or not at all) is
  masked as JSON. Its records (lines, or rows of markup: `_units`) are bounded by `max_rows`.
- Documents inside values: a JSON string, a CSV cell or a percent-encoded or base64 value that
  holds a whole JSON object or array (under up to MAX_LAYERS encodings: JSON encoded twice, a
  form value, a cursor), and a JSON document inside a text (`_segments`: an event stream's data,
  a page's script state, JSONP), is walked where it stands as if it were written there: classified
  by the path through it, its records on the same body-wide `max_rows`, written back compact in
  the same encodings. One that cannot be read to count its records (nested or encoded too
  deeply, a text whose failed reads cost too much) refuses the body.
- Text, CSV and NDJSON whose decoded text holds control characters are bytes under a text label
  (a gzip file read as Latin-1): `BinaryBody`, which the caller treats as a binary type.

Every text value the detectors read (JSON strings and keys, CSV cells, text) is also read the way
a client decodes it: numbers hidden behind character references, percent-encoding, escapes or
inline markup, in base64/hex tokens, or behind unusual digit separators are masked in place
(encoded.py). A classified value gets its class's masker only,
as a classified SQL column does.

Output is always UTF-8 (`MaskedBody.content_type_charset`): the caller sets the response's
charset parameter to it on every masked text type.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote_plus

import masking
from masking.encoded import MAX_TAG, maybe_encoded, unhide, unhide_blobs, unhide_glued, unhide_joined
from proxy.services.disclosure import found_in
from proxy.services.gate import Disclosed, MaskerSource
from proxy.services.rows import mask_decimal_text


@dataclass(frozen=True)
class BodyPlan:
    """What one response's body goes through, from the decision and the policy's api."""

    field_class: Callable[[tuple[str | int, ...]], str | None]  # Api.field_class (or lambda p: None)
    name_class: Callable[[str], str | None]  # Api.name_class
    action_for: Callable[[str], str]  # Role.action_for
    detect: frozenset[str]  # classes detectors scan for
    max_rows: int | None
    # Where the values of classified fields and columns the person receives are noted for the
    # Gate's observers (ledger, canaries); None: nothing is noted.
    seen: list[Disclosed] | None = None


@dataclass(frozen=True)
class MaskedBody:
    body: bytes  # UTF-8
    masked: int  # values changed
    items: int  # records returned (else the longest top-level list / ndjson lines / csv rows)
    truncated: int  # number of items cut away in total (0: nothing cut)
    classes: frozenset[str]  # classes that were masked
    # The charset of `body`: always UTF-8, whatever the upstream used; the caller puts it in the
    # Content-Type of text types so the client decodes what was scanned.
    content_type_charset: str = "utf-8"


class BodyError(Exception):
    """The body cannot be read as its type: the caller answers 502, never passes it."""


class BinaryBody(BodyError):
    """A body labelled text whose decoded text holds control characters: bytes, whatever the label
    says. The caller applies the binary rule (403 unless the route allows binary); a caller that
    knows only BodyError still fails closed."""


KINDS = ("json", "ndjson", "csv", "text", "binary", "empty")

_NDJSON = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonl",
        "application/jsonlines",
        "application/x-jsonlines",
        "application/json-seq",
    }
)
_TEXT = frozenset(
    {
        "application/xml",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/x-www-form-urlencoded",
        "application/yaml",
        "application/x-yaml",
    }
)


def kind_of(content_type: str | None) -> str:
    """How a body of this Content-Type is masked: json | ndjson | csv | text | binary.

    Parameters (charset, boundary) do not change the kind. No content type at all is "text" (the
    caller decodes it as UTF-8, which fails closed on anything else); "empty" is never returned
    here, since emptiness is the body's, not the header's (mask_body passes empty bodies as they are).
    Types that cannot be scanned as text (octet-stream, PDF, spreadsheets, archives, images,
    audio, video, multipart, msgpack, protobuf, anything unknown) are "binary".
    """
    if content_type is None:
        return "text"
    mime = content_type.split(";", 1)[0].strip().lower()
    if not mime:
        return "text"
    if mime in ("application/json", "text/json") or mime.endswith("+json"):
        return "json"
    if mime in _NDJSON:
        return "ndjson"
    if mime in ("text/csv", "application/csv"):
        return "csv"
    if mime.startswith("text/") or mime in _TEXT:
        return "text"
    if mime.endswith("+xml") and not mime.startswith("image/"):
        return "text"  # atom, rss, soap; an SVG is an image like any other
    return "binary"


def mask_body(kind: str, raw: bytes, charset: str | None, plan: BodyPlan, src: MaskerSource) -> MaskedBody:
    """Mask one whole body of `kind` (kind_of's answer) read in `charset` (the Content-Type's
    parameter, None when absent). Raises BodyError for a body that cannot be read as its kind,
    for "binary" (never masked: the caller refuses or passes it by route) and unknown kinds."""
    if not raw:
        return MaskedBody(raw, 0, 0, 0, frozenset())
    w = _Walker(plan, src)
    try:
        if kind == "json":
            body, items = w.json_body(raw, charset)
        elif kind == "ndjson":
            body, items = w.ndjson_body(raw, charset)
        elif kind == "csv":
            body, items = w.csv_body(raw, charset)
        elif kind in ("text", "empty"):  # a body under "empty" is still scanned, never passed
            body, items = w.text_body(raw, charset)
        elif kind == "binary":
            raise BodyError("binary bodies are not masked")
        else:
            raise BodyError(f"unknown body kind {kind!r}")
    except (ValueError, RecursionError, csv.Error, LookupError) as exc:
        # JSONDecodeError, UnicodeError and int-size errors are ValueErrors; nothing of the
        # exception text (it may quote the body) goes further than this message.
        raise BodyError(f"the {kind} body cannot be read: {type(exc).__name__}") from None
    return MaskedBody(body, w.masked, items, w.truncated, frozenset(w.classes))


# ---------------------------------------------------------------------------------------- walker

_MISSING: Any = object()
# A record past max_rows: its container (array, map, NDJSON line) leaves it out.
_DROP: Any = object()
# Deeper documents are refused, not walked: a fixed bound instead of whatever recursion is left.
MAX_DEPTH = 256
# Text is scanned in pieces of about this size, cut where no detected span can straddle the cut
# (the text masker replaces a value longer than 256 KiB whole).
CHUNK = 64 * 1024
# Characters no encoded token holds (not `;`, which ends `&#49;`, nor braces: `\\u{31}`); a tag may hold
# them, so cuts are checked to be outside tags (`<` and `>` are part of a run: encoded.py).
_CUTS = ("\n", '"', ",")
# Characters carried over from the previous piece as context (context words before a card or
# passport, a surname before a name) and not emitted twice.
_CONTEXT = 24
_STARS_RE = re.compile(r"\*+")
# Every class a detector finds holds at least seven digits in a row or in groups (masking's digit
# gate): a smaller integer is not scanned.
_SHORTEST = 10**6
_CLEAN_MAX_CHARS = 64
_CLEAN_MAX = 8192
_DIGIT = "0123456789"


def _zeroed(masked: str, like: str) -> str | None:
    """`masked` (a number's text through the detectors) read back as a number's text: digits stay,
    every other character where `like` had a digit becomes 0. None when the lengths differ."""
    if len(masked) != len(like):
        return None
    return "".join(
        m if m in _DIGIT else ("0" if o in _DIGIT else o) for m, o in zip(masked, like, strict=True)
    )


class _Walker:
    """The state of masking one body: counters, the classes seen and per-body caches."""

    def __init__(self, plan: BodyPlan, src: MaskerSource) -> None:
        self.plan = plan
        self.src = src
        self.tm: Callable[[str], str] | None = src.text_masker(plan.detect) if plan.detect else None
        self.masked = 0
        self.truncated = 0
        self.records = 0  # records (objects, lines, rows carrying a classified or detected value) kept
        self.classes: set[str] = set()
        self._detectable = plan.detect & frozenset(masking.CLASSES)
        # List indexes appear as 0: field patterns name keys, `[]` and `**`, never one index, so
        # every element of a list is classified alike and is looked up once per body.
        self._paths: dict[tuple[str | int, ...], str | None] = {}
        self._acts: dict[str, tuple[str, Callable[[Any], Any] | None]] = {}
        # Short texts (keys, enums, dates) that scanned clean: lists repeat them item after item.
        self._clean: set[str] = set()
        # Naming the classes of detector hits costs a second scan: a few per body say enough.
        self._namings = 16

    # -- shared ------------------------------------------------------------------------------

    def _class_at(self, path: tuple[str | int, ...]) -> str | None:
        c = self._paths.get(path, _MISSING)
        if c is _MISSING:
            c = self._paths[path] = self.plan.field_class(path)
        return c  # type: ignore[no-any-return]

    def _act(self, cls: str) -> tuple[str, Callable[[Any], Any] | None]:
        """(action, masker) for a class; masker None for clear and deny."""
        a = self._acts.get(cls)
        if a is None:
            action = self.plan.action_for(cls)
            vm = None if action in ("clear", "deny") else self.src.value_masker(cls, action)
            a = self._acts[cls] = (action, vm)
        return a

    def scan(self, s: str) -> str:
        """The detectors over one text value (and over what its escapes hide)."""
        tm = self.tm
        if tm is None or s in self._clean:
            return s
        out = tm(s)
        if maybe_encoded(out):
            out = unhide(out, tm)
        out = unhide_joined(out, tm)
        out = unhide_blobs(out, tm)
        out = unhide_glued(out, tm)
        if out is not s and out != s:
            self.masked += max(1, len(_STARS_RE.findall(out)) - len(_STARS_RE.findall(s)))
            self._name_classes(s)
        elif len(s) <= _CLEAN_MAX_CHARS and len(self._clean) < _CLEAN_MAX:
            self._clean.add(s)
        return out

    def _hit(self, text: str) -> None:
        self.masked += 1
        self._name_classes(text)

    def _name_classes(self, text: str) -> None:
        """Which classes the detectors found: the guard's counting masker reports only
        "detected", so the classes are read once more, on hits only, until all are known."""
        if self._namings <= 0 or self._detectable <= self.classes:
            return
        self._namings -= 1
        found = {sp.cls for sp in masking.detect(text, self._detectable)} if len(text) <= 4096 else set()
        self.classes |= found or self._detectable

    def classified(self, v: Any, cls: str, action: str, vm: Callable[[Any], Any] | None) -> Any:
        """A value of a classified field or column, masked by its class, keeping its type."""
        t = type(v)
        if v is None or (t is bool and action != "deny"):
            return v
        if action == "deny":
            out = None
        elif t is float:
            out = None if action == "null" else self._classified_float(v, vm)  # type: ignore[arg-type]
        elif t is str or t is int:
            out = vm(v)  # type: ignore[misc]
        else:  # not reached with JSON values; never passed unmasked
            out = None
        if out is not v and (type(out) is not t or out != v):
            self.masked += 1
            self.classes.add(cls)
        return out

    @staticmethod
    def _classified_float(v: float, vm: Callable[[Any], Any]) -> float:
        if v != v or v in (float("inf"), float("-inf")):
            return v  # no digits to hide

        def as_int(i: int) -> int:
            out = vm(i)
            return 0 if out is None else int(out)

        return float(mask_decimal_text(_positional(v), as_int))

    # -- JSON --------------------------------------------------------------------------------

    def json_body(self, raw: bytes, charset: str | None) -> tuple[bytes, int]:
        return self.json_doc(json.loads(_json_source(raw, charset)))

    def json_doc(self, doc: Any) -> tuple[bytes, int]:
        out = self.node(doc, (), None)
        if out is _DROP:  # only with max_rows 0
            self.truncated += 1
            out = None
        if self.records:
            items = self.records
        elif type(out) is list:
            items = len(out)
        elif type(out) is dict:
            items = max((len(v) for v in out.values() if type(v) is list), default=1)
        else:
            items = 1
        return _dump(out).encode("utf-8"), items

    def ndjson_body(self, raw: bytes, charset: str | None) -> tuple[bytes, int]:
        text = _decode(raw, charset)
        _refuse_binary(text, "\x1e")
        if text.startswith("\ufeff"):
            text = text[1:]
        # JSON text sequences (RFC 7464) start each record with RS; neither RS nor a newline can
        # occur inside a JSON document, so both end a record. A line is a record, and the records
        # inside it (a line's array, or a document held in one of its strings) share the budget.
        seq = "\x1e" in text
        records = text.replace("\x1e", "\n").split("\n")
        limit = self.plan.max_rows
        out: list[str] = []
        for rec in records:
            if not rec.strip():
                continue
            if limit is not None and len(out) >= limit:
                self.truncated += 1
                continue
            doc = self.node(json.loads(rec), (), None)
            if doc is _DROP:
                self.truncated += 1
                continue
            out.append(_dump(doc))
        lead = "\x1e" if seq else ""
        body = "".join(lead + r + "\n" for r in out)
        return body.encode("utf-8"), max(len(out), self.records)

    def node(self, v: Any, path: tuple[str | int, ...], cls: str | None, part: bool = False) -> Any:
        """One JSON value at `path` (indexes as 0) whose effective class is `cls`; `part`: an object
        that belongs to the record holding it (not a record of its own). `_DROP` for a record past
        `max_rows`: the container leaves it out."""
        t = type(v)
        if t is dict:
            return self.obj(v, path, cls, part)
        if t is list:
            return self.arr(v, path, cls)
        if t is _Doc:
            return self.embedded(v, path, cls, part)
        if t is str and v[:1] in _FIRST and _starts_doc(v):
            doc = _embedded(v)
            if doc is not None:
                return self.embedded(doc, path, cls, part)
        if cls is not None:
            action, vm = self._act(cls)
            seen = self.plan.seen
            if seen is not None and (t is str or t is int) and action not in ("deny", "null"):
                seen.append(Disclosed(cls, "", str(v), action == "clear"))
            if action != "clear":
                return self.classified(v, cls, action, vm)
        if t is str:
            return self.scan(v)
        if t is int:
            return self.scan_int(v)
        if t is float:
            return self.scan_float(v)
        return v  # bool, None

    def obj(
        self, d: dict[str, Any], path: tuple[str | int, ...], inherited: str | None, part: bool = False
    ) -> Any:
        """An object, masked; `_DROP` when it is a record past `max_rows`.

        An object is a record when one of its own values (a scalar, or a list of scalars) is
        classified or was changed by the detectors. Records count towards `max_rows` in document
        order, wherever they are: array elements, map entries (a map keyed by id), groups of
        groups. A record's own sub-objects (`contact: {phone}`) are parts of it and do not count
        again; collections inside it (arrays, maps that are not records themselves) do. An entry
        whose key the detectors changed (a map keyed by mobile number) is a record on its own.
        Scalars are masked first, so that a record past the limit costs no walk of its children."""
        if len(path) >= MAX_DEPTH:
            raise BodyError("the document is nested too deeply")
        paths = self._paths
        clean = self._clean
        scan = self.scan
        carries = False
        entries: list[tuple[str, str, tuple[str | int, ...], str | None, Any, bool]] = []
        for k, v in d.items():
            p = (*path, k)
            own = paths.get(p, _MISSING)
            if own is _MISSING:
                own = paths[p] = self.plan.field_class(p)
            cls = own if own is not None else inherited
            k2 = k if k in clean else scan(k)
            t = type(v)
            if t is dict or (t is list and _nested(v)):
                entries.append((k, k2, p, cls, v, True))  # walked once this object is counted
                continue
            if t is str and v[:1] in _FIRST and _starts_doc(v):
                doc = _embedded(v)
                if doc is not None:  # a document in a string: walked as if it stood there
                    if type(doc.doc) is dict or _nested(doc.doc):
                        entries.append((k, k2, p, cls, doc, True))
                        continue
                    # A list of scalars is the object's own value, as it would be written inline.
                    before = self.masked
                    v2 = self.embedded(doc, p, cls, False)
                    if not carries and (cls is not None or self.masked != before):
                        carries = True
                    entries.append((k, k2, p, cls, v2, False))
                    continue
            # The common leaf, an unclassified string, without the dispatch (the per-item hot path).
            v2 = scan(v) if cls is None and t is str else self.node(v, p, cls)
            if not carries and v is not None and (cls is not None or (v2 is not v and v2 != v)):
                carries = True
            entries.append((k, k2, p, cls, v2, False))
        limit = self.plan.max_rows
        if carries and not part:
            if limit is not None and self.records >= limit:
                return _DROP
            self.records += 1
        out: dict[str, Any] = {}
        for k, k2, p, cls, v, pending in entries:
            entry_part = carries  # a record's own sub-objects are parts of it
            if k2 != k:
                if limit is not None and self.records >= limit:
                    self.truncated += 1
                    continue
                self.records += 1
                entry_part = True
            if pending:
                v = self.node(v, p, cls, entry_part)
                if v is _DROP:
                    self.truncated += 1
                    continue
            if k2 in out:
                # Two keys that mask alike (or a masked key meeting a clear one): keep both.
                n = 2
                while f"{k2}#{n}" in out:
                    n += 1
                k2 = f"{k2}#{n}"
            out[k2] = v
        return out

    def embedded(self, doc: _Doc, path: tuple[str | int, ...], cls: str | None, part: bool) -> Any:
        """A JSON document held in a string (`{"payload": "[{\\"mobile\\": …}]"}`), walked where the
        string stands, as if it were written there: its paths continue the string's, its class is
        the string's, its records count against the same `max_rows` as the body's own. The string
        is re-serialised from what was walked (compact), or `_DROP` when the document itself is a
        record past the limit."""
        out = self.node(doc.doc, path, cls, part)
        if out is _DROP:
            return out
        # Escaped as a page's script state is (`<\/script>` decodes to `</script>`): written back
        # into markup, a script or an attribute, it never becomes markup or ends a string there.
        text = _dump(out).translate(_IN_TEXT)
        # The detectors read the document's text too, as they read the whole string before: a key
        # is the context word some classes need (`"passport":"E12345678"`), and values read alone
        # lose it.
        scanned = self._scan_text(text)
        if scanned is not text and scanned != text:
            text = _as_json(scanned)
        for layer in doc.layers:  # encoded again as it was, innermost first
            text = _encode_layer(text, layer)
        return text

    def arr(self, a: list[Any], path: tuple[str | int, ...], inherited: str | None) -> list[Any]:
        if len(path) >= MAX_DEPTH:
            raise BodyError("the document is nested too deeply")
        limit = self.plan.max_rows
        if limit is not None and len(a) > limit:
            self.truncated += len(a) - limit
            a = a[:limit]
        p = (*path, 0)
        own = self._class_at(p)
        cls = own if own is not None else inherited
        node = self.node
        out = []
        for v in a:
            v2 = node(v, p, cls)  # elements are members of a collection, never parts
            if v2 is _DROP:
                self.truncated += 1
                continue
            out.append(v2)
        return out

    def scan_int(self, v: int) -> int:
        tm = self.tm
        if tm is None:
            return v
        if -_SHORTEST < v < _SHORTEST:
            return v
        digits = str(-v if v < 0 else v)
        out = unhide_glued(tm(digits), tm)  # a phone with digits glued on is a number too
        if out is digits or out == digits:
            return v
        self._hit(digits)
        z = _zeroed(out, digits)
        masked = int(z) if z is not None else 0
        return -masked if v < 0 else masked

    def scan_float(self, v: float) -> float:
        """A float's digits as a reader sees them, leading zeros and a trailing `.0` aside: its
        value (13812345678.0), its mantissa (1.3812345678e+20) or across the point (1381234.5678)."""
        tm = self.tm
        if tm is None or v != v or v in (float("inf"), float("-inf")):
            return v
        neg = v < 0
        r = repr(-v if neg else v)
        mant, e, exp = r.partition("e")
        body = mant[:-2] if mant.endswith(".0") else mant
        at = [i for i, c in enumerate(body) if c in _DIGIT]
        while at and body[at[0]] == "0":
            at.pop(0)
        if len(at) < 7:  # see _SHORTEST
            return v
        digits = "".join(body[i] for i in at)
        out = tm(digits)
        if out is digits or out == digits:
            return v
        self._hit(digits)
        z = _zeroed(out, digits) or "0" * len(digits)
        chars = list(mant)
        for i, d in zip(at, z, strict=True):
            chars[i] = d
        masked = float("".join(chars) + e + exp)
        return -masked if neg else masked

    # -- CSV ---------------------------------------------------------------------------------

    def csv_body(self, raw: bytes, charset: str | None) -> tuple[bytes, int]:
        text = _decode(raw, charset)
        _refuse_binary(text)
        bom = text.startswith("\ufeff")
        if bom:
            text = text[1:]  # else the first header name would not be classified
        first = text[: text.find("\n")] if "\n" in text else text
        dialect: type[csv.Dialect] = csv.excel
        if "," not in first and "\t" in first:
            dialect = csv.excel_tab
        elif "," not in first and ";" in first:
            dialect = _ExcelSemicolon
        crlf = first.endswith("\r") or "\n" not in text
        term = "\r\n" if crlf else "\n"
        reader = csv.reader(io.StringIO(text, newline=""), dialect, strict=True)
        buf = io.StringIO(newline="")
        writer = csv.writer(buf, dialect, lineterminator=term)
        limit = self.plan.max_rows
        cols: list[tuple[str, str, Callable[[Any], Any] | None] | None] | None = None
        seen = self.plan.seen
        noted: list[tuple[int, str, bool]] = []  # observed columns: (index, class, sent clear)
        names: list[str] = []
        for row in reader:
            if cols is None:
                cols = [self._column(h) for h in row]
                names = [h.strip() for h in row]
                if seen is not None:
                    for i, h in enumerate(row):
                        cls = self.plan.name_class(h.strip())
                        action = self._act(cls)[0] if cls is not None else "clear"
                        if cls is not None and action not in ("deny", "null"):
                            noted.append((i, cls, cols[i] is None))
                writer.writerow([self.scan(h) for h in row])
                continue
            # A row is a record; records in documents its cells hold count against the same budget.
            if limit is not None and self.records >= limit:
                self.truncated += 1
                continue
            self.records += 1
            for i, cls, clear in noted:
                if i < len(row) and row[i]:
                    seen.append(Disclosed(cls, "", row[i], clear))  # type: ignore[union-attr]
            out = []
            for i, cell in enumerate(row):
                col = cols[i] if i < len(cols) else None
                doc = _embedded(cell) if _starts_doc(cell) else None
                if doc is not None:
                    name = names[i] if i < len(names) else ""
                    # Walked as the row's own part (the row is counted already), by its column's class.
                    out.append(self.embedded(doc, (name,), self.plan.name_class(name), True))
                elif col is None:
                    out.append(self.scan(cell))
                else:
                    v = self.classified(cell, *col)
                    out.append("" if v is None else str(v))
            writer.writerow(out)
        body = buf.getvalue()
        if not text.endswith(("\n", "\r")) and body.endswith(term):
            body = body[: -len(term)]
        return (("\ufeff" if bom else "") + body).encode("utf-8"), self.records

    def _column(self, name: str) -> tuple[str, str, Callable[[Any], Any] | None] | None:
        """(class, action, masker) of a classified column the role does not see clear, else None."""
        cls = self.plan.name_class(name.strip())
        if cls is None:
            return None
        action, vm = self._act(cls)
        return None if action == "clear" else (cls, action, vm)

    # -- text --------------------------------------------------------------------------------

    def text_body(self, raw: bytes, charset: str | None) -> tuple[bytes, int]:
        text = _decode(raw, charset)
        _refuse_binary(text)
        doc = _json_or_none(text)
        if doc is not None:
            # JSON served as text/plain (or with no type): its classified fields are masked as
            # fields, since a name or an address has no detector to catch it as text.
            return self.json_doc(doc)
        markup = _is_markup(text)
        out: list[str] = []
        for part, doc in _segments(text):
            if doc is None:
                out.append(self._bound_units(part, self._scan_text(part), markup))
                continue
            # A JSON document inside the text (an event stream's `data:` line, a page's script
            # state, JSONP, a log line): walked as a body of its own, its records on the same budget.
            records, masked = self.records, self.masked
            v = self.embedded(doc, (), None, False)
            if v is not _DROP and self.records == records and self.masked != masked:
                # Changed but no record of its own (a list of numbers): one, as a line would be.
                limit = self.plan.max_rows
                if limit is not None and self.records >= limit:
                    v = _DROP
                else:
                    self.records += 1
            if v is _DROP:
                self.truncated += 1
                continue
            out.append(v)
        return "".join(out).encode("utf-8"), self.records

    def _scan_text(self, text: str) -> str:
        if len(text) <= CHUNK:
            return self.scan(text)
        out: list[str] = []
        context = ""
        for piece in _pieces(text):
            if context:
                m = self.scan(context + piece)
                # The context was masked already; when its masked form comes back unchanged the
                # rest is this piece, else the piece is scanned without it.
                m = m[len(context) :] if m.startswith(context) else self.scan(piece)
            else:
                m = self.scan(piece)
            out.append(m)
            context = m[-_CONTEXT:]
        return "".join(out)

    def _bound_units(self, text: str, masked: str, markup: bool) -> str:
        """`masked` with the records past `max_rows` left out. A text's records are its units
        (lines; in markup, elements that close a row: `_units`) that the detectors changed."""
        limit = self.plan.max_rows
        if masked is text or limit is None:
            return masked
        before, after = _units(text, markup), _units(masked, markup)
        if len(before) == len(after):
            hits = [a != b for a, b in zip(after, before, strict=True)]
        else:
            # A masker that changes lengths dropped a tag the units are cut at: every unit that
            # still holds a digit counts (fail closed: more cut, never less).
            hits = [any(c.isdigit() for c in a) for a in after]
        kept: list[str] = []
        for unit, hit in zip(after, hits, strict=True):
            if hit:
                if self.records >= limit:
                    self.truncated += 1
                    continue
                self.records += 1
            kept.append(unit)
        return "".join(kept)


class _Doc:
    """A JSON object or array parsed out of a string, waiting to be walked where the string stood.
    `layers`: the encodings the string wrapped it in, innermost first: "json" (a JSON string holding
    the document's text: doubly-encoded JSON), "pct" (percent-encoded: a form or query value), or
    base64 (an opaque cursor or token): "b64" or "b64url", with "=" when it was padded."""

    __slots__ = ("doc", "layers")

    def __init__(self, doc: Any, layers: tuple[str, ...] = ()) -> None:
        self.doc = doc
        self.layers = layers


_WS = " \t\r\n\ufeff"
_STARTS = ("{", "[", '"')
# After `%`: `{` or `[` percent-encoded, or `%` itself (percent-encoded twice).
_PCT_STARTS = frozenset({"7B", "7b", "5B", "5b", "25"})
# Base64 of `{"`, `[{`, `["`, `[[`: a cursor or token that is a document.
_B64_STARTS = frozenset({"eyJ", "W3s", "WyJ", "W1s"})
_B64_RE = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
# More encodings around one document than any API writes: refused (each percent-decoding may
# shorten a string by two characters only, so unbounded decoding would cost quadratic time).
MAX_LAYERS = 8
# Characters only JSON strings hold, that end or start something in markup or JavaScript.
_IN_TEXT = str.maketrans({c: f"\\u{ord(c):04x}" for c in "<>&'\u2028\u2029"})


# The first characters of every string _starts_doc accepts (a set lookup before the call: the hot path).
_FIRST = frozenset('{["%eW' + _WS)


def _starts_doc(s: str) -> bool:
    """Cheap gate: could `s` be a JSON object or array, a JSON string holding one, or one
    percent-encoded or in base64?"""
    c = s[:1]
    if c in _STARTS:
        return True
    if c == "%":
        return s[1:3] in _PCT_STARTS
    if s[:3] in _B64_STARTS:
        return True
    if not c or c not in _WS:
        return False
    t = s.lstrip(_WS)
    return t[:1] in _STARTS or (t[:1] == "%" and t[1:3] in _PCT_STARTS) or t[:3] in _B64_STARTS


def _embedded(s: str, depth: int = 0) -> _Doc | None:
    """The JSON object or array a string holds whole (what a client's `JSON.parse` gives), also
    inside JSON strings, percent-encoding and base64 around it (`_Doc.layers`); else None. A
    document nested too deeply to parse raises RecursionError, one under more than MAX_LAYERS
    encodings BodyError: the body is refused, since its records could not be counted."""
    if depth > MAX_LAYERS:
        raise BodyError("a value is encoded too many times")
    t = s.strip(_WS)
    layer = "pct" if t[:1] == "%" else "json" if t[:1] in _STARTS else _b64_layer(t)
    if layer == "json" and not _json_shaped(t):
        return None
    try:
        if layer == "json":
            doc = json.loads(t)
        elif layer == "pct":
            doc = unquote_plus(t, errors="strict")
        elif layer:
            std = t.rstrip("=").replace("-", "+").replace("_", "/")
            doc = base64.b64decode(std + "=" * (-len(std) % 4), validate=True).decode("utf-8")
        else:
            return None
    except (ValueError, binascii.Error):  # UnicodeDecodeError too
        return None
    if type(doc) is dict or type(doc) is list:
        return _Doc(doc)
    if type(doc) is not str or not _starts_doc(doc):
        return None
    inner = _embedded(doc, depth + 1)
    return None if inner is None else _Doc(inner.doc, (*inner.layers, layer))


def _as_json(masked: str) -> str:
    """A document's text after the text detectors, still JSON where it can be: a number they
    masked (`130****0000`, its hidden digits were zeros, or one found by a key's context) has its
    hidden digits zeroed, as masked numbers are. Else the masked text as it is: no longer JSON,
    but nothing of it shows (a value too long to scan is hidden whole, as the string was)."""
    for candidate in (masked, _STARS_OUTSIDE_STRINGS_RE.sub(_zero_stars, masked)):
        try:
            json.loads(candidate)
        except ValueError:
            continue
        return candidate
    return masked


_STARS_OUTSIDE_STRINGS_RE = re.compile(r'("(?:[^"\\]|\\.)*")|\*')


def _zero_stars(m: re.Match[str]) -> str:
    return m.group(1) or "0"


def _json_shaped(t: str) -> bool:
    """Cheap refusal of most text that starts like JSON without being it (`[INFO] …`, `[x]`,
    `"quoted" text`), before the decoder's error (which costs a line count) is paid."""
    first, last = t[:1], t[-1:]
    if first == '"':
        return last == '"' and len(t) > 1
    if first == "{":
        return last == "}" and t[1:].lstrip(_WS)[:1] in ('"', "}")
    return last == "]" and t[1:].lstrip(_WS)[:1] in _ARRAY_NEXT


# What may follow `[` in a JSON array: a value (string, object, array, number, true/false/null,
# Python's NaN and Infinity) or `]`.
_ARRAY_NEXT = frozenset('"{[]-0123456789tfnNI')


def _b64_layer(t: str) -> str:
    """The base64 layer a token is ("b64", "b64url", "=" appended when padded), or "" when it is
    not one token of one alphabet."""
    if _B64_RE.fullmatch(t) is None:
        return ""
    url = "-" in t or "_" in t
    if url and ("+" in t or "/" in t):
        return ""
    return ("b64url" if url else "b64") + ("=" if t.endswith("=") else "")


def _encode_layer(text: str, layer: str) -> str:
    if layer == "json":
        return _dump(text)
    if layer == "pct":
        return quote(text, safe="")  # %20: a space to form parsers and decodeURIComponent alike
    raw = text.encode("utf-8")
    out = (base64.urlsafe_b64encode(raw) if layer.startswith("b64url") else base64.b64encode(raw)).decode()
    return out if layer.endswith("=") else out.rstrip("=")


def _nested(a: list[Any]) -> bool:
    """Whether a list holds containers (or strings holding JSON documents, which it then holds as
    `_Doc`s, so that each is parsed once): its elements may be records, counted in document order
    once the object holding the list is."""
    nested = False
    for i, x in enumerate(a):
        t = type(x)
        if t is dict or t is list or t is _Doc:
            nested = True
        elif t is str and x[:1] in _FIRST and _starts_doc(x):
            doc = _embedded(x)
            if doc is not None:
                a[i] = doc  # the walker's own parsed copy of the body
                nested = True
    return nested


def _is_markup(text: str) -> bool:
    return text.lstrip(_WS).startswith("<")


# Where a JSON document may start inside a text: an object with a key, or an array of objects,
# arrays or strings. A bare `{` or `[` is prose, code or markup far more often.
_DOC_START_RE = re.compile(
    r'\{\s*"|\[\s*[{\["]|(?P<pct>(?<![^\s&=?;"(,])%(?:7[Bb]|5[Bb]|25))'
    r"|(?P<b64>(?<![A-Za-z0-9+/_=-])(?:eyJ|W3s|WyJ|W1s)[A-Za-z0-9+/_-]*={0,2})(?![A-Za-z0-9+/_=-])"
)
# A form or query value (what encodeURIComponent and form encoders leave unescaped).
_PCT_VALUE_RE = re.compile(r"[A-Za-z0-9%._~!*()+-]+")
# Failed attempts to read a document may cost this many characters per character of text (plus a
# fixed allowance), each at least _FAILED_READ_MIN; a text that costs more is refused rather than
# read in quadratic time.
_FAILED_READ_FACTOR = 4
_FAILED_READ_FIXED = 64 * 1024
_FAILED_READ_MIN = 32
# A document is read in a window of the text that grows while the decoder stops at its end: the
# decoder's error costs as much as the text before it, so it never reads the whole rest of a long
# text from each place that merely looks like a start.
_WINDOW = 256
# Errors of a decoder stopped by the window's end rather than by the text: it ended inside a string
# (an unterminated string is reported where the string starts) or within an escape of the end.
_WINDOW_SLACK = 12
_DECODER = json.JSONDecoder()


def _segments(text: str) -> list[tuple[str, _Doc | None]]:
    """`text` cut into (text, None) stretches and (source, document) JSON objects and arrays it
    holds, in order, also as whole percent-encoded form or query values. Left to right, each place
    that may start a document is read with the JSON decoder; a document found is skipped whole
    (the documents inside it are its own). Raises RecursionError (the body is refused) for a
    document too deep to read, and BodyError for a text whose failed reads cost too much to go on:
    the documents after it could not be found."""
    m = _DOC_START_RE.search(text)
    if m is None:
        return [(text, None)]
    out: list[tuple[str, _Doc | None]] = []
    budget = _FAILED_READ_FACTOR * len(text) + _FAILED_READ_FIXED
    at = 0  # text[:at] is in `out`
    while m is not None:
        start = m.start()
        found: tuple[_Doc, int] | None
        if m.group("pct") is not None or m.group("b64") is not None:
            # A value is whole or nothing: a failed one is passed over, not read again inside.
            end = m.end() if m.group("b64") else _PCT_VALUE_RE.match(text, start).end()  # type: ignore[union-attr]
            held = _embedded(text[start:end])
            found, cost, resume = (None, end - start, end) if held is None else ((held, end), 0, end)
        else:
            read, cost = _read_doc(text, start)
            found = None if read is None else (_Doc(read[0]), read[1])
            resume = start + 1
        if found is None:
            budget -= max(_FAILED_READ_MIN, cost)
            if budget < 0:
                raise BodyError("the text holds too many unreadable documents")
            m = _DOC_START_RE.search(text, resume)
            continue
        doc, end = found
        if start > at:
            out.append((text[at:start], None))
        out.append((text[start:end], doc))
        at = end
        m = _DOC_START_RE.search(text, end)
    if at < len(text):
        out.append((text[at:], None))
    return out


def _read_doc(text: str, start: int) -> tuple[tuple[Any, int] | None, int]:
    """((document, end) or None, characters read) for the JSON document at `start`."""
    n = len(text)
    size = _WINDOW
    cost = 0
    while True:
        stop = min(n, start + size)
        piece = text[start:stop]
        try:
            doc, end = _DECODER.raw_decode(piece)
        except json.JSONDecodeError as e:
            if stop < n and (e.pos >= len(piece) - _WINDOW_SLACK or e.msg.startswith("Unterminated")):
                cost += len(piece)
                size *= 4
                continue
            return None, cost + e.pos
        return (doc, start + end), cost


def _units(text: str, markup: bool | None = None) -> list[str]:
    """`text` cut into the units that make one record each: lines, or in markup (a text that
    starts with `<`, or a part of one: `markup`) elements ended by a row or block closing tag
    (`</tr>`, `</li>`, `<br>`) or by a closing tag right after another (`</mobile></client>`: the
    end of an element of elements)."""
    if markup is None:
        markup = _is_markup(text)
    ends: list[int] = []
    if not markup:
        ends = [m.end() for m in _LINE_END_RE.finditer(text)]
    else:
        prev = -1  # where the previous closing tag ended
        for m in _CLOSE_RE.finditer(text):
            name = (m.group(1) or "").lower()
            if m.group(1) is None or name in _BLOCKS or (prev >= 0 and not text[prev : m.start()].strip()):
                ends.append(m.end())
            if m.group(1) is not None:
                prev = m.end()
    units = []
    at = 0
    for e in ends:
        units.append(text[at:e])
        at = e
    if at < len(text):
        units.append(text[at:])
    return units


_LINE_END_RE = re.compile(r"\r\n|\n|\r")
_CLOSE_RE = re.compile(r"</([A-Za-z][\w:.-]*)\s*>|<br\s*/?>", re.IGNORECASE)
# HTML elements whose end ends a row of text.
_BLOCKS = frozenset(
    {"tr", "li", "p", "div", "dd", "dt", "option", "article", "section", "pre", "h1", "h2", "h3", "h4"}
    | {"h5", "h6", "blockquote", "address", "figure", "details", "summary", "caption"}
)
# Control characters no text holds (other than tab, line feed, form feed, carriage return): a body
# with one is bytes under a text label (a gzip file read as Latin-1 decodes byte for byte).
_BINARY_RE = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")
# C1 controls and replacement characters: a few occur in mislabelled text, many only in bytes.
_C1_RE = re.compile("[\x80-\x9f\ufffd]")


def _refuse_binary(text: str, allowed: str = "") -> None:
    """Raise BinaryBody when decoded text holds what only bytes hold (`allowed`: controls the
    format itself uses, RS in JSON text sequences)."""
    for m in _BINARY_RE.finditer(text):
        if m.group() not in allowed:
            raise BinaryBody("the text holds control characters")
    c1 = len(_C1_RE.findall(text))
    if c1 >= 4 and c1 * 20 > len(text):
        raise BinaryBody("the text holds control characters")


class _ExcelSemicolon(csv.excel):
    delimiter = ";"


def _pieces(text: str) -> list[str]:
    """`text` cut into pieces of about CHUNK characters, each cut just after a character no
    detected span and no encoded run contains (a newline by preference), and never inside
    something that may be a markup tag (tags join the digits around them: encoded.py). A stretch
    without such a place stays whole (and a piece longer than the text masker scans is masked
    whole by it: fail closed)."""
    pieces = []
    i, n = 0, len(text)
    while n - i > CHUNK:
        cut = _cut(text, i, i + CHUNK, ("\n",)) or _cut(text, i, i + CHUNK, _CUTS)
        if cut is None:
            later = [j for j in (text.find(c, i + CHUNK) for c in _CUTS) if j >= 0 and _outside_tag(text, j)]
            cut = min(later) if later else n - 1
        pieces.append(text[i : cut + 1])
        i = cut + 1
    if i < n:
        pieces.append(text[i:])
    return pieces


def _cut(text: str, lo: int, hi: int, chars: tuple[str, ...]) -> int | None:
    """The last position in [lo, hi) of one of `chars` outside any possible tag (a few tries)."""
    for _ in range(64):
        at = max(text.rfind(c, lo, hi) for c in chars)
        if at < lo:
            return None
        if _outside_tag(text, at):
            return at
        hi = at
    return None


def _outside_tag(text: str, at: int) -> bool:
    lo = max(0, at - MAX_TAG - 2)
    return text.rfind("<", lo, at + 1) <= text.rfind(">", lo, at + 1)


def _positional(v: float) -> str:
    """A non-negative finite float's decimal text without an exponent (what a reader's number is)."""
    r = repr(v)
    return format(Decimal(r), "f") if "e" in r else r


def _codec(charset: str) -> str:
    name = charset.strip().strip("\"'")
    return codecs.lookup(name).name  # LookupError for an unknown charset: BodyError


def _decode(raw: bytes, charset: str | None) -> str:
    """Bytes as text in the declared charset (UTF-8 when none); strict: undecodable is an error."""
    return raw.decode(_codec(charset) if charset else "utf-8")


def _json_source(raw: bytes, charset: str | None) -> bytes | str:
    """What json.loads reads: the bytes themselves for the UTF encodings RFC 8259 allows (it detects
    UTF-8/16/32 and a BOM), text decoded in any other declared charset."""
    if charset is None or _codec(charset).startswith(("utf-8", "utf-16", "utf-32")):
        return raw
    text = _decode(raw, charset)
    return text[1:] if text.startswith("\ufeff") else text


def _json_or_none(text: str) -> Any:
    """The JSON object or array `text` holds, or None when it is not one."""
    start = text.lstrip(" \t\r\n\ufeff")[:1]
    if start not in ("{", "["):
        return None
    try:
        doc = json.loads(text.lstrip("\ufeff"))
    except (ValueError, RecursionError):
        return None
    return doc if type(doc) in (dict, list) else None


def _dump(doc: Any) -> str:
    s = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (from a \ud800 escape) only fits escaped
        s = json.dumps(doc, ensure_ascii=True, separators=(",", ":"))
    return s


def numbers_in(body: bytes, charset: str | None, head: str = "") -> list[Disclosed]:
    """The numbers a body (and head) as sent holds, read as a client would read them (through
    references, escapes, markup and blobs: heads.text_scanner), each once, for the observers."""
    try:
        text = body.decode(charset or "utf-8", "replace")
    except LookupError:
        text = body.decode("utf-8", "replace")
    found = dict.fromkeys(found_in(text))
    if head:
        found.update(dict.fromkeys(found_in(head)))
    return [Disclosed(cls, "", value, True) for cls, value in found]
