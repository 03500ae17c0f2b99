"""Per-person reading budgets (`roles.R.budgets`): counting, sharing between replicas, refusing.

Owns the counts of what each person read in the current windows (rows this clock hour, distinct
customers today), their sharing through Redis when the config names one (`redis:`), and the
refusal of a statement whose person has crossed a budget (reason `row_budget`). Must not open a
socket on the event loop's thread, know a wire protocol, or read policy files: the guard hands
it the policy in force, the statements' records and the values disclosed to people.

How counting works:
- Rows: each statement's end record adds its rows (`rows_per_hour`), in this process at once.
- Customers: the values a person received (`Disclosed`, from the observation hook) are reduced
  to a keyed hash of the normalised value (the policy's `customer_key` column's values, or every
  classified value when it names none) on the worker thread, and counted once each per day.
- With Redis, a worker thread adds both to shared keys, `maskgate:budget:<role>:<sha of
  user>:<window>` (INCRBY + EXPIRE for rows, PFADD + PFCOUNT on a HyperLogLog for customers), and
  reads back the totals of every replica. The check before a statement never waits for Redis: it
  compares the last totals read (refreshed in the background when older than `refresh_s`) plus
  what this process counted since, with the role's limits.
- Without Redis each process counts alone: a person spread over N replicas (or workers) gets N
  budgets.

Overshoot: a statement is refused once a count has reached its limit, so what a person can read
beyond a budget is bounded by (a) the statements already admitted when the count reached it
(each at most the role's `max_rows` rows), and (b) with several replicas, what the other replicas
counted within the last refresh (`refresh_s`, 1 s, plus one Redis round trip): a person reading
through R replicas at once can overshoot by about R × (statements started per refresh) ×
`max_rows`. The first statement of a person on a replica that has not read their totals yet is
decided on this replica's counts and starts that read.

Redis unreachable: counting goes on in this process, and the decision keeps the last totals it
read plus everything counted here since (never forgets a person's shared count), so a replica
alone can only move a person closer to refusal, never reset them. That is not silent: the
errors are counted (`maskgate_budget_store_errors_total`), `maskgate_budget_store_up` drops to
0 (an alert), and the log says so once per outage. Rows and customers counted while Redis was
down are not added to the shared totals afterwards; reconnection is retried every `retry_s`.
"""

from __future__ import annotations

import hashlib
import math
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, NamedTuple, Protocol

from policies.decision import Allow, Block
from policies.model import Policy, RoleBudgets

from .audit import computed_classes
from .disclosure import ROW_KEY, expand, value_key
from .gate import Principal, StatementRecord
from .metrics import Metrics

# Shared keys outlive their window by as much again: a replica whose clock is a little behind
# still adds to the same key, and Redis reclaims the key without anyone deleting it.
ROWS_TTL_S = 2 * 3600
CUSTOMERS_TTL_S = 2 * 86400
REFRESH_S = 1.0  # how old the shared totals may get before a check asks Redis again
RETRY_S = 1.0  # after a Redis error, how long counting stays local before trying again
REDIS_TIMEOUT_S = 1.0  # connect and read timeout of one Redis round trip
MAX_BATCH = 2000  # queue items handled in one Redis pipeline
# Schemas whose rows are the database describing itself (GUI tools read them constantly): they
# say nothing about customers, and counting them would spend a person's budget on metadata.
_CATALOG_SCHEMAS = frozenset({"pg_catalog", "information_schema", "mysql", "performance_schema", "sys"})

CUSTOMER_KEY_CLASS = "customer_key"  # the class the row paths disclose customer-key values as
COMPUTED_ROW = "computed_row"  # a row of values computed from classified columns: one customer

_MESSAGES = {
    "rows_per_hour": "this person has read the {limit} rows per hour their role allows; try again next hour",
    "distinct_customers_per_day": (
        "this person has read the data of the {limit} distinct customers per day their role allows; "
        "try again tomorrow"
    ),
}


