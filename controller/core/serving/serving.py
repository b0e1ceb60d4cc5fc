"""What a flag platform should serve for a rollout, and how to tell a person's change.

Pure, like the rest of the core. The daemon's backend sync reads what the
platform serves (:class:`Serving`), compares it with what the rollout wants
(:func:`desired`) and with what it applied last (:class:`Applied`), and acts
on the verdict of :func:`reconcile`: write, record, nothing, or stop and
report a person's change (drift). The sync is level-triggered: the rollout's
saved state is the desired state, so a write that failed, or that a crash
cut short, is simply made again on the next pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from controller.core.rollouts import Phase, Rollout, UnleashTarget
from controller.core.rules import NO_HELD_SEGMENTS, HeldSegments, targeting_json
from controller.core.serving.dependencies import Dependency
from controller.core.serving.rings import Owned, Spec, ring_specs, shape_of
from controller.core.wire import JsonObject

_MAX_PARTS = 64
STRATEGY = "flexibleRollout"
"""The one kind of strategy the controller writes (its ``groupId`` is the feature's name)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A feature in one environment of one project, with the stickiness units hash on."""

    feature: str
    project: str
    environment: str
    stickiness: str
    targeted: bool = False
    """The plan has rings: the controller owns one strategy per ring term (``serving_rings``)."""

    @classmethod
    def of(
        cls,
        target: UnleashTarget,
        *,
        project: str,
        environment: str,
        stickiness: str,
        targeted: bool = False,
    ) -> Target:
        """The plan's target, what it leaves out taken from the settings' defaults."""
        return cls(
            feature=target.feature,
            project=target.project or project,
            environment=target.environment or environment,
            stickiness=target.stickiness or stickiness,
            targeted=targeted,
        )


@dataclass(frozen=True, slots=True)
class Serving:
    """What the platform serves (read back) or should serve (desired).

    ``percent`` None: the controller's strategy is missing or its percent is
    unreadable (read back), or its percent does not matter because the
    environment is off (desired). Read back, ``tampered`` names what was done
    to the controller's own strategy that a write of the whole strategy
    undoes (constraints, a disabled flag, an unreadable value), and ``others``
    the other strategies that serve the feature beside it: Unleash serves a
    unit the feature if any enabled strategy matches it, so each one counts.

    A targeted rollout (rings) is served by several strategies: ``shape`` is
    the digest of all of them (each one's percent, stickiness, constraints and
    anything a person did to it), ``specs`` what to write (desired) and
    ``owned`` the strategies found (read back); ``percent`` is then None.

    ``dependencies``: the feature's dependencies on parent features, sorted
    (the plan's prerequisites, :mod:`controller.core.serving.dependencies`).
    """

    enabled: bool
    percent: int | None = None
    stickiness: str | None = None
    version: int | None = None
    shape: str | None = None
    dependencies: tuple[Dependency, ...] = ()
    strategy_id: str | None = field(default=None, compare=False)
    exists: bool = field(default=True, compare=False)
    tampered: tuple[str, ...] = field(default=(), compare=False)
    others: tuple[str, ...] = field(default=(), compare=False)
    specs: tuple[Spec, ...] | None = field(default=None, compare=False)
    owned: tuple[Owned, ...] = field(default=(), compare=False)
    parts: tuple[str, ...] = field(default=(), compare=False)
    targeting: str | None = field(default=None, compare=False)
    """The rollout's audience and rings as JSON, written on one strategy for the SDK helper."""
    """Each strategy's own digest: a write cut short leaves some old, some new."""

    def to_json(self) -> JsonObject:
        out: JsonObject = {
            "enabled": self.enabled,
            "percent": self.percent,
            "stickiness": self.stickiness,
            "version": self.version,
        }
        if self.shape is not None:
            out["shape"], out["parts"] = self.shape, [*self.parts]
        if self.dependencies:
            out["dependencies"] = [d.to_json() for d in self.dependencies]
        return out

    @classmethod
    def from_json(cls, data: Any) -> Serving | None:
        if not isinstance(data, dict):
            return None
        percent, version = data.get("percent"), data.get("version")
        stickiness, shape, parts = data.get("stickiness"), data.get("shape"), data.get("parts")
        parts = parts[:_MAX_PARTS] if isinstance(parts, list) else []
        return cls(
            dependencies=_dependencies_from(data.get("dependencies")),
            parts=tuple(p[:40] for p in parts if isinstance(p, str)),
            enabled=data.get("enabled") is True,
            percent=percent if isinstance(percent, int) else None,
            stickiness=stickiness if isinstance(stickiness, str) else None,
            version=version if isinstance(version, int) else None,
            shape=shape[:100] if isinstance(shape, str) else None,
        )


def _dependencies_from(data: Any) -> tuple[Dependency, ...]:
    found = data[:_MAX_PARTS] if isinstance(data, list) else []
    return tuple(
        sorted(
            Dependency(d["feature"][:200], d.get("enabled") is True, _variants(d.get("variants")))
            for d in found
            if isinstance(d, dict) and isinstance(d.get("feature"), str)
        )
    )


def _variants(data: Any) -> tuple[str, ...]:
    found = data[:_MAX_PARTS] if isinstance(data, list) else []
    return tuple(sorted(v[:100] for v in found if isinstance(v, str)))


def desired(
    rollout: Rollout,
    target: Target,
    segments: HeldSegments = NO_HELD_SEGMENTS,
    dependencies: tuple[Dependency, ...] = (),
) -> Serving | None:
    """What the platform should serve in this state; None before the rollout starts.

    Running, paused or watching: the stage's percent. Completed: 100.
    Rolled back, aborted or killed: the environment off (the strategy is left).
    Rings naming segments are written with ``segments``' contents inline, so a
    changed segment changes what is desired; ConfigError where one cannot be.
    Served, the feature has ``dependencies`` (the plan's prerequisites).
    """
    if rollout.phase is Phase.PENDING:
        return None
    if not (rollout.phase.active or rollout.phase is Phase.COMPLETED):
        return Serving(enabled=False)
    rings = rollout.rings()
    if rings is not None:
        specs = ring_specs(rollout.plan.audience, rings, segments)
        targeting = json.dumps(targeting_json(rollout.plan.audience, rings), ensure_ascii=False)
        shape, parts = shape_of(specs, target.stickiness, targeting)
        return Serving(
            enabled=True,
            version=rollout.flag_version,
            shape=shape,
            specs=tuple(specs),
            parts=parts,
            targeting=targeting,
            dependencies=dependencies,
        )
    return Serving(
        enabled=True,
        percent=round(rollout.percent),
        stickiness=target.stickiness,
        version=rollout.flag_version,
        dependencies=dependencies,
    )


def matches(actual: Serving, want: Serving) -> bool:
    """Whether the platform already serves ``want`` (off: whatever the strategies say)."""
    if not want.enabled:
        return not actual.enabled
    return actual.exists and actual == want and not actual.tampered and not actual.others


@dataclass(frozen=True, slots=True)
class Applied:
    """The sync's record of one flag: what it applied last and what it is applying.

    ``intent`` is written before a change is made and cleared once it is, so a
    half-made change (a crash between two API calls) is not taken for a
    person's. ``held_version``: a person's change was found while the rollout
    was at this flag version; nothing is written until the rollout moves on.
    """

    rollout_id: str
    applied: Serving | None = None
    intent: Serving | None = None
    held_version: int | None = None
    held_what: str = ""

    def to_json(self) -> JsonObject:
        return {
            "rollout_id": self.rollout_id,
            "applied": self.applied.to_json() if self.applied else None,
            "intent": self.intent.to_json() if self.intent else None,
            "held_version": self.held_version,
            "held_what": self.held_what,
        }

    @classmethod
    def from_json(cls, data: Any) -> Applied | None:
        if not isinstance(data, dict) or not isinstance(data.get("rollout_id"), str):
            return None
        held = data.get("held_version")
        what = data.get("held_what")
        return cls(
            rollout_id=data["rollout_id"],
            applied=Serving.from_json(data.get("applied")),
            intent=Serving.from_json(data.get("intent")),
            held_version=held if isinstance(held, int) else None,
            held_what=what[:500] if isinstance(what, str) else "",
        )


def drift(actual: Serving, record: Applied | None, target: Target) -> list[str]:
    """What a person changed: each field that is neither what was applied nor being applied."""
    if record is None or record.applied is None:
        return []
    known = [s for s in (record.applied, record.intent) if s is not None]
    changes: list[str] = []
    if all(actual.enabled != s.enabled for s in known):
        state = "on" if actual.enabled else "off"
        changes.append(f"environment {target.environment} was turned {state}")
    wanted = [s for s in known if s.enabled and (s.percent is not None or s.shape is not None)]
    if wanted and actual.enabled:
        if not actual.exists or (actual.strategy_id is None and actual.percent is None):
            changes.append(f"the {STRATEGY} strategy of {target.feature} was removed")
        elif _rings_changed(actual, wanted, record):
            changes.append(
                f"the controller's {STRATEGY} strategies of {target.feature} were changed"
                " (a constraint, rollout, stickiness or segment, or one added, disabled or removed)"
            )
        elif actual.percent is not None:
            if all(actual.percent != s.percent for s in wanted):
                was = "/".join(f"{s.percent}%" for s in wanted)
                changes.append(f"rollout was changed from {was} to {actual.percent}%")
            if all(actual.stickiness != s.stickiness for s in wanted):
                changes.append(
                    f"stickiness was changed from {wanted[0].stickiness} to {actual.stickiness}"
                )
        if all(actual.dependencies != s.dependencies for s in wanted):
            changes.append(
                f"dependencies of {target.feature} were changed from"
                f" {_listed(wanted[0].dependencies)} to {_listed(actual.dependencies)}"
            )
        changes += actual.tampered
    if wanted:
        changes += actual.others
    return changes


def _listed(dependencies: tuple[Dependency, ...]) -> str:
    return "[" + "; ".join(str(d) for d in dependencies) + "]"


def _rings_changed(actual: Serving, wanted: list[Serving], record: Applied) -> bool:
    """A targeted rollout's strategies are neither what was applied nor being applied, nor,
    while a write is under way (or was cut short), each one either the old or the new."""
    if not any(s.shape for s in wanted) or any(actual.shape == s.shape for s in wanted):
        return False
    if record.intent is None or record.applied is None:
        return True
    return not set(actual.parts) <= {*record.applied.parts, *record.intent.parts}


class Verdict(Enum):
    NOTHING = "nothing"
    RECORD = "record"
    WRITE = "write"
    DRIFT = "drift"
    HELD = "held"


def reconcile(
    rollout: Rollout, want: Serving, actual: Serving, record: Applied | None, target: Target
) -> tuple[Verdict, list[str]]:
    """What to do about one flag, and the changes a person made (with ``DRIFT``).

    A hold stays while the rollout is at the version it was found at: the
    operator resumes, rolls back or kills to move on, and only then does the
    controller write again. A safety action (the environment off) is written
    before anything a person changed is looked at: a kill never waits on drift.
    """
    if record is not None and record.held_version == rollout.flag_version:
        return Verdict.HELD, []
    if _taking_over(want, actual, record):
        return (Verdict.RECORD if matches(actual, want) else Verdict.WRITE), []
    # With no record yet, turning the feature on beside another strategy would
    # serve it to whoever that strategy matches: a person's doing, never overwritten.
    changes = drift(actual, record, target) or (list(actual.others) if want.enabled else [])
    if changes:
        return Verdict.DRIFT, changes
    if matches(actual, want):
        done = record is not None and record.applied == want and record.intent is None
        return (Verdict.NOTHING if done else Verdict.RECORD), []
    return Verdict.WRITE, []


def _taking_over(want: Serving, actual: Serving, record: Applied | None) -> bool:
    """Whether to write without looking for a person's change.

    Turning the environment off, until it has been applied once; and the
    first write after a hold, once the rollout moved on (unless another
    strategy would serve the feature: that stays a person's change).
    """
    if not want.enabled:
        return record is None or record.applied is None or record.applied.enabled
    return record is not None and record.held_version is not None and not actual.others
