"""The Gate implementation: joins the policy engine, masking, audit and metrics to protocol sessions.

Owns the policy in force (swapped atomically on reload), the schemas and engines per (upstream,
database) (a loader may add the columns it discovered personal data in; the guard counts those the
policy does not name yet), the cached maskers and the accounting of every statement. Must not open sockets or
know a protocol: each upstream's schema loader is injected (`{"postgres": loader}`), so this
module is testable without a database and a second protocol only registers its own loader.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import masking
from policies import Engine, Policy, Role, Schema
from policies.decision import Block, Decision
from policies.discovery import pending
from policies.sql.shapes import fingerprint

from .audit import AuditLog
from .gate import SCRAM_SHA_256, Principal, StatementRecord
from .metrics import Metrics

_DETECTABLE = frozenset(masking.CLASSES)

# The guard's own refusals. Each policy state stamps them with its revision (see _PolicyState),
# so audit attributes them to the policy in force when they were made, as it does the engine's.
ACCESS_CHANGED = Block(
    "statement_not_allowed", "your access was changed by a policy reload; reconnect to continue"
)
AUDIT_DOWN = Block(
    "audit_unavailable", "the audit log cannot be written; statements are refused until it recovers"
)
ENGINE_FAILED = Block("unparsable", "the statement could not be analysed")

# Reads the schema of one database (by name) of one upstream server.
SchemaLoader = Callable[[str], Schema]
# (upstream, database): the same database name on two servers is two schemas.
Where = tuple[str, str]


def is_unrestricted(policy: Policy, role: Role | None) -> bool:
    """A role that may run anything, sees every classified column clear and scans nothing:
    its results can skip masking entirely (decisions and audit still apply)."""
    return policy.unrestricted(role)


@dataclass
class _PolicyState:
    """Everything that changes together on a reload; replaced whole, never edited in place."""

    policy: Any
    engines: dict[Where, Engine] = field(default_factory=dict)
    valid: dict[Principal, bool] = field(default_factory=dict)  # principals checked against it
    access_changed: Block = field(init=False)
    audit_down: Block = field(init=False)
    engine_failed: Block = field(init=False)

    def __post_init__(self) -> None:
        revision = self.policy.revision
        self.access_changed = replace(ACCESS_CHANGED, revision=revision)
        self.audit_down = replace(AUDIT_DOWN, revision=revision)
        self.engine_failed = replace(ENGINE_FAILED, revision=revision)


class Guard:
    def __init__(
        self,
        policy: Any,
        *,
        metrics: Metrics,
        audit: AuditLog | None = None,
        schema_loaders: Mapping[str, SchemaLoader] | None = None,
        default_databases: Mapping[str, str] | None = None,
        masking_key: bytes = b"",
        audit_required: bool = False,
    ) -> None:
        self.metrics = metrics
        self.audit = audit
        self.audit_required = audit_required
        self.masking_key = masking_key or masking.DEFAULT_KEY
        # Per upstream: how to read a database's schema, and the database a session naming none uses.
        self._schema_loaders = dict(schema_loaders or {})
        self._default_databases = dict(default_databases or {})
        self._schemas: dict[Where, Schema] = {}
        self._stale: set[Where] = set()
        self._lock = threading.Lock()
        self._value_maskers: dict[tuple[str | None, str], Callable[[Any], Any]] = {}
        self._text_maskers: dict[frozenset[str], Callable[[str], str]] = {}
        self._masked_counts: dict[str, int] = {}
        self._discovered_classes: set[str] = set()
        self._count_lock = threading.Lock()  # not `_lock`: a reload must not wait for a schema load
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
        self._count_discovered()  # columns the new policy names are no longer pending

    def _where(self, database: str, upstream: str) -> Where:
        return (upstream, database or self._default_databases.get(upstream, ""))

    def schema(self, database: str, upstream: str = "postgres") -> Schema:
        return self._schema(self._where(database, upstream))

    def _schema(self, where: Where) -> Schema:
        schema = self._schemas.get(where)
        return schema if schema is not None else self._load(where)

    def prepare(self, database: str, upstream: str = "postgres") -> None:
        """Load the schema of a database a session is about to use. Blocking: sessions call it
        from a worker thread while they connect upstream, so the event loop never waits on it."""
        self._schema(self._where(database, upstream))

    def load_schema(self, database: str, upstream: str = "postgres") -> Schema:
        """(Re)load one database's schema now. Blocking, like `prepare`."""
        where = self._where(database, upstream)
        return self._load(where, self._schemas.get(where))

    def _load(self, where: Where, fallback: Schema | None = None) -> Schema:
        upstream, database = where
        loader = self._schema_loaders.get(upstream)
        with self._lock:
            self._stale.discard(where)
            if loader is None:
                schema = fallback or Schema()
            else:
                try:
                    schema = loader(database)
                    self.metrics.schema_reloads.labels(result="success").inc()
                except Exception as exc:  # a schema load failure must not take sessions down
                    self.metrics.schema_reloads.labels(result="failure").inc()
                    print(
                        f"maskgate: schema load for {upstream} database {database!r} failed: {exc}",
                        file=sys.stderr,
                    )
                    schema = fallback or Schema()
            self._schemas[where] = schema
            # New schema, new engines (their caches describe the old columns).
            self._state.engines.pop(where, None)
            self._count_discovered()
            return schema

    def _count_discovered(self) -> None:
        """The discovered-columns gauge: over every loaded schema, per class, the columns whose
        sample showed personal data and that the policy does not classify yet."""
        with self._count_lock:
            counts = pending(self._state.policy, list(self._schemas.values()))
            for cls in sorted(self._discovered_classes | counts.keys()):
                self.metrics.discovered_columns.labels(cls).set(counts.get(cls, 0))
            self._discovered_classes |= counts.keys()

    def refresh_schemas(self) -> None:
        for where in list(self._schemas):
            self._load(where, self._schemas.get(where))

    def schema_changed(self, database: str, upstream: str = "postgres") -> None:
        """DDL passed through: reload that schema in the background. Until it lands, statements
        are decided on the old one, where a new table or column is unknown and so refused or
        redacted: late, never open."""
        where = self._where(database, upstream)
        if where in self._stale:
            return  # a reload is already under way
        self._stale.add(where)
        threading.Thread(
            target=self._load,
            args=(where, self._schemas.get(where)),
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
            user=user,
            role=u.role,
            unrestricted=is_unrestricted(policy, role),
            database_role=role.database_role if role is not None else None,
            credentials=((SCRAM_SHA_256, u.password),) if u.password else (),
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
        # One snapshot: the validity check, the engine and the stamped refusals all come from the
        # policy in force when the statement arrived, even if a reload lands meanwhile.
        state = self._state
        if self.audit_required and self.audit is not None and not self.audit.healthy:
            return _fingerprinted(state.audit_down, sql, dialect)
        if not self._still_valid(state, principal):
            return _fingerprinted(state.access_changed, sql, dialect)
        where = self._where(database, upstream)
        engine = state.engines.get(where)
        if engine is None:
            engine = state.engines[where] = Engine(state.policy, self._schema(where))
        hits = engine.cache_hits
        try:
            decision = engine.decide(
                principal.role, sql, dialect=dialect, search_path=search_path, database=database
            )
        except Exception as exc:  # fail closed: an engine bug is a refusal, never a pass
            print(f"maskgate: decision failed: {exc!r}", file=sys.stderr)
            decision = _fingerprinted(state.engine_failed, sql, dialect)
        m = self.metrics
        m.child(m.decision_cache, "hit" if engine.cache_hits > hits else "miss").inc()
        return decision

    @staticmethod
    def _still_valid(state: _PolicyState, principal: Principal) -> bool:
        """A reload may remove the user, move them to another role or change what the role may
        see; a session authenticated before it must not go on under its old rights."""
        ok = state.valid.get(principal)
        if ok is None:
            policy = state.policy
            u = policy.users.get(principal.user)
            role = policy.roles.get(u.role) if u is not None else None
            ok = (
                u is not None
                and u.role == principal.role
                and is_unrestricted(policy, role) == principal.unrestricted
                # The session runs upstream as the database role it logged in with.
                and (role.database_role if role is not None else None) == principal.database_role
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

    def begin(self, rec: StatementRecord) -> bool:
        audit = self.audit
        if audit is None or not audit.enabled:
            return True
        revision = self._state.policy.revision
        if self.audit_required:
            return audit.write_now(rec, revision)
        audit.submit(rec, revision)
        return True

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
            # Audit takes the revision the decision carries (engine and guard stamp theirs when
            # deciding); the one in force now only stands in for what no policy decided, the
            # session's own refusals of protocol doors.
            self.audit.submit(rec, self._state.policy.revision)

    def connection_opened(self, protocol: str) -> None:
        self.metrics.child(self.metrics.connections, protocol).inc()

    def connection_closed(self, protocol: str) -> None:
        self.metrics.child(self.metrics.connections, protocol).dec()

    def auth_failed(self, protocol: str) -> None:
        self.metrics.child(self.metrics.auth_failures, protocol).inc()


def _fingerprinted(block: Block, sql: str, dialect: str) -> Block:
    """A refusal the guard makes itself, with the statement's fingerprint read in its dialect,
    as the engine stamps its own decisions (audit then needs no SQL knowledge)."""
    try:
        return replace(block, fingerprint=fingerprint(sql, dialect))
    except Exception:  # a refusal must never fail: without a fingerprint audit still records it
        return block
