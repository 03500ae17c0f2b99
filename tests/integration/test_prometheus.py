"""maskgate watched by a real Prometheus: `maskgate serve` and Prometheus (Debian's package) as
separate processes on free ports; refused and masked statements through psycopg; the counters
read back through Prometheus's HTTP API and the refusal-burst, budget and canary alerts of
deploy/prometheus/maskgate.rules.yml and maskgate-disclosure.rules.yml firing. Also the
operator endpoints and `maskgate status` against the real process."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from proxy.cli import main
from proxy.demo.embedded_pg import EmbeddedPostgres, free_port, wait_port
from tests.conftest import start_crm
from tests.integration.test_serve_process import SVC_PW, start

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "maskgate.rules.yml"
DISCLOSURE_RULES = REPO / "deploy" / "prometheus" / "maskgate-disclosure.rules.yml"
PROMETHEUS_MISSING = "prometheus not installed (apt-get install prometheus)"
BURST = 25  # refusals driven; the rule fires above 20 within its window


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = start_crm(tmp_path_factory.mktemp("pg-prometheus"), SVC_PW, 100)
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.mark.parametrize("rules", [RULES, DISCLOSURE_RULES], ids=lambda p: p.name)
def test_rules_copy_only_shortens_durations(rules: Path) -> None:
    original = rules.read_text()
    short = fast_rules(original)
    assert short != original
    strip = re.compile(r"\[\d+[smh]\]|for: \d+[smh]")
    assert strip.sub("", short) == strip.sub("", original)


def fast_rules(text: str) -> str:
    """The shipped rules with windows of 20 s and no `for:` wait, so a test sees them fire in
    seconds: durations substituted, every expression otherwise identical."""
    return re.sub(r"for: \d+[smh]", "for: 0s", re.sub(r"\[\d+[smh]\]", "[20s]", text))


def api(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]


def query(port: int, promql: str) -> list[dict[str, Any]]:
    return api(port, "query", query=promql)["result"]  # type: ignore[no-any-return]


def poll(pred: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.5)
    return pred()


def start_prometheus(tmp: Path, metrics_port: int) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(PROMETHEUS_MISSING)
    for rules in (RULES, DISCLOSURE_RULES):
        (tmp / rules.name).write_text(fast_rules(rules.read_text()))
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{RULES.name}, {DISCLOSURE_RULES.name}]\n"
        "scrape_configs:\n"
        "  - job_name: maskgate\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
    )
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )
    try:
        wait_port("127.0.0.1", port, timeout=30)
    except OSError:
        proc.kill()
        raise AssertionError((tmp / "prometheus.log").read_text()) from None
    # The port opens before the storage is ready: until then the API answers 503, and a test
    # that asks at once (one short read, then its alerts) would fail on it.
    if not poll(lambda: get(port, "/-/ready")[0] == 200, 30):
        proc.kill()
        raise AssertionError((tmp / "prometheus.log").read_text())
    return proc, port


def vendor(port: int) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        user="vendor_zhang",
        password="vendor-pass",
        dbname="crm",
        sslmode="disable",
        autocommit=True,
    )


def refuse(c: psycopg.Connection[Any], sql: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute(sql)


def get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_prometheus_scrapes_maskgate_and_the_refusal_burst_alert_fires(
    upstream: EmbeddedPostgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mport = free_port()
    (tmp_path / "mg").mkdir()
    s = start(tmp_path / "mg", upstream, extra=f"metrics: 127.0.0.1:{mport}\n")
    mg = s["proc"]
    prom: subprocess.Popen[bytes] | None = None
    try:
        # The operator endpoints of the real process.
        assert get(mport, "/healthz") == (200, "ok\n")
        assert poll(lambda: get(mport, "/readyz")[0] == 200, 10), get(mport, "/readyz")
        prom, pport = start_prometheus(tmp_path, mport)

        c = vendor(s["port"])
        # Masked values (the vendor sees phones masked) and a first refusal, so the series exist
        # before the burst: increase() counts from a series' first sample.
        phones = [r[0] for r in c.execute("SELECT phone FROM customers LIMIT 5").fetchall()]
        assert phones and all("*" in p for p in phones)
        refuse(c, "SELECT * FROM audit_trail")
        refuse(c, "SELECT id FROM customers WHERE phone = '13800001234'")  # masked_predicate

        # `maskgate status` against it: a vendor session, the policy revision, a reachable upstream.
        assert main(["status", "--config", str(tmp_path / "mg" / "maskgate.yaml")]) == 0
        out = capsys.readouterr().out
        assert out.startswith("maskgate: ready")
        assert any(line.split() == ["postgres", "vendor", "1"] for line in out.splitlines()), out
        assert re.search(r"policy revision: \w+", out), out

        scraped = poll(
            lambda: query(pport, 'maskgate_blocked_queries_total{job="maskgate",role="vendor"}'), 30
        )
        assert scraped, (tmp_path / "prometheus.log").read_text()
        assert {r["metric"]["reason"] for r in scraped} >= {"table_denied", "masked_predicate"}
        masked = query(pport, 'maskgate_masked_values_total{class="mobile"}')
        assert masked and float(masked[0]["value"][1]) >= 5

        for _ in range(BURST):
            refuse(c, "SELECT * FROM audit_trail")
        c.close()

        def firing() -> list[dict[str, Any]]:
            alerts = api(pport, "alerts")["alerts"]
            return [
                a
                for a in alerts
                if a["labels"]["alertname"] == "MaskgateRefusalBurst" and a["state"] == "firing"
            ]

        fired = poll(firing, 60)
        assert fired, api(pport, "alerts")
        assert fired[0]["labels"]["role"] == "vendor"
        assert fired[0]["labels"]["severity"] == "warning"
        assert "statements of role vendor" in fired[0]["annotations"]["summary"]
        # Nothing else in the rules misfires on a healthy proxy.
        assert not [
            a
            for a in api(pport, "alerts")["alerts"]
            if a["labels"]["alertname"]
            in {"MaskgateDown", "MaskgateAuditWriteFailures", "MaskgatePolicyReloadFailed"}
        ]
    finally:
        if prom is not None:
            prom.terminate()
            try:
                prom.wait(20)
            except subprocess.TimeoutExpired:
                prom.kill()
        mg.send_signal(signal.SIGTERM)
        try:
            mg.wait(20)
        except subprocess.TimeoutExpired:
            mg.kill()


def test_the_budget_alerts_fire(upstream: EmbeddedPostgres, tmp_path: Path) -> None:
    """A vendor reads their 10 rows per hour and is refused: MaskgateBudgetCrossed fires for the
    role and budget. The `redis` URL names a port nothing listens on: MaskgateBudgetStoreDown
    fires, and the budget still holds (each replica counts alone)."""
    mport = free_port()
    (tmp_path / "mg").mkdir()
    policy = (REPO / "policies/examples/demo.yaml").read_text()
    policy = policy.replace("    max_rows: 200\n", "    max_rows: 200\n    budgets: {rows_per_hour: 10}\n", 1)
    extra = f"metrics: 127.0.0.1:{mport}\nredis: redis://127.0.0.1:{free_port()}/0\n"
    s = start(tmp_path / "mg", upstream, extra=extra, policy_text=policy)
    prom: subprocess.Popen[bytes] | None = None
    try:
        prom, pport = start_prometheus(tmp_path, mport)
        c = vendor(s["port"])
        assert len(c.execute("SELECT id FROM call_records LIMIT 10").fetchall()) == 10
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="10 rows per hour"):
            c.execute("SELECT id FROM call_records LIMIT 1")
        c.close()

        def firing(name: str) -> list[dict[str, Any]]:
            alerts = api(pport, "alerts")["alerts"]
            return [a for a in alerts if a["labels"]["alertname"] == name and a["state"] == "firing"]

        crossed = poll(lambda: firing("MaskgateBudgetCrossed"), 60)
        assert crossed, api(pport, "alerts")
        assert crossed[0]["labels"]["role"] == "vendor"
        assert crossed[0]["labels"]["budget"] == "rows_per_hour"
        down = poll(lambda: firing("MaskgateBudgetStoreDown"), 60)
        assert down, api(pport, "alerts")
        assert "counted by this replica alone" in s["stderr"].read_text()
    finally:
        if prom is not None:
            prom.terminate()
            try:
                prom.wait(20)
            except subprocess.TimeoutExpired:
                prom.kill()
        s["proc"].send_signal(signal.SIGTERM)
        try:
            s["proc"].wait(20)
        except subprocess.TimeoutExpired:
            s["proc"].kill()


def test_the_canary_alert_fires(upstream: EmbeddedPostgres, tmp_path: Path) -> None:
    """A canary customer planted with `maskgate canary plant` beside the served policy, then
    read through the proxy by the DBA (a clear role) without its numbers: MaskgateCanaryRead
    fires for role dba. The role's counter series is born with that read."""
    import contextlib
    import io

    mport = free_port()
    mg = tmp_path / "mg"
    mg.mkdir()
    # The policy `start` serves, written first so that plant reads its classes; the keys are
    # made under the masking key the served config names.
    (mg / "policy.yaml").write_text((REPO / "policies/examples/demo.yaml").read_text())
    (mg / "plant.yaml").write_text("policy: policy.yaml\nmasking_key: canary-alert-key\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(
            [
                "canary",
                "plant",
                "--schema",
                upstream.dsn("maskgate_svc", SVC_PW, "crm"),
                "--table",
                "crm.customers",
                "--count",
                "1",
                "--config",
                str(mg / "plant.yaml"),
            ]
        )
    assert code == 0
    planted = dict(kv.split("=", 1) for kv in out.getvalue().split("\n")[0].split("  "))
    assert (mg / "canaries.json").exists()
    s = start(mg, upstream, extra=f"metrics: 127.0.0.1:{mport}\nmasking_key: canary-alert-key\n")
    prom: subprocess.Popen[bytes] | None = None
    try:
        prom, pport = start_prometheus(tmp_path, mport)
        with psycopg.connect(
            host="127.0.0.1",
            port=s["port"],
            user="dba_wang",
            password="dba-pass",
            dbname="crm",
            sslmode="disable",
        ) as c:
            rows = c.execute(f"SELECT id, address FROM customers WHERE id = {int(planted['id'])}").fetchall()
        assert len(rows) == 1

        def firing() -> list[dict[str, Any]]:
            alerts = api(pport, "alerts")["alerts"]
            return [
                a
                for a in alerts
                if a["labels"]["alertname"] == "MaskgateCanaryRead" and a["state"] == "firing"
            ]

        fired = poll(firing, 60)
        assert fired, (api(pport, "alerts"), s["stderr"].read_text())
        assert fired[0]["labels"]["role"] == "dba"
        assert fired[0]["labels"]["severity"] == "critical"
    finally:
        if prom is not None:
            prom.terminate()
            try:
                prom.wait(20)
            except subprocess.TimeoutExpired:
                prom.kill()
        s["proc"].send_signal(signal.SIGTERM)
        try:
            s["proc"].wait(20)
        except subprocess.TimeoutExpired:
            s["proc"].kill()


def test_readyz_is_503_while_the_upstream_is_down(upstream: EmbeddedPostgres, tmp_path: Path) -> None:
    mport = free_port()
    s = start(tmp_path, upstream, extra=f"metrics: 127.0.0.1:{mport}\n")
    try:
        assert poll(lambda: get(mport, "/readyz")[0] == 200, 10)
        upstream.stop()
        try:
            _, body = poll(lambda: (r := get(mport, "/readyz"))[0] == 503 and r, 10)
            reasons = json.loads(body)["not_ready"]
            assert len(reasons) == 1 and reasons[0].startswith(f"postgres upstream 127.0.0.1:{upstream.port}")
            assert get(mport, "/healthz")[0] == 200  # alive: no restart would help
        finally:
            upstream.start()
        assert poll(lambda: get(mport, "/readyz")[0] == 200, 15)
    finally:
        s["proc"].send_signal(signal.SIGTERM)
        s["proc"].wait(20)
