"""OTLP exports over HTTP into the events topic: translated, sent, refusals dead-lettered.

:mod:`controller.adapters.otlp.routes` decodes an export and hands it here.
One :class:`~controller.core.telemetry.Translator` serves both routes, so a
log record's evaluation joins the server span of its request that came in
an export of ``/v1/traces``. It translates against the
:class:`~controller.daemon.registries.FlagDirectory` (each flag's plan,
version and versions' start times), freshened before each export.

Each translated event is encoded, checked by ingest's own decoder (with
``ingest.max_event_bytes``: the edge sends exactly what ingest counts; an
event it would refuse is refused here, ``malformed``), and sent with
:class:`~controller.daemon.serving.event_intake.EventIntake` (on the intake's
thread, :mod:`.intake_worker`): to the events
topic, keyed by unit, once the broker acknowledges. Ids are
``"otlp-<kind>-" + blake2b(trace id|span id|flag)``, so a re-sent export, a
Collector's retry or an export sent again after a crash carries the same ids,
and ingest's flush counts each once; the intake's record of sent events
names the known copies and does not send them again. An id sent before with
other content (an evaluation without a version counted for the version the
timeline said then, which has since learnt better) keeps its first copy:
the changed ones are dropped, the rest sent.

An evaluation of a flag no rollout published is an app's ordinary flag, no
error: counted in ``rollout_otlp_ignored_evaluations_total``, not
dead-lettered, not named. Every item not counted otherwise (a hostile or
malformed span, a span at an implausible time, a variant no arm has, a bad
version, an event ingest would refuse) goes to the
DLQ with its reason (``rc.reason``) and a short JSON value naming the
export's route, its client, the item's index and the detail; each is
counted in ``rollout_otlp_http_refused_total`` by reason, and the export's
answer names them (OTLP's partial success). An evaluation too near a
change of version (``guard_interval``) is no error: counted apart, not
dead-lettered, not named. Dead-lettering is best effort: the export's
events are acknowledged first, and a DLQ the broker does not take is
logged, not retried.

Translating an export and checking its events (tens of milliseconds of CPU
for thousands of spans) runs on a thread of the intake's own, the one thread
that touches the translator and its join buffer; the event loop only awaits
the result. So a flood of exports, re-sent or new, shares the interpreter with
the loop but never holds it: a kill's decision gets its turn within
milliseconds (docs/architecture.md, "A kill under load").

The join buffer's evaluations that never met their span are dropped once
``http.otlp_join_window_seconds`` old, every second while the daemon runs
(counted, ``unmatched``): their exposures were counted on arrival, no
outcome is.

What an export leaves waiting is in memory, and the export is answered: the exporter will
not send it again. So, given a :class:`Journal`, each export answered is journaled first
(after its events were acknowledged: a kill before that leaves it unanswered, and it is
sent again), and the intake, when it opens, translates the journal's exports of the last
join window again for their joins only: a restart finds the evaluations that waited for
their request spans, and the spans a late evaluation walks up to, as they were. A join of
two journaled halves was counted before (the second half's export sent it); one with a
half that comes after the restart is counted then, once by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, Self

import msgspec
import orjson
import structlog

from controller.adapters.http import ChangedEvents, EventSink
from controller.adapters.otlp import Signal, Taken
from controller.core.common import ControllerError
from controller.core.telemetry import (
    Logs,
    Lookup,
    Refusal,
    Spans,
    Translated,
    Translator,
    journal_batch,
    journal_entry,
    within,
)
from controller.core.wire import (
    ConversionIn,
    CrashIn,
    EventDecoder,
    ExceptionIn,
    ExposureIn,
    InEvent,
    Rejection,
    RequestIn,
)
from controller.daemon.metrics import Metrics
from controller.daemon.registries import FlagDirectory
from controller.ports import DeadLetter, DeadLetters
from controller.settings import HttpSettings

EXPIRE_EVERY_SECONDS = 1.0
MAX_NAMED_REASONS = 8
"""The most reasons an answer's message names (the most common first)."""
NOT_ERRORS = frozenset({"guard_interval"})
"""Refusal reasons that are no error: not dead-lettered, not in the answer."""
TYPES: dict[type[InEvent], str] = {
    ExposureIn: "exposure",
    RequestIn: "request",
    ConversionIn: "conversion",
    CrashIn: "crash",
    ExceptionIn: "exception",
}
log = structlog.get_logger("controller.otlp")
_encoder = msgspec.json.Encoder()


@dataclass(slots=True)
class _Item:
    """What the DLQ's record of a refused item reads: ``rc.source.topic`` names the route."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int = -1
    offset: int = -1
    headers: Sequence[tuple[str, bytes]] = ()


class Journal(Protocol):
    """Where the exports of the last join window are kept across a restart."""

    async def append(self, entry: bytes) -> None:
        """Keep one answered export's entry (StoreError when it could not)."""
        ...

    async def recent(self) -> list[bytes]:
        """The entries kept, oldest first; some may be older than the window."""
        ...


