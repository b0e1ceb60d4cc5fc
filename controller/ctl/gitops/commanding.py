"""The commands that make the controller hold a desired object: those ``rolloutctl``
signs for ``start``, ``pipeline start``, ``segment put`` and ``app-key create``, each
carrying the object's digest as ``applied``.

An app key whose scopes changed is replaced: the old key is revoked, then a new
one made (a key's scopes never change in place). A new key's secret is drawn
here and handed back, to be written where the operator said, never printed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from controller.core.trust import CLIENT_PREFIX, SERVER_PREFIX
from controller.core.wire import JsonObject, decision_key
from controller.ctl.gitops.desired import AppKeyBody, PipelineBody, RolloutBody
from controller.ctl.gitops.diffing import Item
from controller.ctl.operate import app_keys, build_command, pipelines, segments

WireCommand = JsonObject
"""A command as the JSON object that is signed and sent byte for byte; each is checked
against its contract model (``Command``, ``SegmentCommand``, ...) where it is built."""
Sign = Callable[[Mapping[str, object]], str]
APP_KEYS_RECORD_KEY = app_keys.RECORD_KEY


@dataclass(frozen=True)
class Who:
    actor: str
    key_id: str
    reason: str = ""


@dataclass
class Batch:
    """One object's commands, in order, with their record keys; the decision awaited is on the
    last; ``secret``: the new app key's, when one is made."""

    commands: list[WireCommand] = field(default_factory=list)
    keys: list[bytes] = field(default_factory=list)
    secret: str | None = None

    def add(self, command: WireCommand, key: bytes) -> None:
        self.commands.append(command)
        self.keys.append(key)


def commands_of(item: Item, who: Who, sign: Sign | None) -> Batch:
    """The commands for ``item`` (unsigned where ``sign`` is None: what diff prints)."""
    desired, batch = item.desired, Batch()
    reason = desired.reason or who.reason or f"rolloutctl apply {desired.source}"
    body = desired.body
    if isinstance(body, RolloutBody):
        command = build_command(
            "start",
            body.flag,
            actor=who.actor,
            key_id=who.key_id,
            reason=reason,
            plan=body.plan,
            environment=body.environment,
        )
        batch.add(_signed(command | {"applied": desired.digest}, sign), body.flag.encode())
    elif isinstance(body, PipelineBody):
        pipeline = body.pipeline.model_dump(mode="json", exclude_defaults=True)
        command = pipelines.command_of(
            body.flag, pipeline, actor=who.actor, key_id=who.key_id, reason=reason
        )
        batch.add(_signed(command | {"applied": desired.digest}, sign), body.flag.encode())
    elif isinstance(body, AppKeyBody):
        _app_key(batch, item, body, Who(who.actor, who.key_id, reason), sign)
    else:
        _segment(batch, item, who, reason, sign)
    return batch


def _signed(command: WireCommand, sign: Sign | None) -> WireCommand:
    return command if sign is None else command | {"sig": sign(command)}


def _segment(batch: Batch, item: Item, who: Who, reason: str, sign: Sign | None) -> None:
    desired = item.desired
    listed = list(desired.ids) if desired.ids is not None else None
    made = segments.commands_for(
        desired.name,
        action="put",
        actor=who.actor,
        key_id=who.key_id,
        sign=sign or (lambda _command: ""),
        reason=reason,
        rule=desired.rule,
        ids=listed,
        applied=desired.digest,
    )
    for command in made:
        unsigned = {k: v for k, v in command.items() if k != "sig"}
        batch.add(command if sign else unsigned, decision_key(desired.name).encode())


def _app_key(batch: Batch, item: Item, body: AppKeyBody, who: Who, sign: Sign | None) -> None:
    desired, live, reason = item.desired, item.live, who.reason
    if live is not None and live.key_id is not None and not live.revoked:
        revoke = app_keys.command_of(
            "revoke", live.key_id, actor=who.actor, key_id=who.key_id, reason=reason
        )
        batch.add(_signed(revoke, sign), APP_KEYS_RECORD_KEY)
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
    )
    batch.add(_signed(create | {"applied": desired.digest}, sign), APP_KEYS_RECORD_KEY)


def shown(command: WireCommand) -> WireCommand:
    """A command as diff prints it: without what is drawn at send time (id, ts, an app key's
    id and secret hash) and with an id list's data by its size, so the output is stable."""
    drawn = {"id", "ts", "sig", "app_key", "secret_sha256"}
    kept = {k: v for k, v in command.items() if k not in drawn}
    ids = kept.get("ids")
    if isinstance(ids, dict):
        size = {"data_chars": len(str(ids.get("data", "")))}
        kept["ids"] = {k: v for k, v in ids.items() if k not in ("data", "upload")} | size
    return kept
