"""Write ``tests/vectors/rings.json``: targeted rollouts' evaluation vectors for every client.

Run ``python tests/vectors/rings_generate.py`` to rewrite the file and
``python tests/vectors/rings_generate.py --check`` to exit 1 when it differs
from what this script makes; ``tests/unit/core/wire/test_rings.py`` runs the
same check.

Each vector is a flag state's targeting (the rollout's ``audience`` and its
``rings``, as the flag state carries them), a unit and its context, and the
expected ``bucket``, ``arm`` and ``cohort``. Rings come from walking two
plans stage by stage (``docs/clients.md``, "Rings"). The expected values come
from the reference MurmurHash3 of ``generate.py`` and the reference rule
evaluator of ``audience_generate.py``, not from the controller: the test
holds :func:`controller.core.wire.evaluation.evaluate` to them.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

from tests.vectors import vectorfile
from tests.vectors.audience_generate import SEGMENTS, truth
from tests.vectors.generate import BUCKETS, murmur3_x86_32

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from controller.core.rules.text import parse

PATH = Path(__file__).with_name("rings.json")
_SEED = 20_261_126
Json = Any

# Plans as (rollout audience, [(stage audience, percent), ...]) in text form; None is everyone.
PLANS: list[tuple[str, str | None, list[tuple[str | None, float]]]] = [
    (
        "checkout.new-flow",
        None,
        [
            ('user_id in segment("staff")', 100.0),
            ('user_id in segment("beta")', 100.0),
            ('country == "TH"', 25.0),
            (None, 5.0),
            (None, 25.0),
            (None, 50.0),
            (None, 100.0),
        ],
    ),
    (
        "pricing.v2",
        'app_version >= semver("2.0.0")',
        [
            ('plan in ["pro", "enterprise"]', 10.0),
            ('plan in ["pro", "enterprise"]', 50.0),
            (None, 1.0),
            (None, 33.333),
        ],
    ),
]
SALT = "3f9a0c2e71b4d865"

_CONTEXTS: list[Json] = [
    {"user_id": "alice", "country": "US", "app_version": "2.1.0"},
    {"user_id": "user-1", "country": "TH", "plan": "pro", "app_version": "1.9.9"},
    {"user_id": "user-2", "country": "DE", "plan": "free"},
    {"country": "TH", "plan": "enterprise", "app_version": "2.0.0"},
    {"country": "th", "app_version": "2.0.0-rc.1"},
    {"user_id": 42, "country": ["TH"], "app_version": 2},
    {},
]
_COUNTRIES = ["TH", "US", "DE", "JP", None]
_PLANS = ["free", "pro", "enterprise", None]
_VERSIONS = ["1.0.0", "2.0.0", "2.3.1", "2.0.0-beta", "10.0.0", None]
_IDS = ["alice", "bob", "42", "user-1", "user-3", "ユーザー", "carol", None]


def _random_context(rng: random.Random) -> Json:
    picks = {
        "user_id": rng.choice(_IDS),
        "country": rng.choice(_COUNTRIES),
        "plan": rng.choice(_PLANS),
        "app_version": rng.choice(_VERSIONS),
    }
    return {name: value for name, value in picks.items() if value is not None}


def _rule(text: str | None) -> Json:
    return None if text is None else json.loads(parse(text).to_json())


def threshold(percent: float) -> int:
    return round(percent * 1000.0)


def rings_at(stages: list[tuple[str | None, float]], k: int) -> list[Json]:
    """The rings at stage ``k``: each audience once, its highest threshold, the current last."""
    best: dict[str, Json] = {}
    for text, percent in stages[: k + 1]:
        key = text or ""
        held = best.pop(key, None)
        top = threshold(percent) if held is None else max(held["threshold"], threshold(percent))
        best[key] = {"audience": _rule(text), "threshold": top}
    current = best.pop(stages[k][0] or "")
    return [*best.values(), current]


def _matches(rule: Json, context: Json) -> bool:
    return rule is None or truth(rule, context) is True


def place(audience: Json, rings: list[Json], bucket: int, context: Json) -> tuple[str, str]:
    """The reference placement: (arm, cohort)."""
    if audience is not None and not _matches(audience, context):
        return "control", "outside"
    reached = [r for r in rings if _matches(r["audience"], context)]
    treated = any(bucket < r["threshold"] for r in reached)
    arm = "treatment" if treated else "control"
    if any(r in reached for r in rings[:-1]):
        return arm, "carried"
    return (arm, "compared") if reached else ("control", "outside")


def vectors() -> list[Json]:
    rng = random.Random(_SEED)
    out = []
    for flag, audience_text, stages in PLANS:
        audience = _rule(audience_text)
        contexts = _CONTEXTS + [_random_context(rng) for _ in range(40)]
        units = [f"unit-{rng.randrange(10**6)}" for _ in contexts]
        for k in range(len(stages)):
            rings = rings_at(stages, k)
            for unit, context in zip(units, contexts, strict=True):
                bucket = murmur3_x86_32(f"{flag}:{SALT}:{unit}".encode()) % BUCKETS
                arm, cohort = place(audience, rings, bucket, context)
                out.append(
                    {
                        "flag": flag,
                        "salt": SALT,
                        "stage": k,
                        "audience": audience,
                        "rings": rings,
                        "unit": unit,
                        "context": context,
                        "bucket": bucket,
                        "arm": arm,
                        "cohort": cohort,
                    }
                )
    return out


def render() -> str:
    header = {
        "description": (
            "Targeted rollout evaluation vectors: a flag state's audience and rings, a unit "
            "and its context; the expected bucket, arm and cohort. Segments are named in "
            "'segments'. See docs/clients.md, Rings."
        ),
        "generator": "tests/vectors/rings_generate.py",
        "segments": SEGMENTS,
    }
    return vectorfile.render(header, vectors())


def main(argv: list[str]) -> int:
    return vectorfile.write_or_check(argv, PATH, render, __file__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
