"""`maskgate test` cases for HTTP requests (`request: METHOD /path?query`)."""

from __future__ import annotations

from pathlib import Path

from policies.cases import run_suite

DEMO = Path(__file__).parents[2] / "policies" / "examples" / "demo.yaml"


def _suite(tmp_path: Path, cases: str) -> list[tuple[bool, list[str]]]:
    path = tmp_path / "cases.yaml"
    path.write_text(f"policy: {DEMO}\ncases:\n{cases}")
    result = run_suite(path)
    assert result.error is None, result.error
    return [(r.ok, r.problems) for r in result.results]


def test_http_cases_pass_and_fail(tmp_path: Path) -> None:
    results = _suite(
        tmp_path,
        "  - {user: vendor_zhang, request: GET /api/clients/1, expect: allow, row_limit: 200}\n"
        "  - {user: vendor_zhang, request: GET /api/admin, expect: allow}\n"
        "  - {user: vendor_zhang, request: 'GET /api/clients?sort=mobile', expect: block,"
        " reason: route_denied}\n"
        "  - {user: desk_li, request: 'GET /api/clients?mobile=1,2', expect: allow, lookups: 3}\n"
        "  - {user: desk_li, request: GET /api/clients, body: {mobile: '1'}, expect: allow, lookups: 1}\n"
        "  - {user: desk_li, request: GET /api/clients, expect: allow, classes: [mobile]}\n",
    )
    assert results[0] == (True, [])
    assert not results[1][0] and "expected allow, got block (route_denied" in results[1][1][0]
    assert not results[2][0] and "expected reason route_denied, got masked_predicate" in results[2][1][0]
    assert results[3] == (False, ["lookups: expected 3, got 2"])
    assert results[4] == (True, [])
    assert not results[5][0] and results[5][1][0].startswith("classes: expected ['mobile']")


def test_malformed_http_cases(tmp_path: Path) -> None:
    results = _suite(
        tmp_path,
        "  - {user: vendor_zhang, request: /api/clients}\n"
        "  - {user: vendor_zhang, request: GET /x, api: nope}\n"
        "  - {user: vendor_zhang, request: GET /x, sql: SELECT 1}\n"
        "  - {user: vendor_zhang}\n",
    )
    assert [ok for ok, _ in results] == [False] * 4
    assert "METHOD /path?query" in results[0][1][0]
    assert "unknown api 'nope'" in results[1][1][0]
    assert "one of `sql` or `request`" in results[2][1][0] and "one of" in results[3][1][0]
