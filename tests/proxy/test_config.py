from pathlib import Path

import pytest

from proxy.config import ConfigError, expand_env, load_config

FULL = """
policy: policies/demo.yaml
audit_log: var/audit.jsonl
audit_required: true
metrics: 127.0.0.1:9187
postgres:
  listen: 127.0.0.1:6432
  upstream: postgresql://maskgate_svc:${UPSTREAM_PASSWORD}@127.0.0.1:5432/crm
  tls: {cert: certs/server.crt, key: certs/server.key}
  database_roles:
    crm_vendor: ${CRM_VENDOR_PASSWORD}
mysql:
  listen: 127.0.0.1:6033
  upstream: mysql://maskgate_svc:${UPSTREAM_PASSWORD}@127.0.0.1:3306/crm
"""


PG_LISTENER = "policy: p.yaml\npostgres: {listen: ':1', upstream: 'postgresql://x@h/d', "


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "maskgate.yaml"
    p.write_text(text)
    return p


def test_full_config_resolves_paths_and_env(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, FULL), env={"UPSTREAM_PASSWORD": "s3cr:t@", "CRM_VENDOR_PASSWORD": "v@/x"}
    )
    assert cfg.policy == tmp_path / "policies/demo.yaml"
    assert cfg.audit_log == tmp_path / "var/audit.jsonl"
    assert cfg.audit_required is True
    assert str(cfg.metrics) == "127.0.0.1:9187"
    assert cfg.postgres is not None and cfg.postgres.tls is not None
    up = cfg.postgres.upstream
    assert (up.user, up.password, up.host, up.port, up.database) == (
        "maskgate_svc",
        "s3cr:t@",
        "127.0.0.1",
        5432,
        "crm",
    )
    assert cfg.postgres.tls.cert == tmp_path / "certs/server.crt"
    assert cfg.postgres.database_roles == {"crm_vendor": "v@/x"}  # not URL-encoded: not in a URL
    assert cfg.mysql is not None and cfg.mysql.upstream.port == 3306 and cfg.mysql.database_roles == {}
    assert cfg.http is None


def test_dsn_quotes_credentials(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL), env={"UPSTREAM_PASSWORD": "a b/c", "CRM_VENDOR_PASSWORD": "v"})
    assert cfg.postgres is not None
    assert cfg.postgres.upstream.dsn("other") == "postgresql://maskgate_svc:a%20b%2Fc@127.0.0.1:5432/other"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("policy: p.yaml\naudit_requred: true\n", "unknown key"),
        ("audit_log: a\n", "missing `policy`"),
        ("policy: p.yaml\npostgres: {listen: 6432, upstream: postgresql://x@h/db}\n", "host:port"),
        (
            "policy: p.yaml\npostgres: {listen: '127.0.0.1:6432', upstream: 'ftp://h/db'}\n",
            "unsupported scheme",
        ),
        ("policy: p.yaml\npostgres: {listen: '127.0.0.1:6432'}\n", "missing `upstream`"),
        ("policy: ${NOPE}\n", "NOPE is not set"),
        ("- a\n- b\n", "mapping"),
        (f"{PG_LISTENER}database_roles: [a]}}\n", "postgres.database_roles: expected a mapping"),
        (f"{PG_LISTENER}database_roles: {{'a b': x}}}}\n", "bad database role name 'a b'"),
        (
            f"{PG_LISTENER}database_roles: {{r: ''}}}}\n",
            "postgres.database_roles.r: expected a non-empty password",
        ),
    ],
)
def test_bad_configs_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write(tmp_path, text), env={})
    assert str(tmp_path) in str(info.value)


def test_env_default() -> None:
    assert expand_env("a ${X:-d} ${Y}", {"Y": "y"}) == "a d y"


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("${AR:-false}", False), ("${AR:-on}", True), ("false", False)]
)
def test_audit_required_reads_expanded_strings_as_booleans(
    tmp_path: Path, value: str, expected: bool
) -> None:
    (tmp_path / "m.yaml").write_text(f"policy: p.yaml\naudit_required: {value}\n")
    assert load_config(tmp_path / "m.yaml", env={}).audit_required is expected


