"""Policy hot reload: on file change or SIGHUP, validate the whole policy, then swap it atomically.

Owns only when and how a reload happens. A policy with any error is not applied at all; the last
good one keeps running and the error goes to stderr and to `maskgate_policy_reloads_total`.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from policies import PolicyError, load_policy

from .services.guard import Guard
from .services.metrics import Metrics


class PolicyReloader:
    def __init__(self, guard: Guard, path: Path, metrics: Metrics) -> None:
        self.guard = guard
        self.path = path
        self.metrics = metrics
        self._lock = asyncio.Lock()

    def reload_now(self) -> bool:
        """Load, validate and swap. Returns whether a new policy is in force."""
        try:
            policy = load_policy(self.path)
        except PolicyError as exc:
            self.metrics.policy_reloads.labels(result="failure").inc()
            detail = "\n  ".join(str(e) for e in getattr(exc, "errors", [exc]))
            print(
                f"maskgate: policy reload rejected, keeping revision "
                f"{self.guard.policy.revision}:\n  {detail}",
                file=sys.stderr,
                flush=True,
            )
            return False
        except OSError as exc:
            self.metrics.policy_reloads.labels(result="failure").inc()
            print(f"maskgate: policy reload failed: {exc}", file=sys.stderr, flush=True)
            return False
        if policy.revision == self.guard.policy.revision:
            return False
        self.guard.swap_policy(policy)
        self.metrics.policy_reloads.labels(result="success").inc()
        print(f"maskgate: policy revision {policy.revision} in force", file=sys.stderr, flush=True)
        return True

    async def reload(self) -> bool:
        async with self._lock:
            # Parsing and compiling a large policy can take a while: keep it off the event loop.
            return await asyncio.to_thread(self.reload_now)

    async def watch(self) -> None:
        """Reload whenever the policy file (or any file in the policy directory) changes."""
        from watchfiles import awatch

        target = self.path if self.path.is_dir() else self.path.parent
        async for changes in awatch(target, debounce=300, step=100):
            if self.path.is_dir() or any(Path(p).resolve() == self.path.resolve() for _, p in changes):
                await self.reload()
