"""Exposures from apps that keep their Unleash SDK: the arm it actually served.

For a rollout served from Unleash the app evaluates the flag with the real
Unleash Python SDK (``UnleashClient``); the gates still need an ``exposure``
per evaluation, with the arm served, the unit and the flag version. This
helper wraps the client's ``is_enabled`` / ``get_variant`` and emits them::

    exposures = UnleashExposures(emitter.exposure)
    client = UnleashClient(url, "checkout", custom_headers={"Authorization": token},
                           event_callback=exposures.on_event)
    client.initialize_client()
    flags = exposures.wrap(client)
    if flags.is_enabled("new-checkout", {"userId": user_id}): ...

Why the version comes from Unleash, not from the controller: an SDK refreshes
on an interval (15 s by default), so for a while after a stage change it
still serves the previous percent. The controller writes the flag version
into the strategy it manages (``rcFlagVersion``, with the flag's name in
``rcFlag``); the helper reads them from each payload the SDK fetches (the
SDK's ``FETCHED`` event), so an exposure carries the version of the strategy
that was actually served. Exposures served at the old percent count for the
old stage, and the lag can never show as a sample-ratio mismatch.

The unit is the context field the strategy is sticky on (``default``:
``userId``, else ``sessionId``); an evaluation without it, or of a feature
the controller does not manage, is served but not exposed. Imports nothing
of the Unleash SDK: the client is used through its documented methods only.

Rings that name segments: the controller writes each segment's contents
into the strategies, so Unleash serves its members; the cohort an exposure
names needs the segments too. Pass ``segments=`` (the app's
``SegmentFollower`` or ``SegmentPoller``); without it, evaluations of such
a rollout are served but not exposed, as a cohort guessed wrong would count
a unit in the wrong ring.
Call it where the emitter lives (the thread running its event loop), as any
other use of :class:`~controller.sdk.events.EventEmitter`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson
from pydantic import ValidationError

from controller.core.common import (
    FLAG_PARAMETER,
    TARGETING_PARAMETER,
    VERSION_PARAMETER,
)
from controller.core.rules import (
    MAX_RINGS,
    NO_SEGMENTS,
    AudienceRule,
    Cohort,
    CompiledRings,
    Ring,
    Segment,
    SegmentLookup,
    conditions,
)
from controller.core.wire import Arm

MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
"""A fetched feature payload larger than this is ignored (the versions stay as they were)."""
MAX_FEATURES = 10_000
MAX_STRATEGIES = 1000

Emit = Callable[..., object]
"""``EventEmitter.exposure``: (flag, unit, arm, flag version), and ``cohort=`` for rings."""
MAX_TARGETING_CHARS = 65_536


class UnleashLike(Protocol):
    """The two methods of ``UnleashClient`` the helper wraps."""

    def is_enabled(self, feature_name: str, context: dict[str, Any] | None = None) -> bool: ...
    def get_variant(
        self, feature_name: str, context: dict[str, Any] | None = None
    ) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Managed:
    """What the controller's strategy on one feature says: its flag, version and stickiness."""

    flag: str
    version: int
    stickiness: str
    rings: CompiledRings | None = None
    """A targeted rollout's audience and rings (``rcTargeting``): each exposure's cohort."""
    segmented: bool = False
    """The rings name a segment."""


class UnleashExposures:
    """Learns the served versions from the SDK's fetches; emits an exposure per evaluation."""

    def __init__(
        self,
        emit: Emit,
        *,
        chain: Callable[[Any], None] | None = None,
        segments: SegmentLookup | None = None,
    ) -> None:
        self._emit = emit
        self._chain = chain
        self._segments = segments
        self._managed: dict[str, Managed] = {}

    def on_event(self, event: Any) -> None:
        """The SDK's ``event_callback``: a fetched payload updates the versions served."""
        raw = getattr(event, "raw_features", None)
        if isinstance(raw, (str, bytes)) and len(raw) <= MAX_PAYLOAD_BYTES:
            self._managed = managed_features(raw)  # one assignment: readers see old or new
        if self._chain is not None:
            self._chain(event)

    def managed(self, feature: str) -> Managed | None:
        """What the last fetched payload says of ``feature`` (None: not the controller's)."""
        return self._managed.get(feature)

    def wrap(self, client: UnleashLike) -> ServedFlags:
        """``client`` with ``is_enabled`` and ``get_variant`` that emit exposures."""
        return ServedFlags(client, self)

    def expose(
        self, feature: str, context: Mapping[str, Any] | None, served: bool
    ) -> Exposed | None:
        """Emit the exposure of one evaluation, if the feature is managed and has a unit."""
        managed = self._managed.get(feature)
        if managed is None:
            return None
        unit = unit_of(context or {}, managed.stickiness)
        if unit is None:
            return None
        arm = Arm.TREATMENT if served else Arm.CONTROL
        if managed.rings is None:
            exposed = Exposed(managed.flag, unit, arm, managed.version)
            self._emit(exposed.flag, exposed.unit, exposed.arm, exposed.flag_version)
            return exposed
        lookup = self._segments or NO_SEGMENTS
        if self._segments is None and managed.segmented:
            return None  # its cohort cannot be known here
        # Unleash decided the arm; the audiences are the same rules, so they name the cohort.
        cohort = managed.rings.place(0, attributes_of(context or {}), lookup).cohort
        exposed = Exposed(managed.flag, unit, arm, managed.version, cohort)
        self._emit(exposed.flag, exposed.unit, exposed.arm, exposed.flag_version, cohort=cohort)
        return exposed


