"""Response heads masked like bodies (heads.py), and the fast path of encoded.py for runs of digits
and `+` agreeing with the general one."""

from __future__ import annotations

import base64
import time

from hypothesis import given
from hypothesis import strategies as st

import masking
from masking import encoded
from proxy.http.heads import mask_headers, standard_reason, text_scanner

MOBILE = "13812345678"
TM = masking.make_text_masker(frozenset(masking.CLASSES), "mask", key=b"k" * 32)
SCAN = text_scanner(TM)


def test_values_are_read_as_bodies_are() -> None:
    fields = [
        ("Location", "/api/call?to=138+1234+5678"),
        ("Location", "/api/call?to=138%201234%205678"),
        ("Content-Type", f'text/plain; name="statement-{MOBILE}.txt"'),
        ("Set-Cookie", f"last={base64.b64encode(MOBILE.encode()).decode()}; Path=/"),
        ("Content-Length", "13812345678"),  # structure: never a customer's number
        ("X-Plain", "ok"),
    ]
    out, changed = mask_headers(fields, SCAN)
    assert changed == 4
    text = " ".join(v for _, v in out)
    for v in (MOBILE, "138+1234+5678", "138%201234%205678", base64.b64encode(MOBILE.encode()).decode()):
        assert v not in text.replace("Content-Length", "") or (v == "13812345678" and out[4][1] == v)
    assert out[4] == ("Content-Length", "13812345678") and out[5] == ("X-Plain", "ok")
    assert [n for n, _ in out] == [n for n, _ in fields]


def test_a_header_whose_name_holds_a_number_is_dropped() -> None:
    out, changed = mask_headers([(f"X-Seen-{MOBILE}", "1"), ("X-Other", "2")], SCAN)
    assert out == [("X-Other", "2")] and changed == 1


def test_reason_phrases_are_the_standard_ones() -> None:
    assert standard_reason(404) == "Not Found" and standard_reason(200) == "OK"
    assert standard_reason(599) == ""


@given(
    st.lists(
        st.sampled_from(["1", "3", "8", "5", " ", "+", "-", "(", ")", MOBILE, "138+1234+5678"]), max_size=30
    )
)
def test_runs_of_digits_and_plus_agree_with_the_general_path(parts: list[str]) -> None:
    run = "".join(parts)
    if not run or encoded._DIGITISH_RE.search(run) is None:
        return
    fast = encoded._mask_plus_run(run, TM)
    # The general path, item by item (what _mask_run did for every run before the fast path).
    items = encoded._decode_run(run)
    pieces = [" " if o == "+" else d for o, d in items]
    shadow = "".join(pieces)  # type: ignore[arg-type]
    masked = TM(shadow)
    if masked == shadow:
        assert fast == run
        return
    general, at = [], 0
    for (orig, _), piece in zip(items, pieces, strict=True):
        new = masked[at : at + len(piece)]  # type: ignore[arg-type]
        at += len(piece)  # type: ignore[arg-type]
        general.append(orig if new == piece else new)
    assert fast == "".join(general)


def test_a_long_run_of_digits_and_plus_is_linear() -> None:
    t0 = time.perf_counter()
    encoded.unhide("1+" * 95_000, TM)
    assert time.perf_counter() - t0 < 1.0


def test_digit_groups_joined_unusually_are_masked_in_place() -> None:
    for joined in ("138.1234.5678", "138_1234_5678", "138/1234/5678", "138\n1234\n5678", " ".join(MOBILE)):
        out = encoded.unhide_joined(f"call {joined} now", TM)
        assert MOBILE not in "".join(c for c in out if c.isdigit()), out
        assert out.startswith("call 1") and out.endswith("now") and "*" in out
    for plain in ("2024/01/15", "v1.2.3", "1 2 3", "12.50"):
        assert encoded.unhide_joined(plain, TM) is plain


@given(
    st.sampled_from(["138", "139", "150", "186", "199"]),
    st.from_regex(r"\A[0-9]{8}\Z"),
    st.from_regex(r"\A[0-9]{1,5}\Z"),
    st.booleans(),
)
def test_a_mobile_glued_to_other_digits_is_masked(prefix: str, rest: str, glue: str, before: bool) -> None:
    """`00` + a phone, or the hex digits of a doubly-escaped character before it (`%2522…`):
    the reader sees the number inside a run the detectors read as too long."""
    import masking
    from masking.encoded import scanner
    from masking.segments import is_cn_mobile

    number = prefix + rest
    if not is_cn_mobile(number):
        return
    text = f"x {glue}{number} y" if before else f"x {number}{glue} y"
    out = scanner(masking.make_text_masker(None, "mask"))(text)
    assert number not in out, out
