"""``rolloutctl rule draft``: an audience rule drafted by the configured model, for review.

The model is asked once for the rule in a flat JSON form its reply format is
constrained to (:mod:`controller.core.drafting.rule_form`: the catalogue's attributes
and the operators enumerated), with the team's attribute catalogue in the
prompt; the exchange is bounded as ``plan draft``'s is
(:func:`controller.adapters.llm.constrained_completion`). The reply becomes a
rule of the rule model (the text form in ``{"rule": "…"}`` and the wire's JSON
form are taken too), linted against the catalogue and previewed on example contexts
(:mod:`controller.core.drafting.rule_lint`). A reply that is not a rule is an error
naming why (exit 1), as is a rule with lint errors, which is still printed
for a person to fix. Nothing is applied: a rule reaches the controller only
in a plan an operator starts with a signed command. ``--rings`` drafts a ring
plan instead (:mod:`controller.ctl.drafting.rings`), with this module's form,
catalogue lines and inputs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from pydantic import ValidationError

from controller.adapters.llm import constrained_completion
from controller.core.common import ConfigError
from controller.core.drafting import (
    Catalogue,
    Finding,
    Preview,
    draft_schema,
    errors,
    from_form,
    is_form,
    lint,
    load_catalogue,
    preview,
    preview_findings,
)
from controller.core.rollouts import untrusted
from controller.core.rules import AudienceRule, RuleSyntaxError, parse, to_text
from controller.ctl.drafting.drafting import model_settings
from controller.ctl.exits import EXIT_FAILURE, EXIT_OK
from controller.ctl.terminal import warn
from controller.settings import LlmSettings

MAX_FILE_BYTES = 1024 * 1024
MAX_CONTEXTS = 10_000
APPLYING = (
    "A draft: nothing is applied. Put it in a plan stage and start that plan with "
    "an operator's signed command."
)

FORM = """An audience rule is a JSON object: "match" is "all" (every condition) or "any" (one
is enough), and "conditions" lists {"attribute", "op", "value"}. Ops: == != < <= > >=
starts_with ends_with contains, "in" / "not in" with a list of values, "in segment" /
"not in segment" with a segment name. Versions and dates are strings ("2.3.0", "2024-01-01").
Examples:
  pro users in Thailand: {"match": "all", "conditions": [
    {"attribute": "country", "op": "==", "value": "TH"},
    {"attribute": "plan", "op": "==", "value": "pro"}]}
  the beta list or version 2.3.0 and later: {"match": "any", "conditions": [
    {"attribute": "user_id", "op": "in segment", "value": "beta"},
    {"attribute": "app_version", "op": ">=", "value": "2.3.0"}]}"""


def known(catalogue: Catalogue | None) -> str:
    """The prompt's lines naming the attributes (with their types) and segments to use."""
    if catalogue is None:
        return "Use attribute names a context is likely to carry (country, plan, user_id)."
    attributes = ", ".join(f"{n} ({t})" for n, t in catalogue.attributes.items())
    segments = ", ".join(catalogue.segments) or "none"
    return f"Use only these attributes: {attributes}.\nSegments: {segments}."


def rule_messages(description: str, catalogue: Catalogue | None) -> list[dict[str, str]]:
    """The chat that asks for a rule: the form, the catalogue, then the description."""
    system = (
        f"You write audience rules for feature-flag rollouts.\n{FORM}\n{known(catalogue)}\n"
        "Reply with the JSON object only."
    )
    user = f"Write the rule for this audience: {untrusted(description, 500)}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def rule_in(content: str, catalogue: Catalogue | None = None) -> AudienceRule | str:
    """The rule in the model's reply, or why there is none (safe to print).

    The flat form it was asked for; ``{"rule": "<text form>"}`` and the wire's
    JSON form are taken too.
    """
    try:
        data = orjson.loads(content.strip())
    except orjson.JSONDecodeError:
        return "the model's reply is not JSON"
    if is_form(data):
        rule = from_form(data, catalogue)
        return rule if not isinstance(rule, str) else f"the model's rule: {untrusted(rule, 300)}"
    if isinstance(data, dict) and isinstance(data.get("rule"), str):
        try:
            return parse(data["rule"])
        except RuleSyntaxError as exc:
            return f"the model's rule does not parse: {untrusted(str(exc), 300)}"
    try:
        return AudienceRule.model_validate(data)
    except ValidationError:
        return "the model's reply is not a rule in any form it knows"


