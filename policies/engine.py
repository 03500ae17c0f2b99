"""The decision engine: policy + schema → a cached `decide(role, sql, …)`.

Owns: running parse → describe → judge → rewrite for each statement of a string, joining
the parts of a multi-statement string, the time-window check, and two LRU caches of decisions
with plain-int hit/miss counters (the proxy turns them into metrics; this module must not import
prometheus): one keyed by the statement's text, and one keyed by its shape (its literals taken
out, policies/sql/shapes.py) so that statements that inline their values (`-M simple`, ORMs) reuse
one analysis. Fail closed: any exception while deciding is a Block(unparsable).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime

from sqlglot import exp
from sqlglot.schema import MappingSchema

from policies.decide import MAX_LOOKUP_VALUES, Judge
from policies.decision import Allow, Block, Decision
from policies.model import Policy, Role
from policies.names import TableName
from policies.rewrite import rewrite
from policies.schema import Schema
from policies.sql import identifiers
from policies.sql.analysis import AnalysisError, Analyzer, Lineage
from policies.sql.describe import Described, Describer
from policies.sql.dialects import DialectFacts, dialect_facts
from policies.sql.parser import Unparsable, parse_statement, split
from policies.sql.shapes import (
    Sentinels,
    Shape,
    Slots,
    Template,
    fingerprint,
    free_slots,
    sentinel_tree,
    shape_of,
    template_of,
)

log = logging.getLogger(__name__)

CacheKey = tuple[str, str, str, tuple[str, ...], str | None, str]
ShapeKey = tuple[str, str, str, tuple[str, ...], str | None, tuple[object, ...], tuple[str, ...]]
_UNKNOWN = object()


# The longest statement a restricted role may send: ~1 s of analysis. Tools and people who need
# longer ones (bulk loads, migrations) are unrestricted roles.
MAX_ANALYSED_CHARS = 64 * 1024


@dataclass(frozen=True, slots=True)
class _Single:
    """What learning a shape needs from the one statement of a string."""

    kind: str
    limit_rows: bool
    analyzer: Analyzer
    # A rule read one of its literals' values (Described.literal_values): not cacheable by shape.
    literal_values: bool = False


@dataclass(frozen=True, slots=True)
class _Learned:
    """A shape's decision (without its rewritten SQL) and the template of that SQL. Learned from
    two statements of the shape with different literals, both analysed in full, that got the
    same decision and whose rewritten SQL the template reproduces."""

    decision: Allow
    template: Template | None
    # The decision's field values in order, to build each hit's decision with its own SQL by a
    # plain positional call (dataclasses.replace costs ~4x that, on every shape hit).
    values: tuple[object, ...] = ()

    def with_sql(self, sql: str) -> Allow:
        values = list(self.values)
        values[_SQL_AT] = sql
        return Allow(*values)  # type: ignore[arg-type]


_ALLOW_FIELDS = tuple(f.name for f in fields(Allow))
_SQL_AT = _ALLOW_FIELDS.index("rewritten_sql")


class Engine:
    def __init__(
        self,
        policy: Policy,
        schema: Schema | None = None,
        cache_size: int = 10000,
        on_cache: Callable[[bool], None] | None = None,
    ) -> None:
        self.policy = policy
        self.schema = schema or Schema()
        self.cache_size = cache_size
        self.on_cache = on_cache
        self.cache_hits = 0
        self.cache_misses = 0
        self.shape_hits = 0
        self._cache: OrderedDict[CacheKey, Decision] = OrderedDict()
        # None: this shape is not to be cached (its decision or SQL did not hold across literals).
        self._shapes: OrderedDict[ShapeKey, _Learned | None] = OrderedDict()
        self._slots: dict[tuple[str, tuple[object, ...]], Slots | None] = {}
        # The first statement seen of a shape (its literals and decision), waiting for a second.
        self._pending: OrderedDict[tuple[object, ...], tuple[tuple[str, ...], Allow]] = OrderedDict()
        self._sentinels = Sentinels()
        self._mappings: dict[str, MappingSchema] = {}
        self._views: dict[tuple[str, str | None], dict[TableName, list[Lineage] | None]] = {}
        self._view_tables: dict[tuple[str, str | None], dict[TableName, frozenset[TableName]]] = {}
        self._judges: dict[tuple[str, str], Judge] = {}

    # --- public --------------------------------------------------------------------------------

    def decide(
        self,
        role_name: str,
        sql: str,
        dialect: str = "postgres",
        search_path: Sequence[str] | None = None,
        database: str | None = None,
        now: datetime | None = None,
    ) -> Decision:
        role = self.policy.roles.get(role_name)
        if role is None:
            return self._stamp(Block("statement_not_allowed", f"unknown role {role_name}"), sql, dialect)
        if role.hours:
            # Time-dependent, so checked before the cache.
            moment = self._now(now)
            if not role.within_hours(moment):
                windows = ", ".join(w.text for w in role.hours)
                block = Block("outside_hours", f"this role may only connect during {windows}")
                return self._stamp(block, sql, dialect)
        if len(sql) > MAX_ANALYSED_CHARS and not self.policy.unrestricted(role):
            # Analysis costs tens of µs a token on the loop every session shares: a restricted
            # role's statement of megabytes would stall everyone's (red team v4's class).
            block = Block(
                "statement_not_allowed",
                f"statements longer than {MAX_ANALYSED_CHARS} characters are not analysed for this "
                "role; split it",
            )
            return self._stamp(block, sql, dialect)
        path = tuple(search_path) if search_path is not None else ()
        key: CacheKey = (self.policy.revision, role_name, dialect, path, database, sql)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self.cache_hits += 1
            if self.on_cache is not None:
                self.on_cache(True)
            return cached
        shape = shape_of(sql, dialect)
        skey: ShapeKey | None = None
        if shape is not None:
            slots = self._slots.get((dialect, shape.key), _UNKNOWN)
            if slots is None:
                shape = None
            elif isinstance(slots, Slots):
                fixed = tuple(shape.raws[i] for i in slots.fixed)
                skey = (self.policy.revision, role_name, dialect, path, database, shape.key, fixed)
                learned = self._shapes.get(skey)
                if learned is not None:
                    self._shapes.move_to_end(skey)
                    decision: Decision = learned.decision
                    if learned.template is not None:
                        decision = learned.with_sql(learned.template.render(shape.raws))
                    self.cache_hits += 1
                    self.shape_hits += 1
                    if self.on_cache is not None:
                        self.on_cache(True)
                    self._remember(key, decision)
                    return decision
        self.cache_misses += 1
        if self.on_cache is not None:
            self.on_cache(False)
        single: list[_Single] = []
        decision = self._decide_uncached(
            role, sql, dialect, path if search_path is not None else None, database, single
        )
        if (
            isinstance(decision, Block)
            and decision.reason == "unparsable"
            and self.policy.nothing_masked(role)
        ):
            # A role that may run anything and sees everything clear, unlimited, in every table
            # (the DBA) runs what the parser does not understand as written; audited as
            # `unparsed`, so such statements stand out. For every other role it stays a refusal.
            decision = Allow(kind="unparsed", notes=("unparsed",))
        # Stamped once here: cached and shape-learned decisions carry it (a shape's statements
        # share their fingerprint, which ignores every literal).
        decision = self._stamp(decision, sql, dialect)
        self._remember(key, decision)
        if shape is not None and single and isinstance(decision, Allow):
            try:
                self._learn(shape, role, dialect, search_path, database, decision, single[0])
            except Exception as e:  # learning is an optimisation: never let it decide anything
                log.warning("shape learning failed: %s: %s", type(e).__name__, e, exc_info=True)
        return decision

    def _stamp(self, decision: Decision, sql: str, dialect: str) -> Decision:
        return replace(decision, revision=self.policy.revision, fingerprint=fingerprint(sql, dialect))

    def _remember(self, key: CacheKey, decision: Decision) -> None:
        self._cache[key] = decision
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _learn(
        self,
        shape: Shape,
        role: Role,
        dialect: str,
        search_path: Sequence[str] | None,
        database: str | None,
        decision: Allow,
        single: _Single,
    ) -> None:
        """Learn a shape from its second fully analysed statement (see _Learned). The first one
        costs a dict entry only, so statements seen once (ad-hoc queries) pay nearly nothing.

        A decision is reused only for literals that cannot change it: the free slots are those
        whose position in the tree no rule reads (policies/sql/shapes.py); a statement whose
        description read a literal's value (Described.literal_values: set_config's settings) is
        never learned; and the statement with every free slot replaced by a sentinel value, which
        no allow-list (setting names, catalogs, …) contains, must get the same decision too."""
        path = tuple(search_path) if search_path is not None else ()
        ctx = (self.policy.revision, role.name, dialect, path, database, shape.key)
        first = self._pending.pop(ctx, None)
        if first is None or first[0] == shape.raws:
            self._pending[ctx] = (shape.raws, decision)
            if len(self._pending) > self.cache_size:
                self._pending.popitem(last=False)
            return
        first_raws, first_decision = first
        facts = single.analyzer.facts
        slots = self._slots.get((dialect, shape.key), _UNKNOWN)
        if slots is _UNKNOWN:
            if len(self._slots) > 2 * self.cache_size:
                self._slots.clear()
            slots = self._slots[(dialect, shape.key)] = free_slots(shape, facts, self._sentinels)
        if not isinstance(slots, Slots):
            return
        fixed = tuple(shape.raws[i] for i in slots.fixed)
        if fixed != tuple(first_raws[i] for i in slots.fixed):
            self._pending[ctx] = (shape.raws, decision)  # another LIMIT (…): start again with this one
            return
        skey = (*ctx, fixed)
        if skey in self._shapes:
            return  # learned already, or refused
        plain = _plain(decision)
        if single.literal_values or plain != _plain(first_decision):
            log.info("the decision of a statement shape depends on its literals; not cached by shape")
            self._store_shape(skey, None)
            return
        text = self._sentinels.text(shape, slots.free)
        probe = self._decide_uncached(role, text, dialect, search_path, database) if text else None
        if not isinstance(probe, Allow) or _plain(probe) != plain:
            log.info("the decision of a statement shape depends on its literals; not cached by shape")
            self._store_shape(skey, None)
            return
        template: Template | None = None
        if decision.rewritten_sql is not None or first_decision.rewritten_sql is not None:
            tree = sentinel_tree(shape, slots, facts, self._sentinels)
            sql = None
            if tree is not None:
                d = Described(single.kind, tree=tree, limit_rows=single.limit_rows)
                judge = self._judge(role, facts)
                sql = rewrite(d, judge.role, single.analyzer, decision.row_limit, judge.restricted)
            template = template_of(sql, shape, slots, self._sentinels) if sql is not None else None
            if (
                template is None
                or template.render(shape.raws) != decision.rewritten_sql
                or template.render(first_raws) != first_decision.rewritten_sql
            ):
                self._store_shape(skey, None)
                return
        plain_decision = replace(decision, rewritten_sql=None)
        values = tuple(getattr(plain_decision, name) for name in _ALLOW_FIELDS)
        self._store_shape(skey, _Learned(plain_decision, template, values))

    def _store_shape(self, skey: ShapeKey, learned: _Learned | None) -> None:
        self._shapes[skey] = learned
        self._shapes.move_to_end(skey)
        if len(self._shapes) > self.cache_size:
            self._shapes.popitem(last=False)

    def clear_cache(self) -> None:
        self._cache.clear()
        self._shapes.clear()
        self._slots.clear()
        self._pending.clear()

    # --- internals ----------------------------------------------------------------------------

    def _now(self, now: datetime | None) -> datetime:
        return self.policy.moment(now)

    def _analyzer(
        self, facts: DialectFacts, search_path: tuple[str, ...] | None, database: str | None
    ) -> Analyzer:
        mapping = self._mappings.get(facts.name)
        if mapping is None:
            mapping = self._mappings[facts.name] = identifiers.mapping(self.schema, facts)
        views = self._views.setdefault((facts.name, database), {})
        view_tables = self._view_tables.setdefault((facts.name, database), {})
        if search_path is None:
            search_path = facts.default_search_path
        database = database if database is not None else self.schema.database
        return Analyzer(self.schema, facts, search_path, database, mapping, views, 0, view_tables)

    def _judge(self, role: Role, facts: DialectFacts) -> Judge:
        key = (role.name, facts.name)
        judge = self._judges.get(key)
        if judge is None:
            judge = self._judges[key] = Judge(self.policy, role, self.schema, facts)
        return judge

    def _decide_uncached(
        self,
        role: Role,
        sql: str,
        dialect: str,
        search_path: tuple[str, ...] | None,
        database: str | None,
        single: list[_Single] | None = None,
    ) -> Decision:
        """Analyse `sql` in full. When it is one parsed statement, `single` receives what the
        shape cache needs to learn from it."""
        try:
            facts = dialect_facts(dialect)
            analyzer = self._analyzer(facts, search_path, database)
            judge = self._judge(role, facts)
            describer = Describer(analyzer)
            statements = split(sql, facts)
            path = _PathState(search_path if search_path is not None else facts.default_search_path)
            if not statements:
                return Allow(kind="empty", row_limit=role.max_rows, detect=role.detect)
            parts: list[Allow] = []
            rewritten_spans: list[tuple[int, int, str]] = []
            for chunk in statements:
                # Parsed one at a time: a refusal of an earlier statement is reported as such.
                d = describer.describe(parse_statement(chunk, facts))
                verdict = judge.judge(d)
                if isinstance(verdict, Block):
                    return verdict
                if single is not None and len(statements) == 1 and isinstance(d.tree, exp.Expression):
                    single.append(_Single(d.kind, d.limit_rows, analyzer, d.literal_values))
                new_sql = rewrite(d, judge.role, analyzer, verdict.row_limit, judge.restricted)
                if new_sql is not None:
                    verdict = _with(verdict, rewritten_sql=new_sql)
                parts.append(verdict)
                lookups = sum(p.lookups for p in parts)
                if lookups > MAX_LOOKUP_VALUES:
                    return Block(
                        "masked_predicate",
                        f"this string compares classified values with {lookups} values; at most "
                        f"{MAX_LOOKUP_VALUES} per string for this role, however many statements "
                        "it holds",
                        verdict.tables,
                        verdict.classes,
                    )
                if new_sql is not None:
                    rewritten_spans.append((chunk.start, chunk.end, new_sql))
                if len(statements) > 1 and path.follow(verdict, facts):
                    # Later statements of the same string run under the search_path it leaves.
                    analyzer = self._analyzer(facts, path.current, database)
                    describer = Describer(analyzer)
        except Unparsable as e:
            return Block("unparsable", f"statement not understood: {e}")
        except AnalysisError as e:
            return Block("unparsable", f"statement not understood: {e}")
        except Exception as e:  # fail closed: a bug in analysis must never let a statement through
            log.warning("policy analysis failed: %s: %s", type(e).__name__, e, exc_info=True)
            return Block("unparsable", "statement not understood")
        if len(parts) == 1:
            return parts[0]
        rewritten = _splice(sql, rewritten_spans) if rewritten_spans else None
        return Allow(
            kind="multi",
            columns=(),
            row_limit=role.max_rows,
            rewritten_sql=rewritten,
            detect=role.detect,
            tables=tuple(sorted({t for p in parts for t in p.tables})),
            classes=tuple(sorted({c for p in parts for c in p.classes})),
            # What the string leaves; the parts carry each statement's own settings and transaction.
            search_path=path.current if path.changed else None,
            schema_changed=any(p.schema_changed for p in parts),
            statements=tuple(parts),
        )


def _splice(sql: str, spans: list[tuple[int, int, str]]) -> str:
    """`sql` with each rewritten statement's span replaced by its rewrite. Everything else
    (statements sent as written, separators, comments between them) stays byte for byte as the
    client wrote it: joining texts with new separators let a trailing `-- comment` of one
    statement swallow the `;` before the next, so the server read other statements than the
    ones judged."""
    out: list[str] = []
    last = 0
    for start, end, text in spans:
        out.append(sql[last:start])
        out.append(text)
        last = end
    out.append(sql[last:])
    return "".join(out)


class _PathState:
    """The search_path through the statements of one string, as the server keeps it: SET and
    RESET change it, SET LOCAL until the transaction ends, and ROLLBACK, ROLLBACK TO SAVEPOINT
    and COMMIT undo what they undo. A string that does not begin its own transaction runs as one
    (the simple protocol's implicit transaction), so SET LOCAL lasts to its end, and a ROLLBACK of
    a transaction begun before the string goes back to the path the string started with (the
    proxy's best knowledge; the server reads the relations named upstream in any case)."""

    def __init__(self, start: tuple[str, ...]) -> None:
        self.start = start
        self.session = start
        self.local: tuple[str, ...] | None = None
        self.begun: tuple[tuple[str, ...], tuple[str, ...] | None] | None = None
        self.savepoints: list[tuple[str, tuple[str, ...], tuple[str, ...] | None]] = []
        self.changed = False

    @property
    def current(self) -> tuple[str, ...]:
        return self.local if self.local is not None else self.session

    def follow(self, part: Allow, facts: DialectFacts) -> bool:
        """Apply one statement's effects; whether the current search_path changed."""
        before = self.current
        named = [c for c in part.settings if c.name in ("*", facts.search_path_setting)]
        if part.search_path is not None and not named:
            self.session, self.local = part.search_path, None  # MySQL's USE: no setting of its own
        for change in named:
            value = change.value if change.value is not None and change.name != "*" else None
            value = value if value is not None else facts.default_search_path
            if change.local:
                self.local = value
            else:
                self.session, self.local = value, None
        t = part.transaction
        if t is not None:
            if t.kind == "begin":
                self.begun = (self.session, self.local)
                self.savepoints = []
            elif t.kind in ("commit", "prepare"):
                self.local, self.begun, self.savepoints = None, None, []
            elif t.kind == "rollback":
                self.session, self.local = self.begun or (self.start, None)
                self.begun, self.savepoints = None, []
            elif t.kind == "savepoint":
                self.savepoints.append((t.name, self.session, self.local))
            elif t.kind in ("release", "rollback_to"):
                at = next(
                    (i for i in range(len(self.savepoints) - 1, -1, -1) if self.savepoints[i][0] == t.name),
                    None,
                )
                if at is not None:
                    if t.kind == "rollback_to":
                        _, self.session, self.local = self.savepoints[at]
                        del self.savepoints[at + 1 :]
                    else:
                        del self.savepoints[at:]
        self.changed = self.changed or bool(part.search_path is not None or self.current != before)
        return self.current != before


def _plain(a: Allow) -> Allow:
    """A decision without what differs between statements of one shape by construction."""
    return replace(a, rewritten_sql=None, revision="", fingerprint="")


def _with(a: Allow, **changes: object) -> Allow:
    return replace(a, **changes)  # type: ignore[arg-type]
