"""The operator keys commands are verified with, and their roles, reloaded without a restart.

The keys come from ``engine.operator_keys``, their roles from ``engine.roles``
(a key record in today's form, a public key alone, holds ``operator``: every
action everywhere; see :mod:`controller.core.release.key_records`), with the
person each key belongs to (its ``holder``, else the key itself), for whom its
approvals count. On SIGHUP
the daemon reads its settings again (``--config`` and the environment) and
:meth:`Keyring.reload` swaps in the new keys and roles, all of them or, when
one does not load (a bad public key, a role no book defines), none: a typo
must not lock every operator out. Each reload is logged with the key ids
added, removed, replaced and given other roles; a change, or a reload that
failed, is also published as an ``operator_keys`` alert, so the audit trail
on ``rollout.alerts`` says when who could start signing commands, and what
each key may do where.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ValidationError

from controller.core.common import ConfigError, ControllerError
from controller.core.release import (
    SINGLE,
    Environments,
    KeyRecord,
    KeyRoles,
    Permission,
    RoleBook,
    may,
    read_key_record,
    records_of,
    registry_problems,
)
from controller.core.rollouts import RaiseAlert
from controller.core.trust import signing
from controller.core.wire import JsonObject
from controller.daemon.outputs import render_alert
from controller.kit.backoff import sleep_or_stop
from controller.ports import Outputs
from controller.settings import EngineSettings, TopicSettings

log = structlog.get_logger("controller.daemon.registries.keyring")

M = TypeVar("M", bound=BaseModel)
POLL_SECONDS = 0.2
"""How soon after SIGHUP the keys are read again (the handler only raises a flag)."""
KeyTexts = Mapping[str, str | KeyRecord]
"""Key id -> base64 public key, or its record with the roles it holds."""


@dataclass(frozen=True, slots=True)
class Registry:
    """What the keyring holds: the keys with their roles, the role book, the environments."""

    keys: KeyTexts
    roles: RoleBook = field(default_factory=RoleBook)
    environments: Environments = SINGLE


ReadKeys = Callable[[], "KeyTexts | Registry | EngineSettings"]
Revoked = Callable[[tuple[str, ...]], Awaitable[None]]
"""Reads the configured keys again (with their roles); raises when it cannot."""


@dataclass(frozen=True, slots=True)
class KeyChange:
    """Which key ids a reload added, removed, gave another public key, or other roles."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    regranted: tuple[str, ...] = ()
    """Keys kept whose roles changed: other role names, or a role they hold redefined."""
    reassigned: tuple[str, ...] = ()
    """Keys kept that now name another holder (their approvals count for that person)."""

    def __bool__(self) -> bool:
        return bool(
            self.added or self.removed or self.replaced or self.regranted or self.reassigned
        )

    def summary(self) -> str:
        parts = [
            f"{verb} {', '.join(ids)}"
            for verb, ids in (
                ("added", self.added),
                ("removed", self.removed),
                ("replaced", self.replaced),
                ("gave other roles to", self.regranted),
                ("gave another holder to", self.reassigned),
            )
            if ids
        ]
        return "; ".join(parts) or "unchanged"


def registry_of(settings: EngineSettings) -> Registry:
    """The keys, roles and environments the engine's settings configure; :class:`ConfigError`
    names the setting and the field of what does not hold."""
    keys = {
        k: v if isinstance(v, str) else read_key_record(k, v)
        for k, v in settings.operator_keys.items()
    }
    roles = _model(RoleBook, settings.roles, "engine.roles")
    environments = _model(Environments, settings.environments, "engine.environments")
    problems = registry_problems(keys, roles, environments)
    if problems:
        raise ConfigError(f"invalid operator keys and roles: {'; '.join(problems)}")
    return Registry(keys, roles, environments)


def _model(model: type[M], data: Mapping[str, object], setting: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(e["loc"], e["msg"]) for e in exc.errors())
        raise ConfigError(f"invalid {setting}: {problems}") from exc


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    why = message.removeprefix("Value error, ")
    return f"{'.'.join(str(p) for p in loc)}: {why}" if loc else why


