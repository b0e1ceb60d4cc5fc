"""``rolloutctl audit export``: what the controller published in a span of time, as CloudEvents.

The command reads the topics of the types asked for (decisions, commands,
alerts, monitor alerts, segments) between ``--since`` and ``--until`` (by
each record's Kafka timestamp, ``since <= t < until``), puts every record in
the export's order (time, then topic, partition and offset), turns each into
an :class:`AuditEvent` and writes it as one line of JSON, dropping a copy the
controller published again under the same id (:class:`Dedup`). The export is
the same however often it is run, and a span of a log the controller
republished into after a crash holds each record once.

Records that are no JSON object (only the commands topic takes anyone's
input) are named on stderr with the reason and left out; the export goes on.
The seal names the offsets each partition was read over; a span whose records a
log may no longer hold (deleted, or past retention) is not exported: the command
fails naming each such partition.
With ``--out`` the file is written beside its place and renamed into it at
the end, so a file of that name is always a whole export; with ``--to-topic``
each event is produced to a Kafka topic instead. Progress goes to
stderr every couple of seconds while reading; one summary line ends it.

Exit codes: 0 exported, 1 broker or file failure, 2 usage (bad times, an
unknown type, a span over ``--max-records``), 78 bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, get_args

from controller.core.common import ControllerError
from controller.core.trust import (
    AUDIT_TOPICS,
    AuditEvent,
    AuditType,
    Dedup,
    KeyHolders,
    PublishedRecord,
    audit_chain,
    audit_event,
    export_order,
    with_holder,
)
from controller.ctl.report.audit_chain import chained, signer_of
from controller.ctl.report.audit_holders import current_holders, key_holders
from controller.ctl.terminal import run_guarded, warn
from controller.ctl.usage import UsageError
from controller.settings import KafkaSettings, TopicSettings

if TYPE_CHECKING:
    from controller.adapters.kafka import SpanReader

AUDIT_TYPES: tuple[AuditType, ...] = get_args(AuditType)
PROGRESS_EVERY_S = 2.0
REFUSALS_NAMED = 20
START_TIMEOUT_S = 30.0
PUBLISH_CHUNK = 1_000
STRUCTURED_CONTENT_TYPE = b"application/cloudevents+json; charset=UTF-8"
_OFFSET = re.compile(r"(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line asks for, validated."""

    kafka: KafkaSettings
    topics: dict[str, AuditType]
    since: datetime
    until: datetime
    out: Path | None
    max_records: int
    quiet: bool
    to_topic: str | None = None
    holders: Mapping[str, str] = field(default_factory=dict)
    """Each configured operator key's holder (today's keys)."""
    alerts_topic: str | None = None
    """Where ``operator_keys`` alerts are read to name commands' holders; None: no commands."""
    signer: audit_chain.Signer | None = None
    """The operator key the seal is signed with; None: unsigned."""

    @property
    def types(self) -> list[AuditType]:
        """The types exported, in their order: what the chain's start names."""
        return [t for t in AUDIT_TYPES if t in self.topics.values()]


def parse_time(text: str, *, now: datetime, flag: str) -> datetime:
    """An instant the operator wrote: RFC 3339 with an offset, a date (midnight UTC) or
    ``now``; :class:`UsageError` saying what is wrong otherwise."""
    given = text.strip()
    if given.lower() == "now":
        return now
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", given):
        try:
            return datetime.combine(date.fromisoformat(given), datetime.min.time(), UTC)
        except ValueError:
            raise UsageError(f"{flag} {text!r}: no such date") from None
    try:
        parsed = datetime.fromisoformat(given.upper())
    except ValueError:
        raise UsageError(
            f"{flag} {text!r} is not a time: give RFC 3339 with an offset "
            "(2026-11-01T09:00:00Z, 2026-11-01T10:00:00+01:00), a date (2026-11-01, "
            "midnight UTC) or 'now'"
        ) from None
    if parsed.tzinfo is None or not _OFFSET.search(given):
        raise UsageError(f"{flag} {text!r} has no offset: add Z for UTC or +HH:MM")
    return parsed.astimezone(UTC)


