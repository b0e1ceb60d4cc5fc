"""Which events partitions this instance ingests, at which epoch and offset, and why not.

Kafka assigns partitions; an assigned partition is ingested once it is
claimed in Redis (a new fencing epoch, and the stored offset to read from).
A flush can then find that the claim no longer holds:

- *fenced*: a newer epoch, or a stored offset ahead of this owner's, is
  another owner's work. The partition is dropped; Kafka revokes it soon.
- *lost writes*: the stored epoch or offset is behind this owner's, so Redis
  lost writes it had acknowledged (an asynchronous replica was promoted
  without them). Nobody else owns the partition: it is claimed again and read
  from the stored offset, which replays exactly what was lost, since a flush
  writes the offset and the aggregates in one script.

A partition assigned but not ingesting (being claimed, fenced, replaying, or
paused by a Redis outage) stays visible: :meth:`Partitions.stalled` names it
for ``/readyz`` once it has made no progress for ``stall_after_seconds``, and
its lag gauge shows the broker's end offset less the last stored offset.

Another source's topic (the OpenTelemetry Collector's) is tracked the same
way under its ``role``: its partitions are owned in that role, and its lag
series are labelled ``<role>/<partition>``, apart from the events topic's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from controller.core.common import FencedError, LostWrites
from controller.core.machine import LogIdentity
from controller.core.rollouts import RaiseAlert
from controller.core.wire import JsonObject
from controller.daemon.ingest.log_gaps import Checked
from controller.daemon.metrics import Metrics
from controller.ports import AggregateWriter, Claim, EventSource

log = structlog.get_logger("controller.daemon.ingest.ingest")


@dataclass(slots=True, eq=False)
class Owned:
    """One claim of a partition; a new claim is a new object, so stale work is told apart."""

    epoch: int
    offset: int | None
    log: LogIdentity | None = None
    """The identity of the log read under this claim, stored with each flush's offset."""
    rejoin: int | None = None
    """An OTLP topic's: the records from here to ``offset`` are read again for their joins
    only (counted before); None once the reading passed ``offset``."""
    progress_at: float = field(default_factory=time.monotonic)
    """When this claim last advanced (or was made), monotonic clock."""


@dataclass(slots=True)
class _Waiting:
    why: str
    since: float = field(default_factory=time.monotonic)


