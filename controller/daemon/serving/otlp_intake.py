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

The flags are read again in the background once ``http.otlp_flags_max_age_seconds`` old,
so an app that learnt a flag from its published state can evaluate it before the flags
held know it. An export with evaluations of flags they do not know has the flags read
again, by a read that began after its newest such evaluation, and those items translated
again: a flag's first evaluations count however soon they follow its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Protocol, Self

import msgspec
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
    second_look,
    subset,
    within,
)
from controller.core.wire import (
    EventDecoder,
    InEvent,
    Rejection,
)
from controller.daemon.metrics import Metrics
from controller.daemon.registries import FlagDirectory
from controller.daemon.serving.otlp_answers import (
    NOT_ERRORS,
    counted,
    dead_letter,
    rejected,
    taken,
)
from controller.ports import DeadLetters
from controller.settings import HttpSettings

EXPIRE_EVERY_SECONDS = 1.0
CLOCK_SKEW_MS = 500
"""How far behind the controller's an app's clock may be (:meth:`OtlpIntake._again`)."""
log = structlog.get_logger("controller.otlp")
_encoder = msgspec.json.Encoder()


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
        if translated.unknown:
            translated, events, unfit = await self._again(batch, now, translated, events, unfit)
        refused = [*batch.refused, *translated.refused, *unfit]
        sent = await self._send(client, events)
        if self._journal is not None and entry is not None:
            await self._journal.append(entry)  # before the answer: a kill first, a resend
        counted(self._metrics, signal, sent, translated, refused)
        errors = [r for r in refused if r.reason not in NOT_ERRORS]
        if errors:
            await self._dead_letter(client, signal, errors)
        return taken(signal, errors, rejected(batch, translated, unfit))

    async def _again(
        self,
        batch: Spans | Logs,
        now: int,
        first: Translated,
        events: list[tuple[InEvent, bytes]],
        unfit: list[Refusal],
    ) -> tuple[Translated, list[tuple[InEvent, bytes]], list[Refusal]]:
        """``batch``'s translation, its items with evaluations of flags it did not know
        translated again once the flags were read after the newest of them (a rollout
        published since the last read); as it was when the read knows none of them."""
        await self._directory.read_since(max(first.unknown.values()) - CLOCK_SKEW_MS)
        if not any(self._directory.lookup(flag) for flag in first.unknown):
            return first, events, unfit
        items = list(first.unknown_items)
        work = functools.partial(self._translated, subset(batch, items), now, journaled=False)
        loop = asyncio.get_running_loop()
        second, more, unfit_again, _ = await loop.run_in_executor(self._worker, work)
        sent = {event.id for event, _ in events}
        events += [(event, raw) for event, raw in more if event.id not in sent]
        return second_look(first, second, items), events, [*unfit, *unfit_again]

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
        self, batch: Spans | Logs, now: int, *, journaled: bool = True
    ) -> tuple[Translated, list[tuple[InEvent, bytes]], list[Refusal], bytes | None]:
        """``batch`` translated and its events checked, and its journal entry (None without
        a journal), on the translating thread."""
        if isinstance(batch, Spans):
            translated = self._translator.spans(batch, now)
        else:
            translated = self._translator.logs(batch, now)
        entry = journal_entry(batch, now) if journaled and self._journal is not None else None
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

    async def _dead_letter(self, client: str, signal: Signal, refused: list[Refusal]) -> None:
        route = f"otlp-http:/v1/{signal}"
        letters = [dead_letter(route, client, r) for r in refused]
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
