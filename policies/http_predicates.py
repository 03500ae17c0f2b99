"""HTTP request predicates: which classified fields a request filters, sorts or looks up by.

Owns reading a request's query, path and body (a parsed JSON document, form pairs or text) for
predicates on classified fields, and the body types the decision takes. Pure: no sockets, no
mitmproxy, no policy files; decide_request (policies/http.py) turns the findings into a decision.

The request is the API's query language, which maskgate cannot parse: a predicate may sit in a
parameter's name (`mobile=…`, `filter[mobile]=…`), inside its value (`filter={"mobile":…}`,
`$filter=startswith(mobile,'138')`, `q=mobile:138*`, `ordering=mobile`), or be a full
classified value looked up as plain text (`search=13812345678`). So every name and every value
is scanned the same way, wherever it comes from (query, form, JSON key or string, any other body
as one text):

- **words**: identifier-like tokens (`[^\\W\\d]\\w*`, so dotted and bracketed paths give one token
  per step), each also split at `__`, `_` and camelCase humps, that the API's `fields` classify
  (`Api.name_class`): a predicate on that class;
- **numbers**: the value detectors (masking) finding a classified value: a comparison with a full
  value, one lookup per value found;
- a value still holding percent-escapes after its decoding is scanned decoded again (an API may
  decode twice); a string that parses as JSON is read as the document it is.

This errs toward refusing: a free-text value that merely mentions `mobile` counts. Under
`masked_predicates: equality` every value counts as many lookups as it has items (split at
commas, pipes and white space), so a list cannot pass as one value.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import islice
from urllib.parse import unquote_plus

from masking.detectors import DETECTABLE, detect_in
from policies.decide import MAX_LOOKUP_VALUES
from policies.model import Api, Role, _step_matches

# Bodies (and JSON inside strings) nested deeper are refused: no API's filter is, and the cost of
# classifying a value grows with its depth.
MAX_BODY_DEPTH = 64
# Free-text person-name detection would count every Chinese sentence as a lookup by name; names
# are caught by their field (`name=…`, `{"name": …}`) instead.
_VALUE_CLASSES = frozenset(DETECTABLE - {"person_name"})
_IDENT = re.compile(r"[^\W\d]\w*")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
_ITEM = re.compile(r"[^,|\s]+")
_ESCAPE_LEFT = re.compile(r"%[0-9A-Fa-f]{2}")
# Flat names carry structure in several conventions: `filter[mobile]`, `contact.phone`,
# Django's `contact__phone__startswith`.
_NAME_PIECES = re.compile(r"\[|\]|\.|__")
# Names (or name pieces) that make what they hold a sort or grouping key: `sort=-mobile`,
# `orderBy`, `$orderby`, DRF's `ordering`, `sort_field`, `group_by`, Prisma's `{"orderBy": …}`.
# Ordering by a masked field reveals it bit by bit, like ORDER BY.
_SORT_WORDS = frozenset(
    {"sort", "sorting", "sortby", "sorted", "order", "ordering", "orderby", "group", "grouping", "groupby"}
)
# Parameters through which Express, Laravel, Rails and friends let a request claim another method.
_METHOD_OVERRIDES = frozenset(
    {"_method", "__method", "x-http-method-override", "x-http-method", "x-method-override"}
)
_DECODE_AGAIN = 3


@dataclass(frozen=True, slots=True)
class FormBody:
    """A form body as decoded pairs, duplicates kept in order: read like query parameters."""

    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class TextBody:
    """Any other request body (multipart, XML, plain text), decoded: scanned as one text.
    `readable` is False for bytes that are not UTF-8 and hold NULs (UTF-16 text, binary data),
    whose numbers a text scan cannot see: refused for roles whose predicates matter."""

    text: str
    readable: bool = True


class JsonObject(dict):  # type: ignore[type-arg]
    """A parsed JSON object: each key's last value (what is forwarded), and in `shadowed` the
    earlier values of repeated keys, which parsers that keep the first one would read instead.
    Both are checked. Use `JsonObject.from_pairs` as json's `object_pairs_hook`."""

    __slots__ = ("shadowed",)

    def __init__(self) -> None:
        super().__init__()
        self.shadowed: list[tuple[str, object]] = []

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, object]]) -> JsonObject:
        obj = cls()
        for k, v in pairs:
            if k in obj:
                obj.shadowed.append((k, obj[k]))
            obj[k] = v
        return obj


class Unreadable(Exception):
    """The request cannot be read safely (too deep, escapes left in a name): a bad request."""


class MethodOverride(Exception):
    """A parameter asks the API to treat the request as another method than the one decided."""


