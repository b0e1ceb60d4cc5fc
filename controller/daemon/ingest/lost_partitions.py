"""Stored partitions a topic made again no longer has: held, and retired once chosen for.

Nobody claims a partition the topic lacks, so the claim that finds the topic with
fewer partitions than stored holds them too (:class:`~.log_gaps.LogGaps` records and
alerts them as it does the others). The operator's choice retires each: nothing is
left to read of it, and should the topic grow again it is read from offset 0.
"""

from __future__ import annotations

import structlog

from controller.core.common import ControllerError
from controller.core.machine import LogGap, LogIdentity, identity_change
from controller.ports import EventSource, HeldPartitions

log = structlog.get_logger("controller.daemon.ingest.ingest")


async def live_identity(source: EventSource) -> LogIdentity | None:
    """The topic's identity as the broker gives it now; None if it does not answer."""
    try:
        return await source.identity()
    except ControllerError as exc:
        log.debug("topic_identity_skipped", error=str(exc))
        return None


class LostPartitions:
    """The held partitions of one topic that the topic no longer has."""

    def __init__(self, store: HeldPartitions) -> None:
        self._store = store
        self._lost: dict[int, LogIdentity | None] = {}
        """Each one, with the topic's identity when it was found."""

    def __contains__(self, partition: int) -> bool:
        return partition in self._lost

    async def find(
        self, count: int, before: int, live: LogIdentity | None, *, known: set[int]
    ) -> list[LogGap]:
        """The gap of each stored partition numbered from ``count`` up to ``before``, or held
        already (found by an instance since gone), and not ``known``: the topic has
        ``count`` partitions now, ``before`` were stored."""
        held = {p for p in await self._store.held() if p >= count}
        gaps = []
        for partition in sorted(held.union(range(count, before))):
            stored = await self._store.stored(partition)
            if stored is None or partition in known:
                continue
            self._lost[partition] = live
            why = identity_change(partition, stored=None, live=LogIdentity(None, count))
            gaps.append(LogGap(partition, stored, stored, stored, count, before, changed=why))
        return gaps

    async def retire(self, partition: int, gap: LogGap) -> bool:
        """Retire the lost ``partition`` if an operator chose for it; whether retired."""
        chosen = await self._store.choice(partition)
        if chosen is None:
            return False
        await self._store.retire(partition, log=self._lost.pop(partition, None))
        log.warning("events_partition_retired", partition=partition, choice=chosen[0], was=gap.why)
        return True

    def forget(self, partition: int) -> None:
        self._lost.pop(partition, None)
