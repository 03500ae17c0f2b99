"""JSON documents held inside values (a JSON string, a CSV cell, a form value, a line of text): masked
as JSON where they stand, and their records bounded by the same body-wide `max_rows`."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import masking
from proxy.http.bodies import BodyError, mask_body
from tests.proxy.http.test_bodies import MOBILE, SRC, _all_text, _readable_digits, jrun, plan, planted, run

SHOWN = "138****5678"


def _recs(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"id": i, "mobile": MOBILE} for i in range(start, start + n)]


# ------------------------------------------------------------------------------------ JSON values


def test_an_array_in_a_string_is_bounded_masked_and_stays_a_string() -> None:
    out, res = jrun({"payload": json.dumps(_recs(50))}, plan(max_rows=20))
    inner = json.loads(out["payload"])
    assert inner == [{"id": i, "mobile": SHOWN} for i in range(20)]
    assert res.items == 20 and res.truncated == 30


def test_doubly_encoded_json_stays_doubly_encoded_and_is_bounded() -> None:
    out, res = jrun({"payload": json.dumps(json.dumps(_recs(9)))}, plan(max_rows=4))
    inner = json.loads(json.loads(out["payload"]))
    assert [r["id"] for r in inner] == [0, 1, 2, 3] and {r["mobile"] for r in inner} == {SHOWN}
    # A whole body encoded twice: the body is a JSON string holding the document.
    res = run("json", json.dumps(json.dumps(_recs(9))), plan(max_rows=4))
    assert len(json.loads(json.loads(res.body))) == 4


def test_percent_encoded_json_in_a_value_is_read_as_a_client_decodes_it() -> None:
    out, res = jrun({"next": urllib.parse.quote(json.dumps(_recs(6)))}, plan(max_rows=2))
    inner = json.loads(urllib.parse.unquote(out["next"]))
    assert inner == [{"id": 0, "mobile": SHOWN}, {"id": 1, "mobile": SHOWN}] and res.truncated == 4


def test_records_inside_and_outside_strings_share_one_budget_in_document_order() -> None:
    doc = {"first": _recs(3), "payload": json.dumps(_recs(5, 3)), "last": _recs(2, 8)}
    out, res = jrun(doc, plan(max_rows=5))
    assert [r["id"] for r in out["first"]] == [0, 1, 2]
    assert [r["id"] for r in json.loads(out["payload"])] == [3, 4]
    assert out["last"] == [] and res.items == 5 and res.truncated == 3 + 2


def test_an_object_in_a_string_is_a_record_or_part_of_the_one_holding_it() -> None:
    # A record's contact held as JSON text is part of it, as `contact: {…}` would be.
    rows = [{"mobile": MOBILE, "contact": json.dumps({"mobile": MOBILE})} for _ in range(3)]
    out, res = jrun(rows, plan(max_rows=2))
    assert len(out) == 2 and json.loads(out[0]["contact"]) == {"mobile": SHOWN} and res.truncated == 1
    # A list of strings each holding a record: each is one.
    out, res = jrun({"rows": [json.dumps(r) for r in _recs(5)]}, plan(max_rows=3))
    assert [json.loads(r)["id"] for r in out["rows"]] == [0, 1, 2] and res.truncated == 2


def test_a_list_of_numbers_in_a_string_makes_its_object_a_record() -> None:
    rows = [{"id": i, "phones": json.dumps([MOBILE])} for i in range(4)]
    out, res = jrun(rows, plan(max_rows=2))
    assert [r["id"] for r in out] == [0, 1] and json.loads(out[0]["phones"]) == [SHOWN] and res.truncated == 2


def test_fields_inside_a_string_are_classified_by_the_path_through_it() -> None:
    # `**.bankAcct` is deny (null) for this plan, `**.owner` a person name no detector finds.
    out, _ = jrun({"data": json.dumps({"bankAcct": "x", "owner": "Zhang San"})}, plan())
    assert json.loads(out["data"]) == {"bankAcct": None, "owner": "Z**** S**"}
    # A classified string holding a document passes its class down, as an object would.
    out, _ = jrun({"owner": json.dumps({"first": "Zhang", "last": "San"})}, plan())
    assert json.loads(out["owner"]) == {"first": "Z****", "last": "S**"}


def test_a_duplicate_key_inside_a_string_never_passes_its_first_value() -> None:
    out, _ = jrun({"p": '{"owner": "Zhang San", "owner": "x"}'}, plan())
    assert "Zhang" not in out["p"]


def test_a_string_that_is_not_a_document_is_text_and_still_counts() -> None:
    rows = [{"note": f"[call {MOBILE}"} for _ in range(3)]
    out, res = jrun(rows, plan(max_rows=2))
    assert out == [{"note": f"[call {SHOWN}"}] * 2 and res.truncated == 1
    out, _ = jrun({"a": "[1, 2", "b": '"quoted"', "c": "{}", "d": " [1, 2] "}, plan())
    assert out == {"a": "[1, 2", "b": '"quoted"', "c": "{}", "d": "[1,2]"}  # documents come out compact


def test_a_document_in_a_string_too_deep_to_read_refuses_the_body() -> None:
    with pytest.raises(BodyError):
        jrun({"p": "[" * 5000 + "]" * 5000}, plan(max_rows=5))
    # Depth counts through the string as through the document itself.
    with pytest.raises(BodyError):
        jrun(_nest(150, json.dumps(_nest(150))), plan())


def _nest(depth: int, leaf: Any = 1) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


# ----------------------------------------------------------------------------- NDJSON, CSV


def test_ndjson_lines_and_the_documents_in_them_share_the_budget() -> None:
    lines = "".join(json.dumps({"p": json.dumps(_recs(3, 3 * i))}) + "\n" for i in range(4))
    res = run("ndjson", lines, plan(max_rows=5))
    ids = [r["id"] for line in res.body.decode().splitlines() for r in json.loads(json.loads(line)["p"])]
    assert ids == [0, 1, 2, 3, 4] and res.items == 5 and res.truncated == 7


def test_csv_cells_holding_json_count_with_their_rows() -> None:
    body = "id,payload\r\n" + "".join(
        f'{i},"{json.dumps(_recs(2)).replace(chr(34), chr(34) * 2)}"\r\n' for i in range(5)
    )
    res = run("csv", body, plan(max_rows=5))
    rows = res.body.decode().splitlines()[1:]
    # Row 0 and its two records, row 1 and its two records: five; the rest are cut.
    assert len(rows) == 2 and res.body.decode().count(SHOWN) == 3 and res.items == 5
    assert MOBILE not in res.body.decode()


# ------------------------------------------------------------------------------------ text


def test_event_stream_data_lines_are_walked_as_json() -> None:
    body = "".join(f"event: c\ndata: {json.dumps({'items': _recs(3, 3 * i)})}\n\n" for i in range(3))
    res = run("text", body, plan(max_rows=4))
    text = res.body.decode()
    # Five records cut, and the third event's document, emptied of its records, goes whole.
    assert text.count(SHOWN) == 4 and MOBILE not in text and res.truncated == 6
    assert text.endswith("event: c\ndata: \n\n")
    assert text.startswith('event: c\ndata: {"items":[{"id":0,"mobile":"138****5678"}')


def test_a_page_script_state_and_jsonp_are_walked_as_json() -> None:
    page = f"<html><script>window.__S__ = {json.dumps({'c': _recs(30)})};</script><p>hi</p></html>"
    res = run("text", page, plan(max_rows=2))
    assert res.body.decode().count(SHOWN) == 2 and res.body.decode().endswith(";</script><p>hi</p></html>")
    res = run("text", f"cb({json.dumps(_recs(9))})", plan(max_rows=3))
    assert len(json.loads(res.body.decode()[3:-1])) == 3


def test_each_document_in_a_text_counts_at_least_as_a_line_would() -> None:
    body = "".join(f'data: ["{MOBILE}"]\n' for _ in range(5))
    res = run("text", body, plan(max_rows=2))
    assert res.body.decode().count(SHOWN) == 2 and res.truncated == 3


def test_form_values_holding_json_are_bounded() -> None:
    form = "ok=1&payload=" + urllib.parse.quote_plus(json.dumps(_recs(30)), safe="") + "&x=2"
    res = run("text", form, plan(max_rows=5))
    pairs = urllib.parse.parse_qs(res.body.decode())
    assert [r["id"] for r in json.loads(pairs["payload"][0])] == list(range(5))
    assert pairs["ok"] == ["1"] and pairs["x"] == ["2"] and res.truncated == 25


def test_text_that_merely_looks_like_json_is_left_as_text() -> None:
    text = 'he said ["yes" and {"x" then left\n[[wiki]] %7Bnot json\n'
    assert run("text", text, plan(max_rows=1)).body.decode() == text


def test_a_text_whose_failed_reads_cost_too_much_is_refused() -> None:
    with pytest.raises(BodyError):
        run("text", '{"a" ' * 100_000, plan(max_rows=3))


# ------------------------------------------------------------------------------------ property


def _wrap(shape: str, recs: list[dict[str, Any]]) -> tuple[str, str]:
    """(kind, body) holding `recs` inside values of the given shape."""
    half = len(recs) // 2
    if shape == "json":
        return "json", json.dumps({"payload": json.dumps(recs)})
    if shape == "json-twice":
        return "json", json.dumps({"payload": json.dumps(json.dumps(recs))})
    if shape == "json-mixed":
        return "json", json.dumps({"a": recs[:half], "b": [json.dumps(r) for r in recs[half:]]})
    if shape == "json-pct":
        return "json", json.dumps({"next": urllib.parse.quote(json.dumps(recs))})
    if shape == "ndjson":
        return "ndjson", "".join(json.dumps({"p": json.dumps([r])}) + "\n" for r in recs)
    if shape == "csv":
        cell = json.dumps(recs[half:]).replace('"', '""')
        return "csv", "id,p\n" + "".join(f'{r["id"]},"{cell}"\n' for r in recs[:half])
    if shape == "sse":
        return "text", "".join(f"data: {json.dumps(r)}\n\n" for r in recs)
    if shape == "cursor":
        return "json", json.dumps({"next": base64.urlsafe_b64encode(json.dumps(recs).encode()).decode()})
    if shape == "form":
        return "text", "a=1&p=" + urllib.parse.quote_plus(json.dumps(recs))
    return "text", f"<script>var s = {json.dumps({'c': recs})};</script>"


@settings(max_examples=120, deadline=None)
@given(
    st.integers(0, 40),
    st.integers(1, 8),
    st.sampled_from(
        ["json", "json-twice", "json-mixed", "json-pct", "cursor", "ndjson", "csv", "sse", "form", "html"]
    ),
)
def test_records_in_values_never_exceed_max_rows(n: int, max_rows: int, shape: str) -> None:
    kind, body = _wrap(shape, _recs(n))
    res = mask_body(kind, body.encode(), None, plan(max_rows=max_rows), SRC)
    text = res.body.decode()
    if shape == "cursor":
        text = _unb64(json.loads(text)["next"]).decode()
    # Digits are never escaped by JSON or percent-encoding (a cursor is decoded above): each
    # shown record leaves one 5678.
    assert text.count("5678") <= max_rows and MOBILE not in text
    if n <= max_rows and shape != "csv":  # (a CSV row counts as well as the records in it)
        assert text.count("5678") == n


def test_a_document_written_back_never_turns_escaped_characters_into_markup() -> None:
    page = '<script>var s = {"n": "<\\/script><b onclick=\'x\'>&amp;"};</script><p>end</p>'
    res = run("text", page, plan(max_rows=3))
    out = res.body.decode()
    assert out.count("</script>") == 1 and "<b" not in out and "'" not in out
    assert json.loads(out[len("<script>var s = ") : -len(";</script><p>end</p>")]) == {
        "n": "</script><b onclick='x'>&amp;"
    }


def test_encodings_around_a_document_are_undone_and_redone_in_order() -> None:
    # A JSON string holding a percent-encoded document, and a percent-encoded one twice.
    held = json.dumps(urllib.parse.quote(json.dumps(_recs(5))))
    out, _ = jrun(
        {"p": held, "q": urllib.parse.quote(urllib.parse.quote(json.dumps(_recs(5))))}, plan(max_rows=3)
    )
    assert len(json.loads(urllib.parse.unquote(json.loads(out["p"])))) == 3
    assert json.loads(urllib.parse.unquote(urllib.parse.unquote(out["q"]))) == []  # the budget is spent


def test_a_value_under_more_encodings_than_any_api_writes_is_refused() -> None:
    value = json.dumps(_recs(2))
    for _ in range(12):
        value = urllib.parse.quote(value)
    with pytest.raises(BodyError):
        jrun({"p": value}, plan(max_rows=3))


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_a_base64_cursor_holding_records_is_bounded_and_stays_a_cursor(encode: Any) -> None:
    cursor = encode(json.dumps(_recs(6)).encode() + b" ").decode()
    assert cursor.endswith("=")
    out, res = jrun({"cursor": cursor, "unpadded": cursor.rstrip("=")}, plan(max_rows=4))
    got = json.loads(_unb64(out["cursor"]))
    assert got == [{"id": i, "mobile": SHOWN} for i in range(4)] and res.truncated == 2 + 6
    assert len(out["cursor"]) % 4 == 0 and not out["unpadded"].endswith("=")  # padded as it was
    res = run("text", f"next: {cursor}\n", plan(max_rows=2))
    token = res.body.decode()[len("next: ") : -1]
    assert len(json.loads(_unb64(token))) == 2


def _unb64(token: str) -> bytes:
    std = token.rstrip("=").replace("-", "+").replace("_", "/")
    return base64.b64decode(std + "=" * (-len(std) % 4))


def test_keys_of_a_held_document_are_still_context_for_the_detectors() -> None:
    # A passport number is found by a context word before it; inside a document the word is a key.
    out, _ = jrun({"p": json.dumps({"passport": "E12345678"})}, plan())
    assert "E12345678" not in out["p"] and json.loads(out["p"])["passport"].startswith("E")
    res = run("text", 'data: {"passport": "E12345678"}\n', plan())
    assert "E12345678" not in res.body.decode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted(), st.sampled_from([None, 1, 3]))
def test_planted_numbers_in_a_held_document_never_come_out_whole(
    case: tuple[Any, list[str]], max_rows: int | None
) -> None:
    doc, numbers = case
    p = plan(max_rows=max_rows, see={"email": "clear"})
    res = mask_body("json", json.dumps({"held": json.dumps(doc)}).encode(), None, p, SRC)
    held = json.loads(res.body)["held"]
    inner = json.loads(held) if isinstance(doc, dict | list) else held  # still a document
    runs = [r.replace(" ", "").replace("-", "") for r in _readable_digits(_all_text(inner))]
    for n in numbers:
        if masking.mask_text(n).replace("*", "0") == n:
            continue  # its hidden digits were zeros: a masked integer looks the same
        assert not any(n in r for r in runs), (n, res.body)
