"""Token buckets: how fast each client of a route for apps may go.

One bucket per client (an app key's digest, or a remote address): it holds
up to ``burst`` tokens and refills at ``rate`` a second; a request spends its
cost (the event intake: its events; OFREP: one per evaluation request). A
request over what the bucket holds spends nothing and is told how long until
it would fit, which the routes answer as 429 with ``Retry-After``. At most
:data:`MAX_CLIENTS` buckets are remembered; past it the one used longest ago
is forgotten (a forgotten client starts again with a full bucket). Pure: the
clock is given.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

MAX_CLIENTS = 10_000
"""Clients whose rate is remembered; past it the one seen longest ago is forgotten."""


class RateLimiter:
    """A token bucket per client: ``rate`` tokens a second, up to ``burst`` at once."""

    def __init__(self, rate: float, burst: float, *, clock: Callable[[], float]) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("a rate limiter needs a positive rate and burst")
        self._rate, self._burst, self._clock = rate, burst, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def wait(self, client: str, cost: float = 1) -> float:
        """0 when ``client`` may spend ``cost`` now (then spent); else seconds until it may."""
        now = self._clock()
        tokens, then = self._buckets.pop(client, (self._burst, now))
        tokens = min(self._burst, tokens + max(0.0, now - then) * self._rate)
        wait = 0.0
        if cost <= tokens:
            tokens -= cost
        else:
            wait = (min(cost, self._burst) - tokens) / self._rate
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)
