"""Write ``tests/vectors/bucketing.json``: the arm assignment test vectors for every client.

Run ``python tests/vectors/generate.py`` to rewrite the file and
``python tests/vectors/generate.py --check`` to exit 1 when it differs from
what this script makes. ``tests/unit/core/wire/test_vectors.py`` runs the same check,
so the file can never drift from the script.

The expected values come from a MurmurHash3 written out here in plain Python,
not from ``mmh3`` nor from ``controller.core.wire.bucketing``: the conformance test
holds the controller's implementation to this independent one, and a client
in another language is held to the same file (see ``docs/clients.md``).
Everything is deterministic: fixed lists and a seeded generator.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

from tests.vectors import vectorfile

BUCKETS = 100_000
PATH = Path(__file__).with_name("bucketing.json")
_MASK = 0xFFFFFFFF
_SEED = 20_261_122


# -- the reference algorithm --------------------------------------------------------------------


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _MASK


def _mix(k: int) -> int:
    k = (k * 0xCC9E2D51) & _MASK
    k = _rotl(k, 15)
    return (k * 0x1B873593) & _MASK


def murmur3_x86_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32 of ``data`` as an unsigned 32-bit integer."""
    h = seed & _MASK
    whole = len(data) - len(data) % 4
    for i in range(0, whole, 4):
        h ^= _mix(int.from_bytes(data[i : i + 4], "little"))
        h = _rotl(h, 13)
        h = (h * 5 + 0xE6546B64) & _MASK
    tail = data[whole:]
    if tail:
        h ^= _mix(int.from_bytes(tail, "little"))
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    return h ^ (h >> 16)


def threshold(percent: float) -> int:
    """Buckets below this get treatment: ``percent * 1000`` in binary64, rounded half to even."""
    return round(percent * 1000.0)


def vector(flag: str, salt: str, unit: str, percent: float) -> dict[str, Any]:
    """One test vector: the inputs, the intermediate values and the arm."""
    hashed = murmur3_x86_32(f"{flag}:{salt}:{unit}".encode())
    bucket = hashed % BUCKETS
    limit = threshold(percent)
    arm = "treatment" if bucket < limit else "control"
    return {
        "flag": flag,
        "salt": salt,
        "unit": unit,
        "percent": percent,
        "hash": hashed,
        "bucket": bucket,
        "threshold": limit,
        "arm": arm,
    }


# -- the cases ----------------------------------------------------------------------------------

PERCENTS = [0.0, 0.001, 0.0005, 0.0015, 0.0025, 0.002, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0]
PERCENTS += [12.3455, 25.0, 33.333, 33.3335, 50.0, 66.667, 75.0, 99.9, 99.999, 99.9995, 100.0]
"""Edges (0, 100, one bucket, a last bucket) and products that land on a half (0.0005)."""

FLAGS = [
    "checkout.new-flow",
    "pricing.v2",
    "a",
    "search:ranking_v3-beta",
    "Z9." + "x" * 125,  # the longest flag key, 128 characters
]
SALTS = ["3f9a0c2e71b4d865", "0000000000000000", "s", "salt:with:colons", "ü" * 64]
"""The daemon makes 16 hex digits; the contract allows any 1 to 64 characters."""

UNITS = [
    "user-42",
    "42",
    "0",
    "u",
    " ",
    "user 42 ",
    "a:b:c",
    "café",  # é as one code point (NFC)
    "cafe\u0301",  # é as e + combining accent (NFD): another unit, another bucket
    "ユーザー",
    "用户-七",
    "пользователь",
    "😀",
    "👩\u200d💻 dev",
    "\u0000nul",
    "tab\tand\nnewline",
    "ab",
    "abc",
    "abcd",
    "abcde",
    "x" * 256,  # the longest unit id, 256 characters
    "é" * 256,  # 256 characters, 512 bytes of UTF-8
    "🚀" * 256,  # 256 characters, 1,024 bytes of UTF-8
    "6d1f0c1e-8a2b-4c1e-9e0f-2b8c4d5e6f70",
]
"""ASCII, every length modulo 4, non-ASCII of 2, 3 and 4 UTF-8 bytes, both
normal forms of one word, control characters and the longest units."""

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-_.:@ éßø中文字😀🚀ÆΩ"


def _random_unit(rng: random.Random) -> str:
    length = rng.choice([1, 2, 3, 4, 5, 8, 13, 36, 64, 255, 256])
    return "".join(rng.choice(_ALPHABET) for _ in range(length))


def _random_percent(rng: random.Random) -> float:
    """A percent with at most three decimals, as plans usually hold them."""
    return rng.randrange(0, 100_001) / 1000


def cases() -> list[tuple[str, str, str, float]]:
    """Every (flag, salt, unit, percent) the file holds, in its order."""
    out: list[tuple[str, str, str, float]] = []
    # Every fixed unit at every edge percent, for one flag and salt.
    out += [(FLAGS[0], SALTS[0], u, p) for u in UNITS for p in PERCENTS]
    # Every flag and salt, fixed units, a few percents.
    out += [(f, s, u, p) for f in FLAGS for s in SALTS for u in UNITS[:6] for p in (1.0, 50.0)]
    # Seeded random units and percents over every flag and salt.
    rng = random.Random(_SEED)
    for _ in range(600):
        flag, salt = rng.choice(FLAGS), rng.choice(SALTS)
        out.append((flag, salt, _random_unit(rng), _random_percent(rng)))
    return out


def render() -> str:
    """The file's text: a header, then one vector per line."""
    header = {
        "description": (
            "Arm assignment vectors: bucket = murmur3_x86_32(utf8(flag + ':' + salt + ':' + "
            "unit), seed 0) mod 100000; threshold = round_half_even(percent * 1000.0); "
            "treatment iff bucket < threshold. See docs/clients.md."
        ),
        "generator": "tests/vectors/generate.py",
        "buckets": BUCKETS,
    }
    return vectorfile.render(header, [vector(*case) for case in cases()])


def main(argv: list[str]) -> int:
    return vectorfile.write_or_check(argv, PATH, render, __file__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
