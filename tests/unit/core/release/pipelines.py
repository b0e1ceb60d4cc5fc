"""Pipelines and environments the release tests share."""

from __future__ import annotations

import copy
from typing import Any

from controller.core.release.environments import Environments
from controller.core.release.pipeline import Pipeline

ENVIRONMENTS = Environments(names=("dev", "staging", "production"), default="production")
STANDARD: dict[str, Any] = {
    "stages": [
        {"percent": 5, "min_duration": "1h"},
        {"percent": 100, "min_units_per_arm": 0},
    ],
    "guardrails": [{"metric": "error_rate"}],
}
QUICK: dict[str, Any] = {"stages": [{"percent": 100, "min_units_per_arm": 0}]}
DEV_OVERRIDE: dict[str, Any] = {
    "stages": [{"percent": 100, "min_duration": "10m", "min_units_per_arm": 0}],
    "guardrails": [],
}
RELEASE: dict[str, Any] = {
    "name": "checkout-release",
    "plans": {"standard": STANDARD, "quick": QUICK},
    "plan": "standard",
    "overrides": {"dev": DEV_OVERRIDE},
    "steps": [
        {"environment": "dev"},
        {"environment": "staging", "soak": "1h"},
        {
            "environment": "production",
            "approval": {"needs": [{"role": "approver", "count": 2}], "expires_after": "1d"},
        },
    ],
}


def release(**changes: Any) -> dict[str, Any]:
    """The release pipeline's data, with ``changes`` to its top-level fields."""
    return {**copy.deepcopy(RELEASE), **changes}


def steps(*changes: dict[str, Any]) -> list[dict[str, Any]]:
    """The release's steps, each updated with the change at its place."""
    base: list[dict[str, Any]] = copy.deepcopy(RELEASE["steps"])
    return [{**step, **change} for step, change in zip(base, changes, strict=False)] + base[
        len(changes) :
    ]


def pipeline(**changes: Any) -> Pipeline:
    return Pipeline.model_validate(release(**changes))
