"""The Gate implementation: joins the policy engine, masking, audit and metrics to protocol sessions.

Owns the policy in force (swapped atomically on reload), the schemas and engines per (upstream,
database) (a loader may add the columns it discovered personal data in; the guard counts those the
policy does not name yet), the cached maskers and the accounting of every statement. Must not open sockets or
know a protocol: each upstream's schema loader is injected (`{"postgres": loader}`), so this
module is testable without a database and a second protocol only registers its own loader.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from typing import Any

import masking
from policies import Engine, Policy, Role, Schema
from policies.decision import Allow, Block, Decision
from policies.discovery import pending
from policies.sql.shapes import fingerprint

from .audit import AuditLog
from .budgets import Budgets
from .gate import MYSQL_NATIVE_PASSWORD, SCRAM_SHA_256, Disclosed, Observer, Principal, StatementRecord
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
_HIT, _MISS = ("hit",), ("miss",)  # decision_cache label tuples, built once
SCHEMA_DOWN = Block("schema_unavailable", "the schema of this database is not loaded yet; try again shortly")

# How long one schema load may take before sessions stop waiting for it, and the backoff between
# attempts after a failed one (doubling from MIN to MAX).
# Lookups of masked values are budgeted per person over the last hour, in this process (each
# replica and worker keeps its own: a person spread over N of them gets N budgets).
LOOKUP_WINDOW_S = 3600.0
SCHEMA_TIMEOUT_S = 30.0  # a first load samples for discovery up to 10 s on top of reading
SCHEMA_RETRY_MIN_S = 0.5
SCHEMA_RETRY_MAX_S = 30.0

# Reads the schema of one database (by name) of one upstream server.
SchemaLoader = Callable[[str], Schema]
# (upstream, database): the same database name on two servers is two schemas.
Where = tuple[str, str]


def _no_class(_key: object) -> str | None:
    return None


@dataclass(frozen=True)
class HttpRules:
    """The policy's view of one person's HTTP responses: the class of a JSON path and of a flat
    name (query parameter, CSV header), the role's action per class, and whether a route lets
    them download a binary body."""

    field_class: Callable[[tuple[str | int, ...]], str | None]
    name_class: Callable[[str], str | None]
    action_for: Callable[[str], str]
    binary_ok: Callable[[str, str], bool]


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
    # The same answers by id(principal), with the principal itself to keep that id from being
    # reused: a Principal hashes all its fields in Python, on every statement.
    valid_by_id: dict[int, tuple[Principal, bool]] = field(default_factory=dict)
    # Bearer token digest -> user name, built on first use.
    tokens: dict[str, str] | None = None
    access_changed: Block = field(init=False)
    audit_down: Block = field(init=False)
    engine_failed: Block = field(init=False)
    schema_down: Block = field(init=False)

    def __post_init__(self) -> None:
        revision = self.policy.revision
        self.schema_down = replace(SCHEMA_DOWN, revision=revision)
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
        schema_timeout_s: float = SCHEMA_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        budgets: Budgets | None = None,
    ) -> None:
        self.metrics = metrics
        self.audit = audit
        self.audit_required = audit_required
        if audit is not None and audit_required:
            # Its start records are written before their statements run: sync them to disk too,
            # in batches (AuditLog's note says what that survives).
            audit.durable = True
        self.masking_key = masking_key or masking.DEFAULT_KEY
        # Per upstream: how to read a database's schema, and the database a session naming none uses.
        self._schema_loaders = dict(schema_loaders or {})
        self._default_databases = dict(default_databases or {})
        # Loaded schemas only: a database whose schema is not here refuses its sessions (57P03)
        # until a load succeeds, instead of serving an empty schema that refuses real tables.
        self._schemas: dict[Where, Schema] = {}
        self._stale: set[Where] = set()
        self._loading: dict[Where, tuple[Future[bool], float]] = {}  # load under way, since when
        self._failures: dict[Where, tuple[int, float]] = {}  # consecutive failures, next try at
        self._wanted: set[Where] = set()  # retried in the background until loaded (start-up's)
        self._timed: set[Where] = set()  # those with a retry timer pending
        self.schema_timeout_s = schema_timeout_s
        self._clock = clock
        # Guards the dictionaries above, never held while a loader runs.
        self._lock = threading.Lock()
        self._value_maskers: dict[tuple[str | None, str], Callable[[Any], Any]] = {}
        self._text_maskers: dict[frozenset[str], Callable[[str], str]] = {}
        self._masked_counts: dict[str, int] = {}
        self._discovered_classes: set[str] = set()
        self._lookups: dict[str, deque[tuple[float, int]]] = {}
        self._count_lock = threading.Lock()  # not `_lock`: a reload must not wait for a schema load
        self._state = _PolicyState(policy)
        self.generation = 0
        # Watchers of disclosures (ledger, canaries, budgets). `observing` is what row paths read
        # to leave their fast paths: True from the first observer on.
        self._observers: list[Observer] = []
        self.observing = False
        self._row_keys: tuple[str, ...] = ()  # canary key columns (set_row_keys)
        metrics.set_policy_revision(policy.revision)
        # Per-person budgets of the roles that have them (None: no role's budget is counted).
        self.budgets = budgets
        # Distinct customers are counted from the values people receive (the row paths'
        # observation hook), reduced under the policy in force when they arrive; only while some
        # role of that policy has such a budget, so that the fast paths stay fast otherwise.
        self._budget_observer: Observer | None = None
        if budgets is not None:
            metrics.budget_usage.source = lambda: budgets.usage(self._state.policy)
            self._budget_observer = budgets.observer(lambda: self._state.policy)
        self._watch()

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
        self._watch()

    def _where(self, database: str, upstream: str) -> Where:
        return (upstream, database or self._default_databases.get(upstream, ""))

    def schema(self, database: str, upstream: str = "postgres") -> Schema:
        """The database's schema, loaded now (waiting at most the schema timeout) if it is not
        yet; an empty one if it cannot be loaded (callers that decide use `decide`, which
        refuses instead)."""
        return self._schema(self._where(database, upstream)) or Schema()

    def _schema(self, where: Where) -> Schema | None:
        schema = self._schemas.get(where)
        if schema is None:
            with contextlib.suppress(FutureTimeout):
                self._start(where).result(self.schema_timeout_s)
            schema = self._schemas.get(where)
        return schema

    def prepare(self, database: str, upstream: str = "postgres") -> Future[bool] | None:
        """Start loading the schema of a database a session is about to use, unless it is
        loaded (None). Never blocks: the session waits on the future, bounded by its timeout."""
        where = self._where(database, upstream)
        return None if where in self._schemas else self._start(where)

    def load_schema(self, database: str, upstream: str = "postgres") -> bool:
        """(Re)load one database's schema now, waiting at most the schema timeout; on failure it
        is retried in the background with backoff until it loads. Blocking, for start-up."""
        where = self._where(database, upstream)
        with self._lock:
            self._wanted.add(where)
        with contextlib.suppress(FutureTimeout):
            self._start(where, force=True).result(self.schema_timeout_s)
        loaded = where in self._schemas
        if not loaded:
            print(
                f"maskgate: schema of {upstream} database {where[1]!r} not loaded yet: its sessions are "
                "refused as starting up (57P03) until it loads",
                file=sys.stderr,
            )
        return loaded

    def _start(self, where: Where, *, force: bool = False) -> Future[bool]:
        """The load of `where` under way, or a new one on a thread of its own (never the shared
        executor, which hanging loads would fill). Without `force`, a database whose last load
        failed is refused at once until its backoff has passed: sessions do not hammer a
        database that is down, nor each wait out the timeout."""
        with self._lock:
            now = self._clock()
            loading = self._loading.get(where)
            if loading is not None:
                fut, started = loading
                if now - started < self.schema_timeout_s:
                    return fut
                # Hung past its timeout: counted as a failure; a later attempt starts afresh (the
                # old thread's schema is still taken if it ever arrives).
                del self._loading[where]
                self._failed(where, now)
                if not fut.done():
                    fut.set_result(False)
            failures = self._failures.get(where)
            if not force and failures is not None and now < failures[1]:
                done: Future[bool] = Future()
                done.set_result(False)
                return done
            fut = Future()
            self._loading[where] = (fut, now)
        threading.Thread(
            target=self._run_load, args=(where, fut), name="maskgate-schema", daemon=True
        ).start()
        return fut

    def _run_load(self, where: Where, fut: Future[bool]) -> None:
        ok = False
        try:
            ok = self._load(where, self._schemas.get(where))
        finally:
            with self._lock:
                if self._loading.get(where, (None,))[0] is fut:
                    del self._loading[where]
                if not fut.done():
                    fut.set_result(ok)

    def _retry(self, where: Where) -> None:
        with self._lock:
            self._timed.discard(where)
            if where in self._schemas:
                return  # a session's load got there first
        self._start(where, force=True)

    def _failed(self, where: Where, now: float) -> float:
        """Count a failed load (the caller holds `_lock`); returns the backoff before the next."""
        n = self._failures.get(where, (0, 0.0))[0] + 1
        delay = min(SCHEMA_RETRY_MIN_S * 2 ** (n - 1), SCHEMA_RETRY_MAX_S)
        self._failures[where] = (n, now + delay)
        return delay

    def _load(self, where: Where, fallback: Schema | None = None) -> bool:
        """Load `where` on the calling thread; True when a schema is in place afterwards. No lock
        is held while the loader runs: a database that hangs delays no other."""
        upstream, database = where
        loader = self._schema_loaders.get(upstream)
        with self._lock:
            self._stale.discard(where)
        if loader is None:
            schema = fallback or Schema()
        else:
            try:
                schema = loader(database)
                if not schema.tables:
                    # A live database always shows the catalog relations: an empty schema is a
                    # failed load, and serving it would refuse every real table as unknown.
                    raise LookupError("the upstream returned an empty schema")
                self.metrics.schema_reloads.labels(result="success").inc()
            except Exception as exc:  # a schema load failure must not take sessions down
                self.metrics.schema_reloads.labels(result="failure").inc()
                with self._lock:
                    delay = self._failed(where, self._clock())
                    # One retry timer per database at a time, however many loads failed.
                    retry = where in self._wanted and where not in self._schemas and where not in self._timed
                    if retry:
                        self._timed.add(where)
                print(
                    f"maskgate: schema load for {upstream} database {database!r} failed: {exc}"
                    + (f"; retrying in {delay:g} s" if retry else ""),
                    file=sys.stderr,
                )
                if retry:
                    timer = threading.Timer(delay, self._retry, (where,))
                    timer.daemon = True
                    timer.start()
                # A refresh that failed keeps the last good schema; a first load has none.
                return where in self._schemas
        with self._lock:
            self._failures.pop(where, None)
            self._schemas[where] = schema
            # New schema, new engines (their caches describe the old columns).
            self._state.engines.pop(where, None)
        self._count_discovered()
        return True

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
        with self._lock:
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
            credentials=tuple(
                (kind, secret)
                for kind, secret in ((SCRAM_SHA_256, u.password), (MYSQL_NATIVE_PASSWORD, u.mysql_password))
                if secret
            ),
        )

    def lookup_token(self, digest: str) -> Principal | None:
        """The principal whose bearer token hashes to `digest` (hex SHA-256), or None."""
        state = self._state
        index = state.tokens
        if index is None:
            index = state.tokens = {
                t: name for name, u in state.policy.users.items() for t in getattr(u, "tokens", ())
            }
        user = index.get(digest.lower())
        return self.lookup(user) if user is not None else None

    def decide_request(
        self,
        principal: Principal,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        body: object | None,
        api: str | None,
    ) -> Decision:
        """The decision for one HTTP request (policies/http.py), fail-closed like `decide`."""
        state = self._state
        what = f"{method} {path}"
        if self.audit_required and self.audit is not None and not self.audit.healthy:
            return replace(state.audit_down, kind="http")
        role = state.policy.roles.get(principal.role)
        user = state.policy.users.get(principal.user)
        if role is None or user is None or user.role != principal.role:
            return replace(state.access_changed, kind="http")
        try:
            from policies.http import decide_request

            decision = decide_request(state.policy, role, self.api_name(api), method, path, query, body)
        except Exception as exc:  # an engine bug is a refusal, never a pass
            print(f"maskgate: HTTP decision failed for {what[:200]!r}: {exc!r}", file=sys.stderr)
            return replace(state.engine_failed, kind="http", message="the request could not be analysed")
        if self.budgets is not None and isinstance(decision, Allow):
            return self.budgets.refusal(state.policy, principal, decision) or decision
        return decision

    def api_name(self, api: str | None) -> str | None:
        """The policy's `apis` entry an HTTP listener uses: the one named, else the only one."""
        apis = getattr(self._state.policy, "apis", None) or {}
        if api is not None:
            return api
        return next(iter(apis)) if len(apis) == 1 else None

    def http_rules(self, principal: Principal, api: str | None) -> HttpRules | None:
        """What body masking needs of the policy for this person and API (None: the role is gone)."""
        policy = self._state.policy
        role = policy.roles.get(principal.role)
        if role is None:
            return None
        entry = (getattr(policy, "apis", None) or {}).get(self.api_name(api) or "")
        if entry is None:
            return HttpRules(_no_class, _no_class, role.action_for, binary_ok=lambda m, p: False)
        from policies.http import binary_allowed

        return HttpRules(
            entry.field_class,
            entry.name_class,
            role.action_for,
            binary_ok=lambda method, path: binary_allowed(role, method, path),
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
            schema = self._schema(where)
            if schema is None:  # its sessions are refused at connect; this is the backstop
                return _fingerprinted(state.schema_down, sql, dialect)
            engine = state.engines[where] = Engine(state.policy, schema)
        hits = engine.cache_hits
        try:
            decision = engine.decide(
                principal.role, sql, dialect=dialect, search_path=search_path, database=database
            )
        except Exception as exc:  # fail closed: an engine bug is a refusal, never a pass
            print(f"maskgate: decision failed: {exc!r}", file=sys.stderr)
            decision = _fingerprinted(state.engine_failed, sql, dialect)
        self.metrics.decision_cache.add(_HIT if engine.cache_hits > hits else _MISS)
        if self.budgets is not None and isinstance(decision, Allow):
            # After the engine, never cached with its decision: the counts change, the SQL does not.
            return self.budgets.refusal(state.policy, principal, decision) or decision
        return decision

    def over_budget(self, principal: Principal, allow: Allow) -> Block | None:
        if self.budgets is None:
            return None
        return self.budgets.refusal(self._state.policy, principal, allow, reserve=True)

    @staticmethod
    def _still_valid(state: _PolicyState, principal: Principal) -> bool:
        """A reload may remove the user, move them to another role or change what the role may
        see; a session authenticated before it must not go on under its old rights."""
        seen = state.valid_by_id.get(id(principal))
        if seen is not None and seen[0] is principal:
            return seen[1]
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
        if len(state.valid_by_id) >= 4096:  # one entry per session's principal: bounded
            state.valid_by_id.clear()
        state.valid_by_id[id(principal)] = (principal, ok)
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

        def tally(n: int) -> None:
            counts[label] = counts.get(label, 0) + n

        # A native row walker that applies `masker`'s display rule itself (proxy/pg/rowmask.py)
        # recognises the masker by identity and reports the values it changed through `tally`.
        counted.inner = masker  # type: ignore[attr-defined]
        counted.tally = tally  # type: ignore[attr-defined]
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

    def add_observer(self, fn: Observer) -> None:
        """Tell `fn` of every batch of disclosed values from now on. It runs on the event loop:
        it must only queue work (services/disclosure.py's Disclosures does)."""
        self._observers.append(fn)
        self._watch()

    def _watch(self) -> None:
        """`observing`: an observer is registered, or the policy in force has a role counting
        distinct customers (recomputed on every policy swap)."""
        from .budgets import observes

        counting = self._budget_observer is not None and observes(self._state.policy)
        self._observers_now = [*self._observers, *([self._budget_observer] if counting else [])]
        self.observing = bool(self._observers_now)

    def customer_key(self) -> str | None:
        # Budgets' policy key; read loosely until every policy model carries it.
        key = getattr(self._state.policy, "customer_key", None)
        return str(key) if key else None

    def row_keys(self) -> tuple[str, ...]:
        return self._row_keys

    def set_row_keys(self, columns: tuple[str, ...]) -> None:
        """Note `columns` (canary key columns) from now on. Row plans are cached by the
        decision's column masks, which a change here leaves alone: the policy state is
        renewed so that every plan is built again, now with these columns observed."""
        if columns == self._row_keys:
            return
        self._row_keys = columns
        self._state = _PolicyState(self._state.policy)
        self.generation += 1

    def disclose(self, principal: Principal, statement_id: str, values: Sequence[Disclosed]) -> None:
        for fn in self._observers_now:
            try:
                fn(principal, statement_id, values)
            except Exception as exc:  # an observer's bug must not take the session down
                print(f"maskgate: disclosure observer failed: {exc!r}", file=sys.stderr)

    def begin(self, rec: StatementRecord) -> bool:
        audit = self.audit
        if audit is None or not audit.enabled:
            return True
        revision = self._state.policy.revision
        if self.audit_required:
            return audit.write_now(rec, revision)
        audit.submit(rec, revision)
        return True

    def spend_lookups(self, principal: Principal, n: int) -> bool:
        role = self._state.policy.roles.get(principal.role)
        limit = role.lookups_per_hour if role is not None else 0
        if limit is None:
            return True
        now = time.monotonic()
        window = self._lookups.setdefault(principal.user, deque())
        while window and now - window[0][0] > LOOKUP_WINDOW_S:
            window.popleft()
        if sum(k for _, k in window) + n > limit:
            return False
        window.append((now, n))
        return True

    def record(self, rec: StatementRecord) -> None:
        # Plain dictionary increments (metrics.Tally / Buckets): this runs for every statement.
        m = self.metrics
        d = rec.decision
        role = rec.role
        if isinstance(d, Block):
            m.queries.add((rec.protocol, role, "block"))
            m.blocked.add((rec.protocol, role, m.reason_label(d.reason)))
        else:
            m.queries.add((rec.protocol, role, "error" if rec.error else "allow"))
            if rec.rows:
                m.rows_returned.add((role,), rec.rows)
            if rec.truncated:
                m.truncated.add((role,))
            if rec.event != "start":
                # d.parts() without building a generator for the usual single statement.
                lookups = sum(p.lookups for p in d.statements) if d.statements else d.lookups
                if lookups:
                    m.masked_lookups.add((role,), lookups)
        if self._masked_counts:
            # Copy and clear in place: the maskers' closures hold this very dict.
            counts = dict(self._masked_counts)
            self._masked_counts.clear()
            for cls, n in counts.items():
                m.masked_values.add((cls,), n)
        m.duration.observe("total", rec.duration_s)
        m.duration.observe("overhead", rec.overhead_s)
        if self.budgets is not None:
            self.budgets.record(self._state.policy, rec)
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