class OtlpIntake:
    """Takes decoded OTLP exports for the routes; use it with ``async with`` (the join
    buffer's expiry runs while it is open)."""

    def __init__(
        self,
        *,
        events: EventSink,
        directory: FlagDirectory,
        translator: Translator,
        dead_letters: DeadLetters,
        metrics: Metrics,
        max_event_bytes: int,
        clock: Callable[[], datetime],
        journal: Journal | None = None,
    ) -> None:
        """``journal``: where answered exports are kept for a restart's joins (none: a
        restart loses what waited)."""
        self._events, self._directory, self._translator = events, directory, translator
        self._journal = journal
        self._dead_letters, self._metrics, self._clock = dead_letters, metrics, clock
        self._decoder = EventDecoder(max_bytes=max_event_bytes)
        self._expiry: asyncio.Task[None] | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="otlp-translate")
        """The one thread that touches the translator (and its join buffer)."""

    async def __aenter__(self) -> Self:
        if self._journal is not None:
            await self._rejoin(self._journal)
        self._expiry = asyncio.create_task(self._expire_every(), name="otlp-expiry")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        await self._directory.close()
        self._worker.shutdown(wait=False, cancel_futures=True)

    async def take(self, client: str, signal: Signal, batch: Spans | Logs) -> Taken:
        """Translate ``batch``, send its events (:class:`BatchNotSent` when the broker did not
        acknowledge them: nothing counted), dead-letter what is not counted."""
        await self._directory.fresh()
        loop = asyncio.get_running_loop()
        now = self._now_ms()
        work = functools.partial(self._translated, batch, now)
        translated, events, unfit, entry = await loop.run_in_executor(self._worker, work)
        refused = [*batch.refused, *translated.refused, *unfit]
        sent = await self._send(client, events)
        if self._journal is not None and entry is not None:
            await self._journal.append(entry)  # before the answer: a kill first, a resend
        self._counted(signal, sent, translated, refused)
        errors = [r for r in refused if r.reason not in NOT_ERRORS]
        if errors:
            await self._dead_letter(client, signal, errors)
        return _taken(signal, errors, _rejected(batch, translated, unfit))

    async def _rejoin(self, journal: Journal) -> None:
        """Translate the journal's exports of the last join window again, for their joins
        only; a join that a half of it completes with is sent (once by id)."""
        try:
            raw = await journal.recent()
            await self._directory.fresh()
        except ControllerError as exc:  # the start goes on; what waited is lost, as before
            log.warning("otlp_journal_unread", error=str(exc)[:300])
            return
        decoded = [entry for entry in map(journal_batch, raw) if entry is not None]
        entries = within(decoded, self._now_ms(), self._translator.join_window_ms)
        loop = asyncio.get_running_loop()
        ready = await loop.run_in_executor(self._worker, self._replayed, entries)
        events, _ = self._checked(Translated(events=ready))
        await self._send("otlp-journal", events)
        log.info("otlp_journal_read", exports=len(entries), skipped=len(raw) - len(decoded))

    def _replayed(self, entries: list[tuple[int, Spans | Logs]]) -> list[InEvent]:
        """``entries`` translated again for their joins only, on the translating thread."""
        for at_ms, batch in entries:
            if isinstance(batch, Spans):
                self._translator.spans(batch, at_ms, replaying=True)
            else:
                self._translator.logs(batch, at_ms, replaying=True)
        return self._translator.take_ready()

    def count(self, signal: Signal, outcome: str, items: int = 0) -> None:
        """Count one export by what became of it, and the items it held."""
        self._metrics.otlp.exports.labels(signal, outcome).inc()
        if items:
            self._metrics.otlp.items.labels(signal).inc(items)

    def expire(self) -> int:
        """Drop the evaluations that waited the whole join window; how many."""
        dropped = self._translator.expire(self._now_ms())
        if dropped:
            self._metrics.otlp.evaluations.labels("unmatched").inc(dropped)
        return dropped

    def _now_ms(self) -> int:
        return int(self._clock().timestamp() * 1000)

    def _translated(
        self, batch: Spans | Logs, now: int
    ) -> tuple[Translated, list[tuple[InEvent, bytes]], list[Refusal], bytes | None]:
        """``batch`` translated and its events checked, and its journal entry (None without
        a journal), on the translating thread."""
        if isinstance(batch, Spans):
            translated = self._translator.spans(batch, now)
        else:
            translated = self._translator.logs(batch, now)
        entry = journal_entry(batch, now) if self._journal is not None else None
        return (translated, *self._checked(translated), entry)

    def _checked(self, translated: Translated) -> tuple[list[tuple[InEvent, bytes]], list[Refusal]]:
        """Each event as ingest will read it, or refused as ingest would refuse it."""
        events: list[tuple[InEvent, bytes]] = []
        unfit: list[Refusal] = []
        for event in translated.events:
            raw = _encoder.encode(event)
            found = self._decoder.decode(raw)
            if isinstance(found, Rejection):
                detail = f"{found.reason.value}: {found.detail}"[:200]
                unfit.append(Refusal(-1, "malformed", f"{event.flag}: {detail}"))
            else:
                events.append((found, raw))
        return events, unfit

    async def _send(self, client: str, events: list[tuple[InEvent, bytes]]) -> list[InEvent]:
        """Send ``events``; ids sent before with other content keep their first copy. The
        events sent now (not those known as sent before)."""
        if not events:
            return []
        try:
            accepted = await self._events.send(client, events)
        except ChangedEvents as exc:
            changed = set(exc.ids)
            self._metrics.otlp.evaluations.labels("changed").inc(len(changed))
            events = [(event, raw) for event, raw in events if event.id not in changed]
            if not events:
                return []
            accepted = await self._events.send(client, events)
        known = set(accepted.duplicates)
        return [event for event, _ in events if event.id not in known]

    def _counted(
        self,
        signal: Signal,
        sent: list[InEvent],
        translated: Translated,
        refused: list[Refusal],
    ) -> None:
        metrics = self._metrics
        for kind, n in Counter(TYPES[type(event)] for event in sent).items():
            metrics.otlp.events.labels(kind).inc(n)
        for reason, n in Counter(r.reason for r in refused).items():
            metrics.otlp.refused.labels(signal, reason).inc(n)
        if translated.request_level:
            metrics.otlp.evaluations.labels("request_level").inc(translated.request_level)
        if translated.guarded:
            metrics.otlp.evaluations.labels("guarded").inc(translated.guarded)
        if translated.no_rollout:
            metrics.otlp.ignored.labels("http", signal).inc(translated.no_rollout)
        if translated.unmatched:
            metrics.otlp.evaluations.labels("unmatched").inc(translated.unmatched)

    async def _dead_letter(self, client: str, signal: Signal, refused: list[Refusal]) -> None:
        route = f"otlp-http:/v1/{signal}"
        letters = [
            DeadLetter(_Item(route, client.encode(), _letter(route, client, r)), r.reason, r.detail)
            for r in refused
        ]
        try:
            await self._dead_letters.publish(letters)
        except ControllerError as exc:
            log.warning("otlp_dead_letters_not_sent", letters=len(letters), error=str(exc)[:300])

    async def _expire_every(self) -> None:
        while True:
            await asyncio.sleep(EXPIRE_EVERY_SECONDS)
            try:
                await asyncio.get_running_loop().run_in_executor(self._worker, self.expire)
            except Exception:
                log.exception("otlp_expiry_failed")


