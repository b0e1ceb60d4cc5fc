"""Evaluation of a flag for a unit: the one function the app SDK and the controller share.

:func:`evaluate` takes a flag's state (or None when there is none) and the
evaluation context's targeting key (the unit) and says which arm the unit is
served, the flag version to report with it, and why, in OpenFeature's terms:

* ``STATIC``: the flag's value does not vary between units: its rollout
  serves treatment to everyone (completed, or at 100%) or to no one (at 0%);
* ``SPLIT``: the flag is rolled out and the unit was bucketed
  (:func:`controller.core.wire.bucketing.assign`) into an arm;
* ``TARGETING_MATCH``: the flag's rollout is targeted (rings) and its rules
  placed the unit, inside a ring or outside them all;
* ``DISABLED``: the flag serves control to everyone (inactive, rolled back,
  killed), reported with flag version 0;
* ``PREREQUISITE_FAILED``: a flag it requires (:mod:`controller.core.wire.prerequisites`)
  does not serve the unit a listed variant: control, with flag version 0 and no
  rollout, so it is no exposure of the flag's rollout;
* ``HOLDOUT``: the flag names a holdout (:mod:`controller.core.wire.holdouts`)
  that keeps the unit out: control, with the flag's version and rollout and
  cohort ``holdout``, so its exposures are counted apart from the stage's arms;
* ``ERROR`` with an :class:`ErrorCode`: no state for the flag
  (``FLAG_NOT_FOUND``), no targeting key where the flag buckets units
  (``TARGETING_KEY_MISSING``: None or the empty string), or a targeting key
  that cannot be a unit (``INVALID_CONTEXT``: not a string, longer than the
  event contract's 256 characters, or not valid Unicode, whatever the flag);
  the unit is then served control, with flag version 0.

These are the reasons OFREP 0.3.0 lists, ``PREREQUISITE_FAILED`` and
``HOLDOUT`` (reasons OpenFeature leaves open to providers); OpenFeature's ``DEFAULT`` is
not one, so no evaluation answers it. A flag whose state buckets nobody
(unknown, disabled, static) needs no targeting key: background jobs and
start-up code evaluate without one, unless it names a holdout (which hashes
every unit). Nor does a targeted rollout whose every ring treats all of its
audience or none of it (:func:`placed_by_rules`): the rules alone place
a unit there, and rules that name ``targetingKey`` do not match one without it.

A targeted rollout's state carries rings (:mod:`controller.core.rules.targeting`):
the context's ``attributes`` (with the unit as ``targetingKey`` and dates as
the text rules compare, :func:`rule_context`) are matched against the
rollout's audience and the rings' (segments through the caller's
:class:`SegmentLookup`), and the unit's bucket decides within them. Either
way the evaluation's :class:`Cohort` says where it stands in the stage's
comparison (``outside`` for a unit in no ring, served control), and apps
report it with their events.

The arm's value is boolean (treatment is True) unless the flag state
declares typed values for its arms (:mod:`controller.core.wire.arm_values`):
then it is the served arm's value. The in-process OpenFeature provider
(:mod:`controller.sdk.openfeature`), the SDK's ``arm`` and the controller's
OFREP endpoints (:mod:`controller.adapters.ofrep.routes`) all answer from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from controller.core.rules import (
    NO_SEGMENTS,
    AudienceRule,
    Cohort,
    Ring,
    SegmentLookup,
    compiled,
    rule_context,
)
from controller.core.wire.arm_values import ArmValues, json_type
from controller.core.wire.bucketing import BUCKETS, assign, bucket, held_out
from controller.core.wire.flagstates import SERVES_CONTROL
from controller.core.wire.holdouts import Holdout
from controller.core.wire.messages import Arm, FlagStatus
from controller.core.wire.prerequisites import MAX_PREREQUISITE_DEPTH, Prerequisite, met, parent_key

T = TypeVar("T")
MAX_UNIT_CHARS = 256
"""The longest unit the event contract accepts; a longer targeting key is an invalid context."""
NO_ATTRIBUTES: Mapping[str, object] = {}
NO_STATES: Mapping[str, EvaluatedState] = {}  # no states: every prerequisite unknown, unmet

Metadata = dict[str, str | int | float | bool]
"""What an evaluation reports beside the arm: strings, numbers and booleans only (OFREP)."""


class Reason(StrEnum):
    """Why a unit got its arm: OpenFeature's resolution reasons."""

    STATIC = "STATIC"
    SPLIT = "SPLIT"
    TARGETING_MATCH = "TARGETING_MATCH"
    DISABLED = "DISABLED"
    PREREQUISITE_FAILED = "PREREQUISITE_FAILED"
    HOLDOUT = "HOLDOUT"
    ERROR = "ERROR"


