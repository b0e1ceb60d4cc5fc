"""The segment service: operators' segment commands into Redis, the segments topic and audit.

A :class:`~controller.core.wire.segment_messages.SegmentCommand` is authenticated
like every command (a known operator key, a valid signature, a timestamp
within the freshness window); then:

* ``put`` with a rule: the segment's next version is the rule;
* ``put`` with one part of an id list: the part is checked and kept (Redis,
  for ``segments.upload_ttl``) until the upload's last part arrives; then the
  parts are assembled and checked against the list's count and SHA-256
  (:func:`~controller.core.rules.segments.assemble`), and the list is the next version;
* ``delete``: the segment is gone; its version is kept, so a later put goes on counting.

The order of a change: save (one Redis script: the record with its parts),
then publish on the compacted segments topic (the parts, then the record,
then tombstones for parts a shorter list no longer has), then the decision on
the decisions topic under ``segment:<name>``, which names the segment, its
version and its size: the audit. A refused command is decided too, with its
reason. A command read again from the record it was applied from (a new
owner after a rebalance, a paused instance resuming), or a part of an applied
upload read again from its own record, was decided then and is skipped, as
rollout commands are: only one sent again in another record is a replay. A
crash between save and publish is mended at start:
:meth:`SegmentService.republish` publishes every segment again (the topic is
compacted, and apps take a version once).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import orjson
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from controller.core.common import ControllerError
from controller.core.machine import commands
from controller.core.release import Permission
from controller.core.rules import (
    MAX_HELD_SEGMENTS,
    MAX_PARTS,
    AudienceRule,
    HeldSegments,
    assemble,
    unpack,
)
from controller.core.trust import StateSigner
from controller.core.wire import (
    Decision,
    JsonObject,
    SegmentCommand,
    SegmentEvidence,
    decision_key,
    part_key,
    signed_bytes,
)
from controller.daemon.registries.keyring import shared_refusal
from controller.ports import CommandSeen, Segments, StoredSegment, ValueOutputs
from controller.settings import TopicSettings

log = structlog.get_logger("controller.daemon.registries.segments")
UPLOAD_TTL_SECONDS = 3600
"""How long the parts of an unfinished upload are kept."""
_STORE_ONLY = frozenset({"deleted", "applied"})
"""Fields of a stored record that apps are never sent (``applied``: ``GET /v1/segments``)."""
_TRIES = 3
KEPT_APPLIED = 64
"""Commands (by id) and uploads (by upload id) remembered per segment against replays; a
replay older than these is also older than the freshness window, unless puts come faster."""
KEPT_DELIVERED = KEPT_APPLIED + MAX_PARTS
"""Records remembered per segment as read (one per command, one per upload part): every part
of the latest upload, so a new owner reading it again skips it."""


class _Refused(ControllerError):
    """The command is refused; the message says why. Never leaves this module."""


class SegmentService:
    """The one writer of segments: authenticate, save, publish, decide."""

    def __init__(
        self,
        *,
        store: Segments,
        outputs: ValueOutputs,
        topics: TopicSettings,
        signer: StateSigner | None,
        max_age_seconds: float,
        clock: Callable[[], datetime],
        counted: Callable[[str, str], None] = lambda _action, _outcome: None,
        changed: Callable[[str], None] = lambda _name: None,
    ) -> None:
        """``counted(action, outcome)`` is told of each decision (the decisions metric),
        ``changed(name)`` of each segment published changed (the Unleash sync)."""
        self._store, self._outputs, self._topics = store, outputs, topics
        self._signer, self._max_age, self._now = signer, max_age_seconds, clock
        self._counted, self._changed = counted, changed
        self._publishing = asyncio.Lock()
        """Held from a read or a save to its publish, so a republish never follows a newer
        version with an older one."""

    async def handle(
        self,
        command: SegmentCommand,
        raw: JsonObject,
        *,
        keys: Mapping[str, Ed25519PublicKey],
        delivery: str = "",
    ) -> None:
        """Apply ``command``, read from the record ``delivery`` (topic:partition:offset), or
        refuse it; either way decide (audit) it, unless it is a part of an upload that is
        not complete yet, or was applied from this very record."""
        refused = commands.signature_refusal(
            raw, ts=command.ts, keys=keys, now=self._now(), max_age_seconds=self._max_age
        ) or shared_refusal(keys, raw.get("key_id"), Permission.MANAGE_SEGMENTS)
        try:
            evidence = await self._apply(command, refused, delivery)
        except _Refused as exc:
            log.warning("segment_command_rejected", segment=command.segment, reason=str(exc))
            await self._decide(command, "rejected", str(exc), {})
            return
        if evidence is not None:
            await self._decide(command, "applied", command.reason, evidence)

    async def _apply(
        self, command: SegmentCommand, refused: str | None, delivery: str
    ) -> dict[str, Any] | None:
        if refused is not None:
            raise _Refused(refused)
        for _ in range(_TRIES):
            held = await self._store.get(command.segment, with_parts=False)
            applied = held.applied if held is not None else ()
            delivered = held.delivered if held is not None else ()
            done = command.id if command.ids is None else command.ids.upload
            seen = CommandSeen.of(
                applied=done in applied, from_this_record=bool(delivery) and delivery in delivered
            )
            if seen is CommandSeen.REDELIVERED:
                log.info("command_redelivered", segment=command.segment, id=command.id)
                return None
            if seen is CommandSeen.REPLAYED:
                raise _Refused(commands.REPLAYED)
            version = int(held.record["version"]) if held is not None else 0
            change = await self._change(command, held, delivery)
            if change is None:
                return None
            record, parts = change
            record = {"name": command.segment, "version": version + 1, **record}
            if command.applied is not None:
                record["applied"] = command.applied
            read_from = await self._read_from(command, delivery)
            stored = StoredSegment(
                record,
                parts,
                (done, *applied)[:KEPT_APPLIED],
                (*read_from, *delivered)[:KEPT_DELIVERED],
            )
            async with self._publishing:
                saved = await self._store.put(command.segment, version, stored)
                if saved:
                    old_parts = int(held.record.get("parts") or 0) if held is not None else 0
                    await self._publish(stored, old_parts)
            if saved:
                self._changed(command.segment)
                if command.ids is not None:
                    await self._store.drop_upload(command.segment, command.ids.upload)
                return _evidence(record)
        raise _Refused(f"the segment changed under {_TRIES} tries: send the command again")

    async def _read_from(self, command: SegmentCommand, delivery: str) -> list[str]:
        """The records the change was read from: every part's, for an upload."""
        if command.ids is not None:
            return await self._store.staged_from(command.segment, command.ids.upload)
        return [delivery] if delivery else []

    async def _change(
        self, command: SegmentCommand, held: StoredSegment | None, delivery: str
    ) -> tuple[dict[str, Any], list[str]] | None:
        """The new record's body and parts, or None while an upload is incomplete."""
        if command.action == "delete":
            if held is None or held.record.get("deleted"):
                raise _Refused(f"no segment named {command.segment!r}")
            return {"deleted": True}, []
        if command.rule is not None:
            return {"rule": orjson.loads(command.rule.to_json())}, []
        part = command.ids
        if part is None:  # the model requires a rule or ids with put
            raise _Refused("put takes a rule or ids")
        try:
            unpack(part.data)
        except ValueError as exc:
            raise _Refused(f"part {part.part}: {exc}") from None
        name, upload = command.segment, part.upload
        staged = await self._store.stage(
            name, upload, part.part, part.data, ttl_s=UPLOAD_TTL_SECONDS, delivery=delivery
        )
        if staged < part.parts:
            log.info(
                "segment_part_staged", segment=name, upload=upload, part=part.part, parts=part.parts
            )
            return None
        held_parts = await self._store.staged(name, upload)
        try:
            ordered = [held_parts[i] for i in range(part.parts)]
            assemble(ordered, count=part.count, sha256=part.sha256)
        except (KeyError, ValueError) as exc:
            await self._store.drop_upload(name, upload)
            raise _Refused(f"the upload does not assemble: {exc}") from None
        return {"count": part.count, "sha256": part.sha256, "parts": part.parts}, ordered

    def reads(self) -> SegmentReads:
        """What the HTTP server reads of segments."""
        return SegmentReads(self._store, self)

    def wire_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """A stored record as apps receive it: a message, signed when there is a key."""
        ts = self._now().timestamp()
        message = {"type": "segment", "v": 1, "id": f"{record['name']}:v{record['version']}"}
        kept = {k: v for k, v in record.items() if k not in _STORE_ONLY}
        message |= {"ts": int(ts * 1000)} | kept
        if self._signer is not None:
            key_id = self._signer.key_id
            message |= {
                "key_id": key_id,
                "sig": self._signer.sign_bytes(signed_bytes(message, key_id)),
            }
        return message

    async def _publish(self, stored: StoredSegment, old_parts: int) -> None:
        record, topic = stored.record, self._topics.segments
        name, version = record["name"], record["version"]
        values: list[tuple[str, str, bytes | None]] = []
        for index, data in enumerate(stored.parts):
            part = {"type": "segment_part", "v": 1, "id": f"{name}:v{version}#{index}", "ts": 0}
            part |= {"segment": name, "version": version, "index": index, "data": data}
            values.append((topic, part_key(name, index), orjson.dumps(part)))
        deleted = bool(record.get("deleted"))
        values.append((topic, name, None if deleted else orjson.dumps(self.wire_record(record))))
        values += [(topic, part_key(name, i), None) for i in range(len(stored.parts), old_parts)]
        await self._outputs.publish_values(values)
        log.info("segment_published", segment=name, version=version, deleted=deleted)

    async def republish(self) -> int:
        """Publish every segment again (after a crash between save and publish, or a broker
        that lost the segments topic); how many.

        A failure is logged, not raised: the controller starts anyway, and the
        segment's next change publishes it.
        """
        try:
            names = await self._store.names()
            for name in names:
                async with self._publishing:
                    stored = await self._store.get(name, with_parts=True)
                    if stored is not None:
                        await self._publish(stored, int(stored.record.get("parts") or 0))
        except ControllerError as exc:
            log.warning("segments_not_republished", error=str(exc))
            return 0
        return len(names)

    async def _decide(
        self, command: SegmentCommand, outcome: str, reason: str, evidence: Mapping[str, object]
    ) -> None:
        now = self._now()
        decision = Decision.model_validate(
            {"type": "decision", "v": 1, "id": uuid.uuid4().hex, "ts": int(now.timestamp() * 1000)}
            | {"flag": decision_key(command.segment), "kind": "segment"}
            | {"action": f"segment_{command.action}", "outcome": outcome, "reason": reason[:500]}
            | {"command_id": command.id}
            | {"evidence": _said(command, evidence)}
        )
        value = decision.model_dump_json(exclude_none=True).encode()
        await self._outputs.publish_values([(self._topics.decisions, decision.flag, value)])
        self._counted(decision.action, outcome)