def translator_of(http: HttpSettings, lookup: Lookup) -> Translator:
    """The translator of either OTLP path (HTTP, the Collector's topics): the guard around a
    change of version, the join window and the pending bound of ``http``."""
    return Translator(
        lookup,
        guard_ms=int(http.otlp_guard_seconds * 1000),
        join_window_ms=int(http.otlp_join_window_seconds * 1000),
        max_pending=http.otlp_max_pending,
    )


def _rejected(batch: Spans | Logs, translated: Translated, unfit: list[Refusal]) -> int:
    """The items not counted, each once: the decoder's and the translator's indices are each
    an item's (in the export, in the decoded batch), and an item the decoder refused never
    reaches the translator; an event ingest would refuse is one more."""
    translated_items = {r.index for r in translated.refused if r.reason not in NOT_ERRORS}
    return len({r.index for r in batch.refused}) + len(translated_items) + len(unfit)


def _letter(route: str, client: str, refusal: Refusal) -> bytes:
    """The DLQ value of a refused item: where it came from and why, bounded."""
    return orjson.dumps(
        {
            "route": route,
            "client": client[:100],
            "index": refusal.index,
            "reason": refusal.reason,
            "detail": refusal.detail[:1000],
        }
    )


def _taken(signal: Signal, errors: list[Refusal], rejected: int) -> Taken:
    """The partial success of an export: its items not counted, and the reasons in words."""
    if not errors:
        return Taken()
    reasons = Counter(r.reason for r in errors).most_common(MAX_NAMED_REASONS)
    named = ", ".join(f"{reason} x{n}" for reason, n in reasons)
    first = errors[0].detail[:200]
    noun = "spans" if signal == "traces" else "log records"
    message = (
        f"{len(errors)} {noun} or evaluations not counted ({named}; e.g. {first}); "
        "each is on the dead-letter topic with its reason"
    )
    return Taken(rejected=rejected, message=message)