@dataclass(frozen=True, slots=True)
class RuleDraft:
    """A parsed draft with what the lint and the preview say of it."""

    rule: AudienceRule
    findings: list[Finding] = field(default_factory=list)
    seen: Preview | None = None


def review(
    rule: AudienceRule, catalogue: Catalogue | None, contexts: list[Mapping[str, object]] | None
) -> RuleDraft:
    """Lint ``rule`` and, given contexts, preview it on them."""
    findings = lint(rule, catalogue)
    seen = preview(rule, contexts) if contexts is not None else None
    if seen is not None:
        findings += preview_findings(seen)
    return RuleDraft(rule, findings, seen)


async def draft_rule(
    description: str, catalogue: Catalogue | None, llm: LlmSettings
) -> AudienceRule | str:
    """The model's rule for ``description``, or why it gave none."""
    reply = await constrained_completion(
        llm, rule_messages(description, catalogue), draft_schema(catalogue), name="audience_rule"
    )
    if not isinstance(reply, str):
        return f"the model gave no rule: {untrusted(reply.cause, 400)}"
    return rule_in(reply, catalogue)


def inputs(args: argparse.Namespace) -> tuple[Catalogue | None, list[Mapping[str, object]] | None]:
    """The catalogue and example contexts the options name, each optional."""
    catalogue = None if args.catalogue is None else _catalogue(args.catalogue)
    contexts = None if args.contexts is None else read_contexts(_read(args.contexts))
    return catalogue, contexts


def run(args: argparse.Namespace) -> int:
    """Draft, review and print; exit 1 without a usable rule."""
    catalogue, contexts = inputs(args)
    llm = model_settings(args, args.timeout)
    rule = asyncio.run(draft_rule(args.description, catalogue, llm))
    if isinstance(rule, str):
        warn(rule)
        return EXIT_FAILURE
    draft = review(rule, catalogue, contexts)
    print(as_json(draft, llm.model) if args.json else as_text(draft, llm.model), end="")
    return EXIT_FAILURE if errors(draft.findings) else EXIT_OK


def _catalogue(path: Path) -> Catalogue:
    return load_catalogue(_read(path), source=f"catalogue {path}", name=path.name)


def _read(path: Path) -> str:
    """A file's text, refused past :data:`MAX_FILE_BYTES`."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    return data.decode(errors="replace")


def read_contexts(text: str) -> list[Mapping[str, object]]:
    """Contexts, one JSON object a line (blank lines skipped); the first bad line is an error."""
    contexts: list[Mapping[str, object]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            context = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ConfigError(f"contexts line {number}: not JSON") from None
        if not isinstance(context, dict):
            raise ConfigError(f"contexts line {number}: not a JSON object")
        if len(contexts) == MAX_CONTEXTS:
            raise ConfigError(f"contexts: more than {MAX_CONTEXTS}")
        contexts.append(context)
    return contexts


def shown(text: str) -> str:
    """Text safe on a terminal: non-printable characters as JSON escapes (inside strings only)."""
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)


def as_text(draft: RuleDraft, model: str) -> str:
    lines = [f"# Drafted by the model {untrusted(model, 100)}", shown(to_text(draft.rule)), ""]
    lines += [f"{f.severity}: {f.message}" for f in draft.findings] or ["lint: no findings"]
    if draft.seen is not None:
        seen = draft.seen
        lines.append(
            f"preview: matches {seen.matched} of {seen.total} example contexts "
            f"({seen.unknown} unknown: an attribute or segment missing)"
        )
    return "\n".join([*lines, APPLYING, ""])


def as_json(draft: RuleDraft, model: str) -> str:
    seen = draft.seen
    report = {
        "model": untrusted(model, 100),
        "rule": to_text(draft.rule),
        "audience": orjson.loads(draft.rule.to_json()),
        "findings": [{"severity": f.severity, "message": f.message} for f in draft.findings],
        "preview": None
        if seen is None
        else {"total": seen.total, "matched": seen.matched, "unknown": seen.unknown},
        "applied": False,
    }
    return orjson.dumps(report).decode() + "\n"
