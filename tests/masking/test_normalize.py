"""Normalisation keeps a map back to original offsets."""

from __future__ import annotations

from masking.normalize import normalize, to_original


def test_ascii_is_identity() -> None:
    assert normalize("abc 123") == ("abc 123", None)


def test_fullwidth_and_dashes_fold_in_place() -> None:
    norm, offsets = normalize("＋８６ １３８－１２３４—５６７８")
    assert norm == "+86 138-1234-5678"
    assert offsets is None


def test_expanding_characters_keep_offsets() -> None:
    text = "㈱①13812345678"  # ㈱ -> (株), ① -> 1: lengths change
    norm, offsets = normalize(text)
    assert norm == "(株)113812345678"
    start = norm.index("13812345678")
    s, e = to_original(offsets, start, start + 11)
    assert text[s:e] == "13812345678"
