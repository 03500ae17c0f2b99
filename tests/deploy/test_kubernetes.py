"""deploy/kubernetes: the manifests validate against Kubernetes' schemas and say what the issue asks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from policies import load_policy
from proxy.config import load_config

K8S = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
# A current release, and the newest kubernetes-validate ships schemas for.
VERSIONS = ("1.33.0", "latest")


def resources() -> list[dict[str, Any]]:
    out = []
    for f in sorted(K8S.glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        out += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return out


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [r for r in resources() if r["kind"] == kind]


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(f.name for f in K8S.glob("*.yaml") if f.name != "kustomization.yaml")


@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_validate_strictly(version: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (test extras)")
    if version == "latest":
        version = kv.utils.latest_version()
    checked = 0
    for r in resources():
        if r["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: kubernetes-validate has no schema for it (checked below)
        kv.validate(r, version, strict=True)
        checked += 1
    assert checked >= 6


def test_servicemonitor_shape() -> None:
    """The Prometheus Operator's CRD, checked by hand: it must select the Service and scrape its
    named metrics port (the job label then is the Service name the rules expect)."""
    (sm,) = by_kind("ServiceMonitor")
    (svc,) = by_kind("Service")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(sm["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (ep,) = sm["spec"]["endpoints"]
    assert set(ep) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
    assert ep["path"] == "/metrics" and ep["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert svc["metadata"]["name"] == "maskgate"


def test_deployment_is_three_probed_replicas_spread_over_nodes() -> None:
    (dep,) = by_kind("Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 3
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == 9187
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["memory"]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    (pdb,) = by_kind("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]


def test_the_policy_is_a_directory_mount_so_updates_reach_the_pod() -> None:
    """A ConfigMap mounted with subPath is never updated: hot reload needs the directory mount."""
    (dep,) = by_kind("Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    policy_vol = next(
        v["name"] for v in pod["volumes"] if v.get("configMap", {}).get("name") == "maskgate-policy"
    )
    mount = next(m for m in c["volumeMounts"] if m["name"] == policy_vol)
    assert "subPath" not in mount and mount["mountPath"] == "/etc/maskgate/policy"


def test_config_and_policy_load_as_maskgate_reads_them(tmp_path: Path) -> None:
    config_map, policy_map = by_kind("ConfigMap")
    (secret, _tls) = by_kind("Secret")
    (tmp_path / "maskgate.yaml").write_text(config_map["data"]["maskgate.yaml"])
    (tmp_path / "policy.yaml").write_text(policy_map["data"]["policy.yaml"])
    env = dict(os.environ, **secret["stringData"], POD_NAME="maskgate-abc")
    cfg = load_config(tmp_path / "maskgate.yaml", env=env)
    assert cfg.metrics is not None and cfg.metrics.port == 9187 and cfg.metrics.host == "0.0.0.0"
    assert str(cfg.policy) == "/etc/maskgate/policy/policy.yaml"
    assert str(cfg.audit_log) == "/var/log/maskgate/audit-maskgate-abc.jsonl"
    policy = load_policy(tmp_path / "policy.yaml")
    assert "vendor_zhang" in policy.users
    # Every ${VAR} the config names comes from the Secret or the pod's own name.
    (dep,) = by_kind("Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