def parse_types(text: str | None) -> list[AuditType]:
    """The audit types a comma-separated list names (all when none is given)."""
    if not text:
        return list(AUDIT_TYPES)
    named = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in named if t not in AUDIT_TYPES]
    if unknown or not named:
        raise UsageError(
            f"--types: unknown {', '.join(unknown) or 'empty list'}; "
            f"choose from {','.join(AUDIT_TYPES)}"
        )
    return [t for t in AUDIT_TYPES if t in named]


def topics_of(types: Iterable[AuditType], names: TopicSettings) -> dict[str, AuditType]:
    """The topic each type is read from, by its configured name."""
    return {getattr(names, AUDIT_TOPICS[t]): t for t in types}


def options_from_args(args: argparse.Namespace, *, now: datetime) -> Options:
    """Validated options; :class:`UsageError` or :class:`ConfigError` naming the problem."""
    from controller.settings import load_settings  # noqa: PLC0415 - keep `--help` fast

    since = parse_time(args.since, now=now, flag="--since")
    until = parse_time(args.until, now=now, flag="--until")
    if since >= until:
        raise UsageError(
            f"--since {since.isoformat()} is not before --until {until.isoformat()}: "
            "the span is empty"
        )
    if args.max_records < 1:
        raise UsageError("--max-records must be at least 1")
    types = parse_types(args.types)
    settings = load_settings(args.config)
    kafka = settings.kafka
    if args.bootstrap:
        kafka = kafka.model_copy(update={"bootstrap_servers": args.bootstrap})
    topics = topics_of(types, settings.topics)
    return Options(
        kafka,
        topics,
        since,
        until,
        args.out,
        args.max_records,
        args.quiet,
        args.to_topic,
        current_holders(settings.engine.operator_keys),
        settings.topics.alerts if "command" in types else None,
        signer_of(args.key_id, args.key),
    )


def run(args: argparse.Namespace) -> int:
    """Export (or check) what the parsed arguments ask for; returns the exit code."""
    if args.audit_command == "check":
        from controller.ctl.report.audit_chain import run_check  # noqa: PLC0415

        return run_check(args)
    return run_guarded(lambda: asyncio.run(export(options_from_args(args, now=datetime.now(UTC)))))


async def export(options: Options) -> int:
    """Read the span, write the export; return the exit code."""
    records, read = await _read(options)
    records.sort(key=export_order)
    written = _Written(Counter(), Dedup(), KeyHolders(options.holders))
    if options.alerts_topic is not None:
        written.holders = await key_holders(
            options.kafka,
            options.alerts_topic,
            until_ms=_ms(options.until),
            current=options.holders,
        )
    lines = chained(
        _admitted(records, written),
        since=options.since,
        until=options.until,
        types=options.types,
        signer=options.signer,
        read=read,
    )
    if options.to_topic is not None:
        await _publish(lines, options.kafka, options.to_topic)
    elif options.out is None:
        _write(lines, sys.stdout)
    else:
        await asyncio.to_thread(_write_file, lines, options.out)
    if not options.quiet:
        _summary(written, len(records))
    return 0


async def _read(
    options: Options,
) -> tuple[list[PublishedRecord], list[audit_chain.ReadOffsets]]:
    """The span's records, and the offsets each partition was read over; a span part of
    which the log no longer holds fails."""
    from controller.adapters.kafka import SpanReader  # noqa: PLC0415 - keep `--help` fast

    reader = SpanReader(
        options.kafka,
        options.topics,
        since_ms=_ms(options.since),
        until_ms=_ms(options.until),
        timeout_s=START_TIMEOUT_S,
    )
    async with reader:
        for topic in reader.missing:
            warn(f"topic {topic} does not exist: no {options.topics[topic]} records exported")
        if reader.whole and not options.quiet:
            where, why = next(iter(reader.whole.items()))
            warn(
                f"the broker's time index disagrees with its records ({where}: {why}): "
                f"{len(reader.whole)} partition(s) read from their beginning, by timestamp"
            )
        if reader.gone:
            raise ControllerError(_gone(reader.gone))
        read = [
            audit_chain.ReadOffsets(topic=t, partition=p, begin=b, end=e)
            for t, p, b, e in reader.read
        ]
        return await _drain(reader, options), read


