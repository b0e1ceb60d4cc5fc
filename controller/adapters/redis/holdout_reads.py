"""A holdout's read: each flag naming it, and every one of them together, in one go.

Per flag, everyone else's cells (each arm, and the cohorts a ring counts apart) in
the treatment's place and the holdout's in the control's (:data:`HOLDOUT_CELLS`);
in the same script calls, every flag's cells together, whose units are one
``PFCOUNT`` per partition over every flag's HyperLogLogs: a unit several flags
counted is counted once, the cumulative comparison's people
(:class:`controller.core.holdouts.People`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from redis.asyncio.cluster import RedisCluster

from controller.adapters.redis.aggregate_reads import HOLDOUT_CELLS, AggregateReads
from controller.adapters.redis.client import RedisClient, translated
from controller.core.stats import FlagAggregates
from controller.settings import RedisSettings


class HoldoutReads:
    """The holdout's cells of flags of one events topic: per flag, and all together."""

    def __init__(self, client: RedisClient, *, settings: RedisSettings, topic: str) -> None:
        cluster = isinstance(client, RedisCluster)
        self._reads = AggregateReads(
            client, prefix=settings.key_prefix, topic=topic, cluster=cluster
        )

    async def __call__(
        self, wanted: Sequence[tuple[str, Iterable[int]]]
    ) -> tuple[list[FlagAggregates], FlagAggregates]:
        """Each ``(flag, versions)`` read, and all of them as one."""
        reads = [(flag, tuple(sorted(set(versions)))) for flag, versions in wanted]
        async with translated():
            return await self._reads.read_together(reads, HOLDOUT_CELLS)