@lru_cache(maxsize=8192)
def _pieces(token: str) -> tuple[str, ...]:
    """A token and the names it may be made of: `contact__phone__startswith`, `mobile_prefix`,
    `mobileStartsWith` each hold a field name."""
    out = {token}
    for part in token.split("_"):
        if part:
            out.add(part)
            out.update(_CAMEL.findall(part))
    out.update(p for p in token.split("__") if p)
    return tuple(out)


def _fold(text: str) -> str:
    # Full-width and other compatibility forms read as the ASCII name by APIs that fold them.
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


def words(text: str) -> set[str]:
    """Every name `text` may hold, for classification (see the module docstring)."""
    out: set[str] = set()
    for token in set(_IDENT.findall(_fold(text))):
        out.update(_pieces(token))
    return out


def is_sorting(name: str) -> bool:
    return any(w.lower() in _SORT_WORDS for w in words(name))


def items(value: str) -> int:
    """How many values a parameter value holds (comma, pipe or space lists), at least one; counting
    stops past MAX_LOOKUP_VALUES, which is refused anyway."""
    return max(1, sum(1 for _ in islice(_ITEM.finditer(value), MAX_LOOKUP_VALUES + 1)))


def decodings(text: str) -> Iterable[str]:
    """`text`, then decoded again while percent-escapes are left (an API that decodes twice)."""
    yield text
    for _ in range(_DECODE_AGAIN):
        if not _ESCAPE_LEFT.search(text):
            return
        again = unquote_plus(text)
        if again == text:
            return
        text = again
        yield text


def _shown(text: str) -> str:
    # A name shown in a refusal: never a number the caller may have put there.
    text = re.sub(r"\d{5,}", "…", text)
    return text if len(text) <= 80 else text[:79] + "…"


@dataclass
class Findings:
    """Predicates found in one request: (where, class, lookups) and (where, class) for sorting."""

    hidden: list[tuple[str, str, int]] = field(default_factory=list)
    sorted_by: list[tuple[str, str]] = field(default_factory=list)


class _Fields:
    """An API's field rules matched one key step at a time down a document (the same answers as
    `Api.field_class` on the whole path, which would cost each value its depth again).

    A node's state is, per rule, the set of pattern positions reached, and the rules matched by
    the node or a container of it; its class is the first of those in file order."""

    def __init__(self, api: Api) -> None:
        self.rules = api.fields
        self.start: tuple[frozenset[int], ...] = tuple(self._closure(r.pattern, {0}) for r in self.rules)
        self._memo: dict[object, tuple[tuple[frozenset[int], ...], int | None]] = {}
        # A rule matching the empty path (`**`) classifies the whole document.
        self.first = next((n for n, r in enumerate(self.rules) if len(r.pattern) in self.start[n]), None)

    @staticmethod
    def _closure(pattern: tuple[str, ...], positions: set[int]) -> frozenset[int]:
        out = set()
        for i in positions:
            out.add(i)
            while i < len(pattern) and pattern[i] == "**":
                i += 1
                out.add(i)
        return frozenset(out)

    def step(
        self, states: tuple[frozenset[int], ...], matched: int | None, key: str | int
    ) -> tuple[tuple[frozenset[int], ...], int | None]:
        """The states after one more key (str) or list index (int), and the first matched rule."""
        if not isinstance(key, str):
            key = 0  # every index steps alike: `[]` and `**` match it, key globs do not
        memo = (states, matched, key)
        known = self._memo.get(memo)
        if known is not None:
            return known
        result = self._step(states, matched, key)
        if len(self._memo) < 100_000:
            self._memo[memo] = result
        return result

    def _step(
        self, states: tuple[frozenset[int], ...], matched: int | None, key: str | int
    ) -> tuple[tuple[frozenset[int], ...], int | None]:
        out = []
        for n, (rule, positions) in enumerate(zip(self.rules, states, strict=True)):
            pattern = rule.pattern
            moved = set()
            for i in positions:
                if i == len(pattern):
                    continue
                token = pattern[i]
                if token == "**":
                    moved.add(i)
                elif _step_matches(token, key):
                    moved.add(i + 1)
            reached = self._closure(pattern, moved) if moved else frozenset()
            if len(pattern) in reached and (matched is None or n < matched):
                matched = n
            out.append(reached)
        return tuple(out), matched

    def cls(self, matched: int | None) -> str | None:
        return None if matched is None else self.rules[matched].cls