@dataclass(frozen=True, slots=True)
class Exposed:
    """What one evaluation exposed: the app's request and conversion events repeat it."""

    flag: str
    unit: str
    arm: Arm
    flag_version: int
    cohort: Cohort | None = None


class ServedFlags:
    """An Unleash client whose evaluations are exposures too."""

    def __init__(self, client: UnleashLike, exposures: UnleashExposures) -> None:
        self.client = client
        self._exposures = exposures

    def is_enabled(self, feature: str, context: dict[str, Any] | None = None) -> bool:
        served = bool(self.client.is_enabled(feature, context))
        self._exposures.expose(feature, context, served)
        return served

    def exposed(self, feature: str, context: dict[str, Any] | None = None) -> Exposed | None:
        """Evaluate like ``is_enabled``; what was exposed (None: not the controller's flag)."""
        served = bool(self.client.is_enabled(feature, context))
        return self._exposures.expose(feature, context, served)

    def get_variant(self, feature: str, context: dict[str, Any] | None = None) -> dict[str, Any]:
        variant = self.client.get_variant(feature, context)
        served = bool(variant.get("feature_enabled", variant.get("enabled", False)))
        self._exposures.expose(feature, context, served)
        return variant


def unit_of(context: Mapping[str, Any], stickiness: str) -> str | None:
    """The unit an evaluation hashes on: the sticky field of the context."""
    properties = context.get("properties")
    extra = properties if isinstance(properties, Mapping) else {}
    fields = ("userId", "sessionId") if stickiness == "default" else (stickiness,)
    for name in fields:
        value = context.get(name, extra.get(name))
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            return str(value)[:256]
    return None


def attributes_of(context: Mapping[str, Any]) -> dict[str, Any]:
    """An Unleash context as the rules read it: its fields and its ``properties`` together."""
    properties = context.get("properties")
    flat = dict(properties) if isinstance(properties, Mapping) else {}
    flat.update((k, v) for k, v in context.items() if k != "properties")
    return flat


def rings_of(text: object) -> CompiledRings | None:
    """``rcTargeting`` (``[audience, [[rule, threshold], ...]]``) compiled; None if unreadable."""
    if not isinstance(text, str) or len(text) > MAX_TARGETING_CHARS:
        return None
    try:
        audience, rings = orjson.loads(text)
        if not isinstance(rings, list) or not 0 < len(rings) <= MAX_RINGS:
            return None
        rule = None if audience is None else AudienceRule.model_validate(audience)
        parsed = [Ring(audience=r, threshold=t) for r, t in rings]
    except (orjson.JSONDecodeError, ValidationError, TypeError, ValueError):
        return None
    return CompiledRings.of(rule, parsed)


def _segmented(rings: CompiledRings) -> bool:
    rules = [rings.audience, *(audience for audience, _ in rings.rings)]
    return any(
        isinstance(c.value, Segment)
        for rule in rules
        if rule is not None
        for c in conditions(rule.rule.root)
    )


def managed_features(raw: str | bytes) -> dict[str, Managed]:
    """The features of a client payload that carry the controller's strategy parameters."""
    try:
        features = orjson.loads(raw).get("features")
    except (orjson.JSONDecodeError, AttributeError):
        return {}
    out: dict[str, Managed] = {}
    for feature in features[:MAX_FEATURES] if isinstance(features, list) else []:
        name = feature.get("name") if isinstance(feature, dict) else None
        strategies = feature.get("strategies") if isinstance(name, str) else None
        strategies = strategies[:MAX_STRATEGIES] if isinstance(strategies, list) else []
        found = next((m for m in map(_managed, strategies) if m is not None), None)
        if found is None:
            continue
        targeting = next((p for p in map(_targeting, strategies) if p is not None), None)
        if targeting is None:
            out[str(name)] = found
        elif (rings := rings_of(targeting)) is not None:  # unreadable rings: not exposed at all
            out[str(name)] = replace(found, rings=rings, segmented=_segmented(rings))
    return out


def _targeting(strategy: Any) -> str | None:
    parameters = strategy.get("parameters") if isinstance(strategy, dict) else None
    value = parameters.get(TARGETING_PARAMETER) if isinstance(parameters, dict) else None
    return value if isinstance(value, str) else None


def _managed(strategy: Any) -> Managed | None:
    parameters = strategy.get("parameters") if isinstance(strategy, dict) else None
    if not isinstance(parameters, dict):
        return None
    flag, version = parameters.get(FLAG_PARAMETER), parameters.get(VERSION_PARAMETER)
    stickiness = parameters.get("stickiness", "default")
    if not (isinstance(flag, str) and flag and isinstance(version, str) and version.isdigit()):
        return None
    if len(version) > 15 or not isinstance(stickiness, str):
        return None
    return Managed(flag[:256], int(version), stickiness[:100] or "default")