def test_audit_required_refuses_a_guess(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("policy: p.yaml\naudit_required: maybe\n")
    with pytest.raises(ConfigError, match="audit_required: expected true or false"):
        load_config(tmp_path / "m.yaml", env={})


def test_discover_defaults_on_and_reads_a_flag(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("policy: p.yaml\n")
    assert load_config(tmp_path / "m.yaml", env={}).discover is True
    (tmp_path / "m.yaml").write_text("policy: p.yaml\ndiscover: ${DISCOVER:-false}\n")
    assert load_config(tmp_path / "m.yaml", env={}).discover is False
    (tmp_path / "m.yaml").write_text("policy: p.yaml\ndiscover: sometimes\n")
    with pytest.raises(ConfigError, match="discover: expected true or false"):
        load_config(tmp_path / "m.yaml", env={})


@pytest.mark.parametrize(
    "database", ["crm?host=127.0.0.1&port=1", "crm/../x", "crm#x", "c rm&sslmode=disable"]
)
def test_a_clients_database_name_cannot_change_where_the_service_account_connects(
    tmp_path: Path, database: str
) -> None:
    import psycopg

    (tmp_path / "m.yaml").write_text(
        "policy: p.yaml\npostgres:\n  listen: 127.0.0.1:6432\n"
        "  upstream: postgresql://svc:pw@10.0.0.5:5433/crm\n"
    )
    dsn = load_config(tmp_path / "m.yaml", env={}).postgres.upstream.dsn(database)  # type: ignore[union-attr]
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    assert (info["host"], info["port"], info["dbname"]) == ("10.0.0.5", "5433", database)
    assert set(info) == {"host", "port", "dbname", "user", "password"}


def test_workers_defaults_to_one_and_reads_a_whole_number(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("policy: p.yaml\n")
    assert load_config(tmp_path / "m.yaml", env={}).workers == 1
    (tmp_path / "m.yaml").write_text("policy: p.yaml\nworkers: ${WORKERS:-4}\n")
    assert load_config(tmp_path / "m.yaml", env={}).workers == 4
    assert load_config(tmp_path / "m.yaml", env={"WORKERS": "2"}).workers == 2
    for bad in ("0", "-1", "2.5", "true", "many", "100000"):
        (tmp_path / "m.yaml").write_text(f"policy: p.yaml\nworkers: {bad}\n")
        with pytest.raises(ConfigError, match="workers: expected"):
            load_config(tmp_path / "m.yaml", env={})


def test_ledger_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "m.yaml"
    cfg.write_text("policy: p.yaml\n")
    c = load_config(cfg)
    assert (c.ledger_dir, c.ledger_masked, c.ledger_retention_days) == (None, False, 180)
    assert (c.ledger_expected_values, c.ledger_fp_rate) == (20000, 1e-4)
    cfg.write_text(
        "policy: p.yaml\nmasking_key: k\nledger_dir: var/ledger\nledger_masked: true\n"
        "ledger_retention_days: 30\n"
        "ledger_expected_values: 5000\nledger_fp_rate: 0.001\n"
    )
    c = load_config(cfg)
    assert c.ledger_dir == tmp_path / "var" / "ledger" and c.ledger_masked
    assert (c.ledger_retention_days, c.ledger_expected_values, c.ledger_fp_rate) == (30, 5000, 0.001)


@pytest.mark.parametrize(
    "line",
    [
        "ledger_retention_days: 0",
        "ledger_expected_values: many",
        "ledger_fp_rate: 0.9",
        "ledger_masked: perhaps",
    ],
)
def test_bad_ledger_keys_are_refused(tmp_path: Path, line: str) -> None:
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"policy: p.yaml\n{line}\n")
    with pytest.raises(ConfigError, match=line.split(":")[0]):
        load_config(cfg)


def test_redis_names_the_shared_budget_store(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("policy: p.yaml\n")
    assert load_config(tmp_path / "m.yaml", env={}).redis is None
    (tmp_path / "m.yaml").write_text("policy: p.yaml\nredis: redis://:${REDIS_PASSWORD}@10.0.0.7:6380/2\n")
    # An expanded password is percent-encoded: a `@` or `/` in it cannot move the host.
    url = load_config(tmp_path / "m.yaml", env={"REDIS_PASSWORD": "p@ss/1"}).redis
    assert url == "redis://:p%40ss%2F1@10.0.0.7:6380/2"
    import redis

    kw = redis.connection.parse_url(url)
    assert (kw["host"], kw["port"], kw["db"], kw["password"]) == ("10.0.0.7", 6380, 2, "p@ss/1")
    for bad in ("http://10.0.0.7:6379", "10.0.0.7:6379", "redis://", "redis://h:port/0", "redis://h:6379/x"):
        (tmp_path / "m.yaml").write_text(f"policy: p.yaml\nredis: '{bad}'\n")
        with pytest.raises(ConfigError, match="redis: "):
            load_config(tmp_path / "m.yaml", env={})