def _gone(gone: Mapping[str, str]) -> str:
    """Why the span cannot be exported whole: each partition whose log lost its start."""
    named = "; ".join(f"{where}: {why}" for where, why in gone.items())
    return (
        f"the log no longer holds all of the span ({named}): nothing exported; export a span "
        "that starts after the first record each log still holds"
    )


async def _drain(reader: SpanReader, options: Options) -> list[PublishedRecord]:
    loop = asyncio.get_running_loop()
    records: list[PublishedRecord] = []
    told = loop.time()
    async for batch in reader.batches():
        records += batch
        if len(records) > options.max_records:
            raise UsageError(
                f"the span holds more than --max-records {options.max_records:,} records: "
                "export it in shorter spans, or raise --max-records"
            )
        if not options.quiet and loop.time() - told >= PROGRESS_EVERY_S:
            told = loop.time()
            warn(f"read {len(records):,} records (of at most {reader.total:,})")
    return records


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@dataclass(slots=True)
class _Written:
    types: Counter[str]
    dedup: Dedup
    holders: KeyHolders
    """Who held each operator key, named on each command's event."""
    refused: int = 0
    tombstones: int = 0
    """Segments deleted (no value on the compacted topic); each is a decision too."""


def _admitted(records: Sequence[PublishedRecord], written: _Written) -> Iterator[AuditEvent]:
    """Each record's event, in the records' order, less copies; refusals told and counted."""
    for record in records:
        event = audit_event(record)
        if not isinstance(event, AuditEvent) and event.tombstone:
            written.tombstones += 1
            continue
        if not isinstance(event, AuditEvent):
            written.refused += 1
            if written.refused <= REFUSALS_NAMED:
                warn(f"left out {event.where}: {event.reason}")
            continue
        if (admitted := written.dedup.admit(event)) is not None:
            written.types[record.kind] += 1
            yield with_holder(admitted, written.holders)


def _write(lines: Iterable[tuple[str | None, str]], stream: IO[str]) -> None:
    for _, line in lines:
        stream.write(line + "\n")


async def _publish(
    lines: Iterable[tuple[str | None, str]], kafka: KafkaSettings, topic: str
) -> None:
    """Produce each line to ``topic`` (CloudEvents' Kafka binding, structured mode), in
    order, keyed by its subject (the seal by none); return once the broker has them all."""
    from controller.adapters.kafka import OutRecord, Producer  # noqa: PLC0415

    header = [("content-type", STRUCTURED_CONTENT_TYPE)]
    async with Producer(kafka=kafka) as producer:
        chunk: list[OutRecord] = []
        for subject, line in lines:
            key = subject.encode() if subject else None
            chunk.append(OutRecord(topic, key, line.encode(), header))
            if len(chunk) >= PUBLISH_CHUNK:
                await producer.send_all(chunk)
                chunk = []
        if chunk:
            await producer.send_all(chunk)


def _write_file(lines: Iterable[tuple[str | None, str]], out: Path) -> None:
    """Write beside ``out``, fsync, and rename into place: ``out`` is whole or untouched."""
    fd, temporary = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent or Path())
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            _write(lines, stream)
            stream.flush()
            os.fsync(stream.fileno())
        Path(temporary).replace(out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _summary(written: _Written, read: int) -> None:
    kinds = ", ".join(f"{kind} {n:,}" for kind, n in sorted(written.types.items()))
    warn(
        f"exported {written.types.total():,} events ({kinds or 'none'}) from {read:,} records; "
        f"{written.dedup.copies:,} republished copies dropped, {written.refused:,} left out"
        + (f", {written.dedup.reused_ids:,} reused ids" if written.dedup.reused_ids else "")
        + (f", {written.tombstones:,} segment tombstones skipped" if written.tombstones else "")
    )
