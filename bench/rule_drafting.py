"""Rule drafting quality: phrases with hand-written answer rules, asked of the configured model.

Each phrase ("Thai pro users") has an answer written by hand in the rule
language (``country == "TH" and plan == "pro"``). The model is asked exactly
as ``rolloutctl rule draft`` asks it (same prompt, catalogue and bounds), and
a draft counts as right when it is *equivalent* to the answer, not equal to
it: both are evaluated on the same contexts, generated from the literals of
both rules and values around them (one less, one more, another string, the
attribute missing), with segment memberships fixed, and must agree on every
one. ``country in ["TH"]`` is as right as ``country == "TH"``.

Prints one line a phrase and, last, one JSON object: the score (right /
phrases), how often the reply parsed as a rule, and how often it passed the
lint. The model is LLM_BASE_URL (with LLM_MODEL, LLM_API_KEY), else the
embedded SmolLM2-135M server, far too small to write rules: run a 7B-class
instruct model for a meaningful figure.

    python bench/rule_drafting.py [--samples 400] [--response-format auto]
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

from controller.core.audience import AudienceRule, Instant, Segment, Semver, conditions
from controller.core.matching import Audience, IdSegments
from controller.core.rule_lint import errors, lint, load_catalogue
from controller.core.rule_text import parse, to_text
from controller.ctl.rule_drafting import draft_rule
from controller.settings import LlmSettings
from tests.services import LLM_MODEL_ALIAS, resolve_llm

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


def summary(results: list[dict[str, Any]], model: str, samples: int) -> dict[str, Any]:
    def share(key: str) -> float:
        return round(sum(bool(r[key]) for r in results) / len(results), 3)

    return {
        "model": model,
        "phrases": len(results),
        "samples_per_phrase": samples,
        "score": share("right"),
        "parsed": share("parsed"),
        "lint_clean": share("clean"),
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


def main(args: argparse.Namespace) -> dict[str, Any]:
    self_check(args.samples)
    with ExitStack() as stack:
        base_url, stop, description = resolve_llm(Path(tempfile.mkdtemp(prefix="rc-rules-")))
        stack.callback(stop)
        print(f"[rules] model server: {description}", file=sys.stderr)
        llm = settings(base_url, args.response_format)
        results = asyncio.run(ask_all(llm, args.samples))
    return summary(results, llm.model, args.samples)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=400, help="contexts per phrase")
    parser.add_argument(
        "--response-format",
        default="auto",
        choices=["auto", "json_schema", "json_object", "grammar"],
        help="how replies are constrained (auto: detected, as rolloutctl does)",
    )
    report = main(parser.parse_args())
    print(
        f"right {report['score']:.0%} of {report['phrases']} phrases,"
        f" parsed {report['parsed']:.0%}, lint-clean {report['lint_clean']:.0%}"
    )
    print(json.dumps(report))
