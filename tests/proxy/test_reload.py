"""Hot reload: a half-written or emptied policy file never replaces the running policy by itself."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from prometheus_client import CollectorRegistry

from policies import load_policy
from proxy.reload import PolicyReloader
from proxy.services.guard import Guard
from proxy.services.metrics import Metrics

DEMO = Path(__file__).parents[2] / "policies" / "examples" / "demo.yaml"


def reloader(tmp_path: Path, settle: float = 0.05) -> tuple[PolicyReloader, Path, Metrics]:
    policy = tmp_path / "policy.yaml"
    shutil.copy(DEMO, policy)
    metrics = Metrics(CollectorRegistry())
    guard = Guard(load_policy(policy), metrics=metrics)
    return PolicyReloader(guard, policy, metrics, settle=settle), policy, metrics


def failures(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("maskgate_policy_reloads_total", {"result": "failure"}) or 0


def test_a_policy_without_users_is_not_applied_by_a_file_change(tmp_path: Path) -> None:
    r, policy, metrics = reloader(tmp_path)
    before = r.guard.policy.revision
    # What a half-written file can look like: valid YAML, valid policy, nobody in it.
    text = DEMO.read_text(encoding="utf-8")
    policy.write_text(text[: text.index("\nusers:")] + "\n", encoding="utf-8")
    assert r.reload_now() is False
    assert r.guard.policy.revision == before and failures(metrics) == 1
    # The operator means it (SIGHUP): applied.
    assert r.reload_now(force=True) is True
    assert not r.guard.policy.users


def test_a_normal_edit_is_applied(tmp_path: Path) -> None:
    r, policy, _ = reloader(tmp_path)
    policy.write_text(policy.read_text(encoding="utf-8").replace("max_rows: 200", "max_rows: 50"))
    assert r.reload_now() is True
    assert r.guard.policy.roles["vendor"].max_rows == 50


def test_reload_waits_until_the_file_stops_changing(tmp_path: Path) -> None:
    r, policy, _ = reloader(tmp_path, settle=0.2)

    async def scenario() -> bool:
        async def writer() -> None:
            for i in range(4):  # a slow writer: a change every 0.1 s
                policy.write_text(policy.read_text(encoding="utf-8") + f"\n# {i}\n", encoding="utf-8")
                await asyncio.sleep(0.1)

        task = asyncio.create_task(writer())
        await asyncio.sleep(0)  # the first write happens
        await r.settled()
        finished = task.done()
        await task
        return finished

    assert asyncio.run(scenario())  # not read before the last write had settled
