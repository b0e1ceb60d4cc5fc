"""The fixed log-scale latency histogram.

Bucket edges are ``e[i] = 0.1 ms · 10^(i/20)`` for ``i = 0..116``: twenty
buckets per decade, each about 12.2% wider than the one before, from 0.1 ms
to 63.1 s (the first edge at or above 60 s). Bucket 0 holds latencies below
0.1 ms, bucket ``i`` (1..116) holds ``[e[i-1], e[i])`` and bucket 117 holds
everything at or above ``e[116]``. Because the edges are fixed, histograms add
across batches, partitions and flag versions by summing counts.
"""

from __future__ import annotations

from bisect import bisect_right

MIN_EDGE_MS = 0.1
BUCKETS_PER_DECADE = 20
EDGE_COUNT = 117
BUCKET_COUNT = EDGE_COUNT + 1

EDGES_MS: tuple[float, ...] = tuple(
    MIN_EDGE_MS * 10 ** (i / BUCKETS_PER_DECADE) for i in range(EDGE_COUNT)
)


def bucket_of(latency_ms: float) -> int:
    """Return the bucket index (0..117) that holds ``latency_ms``."""
    return bisect_right(EDGES_MS, latency_ms)


def bucket_bounds(index: int) -> tuple[float, float]:
    """Return ``[low, high)`` of a bucket in ms; the overflow bucket's high is ``inf``."""
    if not 0 <= index < BUCKET_COUNT:
        raise ValueError(f"bucket index {index} outside 0..{BUCKET_COUNT - 1}")
    low = 0.0 if index == 0 else EDGES_MS[index - 1]
    high = EDGES_MS[index] if index < EDGE_COUNT else float("inf")
    return low, high