class Partitions:
    """The events partitions assigned to this instance and the claims on them."""

    def __init__(self, *, metrics: Metrics, stall_after: float, role: str = "events") -> None:
        self._metrics = metrics
        self._stall_after = stall_after
        self._role = role
        self.owned: dict[int, Owned] = {}
        self.to_claim: set[int] = set()
        self.held: dict[int, Owned] = {}
        """Claimed, but held until an operator's choice (see :mod:`.log_gaps`)."""
        self._waiting: dict[int, _Waiting] = {}
        self._offsets: dict[int, int] = {}  # last offset known per assigned partition
        self._ends: dict[int, int] = {}  # end offsets asked of the broker

    # -- assignment ------------------------------------------------------------------
    def assigned(self, partitions: list[int]) -> None:
        self.to_claim.update(partitions)
        for p in partitions:
            self._waiting.setdefault(p, _Waiting("claiming"))

    def revoked(self, partitions: list[int]) -> None:
        for p in partitions:
            self.owned.pop(p, None)
            self.held.pop(p, None)
            self.to_claim.discard(p)
            self._waiting.pop(p, None)
            self._offsets.pop(p, None)
            self._ends.pop(p, None)
            # The new owner reports its lag; a stale value here would read as stalled.
            with contextlib.suppress(KeyError):
                self._metrics.lag.remove(_label(self._role, p))
        self._metrics.owned(self._role, self.owned)
        log.info("partitions_revoked", partitions=partitions, owned=sorted(self.owned))

    @property
    def assigned_ids(self) -> list[int]:
        """Every partition assigned here: owned, being claimed, or dropped after a fence."""
        return sorted({*self.owned, *self.to_claim, *self._waiting, *self.held})

    # -- claims ------------------------------------------------------------------------
    async def claim_pending(
        self,
        source: EventSource,
        store: AggregateWriter,
        retry: Callable[[Callable[[], Awaitable[Claim]], str], Awaitable[Claim | None]],
        held: Callable[[Claim], Awaitable[Checked]] | None = None,
    ) -> None:
        """Claim every partition waiting for it, seek it to the stored offset, resume it;
        unless ``held`` says its log no longer holds that offset (or is another log): then
        it stays paused. The claim reads on the log ``held`` found, else the stored one."""
        while self.to_claim:
            partition = min(self.to_claim)
            claim = await retry(lambda p=partition: store.claim(p), f"claim p{partition}")  # type: ignore[misc]
            if claim is None:
                return
            if partition not in self.to_claim:  # revoked while we were claiming
                continue
            self.to_claim.discard(partition)
            self._waiting.pop(partition, None)
            owned = self.owned[partition] = Owned(
                claim.epoch, claim.offset, claim.log, claim.rejoin
            )
            if claim.offset is not None:
                self._offsets[partition] = claim.offset
            self._metrics.owned(self._role, self.owned)
            checked = await held(claim) if held is not None else Checked(False, None)
            owned.log = checked.live or claim.log
            if checked.held:
                self.hold(partition, "the log no longer holds the stored offset")
                continue
            await source.seek(partition, claim.offset if claim.rejoin is None else claim.rejoin)
            source.resume([partition])
            log.info(
                "partition_claimed", partition=partition, epoch=claim.epoch, offset=claim.offset
            )

    def hold(self, partition: int, why: str) -> None:
        """Stop ingesting the owned ``partition`` until :meth:`release` (the caller pauses it)."""
        owned = self.owned.pop(partition, None)
        if owned is None:
            return
        self.held[partition] = owned
        self._waiting[partition] = _Waiting(f"held: {why}")
        self._metrics.owned(self._role, self.owned)

    def release(self, partition: int, offset: int, log: LogIdentity | None = None) -> None:
        """Ingest the held ``partition`` again from ``offset`` on ``log``, same claim."""
        held, self._offsets[partition] = self.held.pop(partition), offset
        self._waiting.pop(partition, None)
        self.owned[partition] = Owned(held.epoch, offset, log or held.log)
        self._metrics.owned(self._role, self.owned)

    def dropped(self, partition: int) -> None:
        """The held ``partition`` was claimed by another owner meanwhile."""
        if self.held.pop(partition, None) is not None:
            self._waiting[partition] = _Waiting("fenced: another owner holds it")

    def current(self, partition: int, owned: Owned) -> bool:
        """Whether ``owned`` is still this instance's claim on ``partition``."""
        return self.owned.get(partition) is owned

    def advanced(self, partition: int, owned: Owned, offset: int) -> None:
        owned.offset = offset
        owned.progress_at = time.monotonic()
        if self.current(partition, owned):
            self._offsets[partition] = offset

    def fenced(self, partition: int, owned: Owned, exc: FencedError) -> None:
        """Drop ``partition``: another consumer owns it and replays from the stored offset."""
        log.warning("flush_fenced", partition=partition, error=str(exc))
        if not self.current(partition, owned):
            return
        del self.owned[partition]
        self._waiting[partition] = _Waiting("fenced: another owner holds it")
        self._metrics.owned(self._role, self.owned)

    def lost(
        self, partition: int, owned: Owned, exc: LostWrites, source: EventSource
    ) -> RaiseAlert | None:
        """Claim ``partition`` again and read it from the stored offset: Redis lost writes.

        Returns the alert to raise, or None when the claim was no longer current.
        """
        if not self.current(partition, owned):
            return None
        stored, acknowledged = exc.stored_offset, owned.offset
        log.error(
            "store_lost_writes",
            partition=partition,
            stored_offset=stored,
            acknowledged_offset=acknowledged,
            error=str(exc),
        )
        self._metrics.lost_writes.labels(_label(self._role, partition)).inc()
        del self.owned[partition]
        self.to_claim.add(partition)
        self._waiting[partition] = _Waiting("replaying writes redis lost")
        source.pause([partition])
        self._metrics.owned(self._role, self.owned)
        return _lost_alert(self._role, partition, stored, acknowledged)

    # -- what operators see --------------------------------------------------------------
    def positions(self) -> dict[int, int]:
        return {p: o.offset for p, o in self.owned.items() if o.offset is not None}

    def resumable(self, partitions: list[int]) -> list[int]:
        """Those of ``partitions`` that are owned and not waiting for a claim."""
        return [p for p in partitions if p in self.owned and p not in self.to_claim]

    def ends_known(self, ends: dict[int, int]) -> None:
        """End offsets the broker reported, for partitions not fetched lately."""
        self._ends.update(ends)

    def waiting_ids(self) -> list[int]:
        """Assigned partitions not being ingested now (claiming, fenced, replaying)."""
        return sorted(self._waiting)

    def observe_lag(self, source: EventSource) -> None:
        """Set each assigned partition's lag gauge: its end offset less its last offset."""
        for partition in self.assigned_ids:
            behind = self._behind(partition, source)
            if behind is not None:
                self._metrics.lag.labels(_label(self._role, partition)).set(behind)

    def _behind(self, partition: int, source: EventSource) -> int | None:
        ends = [
            e for e in (source.highwater(partition), self._ends.get(partition)) if e is not None
        ]
        offset = self._offsets.get(partition)
        if not ends or offset is None:
            return None
        return max(0, max(ends) - offset)

    def stalled(self, now: float, source: EventSource | None) -> str | None:
        """Why ingest counts as stalled at monotonic time ``now``, or None.

        A partition stalls when it has made no progress for ``stall_after``
        while records are left to read on it, or when it has been assigned
        here without being ingested (claiming, fenced, replaying) that long.
        An idle stream is not stalled.
        """
        limit = self._stall_after
        waiting = {p: w.why for p, w in self._waiting.items() if now - w.since >= limit}
        behind: dict[int, int] = {}
        if source is not None:
            for p, owned in self.owned.items():
                left = self._behind(p, source)
                if left and now - owned.progress_at >= limit:
                    behind[p] = left
        if not waiting and not behind:
            return None
        parts = []
        if behind:
            parts.append(f"no progress for {limit:.0f} s with records behind {behind}")
        if waiting:
            parts.append(f"not ingesting {waiting}")
        return "ingest stalled: " + "; ".join(parts)


def _lost_alert(
    role: str, partition: int, stored: int | None, acknowledged: int | None
) -> RaiseAlert:
    """The alert that says Redis lost acknowledged writes of ``partition``."""
    summary = (
        f"redis lost acknowledged writes of {role} partition {partition}: its stored"
        f" offset is {stored}, {acknowledged} had been written; those records are being counted"
        " again from the stored offset. Check the Redis failover that caused it."
    )
    details: JsonObject = {"partition": partition, "stored_offset": stored}
    details["acknowledged"] = acknowledged
    return RaiseAlert("store_lost_writes", "critical", summary, details)


def _label(role: str, partition: int) -> str:
    """The ``partition`` label of a partition's lag series in ``role``."""
    return str(partition) if role == "events" else f"{role}/{partition}"
