"""Policy hot reload: on file change or SIGHUP, validate the whole policy, then swap it atomically.

Owns only when and how a reload happens. A policy with any error is not applied at all; the last
good one keeps running and the error goes to stderr and to `maskgate_policy_reloads_total`.

Editors and deploy tools write files in steps: a file caught half-written can be a *valid*
policy with no users, which would refuse everyone. So a change is read only once the file has
stopped changing (same size and mtime over `settle` seconds), and a file-watch reload that would
remove every user or every role is refused; the operator applies such a policy deliberately with
SIGHUP after `maskgate check`. Replacing the file atomically (write a temporary file, then rename
it over the policy) avoids half-written reads altogether.

A Kubernetes ConfigMap volume is replaced that way, one level up: the kubelet writes the new
files into a fresh hidden directory, points the `..data` symlink at it with a rename, and removes
the old directory; `policy.yaml` itself is a symlink through `..data` that never changes. No
event then names the policy path, so a change counts when what the path resolves to (its real
path, size and mtime) differs from what it was, whatever the event named.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from policies import PolicyError, load_policy

from .services.guard import Guard
from .services.metrics import Metrics


def _empties(old: Any, new: Any) -> str | None:
    """What a new policy would take away entirely, or None."""
    if old.users and not new.users:
        return "every user"
    if old.roles and not new.roles:
        return "every role"
    return None


class PolicyReloader:
    def __init__(self, guard: Guard, path: Path, metrics: Metrics, *, settle: float = 0.5) -> None:
        self.guard = guard
        self.path = path
        self.metrics = metrics
        self.settle = settle
        self._lock = asyncio.Lock()

    def _rejected(self, why: str) -> bool:
        self.metrics.policy_reloads.labels(result="failure").inc()
        print(
            f"maskgate: policy reload rejected, keeping revision {self.guard.policy.revision}:\n  {why}",
            file=sys.stderr,
            flush=True,
        )
        return False

    def reload_now(self, *, force: bool = False) -> bool:
        """Load, validate and swap. Returns whether a new policy is in force. Without `force`
        (file-watch reloads), a policy that removes every user or every role is refused."""
        try:
            policy = load_policy(self.path)
        except PolicyError as exc:
            return self._rejected("\n  ".join(str(e) for e in getattr(exc, "errors", [exc])))
        except OSError as exc:
            self.metrics.policy_reloads.labels(result="failure").inc()
            print(f"maskgate: policy reload failed: {exc}", file=sys.stderr, flush=True)
            return False
        if policy.revision == self.guard.policy.revision:
            return False
        empties = _empties(self.guard.policy, policy)
        if empties is not None and not force:
            return self._rejected(
                f"{self.path} would remove {empties} (a file caught half-written?); "
                "run `maskgate check` on it and send SIGHUP to apply it anyway"
            )
        self.guard.swap_policy(policy)
        self.metrics.policy_reloads.labels(result="success").inc()
        print(f"maskgate: policy revision {policy.revision} in force", file=sys.stderr, flush=True)
        return True

    async def reload(self, *, force: bool = False) -> bool:
        async with self._lock:
            # Parsing and compiling a large policy can take a while: keep it off the event loop.
            return await asyncio.to_thread(lambda: self.reload_now(force=force))

    def _fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        files = sorted(self.path.glob("*.yaml")) if self.path.is_dir() else [self.path]
        out = []
        for f in files:
            try:
                st = f.stat()
            except OSError:
                continue
            out.append((os.path.realpath(f), st.st_size, st.st_mtime_ns))
        return tuple(out)

    async def settled(self) -> None:
        """Return once the policy file(s) stopped changing for `settle` seconds."""
        last = self._fingerprint()
        while True:
            await asyncio.sleep(self.settle)
            now = self._fingerprint()
            if now == last:
                return
            last = now

    async def watch(self) -> None:
        """Reload whenever the policy file (or any file in the policy directory) changes."""
        from watchfiles import awatch

        target = self.path if self.path.is_dir() else self.path.parent
        seen = self._fingerprint()
        async for changes in awatch(target, debounce=300, step=100):
            named = any(Path(p).resolve() == self.path.resolve() for _, p in changes)
            if self.path.is_dir() or named or self._fingerprint() != seen:
                await self.settled()
                await self.reload()
            seen = self._fingerprint()
