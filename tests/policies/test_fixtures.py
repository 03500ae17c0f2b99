"""Data-driven decision tests: every case in tests/policies/fixtures/*.yaml (DBA-readable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from policies import Engine, Schema, load_policy
from policies.cases import _role_for, check_case

FIXTURES = Path(__file__).parent / "fixtures"
_ENGINES: dict[str, tuple[Any, Engine]] = {}


def _suite(path: Path) -> tuple[Any, Engine]:
    key = str(path)
    if key not in _ENGINES:
        doc = yaml.safe_load(path.read_text())
        pol = doc["policy"]
        policy = load_policy([path.parent / p for p in pol] if isinstance(pol, list) else path.parent / pol)
        schema = Schema.load(path.parent / doc["schema"]) if doc.get("schema") else Schema()
        _ENGINES[key] = (policy, Engine(policy, schema))
    return _ENGINES[key]


def _cases() -> list[Any]:
    out = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        for i, case in enumerate(doc.get("cases") or []):
            out.append(pytest.param(path, case, id=f"{path.stem}-{i:03d}-{case.get('name', '')}"))
    return out


CASES = _cases()


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 200


@pytest.mark.parametrize(("path", "case"), CASES)
def test_case(path: Path, case: dict[str, Any]) -> None:
    policy, engine = _suite(path)
    role = _role_for(policy, case)
    assert role is not None, f"unknown user in case {case}"
    sp = case.get("search_path")
    decision = engine.decide(
        role,
        case["sql"],
        dialect=case.get("dialect", "postgres"),
        search_path=tuple(sp) if sp else None,
        database=case.get("database"),
    )
    assert check_case(case, decision) == []
