"""An OpenFeature provider over the controller's flag states, with exposures and conversions.

::

    from openfeature import api
    from controller.sdk.openfeature import RolloutProvider
    from controller.sdk.sync import SyncFlags

    api.set_provider(RolloutProvider(SyncFlags(kafka)))
    client = api.get_client()
    ctx = EvaluationContext(targeting_key=user_id)
    if client.get_boolean_value("checkout.new-flow", False, ctx): ...
    client.track("purchase", ctx, TrackingEventDetails(value=12.5))

The unit is the evaluation context's ``targeting_key`` and the arm is the one
the shared bucketing function gives every other client, so OpenFeature apps
and native apps agree. A flag resolves to its served arm's value: the one
the plan declares (string, number or object; ``docs/clients.md``, "Arm
values"), else ``treatment`` is True; a flag without declared values also
resolves as a string, to the arm's name. The variant is always the arm. Reasons:
``SPLIT`` while units are bucketed, ``STATIC`` where the value does not vary
(at 0% or 100%, or completed: no targeting key needed), ``TARGETING_MATCH`` in
a targeted rollout, for a unit its rings reach and for one they do not (served
control, cohort ``outside``; the context's attributes are what the rules read),
``DISABLED`` when it
serves control to everyone (inactive, rolled back, killed), and ``ERROR``
with a code and the caller's default: ``FLAG_NOT_FOUND`` for a flag the
controller does not know (so a multi-provider asks the next provider),
``PROVIDER_NOT_READY`` when the states are not loaded yet, ``TARGETING_KEY_MISSING``,
and ``TYPE_MISMATCH`` when the type asked for is not the flag's. Resolving never raises:
an error is answered, as OpenFeature lets a provider, in the resolution's ``error_code``.

The provider's hook emits an exposure after each evaluation that served an arm
of a rollout (``SPLIT``, ``TARGETING_MATCH``, ``STATIC``), with
its ``cohort``, once per unit per flag version unless ``exposures="every"``, and
remembers each unit's arm; ``track`` emits a conversion, named by the tracking
event and with its value, for each flag the unit was exposed to. Another hook
records evaluations on the app's OpenTelemetry span unless ``traces=False``
(:mod:`controller.sdk.openfeature_traces`).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal, Protocol, TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import FlagEvaluationDetails, FlagResolutionDetails, Reason
from openfeature.hook import Hook, HookContext, HookHints
from openfeature.provider import AbstractProvider, Metadata
from openfeature.track import TrackingEventDetails

from controller.core.common import MAX_CONVERSION_VALUE
from controller.core.rules import NO_SEGMENTS, Cohort, SegmentLookup
from controller.core.wire import NO_ATTRIBUTES, Arm, Evaluation, FlagState, evaluate, unit_problem
from controller.sdk.events import EventSink, conversion_name_ok
from controller.sdk.exposures import Exposures
from controller.sdk.flags import Listener
from controller.sdk.measure import Measurement, Served
from controller.sdk.openfeature_traces import TraceHook
from controller.sdk.openfeature_values import (
    boolean_value,
    float_value,
    integer_value,
    object_value,
    resolution,
    resolution_error,
    string_value,
)

log = logging.getLogger("controller.sdk.openfeature")
T = TypeVar("T")

IDEMPOTENCY_KEY = "idempotency_key"
"""The hook hint and tracking attribute that carries the caller's idempotency key."""


class FlagSource(EventSink, Protocol):
    """What the provider reads and emits through: :class:`~controller.sdk.measure.Flags`
    (asyncio apps) or :class:`~controller.sdk.sync.SyncFlags` (threaded apps); the event
    methods are :class:`~controller.sdk.events.EventSink`'s."""

    @property
    def loaded(self) -> bool: ...

    def state(self, flag: str) -> FlagState | None: ...

    def arm(self, flag: str, unit: str) -> tuple[Arm, int]: ...

    def on_change(self, listener: Listener) -> None: ...


