"""What a feature's strategies in Unleash serve, read back against the controller's.

The adapter reads an environment's strategies (:class:`Strategy`, bounded as
read); :func:`would_serve` says what they serve as a :class:`Serving`,
comparable with what the rollout wants (:func:`controller.core.serving.serving.desired`):
the controller's own strategy (or, for a targeted rollout, its strategies,
:mod:`controller.core.serving.rings`), what was done to it by hand, and every
strategy a person added beside it, named for an operator to find.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from controller.core.common import VERSION_PARAMETER
from controller.core.rules import Constraint
from controller.core.serving.rings import ours_shape
from controller.core.serving.serving import STRATEGY, Serving, Target


@dataclass(frozen=True, slots=True)
class Strategy:
    """One strategy of an environment as Unleash answered it, bounded by the adapter.

    ``parameters`` as text (Unleash keeps them as strings); ``constraints``
    and ``segments`` counted: any of them narrows who is served, which the
    controller's strategy never does.
    """

    name: str
    id: str | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    constraints: int = 0
    segments: int = 0
    disabled: bool = False
    rules: tuple[Constraint, ...] = ()
    """The constraints themselves, as read (an unreadable one is kept as such)."""


def would_serve(enabled: bool, strategies: Sequence[Strategy], target: Target) -> Serving:
    """What an environment with these strategies serves, against the controller's strategy.

    The controller's strategy is the first ``flexibleRollout`` whose
    ``groupId`` is the feature. Every other enabled strategy is named in
    ``others``; whatever was done to the controller's own in ``tampered``.
    """
    if target.targeted:
        return _would_serve_rings(enabled, strategies, target)
    ours = next((s for s in strategies if _is_ours(s, target)), None)
    others = tuple(_other(s) for s in strategies if s is not ours and not s.disabled)
    if ours is None:
        return Serving(enabled=enabled, others=others)
    parameters = ours.parameters
    percent = whole_number(parameters.get("rollout"), 0, 100)
    tampered = [f"rollout was set to {_shown(parameters.get('rollout'))}, not a whole percent"]
    tampered = tampered if percent is None else []
    if ours.disabled:
        tampered.append(f"the {STRATEGY} strategy of {target.feature} was disabled")
    if ours.constraints:
        tampered.append(f"{ours.constraints} constraint(s) were added to the {STRATEGY} strategy")
    if ours.segments:
        tampered.append(f"{ours.segments} segment(s) were added to the {STRATEGY} strategy")
    stickiness = parameters.get("stickiness")
    return Serving(
        enabled=enabled,
        percent=percent,
        stickiness=stickiness[:200] if stickiness else None,
        version=whole_number(parameters.get(VERSION_PARAMETER), 0, 2**53),
        strategy_id=ours.id,
        tampered=tuple(tampered),
        others=others,
    )


def _would_serve_rings(enabled: bool, strategies: Sequence[Strategy], target: Target) -> Serving:
    """A targeted rollout's read-back: every ``flexibleRollout`` of the feature's group is ours."""
    ours = [s for s in strategies if _is_ours(s, target)]
    others = tuple(_other(s) for s in strategies if s not in ours and not s.disabled)
    if not ours:
        return Serving(enabled=enabled, others=others)
    shape, parts, owned = ours_shape(
        [(s.id, s.parameters, s.rules, s.segments, s.disabled) for s in ours]
    )
    versions = {whole_number(s.parameters.get(VERSION_PARAMETER), 0, 2**53) for s in ours}
    return Serving(
        enabled=enabled,
        version=versions.pop() if len(versions) == 1 else None,
        shape=shape,
        strategy_id=ours[0].id,
        others=others,
        owned=owned,
        parts=parts,
    )


def whole_number(text: str | None, low: int, high: int) -> int | None:
    """``text`` as a whole number within ``[low, high]``, or None.

    ASCII digits only: ``"²".isdigit()`` is true in Python, and ``int("²")``
    raises, so a hand-typed superscript must read as "unreadable", not crash.
    """
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > 16:
        return None
    number = int(text)
    return number if low <= number <= high else None


def _is_ours(strategy: Strategy, target: Target) -> bool:
    return strategy.name == STRATEGY and strategy.parameters.get("groupId") == target.feature


def _other(strategy: Strategy) -> str:
    """A strategy a person added, named so that an operator can find it in Unleash's UI."""
    ident = f" ({strategy.id[:60]})" if strategy.id else ""
    narrowed = strategy.constraints or strategy.segments
    whom = "the units its constraints match" if narrowed else "every unit it matches"
    if strategy.name == "default" and not narrowed:
        whom = "everyone"
    name = strategy.name[:60]
    return f"a {name} strategy{ident} was added beside the controller's, serving {whom}"


def _shown(value: str | None) -> str:
    return "nothing" if value is None else repr(value[:20])
