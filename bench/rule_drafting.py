"""Rule drafting quality: phrases with hand-written answer rules, asked of the configured model.

Each phrase ("Thai pro users") has an answer written by hand in the rule
language (``country == "TH" and plan == "pro"``). The model is asked exactly
as ``rolloutctl rule draft`` asks it (same prompt, catalogue and bounds), and
a draft counts as right when it is *equivalent* to the answer, not equal to
it: both are evaluated on the same contexts, generated from the literals of
both rules and values around them (one less, one more, another string, the
attribute missing), with segment memberships fixed, and must agree on every
one. ``country in ["TH"]`` is as right as ``country == "TH"``.

Ring plans are scored the same way: each phrase ("Staff, then the beta list,
then everyone") has hand-written rings (an audience rule or everyone, and a
percent); the model is asked as ``rolloutctl rule draft --rings`` asks it, and
a draft counts as right when it has as many rings, each with the answer's
percent and an equivalent audience.

Prints one line a phrase and, last, one JSON object: the score (right /
phrases), how often the reply parsed as a rule, and how often it passed the
lint; for ring plans also how often the rings made a plan. The model is
LLM_BASE_URL (with LLM_MODEL, LLM_API_KEY), else the embedded SmolLM2-135M
server, far too small to write rules: run a 7B-class instruct model for a
meaningful figure.

    python bench/rule_drafting.py [--samples 400] [--response-format auto] [--only rings]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.core.drafting.ring_form import DraftRing, ring_findings, ring_plan
from controller.core.drafting.rule_lint import errors, lint, load_catalogue
from controller.core.rules.audience import AudienceRule, Instant, Segment, Semver, conditions
from controller.core.rules.matching import Audience, IdSegments
from controller.core.rules.text import parse, to_text
from controller.ctl.drafting.rings import draft_rings
from controller.ctl.drafting.rules import draft_rule
from controller.settings import LlmSettings
from tests.support.backing.services import LLM_MODEL_ALIAS, resolve_llm

CATALOGUE = load_catalogue(
    """
attributes:
  user_id: string
  country: string
  plan: string
  platform: string
  language: string
  age: number
  beta_opt_in: bool
  app_version: semver
  registered_at: date
