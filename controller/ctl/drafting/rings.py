"""``rolloutctl rule draft --rings``: a ring plan drafted by the configured model, for review.

The model is asked once, as for a rule (the same form, catalogue lines and
bounded exchange, :mod:`controller.ctl.drafting.rules`), for the rollout's
rings in the shape of :mod:`controller.core.drafting.ring_form`: each ring an audience
in the flat form, or everyone, and the percent of it served. The rings become
the stages of a real plan (checked to widen, no ring repeated), each ring's
rule is linted against the catalogue, and the rings are previewed on example
contexts: how many each newly reaches, and how many in all. The plan is
printed as the YAML ``rolloutctl start --plan`` takes, the lint and the
preview as comments under it. Rings that make no plan, or a reply that is
none, is an error naming why (exit 1), as is a ring with lint errors, whose
plan is still printed for a person to fix. Nothing is applied.
"""

from __future__ import annotations

import argparse
import asyncio

import orjson

from controller.adapters.llm import constrained_completion
from controller.core.drafting import (
    FROM_MODEL,
    RING_LIMITS,
    Catalogue,
    DraftRing,
    RingDraft,
    errors,
    plan_yaml,
    review_rings,
    rings_in,
    rings_schema,
)
from controller.core.rollouts import untrusted
from controller.ctl.drafting.drafting import model_settings
from controller.ctl.drafting.rules import FORM, inputs, known, shown
from controller.ctl.exits import EXIT_FAILURE, EXIT_OK
from controller.ctl.terminal import warn
from controller.settings import LlmSettings

APPLYING = (
    "A draft: nothing is applied. Review it, then start it with an operator's signed command: "
    "rolloutctl start FLAG --plan FILE."
)
RINGS_FORM = """A ring plan lists rings in order: the feature reaches the first ring's audience,
then the next ring's as well, so each ring is wider than the one before. A ring is
{"audience": ..., "percent": ...}: the audience is "everyone" or an audience rule, the
percent (above 0, at most 100) the share of that audience served. Say "everyone" at 100
last to end with the whole user base.
Example: the staff list, then half of Vietnamese users, then everyone at 10%, then everyone:
{"rings": [
  {"audience": {"match": "all", "conditions": [
    {"attribute": "user_id", "op": "in segment", "value": "staff"}]}, "percent": 100},
  {"audience": {"match": "all", "conditions": [
    {"attribute": "country", "op": "==", "value": "VN"}]}, "percent": 50},
  {"audience": "everyone", "percent": 10},
  {"audience": "everyone", "percent": 100}]}"""


def ring_messages(description: str, catalogue: Catalogue | None) -> list[dict[str, str]]:
    """The chat that asks for rings: the rule form, the ring form, the catalogue, the words."""
    system = (
        f"You write ring plans for feature-flag rollouts.\n{FORM}\n{RINGS_FORM}\n"
        f"{known(catalogue)}\nReply with the JSON object only."
    )
    user = f"Write the ring plan for this rollout: {untrusted(description, 500)}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


async def draft_rings(
    description: str, catalogue: Catalogue | None, llm: LlmSettings
) -> list[DraftRing] | str:
    """The model's rings for ``description``, or why it gave none (safe to print)."""
    reply = await constrained_completion(
        llm, ring_messages(description, catalogue), rings_schema(catalogue), name="ring_plan"
    )
    if not isinstance(reply, str):
        return f"the model gave no ring plan: {untrusted(reply.cause, 400)}"
    try:
        data = orjson.loads(reply.strip())
    except orjson.JSONDecodeError:
        return "the model's reply is not JSON"
    rings = rings_in(data, catalogue)
    return f"the model's rings: {untrusted(rings, 300)}" if isinstance(rings, str) else rings


def run(args: argparse.Namespace) -> int:
    """Draft, review and print the ring plan; exit 1 without one, or with lint errors."""
    catalogue, contexts = inputs(args)
    llm = model_settings(args, args.timeout)
    rings = asyncio.run(draft_rings(args.description, catalogue, llm))
    if isinstance(rings, str):
        warn(rings)
        return EXIT_FAILURE
    draft = review_rings(rings, catalogue, contexts)
    if isinstance(draft, str):
        listed = shown("; ".join(f"{ring.percent:g}% of {ring.text}" for ring in rings)[:600])
        warn(f"the model's rings make no plan: {untrusted(draft, 300)} (rings: {listed})")
        return EXIT_FAILURE
    report = as_json(draft, llm.model) if args.json else as_text(draft, llm.model, args.description)
    print("\n".join(shown(line) for line in report.split("\n")), end="")
    return EXIT_FAILURE if errors(draft.findings) else EXIT_OK


def as_text(draft: RingDraft, model: str, description: str) -> str:
    """The plan's YAML, then its rings, lint and preview as comments (it still loads)."""
    header = [
        f"Ring plan drafted by the model {untrusted(model, 100)}: {untrusted(description, 200)}",
        f"Lines ending '{FROM_MODEL}' hold its rings (audience, percent); soaks, guardrails"
        " and limits are defaults to review.",
    ]
    if draft.plan.limits is not None:
        header.append(
            "A ring at 100% before the last has no control: the limits gate it ("
            + ", ".join(f"{name} {value:g}" for name, value in RING_LIMITS.named().items())
            + ")."
        )
    lines = [plan_yaml(draft.plan, header, from_model="stages").rstrip("\n")]
    for n, ring in enumerate(draft.rings, start=1):
        line = f"# ring {n}: {ring.percent:g}% of {ring.text}"
        if draft.previews is not None:
            seen = draft.previews[n - 1]
            line += (
                f"; reaches {seen.newly} new of {draft.total} example contexts,"
                f" {seen.reached} in all ({seen.unknown} unknown)"
            )
        lines.append(line)
    found = [f"# {f.severity}: {f.message}" for f in draft.findings] or ["# lint: no findings"]
    return "\n".join([*lines, *found, f"# {APPLYING}", ""])


def as_json(draft: RingDraft, model: str) -> str:
    rings = []
    for n, ring in enumerate(draft.rings, start=1):
        seen = None if draft.previews is None else draft.previews[n - 1]
        rings.append(
            {
                "ring": n,
                "audience": None if ring.audience is None else ring.text,
                "percent": ring.percent,
                "preview": None
                if seen is None
                else {"newly": seen.newly, "reached": seen.reached, "unknown": seen.unknown},
            }
        )
    report = {
        "model": untrusted(model, 100),
        "rings": rings,
        "contexts": None if draft.previews is None else draft.total,
        "findings": [{"severity": f.severity, "message": f.message} for f in draft.findings],
        "plan": draft.plan.model_dump(mode="json", exclude_none=True),
        "yaml": plan_yaml(draft.plan, [], from_model="stages"),
        "applied": False,
    }
    return orjson.dumps(report).decode() + "\n"
