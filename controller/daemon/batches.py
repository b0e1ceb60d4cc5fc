"""One partition's share of a fetched batch: its records decoded and folded into a delta."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from controller.core.decoding import EventDecoder, InEvent, Rejection
from controller.core.folding import PartitionDelta, fold
from controller.daemon.partitions import Owned
from controller.ports import DeadLetter, Record

log = structlog.get_logger("controller.daemon.ingest")


@dataclass(slots=True)
class Work:
    """One partition's share of a batch, with the claim it was read under."""

    delta: PartitionDelta
    records: list[Record]
    owned: Owned


class Folder:
    """Decodes records of the events stream and folds them into per-partition deltas."""

    def __init__(self, *, max_event_bytes: int) -> None:
        self._decoder = EventDecoder(max_bytes=max_event_bytes)

    def fold(
        self, partition: int, records: list[Record], rejected: list[DeadLetter]
    ) -> PartitionDelta:
        """Fold ``records`` (non-empty, in offset order) of ``partition`` into a delta.

        Records that are not valid events are counted in the delta's rejects
        and appended to ``rejected``, for the dead-letter queue.
        """
        delta = PartitionDelta(partition=partition, next_offset=records[-1].offset + 1)
        self._fold_each(delta, records, rejected)
        return delta

    def _fold_each(
        self, delta: PartitionDelta, records: list[Record], rejected: list[DeadLetter]
    ) -> None:
        decode = self._decoder.decode
        events: list[InEvent] = []
        for record in records:
            decoded = decode(record.value)
            if isinstance(decoded, Rejection):
                reason = decoded.reason.value
                rejected.append(DeadLetter(record, reason, decoded.detail))
                delta.rejects[reason] += 1
                log.warning(
                    "event_rejected",
                    reason=reason,
                    detail=decoded.detail,
                    partition=delta.partition,
                    offset=record.offset,
                )
            else:
                events.append(decoded)
        fold(events, delta.cells)