class Keyring(Mapping[str, Ed25519PublicKey]):
    """Key id -> public key, with each key's roles; replaced as a whole by :meth:`reload`."""

    def __init__(self, keys: KeyTexts | Registry) -> None:
        registry = keys if isinstance(keys, Registry) else Registry(keys)
        self._records, self._keys = _loaded(registry)
        self._registry = registry
        self.revoked: Revoked | None = None
        """Told the key ids a reload removed (the engine: their pending approvals go)."""

    def __getitem__(self, key_id: str) -> Ed25519PublicKey:
        return self._keys[key_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def environments(self) -> Environments:
        return self._registry.environments

    @property
    def book(self) -> RoleBook:
        """The roles keys may hold."""
        return self._registry.roles

    def roles_of(self, key_id: str) -> KeyRoles:
        """The roles ``key_id`` holds (none when it is not a key here)."""
        record = self._records.get(key_id)
        if record is None:
            return KeyRoles(key_id, ())
        return record.holding(key_id, self._registry.roles)

    def holder_of(self, key_id: str) -> str | None:
        """The person ``key_id``'s record names as its holder; None: the key is its own."""
        record = self._records.get(key_id)
        return None if record is None else record.holder

    def holders(self) -> dict[str, str]:
        """Each key id's holder (the key itself where its record names none), for the audit."""
        return {k: self.holder_of(k) or k for k in sorted(self._records)}

    def granted(self) -> dict[str, list[str]]:
        """Each key id's role names, for the audit."""
        return {k: list(self.roles_of(k).names) for k in sorted(self._records)}

    def reload(self, keys: KeyTexts | Registry) -> KeyChange:
        """Use ``keys`` from now on; raises ``ValueError`` (keeping the old keys) if one is
        bad. Given only key texts, the roles and environments stay as they were."""
        if not isinstance(keys, Registry):
            keys = Registry(keys, self._registry.roles, self._registry.environments)
        records, loaded = _loaded(keys)
        old = {k: self.roles_of(k) for k in self._records}
        olds, news = self._records, records
        self._records, self._keys, self._registry = records, loaded, keys
        kept = sorted(news.keys() & olds.keys())
        return KeyChange(
            added=tuple(sorted(news.keys() - olds.keys())),
            removed=tuple(sorted(olds.keys() - news.keys())),
            replaced=tuple(k for k in kept if news[k].public_key != olds[k].public_key),
            regranted=tuple(k for k in kept if self.roles_of(k) != old[k]),
            reassigned=tuple(k for k in kept if news[k].holder_of(k) != olds[k].holder_of(k)),
        )


EVERY_ENVIRONMENT = "every environment"


def shared_refusal(
    keys: Mapping[str, Ed25519PublicKey], key_id: object, action: Permission
) -> str | None:
    """Why the key may not take ``action`` on what every environment shares (segments, app
    keys): only a role granted in every environment (``*``) allows it. None when it may, or
    when ``keys`` carry no roles (a plain mapping of public keys)."""
    if not isinstance(keys, Keyring) or not isinstance(key_id, str):
        return None
    verdict = may(keys.roles_of(key_id), action, EVERY_ENVIRONMENT)
    return None if verdict else verdict.reason


def _loaded(registry: Registry) -> tuple[dict[str, KeyRecord], dict[str, Ed25519PublicKey]]:
    problems = registry_problems(registry.keys, registry.roles, registry.environments)
    if problems:
        raise ValueError("; ".join(problems))
    records = records_of(registry.keys)
    keys = {}
    for key_id, record in records.items():
        try:
            keys[key_id] = signing.load_public_key(record.public_key)
        except ValueError as exc:
            raise ValueError(f"operator key {key_id!r}: {exc}") from exc
    return records, keys


@dataclass(slots=True)
class KeyReloader:
    """Reloads ``keyring`` from ``read`` on SIGHUP; logs and alerts what changed."""

    keyring: Keyring
    read: ReadKeys
    """Reads the keys again: key texts, a :class:`Registry`, or the engine's settings."""
    outputs: Outputs
    topics: TopicSettings
    _wanted: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def reload(self) -> KeyChange | None:
        """One reload; the change, or None when the keys could not be read (kept as they were)."""
        try:
            read = self.read()
            change = self.keyring.reload(
                registry_of(read) if isinstance(read, EngineSettings) else read
            )
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
            regranted=list(change.regranted),
            reassigned=list(change.reassigned),
            keys=len(self.keyring),
        )
        if change:
            details: JsonObject = {
                "added": list(change.added),
                "removed": list(change.removed),
                "replaced": list(change.replaced),
                "regranted": list(change.regranted),
                "reassigned": list(change.reassigned),
                "keys": [*sorted(self.keyring)],
                "roles": {role: [*keys] for role, keys in self.keyring.granted().items()},
                "holders": {**self.keyring.holders()},
            }
            summary = f"operator keys reloaded: {change.summary()}"
            await self._alert(RaiseAlert("operator_keys", "info", summary[:500], details))
        if change.removed and self.keyring.revoked is not None:
            try:
                await self.keyring.revoked(change.removed)
            except ControllerError as exc:  # each rollout's own failure is contained there
                log.warning("revoked_keys_not_applied", error=str(exc)[:500])
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