def _customers(masking_key: bytes, values: Iterable[tuple[str, str]]) -> set[bytes]:
    """The customers one batch of disclosed values names, as key prefixes: the distinct values
    of the class it holds most of, the customer key included (a row of id, name and phone is
    one customer, not three; a mobile's reversed and forward forms are one value, keyed
    folded)."""
    by_class: dict[str, set[bytes]] = {}
    for cls, v in values:
        for c, found in expand(cls, v):
            by_class.setdefault(c, set()).add(value_key(masking_key, c, found)[:16])
    # The key names the customers of rows that hold it, but a row may hold other customers'
    # numbers beside it (a join, `id * 0`): the class with the most distinct values counts.
    return max(by_class.values(), key=len, default=set())


class Disclosed(Protocol):
    """What the observation hook reports of one value (proxy/services/gate.py's `Disclosed`)."""

    cls: str
    column: str
    value: str
    clear: bool


def user_hash(user: str) -> str:
    """How a person appears in shared keys: the user name is not written to Redis."""
    return hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()[:16]


# Catalog relations that hold samples of the data itself (most common values, histograms):
# one row of them can hold a hundred customers' numbers, past any row limit or budget.
_STATISTICS = frozenset(
    {
        "pg_catalog.pg_stats",
        "pg_catalog.pg_statistic",
        "pg_catalog.pg_stats_ext",
        "pg_catalog.pg_stats_ext_exprs",
        "pg_catalog.pg_statistic_ext_data",
        "mysql.column_stats",
        "information_schema.column_statistics",
    }
)


def reads_statistics(allow: Allow) -> bool:
    return any(".".join(t.lower().split(".")[-2:]) in _STATISTICS for t in allow.tables)


def reads_data(allow: Allow) -> bool:
    """Whether the budget applies to a statement: it reads a table that is not the catalog (an
    HTTP request always reads the API's data). Session statements (SET, BEGIN, COMMIT) and
    catalog reads stay allowed, so a person over budget can still end their transaction."""
    if allow.kind == "http" or reads_statistics(allow):
        return True
    return any(t.split(".")[-2].lower() not in _CATALOG_SCHEMAS if "." in t else True for t in allow.tables)


def observes(policy: Policy) -> bool:
    """Whether the budgets need the values people receive under `policy` (a role counts
    distinct customers): only then must the row paths report them (the guard's `observing`)."""
    return any(r.budgets is not None and r.budgets.distinct_customers_per_day for r in policy.roles.values())


# How long a running statement's reservation is held without its end being recorded.
RESERVE_TTL_S = 60.0
_UNBOUNDED = 1 << 30  # what a statement without max_rows may send: all that is left


def reservation(allow: Allow) -> int:
    """What a statement may still send while it runs: the rows its parts may return (each
    part's max_rows; a part without one, everything), counted against rows and customers."""
    return sum(
        (p.row_limit if p.row_limit is not None else _UNBOUNDED) for p in allow.parts() if reads_data(p)
    )


def crossed(limits: RoleBudgets, rows: int, customers: int) -> str | None:
    """The first budget the counts have used up (its name), or None. A budget of N is used up
    at N: the statement that reached it ran, the next ones are refused."""
    if limits.rows_per_hour is not None and rows >= limits.rows_per_hour:
        return "rows_per_hour"
    if limits.distinct_customers_per_day is not None and customers >= limits.distinct_customers_per_day:
        return "distinct_customers_per_day"
    return None


class _Total(NamedTuple):
    """What one Redis reply is the total of: a person's rows (window: the hour) or customers
    (window: the day), and how many of them this batch sent (no longer unflushed once it is in)."""

    kind: str
    role: str
    user: str
    window: int | str
    sent: int