class Scanner:
    """Scans one request's parts for predicates of `role` on the classes of `api` (None: no field
    classification, numbers are still detected). Numbers are looked for in the classes the
    policy writes (`written`: its columns' and fields' classes) and the role's `detect`, those
    the role does not see clear."""

    def __init__(self, api: Api | None, role: Role, written: frozenset[str] = frozenset()) -> None:
        self.api = api
        self.role = role
        self.found = Findings()
        wanted = (written | role.detect) & _VALUE_CLASSES
        self.detect = frozenset(c for c in wanted if role.action_for(c) != "clear")
        self.fields = _Fields(api) if api is not None else None
        self._names: dict[str, set[str]] = {}
        self._keys: dict[str, tuple[set[str], dict[str, int], bool]] = {}

    # ---------------------------------------------------------------- pieces

    def _anything_masked(self) -> bool:
        classes = set(self.api.classes) if self.api is not None else set()
        return bool(self.detect) or any(self.role.action_for(c) != "clear" for c in classes)

    def _masked(self, classes: Iterable[str]) -> set[str]:
        return {c for c in classes if self.role.action_for(c) != "clear"}

    def name_classes(self, name: str) -> set[str]:
        """Classes a parameter name or JSON key names: whole, by its pieces, by its words."""
        api = self.api
        if api is None:
            return set()
        known = self._names.get(name)
        if known is not None:
            return known
        found: set[str] = set()
        for variant in decodings(name):
            candidates = {variant, *_NAME_PIECES.split(variant), *words(variant)} - {""}
            found.update(c for w in candidates if (c := api.name_class(w)) is not None)
        out = self._names[name] = self._masked(found)
        return out

    def word_classes(self, text: str) -> set[str]:
        """Classes named by the words of a value (any of its decodings)."""
        api = self.api
        if api is None:
            return set()
        found: set[str] = set()
        for variant in decodings(text):
            found.update(c for w in words(variant) if (c := api.name_class(w)) is not None)
        return self._masked(found)

    def numbers(self, text: str) -> dict[str, int]:
        """Classified values the detectors find in `text` (any of its decodings): class -> count."""
        if not self.detect:
            return {}
        if len(text) < 64 and "@" not in text and sum(ch.isdigit() for ch in text) < 4:
            return {}  # no class the detectors know is written with fewer than four digits
        counts: dict[str, int] = {}
        for variant in decodings(text):
            per: dict[str, int] = {}
            for span in detect_in(variant, self.detect):
                per[span.cls] = per.get(span.cls, 0) + 1
            for cls, n in per.items():
                counts[cls] = max(counts.get(cls, 0), n)
        return counts

    def _add(
        self,
        what: str | Callable[[], str],
        classes: set[str],
        numbers: dict[str, int],
        count: int,
        sorting: bool,
    ) -> None:
        if not classes and not numbers:
            return
        if callable(what):  # a body field's path is spelled out only when it is shown
            what = what()
        for cls in sorted(classes | set(numbers)):
            if sorting and cls in classes:
                self.found.sorted_by.append((what, cls))
            else:
                self.found.hidden.append((what, cls, numbers.get(cls) or count))

    # ---------------------------------------------------------------- parts of a request

    def path(self, normal: str) -> None:
        """Path segments are values (`/api/clients/by-mobile/138…`): numbers only, since a
        segment naming a field is a sub-resource, not a predicate."""
        for seg in normal.split("/"):
            if seg and any(ch.isdigit() for ch in seg):
                found = self.numbers(seg)
                if found:
                    self._add("the request path", set(), found, 1, False)

    def pairs(self, where: str, pairs: Sequence[tuple[str, str]], method: str, depth: int = 0) -> None:
        """Query or form parameters: each name and each value."""
        for name, value in pairs:
            if _ESCAPE_LEFT.search(name):
                # Some servers decode twice and would read another name than the one checked.
                raise Unreadable(f"a {where} name holds a percent-escape after decoding")
            if name.strip().lower() in _METHOD_OVERRIDES and value.strip().upper() != method.upper():
                raise MethodOverride(f"{where} `{_shown(name)}` asks for another method")
            what = f"{where} `{_shown(name)}`"
            sorting = is_sorting(name)
            self.value(what, value, self.name_classes(name), sorting, depth)

    def value(
        self, what: str | Callable[[], str], value: str, named: set[str], sorting: bool, depth: int
    ) -> None:
        """One value, with the classes its name (or key path) already gives it. A value that
        parses as a JSON object or array is read as that document instead of as text."""
        doc = _json_in(value)
        if doc is not None:
            self.json(doc, what, named, sorting, depth + 1)
            return
        classes = named | self.word_classes(value)
        self._add(what, classes, self.numbers(value), items(value), sorting)

    def text(self, text: str, readable: bool = True) -> None:
        """A body read as one text (multipart, XML, plain text): its words and numbers."""
        if not readable and self.role.masked_predicates != "allow" and self._anything_masked():
            raise Unreadable("the request body is neither JSON, a form nor text maskgate can read")
        self._add("the request body", self.word_classes(text), self.numbers(text), items(text), False)

    def json(
        self,
        doc: object,
        where: str,
        named: set[str] | frozenset[str] = frozenset(),
        sorting: bool = False,
        depth: int = 0,
    ) -> None:
        """Every key and scalar of a parsed JSON document. A key's classes hold for everything
        under it. Iterative, and each node costs only its own key (its path is a link to its
        parent's, field rules are matched one step at a time), so the walk is linear."""
        fields = self.fields
        states, matched = (fields.start, fields.first) if fields is not None else ((), None)
        # (path link, value, classes of the keys above, under a sort key, depth, rule states, matched)
        stack: list[tuple[_Link, object, frozenset[str], bool, int, tuple[frozenset[int], ...], int | None]]
        stack = [(None, doc, frozenset(named), sorting, depth, states, matched)]
        while stack:
            link, node, inherited, under_sort, d, states, matched = stack.pop()
            if fields is not None and link is not None:
                states, matched = fields.step(states, matched, link[0])
            if isinstance(node, dict | list) and d >= MAX_BODY_DEPTH:
                raise Unreadable(f"the request body is nested deeper than {MAX_BODY_DEPTH} levels")
            if isinstance(node, dict):
                entries: list[tuple[str, object]] = list(node.items())
                entries += getattr(node, "shadowed", [])
                if not entries:
                    self._leaf(where, link, None, inherited, under_sort, matched, d)
                for k, v in entries:
                    key = str(k)
                    key_classes, numbers, sorts = self._key(key)
                    if numbers:  # a full value as a key: a lookup by it
                        self._add(f"{where} key", set(), numbers, 1, False)
                    stack.append(
                        (
                            (key, link),
                            v,
                            inherited | key_classes if key_classes else inherited,
                            under_sort or sorts,
                            d + 1,
                            states,
                            matched,
                        )
                    )
            elif isinstance(node, list):
                if not node:
                    self._leaf(where, link, None, inherited, under_sort, matched, d)
                stack.extend(
                    ((i, link), v, inherited, under_sort, d + 1, states, matched) for i, v in enumerate(node)
                )
            else:
                self._leaf(where, link, node, inherited, under_sort, matched, d)

    def _key(self, key: str) -> tuple[set[str], dict[str, int], bool]:
        known = self._keys.get(key)
        if known is None:
            known = self._keys[key] = (self.name_classes(key), self.numbers(key), is_sorting(key))
        return known

    def _leaf(
        self,
        where: str,
        link: _Link,
        value: object,
        inherited: frozenset[str],
        sorting: bool,
        matched: int | None,
        depth: int,
    ) -> None:
        classes = set(inherited)
        cls = self.fields.cls(matched) if self.fields is not None else None
        if cls is not None and self.role.action_for(cls) != "clear":
            classes.add(cls)
        what: str | Callable[[], str] = where
        if where == "the request body":
            what = lambda: f"{where} field `{_shown(_path_text(link))}`"  # noqa: E731
        if isinstance(value, str):
            self.value(what, value, classes, sorting, depth)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            self._add(what, classes, self.numbers(_number_text(value)), 1, sorting)
        elif classes:
            self._add(what, classes, {}, 1, sorting)


_Link = tuple[str | int, "_Link"] | None


def _path_text(link: _Link) -> str:
    keys: list[str] = []
    while link is not None:
        keys.append(str(link[0]))
        link = link[1]
    return ".".join(reversed(keys)) or "(body)"


def _number_text(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e20:
        return str(int(value))  # 13812345678.0 is the number it shows
    return str(value)


def _json_in(value: str) -> object | None:
    """The JSON object or array a string holds (`filter={"mobile": …}`), or None."""
    text = value.strip()
    if len(text) < 2 or text[0] not in "{[":
        return None
    try:
        doc = json.loads(text, object_pairs_hook=JsonObject.from_pairs)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict | list) else None


def method_override(doc: object, method: str) -> bool:
    """Whether a JSON body's top level claims another method (`{"_method": "DELETE"}`)."""
    if not isinstance(doc, dict):
        return False
    pairs = [*doc.items(), *getattr(doc, "shadowed", [])]
    return any(
        str(k).strip().lower() in _METHOD_OVERRIDES and str(v).strip().upper() != method.upper()
        for k, v in pairs
    )
