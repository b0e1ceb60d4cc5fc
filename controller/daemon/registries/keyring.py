"""The operator keys commands are verified with, reloaded without a restart, audited.

The keys come from ``engine.operator_keys``. On SIGHUP the daemon reads its
settings again (``--config`` and the environment) and :meth:`Keyring.reload`
swaps in the new keys, all of them or, when one does not load, none: a typo
must not lock every operator out. Each reload is logged with the key ids
added, removed and replaced; a change, or a reload that failed, is also
published as an ``operator_keys`` alert, so the audit trail on
``rollout.alerts`` says when who could start signing commands.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from controller.core.common import ControllerError
from controller.core.rollouts import RaiseAlert
from controller.core.trust import signing
from controller.daemon.outputs import render_alert
from controller.kit.backoff import sleep_or_stop
from controller.ports import Outputs
from controller.settings import TopicSettings

log = structlog.get_logger("controller.daemon.registries.keyring")

POLL_SECONDS = 0.2
"""How soon after SIGHUP the keys are read again (the handler only raises a flag)."""
KeyTexts = Callable[[], Mapping[str, str]]
"""Reads the configured keys again: key id -> base64 public key; raises when it cannot."""


@dataclass(frozen=True, slots=True)
class KeyChange:
    """Which key ids a reload added, removed, or gave another public key."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.replaced)

    def summary(self) -> str:
        parts = [
            f"{verb} {', '.join(ids)}"
            for verb, ids in (
                ("added", self.added),
                ("removed", self.removed),
                ("replaced", self.replaced),
            )
            if ids
        ]
        return "; ".join(parts) or "unchanged"


class Keyring(Mapping[str, Ed25519PublicKey]):
    """Key id -> public key, replaced as a whole by :meth:`reload`."""

    def __init__(self, texts: Mapping[str, str]) -> None:
        self._texts = dict(texts)
        self._keys = _loaded(self._texts)

    def __getitem__(self, key_id: str) -> Ed25519PublicKey:
        return self._keys[key_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def reload(self, texts: Mapping[str, str]) -> KeyChange:
        """Use ``texts`` from now on; raises ``ValueError`` (keeping the old keys) if one is bad."""
        keys = _loaded(texts)
        old, new = self._texts, dict(texts)
        change = KeyChange(
            added=tuple(sorted(new.keys() - old.keys())),
            removed=tuple(sorted(old.keys() - new.keys())),
            replaced=tuple(sorted(k for k in new.keys() & old.keys() if new[k] != old[k])),
        )
        self._texts, self._keys = new, keys
        return change


def _loaded(texts: Mapping[str, str]) -> dict[str, Ed25519PublicKey]:
    keys = {}
    for key_id, text in texts.items():
        try:
            keys[key_id] = signing.load_public_key(text)
        except ValueError as exc:
            raise ValueError(f"operator key {key_id!r}: {exc}") from exc
    return keys


@dataclass(slots=True)
class KeyReloader:
    """Reloads ``keyring`` from ``read`` on SIGHUP; logs and alerts what changed."""

    keyring: Keyring
    read: KeyTexts
    outputs: Outputs
    topics: TopicSettings
    _wanted: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def reload(self) -> KeyChange | None:
        """One reload; the change, or None when the keys could not be read (kept as they were)."""
        try:
            change = self.keyring.reload(self.read())
        except (ControllerError, ValueError) as exc:
            reason = str(exc)[:400]
            log.warning("operator_keys_reload_failed", error=reason, kept=sorted(self.keyring))
            summary = f"operator keys not reloaded, the previous ones stay in use: {reason}"
            await self._alert(RaiseAlert("operator_keys", "warning", summary, {"error": reason}))
            return None
        log.info(
            "operator_keys_reloaded",
            added=list(change.added),
            removed=list(change.removed),
            replaced=list(change.replaced),
            keys=len(self.keyring),
        )
        if change:
            details = {
                "added": list(change.added),
                "removed": list(change.removed),
                "replaced": list(change.replaced),
                "keys": sorted(self.keyring),
            }
            summary = f"operator keys reloaded: {change.summary()}"
            await self._alert(RaiseAlert("operator_keys", "info", summary[:500], details))
        return change

    async def run(self) -> None:
        """Reload after each SIGHUP (within a poll interval) until :meth:`stop`."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._wanted.set)
        try:
            while not await sleep_or_stop(POLL_SECONDS, self._stopping):
                if self._wanted.is_set():
                    self._wanted.clear()
                    await self.reload()
        finally:
            loop.remove_signal_handler(signal.SIGHUP)

    def stop(self) -> None:
        self._stopping.set()

    async def _alert(self, action: RaiseAlert) -> None:
        message = render_alert(None, action, datetime.now(UTC), self.topics)
        try:
            await self.outputs.publish([(message.topic, message.key, message.value)])
        except ControllerError as exc:  # the log line above is the record then
            log.warning("alert_not_published", error=str(exc)[:500])
