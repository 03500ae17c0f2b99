"""Owns check-character algorithms and validators: GB 11643 (ID), Luhn, GB 32100 (USCC), HKID, Taiwan ID.

Pure functions over ASCII strings; callers normalise first. Validators return False rather than
raise on malformed input.
"""

from __future__ import annotations

import datetime

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83}
)
MIN_BIRTH = datetime.date(1800, 1, 1)


def id18_check_char(body17: str) -> str:
    """ISO 7064 MOD 11-2 check character for the first 17 digits."""
    return ID_CHECK[sum(int(a) * w for a, w in zip(body17, ID_WEIGHTS, strict=True)) % 11]


def birth_date_ok(y: int, m: int, d: int, today: datetime.date | None = None) -> bool:
    """A real calendar date between 1800-01-01 and today (PII.md §2.2; not 1900: see GB example)."""
    try:
        dt = datetime.date(y, m, d)
    except ValueError:
        return False
    return MIN_BIRTH <= dt <= (today or datetime.date.today())


def region_ok(s: str) -> bool:
    """Province code from the fixed list, or a leading 9 (2023 foreigner permanent-residence ID)."""
    return s[0] == "9" or int(s[:2]) in PROVINCES


def validate_id18(s: str, check_region: bool = True, today: datetime.date | None = None) -> bool:
    s = s.upper()
    if len(s) != 18 or not s.isascii() or not s[:17].isdigit() or s[17] not in "0123456789X":
        return False
    if check_region and not region_ok(s):
        return False
    if not birth_date_ok(int(s[6:10]), int(s[10:12]), int(s[12:14]), today):
        return False
    return id18_check_char(s[:17]) == s[17]


def validate_id15(s: str, today: datetime.date | None = None) -> bool:
    """Legacy GB 11643-1989 number: no check digit, so region and 19YY date are all we can test."""
    if len(s) != 15 or not s.isascii() or not s.isdigit():
        return False
    if not region_ok(s) or s[0] == "9":  # foreigner IDs never had a 15-digit form
        return False
    return birth_date_ok(1900 + int(s[6:8]), int(s[8:10]), int(s[10:12]), today)


def id15_to_18(s: str) -> str:
    body = s[:6] + "19" + s[6:]
    return body + id18_check_char(body)


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i & 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def luhn_check_digit(body: str) -> str:
    """The digit to append to `body` so that the whole passes Luhn."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        n = ord(ch) - 48
        if not i & 1:  # these positions are doubled once the check digit is appended
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return str(-total % 10)


USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
_USCC_VALUE = {c: i for i, c in enumerate(USCC_CHARS)}
USCC_DEPARTMENTS = "123456789ANY"


def uscc_check_char(body17: str) -> str:
    s = sum(_USCC_VALUE[c] * w for c, w in zip(body17, USCC_WEIGHTS, strict=True))
    return USCC_CHARS[(31 - s % 31) % 31]


def validate_uscc(s: str) -> bool:
    if len(s) != 18 or any(c not in _USCC_VALUE for c in s):
        return False
    if s[0] not in USCC_DEPARTMENTS or not s[2:8].isdigit():
        return False
    return uscc_check_char(s[:17]) == s[17]


_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def org_code_check_char(body8: str) -> str:
    """GB 11714 organisation-code check (PII.md §4.2); used to make fake USCCs doubly valid."""
    s = sum((int(c) if c.isdigit() else ord(c) - 55) * w for c, w in zip(body8, _ORG_WEIGHTS, strict=True))
    c = 11 - s % 11
    return "X" if c == 10 else "0" if c == 11 else str(c)


def validate_hkid(s: str) -> bool:
    """HKID such as CA182361(1) or A1234563; parentheses optional."""
    s = s.upper().replace("(", "").replace(")", "")
    if not 8 <= len(s) <= 9 or not s.isascii():
        return False
    letters, digits, check = s[:-7], s[-7:-1], s[-1]
    if not (letters.isalpha() and digits.isdigit() and (check.isdigit() or check == "A")):
        return False
    values = [36] * (2 - len(letters)) + [ord(c) - 55 for c in letters] + [int(c) for c in digits]
    r = sum(v * w for v, w in zip(values, range(9, 1, -1), strict=True)) % 11
    expected = "0" if r == 0 else "A" if r == 1 else str(11 - r)
    return check == expected


# Taiwan ID letter values: A=10 ... Z=33, with the historical I/O/W/Z placements.
_TW_LETTERS = "ABCDEFGHJKLMNPQRSTUVXYWZIO"


def validate_taiwan_id(s: str) -> bool:
    s = s.upper()
    if len(s) != 10 or not s.isascii() or not s[0].isalpha() or not s[1:].isdigit() or s[1] not in "12":
        return False
    v = _TW_LETTERS.index(s[0]) + 10
    nums = [v // 10, v % 10] + [int(c) for c in s[1:]]
    weights = (1, 9, 8, 7, 6, 5, 4, 3, 2, 1, 1)
    return sum(n * w for n, w in zip(nums, weights, strict=True)) % 10 == 0
