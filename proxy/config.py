"""The `maskgate serve` config file: loading, `${VAR}` expansion, validation.

Owns only turning YAML into a frozen `Config`; it opens no sockets and reads no policy. Unknown
keys are errors (a typo in `audit_requred` must not silently turn auditing off).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The config file cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Upstream:
    scheme: str
    host: str
    port: int
    user: str
    password: str
    database: str
    params: dict[str, str] = field(default_factory=dict)

    def dsn(self, database: str | None = None) -> str:
        """A libpq-style DSN for the service account (schema loading uses it)."""
        from urllib.parse import quote

        # Every part is percent-encoded: the database name comes from the client's startup packet,
        # and `crm?host=evil&port=…` pasted in as written would point the service account's
        # connection (and its password) wherever the client likes.
        db = quote(database or self.database, safe="")
        auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}@" if self.user else ""
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in self.params.items())
        return f"{self.scheme}://{auth}{self.host}:{self.port}/{db}" + (f"?{query}" if query else "")


@dataclass(frozen=True)
class TLSFiles:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Listener:
    listen: Endpoint
    upstream: Upstream
    tls: TLSFiles | None = None
    # Passwords of the database roles policy roles run as (`database_role`): maskgate logs in
    # upstream as such a role; a database role without one is taken with SET ROLE.
    database_roles: dict[str, str] = field(default_factory=dict)


# Bodies are masked whole (a value split across two chunks would escape the mask), so each is
# held in memory once: a larger one is refused, not streamed.
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class HttpListener:
    """The HTTP side (proxy/http/): a reverse proxy in front of one internal API."""

    listen: Endpoint
    upstream: str  # base URL of the API: http(s)://host:port
    tls: TLSFiles | None = None
    # The policy's `apis` entry whose `fields` classify this API's JSON and CSV (None: the only
    # entry when the policy has exactly one; detectors run either way).
    api: str | None = None
    # An authenticating gateway in front may name the person in this header; it is believed only
    # from these networks (a header any client can set is no identity).
    trusted_header: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Headers added to every forwarded request: the API's own service credential, which no
    # person knows (their maskgate credentials are never forwarded).
    upstream_headers: dict[str, str] = field(default_factory=dict)
    # A private CA bundle for an https upstream (None: the system's trust store).
    upstream_ca: Path | None = None


@dataclass(frozen=True)
class Config:
    path: Path
    policy: Path
    audit_log: Path | None = None
    audit_required: bool = False
    metrics: Endpoint | None = None
    postgres: Listener | None = None
    mysql: Listener | None = None
    http: HttpListener | None = None
    masking_key: bytes = b""
    timezone: str = "Asia/Shanghai"
    schema_refresh_s: float = 300.0
    idle_timeout_s: float = 0.0
    auth_timeout_s: float = 30.0
    max_message_bytes: int = 64 * 1024 * 1024
    # Sample column values when a schema loads; columns holding personal data that the policy
    # does not classify are then classified for restricted roles (docs/config.md).
    discover: bool = True
    # Processes serving the listeners (SO_REUSEPORT when more than one): proxy/workers.py.
    workers: int = 1
    # The disclosure ledger (proxy/services/ledger.py; None: off): who received which value in
    # clear (masked ones too with ledger_masked), per person and day, kept ledger_retention_days.
    ledger_dir: Path | None = None
    ledger_masked: bool = False
    ledger_retention_days: int = 180
    ledger_expected_values: int = 20000  # distinct values per person-day a day filter is sized for
    ledger_fp_rate: float = 1e-4  # its false-positive rate at that many values
    # The Redis server every replica shares per-person budgets through (redis://host:port/db);
    # None: each process counts its people alone (proxy/services/budgets.py).
    redis: str | None = None


# More processes than this is a typo, not a host: each holds the policy, its caches and an
# upstream connection per session.
MAX_WORKERS = 256

_TOP_KEYS = {
    "policy",
    "audit_log",
    "audit_required",
    "metrics",
    "postgres",
    "mysql",
    "http",
    "masking_key",
    "timezone",
    "schema_refresh_s",
    "idle_timeout_s",
    "auth_timeout_s",
    "max_message_bytes",
    "discover",
    "workers",
    "ledger_dir",
    "ledger_masked",
    "ledger_retention_days",
    "ledger_expected_values",
    "ledger_fp_rate",
    "redis",
}
_LISTENER_KEYS = {"listen", "upstream", "tls", "database_roles"}
_HTTP_KEYS = {
    "listen",
    "upstream",
    "tls",
    "api",
    "trusted_header",
    "trusted_proxies",
    "max_body_bytes",
    "upstream_headers",
    "upstream_ca",
}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "http": 80, "https": 443}


def expand_env(text: str, env: dict[str, str] | None = None, *, url: bool = False) -> str:
    """Replace `${VAR}` / `${VAR:-default}`; an unset variable without default is an error.

    With `url`, substituted values are percent-encoded: a password holding `@` or `/` must not
    change where the upstream URL points.
    """
    from urllib.parse import quote

    env = os.environ if env is None else env  # type: ignore[assignment]

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            value = env[name]
        elif default is not None:
            value = default
        else:
            raise ConfigError(f"environment variable {name} is not set")
        return quote(value, safe="") if url else value

    return _VAR.sub(sub, text)


def _expand_tree(node: Any, env: dict[str, str] | None, key: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _expand_tree(v, env, str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_tree(v, env, key) for v in node]
    if isinstance(node, str):
        return expand_env(node, env, url=key in ("upstream", "redis"))
    return node


def parse_endpoint(value: object, where: str) -> Endpoint:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"{where}: expected host:port, got {value!r}")
    host, _, port = value.rpartition(":")
    try:
        return Endpoint(host.strip("[]") or "127.0.0.1", int(port))
    except ValueError as exc:
        raise ConfigError(f"{where}: bad port in {value!r}") from exc


def parse_upstream(value: object, where: str) -> Upstream:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a URL")
    u = urlsplit(value)
    if u.scheme not in _DEFAULT_PORTS:
        raise ConfigError(f"{where}: unsupported scheme {u.scheme!r}")
    params = dict(p.split("=", 1) for p in u.query.split("&") if "=" in p)
    return Upstream(
        scheme=u.scheme,
        host=u.hostname or "127.0.0.1",
        port=u.port or _DEFAULT_PORTS[u.scheme],
        user=unquote(u.username or ""),
        password=unquote(u.password or ""),
        database=u.path.lstrip("/"),
        params=params,
    )


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0", ""})


def _flag(value: Any, where: str) -> bool:
    """A boolean key. `${VAR:-false}` expands to the string "false", which bool() reads as true:
    strings are read as YAML reads them, anything else is an error rather than a guess."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{where}: expected true or false, got {value!r}")


