"""Property tests: hidden digits stay hidden, planted values are found, fakes/hashes behave, types hold."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masking import CLASSES, detect, mask_text, mask_value
from masking.checksums import luhn_valid, validate_id15, validate_id18, validate_uscc
from masking.segments import is_cn_mobile
from tests.masking.strategies import (
    FILLER,
    FULLWIDTH,
    VALUES,
    bank_cards,
    id15s,
    id18s,
    landlines,
    mobiles,
    usccs,
)

PROFILE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = st.binary(min_size=1, max_size=32)

# (first kept, last kept) significant characters of each digit class's display rule.
KEEP = {"mobile": (3, 4), "bank_card": (6, 4), "uscc": (8, 2)}


def assert_hidden(value: str, masked: str, first: int, last: int) -> None:
    assert len(masked) == len(value)
    assert masked[:first] == value[:first] and masked[len(value) - last :] == value[len(value) - last :]
    assert set(masked[first : len(value) - last]) == {"*"}


@PROFILE
@given(mobiles())
def test_mobile_mask_hides_digits_4_to_7(value: str) -> None:
    assert_hidden(value, mask_value(value, "mobile", "mask"), 3, 4)  # type: ignore[arg-type]


@PROFILE
@given(st.one_of(id18s(), id15s()))
def test_id_mask_hides_all_but_3_and_4(value: str) -> None:
    assert_hidden(value, mask_value(value, "id_card", "mask"), 3, 4)  # type: ignore[arg-type]


@PROFILE
@given(bank_cards())
def test_bank_mask_keeps_bin_and_last4(value: str) -> None:
    assert_hidden(value, mask_value(value, "bank_card", "mask"), 6, 4)  # type: ignore[arg-type]


@PROFILE
@given(usccs())
def test_uscc_mask(value: str) -> None:
    assert_hidden(value, mask_value(value, "uscc", "mask"), 8, 2)  # type: ignore[arg-type]


@PROFILE
@given(landlines())
def test_landline_mask_hides_subscriber_but_last4(value: str) -> None:
    masked = mask_value(value, "landline", "mask")
    assert isinstance(masked, str)
    assert masked[-4:] == value[-4:]
    assert masked.count("*") == sum(c.isdigit() for c in value) - 4 - sum(c.isdigit() for c in masked[:-4])


@st.composite
def planted(draw: st.DrawFn) -> tuple[str, str, str]:
    """(text, class, planted substring), with separators and full-width variants."""
    cls = draw(st.sampled_from(sorted(VALUES)))
    value = draw(VALUES[cls])
    if cls == "mobile":
        style = draw(st.sampled_from(["plain", "spaces", "dashes", "+86 ", "0086", "(+86)"]))
        value = {
            "plain": value,
            "spaces": f"{value[:3]} {value[3:7]} {value[7:]}",
            "dashes": f"{value[:3]}-{value[3:7]}-{value[7:]}",
            "+86 ": "+86 " + value,
            "0086": "0086" + value,
            "(+86)": "(+86)" + value,
        }[style]
    if cls != "email" and draw(st.booleans()):
        value = value.translate(FULLWIDTH)
    return draw(FILLER) + value, cls, value


@PROFILE
@given(planted(), FILLER)
def test_detectors_find_planted_values(case: tuple[str, str, str], suffix: str) -> None:
    head, cls, value = case
    text = head + suffix
    # Per class: overlap resolution may legitimately relabel (an 18-digit card that is also a valid USCC).
    found = [(s.cls, s.text, s.start) for s in detect(text, [cls])]
    assert (cls, value, len(head) - len(value)) in found


def _break_check(value: str) -> str:
    last = value[-1]
    return value[:-1] + ("0" if last != "0" else "1")


@PROFILE
@given(FILLER, st.sampled_from(["id18", "bank_card", "uscc"]), st.data(), FILLER)
def test_detectors_skip_checksum_invalid(prefix: str, kind: str, data: st.DataObject, suffix: str) -> None:
    if kind == "id18":
        value, cls, valid = data.draw(id18s()), "id_card", validate_id18
    elif kind == "bank_card":
        value, cls, valid = data.draw(bank_cards()), "bank_card", luhn_valid
    else:
        value, cls, valid = data.draw(usccs()), "uscc", validate_uscc
    broken = _break_check(value)
    if valid(broken):
        return
    assert detect(prefix + broken + suffix, [cls]) == []


@PROFILE
@given(
    st.sampled_from(["13", "15", "18", "19", "17"]),
    st.text(st.sampled_from("0123456789"), min_size=12, max_size=20),
)
def test_no_mobile_inside_longer_digit_runs(head: str, tail: str) -> None:
    assert detect("编号" + head + tail + "。", ["mobile"]) == []


@PROFILE
@given(st.sampled_from(sorted(VALUES)), st.data(), KEYS, KEYS)
def test_hash_and_fake_deterministic_per_key(cls: str, data: st.DataObject, k1: bytes, k2: bytes) -> None:
    value = data.draw(VALUES[cls])
    for action in ("hash", "fake"):
        a = mask_value(value, cls, action, key=k1)
        assert a == mask_value(value, cls, action, key=k1)
        if k1 != k2 and action == "hash":
            assert a != mask_value(value, cls, action, key=k2)


VALIDATORS = {
    "mobile": is_cn_mobile,
    "id_card": lambda s: validate_id18(s) or validate_id15(s),
    "bank_card": luhn_valid,
    "uscc": validate_uscc,
}


@PROFILE
@given(st.sampled_from(sorted(VALUES)), st.data(), KEYS)
def test_fake_is_valid_and_differs(cls: str, data: st.DataObject, key: bytes) -> None:
    value = data.draw(VALUES[cls])
    out = mask_value(value, cls, "fake", key=key)
    assert isinstance(out, str) and out != value
    if cls in VALIDATORS:
        assert VALIDATORS[cls](out)
        assert len(out) == len(value)
    if cls == "landline" or cls == "email":
        assert detect(out, [cls]) and detect(out, [cls])[0].text == out


ANY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@PROFILE
@given(st.sampled_from([*CLASSES, None]), st.one_of(ANY_TEXT, *VALUES.values()))
def test_masking_is_idempotent(cls: str | None, value: str) -> None:
    once = mask_value(value, cls, "mask")
    assert mask_value(once, cls, "mask") == once


@PROFILE
@given(planted(), FILLER)
def test_mask_text_idempotent_and_hides_value(case: tuple[str, str, str], suffix: str) -> None:
    head, cls, value = case
    once = mask_text(head + suffix)
    assert mask_text(once) == once
    assert value not in once
    if cls == "ip_address":  # each hidden octet or group becomes one '*' (10.12.*.*)
        assert len(once) <= len(head + suffix)
    else:  # in-place: display masking never changes lengths
        assert len(once) == len(head + suffix)


@PROFILE
@given(
    st.sampled_from([*CLASSES, None]),
    st.sampled_from(["mask", "hash", "fake", "redact"]),
    st.one_of(ANY_TEXT, st.integers(-(10**20), 10**20), st.binary(max_size=20), *VALUES.values()),
)
def test_types_are_preserved(cls: str | None, action: str, value: str | int | bytes) -> None:
    out = mask_value(value, cls, action)
    assert type(out) is type(value)
    if isinstance(value, int) and action == "fake":
        assert len(str(abs(out))) == len(str(abs(value)))  # type: ignore[arg-type]
    if isinstance(value, int) and action == "mask":
        # Hidden leading digits become zeros, which an int cannot show: it may get shorter, never longer.
        assert len(str(abs(out))) <= len(str(abs(value)))  # type: ignore[arg-type]


@PROFILE
@given(st.integers(10**10, 10**19))
def test_int_mask_zeroes_only_hidden_digits(value: int) -> None:
    out = mask_value(value, "mobile", "mask")
    s = str(value)
    if len(s) == 11 and s[0] == "1":
        assert out == int(s[:3] + "0000" + s[7:])
