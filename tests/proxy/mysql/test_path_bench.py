"""bench/mysql_path_bench.py replays real work: its exchanges go through a logged-in session and
come out masked (a smoke test; its figures come from running it, never from a timed test)."""

from __future__ import annotations

import pytest

from bench import mysql_path_bench


@pytest.mark.parametrize("mode", ["simple", "prepared"])
def test_the_replayed_lookups_are_decided_and_masked(mode: str) -> None:
    r = mysql_path_bench.measure(mode, 20, 0, rounds=1)
    assert r["transactions"] == 20 and r["cpu_us_per_tx"] > 0