class RolloutProvider(AbstractProvider):
    """Resolves flags of every type from the controller's flag states.

    ``ready_timeout`` is how long :meth:`initialize` (which OpenFeature runs
    on a thread of its own) waits for the states; if they come later the
    provider reports ``PROVIDER_READY`` then. A newer state of a flag is
    reported as ``PROVIDER_CONFIGURATION_CHANGED``. ``traces=False`` leaves the
    app's OpenTelemetry spans to another hook.
    """

    def __init__(
        self,
        source: FlagSource,
        *,
        exposures: Literal["once", "every", "off"] = "once",
        remember_units: int = 100_000,
        ready_timeout: float = 10.0,
        segments: SegmentLookup | None = None,
        traces: bool = True,
    ) -> None:
        super().__init__()
        self.source = source
        book = getattr(source, "book", None)
        self.segments: SegmentLookup = (
            segments if segments is not None else getattr(book, "segments", NO_SEGMENTS)
        )
        """Who is in a named segment: the source's book's unless given."""
        self.states: Mapping[str, FlagState] = getattr(book, "states", {})
        """Where prerequisites are looked up: the source's book's states."""
        self.exposures = Exposures(remember_units)
        self._mode = exposures
        self._ready_timeout = ready_timeout
        self._loaded = threading.Event()
        self._initialized = False
        self._hook = ExposureHook(self)
        self._trace_hook = TraceHook() if traces else None
        self.untracked = 0
        """``track`` calls that emitted nothing: no or too long a targeting key, a bad value."""
        self.unnamed = 0
        """``track`` calls whose event name a conversion may not carry: sent unnamed."""
        source.on_change(self._changed)
        if source.loaded:
            self._loaded.set()

    # -- lifecycle and events ---------------------------------------------------------

    def get_metadata(self) -> Metadata:
        return Metadata(name="rollout-controller")

    def get_provider_hooks(self) -> list[Hook]:
        hooks: list[Hook] = [] if self._mode == "off" else [self._hook]
        return hooks if self._trace_hook is None else [*hooks, self._trace_hook]

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Wait up to ``ready_timeout`` for the states; raise ProviderNotReadyError if not there."""
        self._loaded.wait(self._ready_timeout)
        self._initialized = True  # before the second look: a late load then reports READY
        if not self._loaded.is_set():
            raise ProviderNotReadyError("the flag states are not loaded yet")

    def _changed(self, state: FlagState | None) -> None:
        if state is None:
            self._loaded.set()
            if self._initialized:  # initialize() already returned: report readiness now
                self.emit_provider_ready(ProviderEventDetails(message="flag states loaded"))
            return
        if self._loaded.is_set():
            self.emit_provider_configuration_changed(
                ProviderEventDetails(
                    flags_changed=[state.flag],
                    metadata={"version": state.version, "status": state.status.value},
                )
            )

    # -- resolving -------------------------------------------------------------------

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, "boolean", boolean_value)

    def resolve_string_details(
        self,
        flag_key: str,
        default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, "string", string_value)

    def resolve_integer_details(
        self,
        flag_key: str,
        default_value: int,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, "integer", integer_value)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, "float", float_value)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Any,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Any]:
        return self._resolve(flag_key, default_value, evaluation_context, "object", object_value)

    def _resolve(
        self,
        flag: str,
        default: T,
        context: EvaluationContext | None,
        kind: str,
        value_of: Callable[[Evaluation], T | None],
    ) -> FlagResolutionDetails[T]:
        if not self.source.loaded:
            return resolution_error(
                default, ErrorCode.PROVIDER_NOT_READY, "the flag states are not loaded"
            )
        unit = context.targeting_key if context is not None else None
        attributes = context.attributes if context is not None else NO_ATTRIBUTES
        state = self.source.state(flag)  # in the app's environment: its key there (state.flag)
        key = state.flag if state else flag
        evaluation = evaluate(key, state, unit, attributes, self.segments, states=self.states)
        if evaluation.error is not None:
            return resolution_error(default, ErrorCode(evaluation.error.value), evaluation.detail)
        value = value_of(evaluation)
        if value is None:
            found = evaluation.value_type
            why = f"{flag} serves {found} values, not {kind}"
            return resolution_error(default, ErrorCode.TYPE_MISMATCH, why)
        return resolution(evaluation, state, value)

    # -- exposures, outcomes and conversions ----------------------------------------

    def measure(
        self, details: FlagEvaluationDetails[Any], unit: str, *, key: str | None = None
    ) -> AbstractContextManager[Arm]:
        """``with provider.measure(details, unit) as arm:`` reports the block's request outcome.

        For a flag evaluated through OpenFeature (the hook has emitted the
        exposure): times the block and emits its outcome with the arm and
        version of ``details``, like :class:`~controller.sdk.measure.Measurement`.
        An evaluation that served no arm (unknown flag, error) reports nothing.
        """
        version = details.flag_metadata.get("version")
        if details.variant is None or not isinstance(version, int):
            return nullcontext(Arm.CONTROL)
        served = Served(Arm(details.variant), version, _cohort(details))
        flag = getattr(self.source.state(details.flag_key), "flag", details.flag_key)
        return Measurement(served, self.source, flag, unit, key=key, expose=False)

    def expose(
        self,
        flag: str,
        unit: str,
        arm: Arm,
        version: int,
        key: str | None,
        *,
        cohort: Cohort | None = None,
    ) -> None:
        """Emit the exposure unless this unit already saw this flag version (``once``)."""
        flag = getattr(self.source.state(flag), "flag", flag)  # its key in the app's environment
        new = self.exposures.record(unit, flag, arm, version, cohort)
        if new or self._mode == "every":
            self.source.exposure(flag, unit, arm, version, key=key, cohort=cohort)

    def track(
        self,
        tracking_event_name: str,
        evaluation_context: EvaluationContext | None = None,
        tracking_event_details: TrackingEventDetails | None = None,
    ) -> None:
        """A conversion for every flag the unit was exposed to, named by the event; never raises.

        The conversion carries ``tracking_event_name``, so a guardrail may read
        that name alone; a guardrail naming no conversion counts it too. A
        name the contract refuses (a letter, then up to 63 of letters, digits
        and ``_.:-``) is left out, and ``unnamed`` counts the call (logged
        once). The value is the details' ``value``; an ``idempotency_key``
        attribute makes the ids stable. A call that cannot become a
        conversion is counted in ``untracked`` and logged, never raised.
        """
        try:
            self._track(tracking_event_name, evaluation_context, tracking_event_details)
        except Exception as exc:  # the app's call must not fail for the provider's sake
            self.untracked += 1
            log.warning("track(): no conversion, the call failed: %s", type(exc).__name__)

    def _track(
        self,
        name: object,
        context: EvaluationContext | None,
        given: TrackingEventDetails | None,
    ) -> None:
        unit = context.targeting_key if context is not None else None
        details = given if given is not None else TrackingEventDetails()
        if not isinstance(details, TrackingEventDetails):
            details = TrackingEventDetails(value=float("nan"))  # refused below, counted
        problem = _untrackable(unit, details.value)
        if problem or not isinstance(unit, str):
            self.untracked += 1
            log.warning("track(%.64r): no conversion, %s", name, problem)
            return
        attributes = details.attributes if isinstance(details.attributes, dict) else {}
        key = attributes.get(IDEMPOTENCY_KEY)
        converted = self._named(name)
        for flag, (arm, version, cohort) in self.exposures.of(unit).items():
            self.source.conversion(
                flag,
                unit,
                arm,
                version,
                value=details.value,
                key=f"{key}:{name}" if isinstance(key, str) else None,
                cohort=cohort,
                name=converted,
            )

    def _named(self, name: object) -> str | None:
        """The tracking event's name as a conversion carries it; None when it may not."""
        if conversion_name_ok(name):
            return name
        self.unnamed += 1
        if self.unnamed == 1:
            log.warning(
                "track(%.64r): not a conversion name (a letter, then letters, digits and _.:-,"
                " at most 64), sent unnamed; later ones are counted in `unnamed` only",
                name,
            )
        return None


