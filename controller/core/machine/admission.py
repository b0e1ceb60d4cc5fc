"""What a start meets in the state it finds, and a set of commands tried on a copy of it.

:func:`start_problem` is the check the controller makes before any rollout starts (a
start command's, a pipeline step's): its prerequisites in its environment (an unknown
flag, a cycle, a chain too deep, what Unleash's dependent features cannot express) and
its holdout's percent against every flag naming it there. :func:`pipeline_refusal` and
:func:`taken` are a pipeline start's checks of its plans and of the flag being free.

:class:`Trial` decides a set of commands one after another on a copy of the rollouts
held, as the command intake would (the start checks, then :func:`step`), each admitted
one taken as applied, so the next meets it: ``POST /commands/check`` answers with it for
``rolloutctl apply``, which sends a directory only when every object would be applied.
Nothing is saved. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from controller.core.common import ConfigError
from controller.core.machine.commands import plan as start_plan
from controller.core.machine.machine import step
from controller.core.release import Pipeline, window_problems
from controller.core.rollouts import CommandInput, CommandRefused, Plan, RecordDecision, Rollout
from controller.core.serving import unleash_problems
from controller.core.wire import holdout_problems, start_problems


def start_problem(flag: str, plan: Plan | None, plans: Mapping[str, Plan]) -> str | None:
    """Why starting the flag keyed ``flag`` (its key in its environment) with ``plan`` would
    break its environment's prerequisites or give its holdout another percent than a flag
    naming it there, given the plan of every rollout held (key -> plan), or None."""
    if plan is None or (not plan.requires and plan.holdout is None):
        return None
    if plan.requires:
        held = {key: list(each.requires or ()) for key, each in plans.items()}
        if problems := start_problems(flag, plan.requires, held):
            return "invalid plan: requires: " + "; ".join(problems)
        if problems := unleash_problems(flag, plan, plans):
            return "invalid plan: requires: " + "; ".join(problems)
    holdouts = {key: each.holdout for key, each in plans.items()}
    if problems := holdout_problems(flag, plan.holdout, holdouts):
        return "invalid plan: holdout: " + "; ".join(problems)
    return None


def pipeline_refusal(pipeline: Pipeline, now: datetime, backends: frozenset[str]) -> str | None:
    """Why an environment's plan cannot work as a start command's plan could not, or a
    step's release windows never open again, or None."""
    shut = window_problems(pipeline, now)
    if shut:
        return f"invalid pipeline: {'; '.join(shut)}"
    for i, environment in enumerate(pipeline.environments):
        plan = pipeline.plan_for(environment).model_dump(mode="json")
        try:
            start_plan(plan, backends=backends, now=now)
        except ConfigError as exc:
            return f"invalid pipeline: steps.{i} ({environment}): {exc}"
    return None


def taken(key: str, rollout: Rollout | None) -> str | None:
    """Why a pipeline may not start at ``key``: a rollout there still runs, or None."""
    if rollout is not None and rollout.phase.active:
        return f"{key} has a rollout {rollout.phase.value}: a pipeline starts its own"
    return None


@dataclass
class Trial:
    """The rollouts held (key -> rollout), and what the commands tried so far started."""

    rollouts: dict[str, Rollout]
    started: dict[str, Plan] = field(default_factory=dict)
    """Plans a pipeline tried so far starts, by key: they count for the next start."""

    def plans(self) -> dict[str, Plan]:
        return {key: r.plan for key, r in self.rollouts.items()} | self.started

    def command(self, event: CommandInput | CommandRefused) -> str | None:
        """Why the rollouts service would refuse ``event`` (the intake's input for a flag's
        command) on the state so far, or None: then it is taken as applied."""
        plan = event.plan if isinstance(event, CommandInput) else None
        if broken := start_problem(event.flag, plan, self.plans()):
            return broken
        held = self.rollouts.get(event.flag)
        new, actions = step(held, event)
        for action in actions:
            if isinstance(action, RecordDecision) and action.outcome == "rejected":
                return action.reason
        if new is not None:
            self.rollouts[event.flag] = new
            self.started.pop(event.flag, None)
        return None

    def pipeline(self, pipeline: Pipeline, keys: Mapping[str, str]) -> str | None:
        """Why ``pipeline`` may not start on the state so far (``keys``: its flag's key in
        each environment), or None: then each step's plan counts for the next start."""
        for environment in pipeline.environments:
            if busy := taken(keys[environment], self.rollouts.get(keys[environment])):
                return busy
        for environment in pipeline.environments:
            plan = pipeline.plan_for(environment)
            if broken := start_problem(keys[environment], plan, self.plans()):
                return f"{environment}: {broken}"
        for environment in pipeline.environments:
            self.started[keys[environment]] = pipeline.plan_for(environment)
        return None
