"""Hot reload: a half-written or emptied policy file never replaces the running policy by itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
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


def configmap_volume(root: Path, text: str) -> None:
    """A directory laid out as the kubelet lays out a ConfigMap volume (its AtomicWriter): the
    files in a timestamped hidden directory, `..data` a symlink to it, each key a symlink through
    `..data`. Called again, it swaps in new contents the way an update does."""
    root.mkdir(exist_ok=True)
    old = os.readlink(root / "..data") if (root / "..data").is_symlink() else None
    fresh = root / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    fresh.mkdir()
    (fresh / "policy.yaml").write_text(text, encoding="utf-8")
    (root / "..data_tmp").symlink_to(fresh.name)
    os.rename(root / "..data_tmp", root / "..data")  # the one atomic step
    if not (root / "policy.yaml").is_symlink():
        (root / "policy.yaml").symlink_to("..data/policy.yaml")
    if old is not None:
        shutil.rmtree(root / old)


def _watch_configmap(tmp_path: Path, *, directory: bool) -> None:
    vol = tmp_path / "policy"
    configmap_volume(vol, DEMO.read_text(encoding="utf-8"))
    path = vol if directory else vol / "policy.yaml"
    metrics = Metrics(CollectorRegistry())
    guard = Guard(load_policy(path), metrics=metrics)
    r = PolicyReloader(guard, path, metrics, settle=0.05)

    async def scenario() -> int | None:
        task = asyncio.create_task(r.watch())
        await asyncio.sleep(0.5)  # the watcher is set up
        # Same length as before: only what the symlinks resolve to tells the change apart.
        configmap_volume(vol, DEMO.read_text(encoding="utf-8").replace("max_rows: 200", "max_rows: 201"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and r.guard.policy.roles["vendor"].max_rows == 200:
            await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return r.guard.policy.roles["vendor"].max_rows

    assert asyncio.run(scenario()) == 201
    assert metrics.registry.get_sample_value("maskgate_policy_reloads_total", {"result": "success"}) == 1


def test_a_configmap_update_of_the_policy_file_is_picked_up(tmp_path: Path) -> None:
    """`policy: /etc/maskgate/policy/policy.yaml` from a ConfigMap volume: the update is a rename
    of `..data`, and no event names policy.yaml itself."""
    _watch_configmap(tmp_path, directory=False)


def test_a_configmap_update_of_a_policy_directory_is_picked_up(tmp_path: Path) -> None:
    _watch_configmap(tmp_path, directory=True)
