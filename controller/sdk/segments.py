"""Segments in the app: the ids and rules that audience rules name, held in memory.

:class:`SegmentBook` is the :class:`~controller.core.matching.SegmentLookup`
that an app's rules ask: ``member(name, value)`` is one lookup in a
``frozenset`` of the segment's ids, and ``None`` (unknown) for a segment the
book does not hold (never seen, deleted, not yet complete, refused) and for a
rule segment, whose membership depends on the whole context:
:meth:`SegmentBook.matches` answers that, and rules ask it when ``member`` is
unknown (:mod:`controller.core.matching`).

A segment is held only whole: its record (:class:`SegmentRecord`) and every
part of its id list, assembled and checked against the record's count and
SHA-256 (:func:`controller.core.segments.assemble`); with ``keys`` only a
record the controller signed. Until a newer version is complete the older one
keeps answering, so a replacement never leaves a gap. Parts arrive before or
after their record, in any order (they are different keys of the topic, on
different partitions); parts of a version older than the one being gathered
are dropped. :class:`SegmentFollower` (the segments topic) and
:class:`~controller.sdk.segment_poller.SegmentPoller` (``GET /v1/segments``)
feed it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

import orjson
from pydantic import ValidationError

from controller.core.matching import Audience, Context
from controller.core.segment_messages import SegmentPart, SegmentRecord, signed_bytes
from controller.core.segments import assemble
from controller.lifecycle import Lifecycle
from controller.sdk.transport import TopicFeed
from controller.sdk.trust import verifier
from controller.settings import KafkaSettings, TopicSettings

log = logging.getLogger("controller.sdk.segments")
_TOPICS = TopicSettings()
MAX_GATHERING = 256
"""Segments whose parts are gathered at once (each at most 512 parts of 200,000 characters)."""


class SegmentBook:
    """The latest whole version of each segment; the lookup that audience rules ask."""

    def __init__(self, *, keys: Mapping[str, str] | None = None) -> None:
        self._ids: dict[str, frozenset[str]] = {}
        self._rules: dict[str, Audience] = {}
        self._held: dict[str, SegmentRecord] = {}
        self._waiting: dict[str, SegmentRecord] = {}
        self._parts: dict[str, tuple[int, dict[int, str]]] = {}
        self._verifier = verifier(keys)
        self.ready = asyncio.Event()
        self.invalid = 0
        """Records and parts that broke the contract, and lists that did not assemble."""
        self.rejected = 0
        """Records refused for their signature."""

    def member(self, segment: str, value: str) -> bool | None:
        """Whether ``value`` is in the id-list segment; None when no such list is held."""
        ids = self._ids.get(segment)
        return None if ids is None else value in ids

    def matches(self, segment: str, context: Context) -> bool | None:
        """Whether ``context`` is in the rule segment; None when no such rule is held."""
        audience = self._rules.get(segment)
        return None if audience is None else audience.truth(context)  # names no segment

    def version(self, segment: str) -> int | None:
        """The version held of ``segment``, or None."""
        held = self._held.get(segment)
        return None if held is None else held.version

    def names(self) -> list[str]:
        return sorted(self._held)

    def size(self, segment: str) -> int | None:
        """How many ids the held list has (None for a rule or an unknown segment)."""
        ids = self._ids.get(segment)
        return None if ids is None else len(ids)

    def record(self, record: SegmentRecord) -> None:
        """A segment's record: held now (a rule), or once its parts are all here."""
        if self._verifier is not None:
            data = signed_bytes(record.model_dump(by_alias=True, mode="json"), record.key_id or "")
            problem = self._verifier.signed_problem(record.key_id, record.sig, data)
            if problem:
                self.rejected += 1
                log.warning("segment_rejected: %s (%s v%d)", problem, record.name, record.version)
                return
        held = self._held.get(record.name)
        if held is not None and record.version <= held.version:
            return
        if record.rule is not None:
            self._hold(record, None)
            return
        waiting = self._waiting.get(record.name)
        if waiting is not None and waiting.version > record.version:
            return
        self._waiting[record.name] = record
        self._parts_of(record)
        self._complete(record.name)

    def part(self, part: SegmentPart) -> None:
        """One part of a list: kept for the version being gathered (or a newer one).

        At most :data:`MAX_GATHERING` segments are gathered at once: parts are not
        signed (their record's hash covers them), so a flood of parts under new
        names is dropped and counted rather than held.
        """
        if part.segment not in self._parts and len(self._parts) >= MAX_GATHERING:
            self.invalid += 1
            return
        version, parts = self._parts.get(part.segment, (0, {}))
        if part.version < version:
            return
        if part.version > version:
            version, parts = part.version, {}
            self._parts[part.segment] = (version, parts)
        parts[part.index] = part.data
        self._complete(part.segment)

    def delete(self, segment: str) -> None:
        """The segment is gone: its lookups are unknown from now on."""
        self._held.pop(segment, None)
        self._ids.pop(segment, None)
        self._rules.pop(segment, None)
        self._waiting.pop(segment, None)
        self._parts.pop(segment, None)

    def _complete(self, name: str) -> None:
        record = self._waiting.get(name)
        version, parts = self._parts.get(name, (0, {}))
        if record is None or record.version != version or len(parts) != record.parts:
            return
        try:
            ids = assemble(
                [parts[i] for i in range(len(parts))],
                count=record.count or 0,
                sha256=record.sha256 or "",
            )
        except (ValueError, KeyError) as exc:
            self.invalid += 1
            log.warning("segment_not_assembled: %s v%d: %s", name, version, exc)
            return
        finally:
            self._waiting.pop(name, None)
            self._parts.pop(name, None)
        self._hold(record, ids)

    def _hold(self, record: SegmentRecord, ids: frozenset[str] | None) -> None:
        self._held[record.name] = record
        self._rules.pop(record.name, None)
        self._ids.pop(record.name, None)
        if ids is not None:
            self._ids[record.name] = ids
        elif record.rule is not None:
            self._rules[record.name] = Audience.of(record.rule)

    def _parts_of(self, record: SegmentRecord) -> dict[int, str]:
        """The parts gathered for ``record``'s version (from now on, if older ones were)."""
        gathered = self._parts.get(record.name)
        if gathered is None or gathered[0] < record.version:
            gathered = self._parts[record.name] = (record.version, {})
        return gathered[1]

    def receive(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the segments topic: a segment, one part, or a tombstone."""
        name = (key or b"").decode(errors="replace")
        if value is None:
            if "#" not in name:
                self.delete(name)
            return
        try:
            data = orjson.loads(value)
            if isinstance(data, dict) and data.get("type") == "segment_part":
                self.part(SegmentPart.model_validate(data))
            else:
                self.record(SegmentRecord.model_validate(data))
        except (orjson.JSONDecodeError, ValidationError):
            self.invalid += 1

    def receive_whole(self, record: SegmentRecord, parts: Sequence[str]) -> None:
        """A segment with all its parts (as ``GET /v1/segments/{name}`` answers)."""
        if record.rule is None:
            for index, data in enumerate(parts):
                self._parts_of(record)[index] = data

        self.record(record)


class SegmentFollower(SegmentBook, Lifecycle):
    """Every segment, followed from the compacted segments topic from its beginning.

    ``ready`` is set once the topic was read to the end offsets seen at start.
    """

    def __init__(
        self,
        kafka: KafkaSettings | None = None,
        *,
        topic: str = _TOPICS.segments,
        poll_timeout_ms: int = 500,
        keys: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(keys=keys)
        self._kafka, self._topic = kafka or KafkaSettings(), topic
        self._feed = TopicFeed(
            self._kafka,
            topic,
            what="segments topic",
            poll_timeout_ms=poll_timeout_ms,
            receive=self.receive,
            caught_up=self.ready.set,
        )

    async def start(self) -> None:
        await self._feed.start()

    async def stop(self) -> None:
        await self._feed.stop()
