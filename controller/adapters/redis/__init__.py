"""The Redis edge: aggregates with exactly-once flushes, rollout states with their outbox."""

from controller.adapters.redis.aggregate_reads import HOLDOUT_CELLS, HoldoutReads
from controller.adapters.redis.aggregates import IdWindow, RedisAggregateStore, connect
from controller.adapters.redis.app_keys import AppKeyStore
from controller.adapters.redis.client import RedisClient
from controller.adapters.redis.history import RedisGateHistory
from controller.adapters.redis.ingest_progress import (
    CountedTimes,
    GapStore,
    IngestProgressStore,
    ingest_progress,
)
from controller.adapters.redis.join_journal import JoinJournal
from controller.adapters.redis.ledger import EventLedger
from controller.adapters.redis.marker import StoreMarker
from controller.adapters.redis.pipeline_runs import PipelineRunStore
from controller.adapters.redis.rollouts import AppliedStore, RolloutStore
from controller.adapters.redis.segments import SegmentStore

__all__ = [
    "HOLDOUT_CELLS",
    "AppKeyStore",
    "AppliedStore",
    "CountedTimes",
    "EventLedger",
    "GapStore",
    "HoldoutReads",
    "IdWindow",
    "IngestProgressStore",
    "JoinJournal",
    "PipelineRunStore",
    "RedisAggregateStore",
    "RedisClient",
    "RedisGateHistory",
    "RolloutStore",
    "SegmentStore",
    "StoreMarker",
    "connect",
    "ingest_progress",
]
