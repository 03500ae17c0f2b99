"""The decision engine: policy + schema → a cached `decide(role, sql, …)`.

Owns: splitting a string into statements, running describe → judge → rewrite for each, joining
the parts of a multi-statement string, the time-window check, and an LRU cache of decisions
with plain-int hit/miss counters (the proxy turns them into metrics; this module must not import
prometheus). Fail closed: any exception while deciding is a Block(unparsable).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlglot.schema import MappingSchema

from policies.analysis import AnalysisError, Analyzer, Lineage
from policies.decide import Judge
from policies.decision import Allow, Block, Decision
from policies.dialects import DialectFacts, dialect_facts
from policies.model import Policy, Role
from policies.names import TableName
from policies.rewrite import rewrite
from policies.schema import Schema
from policies.statements import Describer, Unparsable, split_statements

log = logging.getLogger(__name__)

CacheKey = tuple[str, str, str, tuple[str, ...], str | None, str]


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
        self._cache: OrderedDict[CacheKey, Decision] = OrderedDict()
        self._mappings: dict[str, MappingSchema] = {}
        self._views: dict[tuple[str, str | None], dict[TableName, list[Lineage] | None]] = {}
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
            return Block("statement_not_allowed", f"unknown role {role_name}")
        if role.hours:
            # Time-dependent, so checked before the cache.
            moment = self._now(now)
            if not role.within_hours(moment):
                windows = ", ".join(w.text for w in role.hours)
                return Block("outside_hours", f"this role may only connect during {windows}")
        path = tuple(search_path) if search_path is not None else ()
        key: CacheKey = (self.policy.revision, role_name, dialect, path, database, sql)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self.cache_hits += 1
            if self.on_cache is not None:
                self.on_cache(True)
            return cached
        self.cache_misses += 1
        if self.on_cache is not None:
            self.on_cache(False)
        decision = self._decide_uncached(
            role, sql, dialect, path if search_path is not None else None, database
        )
        self._cache[key] = decision
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return decision

    def clear_cache(self) -> None:
        self._cache.clear()

    # --- internals ----------------------------------------------------------------------------

    def _now(self, now: datetime | None) -> datetime:
        tz = self.policy.timezone
        if now is None:
            return datetime.now(tz) if tz else datetime.now().astimezone()
        if now.tzinfo is None:
            return now.replace(tzinfo=tz) if tz else now.astimezone()
        return now.astimezone(tz) if tz else now

    def _analyzer(
        self, facts: DialectFacts, search_path: tuple[str, ...] | None, database: str | None
    ) -> Analyzer:
        mapping = self._mappings.get(facts.name)
        if mapping is None:
            mapping = MappingSchema(self.schema.sqlglot_mapping(), dialect=facts.sqlglot, normalize=False)
            self._mappings[facts.name] = mapping
        views = self._views.setdefault((facts.name, database), {})
        if search_path is None:
            search_path = facts.default_search_path
        database = database if database is not None else self.schema.database
        return Analyzer(self.schema, facts, search_path, database, mapping, views)

    def _judge(self, role: Role, facts: DialectFacts) -> Judge:
        key = (role.name, facts.name)
        judge = self._judges.get(key)
        if judge is None:
            judge = self._judges[key] = Judge(self.policy, role, self.schema, facts)
        return judge

    def _decide_uncached(
        self, role: Role, sql: str, dialect: str, search_path: tuple[str, ...] | None, database: str | None
    ) -> Decision:
        try:
            facts = dialect_facts(dialect)
            analyzer = self._analyzer(facts, search_path, database)
            judge = self._judge(role, facts)
            describer = Describer(analyzer)
            statements = split_statements(sql, facts.sqlglot)
            if not statements:
                return Allow(kind="empty", row_limit=role.max_rows, detect=role.detect)
            parts: list[Allow] = []
            texts: list[str] = []
            for text in statements:
                d = describer.describe(text)
                verdict = judge.judge(d)
                if isinstance(verdict, Block):
                    return verdict
                new_sql = rewrite(d, role, analyzer, verdict.row_limit)
                if new_sql is not None:
                    verdict = _with(verdict, rewritten_sql=new_sql)
                parts.append(verdict)
                texts.append(new_sql or text)
                if verdict.search_path is not None:
                    # Later statements of the same string run under the new search_path.
                    analyzer = self._analyzer(facts, verdict.search_path, database)
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
        rewritten = "; ".join(texts) if any(p.rewritten_sql for p in parts) else None
        return Allow(
            kind="multi",
            columns=(),
            row_limit=role.max_rows,
            rewritten_sql=rewritten,
            detect=role.detect,
            tables=tuple(sorted({t for p in parts for t in p.tables})),
            classes=tuple(sorted({c for p in parts for c in p.classes})),
            search_path=next((p.search_path for p in reversed(parts) if p.search_path is not None), None),
            schema_changed=any(p.schema_changed for p in parts),
            statements=tuple(parts),
        )


def _with(a: Allow, **changes: object) -> Allow:
    from dataclasses import replace

    return replace(a, **changes)  # type: ignore[arg-type]