@dataclass(slots=True)
class _Person:
    """One person's counts in the current windows. `*_shared` are the totals Redis last
    returned (every replica's); `*_unflushed` what this process counted that those totals do
    not include (not sent yet, or lost with a failed round trip); `rows_local` and `keys` what
    this process counted itself."""

    role: str
    user: str
    hour: int = -1
    day: str = ""
    rows_local: int = 0
    rows_shared: int = 0
    rows_unflushed: int = 0
    keys: set[bytes] = field(default_factory=set)
    customers_shared: int = 0
    customers_unflushed: int = 0
    refreshed: float = -math.inf
    refreshing: bool = False
    # Statements running now, not counted yet: the rows they may still send (their max_rows,
    # released when they end) and the rows they sent whose customers the worker has not counted
    # yet (settled by the worker, after those values). Statements sent together (a pipeline, a
    # multi-statement string, another session) are admitted against these, not against counts
    # that lag behind them.
    reserved: int = 0
    reserved_at: float = -math.inf
    pending: int = 0

    @property
    def rows(self) -> int:
        return max(self.rows_shared + self.rows_unflushed, self.rows_local)

    @property
    def customers(self) -> int:
        return max(self.customers_shared + self.customers_unflushed, len(self.keys))


class Budgets:
    """The counts of one process, shared through Redis when `redis_url` is given.

    Called from the event loop: `refusal` (before a statement), `record` (after one) and the
    observer (`observe`); all of them only update memory and queue work. `start` runs the worker
    thread that hashes disclosed values and talks to Redis; tests call `pump` instead, on their
    own thread, with a fake clock.
    """

    def __init__(
        self,
        *,
        masking_key: bytes,
        redis_url: str | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        timezone: tzinfo | None = None,
        refresh_s: float = REFRESH_S,
        retry_s: float = RETRY_S,
        client: Any = None,
    ) -> None:
        """`clock` is wall-clock time: every replica must agree on which hour and day it is.
        `timezone`: where a day starts (the config's). `client`: a Redis client to use instead
        of one made from `redis_url` (tests)."""
        self.masking_key = masking_key
        self.shared = redis_url is not None or client is not None
        self.redis_url = redis_url
        self.metrics = metrics
        self.clock = clock
        self.timezone = timezone
        self.refresh_s = refresh_s
        self.retry_s = retry_s
        self._client = client
        self._people: dict[tuple[str, str], _Person] = {}
        self._lock = threading.Lock()
        # Unbounded, but drained in whole batches by one thread whose Redis calls time out: it
        # holds at most what arrives during one round trip (REDIS_TIMEOUT_S).
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._down_until = -math.inf
        self._down = False
        if metrics is not None and self.shared:
            metrics.budget_store_up.source = lambda: {(): 0.0 if self._down else 1.0}

    # -- lifetime --------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="maskgate-budgets", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(("stop",))
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item[0] == "stop" for item in batch)
            try:
                self._process([item for item in batch if item[0] != "stop"])
            except Exception as exc:  # the worker must outlive a bug in one batch
                print(f"maskgate: budget counting failed: {exc!r}", file=sys.stderr)
            if stop:
                return

    def pump(self) -> None:
        """Handle everything queued, on the calling thread (tests, and `close` without a thread)."""
        batch: list[tuple[Any, ...]] = []
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self._process([item for item in batch if item[0] != "stop"])

    # -- windows ---------------------------------------------------------------------------------

    def _windows(self, now: float) -> tuple[int, str]:
        """The clock hour (hours since the epoch: the same on every replica whatever its time
        zone) and the day (in the configured time zone) that `now` falls in."""
        return int(now // 3600), datetime.fromtimestamp(now, self.timezone).strftime("%Y%m%d")

    def _person(self, role: str, user: str, now: float) -> _Person:
        """The person's counts, moved on to the current windows (the caller holds the lock)."""
        p = self._people.get((role, user))
        if p is None:
            p = self._people[(role, user)] = _Person(role, user)
        hour, day = self._windows(now)
        if p.hour != hour:
            p.hour, p.rows_local, p.rows_shared, p.rows_unflushed = hour, 0, 0, 0
            p.refreshed = -math.inf
        if p.day != day:
            p.day, p.customers_shared, p.customers_unflushed = day, 0, 0
            p.keys = set()
            p.refreshed = -math.inf
        return p

    @staticmethod
    def key(role: str, user: str, window: str) -> str:
        return f"maskgate:budget:{role}:{user_hash(user)}:{window}"

    # -- the event loop's side -------------------------------------------------------------------

    def counts(self, role: str, user: str) -> tuple[int, int]:
        """(rows this hour, distinct customers today) as this process knows them now."""
        with self._lock:
            p = self._person(role, user, self.clock())
            return p.rows, p.customers

    def crossed(self, role: str, user: str, limits: RoleBudgets, extra: int = 0) -> str | None:
        """The budget of `limits` the person has used up, from the counts known now; asks for
        fresh shared totals in the background when they are older than `refresh_s`."""
        now = self.clock()
        with self._lock:
            p = self._person(role, user, now)
            if self.shared and not p.refreshing and now - p.refreshed >= self.refresh_s:
                p.refreshing = True
                self._queue.put(("refresh", role, user, p.hour, p.day))
            if now - p.reserved_at > RESERVE_TTL_S:
                p.reserved = 0
            running = p.reserved + extra
            rows, customers = p.rows + running, p.customers + running + p.pending
        return crossed(limits, rows, customers)

    def refusal(
        self, policy: Policy, principal: Principal, allow: Allow, *, reserve: bool = False
    ) -> Block | None:
        """The refusal of a statement whose person has used up a budget of their role (reason
        `row_budget`), or None. The statements of the person still running count with what
        they may still send. `reserve`: the statement is about to run, and is counted so too
        until it ends (`record`)."""
        role = policy.roles.get(principal.role)
        limits = role.budgets if role is not None else None
        if limits is None or not reads_data(allow):
            return None
        if reads_statistics(allow):
            return Block(
                "row_budget",
                "column statistics hold samples of the data beyond any row limit: not for a role "
                "with reading budgets",
                allow.tables,
                allow.classes,
                allow.kind,
                allow.revision,
                allow.fingerprint,
            )
        # Several statements in one string run together: all but one of them must fit in what
        # is left (one statement reaching the budget runs in full, as always).
        parts = [reservation(p) for p in allow.parts()]
        extra = sum(parts) - max(parts, default=0) if reserve else 0
        name = self.crossed(principal.role, principal.user, limits, extra)
        if name is None and reserve:
            now = self.clock()
            with self._lock:
                p = self._person(principal.role, principal.user, now)
                if now - p.reserved_at > RESERVE_TTL_S:
                    p.reserved = 0  # a statement whose end was never recorded holds nothing forever
                p.reserved += reservation(allow)
                p.reserved_at = now
        if name is None:
            return None
        if self.metrics is not None:
            self.metrics.child(self.metrics.budget_refusals, principal.role, name).inc()
        return Block(
            "row_budget",
            _MESSAGES[name].format(limit=getattr(limits, name)),
            allow.tables,
            allow.classes,
            allow.kind,
            allow.revision,
            allow.fingerprint,
        )

    def record(self, policy: Policy, rec: StatementRecord) -> None:
        """Count the rows of a statement (or of one call of it) that ended, and release what it
        held while it ran."""
        if rec.event == "start" or isinstance(rec.decision, Block):
            return
        role = policy.roles.get(rec.role)
        if role is None or role.budgets is None or not reads_data(rec.decision):
            return
        limit = role.budgets.distinct_customers_per_day
        if rec.rows and limit is not None and computed_classes(rec.decision):
            # Values computed from classified columns (a digit cipher, length(phone)) name no
            # customer the detectors can read: each row is one customer. Queued before the
            # settle below, so its pending rows give way to these counts.
            rows = [(COMPUTED_ROW, f"{rec.id}/{i}") for i in range(min(rec.rows, limit + 1))]
            self.observe(rec.role, rec.user, rows, limit)
        with self._lock:
            p = self._person(rec.role, rec.user, self.clock())
            p.reserved = max(0, p.reserved - reservation(rec.decision))
            if rec.rows and limit is not None:
                # Its customers are counted on the worker, after the values it disclosed (queued
                # before this record): until then its rows stand in for them.
                p.pending += rec.rows
                self._queue.put(("settle", rec.role, rec.user, rec.rows))
        if rec.rows and role.budgets.rows_per_hour is not None:
            self.count_rows(rec.role, rec.user, rec.rows)

    def count_rows(self, role: str, user: str, n: int) -> None:
        with self._lock:
            p = self._person(role, user, self.clock())
            p.rows_local += n
            if self.shared:
                p.rows_unflushed += n
                self._queue.put(("rows", role, user, p.hour, n))

    def observer(self, policy: Callable[[], Policy]) -> Callable[[Principal, str, Sequence[Disclosed]], None]:
        """The observer the guard registers (`add_observer`): the values a person received,
        reduced to those that name customers under the policy in force (`policy()`)."""

        def observe(principal: Principal, statement_id: str, values: Sequence[Disclosed]) -> None:
            p = policy()
            role = p.roles.get(principal.role)
            limits = role.budgets if role is not None else None
            if limits is None or limits.distinct_customers_per_day is None:
                return
            # Every value but a canary table's key column (ROW_KEY, which names no customer):
            # the worker counts the class the batch holds most of, the customer key included (a
            # SCAN value's numbers are found there).
            picked = [(v.cls, v.value) for v in values if v.value and v.cls != ROW_KEY]
            if picked:
                self.observe(principal.role, principal.user, picked, limits.distinct_customers_per_day)

        return observe

    def observe(self, role: str, user: str, values: Iterable[tuple[str, str]], limit: int) -> None:
        """Count the customers named by `values` ((class, value) pairs) as seen by the person
        today; hashed and counted on the worker thread. `limit` bounds this process's own set
        of them: past it the person is refused anyway."""
        _, day = self._windows(self.clock())
        self._queue.put(("values", role, user, day, limit, list(values)))

    # -- the worker's side -----------------------------------------------------------------------

    def _process(self, batch: list[tuple[Any, ...]]) -> None:
        rows: dict[tuple[str, str, int], int] = {}
        fresh: dict[tuple[str, str, str], list[bytes]] = {}  # new customer keys to share
        refresh: set[tuple[str, str, int, str]] = set()
        now = self.clock()
        for item in batch:
            kind = item[0]
            if kind == "rows":
                _, role, user, hour, n = item
                rows[(role, user, hour)] = rows.get((role, user, hour), 0) + n
            elif kind == "refresh":
                refresh.add(item[1:])
            elif kind == "settle":
                _, role, user, n = item
                with self._lock:
                    p = self._person(role, user, now)
                    p.pending = max(0, p.pending - n)
            elif kind == "values":
                _, role, user, day, limit, values = item
                keys = _customers(self.masking_key, values)
                with self._lock:
                    p = self._person(role, user, now)
                    if p.day != day:
                        continue  # counted for a day that is over
                    new = keys - p.keys
                    room = max(0, limit + 1 - len(p.keys))
                    p.keys.update(list(new)[:room])
                    if self.shared and new:
                        p.customers_unflushed += len(new)
                if self.shared and new:
                    fresh.setdefault((role, user, day), []).extend(new)
        if not self.shared or not (rows or fresh or refresh):
            return
        self._share(rows, fresh, refresh, now)

    def _redis(self) -> Any:
        if self._client is None:
            import redis  # only for configs that name a Redis server

            self._client = redis.Redis.from_url(
                self.redis_url,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
            )
        return self._client

    def _share(
        self,
        rows: dict[tuple[str, str, int], int],
        fresh: dict[tuple[str, str, str], list[bytes]],
        refresh: set[tuple[str, str, int, str]],
        now: float,
    ) -> None:
        """One pipeline to Redis: add this batch's counts, read back every total it touched."""
        # Per reply, in order: the total it carries, or None for replies nobody reads (EXPIRE).
        totals: list[_Total | None] = []
        try:
            if now < self._down_until:
                raise ConnectionError("waiting before retrying the shared budget store")
            pipe = self._redis().pipeline(transaction=False)
            for (role, user, hour), n in rows.items():
                k = self.key(role, user, f"rows-h{hour}")
                pipe.incrby(k, n)
                pipe.expire(k, ROWS_TTL_S)
                totals += [_Total("rows", role, user, hour, n), None]
            for (role, user, day), keys in fresh.items():
                k = self.key(role, user, f"customers-d{day}")
                pipe.pfadd(k, *keys)
                pipe.expire(k, CUSTOMERS_TTL_S)
                pipe.pfcount(k)
                totals += [None, None, _Total("customers", role, user, day, len(keys))]
            for role, user, hour, day in refresh:
                pipe.get(self.key(role, user, f"rows-h{hour}"))
                pipe.pfcount(self.key(role, user, f"customers-d{day}"))
                totals += [_Total("rows", role, user, hour, 0), _Total("customers", role, user, day, 0)]
            replies = pipe.execute()
        except Exception as exc:  # any failure of the store: count locally, say so
            self._failed(refresh, exc, now)
            return
        self._recovered()
        with self._lock:
            for t, reply in zip(totals, replies, strict=True):
                if t is None:
                    continue
                p = self._person(t.role, t.user, now)
                if t.kind == "rows" and p.hour == t.window:
                    p.rows_unflushed = max(0, p.rows_unflushed - t.sent)
                    p.rows_shared = int(reply or 0)
                elif t.kind == "customers" and p.day == t.window:
                    p.customers_unflushed = max(0, p.customers_unflushed - t.sent)
                    p.customers_shared = int(reply or 0)
                p.refreshed = now
            for role, user, _, _ in refresh:
                self._person(role, user, now).refreshing = False

    def _failed(self, refresh: set[tuple[str, str, int, str]], exc: Exception, now: float) -> None:
        """Redis did not answer: what this batch added is counted by this process only, on top
        of the person's last shared totals, and the store is left alone for `retry_s`."""
        waiting = now < self._down_until
        if not waiting:
            self._down_until = now + self.retry_s
            if self.metrics is not None:
                self.metrics.budget_store_errors.inc()
        if not self._down:
            self._down = True
            print(
                f"maskgate: the shared budget store ({_safe_url(self.redis_url)}) failed: {exc!r}; "
                "budgets are counted by this replica alone until it answers again",
                file=sys.stderr,
            )
        # What this batch added stays in `*_unflushed`: the shared totals do not include it, and
        # the decision reads last totals + unflushed, so the person never gains from an outage.
        with self._lock:
            for role, user, _, _ in refresh:
                p = self._person(role, user, now)
                p.refreshing, p.refreshed = False, now

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            self._down_until = -math.inf
            print("maskgate: the shared budget store answers again", file=sys.stderr)

    # -- metrics ---------------------------------------------------------------------------------

    def usage(self, policy: Policy) -> dict[tuple[str, str], float]:
        """Per (role, budget): the largest share of the budget a person of the role has used in
        the current window, as this process knows it (1 or more: crossed)."""
        out: dict[tuple[str, str], float] = {}
        now = self.clock()
        with self._lock:
            people = [self._person(role, user, now) for role, user in list(self._people)]
        for p in people:
            role = policy.roles.get(p.role)
            if role is None or role.budgets is None:
                continue
            for name, limit in role.budgets.items():
                used = (p.rows if name == "rows_per_hour" else p.customers) / limit
                key = (p.role, name)
                out[key] = max(out.get(key, 0.0), used)
        return out


def _safe_url(url: str | None) -> str:
    """The Redis URL without its password, for the log."""
    if not url:
        return "redis"
    from urllib.parse import urlsplit

    u = urlsplit(url)
    host = u.hostname or ""
    return f"{u.scheme}://{host}" + (f":{u.port}" if u.port else "") + u.path
