"""Flag states and arm assignment: :class:`FlagBook`, and :class:`FlagClient` over Kafka.

:class:`FlagClient` reads the compacted flag-state topic from its beginning
(no consumer group: every partition, every instance) and answers
:meth:`FlagClient.arm` from memory with the shared bucketing function, so
every app instance serves a unit the same arm for the same flag version.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TypeVar

from pydantic import ValidationError

from controller.core.common import scoped, split
from controller.core.rules import NO_SEGMENTS, SegmentLookup
from controller.core.wire import (
    NO_ATTRIBUTES,
    Arm,
    Evaluation,
    FlagState,
    Verdict,
    evaluate,
    supersedes,
)
from controller.kit.lifecycle import Lifecycle
from controller.sdk.segments import SegmentFollower
from controller.sdk.traces import record
from controller.sdk.transport import TopicFeed
from controller.sdk.trust import verifier
from controller.settings import KafkaSettings, TopicSettings

log = logging.getLogger("controller.sdk.client")

_TOPICS = TopicSettings()
T = TypeVar("T")
Listener = Callable[[FlagState | None], None]
"""Told of each newer flag state, and with None once the states are loaded."""


class FlagBook:
    """The latest state of each flag, and the arm a unit gets from it.

    Shared by :class:`FlagClient` (Kafka) and
    :class:`controller.sdk.poller.FlagPoller` (HTTP): whichever way states
    arrive, arms are assigned by the one bucketing function.

    With ``keys`` (key id -> base64 Ed25519 public key of the controller) a
    state is held only with a valid signature by one of them; the others are
    counted in ``rejected`` and logged. Which state replaces which follows
    :func:`controller.core.wire.flagstates.supersedes`; a state that serves
    control replacing a higher version (books that do not verify) is
    counted in ``overridden``.

    With ``environment`` (an app outside the controller's default environment,
    ``staging``) the app names its flags as ever (``checkout``) and the book
    answers from the environment's states (``checkout@staging``), whose key
    its evaluations and events carry (docs/rollouts.md, "Roles per key and
    environments"). An app in the default environment names none.
    """

    def __init__(
        self,
        states: Iterable[FlagState] = (),
        *,
        keys: Mapping[str, str] | None = None,
        segments: SegmentLookup = NO_SEGMENTS,
        environment: str | None = None,
    ) -> None:
        self.environment = environment
        """The app's environment (None: the controller's default one)."""
        self._states: dict[str, FlagState] = {}
        self.segments = segments
        """Who is in a named segment, for targeted rollouts' rules."""
        self._listeners: list[Listener] = []
        self._verifier = verifier(keys)
        self.ready = asyncio.Event()
        self.invalid = 0
        self.stale = 0
        self.rejected = 0
        """States refused for their signature: unsigned, by an unknown key, or forged."""
        self.rejected_by: Counter[str] = Counter()
        """``rejected`` by reason: ``unsigned``, ``unknown_key``, ``bad_signature``."""
        self.overridden = 0
        self.traces = True
        """Whether evaluations are recorded on the app's current OpenTelemetry span, when the
        app traces (:mod:`controller.sdk.traces`); False leaves its traces to another hook."""
        for state in states:
            self.apply(state)

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(state)`` for every newer state held, and ``listener(None)`` when ready.

        Listeners run on the thread that follows the states (the event loop's);
        one that raises is logged and the others still run.
        """
        self._listeners.append(listener)

    def _notify(self, state: FlagState | None) -> None:
        for listener in self._listeners:
            try:
                listener(state)
            except Exception:
                log.exception("flag_listener_failed")

    def mark_ready(self) -> None:
        """Set ``ready`` (once) and tell the listeners: the states are loaded."""
        if not self.ready.is_set():
            self.ready.set()
            self._notify(None)

    def key(self, flag: str) -> str:
        """The key of ``flag`` in the app's environment (``checkout@staging``)."""
        return environment_key(flag, self.environment)

    def state(self, flag: str) -> FlagState | None:
        """The latest state of ``flag``, or None when none was seen."""
        return self._states.get(self.key(flag))

    @property
    def states(self) -> Mapping[str, FlagState]:
        """Every state held, by key (read-only): where prerequisites are looked up."""
        return MappingProxyType(self._states)

    def arm(
        self, flag: str, unit: str, attributes: Mapping[str, object] = NO_ATTRIBUTES
    ) -> tuple[Arm, int]:
        """The arm to serve ``unit`` (with the context's ``attributes``) and the flag version.

        Unknown flags and flags that are inactive, rolled back or killed serve
        control with flag version 0, and so does a unit that cannot be bucketed
        (empty, over 256 characters, or not valid Unicode): never raises here.
        See :func:`controller.core.wire.evaluation.evaluate`.
        """
        evaluation = self.evaluate(flag, unit, attributes)
        return evaluation.arm, evaluation.version

    def value(
        self,
        flag: str,
        unit: object,
        default: T,
        attributes: Mapping[str, object] = NO_ATTRIBUTES,
    ) -> T:
        """The value of the arm ``unit`` is served: the plan's declared one, else a boolean.

        ``default`` when the flag is unknown, the unit cannot be evaluated, or
        the flag's values are not of the default's type (``"v1"`` asks for a
        string, ``0`` for a number, ``{}`` for an object, ``False`` for a
        boolean). See :meth:`~controller.core.wire.evaluation.Evaluation.value_or`.
        """
        flag = self.key(flag)
        found = evaluate(
            flag, self._states.get(flag), unit, attributes, self.segments, states=self.states
        )
        value = found.value_or(default)
        if self.traces:
            record(found, unit, value)
        return value

    def evaluate(
        self, flag: str, unit: object, attributes: Mapping[str, object] = NO_ATTRIBUTES
    ) -> Evaluation:
        """``flag`` evaluated for ``unit`` by the one evaluation function (never raises).

        Recorded on the app's current OpenTelemetry span, if any (``traces``).
        """
        flag = self.key(flag)
        found = evaluate(
            flag, self._states.get(flag), unit, attributes, self.segments, states=self.states
        )
        if self.traces:
            record(found, unit)
        return found

    @property
    def verifying(self) -> bool:
        """Whether states are held only with a valid signature."""
        return self._verifier is not None

    def apply(self, state: FlagState) -> bool:
        """Hold ``state`` if it is trusted and supersedes the state held; whether it was."""
        if self._verifier is not None and (problem := self._verifier.problem(state)):
            self.rejected += 1
            self.rejected_by[problem] += 1
            _log_at_powers_of_two(
                self.rejected,
                "flag_state_rejected: %s (flag %s, version %d, key %s); rejected so far: %d",
                problem,
                state.flag,
                state.version,
                state.key_id,
                self.rejected,
            )
            return False
        verdict = supersedes(self._states.get(state.flag), state, verified=self.verifying)
        if verdict is Verdict.STALE:
            self.stale += 1
            return False
        if verdict is Verdict.SAFETY:
            self.overridden += 1
            _log_at_powers_of_two(
                self.overridden,
                "flag_state_override: %s %s at version %d replaces version %d, which served "
                "treatment (unverified states: a version above the controller's may be forged)",
                state.flag,
                state.status.value,
                state.version,
                self._states[state.flag].version,
            )
        self._states[state.flag] = state
        self._notify(state)
        return True


def environment_key(flag: str, environment: str | None) -> str:
    """``flag``'s key in an app's ``environment`` (None: the default one, the flag's own key);
    a key that names its environment already is left as it is."""
    return flag if split(flag)[1] else scoped(flag, environment, "")


def _log_at_powers_of_two(count: int, message: str, *args: object) -> None:
    """Warn at the 1st, 2nd, 4th, 8th... occurrence: a flood of forgeries cannot flood the log."""
    if count & (count - 1) == 0:
        log.warning(message, *args)


class FlagClient(FlagBook, Lifecycle):
    """The latest state of every flag, followed from the flag-state topic.

    ``ready`` is set once the client has read up to the end offsets it saw at
    start; before that, :meth:`arm` may answer from incomplete state. Invalid
    messages and states older than the one held are ignored and counted in
    ``invalid`` and ``stale``; with ``keys``, states without a valid
    signature in ``rejected`` (see :class:`FlagBook`).

    With ``follow_segments`` the client also follows the segments topic
    (``segments_topic``) with a :class:`~controller.sdk.segments.SegmentFollower`
    under the same ``keys``, started and stopped with it, and rules read it:
    ``segments`` is then that follower (its ``ready`` is its own).
    """

    def __init__(
        self,
        kafka: KafkaSettings | None = None,
        *,
        topic: str = _TOPICS.flag_state,
        states: Iterable[FlagState] = (),
        poll_timeout_ms: int = 500,
        keys: Mapping[str, str] | None = None,
        segments: SegmentLookup = NO_SEGMENTS,
        follow_segments: bool = False,
        segments_topic: str = _TOPICS.segments,
        environment: str | None = None,
    ) -> None:
        kafka = kafka or KafkaSettings()
        self._segment_follower: SegmentFollower | None = None
        if follow_segments:
            if segments is not NO_SEGMENTS:
                raise TypeError("pass segments or follow_segments, not both")
            segments = self._segment_follower = SegmentFollower(
                kafka, topic=segments_topic, keys=keys
            )
        super().__init__(states, keys=keys, segments=segments, environment=environment)
        self._kafka = kafka
        self._topic = topic
        self._feed = TopicFeed(
            kafka,
            topic,
            what="flag-state topic",
            poll_timeout_ms=poll_timeout_ms,
            receive=lambda _key, value: self._receive(value),
            caught_up=self.mark_ready,
        )

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Assign every partition of the topic, read from the beginning, follow it."""
        if self._segment_follower is not None:
            await self._segment_follower.start()
        await self._feed.start()

    async def stop(self) -> None:
        await self._feed.stop()
        if self._segment_follower is not None:
            await self._segment_follower.stop()

    # -- following -----------------------------------------------------------------

    def _receive(self, value: bytes | None) -> None:
        if value is None:  # a tombstone: nothing to assign from
            self.invalid += 1
            return
        try:
            state = FlagState.model_validate_json(value)
        except ValidationError:
            self.invalid += 1
            return
        self.apply(state)
