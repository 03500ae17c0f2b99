"""Masking throughput: per-column maskers, text maskers and `maskgate scan` end to end.

Run with `python -m bench.masking_bench`. Prints figures against the targets and writes them to
bench/results/masking.json. This is a measurement, not a test: the machine is shared and noisy, so
each figure is the best of a few repetitions.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from masking import make_masker, make_text_masker
from masking.checksums import id18_check_char, luhn_check_digit

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"

TARGETS = {
    "mobile_mask_values_per_s": 1_000_000,
    "text_mix_lines_per_s": 200_000,
    "scan_lines_per_s": 100_000,
}


def _mobile(rng: random.Random) -> str:
    return rng.choice(["138", "139", "150", "186", "192", "199"]) + f"{rng.randrange(10**8):08d}"


def _id18(rng: random.Random) -> str:
    born = f"{rng.randrange(1950, 2005)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
    body = f"110105{born}{rng.randrange(1000):03d}"
    return body + id18_check_char(body)


def _card(rng: random.Random) -> str:
    body = "622202" + f"{rng.randrange(10**12):012d}"
    return body + luhn_check_digit(body)


def pii_line(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return f"客户电话{_mobile(rng)}，请回电"
    if kind == 1:
        return f"身份证{_id18(rng)} 已核验"
    if kind == 2:
        return f"银行卡号{_card(rng)} 绑定成功"
    return f"user{rng.randrange(1000)}@163.com 订阅 +86 {_mobile(rng)}"


def clean_line(rng: random.Random) -> str:
    """Lines shaped like logs and messages: timestamps, amounts, order numbers, no PII."""
    kind = rng.randrange(5)
    if kind == 0:
        stamp = f"2024-05-{rng.randrange(1, 29):02d} 12:{rng.randrange(60):02d}:01"
        return f"{stamp} INFO request ok id={rng.randrange(10**6)}"
    if kind == 1:
        amount = f"{rng.randrange(10**4)}.{rng.randrange(100):02d}"
        return f"订单{rng.randrange(10**5)}已发货，金额{amount}元，感谢您的支持"
    if kind == 2:
        return "GET /api/v1/items?page=2&size=50 HTTP/1.1 200"
    if kind == 3:
        return "您好，您的快递已到达驿站，请及时取件。"
    return f"trace {rng.getrandbits(64):016x} span ok latency_ms={rng.randrange(500)}"


def _card_luhn_fail(rng: random.Random) -> str:
    card = _card(rng)
    return card[:-1] + str((int(card[-1]) + 1 + rng.randrange(9)) % 10)


def _stamp(rng: random.Random) -> str:
    return f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"


def digit_line(rng: random.Random) -> str:
    """A short Chinese log or ticket line with one mobile, ID or card number and decoys to keep.

    The decoys are what makes such text expensive: each line passes the 7-digit gate, so every digit
    finder runs. Order numbers (18-20 digits from a date), timestamps, amounts and a card-like number
    that fails Luhn next to 卡号 must all stay in the clear.
    """
    order = f"{rng.choice(['2023', '2024'])}{rng.randrange(1, 13):02d}{rng.randrange(10**12):012d}"
    kind = rng.randrange(3)
    if kind == 0:
        return f"{_stamp(rng)} 客户手机{_mobile(rng)}，订单号{order}已发货，金额{rng.randrange(10**4)}.{rng.randrange(100):02d}元"
    if kind == 1:
        return f"{_stamp(rng)} 身份证号{_id18(rng)}核验通过，工单{rng.randrange(10**7, 10**8)}已关闭"
    return f"{_stamp(rng)} 银行卡号{_card(rng)}绑定成功；原卡号{_card_luhn_fail(rng)}无效，流水{order}"


def realistic_mix(rng: random.Random, n: int, pii_share: float = 0.1) -> list[str]:
    return [pii_line(rng) if rng.random() < pii_share else clean_line(rng) for _ in range(n)]


def best_rate(fn: Callable[[Sequence[Any]], None], items: Sequence[Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(items)
        best = min(best, time.perf_counter() - t0)
    return len(items) / best


def _loop(masker: Callable[[Any], Any]) -> Callable[[Sequence[Any]], None]:
    def run(items: Sequence[Any]) -> None:
        for v in items:
            masker(v)

    return run


def bench_scan(lines: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        cmd = [sys.executable, "-m", "proxy.cli", "scan", str(path)]
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, cwd=ROOT.parent)
            best = min(best, time.perf_counter() - t0)
    return len(lines) / best


def main() -> int:
    rng = random.Random(20240501)
    figures: dict[str, float] = {}

    mobiles = [_mobile(rng) for _ in range(1_000_000)]
    figures["mobile_mask_values_per_s"] = best_rate(_loop(make_masker("mobile", "mask")), mobiles)
    ints = [int(m) for m in mobiles[:200_000]]
    figures["mobile_mask_int_values_per_s"] = best_rate(_loop(make_masker("mobile", "mask")), ints)
    figures["mobile_hash_values_per_s"] = best_rate(_loop(make_masker("mobile", "hash")), mobiles[:200_000])
    figures["mobile_fake_values_per_s"] = best_rate(_loop(make_masker("mobile", "fake")), mobiles[:50_000])

    masker = make_text_masker(None)
    pii_lines = [pii_line(rng) for _ in range(100_000)]
    figures["text_pii_lines_per_s"] = best_rate(_loop(masker), pii_lines)
    mix = realistic_mix(rng, 300_000)
    figures["text_mix_lines_per_s"] = best_rate(_loop(masker), mix)
    clean = [clean_line(rng) for _ in range(300_000)]
    figures["text_clean_lines_per_s"] = best_rate(_loop(masker), clean)

    figures["scan_lines_per_s"] = bench_scan(realistic_mix(rng, 500_000))

    width = max(map(len, figures))
    for name, value in figures.items():
        target = TARGETS.get(name)
        verdict = "" if target is None else f"  (target {target:,}: {'met' if value >= target else 'MISSED'})"
        print(f"{name:<{width}}  {value:>12,.0f}{verdict}")

    RESULTS.mkdir(exist_ok=True)
    out = {
        "figures": {k: round(v) for k, v in figures.items()},
        "targets": TARGETS,
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "line_lengths_max": max(len(x) for x in mix),
    }
    (RESULTS / "masking.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
