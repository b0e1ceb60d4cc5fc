"""The commands that make the controller hold a desired object: those ``rolloutctl``
signs for ``start``, ``pipeline start``, ``segment put`` and ``app-key create``, each
carrying the object's digest as ``applied``.

An app key whose scopes changed is replaced: the old key is revoked, then a new
one made (a key's scopes never change in place). A new key's secret is drawn
here and handed back, to be written where the operator said, never printed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from controller.core.release import PipelineCommand
from controller.core.trust import CLIENT_PREFIX, SERVER_PREFIX, AppKeyCommand, signing
from controller.core.wire import (
    JsonObject,
    SegmentCommand,
    SignedCommand,
    decision_key,
    sent_object,
)
from controller.ctl.gitops.desired import AppKeyBody, PipelineBody, RolloutBody
from controller.ctl.gitops.diffing import Item
from controller.ctl.operate import app_keys, command_model, pipelines, segments

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

C = TypeVar("C", bound=SignedCommand)

APP_KEYS_RECORD_KEY = app_keys.RECORD_KEY
PRINTED_ORDER: dict[type[SignedCommand], tuple[str, ...]] = {
    SegmentCommand: ("type", "v", "action", "segment", "actor", "reason", "key_id", "applied"),
    PipelineCommand: ("type", "v", "action", "flag", "pipeline", "actor", "reason"),
    AppKeyCommand: ("type", "v", "action", "target", "actor", "reason", "key_id", "scopes"),
}
"""The fields ``diff`` prints first, in this order, for a segment, pipeline or app-key
command (the rest follow as sent): the order it has always printed them in, so its output
stays comparable from one version to the next. A rollout's command prints as it is sent."""


@dataclass(frozen=True)
class Who:
    actor: str
    key_id: str
    reason: str = ""


@dataclass
class Batch:
    """One object's commands, in order, with their record keys; the decision awaited is on the
    last; ``secret``: the new app key's, when one is made."""

    commands: list[SignedCommand] = field(default_factory=list)
    keys: list[bytes] = field(default_factory=list)
    secret: str | None = None

    def add(self, command: SignedCommand, key: bytes) -> None:
        self.commands.append(command)
        self.keys.append(key)


def commands_of(item: Item, who: Who, private_key: Ed25519PrivateKey | None) -> Batch:
    """The commands for ``item``, signed with ``private_key`` (unsigned where it is None:
    what diff prints)."""
    desired, batch = item.desired, Batch()
    reason = desired.reason or who.reason or f"rolloutctl apply {desired.source}"
    body = desired.body
    if isinstance(body, RolloutBody):
        command = command_model(
            "start",
            body.flag,
            actor=who.actor,
            key_id=who.key_id,
            reason=reason,
            plan=body.plan,
            environment=body.environment,
            applied=desired.digest,
        )
        batch.add(_signed(command, private_key), body.flag.encode())
    elif isinstance(body, PipelineBody):
        pipeline = body.pipeline.model_dump(mode="json", exclude_defaults=True)
        started = pipelines.command_of(
            body.flag,
            pipeline,
            actor=who.actor,
            key_id=who.key_id,
            reason=reason,
            applied=desired.digest,
        )
        batch.add(_signed(started, private_key), body.flag.encode())
    elif isinstance(body, AppKeyBody):
        _app_key(batch, item, body, Who(who.actor, who.key_id, reason), private_key)
    else:
        _segment(batch, item, who, reason, private_key)
    return batch


def _signed(command: C, private_key: Ed25519PrivateKey | None) -> C:
    return command if private_key is None else signing.sign_command(command, private_key)


def _segment(
    batch: Batch, item: Item, who: Who, reason: str, private_key: Ed25519PrivateKey | None
) -> None:
    desired = item.desired
    listed = list(desired.ids) if desired.ids is not None else None
    made = segments.commands_for(
        desired.name,
        action="put",
        actor=who.actor,
        key_id=who.key_id,
        reason=reason,
        rule=desired.rule,
        ids=listed,
        applied=desired.digest,
    )
    for command in made:
        batch.add(_signed(command, private_key), decision_key(desired.name).encode())


def _app_key(
    batch: Batch, item: Item, body: AppKeyBody, who: Who, private_key: Ed25519PrivateKey | None
) -> None:
    desired, live, reason = item.desired, item.live, who.reason
    if live is not None and live.key_id is not None and not live.revoked:
        revoke = app_keys.command_of(
            "revoke", live.key_id, actor=who.actor, key_id=who.key_id, reason=reason
        )
        batch.add(_signed(revoke, private_key), APP_KEYS_RECORD_KEY)
    batch.secret = (CLIENT_PREFIX if body.client else SERVER_PREFIX) + secrets.token_urlsafe(32)
    create = app_keys.command_of(
        "create",
        desired.name,
        actor=who.actor,
        key_id=who.key_id,
        reason=reason,
        secret=batch.secret,
        scopes=list(body.scopes),
        client=body.client,
        environment=body.environment,
        applied=desired.digest,
    )
    batch.add(_signed(create, private_key), APP_KEYS_RECORD_KEY)


def shown(command: SignedCommand) -> JsonObject:
    """A command as diff prints it: its sent object without what is drawn at send time (id,
    ts, an app key's id and secret hash) and with an id list's data by its size, so the
    output is stable; its fields in :data:`PRINTED_ORDER`."""
    drawn = {"id", "ts", "sig", "app_key", "secret_sha256"}
    kept = {k: v for k, v in sent_object(command).items() if k not in drawn}
    ids = kept.get("ids")
    if isinstance(ids, dict):
        size = {"data_chars": len(str(ids.get("data", "")))}
        kept["ids"] = {k: v for k, v in ids.items() if k not in ("data", "upload")} | size
    first = PRINTED_ORDER.get(type(command), ())
    rank = {name: at for at, name in enumerate(first)}
    return dict(sorted(kept.items(), key=lambda entry: rank.get(entry[0], len(first))))
