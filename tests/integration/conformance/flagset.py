"""OpenFeature's Gherkin flag set (``tests/vectors/openfeature/test-flags.json``) as our flags.

The suite's flags have named variants, a default variant, an optional CEL
``contextEvaluator`` and ``disabled``; ours have two arms, control and
treatment, each with a value. One rule translates every flag, so no scenario
is passed by a flag tuned for it:

* untargeted: treatment serves the default variant's value and control the
  other's; the rollout is completed (everyone gets treatment: ``STATIC``);
* ``disabled``: the same arms, the rollout killed (everyone gets control:
  ``DISABLED``);
* targeted: treatment serves the variant the expression picks, control the
  default variant's (what the expression's ``''`` falls back to); the
  rollout's one stage targets the expression, written as one of our rules
  (:data:`RULES`: CEL itself is not ours).

Flags without a default variant (``null-default-flag``,
``undefined-default-flag``) and the suite's per-flag ``flagMetadata`` have no
counterpart; no vendored scenario evaluates the former, and the metadata
scenarios are listed as differences.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.rules.text import parse as parse_rule
from controller.core.wire.arm_values import ArmValues, ValueType
from tests.support.clients.ofrep import flag_rollout

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "openfeature"
FLAGS_FILE = VECTORS / "test-flags.json"
RULES = {
    "email == 'ballmer@macrosoft.com' ? 'zero' : ''": (
        'email == "ballmer@macrosoft.com"',
        "zero",
    ),
    "!customer && email == 'ballmer@macrosoft.com' && age > 10 ? 'internal' : ''": (
        'customer == false and email == "ballmer@macrosoft.com" and age > 10',
        "internal",
    ),
}
"""Each CEL expression of the flag set: our rule, and the variant it picks where it matches."""
SPEC_EXAMPLE_FLAG = "discount-banner"
"""The flag key of the OFREP document's examples: a split flag, so its examples answer 200."""


@dataclass(frozen=True)
class SuiteFlag:
    """One flag of the suite's set, as the file has it."""

    key: str
    variants: dict[str, Any]
    default: str | None
    disabled: bool
    evaluator: str | None

    @classmethod
    def read(cls, key: str, raw: dict[str, Any]) -> SuiteFlag:
        return cls(
            key,
            raw["variants"],
            raw.get("defaultVariant"),
            bool(raw.get("disabled", False)),
            raw.get("contextEvaluator"),
        )

    def arms(self) -> tuple[Any, Any]:
        """(control, treatment) values, by the module's rule."""
        assert self.default is not None
        if self.evaluator is not None:
            return self.variants[self.default], self.variants[RULES[self.evaluator][1]]
        [other] = [value for name, value in self.variants.items() if name != self.default]
        return other, self.variants[self.default]


def suite_flags() -> list[SuiteFlag]:
    """The flags of the suite's set that have a default variant."""
    raw: dict[str, dict[str, Any]] = json.loads(FLAGS_FILE.read_text(encoding="utf-8"))
    flags = [SuiteFlag.read(key, value) for key, value in raw.items()]
    return [flag for flag in flags if flag.default is not None]


def rollout_of(flag: SuiteFlag) -> Rollout:
    """``flag`` as a rollout of ours (see the module's docstring)."""
    control, treatment = flag.arms()
    values = ArmValues(type=_type_of(treatment), control=control, treatment=treatment)
    if flag.evaluator is not None:
        return _targeted(flag.key, values, RULES[flag.evaluator][0])
    phase = Phase.KILLED if flag.disabled else Phase.COMPLETED
    rollout = flag_rollout(flag.key, 100.0, phase=phase)
    return _with(rollout, values=values)


def suite_rollouts() -> list[Rollout]:
    """Every translated flag, and the OFREP document's example flag split at 50%."""
    return [*map(rollout_of, suite_flags()), flag_rollout(SPEC_EXAMPLE_FLAG, 50.0)]


def _targeted(key: str, values: ArmValues, rule: str) -> Rollout:
    rollout = flag_rollout(key, 100.0)
    first, *rest = rollout.plan.stages
    stages = [first.model_copy(update={"audience": parse_rule(rule)}), *rest]
    return _with(rollout, values=values, stages=stages)


def _with(rollout: Rollout, **plan: Any) -> Rollout:
    return rollout.model_copy(update={"plan": rollout.plan.model_copy(update=plan)})


def _type_of(value: object) -> ValueType:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else "object"