class ExposureHook(Hook):
    """After an evaluation that served a rollout's arm, emits the exposure (see ``expose``)."""

    def __init__(self, provider: RolloutProvider) -> None:
        self._provider = provider

    def after(
        self,
        hook_context: HookContext,
        details: FlagEvaluationDetails[Any],
        hints: HookHints,
    ) -> None:
        unit = hook_context.evaluation_context.targeting_key
        cohort = _cohort(details)
        served = details.reason in _SERVED or cohort is not None
        if not served or not unit or details.variant is None:
            return
        version = details.flag_metadata.get("version")
        if not isinstance(version, int):
            return
        key = hints.get(IDEMPOTENCY_KEY)
        self._provider.expose(
            details.flag_key,
            unit,
            Arm(details.variant),
            version,
            key if isinstance(key, str) else None,
            cohort=cohort,
        )


_SERVED = (Reason.SPLIT, Reason.TARGETING_MATCH, Reason.STATIC)
"""The reasons of an arm a rollout served (not disabled, not an error): exposures report it."""


def _cohort(details: FlagEvaluationDetails[Any]) -> Cohort | None:
    """The cohort the evaluation reported in its metadata, if any."""
    value = details.flag_metadata.get("cohort")
    return Cohort(value) if value in COHORTS else None


COHORTS = frozenset(c.value for c in Cohort)


def _untrackable(unit: object, value: object) -> str:
    """Why a tracking event cannot become a valid conversion, or "" if it can."""
    if problem := unit_problem(unit):
        return problem[1]
    if value is None:
        return ""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return f"the value {value!r} is not a finite number"
    if abs(value) > MAX_CONVERSION_VALUE:
        return f"the value {value!r} is beyond ±{MAX_CONVERSION_VALUE:g}"
    return ""
