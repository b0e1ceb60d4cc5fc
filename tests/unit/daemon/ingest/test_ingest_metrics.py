"""Ingest's metrics follow partition ownership through a rebalance."""

from __future__ import annotations

from controller.daemon.ingest.ingest import Ingest
from controller.daemon.metrics import Metrics
from controller.settings import IngestSettings


def test_a_revoked_partition_stops_reporting_lag() -> None:
    metrics = Metrics()
    ingest = Ingest(settings=IngestSettings(), metrics=metrics)
    ingest.partitions_assigned([3, 4])
    metrics.lag.labels("3").set(120)
    metrics.lag.labels("4").set(7)
    ingest.partitions_revoked([3])
    text = metrics.exposition().decode()
    assert 'rollout_ingest_consumer_lag{partition="4"} 7.0' in text
    assert 'partition="3"' not in text
    ingest.partitions_revoked([3])  # revoking twice is harmless
