"""``rolloutctl plan draft``: a plan drafted by the configured model, for a person to review.

The model is asked once, with the plan's JSON Schema constraining its reply
(:func:`controller.adapters.llm.constrained_completion`: bounded in size, never
raises), within the command's deadline (``--deadline``, 30 s) and only if it is
not known to be too small to draft a plan (:mod:`controller.ctl.asking`). Its
plan is printed only if it sets nothing the schema does not ask for
(:func:`~controller.core.drafting.templates.shape_problem`), the plan model accepts it and
:func:`controller.core.drafting.templates.review` finds it sane (no finding of
:func:`controller.core.rollouts.planlint.lint` either, not even a warning, and nothing below
the risk's floor); otherwise, as when the model is too small or past the
deadline, the built-in template for the risk level is printed and stderr says
why in one line. Nothing is started: the output is YAML for ``rolloutctl start
--plan``, after review.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

import orjson

from controller.core.common import ConfigError
from controller.core.drafting import (
    DRAFT_SCHEMA,
    FROM_MODEL,
    TEMPLATES,
    Risk,
    draft_messages,
    plan_yaml,
    review,
    shape_problem,
)
from controller.core.rollouts import Plan, parse_plan, untrusted
from controller.ctl.asking import Asking, TooSmall, ask, command_started
from controller.ctl.terminal import warn
from controller.settings import LlmSettings, load_settings

MAX_DRAFT_TOKENS = 1500
TASK = "draft a plan"


@dataclass(frozen=True, slots=True)
class Draft:
    """The plan to print; ``fallback`` says why the template was used instead of the model's."""

    plan: Plan
    model: str | None
    fallback: str | None = None


def run(args: argparse.Namespace, *, whole_process: bool = False) -> int:
    """Draft, print the YAML on stdout and, for a fallback, the reason on stderr; the deadline
    counts from the process's start with ``whole_process`` (:func:`command_started`)."""
    started = command_started(whole_process=whole_process)
    asking: Asking | None = None
    if not args.no_model:
        llm = model_settings(args, args.deadline)
        asking = Asking(llm, args.deadline, args.allow_small_model, started)
    draft = asyncio.run(draft_plan(args.risk, args.describe, asking))
    if draft.fallback is not None:
        warn(f"using the built-in {args.risk}-risk template: {draft.fallback}")
    lines = header(draft, args.risk, args.describe)
    print(plan_yaml(draft.plan, lines, from_model=draft.model is not None), end="")
    return 0


def model_settings(args: argparse.Namespace, seconds: float) -> LlmSettings:
    """The configured model (config file, environment, options), given ``seconds`` for a draft."""
    llm = load_settings(args.config).llm
    changes: dict[str, object] = {
        "timeout_seconds": seconds,
        "budget_seconds": seconds,
        "retries": 0,
        "max_tokens": max(llm.max_tokens, MAX_DRAFT_TOKENS),
    }
    if args.model_url:
        changes["base_url"] = args.model_url
    if args.model:
        changes["model"] = args.model
    return LlmSettings.model_validate({**llm.model_dump(), **changes})


async def draft_plan(
    risk: Risk,
    description: str,
    asking: Asking | None,
) -> Draft:
    """The model's plan for the change if it is valid and sane, else the risk's template."""
    if asking is None:
        return Draft(TEMPLATES[risk], None, "no model asked (--no-model)")
    messages = draft_messages(risk, description)
    reply = await ask(asking, TASK, messages, DRAFT_SCHEMA, name="rollout_plan")
    if isinstance(reply, TooSmall):
        return Draft(TEMPLATES[risk], None, reply.cause)
    if not isinstance(reply, str):
        return Draft(TEMPLATES[risk], None, f"the model gave no plan: {reply.cause}")
    plan = _plan_in(reply, risk)
    if isinstance(plan, str):
        return Draft(TEMPLATES[risk], None, untrusted(plan, 400))
    return Draft(plan, asking.llm.model)


def _plan_in(content: str, risk: Risk) -> Plan | str:
    """The plan in the model's reply, or why it is not one worth showing."""
    try:
        data = orjson.loads(content.strip())
    except orjson.JSONDecodeError:
        return "the model's reply is not JSON"
    shape = shape_problem(data)
    if shape is not None:
        return shape
    try:
        plan = parse_plan(data, source="plan from the model")
    except ConfigError as exc:
        return str(exc)
    problems = review(plan, risk)
    if problems:
        return "the model's plan is not a sane draft: " + "; ".join(problems)
    return plan


def header(draft: Draft, risk: Risk, description: str) -> list[str]:
    """The comment lines above the YAML: where the plan came from, and that it is a draft."""
    described = untrusted(description, 200)
    source = (
        f"Drafted by the model {untrusted(draft.model, 100)}"
        if draft.model is not None
        else "Built-in template"
    )
    lines = [
        f"{source} for a {risk}-risk change: {described}",
        "A draft: review every stage before `rolloutctl start FLAG --plan FILE`.",
    ]
    if draft.model is not None:
        lines.append(
            f"Lines ending '{FROM_MODEL}' hold the model's choices; the rest are defaults."
        )
    return lines