def _listener(raw: Any, name: str, base: Path) -> Listener:
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping")
    unknown = set(raw) - _LISTENER_KEYS
    if unknown:
        raise ConfigError(f"{name}: unknown key(s) {sorted(unknown)}")
    for key in ("listen", "upstream"):
        if key not in raw:
            raise ConfigError(f"{name}: missing `{key}`")
    tls = _tls(raw.get("tls"), name, base)
    return Listener(
        parse_endpoint(raw["listen"], f"{name}.listen"),
        parse_upstream(raw["upstream"], f"{name}.upstream"),
        tls,
        _database_roles(raw.get("database_roles"), f"{name}.database_roles"),
    )


def _tls(raw: Any, name: str, base: Path) -> TLSFiles | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {"cert", "key"}:
        raise ConfigError(f"{name}.tls: expected {{cert: FILE, key: FILE}}")
    return TLSFiles(base / raw["cert"], base / raw["key"])


def _http(raw: Any, base: Path) -> HttpListener:
    import ipaddress

    if not isinstance(raw, dict):
        raise ConfigError("http: expected a mapping")
    unknown = set(raw) - _HTTP_KEYS
    if unknown:
        raise ConfigError(f"http: unknown key(s) {sorted(unknown)}")
    for key in ("listen", "upstream"):
        if key not in raw:
            raise ConfigError(f"http: missing `{key}`")
    up = raw["upstream"]
    u = urlsplit(up) if isinstance(up, str) else None
    if u is None or u.scheme not in ("http", "https") or not u.hostname or u.path not in ("", "/") or u.query:
        raise ConfigError(f"http.upstream: expected http(s)://host[:port], got {up!r}")
    header = raw.get("trusted_header")
    if header is not None and (not isinstance(header, str) or not _HEADER_NAME.match(header)):
        raise ConfigError(f"http.trusted_header: not a header name: {header!r}")
    proxies = raw.get("trusted_proxies") or []
    if not isinstance(proxies, list):
        raise ConfigError("http.trusted_proxies: expected a list of networks (CIDR)")
    for net in proxies:
        try:
            ipaddress.ip_network(str(net), strict=False)
        except ValueError:
            raise ConfigError(f"http.trusted_proxies: not a network: {net!r}") from None
    if header is not None and not proxies:
        raise ConfigError("http.trusted_header needs trusted_proxies: the networks the gateway is in")
    headers = raw.get("upstream_headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and _HEADER_NAME.match(k) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ConfigError("http.upstream_headers: expected a mapping of header name to text")
    size = raw.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES)
    if isinstance(size, bool) or not str(size).strip().isdigit() or int(str(size)) < 1:
        raise ConfigError(f"http.max_body_bytes: expected a positive number of bytes, got {size!r}")
    api = raw.get("api")
    if api is not None and not isinstance(api, str):
        raise ConfigError("http.api: expected the name of an `apis` entry of the policy")
    return HttpListener(
        listen=parse_endpoint(raw["listen"], "http.listen"),
        upstream=f"{u.scheme}://{u.netloc}",
        tls=_tls(raw.get("tls"), "http", base),
        api=api,
        trusted_header=header,
        trusted_proxies=tuple(str(p) for p in proxies),
        max_body_bytes=int(str(size)),
        upstream_headers=dict(headers),
        upstream_ca=base / str(raw["upstream_ca"]) if raw.get("upstream_ca") else None,
    )