segments: [beta, staff, early_access]
"""
)
SEGMENTS = IdSegments(
    {"beta": {"u0", "u1", "u2", "u3"}, "staff": {"u3", "u4", "u5"}, "early_access": {"u6", "u7"}}
)
USER_IDS = [f"u{n}" for n in range(10)] + ["test-1", "test-2"]

PHRASES: list[tuple[str, str]] = [
    ("Users in Thailand", 'country == "TH"'),
    ("Thai pro users", 'country == "TH" and plan == "pro"'),
    ("Pro or enterprise users", 'plan in ["pro", "enterprise"]'),
    ("Everyone except users in the US", 'country != "US"'),
    ("Users on app version 2.3.0 or later", 'app_version >= semver("2.3.0")'),
    ("Members of the beta segment", 'user_id in segment("beta")'),
    ("Staff", 'user_id in segment("staff")'),
    ("Users who registered before 2024", 'registered_at < date("2024-01-01")'),
    ("Adults: users aged 18 or more", "age >= 18"),
    ("Users under 30", "age < 30"),
    ("Users who opted in to the beta", "beta_opt_in == true"),
    ("iOS users", 'platform == "ios"'),
    ("Android users in Vietnam", 'platform == "android" and country == "VN"'),
    ("Users in Thailand, Vietnam or Indonesia", 'country in ["TH", "VN", "ID"]'),
    ("Free plan users outside Japan", 'plan == "free" and country != "JP"'),
    (
        "Thai pro users, then the beta list",
        '(country == "TH" and plan == "pro") or user_id in segment("beta")',
    ),
    ("Staff or beta members", 'user_id in segment("staff") or user_id in segment("beta")'),
    ("Users on versions older than 3.0.0", 'app_version < semver("3.0.0")'),
    ("Users whose language is Thai (th)", 'language == "th"'),
    ("Enterprise users on iOS", 'plan == "enterprise" and platform == "ios"'),
    ("Users registered on or after 1 March 2025", 'registered_at >= date("2025-03-01")'),
    ("Users aged 18 to 25", "age >= 18 and age <= 25"),
    ("Users not on the free plan", 'plan != "free"'),
    ("Early access members in Germany", 'user_id in segment("early_access") and country == "DE"'),
    ('Users whose user id starts with "test-"', 'user_id starts_with "test-"'),
    ("Pro users on version 2.0.0 or newer", 'plan == "pro" and app_version >= semver("2.0.0")'),
    ("Web users who opted in to the beta", 'platform == "web" and beta_opt_in == true'),
    ("Users in Germany, France or Spain", 'country in ["DE", "FR", "ES"]'),
    ("Users not in the beta segment", 'user_id not in segment("beta")'),
    ("Users in Brazil or on the pro plan", 'country == "BR" or plan == "pro"'),
    (
        "Android users below version 1.5.0",
        'platform == "android" and app_version < semver("1.5.0")',
    ),
    ("Japanese (ja) speakers outside Japan", 'language == "ja" and country != "JP"'),
]

STAFF, BETA, TH = 'user_id in segment("staff")', 'user_id in segment("beta")', 'country == "TH"'
RING_PHRASES: list[tuple[str, list[tuple[str | None, float]]]] = [
    ("Staff first, then everyone", [(STAFF, 100), (None, 100)]),
    ("The beta list, then everyone", [(BETA, 100), (None, 100)]),
    ("Staff, then the beta list, then everyone", [(STAFF, 100), (BETA, 100), (None, 100)]),
    (
        "Staff first, then the beta list, then Thai users at 25%, then everyone",
        [(STAFF, 100), (BETA, 100), (TH, 25), (None, 100)],
    ),
    (
        "Thai pro users first, then the beta list, then everyone",
        [('country == "TH" and plan == "pro"', 100), (BETA, 100), (None, 100)],
    ),
    (
        "Everyone at 5%, then 25%, then 50%, then 100%",
        [(None, 5), (None, 25), (None, 50), (None, 100)],
    ),
    ("Pro users at 10%, then everyone", [('plan == "pro"', 10), (None, 100)]),
    (
        "Early access members, then users in Vietnam at 50%, then everyone",
        [('user_id in segment("early_access")', 100), ('country == "VN"', 50), (None, 100)],
    ),
    (
        "iOS users at 10%, then iOS users at 50%, then everyone",
        [('platform == "ios"', 10), ('platform == "ios"', 50), (None, 100)],
    ),
    (
        "Staff, then users on app version 2.3.0 or later at 20%, then everyone",
        [(STAFF, 100), ('app_version >= semver("2.3.0")', 20), (None, 100)],
    ),
    (
        "Thai users at 10%, then all Thai users, then everyone at 50%, then everyone",
        [(TH, 10), (TH, 100), (None, 50), (None, 100)],
    ),
    (
        "Staff, then everyone at 1%, then 10%, then 100%",
        [(STAFF, 100), (None, 1), (None, 10), (None, 100)],
    ),
]


def _around(value: object) -> list[object]:
    """Context values that tell rules using ``value`` apart: it, and values next to it."""
    if isinstance(value, bool):
        return [True, False]
    if isinstance(value, int | float):
        return [value - 1, value, value + 1, 0]
    if isinstance(value, Semver):
        parts = value.semver.split("-")[0].split(".")
        near: list[object] = [value.semver, "0.1.0", "99.0.0"]
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            major, minor, patch = (int(p) for p in parts)
            near += [f"{major}.{minor}.{patch + 1}", f"{major}.{minor + 1}.0"]
            near += [f"{major - 1}.9.9"] if major > 0 else []
        return near
    if isinstance(value, Instant):
        around: list[object] = [value.date, "2000-01-01", "2100-01-01"]
        try:
            day = date.fromisoformat(value.date)
        except ValueError:
            return around
        return [*around, str(day - timedelta(days=1)), str(day + timedelta(days=1))]
    if isinstance(value, Segment):
        return list(USER_IDS)
    if isinstance(value, list):
        return [near for item in value for near in _around(item)]
    text = str(value)
    return [text, text + "x", text[:1], "other"]


def contexts(rules: list[AudienceRule], samples: int, seed: int) -> list[dict[str, object]]:
    """Contexts drawn from the values the rules speak of, each attribute sometimes missing."""
    pools: dict[str, list[object]] = {"user_id": list(USER_IDS)}
    for rule in rules:
        for leaf in conditions(rule.root):
            pools.setdefault(leaf.attribute, []).extend(_around(leaf.value))
    rng = random.Random(seed)
    drawn = []
    for _ in range(samples):
        context = {
            name: rng.choice(pool) for name, pool in sorted(pools.items()) if rng.random() < 0.85
        }
        drawn.append(context)
    return drawn


def equivalent(draft: AudienceRule, answer: AudienceRule, samples: int, seed: int) -> bool:
    """Whether the two rules match the same units on every generated context."""
    left, right = Audience.of(draft), Audience.of(answer)
    return all(
        left.matches(c, SEGMENTS) == right.matches(c, SEGMENTS)
        for c in contexts([draft, answer], samples, seed)
    )


def settings(base_url: str, response_format: str) -> LlmSettings:
    return LlmSettings.model_validate(
        {
            "base_url": base_url,
            "model": os.environ.get("LLM_MODEL", LLM_MODEL_ALIAS),
            "api_key": os.environ.get("LLM_API_KEY") or None,
            "timeout_seconds": 120,
            "budget_seconds": 120,
            "retries": 0,
            "max_tokens": 300,
            "response_format": response_format,
        }
    )


async def ask_all(llm: LlmSettings, samples: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for n, (phrase, answer_text) in enumerate(PHRASES):
        answer = parse(answer_text)
        draft = await draft_rule(phrase, CATALOGUE, llm)
        if isinstance(draft, str):
            result = {"phrase": phrase, "parsed": False, "clean": False, "right": False}
            shown = f"no rule: {draft[:120]}"
        else:
            clean = not errors(lint(draft, CATALOGUE))
            right = equivalent(draft, answer, samples, seed=n)
            result = {"phrase": phrase, "parsed": True, "clean": clean, "right": right}
            shown = to_text(draft)[:160]
        results.append(result)
        mark = "RIGHT" if result["right"] else "wrong"
        print(f"{mark} {phrase!r}: {shown}")
    return results


def answer_rings(answer: list[tuple[str | None, float]]) -> list[DraftRing]:
    return [DraftRing(None if text is None else parse(text), percent) for text, percent in answer]


def same_rings(draft: list[DraftRing], answer: list[DraftRing], samples: int, seed: int) -> bool:
    """As many rings, each with the answer's percent and an equivalent audience (or everyone)."""
    if len(draft) != len(answer):
        return False
    for n, (mine, right) in enumerate(zip(draft, answer, strict=True)):
        if mine.percent != right.percent or (mine.audience is None) != (right.audience is None):
            return False
        if mine.audience is None or right.audience is None:
            continue
        if not equivalent(mine.audience, right.audience, samples, seed * 100 + n):
            return False
    return True


