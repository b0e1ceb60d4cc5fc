"""Assignment of units to arms: the one function apps, simulator and tests share.

``bucket = murmur3_x86_32(f"{flag}:{salt}:{unit}", seed=0) % 100_000`` and a
unit is in treatment iff ``bucket < round(percent * 1000)``. Percent therefore
has 0.001% resolution, and raising it only moves control units into treatment.
The key is hashed as UTF-8 bytes, without Unicode normalisation; a unit that
is not valid Unicode (a lone surrogate) raises :class:`UnicodeEncodeError`.
``docs/clients.md`` specifies the function for clients in other languages,
and ``tests/vectors/bucketing.json`` holds its test vectors. A holdout
(:mod:`controller.core.wire.holdouts`) buckets units the same way, with
``~holdout`` in the flag's place and its name for the salt (:func:`holdout_bucket`).
"""

from __future__ import annotations

import mmh3

from controller.core.wire.messages import Arm

BUCKETS = 100_000
HOLDOUT_PREFIX = "~holdout"
"""What a holdout's bucket hashes in a flag key's place (``~holdout:{name}:{unit}``): no
flag key starts with ``~``, so no flag's bucketing is a holdout's."""


def bucket(flag: str, salt: str, unit: str) -> int:
    """The unit's bucket in ``0..99_999`` for this flag and salt.

    Encoded here rather than by ``mmh3``: mmh3 5.3 crashes the process on a
    ``str`` holding a lone surrogate, where ``str.encode`` raises (and is faster).
    """
    key = f"{flag}:{salt}:{unit}".encode()
    return mmh3.hash(key, seed=0, signed=False) % BUCKETS


def assign(flag: str, salt: str, unit: str, percent: float) -> Arm:
    """The arm a unit is served when ``percent`` of units get treatment."""
    return Arm.TREATMENT if bucket(flag, salt, unit) < threshold(percent) else Arm.CONTROL


def threshold(percent: float) -> int:
    """How many buckets, counted from 0, get treatment at ``percent``.

    ``percent * 1000`` as a float, rounded half to even (Python's ``round``):
    clients in other languages must round ties the same way.
    """
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be within 0..100, got {percent}")
    return round(percent * 1000)


def holdout_bucket(name: str, unit: str) -> int:
    """The unit's bucket in ``0..99_999`` for the holdout named ``name``, whatever the flag:
    :func:`bucket` with :data:`HOLDOUT_PREFIX` for the flag and the name for the salt."""
    return bucket(HOLDOUT_PREFIX, name, unit)


def held_out(name: str, percent: float, unit: str) -> bool:
    """Whether the holdout ``name`` keeping ``percent`` of units out keeps ``unit`` out."""
    return holdout_bucket(name, unit) < threshold(percent)
