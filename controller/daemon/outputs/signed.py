"""Flag states and decisions leave the controller signed (states on the topic and in ``/flags``).

The outbox keeps states and decisions as the engine rendered them; :class:`SigningOutputs`
signs each one as it is published, so a republished state is signed again
(Ed25519 is deterministic: the same bytes) and a new key applies to every
state published after a restart. Every part of the daemon that publishes on
the decisions topic (the engine's outbox, pipelines, segments, app keys, ingest
commands) publishes through the one :class:`SigningOutputs` the daemon is wired
with, so a decision of any kind leaves signed. :func:`load_signer` reads the
configured key, and warns when there is none: apps that verify then hold no
state at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import orjson
import structlog

from controller.core.common import ConfigError
from controller.core.trust import StateSigner, signing
from controller.core.wire import JsonObject
from controller.ports import Outputs, ValueOutputs
from controller.settings import SigningSettings

log = structlog.get_logger("controller.daemon.outputs.signed")


def load_signer(settings: SigningSettings) -> StateSigner | None:
    """The signer of the configured key, or None (with a warning) when none is configured."""
    text = settings.key_text()
    if text is None:
        log.warning(
            "flag_states_unsigned",
            why="no signing key configured (signing.key or signing.key_file): apps cannot "
            "tell the controller's flag states from forged ones",
        )
        return None
    try:
        key = signing.load_private_key(text)
    except ValueError as exc:  # binascii.Error is a ValueError
        raise ConfigError(f"the signing key is not a base64 Ed25519 private key: {exc}") from exc
    signer = StateSigner(key, settings.key_id)
    log.info("flag_states_signed", key_id=signer.key_id, public_key=signer.public_key)
    return signer


class Publishing(Outputs, ValueOutputs, Protocol):
    """Publishes messages, and values that may be tombstones: the daemon's publisher."""


class SigningOutputs:
    """The daemon's outputs; every flag state and decision gets the controller's signature
    on its way out, whichever method publishes it."""

    def __init__(
        self,
        inner: Publishing,
        *,
        flag_state_topic: str,
        signer: StateSigner,
        decisions_topic: str | None = None,
    ) -> None:
        self._inner, self._topic, self._signer = inner, flag_state_topic, signer
        self._decisions = decisions_topic

    async def publish(self, messages: list[tuple[str, str, bytes]]) -> None:
        await self._inner.publish([(t, k, self._value(t, v)) for t, k, v in messages])

    async def publish_values(self, messages: Sequence[tuple[str, str, bytes | None]]) -> None:
        """As :meth:`publish`, where a None value is a tombstone (published as it is)."""
        await self._inner.publish_values(
            [(t, k, None if v is None else self._value(t, v)) for t, k, v in messages]
        )

    def _value(self, topic: str, value: bytes) -> bytes:
        if topic == self._topic:
            return self._signed(value)
        if topic == self._decisions:
            return self._signed_decision(value)
        return value

    def _signed_decision(self, value: bytes) -> bytes:
        """``value`` signed; unchanged (published unsigned, as without a key) when it is no
        JSON object."""
        try:
            decision = orjson.loads(value)
            if not isinstance(decision, dict):
                return value
            return orjson.dumps(self._signer.sign_decision(decision))
        except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError) as exc:
            log.exception("decision_unsignable", error=repr(exc)[:200])
            return value

    def _signed(self, value: bytes) -> bytes:
        """``value`` signed; unchanged (apps that verify refuse it) when it is no flag state."""
        try:
            state: JsonObject = orjson.loads(value)
            return orjson.dumps(self._signer.sign(state))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.exception("flag_state_unsignable", error=repr(exc)[:200])
            return value


def signed_states(states: list[JsonObject], signer: StateSigner | None) -> list[JsonObject]:
    """``/flags``' answer: each state signed, when there is a key."""
    if signer is None:
        return states
    return [signer.sign(state) for state in states]
