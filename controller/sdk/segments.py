"""Segments in the app: the ids and rules that audience rules name, held in memory.

:class:`SegmentBook` is the :class:`~controller.core.rules.matching.SegmentLookup`
that an app's rules ask: ``member(name, value)`` is one lookup in a
``frozenset`` of the segment's ids, and ``None`` (unknown) for a segment the
book does not hold (never seen, deleted, not yet complete, refused) and for a
rule segment, whose membership depends on the whole context:
:meth:`SegmentBook.matches` answers that, and rules ask it when ``member`` is
unknown (:mod:`controller.core.rules.matching`).

A segment is held only whole: its record (:class:`SegmentRecord`) and every
part of its id list, assembled and checked against the record's count and
SHA-256 (:func:`controller.core.rules.segments.assemble`); with ``keys`` only a
record the controller signed. Until a newer version is complete the older one
keeps answering, so a replacement never leaves a gap. Parts arrive before or
after their record, in any order (they are different keys of the topic, on
different partitions). Parts are not signed, so they are gathered apart for
each version and only the version a (signed) record announced is assembled:
a part claiming some far version takes nothing from the next real one. A
list that does not assemble keeps its record waiting, for a forged part is
replaced by the real one that follows it. A tombstone cannot be signed
either: the book remembers the version a deleted segment had, so an older
record replayed after it is not taken. :class:`SegmentFollower` (the segments topic) and
:class:`~controller.sdk.segment_poller.SegmentPoller` (``GET /v1/segments``)
feed it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

import orjson
from pydantic import ValidationError

from controller.core.rules import Audience, Context, assemble
from controller.core.wire import SegmentPart, SegmentRecord, signed_bytes
from controller.kit.lifecycle import Lifecycle
from controller.sdk.transport import TopicFeed
from controller.sdk.trust import verifier
from controller.settings import KafkaSettings, TopicSettings

log = logging.getLogger("controller.sdk.segments")
_TOPICS = TopicSettings()
MAX_GATHERING = 256
"""Segments whose parts are gathered at once (each at most 512 parts of 200,000 characters)."""
MAX_EARLY_VERSIONS = 2
"""Versions of one segment whose parts are kept before a record announces them."""


class SegmentBook:
    """The latest whole version of each segment; the lookup that audience rules ask."""

    def __init__(self, *, keys: Mapping[str, str] | None = None) -> None:
        self._ids: dict[str, frozenset[str]] = {}
        self._rules: dict[str, Audience] = {}
        self._held: dict[str, SegmentRecord] = {}
        self._waiting: dict[str, SegmentRecord] = {}
        self._parts: dict[str, dict[int, dict[int, str]]] = {}
        """Per segment, per version, the parts gathered by index."""
        self._deleted: dict[str, int] = {}
        """The highest version a deleted segment had: older records are replays."""
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
        if self._trusted(record):
            self._announce(record)

    def part(self, part: SegmentPart) -> None:
        """One part of a list, kept by its version until a record announces that version.

        Parts are not signed (their record's hash covers them), so what they claim
        bounds nothing: they are gathered apart for each version, a part of a
        version no newer than the one held or waiting is dropped, at most
        :data:`MAX_EARLY_VERSIONS` versions no record announced yet are kept per
        segment (the lowest: the next put is the next version), and at most
        :data:`MAX_GATHERING` segments are gathered at once.
        """
        name = part.segment
        if part.version <= self._floor(name) or part.version < self._waiting_version(name):
            return
        versions = self._parts.get(name)
        if versions is None:
            if len(self._parts) >= MAX_GATHERING:
                self.invalid += 1
                return
            versions = self._parts[name] = {}
        if part.version not in versions and not self._room_for(name, part.version):
            self.invalid += 1
            return
        versions.setdefault(part.version, {})[part.index] = part.data
        self._complete(name)

    def delete(self, segment: str) -> None:
        """The segment is gone: its lookups are unknown, and its older records stale."""
        last = max(self._floor(segment), self._waiting_version(segment))
        if last:
            self._deleted[segment] = last
        self._held.pop(segment, None)
        self._ids.pop(segment, None)
        self._rules.pop(segment, None)
        self._waiting.pop(segment, None)
        self._parts.pop(segment, None)

    def _trusted(self, record: SegmentRecord) -> bool:
        if self._verifier is None:
            return True
        data = signed_bytes(record.model_dump(by_alias=True, mode="json"), record.key_id or "")
        problem = self._verifier.signed_problem(record.key_id, record.sig, data)
        if problem:
            self.rejected += 1
            log.warning("segment_rejected: %s (%s v%d)", problem, record.name, record.version)
        return not problem

    def _announce(self, record: SegmentRecord) -> None:
        if record.version <= self._floor(record.name):
            return
        if record.rule is not None:
            self._hold(record, None)
            return
        if record.version < self._waiting_version(record.name):
            return
        self._waiting[record.name] = record
        versions = self._parts.setdefault(record.name, {})
        for stale in [v for v in versions if v < record.version]:
            del versions[stale]
        self._complete(record.name)

    def _floor(self, name: str) -> int:
        """The version a record or part must pass: the one held, or the last deleted."""
        return max(_version_of(self._held.get(name)), self._deleted.get(name, 0))

    def _waiting_version(self, name: str) -> int:
        return _version_of(self._waiting.get(name))

    def _room_for(self, name: str, version: int) -> bool:
        """Whether a part of a version no record announced may be kept, evicting a higher one."""
        versions = self._parts[name]
        early = sorted(v for v in versions if v != self._waiting_version(name))
        if len(early) < MAX_EARLY_VERSIONS:
            return True
        if early[-1] < version:
            return False
        del versions[early[-1]]
        return True

    def _complete(self, name: str) -> None:
        record = self._waiting.get(name)
        if record is None or record.parts is None:
            return
        parts = self._parts.get(name, {}).get(record.version, {})
        if any(index not in parts for index in range(record.parts)):
            return
        try:
            ids = assemble(
                [parts[i] for i in range(record.parts)],
                count=record.count or 0,
                sha256=record.sha256 or "",
            )
        except ValueError as exc:
            # The record stays waiting: a part is unsigned, so a forged one may
            # have come first, and the real one that follows replaces it.
            self.invalid += 1
            log.warning("segment_not_assembled: %s v%d: %s", name, record.version, exc)
            return
        self._hold(record, ids)

    def _hold(self, record: SegmentRecord, ids: frozenset[str] | None) -> None:
        name = record.name
        self._held[name] = record
        self._deleted.pop(name, None)
        self._rules.pop(name, None)
        self._ids.pop(name, None)
        if ids is not None:
            self._ids[name] = ids
        elif record.rule is not None:
            self._rules[name] = Audience.of(record.rule)
        waiting = self._waiting.get(name)
        if waiting is not None and waiting.version <= record.version:
            del self._waiting[name]
        versions = self._parts.get(name, {})
        for stale in [v for v in versions if v <= record.version]:
            del versions[stale]
        if not versions:
            self._parts.pop(name, None)

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
        if not self._trusted(record) or record.version <= self._floor(record.name):
            return
        if record.rule is None and record.version >= self._waiting_version(record.name):
            self._parts.setdefault(record.name, {})[record.version] = dict(enumerate(parts))
        self._announce(record)


def _version_of(record: SegmentRecord | None) -> int:
    return 0 if record is None else record.version


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
