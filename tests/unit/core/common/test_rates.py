"""The token buckets that limit each client of OFREP and of the HTTP event intake."""

from __future__ import annotations

import pytest

from controller.core.common.rates import MAX_CLIENTS, RateLimiter

# (seconds since the start, client, cost, the wait answered); rate 10 a second, burst 20.
STEPS = [
    (0.0, "a", 20, 0.0),  # a full bucket at first
    (0.0, "a", 5, 0.5),  # empty: 5 tokens take half a second, and nothing is spent
    (0.0, "b", 20, 0.0),  # clients have buckets of their own
    (0.2, "a", 2, 0.0),  # 2 tokens came back in 0.2 s
    (0.2, "a", 1, 0.1),
    (100.0, "a", 20, 0.0),  # refilled, never above the burst
    (100.0, "a", 1, 0.1),
    (100.0, "a", 50, 2.0),  # a cost over the burst waits for a full bucket
    (99.0, "b", 1, 0.0),  # a clock going back refills nothing and takes nothing
]


def test_a_bucket_refills_at_its_rate_and_never_above_its_burst() -> None:
    now = [0.0]
    limiter = RateLimiter(10, 20, clock=lambda: now[0])
    for at, client, cost, wait in STEPS:
        now[0] = at
        assert limiter.wait(client, cost) == pytest.approx(wait), (at, client, cost)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (1, 0), (-1, 5)])
def test_a_limiter_needs_a_positive_rate_and_burst(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(rate, burst, clock=lambda: 0.0)


def test_one_request_a_second_refuses_the_second_until_a_second_passed() -> None:
    now = [0.0]
    limiter = RateLimiter(1, 1, clock=lambda: now[0])
    assert [limiter.wait("a") for _ in range(3)] == [0.0, 1.0, 1.0]
    now[0] = 1.0
    assert limiter.wait("a") == 0.0


def test_the_clients_remembered_are_bounded_and_the_oldest_is_forgotten() -> None:
    limiter = RateLimiter(1, 1, clock=lambda: 0.0)
    assert limiter.wait("first") == 0.0
    for n in range(MAX_CLIENTS):
        limiter.wait(f"c{n}")
    assert len(limiter) == MAX_CLIENTS
    assert limiter.wait("first") == 0.0  # forgotten: a full bucket again