def _said(command: SegmentCommand, evidence: Mapping[str, object]) -> SegmentEvidence:
    """The decision's evidence: the segment, who asked, and what became of it."""
    said = {"segment": command.segment, "actor": command.actor, **evidence}
    return SegmentEvidence.model_validate(said)


def _evidence(record: dict[str, Any]) -> dict[str, Any]:
    """What the decision says of the new version: its number and size, or its rule."""
    kept = ("version", "deleted", "count", "sha256", "parts", "rule")
    return {key: record[key] for key in kept if key in record}


class SegmentReads:
    """What ``GET /v1/segments`` serves: read from the store, signed like the topic's."""

    def __init__(self, store: Segments, service: SegmentService) -> None:
        self._store, self._service = store, service

    async def listing(self) -> list[dict[str, Any]]:
        """Every segment there is: name, version, and its size or ``rule``."""
        found = []
        for name in await self._store.names():
            held = await self._store.get(name, with_parts=False)
            if held is None or held.record.get("deleted"):
                continue
            record = held.record
            kind = (
                {"kind": "rule"} if "rule" in record else {"kind": "ids", "count": record["count"]}
            )
            applied = {"applied": record["applied"]} if "applied" in record else {}
            found.append({"name": name, "version": record["version"]} | kind | applied)
        return found

    async def version(self, name: str) -> int | None:
        """The segment's version, or None when there is no such segment."""
        held = await self._store.get(name, with_parts=False)
        if held is None or held.record.get("deleted"):
            return None
        return int(held.record["version"])

    async def whole(self, name: str) -> dict[str, Any] | None:
        """The segment's record with its parts' data under ``part_data``, or None."""
        held = await self._store.get(name, with_parts=True)
        if held is None or held.record.get("deleted"):
            return None
        return self._service.wire_record(held.record) | {"part_data": held.parts}

    async def held(self, previous: HeldSegments) -> HeldSegments:
        """Every segment there is, for evaluations: ``previous`` with what changed read again.

        A list that does not assemble (it was checked when saved, so Redis lost or
        changed it) is left out, unknown to rules; at most :data:`MAX_HELD_SEGMENTS`
        segments are held.
        """
        versions: dict[str, int] = {}
        for name in (await self._store.names())[:MAX_HELD_SEGMENTS]:
            found = await self._store.get(name, with_parts=False)
            if found is not None and not found.record.get("deleted"):
                versions[name] = int(found.record["version"])
        held = previous.keeping(versions)
        for name, version in versions.items():
            if held.versions.get(name) != version:
                held = await self._read(held, name)
        return held

    async def _read(self, held: HeldSegments, name: str) -> HeldSegments:
        found = await self._store.get(name, with_parts=True)
        if found is None or found.record.get("deleted"):
            return held
        record = found.record
        try:
            if "rule" in record:
                rule = AudienceRule.model_validate(record["rule"])
                return held.with_segment(name, int(record["version"]), ids=None, rule=rule)
            ids = assemble(found.parts, count=int(record["count"]), sha256=str(record["sha256"]))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("segment_not_held", segment=name, error=str(exc)[:300])
            return held
        return held.with_segment(name, int(record["version"]), ids=ids, rule=None)
