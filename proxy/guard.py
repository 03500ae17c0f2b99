"""The Gate implementation: joins the policy engine, masking, audit and metrics to protocol sessions.

Owns the policy in force (swapped atomically on reload), the per-database schemas and engines,
the cached maskers and the accounting of every statement. It opens no sockets; schema loads go
through an injected loader so this module stays testable without a database.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import masking
from policies import Engine, Policy, Role, Schema
from policies.decision import Block, Decision

from .audit import AuditLog
from .gate import Principal, StatementRecord
from .metrics import Metrics

_DETECTABLE = frozenset(masking.CLASSES)

ACCESS_CHANGED = Block(
    "statement_not_allowed", "your access was changed by a policy reload; reconnect to continue"
)

SchemaLoader = Callable[[str], Schema]

AUDIT_DOWN = Block(
    "audit_unavailable", "the audit log cannot be written; statements are refused until it recovers"
)


def is_unrestricted(policy: Policy, role: Role | None) -> bool:
    """A role that may run anything, sees every classified column clear and scans nothing:
    its results can skip masking entirely (decisions and audit still apply)."""
    if role is None or "all" not in role.statements or role.detect:
        return False
    return all(role.action_for(rule.cls) == "clear" for rule in policy.columns)


@dataclass
class _PolicyState:
    """Everything that changes together on a reload; replaced whole, never edited in place."""

    policy: Any
    engines: dict[str, Engine] = field(default_factory=dict)
    valid: dict[Principal, bool] = field(default_factory=dict)  # principals checked against it


class Guard:
    def __init__(
        self,
        policy: Any,
        *,
        metrics: Metrics,
        audit: AuditLog | None = None,
        schema_loader: SchemaLoader | None = None,
        default_database: str = "",
        masking_key: bytes = b"",
        audit_required: bool = False,
        dialect: str = "postgres",
    ) -> None:
        self.metrics = metrics
        self.audit = audit
        self.audit_required = audit_required
        self.masking_key = masking_key or masking.DEFAULT_KEY
        self.default_database = default_database
        self._schema_loader = schema_loader
        self._schemas: dict[str, Schema] = {}
        self._stale: set[str] = set()
        self._lock = threading.Lock()
        self._value_maskers: dict[tuple[str | None, str], Callable[[Any], Any]] = {}
        self._text_maskers: dict[frozenset[str], Callable[[str], str]] = {}
        self._masked_counts: dict[str, int] = {}
        self._state = _PolicyState(policy)
        self.generation = 0
        metrics.set_policy_revision(policy.revision)

    # -- policy and schema ---------------------------------------------------------------------

    @property
    def policy(self) -> Any:
        return self._state.policy

    def swap_policy(self, policy: Any) -> None:
        """Install a validated policy. Engines are rebuilt lazily, so one reference swap suffices."""
        self._state = _PolicyState(policy)
        self.generation += 1
        self.metrics.set_policy_revision(policy.revision)

    def schema(self, database: str) -> Schema:
        schema = self._schemas.get(database)
        if schema is None:
            schema = self.load_schema(database)
        return schema

    def prepare(self, database: str, upstream: str = "postgres") -> None:
        """Load the schema of a database a session is about to use. Blocking: sessions call it
        from a worker thread while they connect upstream, so the event loop never waits on it."""
        if database not in self._schemas:
            self.load_schema(database)

    def load_schema(self, database: str, fallback: Schema | None = None) -> Schema:
        with self._lock:
            self._stale.discard(database)
            if self._schema_loader is None:
                schema = fallback or Schema()
            else:
                try:
                    schema = self._schema_loader(database)
                    self.metrics.schema_reloads.labels(result="success").inc()
                except Exception as exc:  # a schema load failure must not take sessions down
                    self.metrics.schema_reloads.labels(result="failure").inc()
                    print(f"maskgate: schema load for {database!r} failed: {exc}", file=sys.stderr)
                    schema = fallback or Schema()
            self._schemas[database] = schema
            # New schema, new engines (their caches describe the old columns).
            self._state.engines.pop(database, None)
            return schema

    def refresh_schemas(self) -> None:
        for database in list(self._schemas):
            self.load_schema(database, fallback=self._schemas.get(database))

    def engine(self, database: str) -> Engine:
        state = self._state
        engine = state.engines.get(database)
        if engine is None:
            engine = Engine(state.policy, self.schema(database))
            state.engines[database] = engine
        return engine

    def schema_changed(self, database: str, upstream: str = "postgres") -> None:
        """DDL passed through: reload that schema in the background. Until it lands, statements
        are decided on the old one, where a new table or column is unknown and so refused or
        redacted: late, never open."""
        if database in self._stale:
            return  # a reload is already under way
        self._stale.add(database)
        threading.Thread(
            target=self.load_schema,
            args=(database, self._schemas.get(database)),
            name="maskgate-schema",
            daemon=True,
        ).start()

    # -- Gate ----------------------------------------------------------------------------------

    def lookup(self, user: str) -> Principal | None:
        policy = self._state.policy
        u = policy.users.get(user)
        if u is None:
            return None
        role = policy.roles.get(u.role)
        return Principal(
            user=user, role=u.role, verifier=u.password, unrestricted=is_unrestricted(policy, role)
        )

    def decide(
        self,
        principal: Principal,
        sql: str,
        *,
        dialect: str,
        search_path: tuple[str, ...],
        database: str,
        upstream: str = "postgres",
    ) -> Decision:
        if self.audit_required and self.audit is not None and not self.audit.healthy:
            return AUDIT_DOWN
        if not self._still_valid(principal):
            return ACCESS_CHANGED
        engine = self.engine(database or self.default_database)
        hits = engine.cache_hits
        try:
            decision = engine.decide(
                principal.role, sql, dialect=dialect, search_path=search_path, database=database
            )
        except Exception as exc:  # fail closed: an engine bug is a refusal, never a pass
            print(f"maskgate: decision failed: {exc!r}", file=sys.stderr)
            decision = Block("unparsable", "the statement could not be analysed")
        m = self.metrics
        m.child(m.decision_cache, "hit" if engine.cache_hits > hits else "miss").inc()
        return decision

    def _still_valid(self, principal: Principal) -> bool:
        """A reload may remove the user, move them to another role or change what the role may
        see; a session authenticated before it must not go on under its old rights."""
        state = self._state
        ok = state.valid.get(principal)
        if ok is None:
            policy = state.policy
            u = policy.users.get(principal.user)
            ok = (
                u is not None
                and u.role == principal.role
                and is_unrestricted(policy, policy.roles.get(u.role)) == principal.unrestricted
            )
            state.valid[principal] = ok
        return ok

    def value_masker(self, cls: str | None, action: str) -> Callable[[Any], Any]:
        key = (cls, action)
        m = self._value_maskers.get(key)
        if m is None:
            # A class the policy knows but masking has no display rule for (e.g. a site-defined
            # class) still gets masked, by the generic rule, never passed clear.
            known = cls if cls in masking.CLASSES else None
            m = self._value_maskers[key] = self._counting(
                masking.make_masker(known, action, key=self.masking_key), cls or "detected"
            )
        return m

    def _counting(self, masker: Callable[[Any], Any], label: str) -> Callable[[Any], Any]:
        """Wrap a masker so every value it changes is counted under its class.

        Counting here, where the class is known, keeps protocol code free of metric labels; the
        plain-int tally is moved to Prometheus once per statement in `record`.
        """
        counts = self._masked_counts

        def counted(value: Any) -> Any:
            out = masker(value)
            if out is not value and out != value:
                counts[label] = counts.get(label, 0) + 1
            return out

        return counted

    def text_masker(self, classes: frozenset[str]) -> Callable[[str], str]:
        m = self._text_maskers.get(classes)
        if m is None:
            # Only classes with a value detector can be scanned for; the rest are column-only.
            detectable = classes & _DETECTABLE
            m = self._text_maskers[classes] = self._counting(
                masking.make_text_masker(detectable, "mask", key=self.masking_key), "detected"
            )
        return m

    def record(self, rec: StatementRecord) -> None:
        m = self.metrics
        c = m.child
        d = rec.decision
        if isinstance(d, Block):
            c(m.queries, rec.protocol, rec.role, "block").inc()
            c(m.blocked, rec.protocol, rec.role, m.reason_label(d.reason)).inc()
        else:
            c(m.queries, rec.protocol, rec.role, "error" if rec.error else "allow").inc()
            if rec.rows:
                c(m.rows_returned, rec.role).inc(rec.rows)
            if rec.truncated:
                c(m.truncated, rec.role).inc()
        if self._masked_counts:
            # Copy and clear in place: the maskers' closures hold this very dict.
            counts = dict(self._masked_counts)
            self._masked_counts.clear()
            for cls, n in counts.items():
                c(m.masked_values, cls).inc(n)
        c(m.duration, "total").observe(rec.duration_s)
        c(m.duration, "overhead").observe(rec.overhead_s)
        if self.audit is not None:
            self.audit.submit(rec, self._state.policy.revision)

    def connection_opened(self, protocol: str) -> None:
        self.metrics.child(self.metrics.connections, protocol).inc()

    def connection_closed(self, protocol: str) -> None:
        self.metrics.child(self.metrics.connections, protocol).dec()

    def auth_failed(self, protocol: str) -> None:
        self.metrics.child(self.metrics.auth_failures, protocol).inc()
