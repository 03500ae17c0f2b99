"""deploy/compose.yaml: services, ports, volumes and mounted files are consistent."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from policies import load_policy
from proxy.config import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_the_trial_has_the_five_services() -> None:
    assert set(compose()["services"]) == {"maskgate", "postgres", "mariadb", "prometheus", "grafana"}


def test_every_bind_mount_exists_and_every_named_volume_is_declared() -> None:
    c = compose()
    declared = set(c.get("volumes") or {})
    used = set()
    for name, svc in c["services"].items():
        for v in svc.get("volumes", []):
            source = v.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            else:
                used.add(source)
    assert used == declared


def test_published_ports_are_unique_and_databases_stay_on_loopback() -> None:
    seen = set()
    for name, svc in compose()["services"].items():
        for p in svc.get("ports", []):
            parts = str(p).split(":")
            host_port = parts[-2]
            assert host_port not in seen, f"host port {host_port} published twice"
            seen.add(host_port)
            if name != "maskgate":
                # Only maskgate is for clients: the databases and the consoles stay local.
                assert parts[0] == "127.0.0.1", f"{name} publishes {p} beyond loopback"


def test_maskgate_config_matches_the_compose_file(tmp_path: Path) -> None:
    c = compose()
    mg = c["services"]["maskgate"]
    env = {k: str(v) for k, v in mg["environment"].items()}
    mounts = dict(v.split(":")[:2] for v in mg["volumes"])
    cfg = load_config(DEPLOY / "compose" / "maskgate.yaml", env=env)
    # The policy file it names is in the directory mounted at its parent.
    policy_dir = next(src for src, dst in mounts.items() if dst == str(cfg.policy.parent))
    load_policy((DEPLOY / policy_dir / cfg.policy.name).resolve())
    # Its upstreams are the compose services, on their ports.
    assert cfg.postgres is not None and cfg.postgres.upstream.host == "postgres"
    assert cfg.mysql is not None and cfg.mysql.upstream.host == "mariadb"
    published = {str(p).split(":")[-1] for p in mg["ports"]}
    assert {str(cfg.postgres.listen.port), str(cfg.mysql.listen.port), str(cfg.metrics.port)} <= published
    # The trial databases accept the passwords the config is given.
    pg_init = (DEPLOY / "compose" / "postgres-init.sql").read_text()
    assert f"PASSWORD '{env['UPSTREAM_PASSWORD']}'" in pg_init
    assert f"PASSWORD '{env['CRM_VENDOR_PASSWORD']}'" in pg_init
    my_init = (DEPLOY / "compose" / "mariadb-init.sql").read_text()
    assert f"IDENTIFIED BY '{env['UPSTREAM_PASSWORD']}'" in my_init
    assert f"IDENTIFIED BY '{env['CRM_DESK_PASSWORD']}'" in my_init


def test_prometheus_scrapes_maskgate_and_loads_the_rules() -> None:
    c = compose()
    prom = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    (job,) = prom["scrape_configs"]
    assert job["job_name"] == "maskgate"  # the rules' `up{job="maskgate"}`
    assert job["static_configs"][0]["targets"] == ["maskgate:9187"]
    mounts = dict(v.split(":")[:2] for v in c["services"]["prometheus"]["volumes"])
    (rule_file,) = prom["rule_files"]
    rules_dir = next(src for src, dst in mounts.items() if rule_file.startswith(dst + "/"))
    assert (DEPLOY / rules_dir / Path(rule_file).name).exists()


def test_grafana_is_provisioned_with_the_dashboard() -> None:
    mounts = dict(v.split(":")[:2] for v in compose()["services"]["grafana"]["volumes"])
    assert mounts["./grafana/maskgate.json"].startswith("/var/lib/grafana/dashboards/")
    prov = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "maskgate.yaml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_the_seed_files_create_what_the_demo_policy_needs() -> None:
    from proxy.demo import data

    pg_init = (DEPLOY / "compose" / "postgres-init.sql").read_text()
    assert data.SCHEMA_SQL in pg_init and data.GRANTS_SQL in pg_init
    my_init = (DEPLOY / "compose" / "mariadb-init.sql").read_text()
    assert data.MYSQL_SCHEMA_SQL in my_init and data.MYSQL_GRANTS_SQL in my_init
    assert "INSERT INTO customers VALUES" in pg_init and "INSERT INTO customers VALUES" in my_init


def test_the_postgres_seed_runs_and_gives_the_accounts_their_rights(tmp_path: Path) -> None:
    """What the postgres image's entrypoint does with it: psql as the superuser in `crm`."""
    import psycopg

    from proxy.demo.embedded_pg import EmbeddedPostgres

    pg = EmbeddedPostgres(tmp_path / "pg").start()
    try:
        pg.psql("CREATE DATABASE crm")
        pg.psql((DEPLOY / "compose" / "postgres-init.sql").read_text(), "crm")
        with psycopg.connect(pg.dsn("maskgate_svc", "maskgate-trial", "crm")) as c:
            assert c.execute("SELECT count(*) FROM customers").fetchone() == (200,)
        with psycopg.connect(pg.dsn("crm_vendor", "crm-vendor-trial", "crm")) as c:
            # The database backs the vendor's row filter with row-level security.
            branches = c.execute("SELECT DISTINCT branch_id FROM customers").fetchall()
            assert branches == [(12,)]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute("SELECT * FROM audit_trail")
    finally:
        pg.destroy()
