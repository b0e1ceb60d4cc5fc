"""The OTLP/HTTP exports of the last join window, as the journal that outlives a restart keeps them.

Over OTLP/HTTP an export is answered once its events are acknowledged, while what it
leaves for a later export to join (an evaluation waiting for its request span, a span a
late evaluation walks up to) waits in the translator's join buffer, in memory. So the
intake journals each export it answered, with the time it was translated at, and a
restart translates the journal's exports of the last join window again *for their joins
only* (``Translator.spans(replaying=True)``), as a claim of a Collector topic reads its
records again from the rejoin offset (:mod:`.rejoining`).

An entry is the export's decoded items (spans or log records, the refused ones left out:
they join nothing), msgpack-encoded. Pure: the time is given.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from controller.core.telemetry.signals import LogRecord, Logs, Span, Spans


class Entry(msgspec.Struct, frozen=True):
    """One export: when it was translated, and its items (one of the two is empty)."""

    at_ms: int
    spans: tuple[Span, ...] = ()
    records: tuple[LogRecord, ...] = ()


def _plain(value: object) -> object:
    """A read-only mapping (the items' shared empty attributes, a mapping proxy) as the dict
    msgpack writes and reads back as the same mapping."""
    if isinstance(value, Mapping):
        return dict(value)
    raise NotImplementedError(f"cannot journal a {type(value).__name__}")


_encoder = msgspec.msgpack.Encoder(enc_hook=_plain)
_decoder = msgspec.msgpack.Decoder(Entry)


def journal_entry(batch: Spans | Logs, at_ms: int) -> bytes | None:
    """``batch`` translated at ``at_ms``, as the journal keeps it; None when it has no item
    (nothing of it can wait)."""
    if isinstance(batch, Spans):
        if not batch.spans:
            return None
        return _encoder.encode(Entry(at_ms, spans=tuple(batch.spans)))
    if not batch.records:
        return None
    return _encoder.encode(Entry(at_ms, records=tuple(batch.records)))


def journal_batch(raw: bytes) -> tuple[int, Spans | Logs] | None:
    """An entry's time and batch; None for bytes that are no entry (a later version's, a
    damaged one): what it held cannot be joined again, and nothing else depends on it."""
    try:
        entry = _decoder.decode(raw)
    except msgspec.DecodeError:
        return None
    if entry.spans:
        return entry.at_ms, Spans(spans=list(entry.spans))
    return entry.at_ms, Logs(records=list(entry.records))


def within(
    entries: list[tuple[int, Spans | Logs]], now_ms: int, window_ms: int
) -> list[tuple[int, Spans | Logs]]:
    """The entries translated less than one join window before ``now_ms``, oldest first:
    what an older one left has expired from the buffer it was put in."""
    kept = [entry for entry in entries if entry[0] > now_ms - window_ms]
    return sorted(kept, key=lambda entry: entry[0])