class ErrorCode(StrEnum):
    """Why a flag could not be evaluated: OpenFeature's error codes."""

    FLAG_NOT_FOUND = "FLAG_NOT_FOUND"
    TARGETING_KEY_MISSING = "TARGETING_KEY_MISSING"
    INVALID_CONTEXT = "INVALID_CONTEXT"
    PARSE_ERROR = "PARSE_ERROR"
    GENERAL = "GENERAL"


class EvaluatedState(Protocol):
    """What evaluation reads of a flag state: the message's fields, or ``/flags``' view."""

    @property
    def flag(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def status(self) -> FlagStatus: ...
    @property
    def percent(self) -> float: ...
    @property
    def salt(self) -> str: ...
    @property
    def rollout_id(self) -> str | None: ...
    @property
    def stage(self) -> int | None: ...
    @property
    def audience(self) -> AudienceRule | None: ...
    @property
    def rings(self) -> Sequence[Ring] | None: ...
    @property
    def values(self) -> ArmValues | None: ...
    @property
    def requires(self) -> Sequence[Prerequisite] | None: ...
    @property
    def holdout(self) -> Holdout | None: ...


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A flag evaluated for one unit: the arm, the version to report, and why."""

    flag: str
    arm: Arm
    version: int
    """The flag version apps report with the arm in their events; 0 when not from a rollout."""
    reason: Reason
    rollout_id: str | None = None
    stage: int | None = None
    error: ErrorCode | None = None
    detail: str = ""
    """The error, or the prerequisite not met, in words; else empty."""
    cohort: Cohort | None = None
    """With rings: where the unit stands in the stage's comparison; apps report it."""
    values: ArmValues | None = None
    """The flag's declared arm values; None: boolean, treatment True."""

    @property
    def value(self) -> Any:
        """The arm's value: the declared one, else treatment is True and control False."""
        treated = self.arm is Arm.TREATMENT
        return treated if self.values is None else self.values.of(treated)

    @property
    def value_type(self) -> str:
        """The type of :attr:`value`: ``boolean`` unless the flag declares another."""
        return "boolean" if self.values is None else self.values.type

    def value_or(self, default: T) -> T:
        """:attr:`value`, or ``default`` after an error or when its type is not the flag's.

        The default's JSON type is the type asked for: ``"v1"`` asks for a
        string, ``0`` or ``0.0`` for a number, ``{}`` for an object.
        """
        if self.error is not None or json_type(default) != self.value_type:
            return default
        value: T = self.value
        return value

    @property
    def variant(self) -> str:
        """The arm's name: ``treatment`` or ``control``."""
        return self.arm.value

    def metadata(self) -> Metadata:
        """What a client needs to report exposures: ``flag_version`` and, in a rollout, its id."""
        out: Metadata = {"flag_version": self.version}
        if self.rollout_id is not None:
            out["rollout_id"] = self.rollout_id
        if self.stage is not None:
            out["stage"] = self.stage
        if self.cohort is not None:
            out["cohort"] = self.cohort.value
        return out


def evaluate(
    flag: str,
    state: EvaluatedState | None,
    unit: object,
    attributes: Mapping[str, object] = NO_ATTRIBUTES,
    segments: SegmentLookup = NO_SEGMENTS,
    *,
    states: Mapping[str, EvaluatedState] = NO_STATES,
) -> Evaluation:
    """``flag`` evaluated for ``unit`` (the targeting key, as the caller got it) under ``state``.

    Never raises: a unit that cannot be bucketed is an ``INVALID_CONTEXT``
    error. ``attributes`` (the rest of the evaluation context) are what a
    targeted rollout's rules read; a rule that cannot read them (a missing
    attribute, a wrong type, an unknown segment) does not match. ``states``
    (every flag state held, by key) is where prerequisites are looked up.
    """
    if (problem := key_problem(unit)) is not None:
        return failed(flag, *problem)
    return _Walk(unit, attributes, segments, states).evaluate(flag, state, {flag}, 0)


class _Walk:
    """One evaluation and its prerequisites, looked up in ``states`` by key: each parent
    evaluated once (a diamond costs each flag once); one met again while it is evaluated (a
    cycle), or past :data:`MAX_PREREQUISITE_DEPTH`, is not met."""

    def __init__(
        self,
        unit: object,
        attributes: Mapping[str, object],
        segments: SegmentLookup,
        states: Mapping[str, EvaluatedState],
    ) -> None:
        self.unit, self.attributes, self.segments, self.states = unit, attributes, segments, states
        self.served: dict[str, str | None] = {}  # each parent's variant that counts, or None

    def evaluate(
        self, flag: str, state: EvaluatedState | None, open_: set[str], depth: int
    ) -> Evaluation:
        if state is None:
            return failed(flag, ErrorCode.FLAG_NOT_FOUND, f"no flag {flag!r} is known")
        if state.requires and state.status not in SERVES_CONTROL:
            for needed in state.requires:
                if not met(needed, self._parent(parent_key(flag, needed.flag), open_, depth)):
                    detail = f"{needed.flag} does not serve {' or '.join(needed.variants)}"
                    reason = Reason.PREREQUISITE_FAILED
                    return Evaluation(
                        flag, Arm.CONTROL, 0, reason, values=state.values, detail=detail
                    )
        if state.holdout is not None and state.status not in SERVES_CONTROL:
            return _held(flag, state, self.unit) or _own(
                flag, state, self.unit, self.attributes, self.segments
            )
        return _own(flag, state, self.unit, self.attributes, self.segments)

    def _parent(self, key: str, open_: set[str], depth: int) -> str | None:
        """The variant the parent keyed ``key`` serves that can meet a prerequisite: None
        for an unknown, killed or failed one, one in a cycle or past the depth bound."""
        if key in open_ or depth >= MAX_PREREQUISITE_DEPTH:
            return None
        if key not in self.served:
            state = self.states.get(key)
            found = self.evaluate(key, state, open_ | {key}, depth + 1)
            counts = found.error is None and found.reason is not Reason.PREREQUISITE_FAILED
            alive = state is not None and state.status is not FlagStatus.KILLED
            self.served[key] = found.variant if counts and alive else None
        return self.served[key]


def _own(
    flag: str,
    state: EvaluatedState,
    unit: object,
    attributes: Mapping[str, object],
    segments: SegmentLookup,
) -> Evaluation:
    """``flag`` evaluated under its own ``state`` alone, its prerequisites met."""
    if (fixed := _unbucketed(flag, state)) is not None:
        return fixed
    keyed = unit if isinstance(unit, str) and unit else None
    if state.rings is not None and (keyed is not None or placed_by_rules(state.rings)):
        return _targeted(flag, state, keyed, attributes, segments)
    if keyed is None:
        return failed(flag, *_MISSING)
    return _served(flag, state, assign(flag, state.salt, keyed, state.percent), Reason.SPLIT)


def _held(flag: str, state: EvaluatedState, unit: object) -> Evaluation | None:
    """Control with ``HOLDOUT`` where the state's holdout keeps ``unit`` out, an error without
    a key (the holdout must hash every unit); None for a unit it does not hold out."""
    assert state.holdout is not None
    if not isinstance(unit, str) or not unit:
        return failed(flag, *_MISSING)
    if not held_out(state.holdout.name, state.holdout.percent, unit):
        return None
    held = Evaluation(flag, Arm.CONTROL, state.version, Reason.HOLDOUT, cohort=Cohort.HOLDOUT)
    return replace(held, rollout_id=state.rollout_id, stage=state.stage, values=state.values)


def _unbucketed(flag: str, state: EvaluatedState) -> Evaluation | None:
    """What every unit is served when ``state`` buckets nobody (disabled, or static); None
    where units are bucketed."""
    if state.status in SERVES_CONTROL:
        return _served(flag, state, Arm.CONTROL, Reason.DISABLED, version=0)
    if state.rings is None and (static := static_arm(state.percent)) is not None:
        return _served(flag, state, static, Reason.STATIC)
    return None


def static_arm(percent: float) -> Arm | None:
    """The arm every unit gets at ``percent`` (treatment at 100%, control at 0%); None where
    units are bucketed."""
    if percent >= 100.0:
        return Arm.TREATMENT
    return Arm.CONTROL if percent <= 0.0 else None


def _served(
    flag: str, state: EvaluatedState, arm: Arm, reason: Reason, *, version: int | None = None
) -> Evaluation:
    """``arm`` served under ``state``, reported with its version (or ``version``)."""
    reported = state.version if version is None else version
    return Evaluation(
        flag, arm, reported, reason, state.rollout_id, state.stage, values=state.values
    )


def placed_by_rules(rings: Sequence[Ring]) -> bool:
    """Whether every ring treats all of its audience or none of it, so that a unit's place
    depends on its attributes alone and no targeting key is needed to bucket it."""
    return all(ring.threshold in (0, BUCKETS) for ring in rings)


def _targeted(
    flag: str,
    state: EvaluatedState,
    unit: str | None,
    attributes: Mapping[str, object],
    segments: SegmentLookup,
) -> Evaluation:
    """A targeted rollout's evaluation: the rings place the unit (:mod:`targeting`); a unit
    without a key only where no ring splits its audience (:func:`placed_by_rules`)."""
    if not isinstance(attributes, Mapping):
        return failed(flag, ErrorCode.INVALID_CONTEXT, "the context's attributes are no mapping")
    unit_bucket = 0 if unit is None else bucket(flag, state.salt, unit)
    try:
        context = rule_context(unit, attributes)
    except Exception:  # a hostile mapping must not reach the app
        return failed(flag, ErrorCode.INVALID_CONTEXT, "the context's attributes cannot be read")
    where = compiled(state.audience, state.rings or ()).place(unit_bucket, context, segments)
    arm = Arm.TREATMENT if where.treated else Arm.CONTROL
    # Outside every ring is the rules' answer too: OFREP has no DEFAULT, and the cohort
    # (``outside``) tells the two apart.
    return Evaluation(
        flag,
        arm,
        state.version,
        Reason.TARGETING_MATCH,
        state.rollout_id,
        state.stage,
        cohort=where.cohort,
        values=state.values,
    )


def unit_problem(unit: object) -> tuple[ErrorCode, str] | None:
    """Why ``unit`` cannot be bucketed (the error code and the reason), or None if it can.

    Unicode validity is checked by :func:`key_problem`, which evaluation asks first.
    """
    if unit is None or (isinstance(unit, str) and not unit):
        return _MISSING
    if not isinstance(unit, str):
        return ErrorCode.INVALID_CONTEXT, (
            f"the targeting key must be a string, not {type(unit).__name__}"
        )
    if len(unit) > MAX_UNIT_CHARS:
        return ErrorCode.INVALID_CONTEXT, (
            f"the targeting key is longer than {MAX_UNIT_CHARS} characters"
        )
    return None


def key_problem(unit: object) -> tuple[ErrorCode, str] | None:
    """Why a targeting key that was given cannot be a unit, for any flag; None for a good
    key or none (None or empty: whether that is an error depends on the flag)."""
    if unit is None or (isinstance(unit, str) and not unit):
        return None
    if (problem := unit_problem(unit)) is not None:
        return problem
    assert isinstance(unit, str)  # unit_problem refuses anything else
    try:
        unit.encode()
    except UnicodeEncodeError:
        return ErrorCode.INVALID_CONTEXT, "the targeting key is not valid Unicode"
    return None


_MISSING = ErrorCode.TARGETING_KEY_MISSING, "the evaluation context has no targeting key"


def failed(flag: str, error: ErrorCode, detail: str) -> Evaluation:
    """An evaluation that failed: control, with flag version 0."""
    return Evaluation(flag, Arm.CONTROL, 0, Reason.ERROR, error=error, detail=detail)