def _redis(value: Any) -> str | None:
    """`redis: redis://[:password@]host[:port][/db]` (or rediss:// for TLS), checked here so
    that a typo stops start-up instead of silently leaving each replica to count alone."""
    if value is None or value == "":
        return None
    u = urlsplit(value) if isinstance(value, str) else None
    if u is None or u.scheme not in ("redis", "rediss") or not u.hostname:
        raise ConfigError(f"redis: expected redis://host:port/db, got {value!r}")
    try:
        u.port  # noqa: B018 - parsing it is the check
        db = u.path.strip("/")
        if db and (not db.isdigit() or u.path.count("/") > 1):
            raise ValueError
    except ValueError:
        raise ConfigError(f"redis: bad port or database number in {value!r}") from None
    return value


def _workers(value: Any) -> int:
    """A whole number of processes. `${WORKERS:-2}` arrives as text; 2.5 or `true` is a mistake,
    not a number to round."""
    if isinstance(value, (bool, float)):
        raise ConfigError(f"workers: expected a whole number of processes, got {value!r}")
    try:
        n = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"workers: expected a whole number of processes, got {value!r}") from None
    if not 1 <= n <= MAX_WORKERS:
        raise ConfigError(f"workers: expected 1 to {MAX_WORKERS}, got {n}")
    return n


def _database_roles(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of database role name to its password")
    out: dict[str, str] = {}
    for role, password in raw.items():
        if not isinstance(role, str) or not _ROLE_NAME.match(role):
            raise ConfigError(f"{where}: bad database role name {role!r}")
        if not isinstance(password, str) or not password:
            raise ConfigError(
                f"{where}.{role}: expected a non-empty password (e.g. ${{CRM_VENDOR_PASSWORD}})"
            )
        out[role] = password
    return out


def _ledger(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """The ledger's keys, checked: a ledger sized by a typo would be useless or huge."""
    out: dict[str, Any] = {}
    if raw.get("ledger_dir"):
        if not raw.get("masking_key"):
            # The ledger's HMACs are as secret as their key: under the public development key,
            # anyone who reads ledger_dir could test every mobile number against a person's day.
            raise ConfigError("ledger_dir needs a masking_key (the ledger's values are keyed hashes)")
        out["ledger_dir"] = base / str(raw["ledger_dir"])
    out["ledger_masked"] = _flag(raw.get("ledger_masked", False), "ledger_masked")
    days = raw.get("ledger_retention_days", 180)
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ConfigError(f"ledger_retention_days: expected a whole number of days >= 1, got {days!r}")
    out["ledger_retention_days"] = days
    n = raw.get("ledger_expected_values", 20000)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100_000_000:
        raise ConfigError(f"ledger_expected_values: expected a whole number from 1 to 100000000, got {n!r}")
    out["ledger_expected_values"] = n
    p = raw.get("ledger_fp_rate", 1e-4)
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p < 0.5:
        raise ConfigError(f"ledger_fp_rate: expected a rate between 0 and 0.5, got {p!r}")
    out["ledger_fp_rate"] = float(p)
    return out


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from exc
    try:
        raw = _expand_tree(yaml.safe_load(text), env)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}")
    if "policy" not in raw:
        raise ConfigError(f"{path}: missing `policy`")
    base = path.parent
    try:
        key = raw.get("masking_key") or ""
        return Config(
            path=path,
            policy=base / str(raw["policy"]),
            audit_log=base / str(raw["audit_log"]) if raw.get("audit_log") else None,
            audit_required=_flag(raw.get("audit_required", False), "audit_required"),
            metrics=parse_endpoint(raw["metrics"], "metrics") if raw.get("metrics") else None,
            postgres=_listener(raw["postgres"], "postgres", base) if raw.get("postgres") else None,
            mysql=_listener(raw["mysql"], "mysql", base) if raw.get("mysql") else None,
            http=_http(raw["http"], base) if raw.get("http") else None,
            masking_key=str(key).encode(),
            timezone=str(raw.get("timezone", "Asia/Shanghai")),
            schema_refresh_s=float(raw.get("schema_refresh_s", 300.0)),
            idle_timeout_s=float(raw.get("idle_timeout_s", 0.0)),
            auth_timeout_s=float(raw.get("auth_timeout_s", 30.0)),
            max_message_bytes=int(raw.get("max_message_bytes", 64 * 1024 * 1024)),
            discover=_flag(raw.get("discover", True), "discover"),
            workers=_workers(raw.get("workers", 1)),
            **_ledger(raw, base),
            redis=_redis(raw.get("redis")),
        )
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