async def ask_rings(llm: LlmSettings, samples: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for n, (phrase, answer) in enumerate(RING_PHRASES):
        draft = await draft_rings(phrase, CATALOGUE, llm)
        result = {"phrase": phrase, "parsed": False, "plan": False, "clean": False, "right": False}
        if isinstance(draft, str):
            shown = f"no rings: {draft[:120]}"
        else:
            plan = ring_plan(draft)
            result |= {"parsed": True, "plan": not isinstance(plan, str)}
            result["clean"] = result["plan"] and not errors(ring_findings(draft, CATALOGUE))
            result["right"] = same_rings(draft, answer_rings(answer), samples, seed=n)
            shown = "; ".join(f"{r.percent:g}% {r.text}" for r in draft)[:200]
        results.append(result)
        print(f"{'RIGHT' if result['right'] else 'wrong'} {phrase!r}: {shown}")
    return results


def share(results: list[dict[str, Any]], key: str) -> float:
    return round(sum(bool(r[key]) for r in results) / len(results), 3) if results else 0.0


def summary(results: list[dict[str, Any]], model: str, samples: int) -> dict[str, Any]:
    return {
        "model": model,
        "phrases": len(results),
        "samples_per_phrase": samples,
        "score": share(results, "right"),
        "parsed": share(results, "parsed"),
        "lint_clean": share(results, "clean"),
    }


def self_check(samples: int) -> None:
    """Every answer is lint-clean and equivalent to itself, and not to a near miss."""
    for n, (phrase, text) in enumerate(PHRASES):
        answer = parse(text)
        assert not lint(answer, CATALOGUE), phrase
        assert equivalent(answer, answer, samples, seed=n), phrase
    near = parse('country == "TH" and plan == "pro"'), parse('country == "TH"')
    assert not equivalent(*near, samples, seed=0)
    same = parse('country in ["TH"]'), parse('country == "TH"')
    assert equivalent(*same, samples, seed=0)
    for n, (phrase, rings) in enumerate(RING_PHRASES):
        drafted = answer_rings(rings)
        assert not isinstance(ring_plan(drafted), str), phrase
        assert not ring_findings(drafted, CATALOGUE), phrase
        assert same_rings(drafted, drafted, samples, seed=n), phrase
    staff, everyone = answer_rings([(STAFF, 100), (None, 100)])
    assert not same_rings([staff, everyone], [everyone], samples, seed=0)
    assert not same_rings([staff, everyone], [staff, DraftRing(None, 50)], samples, seed=0)


def main(args: argparse.Namespace) -> dict[str, Any]:
    self_check(args.samples)
    with ExitStack() as stack:
        base_url, stop, description = resolve_llm(Path(tempfile.mkdtemp(prefix="rc-rules-")))
        stack.callback(stop)
        print(f"[rules] model server: {description}", file=sys.stderr)
        llm = settings(base_url, args.response_format)
        rules = [] if args.only == "rings" else asyncio.run(ask_all(llm, args.samples))
        # A reply of several rules: more tokens, and time for them on a busy machine.
        longer = llm.model_copy(
            update={"max_tokens": 600, "timeout_seconds": 300, "budget_seconds": 300}
        )
        rings = [] if args.only == "rules" else asyncio.run(ask_rings(longer, args.samples))
    report = summary(rules, llm.model, args.samples)
    report["rings"] = summary(rings, llm.model, args.samples) | {"plan": share(rings, "plan")}
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=400, help="contexts per phrase")
    parser.add_argument(
        "--response-format",
        default="auto",
        choices=["auto", "json_schema", "json_object", "grammar"],
        help="how replies are constrained (auto: detected, as rolloutctl does)",
    )
    parser.add_argument(
        "--only", choices=["rules", "rings"], help="score only rules, or only ring plans"
    )
    report = main(parser.parse_args())
    rings = report["rings"]
    if report["phrases"]:
        print(
            f"rules: right {report['score']:.0%} of {report['phrases']} phrases,"
            f" parsed {report['parsed']:.0%}, lint-clean {report['lint_clean']:.0%}"
        )
    if rings["phrases"]:
        print(
            f"ring plans: right {rings['score']:.0%} of {rings['phrases']} phrases,"
            f" parsed {rings['parsed']:.0%}, a plan {rings['plan']:.0%},"
            f" lint-clean {rings['lint_clean']:.0%}"
        )
    print(json.dumps(report))
